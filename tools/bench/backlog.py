#!/usr/bin/env python3
"""Start-up with a backlog, and the backlog's drain, by the real gatewayd.

A backlog of N telemetry events (default 1,000,000) is written into a fresh data_dir's buffer.db
by tools/bench/fill_buffer — the rows the router would have committed while the broker was down
(the same EventBuffer code writes them) — and then the real gatewayd starts against a running
mosquitto on a free loopback port and drains it:

  start-up: from exec to READY=1 on a NOTIFY_SOCKET this script binds (sd_notify, as under
            systemd), and to the first answer of the control socket's `status`;
  (the first connect's random start-up splay is set to 0: it would add up to 0.5 s of jitter)
  drain:    from exec until the buffer is empty (every event PUBACKed and removed), polled on
            the control socket every 100 ms; gatewayd's own "backlog sent" time from its log;
            peak RSS (VmHWM) and the highest VmRSS sampled during the drain; CPU seconds.

    python3 tools/bench/backlog.py [--build-dir build] [--events 1000000] [--smoke]
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import time

from benchlib import (Figures, Workdir, build_dir, control, cpu_seconds, exe, mem_mib,
                      quiet_broker, terminate)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--events", type=int, help="backlog size (default 1,000,000; smoke 20,000)")
    ap.add_argument("--timeout", type=float, default=600, help="give up on the drain after this")
    args = ap.parse_args()
    build = build_dir(args.build_dir)
    events = args.events or (20000 if args.smoke else 1000000)
    gatewayd = exe(build, "gateway/gatewayd")
    fill = exe(build, "tools/bench/fill_buffer")

    fig = Figures(f"backlog of {events} events: start-up and drain (real gatewayd)")
    with Workdir("bench-backlog") as work:
        broker = quiet_broker(work)
        data = work.file("data")
        os.makedirs(data)
        t = time.monotonic()
        out = subprocess.run([fill, os.path.join(data, "buffer.db"), str(events), "1000"],
                             capture_output=True, text=True, check=True, timeout=900).stdout
        fill_s = time.monotonic() - t
        fill_rate = float(re.search(r"insert_rate=(\d+)", out).group(1))
        sock = work.file("gatewayd.sock")
        config = work.file("gateway.yaml")
        with open(config, "w") as f:
            f.write(f"""gateway: {{ id: bench-gw, site: bench, building: b, data_dir: data }}
control: {{ socket: gatewayd.sock }}
mqtt: {{ uri: "{broker.uri}", max_inflight: 64, backoff: {{ splay: 0s }} }}
devices: []
""")
        notify_path = work.file("notify.sock")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(0.01)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        t0 = time.monotonic()
        gw = work.spawn("gatewayd", [gatewayd, "--config", config], env=env)
        ready_s = status_s = drained_s = None
        max_rss = 0.0
        deadline = t0 + args.timeout
        next_poll = t0
        while time.monotonic() < deadline and gw.poll() is None:
            try:
                msg = notify.recv(4096).decode(errors="replace")
                if ready_s is None and "READY=1" in msg.split("\n"):
                    ready_s = time.monotonic() - t0
            except socket.timeout:
                pass
            now = time.monotonic()
            if status_s is None:
                if os.path.exists(sock) and control(sock, "status", 0.5) is not None:
                    status_s = time.monotonic() - t0
                continue
            if now < next_poll:
                continue
            next_poll = now + 0.1
            max_rss = max(max_rss, mem_mib(gw.pid)[0])
            st = control(sock, "status")
            if st and st["buffer"]["pending"] == 0:
                drained_s = time.monotonic() - t0
                break
        if gw.poll() is not None:
            raise SystemExit(f"bench: gatewayd exited {gw.returncode} during the drain")
        cpu = cpu_seconds(gw.pid)
        rss, hwm = mem_mib(gw.pid)
        max_rss = max(max_rss, rss)
        st = control(sock, "status") or {}
        terminate(gw)
        notify.close()
        log = open(work.file("gatewayd.stderr"), errors="replace").read()
        m = re.search(r"backlog of (\d+) events sent in (\d+)ms", log)
        sent_ms = float(m.group(2)) if m else -1.0
        if drained_s is None:
            raise SystemExit(f"bench: the backlog did not drain within {args.timeout:.0f} s "
                             f"(pending {st.get('buffer', {}).get('pending')})")
        work.failed = False

    acked = st.get("mqtt", {}).get("acked_events", 0)
    fig.add("backlog_fill_rate", fill_rate, "events/s",
            "fill_buffer (EventBuffer, batches of 1000)",
            f"{events} events in {fill_s:.1f} s")
    fig.add("startup_ready", ready_s if ready_s is not None else -1.0, "s",
            "start-up: exec -> READY=1 (sd_notify)",
            f"with {events} events buffered (target <= 1 s)",
            events=events)
    fig.add("startup_status", status_s, "s", "start-up: exec -> control socket answers", "")
    fig.add("backlog_drain", drained_s, "s", "drain: exec -> buffer empty",
            f"{events / drained_s:.0f} events/s; gatewayd's backlog sent after "
            f"{sent_ms / 1000:.2f} s from connect (target <= 10 s)",
            events=events, rate=round(events / drained_s), acked=acked, cpu_s=round(cpu, 2))
    fig.add("backlog_drain_rss", hwm, "MiB", "drain: gatewayd peak RSS (VmHWM)",
            f"highest sampled VmRSS {max_rss:.1f} MiB (target <= 48 MiB)", sampled_max=max_rss)
    fig.add("backlog_drain_cpu", cpu, "s", "drain: gatewayd CPU (user+sys)",
            f"over {drained_s:.2f} s wall")
    fig.table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
