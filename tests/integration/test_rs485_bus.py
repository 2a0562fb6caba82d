"""32 Modbus RTU meters on one simulated RS-485 line (a pseudo-terminal), one of them dead and
one slow, plus two DL/T 645 meters on the same line; and the same line reached through a serial
server's TCP port (socat in front of the pty).

Checks: the healthy meters keep >= 90% of their configured poll rate; every reading carries the
meter's own tag (register 20 = 1000 + unit) and a per-request counter (register 21) that only
grows, so no answer is ever attributed to the wrong meter or request; the dead meter is reported
offline with the reason; DL/T 645 readings equal what the simulated meters served.
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import time

from harness import (Broker, Gatewayd, Subscriber, Workdir, free_port, log, port_open,
                     stop_process, wait_for)

GATEWAY = "bus-gw-01"
UNITS = list(range(1, 33))
# Meters (polled every 3 s) that answer wrongly every other request, one fault kind each: their bad answers must
# become errors, never readings, and must not disturb the meters around them.
FAULTS = {33: "bad-crc", 34: "wrong-unit", 35: "wrong-function", 36: "exception", 37: "short",
          38: "extra-bytes", 39: "late", 40: "garbage"}
DEAD, SLOW = 5, 9
POLL_S = 1.0
# The simulator paces replies at the line's baud rate like a real line: at 9600 baud 32 meters
# polled every second need ~2 s of line time (the gateway then warns that the line cannot keep
# up); at 38400 they need ~0.5 s.
BAUD = 38400
RUN_S = 20.0
DLT_METERS = ["000000123456", "000000654321"]


def config(work, broker, port, timeout="200ms"):
    devices = ""
    for u in UNITS + list(FAULTS):
        devices += f"""
  - id: rtu-{u:02d}
    kind: energy_meter
    driver: modbus_rtu
    bus: line-1
    unit_id: {u}
    poll: {int(POLL_S * 1000) if u in UNITS else 3000}ms
    timeout: {timeout}
    offline_after: 2
    max_gap: 20                 # registers 0..21 in one request
    points:
      - {{ name: energy_total, address: 0, type: uint32, scale: 0.01, unit: kWh }}
      - {{ name: voltage_l1, address: 2, type: float32, unit: V }}
      - {{ name: device_tag, address: 20, type: uint16 }}
      - {{ name: request_counter, address: 21, type: uint16 }}"""
    for i, addr in enumerate(DLT_METERS):
        devices += f"""
  - id: dlt-{i}
    kind: energy_meter
    driver: dlt645
    bus: line-1
    meter_address: "{addr}"
    poll: 1s
    timeout: {timeout}
    points:
      - {{ name: energy_total, di: "00010000", unit: kWh }}
      - {{ name: voltage_a, di: "02010100", unit: V }}"""
    path = work.file("gateway.yaml")
    with open(path, "w") as f:
        f.write(f"""gateway: {{ id: {GATEWAY}, site: test-site, building: b, data_dir: data }}
control: {{ socket: gatewayd.sock }}
mqtt: {{ uri: "{broker.uri}", max_inflight: 32 }}
buses:
  - {{ id: line-1, port: "{port}", baud: {BAUD} }}
