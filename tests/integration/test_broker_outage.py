"""End to end: two simulated meters -> gatewayd -> mosquitto -> central subscriber.

The broker is stopped for 10 s mid-run and restarted. Afterwards every seq the gateway
committed is either at the subscriber or still in the buffer (nothing lost), the subscriber's
seqs have no gaps, duplicates stay within max_inflight, and every decoded reading equals a value
the simulator really served for that device.
"""
import argparse
import math
import sys
import time

from harness import (Broker, Gatewayd, ModbusSim, Subscriber, Workdir, gateway_config, log,
                     wait_for)

GATEWAY = "it-gw-01"
MAX_INFLIGHT = 10


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def check_values(events, served):
    """Each meter value must be one the simulator served to that device (same tick for all the
    device's points is not required: points come from several requests)."""
    checked = 0
    for rec in events:
        ev = rec["event"]
        if "meter" not in ev:
            continue
        index = int(ev["device_id"].split("-")[1])
        history = served[index]
        for v in ev["meter"]["values"]:
            assert v["quality"] == "GOOD", v
            name, value = v["name"], float(v["value"])
            if name == "device_tag":
                # The sentinel: a reading is never attributed to the wrong device.
                assert value == 1000 + index, (ev["device_id"], value)
            else:
                assert any(close(value, float(s[name])) for s in history), (
                    f"{ev['device_id']} {name}={value} was never served by the simulator")
            checked += 1
    return checked


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--outage-s", type=float, default=10.0)
    args = ap.parse_args()

    with Workdir("outage") as work:
        broker = Broker(work).start()
        sim = ModbusSim(work, args.build_dir, devices=2, tick_ms=200)
        central = Subscriber(work, args.build_dir, broker)
        config = gateway_config(work, broker, sim.ports, GATEWAY, max_inflight=MAX_INFLIGHT)
        gw = Gatewayd(work, args.build_dir, config)

        wait_for(lambda: central.gateway(GATEWAY).get("received", 0) >= 30, 20,
                 "30 events at the subscriber before the outage")
        before = central.gateway(GATEWAY)["received"]
        log(f"received before the outage: {before}; stopping the broker for {args.outage_s}s")
        broker.stop()
        time.sleep(args.outage_s)
        broker.start()
        log("broker restarted")

        # The backlog from the outage must arrive, marked historical.
        wait_for(lambda: central.gateway(GATEWAY).get("historical", 0) > 0, 20,
                 "historical events after the restart")
        time.sleep(3)
        assert gw.stop() == 0, "gatewayd must exit 0 on SIGTERM"
        time.sleep(1.0)
        central.stop()

        report = central.gateway(GATEWAY)
        pending, next_seq = gw.buffer_rows()
        events = [e for e in central.events() if e["gateway_id"] == GATEWAY]
        received = {int(e["event"]["seq"]) for e in events}
        log(f"report: {report}")
        log(f"buffer after stop: pending={len(pending)} next_seq={next_seq}")

        # Nothing committed is lost: every seq 1..next_seq-1 is at the subscriber or buffered.
        committed = set(range(1, next_seq))
        missing = committed - received - set(pending)
        assert not missing, f"{len(missing)} committed events lost, e.g. {sorted(missing)[:10]}"
        assert report["first_seq"] == 1, report
        assert report["gaps"] == 0, report
        assert report["duplicates"] <= MAX_INFLIGHT, report
        assert report["out_of_order"] == 0, report
        assert report["historical"] > 0, report
        assert report["received"] > before, report

        checked = check_values(events, sim.values())
        assert checked > 100, f"only {checked} values checked"

        status = [e["event"] for e in events if "status" in e["event"]]
        online = sorted(e["device_id"] for e in status if e["status"].get("online"))
        assert online == ["meter-0", "meter-1"], status
        assert "stopped" in gw.stderr()
        print(f"outage: received={report['received']} distinct={report['distinct']} "
              f"duplicates={report['duplicates']} gaps={report['gaps']} "
              f"historical={report['historical']} buffered_at_stop={len(pending)} "
              f"values_checked={checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
