"""Modbus TCP at scale: N meters (default 1000) served by one simulator process, three of them
dead (they accept the connection and never answer). The gateway polls them all every second on
its small I/O pool — no thread per device — and the healthy ones keep >= 90% of that rate."""
import argparse
import collections
import json
import sys
import time

from harness import Broker, Gatewayd, ModbusSim, Subscriber, Workdir, log

GATEWAY = "scale-gw-01"
DEAD = [0, 1, 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    with Workdir("tcp-scale") as work:
        broker = Broker(work).start()
        sim = ModbusSim(work, args.build_dir, devices=args.devices, tick_ms=1000,
                        extra=["--dead", ",".join(map(str, DEAD))], values_log=False)
        central = Subscriber(work, args.build_dir, broker)
        devices = "".join(f"""
  - {{ id: m{i:04d}, kind: energy_meter, driver: modbus_tcp, address: "127.0.0.1:{port}",
      poll: 1s, timeout: 500ms, offline_after: 2,
      points: [ {{ name: energy_total, address: 0, type: uint32, scale: 0.01, unit: kWh }},
                {{ name: device_tag, address: 20, type: uint16 }} ] }}"""
                          for i, port in enumerate(sim.ports))
        config = work.file("gateway.yaml")
        with open(config, "w") as f:
            f.write(f"""gateway: {{ id: {GATEWAY}, site: s, building: b, data_dir: data }}
control: {{ socket: gatewayd.sock }}
mqtt: {{ uri: "{broker.uri}", max_inflight: 64 }}
devices:{devices}
""")
        gw = Gatewayd(work, args.build_dir, config)
        time.sleep(args.seconds)
        assert gw.stop() == 0
        time.sleep(1)
        central.stop()

        times = collections.defaultdict(list)
        offline = set()
        for rec in central.events():
            ev = rec["event"]
            if "meter" in ev:
                idx = int(ev["device_id"][1:])
                tag = [float(v["value"]) for v in ev["meter"]["values"] if v["name"] == "device_tag"]
                assert tag == [1000 + idx], (ev["device_id"], tag)
                times[ev["device_id"]].append(int(ev["gateway_time_us"]) / 1e6)
            if "status" in ev and not ev["status"]["online"]:
                offline.add(ev["device_id"])
        assert offline == {f"m{i:04d}" for i in DEAD}, offline
        rates = {}
        for i in range(args.devices):
            if i in DEAD:
                continue
            t = times[f"m{i:04d}"]
            assert len(t) >= 3, (i, len(t))
            rates[i] = (len(t) - 1) / (t[-1] - t[0])
        worst = min(rates.values())
        median = sorted(rates.values())[len(rates) // 2]
        assert worst >= 0.9, f"slowest healthy meter polled at {worst:.3f}/s"
        print(f"modbus tcp scale: {args.devices} devices ({len(DEAD)} dead, reported offline); "
              f"healthy poll rate min {worst:.3f}/s median {median:.3f}/s of 1/s configured; "
              f"readings {sum(len(t) for t in times.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
