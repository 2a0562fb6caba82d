#!/usr/bin/env python3
"""End-to-end throughput and live latency of the gateway's event path, beside the bare limits
measured in the same run.

  throughput: events generated in-process -> committed by the real Router (group commit into
              storage/EventBuffer) -> published by the real Uplink (Paho async, QoS 1) to mosquitto
              on loopback -> PUBACKed -> acked out of the buffer (tools/bench/e2e_bench pipeline).
              Compared with bare SQLite insert + select/delete in batches of 100 (WAL,
              synchronous=NORMAL) and bare QoS 1 publishing (Paho with a 100-message window;
              mosquitto_pub -l with 50,000 lines).
  latency:    1,000 events/s, observed -> PUBACK, p50/p99/max, per durability class:
              access (commits with synchronous=FULL) and telemetry (NORMAL), telemetry both
              committed at once (linger 0) and with gatewayd's default 20 ms linger.

    python3 tools/bench/e2e.py [--build-dir build] [--smoke]
"""
import argparse
import os
import subprocess
import sys
import time

from benchlib import Figures, Workdir, build_dir, exe, quiet_broker, run_tool


def mosquitto_pub_rate(work, broker, count):
    # mosquitto_pub -l at QoS 1 stops early past 65,535 lines (message ids wrap): stay below.
    lines = work.file("pub-lines.txt")
    with open(lines, "w") as f:
        f.write(("x" * 100 + "\n") * count)
    start = time.monotonic()
    with open(lines) as stdin:
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                        "-t", "bench/pub", "-l"], stdin=stdin, check=True, timeout=120)
    return count / (time.monotonic() - start)


# (figure name, class, telemetry_linger ms): telemetry both committed at once and with
# gatewayd's default linger (buffer.telemetry_linger: 20ms); access never lingers.
LATENCY_RUNS = (("telemetry", "telemetry", 0), ("telemetry_linger20", "telemetry", 20),
                ("access", "access", 0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--events", type=int,
                    help="throughput events (default 1,000,000; smoke 20,000)")
    ap.add_argument("--latency-seconds", type=int, help="per class (default 20; smoke 3)")
    args = ap.parse_args()
    build = build_dir(args.build_dir)
    bench = exe(build, "tools/bench/e2e_bench")
    events = args.events or (20000 if args.smoke else 1000000)
    bare_rows = 20000 if args.smoke else 1000000
    bare_msgs = 5000 if args.smoke else 50000
    lat_s = args.latency_seconds or (3 if args.smoke else 20)

    fig = Figures("end-to-end throughput and live latency (Router + Uplink in-process)")
    with Workdir("bench-e2e") as work:
        broker = quiet_broker(work)
        sql = run_tool([bench, "bare-sqlite", "--dir", work.file("bare"), "--events",
                        str(bare_rows), "--batch", "100"], 600, "bare_sqlite")
        sql_full = run_tool([bench, "bare-sqlite", "--dir", work.file("bare"), "--events",
                             str(bare_rows), "--batch", "100", "--full"], 600, "bare_sqlite")
        paho = run_tool([bench, "bare-paho", "--uri", broker.uri, "--messages", str(bare_msgs),
                         "--window", "100"], 300, "bare_paho")
        pub = mosquitto_pub_rate(work, broker, bare_msgs)
        pipe = run_tool([bench, "pipeline", "--uri", broker.uri, "--dir", work.file("pipe"),
                         "--events", str(events)], 900, "pipeline")
        lat = {}
        for name, cls, linger in LATENCY_RUNS:
            lat[name] = run_tool([bench, "latency", "--uri", broker.uri, "--dir",
                                  work.file(f"lat-{name}"), "--rate", "1000", "--seconds",
                                  str(lat_s), "--class", cls, "--linger-ms", str(linger)],
                                 lat_s + 120, "latency")
        work.failed = False

    bare_id = sql["insert_delete_rate"]
    rate = pipe["rate"]
    fig.add("bare_sqlite_insert_delete", bare_id, "rows/s",
            "bare SQLite insert+delete, batches of 100, NORMAL",
            f"(insert {sql['insert_rate']:.0f}/s, select+delete {sql['delete_rate']:.0f}/s)",
            insert=sql["insert_rate"], delete=sql["delete_rate"], rows=bare_rows)
    fig.add("bare_sqlite_insert_delete_full", sql_full["insert_delete_rate"], "rows/s",
            "bare SQLite insert+delete, batches of 100, FULL",
            f"(insert {sql_full['insert_rate']:.0f}/s)", insert=sql_full["insert_rate"])
    fig.add("bare_paho_publish", paho["rate"], "msg/s", "bare Paho async QoS 1, window 100",
            f"({bare_msgs} x 100 B)")
    fig.add("bare_mosquitto_pub", pub, "msg/s", "bare mosquitto_pub -l QoS 1",
            f"({bare_msgs} lines)")
    fig.add("e2e_throughput", rate, "events/s", "end-to-end: commit+publish+PUBACK+ack",
            f"{rate / bare_id:.2f}x bare SQLite; {rate / paho['rate']:.2f}x bare Paho msg/s; "
            f"{pipe['publishes']:.0f} publishes for {events} events "
            f"(target >= 200000 and >= 0.40x SQLite)",
            bare=bare_id, ratio=round(rate / bare_id, 3), bare_paho=paho["rate"],
            ratio_paho=round(rate / paho["rate"], 3), events=events,
            complete=int(pipe["complete"]))
    for name, cls, linger in LATENCY_RUNS:
        r = lat[name]
        sync = "FULL" if cls == "access" else "NORMAL"
        target = "target p99 <= 5 ms" if cls == "access" else (
            "target p99 <= 2 ms" if linger == 0 else "the daemon's default: waits by design")
        fig.add(f"live_latency_{name}_p99", r["p99_ms"], "ms",
                f"live latency {cls} ({sync}, linger {linger} ms) at 1000/s p99",
                f"p50 {r['p50_ms']:.3f} ms, max {r['max_ms']:.3f} ms ({target})",
                p50=r["p50_ms"], max=r["max_ms"], events=r["events"], linger_ms=linger,
                complete=int(r["complete"]))
    fig.table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