devices:{devices}
""")
    return path


def run_line(args, work, via_tcp):
    broker = Broker(work).start()
    link = work.file("rs485-line")
    sim = work.spawn("rs485-sim", [
        os.path.join(args.build_dir, "tools/sim/rs485_sim"), "--create-pty", link,
        "--units", f"{UNITS[0]}-{max(FAULTS)}", "--dlt645", ",".join(DLT_METERS),
        *[a for u, kind in FAULTS.items() for a in ("--fault", f"{u}:{kind}:every=2")],
        "--dead", str(DEAD), "--slow", str(SLOW), "--slow-ms", "120", "--tick-ms", "500",
        "--baud", str(BAUD),
        "--values-log", work.file("rs485-values.jsonl")])
    wait_for(lambda: os.path.exists(link), 10, "the simulated line's pty")
    port = link
    if via_tcp:
        # A serial server: the line's raw bytes on a TCP port.
        tcp = free_port()
        work.spawn("serial-server", ["socat", f"tcp-listen:{tcp},bind=127.0.0.1,reuseaddr",
                                     f"file:{link},raw,echo=0"])
        wait_for(lambda: port_open_once(tcp), 10, "the serial server's port")
        port = f"tcp://127.0.0.1:{tcp}"
    central = Subscriber(work, args.build_dir, broker)
    gw = Gatewayd(work, args.build_dir, config(work, broker, port))
    time.sleep(RUN_S)
    assert gw.stop() == 0
    time.sleep(1.0)
    central.stop()
    stop_process(sim)
    return central, gw, work.file("rs485-values.jsonl")


def port_open_once(port):
    # socat without fork accepts one connection: probe with ss instead of connecting.
    out = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
    return f"127.0.0.1:{port}" in out


def check(central, gw, values_log, label):
    events = [e["event"] for e in central.events() if e["gateway_id"] == GATEWAY]
    by_device = collections.defaultdict(list)
    status = collections.defaultdict(list)
    for ev in sorted(events, key=lambda e: int(e["seq"])):
        if "meter" in ev:
            by_device[ev["device_id"]].append(ev)
        if "status" in ev:
            status[ev["device_id"]].append(ev["status"])

    rates = {}
    for u in UNITS:
        dev = f"rtu-{u:02d}"
        evs = by_device.get(dev, [])
        if u == DEAD:
            assert not evs, f"{dev} is dead but produced {len(evs)} readings"
            assert status[dev] and not status[dev][-1]["online"], status[dev]
            assert "no answer" in status[dev][-1]["error"], status[dev]
            continue
        assert len(evs) >= 3, f"{dev}: only {len(evs)} readings"
        t = [int(e["gateway_time_us"]) / 1e6 for e in evs]
        rate = (len(evs) - 1) / (t[-1] - t[0])
        rates[dev] = rate
        counters = []
        for e in evs:
            vals = {v["name"]: float(v["value"]) for v in e["meter"]["values"]}
            assert vals["device_tag"] == 1000 + u, (dev, vals)  # never another meter's answer
            counters.append(vals["request_counter"])
        # Each answer is newer than the one before: never a stale or repeated reply.
        assert all(b > a for a, b in zip(counters, counters[1:])), (dev, counters[:20])
    faulty = {}
    for u, kind in FAULTS.items():
        dev = f"rtu-{u:02d}"
        good = [e for e in by_device.get(dev, [])
                if all(v["quality"] == "GOOD" for v in e["meter"]["values"])]
        bad = len(by_device.get(dev, [])) - len(good)
        assert good, f"{dev} ({kind}): no good readings at all"
        counters = []
        for e in good:
            vals = {v["name"]: float(v["value"]) for v in e["meter"]["values"]}
            assert vals["device_tag"] == 1000 + u, (dev, kind, vals)
            counters.append(vals["request_counter"])
        assert all(b > a for a, b in zip(counters, counters[1:])), (dev, kind, counters)
        # Only an exception reply gives BAD readings; every other fault is a failed poll.
        assert (bad > 0) == (kind == "exception"), (dev, kind, bad)
        faulty[kind] = len(good)
    healthy = {d: r for d, r in rates.items() if d != f"rtu-{SLOW:02d}"}
    worst = min(healthy.values())
    assert worst >= 0.9 / POLL_S, f"slowest healthy meter polled at {worst:.2f}/s"

    served = collections.defaultdict(list)
    for line in open(values_log):
        rec = json.loads(line)
        if "dlt645" in rec:
            served[rec["dlt645"]].append(rec["values"])
    for i, addr in enumerate(DLT_METERS):
        evs = by_device.get(f"dlt-{i}", [])
        assert evs, f"no readings from DL/T 645 meter {addr}"
        for e in evs:
            for v in e["meter"]["values"]:
                assert any(abs(float(v["value"]) - float(s[v["name"]])) < 1e-9
                           for s in served[addr]), (addr, v)
    report = central.gateway(GATEWAY)
    assert report["gaps"] == 0, report
    print(f"{label}: healthy RTU meters polled at min {worst:.2f}/s, median "
          f"{sorted(healthy.values())[len(healthy) // 2]:.2f}/s of {1 / POLL_S:.2f}/s configured "
          f"({worst * POLL_S * 100:.0f}% min); slow meter "
          f"{rates[f'rtu-{SLOW:02d}']:.2f}/s; dead meter offline: "
          f"{status[f'rtu-{DEAD:02d}'][-1]['error']!r}; "
          f"DL/T 645 readings: {sum(len(by_device[f'dlt-{i}']) for i in range(2))}; "
          f"faulty meters' good readings {faulty}; "
          f"events {report['distinct']}, gaps {report['gaps']}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    for via_tcp in (False, True):
        label = "serial server (tcp)" if via_tcp else "pty line"
        with Workdir("rs485" + ("-tcp" if via_tcp else "")) as work:
            central, gw, values = run_line(args, work, via_tcp)
            check(central, gw, values, label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
