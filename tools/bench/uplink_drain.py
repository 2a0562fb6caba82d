#!/usr/bin/env python3
"""Backlog drain benchmark: N telemetry events wait in the buffer (as after an outage); gatewayd
starts and publishes them; the central subscriber counts them. Prints the drain rate beside the
bare limits measured in the same run on this machine: mosquitto_pub at QoS 1 (the broker's own
client) and a raw SQLite batched insert. One machine-readable line per figure (`figure ...`).

    python3 tools/bench/uplink_drain.py [--events 200000] [--build-dir build]
"""
import argparse
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../tests/integration"))
from harness import Broker, Subscriber, Workdir, log, wait_for  # noqa: E402


def proc_stats(pid):
    """(cpu seconds, peak RSS in MiB) of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return cpu, hwm


def bare_mosquitto_rate(work, broker, count):
    payload = "x" * 100
    lines = work.file("pub-lines.txt")
    with open(lines, "w") as f:
        for _ in range(count):
            f.write(payload + "\n")
    start = time.monotonic()
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                    "-t", "bench/bare", "-l"], stdin=open(lines), check=True)
    return count / (time.monotonic() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(os.path.dirname(__file__), "../../build"))
    ap.add_argument("--events", type=int, default=200000)
    ap.add_argument("--max-inflight", type=int, default=64)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    build = os.path.abspath(args.build_dir)

    with Workdir("bench-drain") as work:
        broker = Broker(work).start()
        # mosquitto_pub -l at QoS 1 stops early past 65,535 messages: stay below.
        bare_pub = bare_mosquitto_rate(work, broker, 50000)

        data = work.file("data")
        os.makedirs(data)
        fill = subprocess.run([os.path.join(build, "tools/bench/fill_buffer"),
                               os.path.join(data, "buffer.db"), str(args.events), "1000"],
                              capture_output=True, text=True, check=True).stdout
        bare_insert = float(re.search(r"insert_rate=(\d+)", fill).group(1))

        config = work.file("gateway.yaml")
        with open(config, "w") as f:
            f.write(f"""gateway: {{ id: bench-gw, site: bench, building: b, data_dir: data }}
control: {{ socket: gatewayd.sock }}
mqtt:
  uri: {broker.uri}
  max_inflight: {args.max_inflight}
  batch_max_events: {args.batch}
devices: []
""")
        central = Subscriber(work, build, broker, client_id="bench-central", quiet=True)
        # The subscriber prints nothing per event in this run: its own speed must not be measured.
        start = time.monotonic()
        gw = work.spawn("gatewayd", [os.path.join(build, "gateway/gatewayd"), "--config", config])
        wait_for(lambda: central.gateway("bench-gw").get("distinct", 0) >= args.events, 600,
                 f"{args.events} events at the subscriber", interval=0.02)
        seconds = time.monotonic() - start
        cpu, rss = proc_stats(gw.pid)
        gw.terminate()
        gw.wait(timeout=15)
        central.stop()
        report = central.gateway("bench-gw")
        work.failed = False

    rate = args.events / seconds
    print(f"{'figure':<34} {'value':>12}   compared with")
    print(f"{'backlog drain (events/s)':<34} {rate:>12.0f}   "
          f"{rate / bare_pub:.2f}x bare mosquitto_pub QoS1 msgs/s ({bare_pub:.0f}); "
          f"{rate / bare_insert:.2f}x bare SQLite batched insert ({bare_insert:.0f}/s)")
    print(f"{'gatewayd CPU during drain (s)':<34} {cpu:>12.2f}   over {seconds:.2f} s wall")
    print(f"{'gatewayd peak RSS (MiB)':<34} {rss:>12.1f}")
    print(f"{'duplicates / gaps at subscriber':<34} {report['duplicates']:>6} / {report['gaps']}")
    print(f"figure name=drain_events_per_s value={rate:.0f} bare_mosquitto_pub={bare_pub:.0f} "
          f"bare_sqlite_insert={bare_insert:.0f} events={args.events} "
          f"max_inflight={args.max_inflight} batch={args.batch}")
    print(f"figure name=drain_cpu_s value={cpu:.2f} wall_s={seconds:.2f}")
    print(f"figure name=drain_peak_rss_mib value={rss:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
