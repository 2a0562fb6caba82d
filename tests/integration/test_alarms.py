"""Edge alarms end to end: a simulated meter -> gatewayd (with an over-voltage rule) -> mosquitto
-> the central subscriber.

The broker is stopped. While it is down the test writes a high voltage into the simulator's
registers: the gateway raises the alarm on its own (gatewayctl alarms and the metrics show it).
gatewayd is then killed (SIGKILL) and started again while the alarm is active and the voltage
still high: the alarm comes back from the buffer and is not raised a second time. The voltage
drops and the alarm clears. When the broker is back, the central receives the raise and the
clear each exactly once after deduplication by (gateway_id, seq), both before any of the
telemetry backlog - including backlog telemetry observed before the raise.
"""
import argparse
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

from harness import (Broker, Gatewayd, ModbusSim, Subscriber, Workdir, free_port,
                     gateway_config, log, wait_for)

GATEWAY = "it-gw-alarms"
RULE = "over-voltage"
HIGH = 250.0
HYSTERESIS = 5.0
ALARMS = f"""alarms:
  - {{ name: {RULE}, devices: [meter-0], point: voltage_l1, high: {HIGH:g}, hysteresis: {HYSTERESIS:g}, for: 1s, severity: major }}
  - {{ name: meter-offline, kind: energy_meter, offline: 10m, severity: minor }}
"""


def write_voltage(port, volts):
    """FC 16 (write multiple registers) of voltage_l1, registers 2-3, float32 ABCD: the
    simulator serves written values until its next tick (the test runs it with a 1 h tick)."""
    hi, lo = struct.unpack(">HH", struct.pack(">f", volts))
    pdu = struct.pack(">BHHBHH", 0x10, 2, 2, 4, hi, lo)
    adu = struct.pack(">HHHB", 7, 0, len(pdu) + 1, 1) + pdu
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(adu)
        reply = b""
        while len(reply) < 12:
            chunk = s.recv(12 - len(reply))
            if not chunk:
                break
            reply += chunk
    assert reply[7:8] == b"\x10", f"write refused: {reply.hex()}"


def gatewayctl(build, config, *args):
    out = subprocess.run([os.path.join(build, "tools/gatewayctl/gatewayctl"), *args,
                          "--config", config], capture_output=True, text=True, timeout=20)
    return out


def alarms_json(build, config):
    r = gatewayctl(build, config, "alarms", "--json")
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)


def alarms_metric(port):
    """gateway_alarms_active series by (rule, severity), from the Prometheus endpoint."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in body.splitlines():
        if line.startswith("gateway_alarms_active{"):
            labels, value = line[len("gateway_alarms_active{"):].split("} ")
            parts = dict(p.split("=", 1) for p in labels.split(","))
            out[(parts["rule"].strip('"'), parts["severity"].strip('"'))] = float(value)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    build = args.build_dir

    with Workdir("alarms") as work:
        broker = Broker(work).start()
        # One meter; a 1 h tick keeps what the test writes (voltage 230 V at tick 0).
        sim = ModbusSim(work, build, devices=1, tick_ms=3_600_000, values_log=False)
        central = Subscriber(work, build, broker)
        metrics_port = free_port()
        config = gateway_config(work, broker, sim.ports, GATEWAY,
                                extra=ALARMS + f"metrics: {{ listen: 127.0.0.1:{metrics_port} }}\n")
        gw = Gatewayd(work, build, config)

        wait_for(lambda: central.gateway(GATEWAY).get("by_class", {}).get("telemetry", 0) >= 10,
                 20, "live telemetry before the outage")
        first = alarms_json(build, config)
        assert first is not None, "gatewayctl alarms --json failed"
        assert first["rules"] == 2 and first["active"] == [] and first["recent"] == [], first
        human = gatewayctl(build, config, "alarms")
        assert human.returncode == 0 and "no alarms active (2 rules)" in human.stdout, human
        assert alarms_metric(metrics_port) == {(RULE, "major"): 0, ("meter-offline", "minor"): 0}

        broker.stop()
        outage_started = time.time()
        log("broker stopped; letting a telemetry backlog build up")
        time.sleep(3)

        write_voltage(sim.ports[0], 262.5)
        raised = wait_for(lambda: (alarms_json(build, config) or {}).get("active"), 10,
                          "the over-voltage alarm raised at the gateway during the outage")
        assert len(raised) == 1, raised
        alarm = raised[0]
        assert (alarm["rule"], alarm["device"], alarm["point"], alarm["severity"]) == (
            RULE, "meter-0", "voltage_l1", "major"), alarm
        assert alarm["value"] == 262.5 and alarm["threshold"] == HIGH, alarm
        # for: 1s - raised at least a second after the first high reading.
        assert alarm["raised_at_us"] - alarm["since_us"] >= 1_000_000, alarm
        recent = alarms_json(build, config)["recent"]
        assert [(r["rule"], r["active"]) for r in recent] == [(RULE, True)], recent
        raise_seq = recent[0]["seq"]
        human = gatewayctl(build, config, "alarms")
        assert human.returncode == 0, human
        assert "1 alarm active (2 rules)" in human.stdout and "over-voltage" in human.stdout, human
        assert "raised" in human.stdout and f" {raise_seq} " in human.stdout, human.stdout
        log("gatewayctl alarms:\n" + human.stdout)
        assert alarms_metric(metrics_port) == {(RULE, "major"): 1, ("meter-offline", "minor"): 0}
        time.sleep(2)

        # The hard way: a crash, not a clean stop. The alarm is durable because its row committed
        # with its event.
        log("killing gatewayd (SIGKILL) while the alarm is active, then starting it again")
        assert gw.stop(sig=signal.SIGKILL) == -signal.SIGKILL
        gw = Gatewayd(work, build, config, name="gatewayd-2")
        wait_for(lambda: alarms_json(build, config) is not None, 10, "gatewayd back up")
        time.sleep(3)  # still 262.5 V: well past for: 1s, many polls
        after = alarms_json(build, config)
        assert len(after["active"]) == 1, after
        assert after["active"][0]["raised_at_us"] == alarm["raised_at_us"], after
        assert after["recent"] == [], f"raised again after the restart: {after['recent']}"
        assert "restored 1 active alarm(s)" in gw.stderr()

        # A reload that changes alarms: hands the active alarm to the new rules, not raised again.
        text = open(config).read()
        open(config, "w").write(text.replace("offline: 10m, severity: minor",
                                             "offline: 10m, severity: info"))
        reload = gatewayctl(build, config, "reload")
        assert reload.returncode == 0, reload
        time.sleep(1.5)
        after = alarms_json(build, config)
        assert len(after["active"]) == 1 and after["recent"] == [], after
        assert alarms_metric(metrics_port) == {(RULE, "major"): 1, ("meter-offline", "info"): 0}

        write_voltage(sim.ports[0], 247.0)  # inside the hysteresis band: still active
        time.sleep(1.5)
        assert len(alarms_json(build, config)["active"]) == 1
        write_voltage(sim.ports[0], 240.0)
        wait_for(lambda: not alarms_json(build, config)["active"], 10, "the alarm cleared")
        cleared = alarms_json(build, config)["recent"]
        assert [(r["rule"], r["active"], r["value"]) for r in cleared] == [(RULE, False, 240.0)], \
            cleared
        clear_seq = cleared[0]["seq"]
        time.sleep(2)
        outage_s = time.time() - outage_started

        broker.start()
        log(f"broker back after {outage_s:.1f}s")

        def drained():
            st = json.loads(gatewayctl(build, config, "status", "--json").stdout or "{}")
            return st.get("mqtt", {}).get("connected") and st.get("buffer", {}).get("pending") == 0
        wait_for(drained, 30, "the backlog drained")
        time.sleep(1)
        assert gw.stop() == 0
        time.sleep(1)
        central.stop()

        for name in ("gatewayd", "gatewayd-2"):
            lines = [l.rstrip() for l in open(work.file(f"{name}.stderr")) if "alarm" in l]
            log(f"{name} alarm log lines:\n" + "\n".join(lines))
        events = [e["event"] for e in central.events() if e["gateway_id"] == GATEWAY]
        report = central.gateway(GATEWAY)
        arrivals = list(enumerate(events))
        alarm_msgs = [(i, e) for i, e in arrivals if "alarm" in e and e["alarm"]["rule"] == RULE]
        raises = {int(e["seq"]) for _, e in alarm_msgs if e["alarm"]["active"]}
        clears = {int(e["seq"]) for _, e in alarm_msgs if not e["alarm"]["active"]}
        assert raises == {raise_seq}, f"raises after dedup: {sorted(raises)}"
        assert clears == {clear_seq}, f"clears after dedup: {sorted(clears)}"
        first_raise = min(i for i, e in alarm_msgs if e["alarm"]["active"])
        first_clear = min(i for i, e in alarm_msgs if not e["alarm"]["active"])
        r = next(e for _, e in alarm_msgs if e["alarm"]["active"])
        c = next(e for _, e in alarm_msgs if not e["alarm"]["active"])
        assert r["device_id"] == "meter-0" and r["kind"] == "ENERGY_METER", r
        assert r["event_class"] == "ALARM" and r["alarm"]["severity"] == "MAJOR", r
        assert r["alarm"]["point"] == "voltage_l1" and r["alarm"]["value"] == 262.5, r
        assert r["alarm"]["threshold"] == HIGH and c["alarm"]["threshold"] == HIGH, (r, c)
        assert c["alarm"]["value"] == 240.0, c
        assert r["historical"] and c["historical"], (r, c)

        backlog = [(i, e) for i, e in arrivals if "meter" in e and e["historical"]]
        assert len(backlog) >= 20, f"only {len(backlog)} backlog telemetry events"
        first_backlog = min(i for i, _ in backlog)
        assert first_raise < first_clear < first_backlog, (first_raise, first_clear, first_backlog)
        # Priority, not age: backlog telemetry observed before the raise still came after it.
        older = [e for i, e in backlog if int(e["seq"]) < raise_seq]
        assert older, "no backlog telemetry older than the raise: the ordering proves nothing"
        assert report["gaps"] == 0 and report["out_of_order"] == 0, report

        print(f"alarms: outage={outage_s:.1f}s raise_seq={raise_seq} clear_seq={clear_seq} "
              f"alarm_messages={len(alarm_msgs)} (raises {len(raises)}, clears {len(clears)} "
              f"after dedup) arrival_index raise={first_raise} clear={first_clear} "
              f"first_backlog_telemetry={first_backlog} backlog_telemetry={len(backlog)} "
              f"of_which_older_than_raise={len(older)} received={report['received']} "
              f"duplicates={report['duplicates']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
