"""gatewayd under a stand-in for systemd: the test binds the Unix datagram socket systemd would
pass as NOTIFY_SOCKET, sets WATCHDOG_USEC, and reads what the daemon tells it.

1. READY=1 arrives only once the buffer file exists and the control socket answers; WATCHDOG=1
   then arrives regularly (every WATCHDOG_USEC/2, never a gap of WATCHDOG_USEC); SIGHUP gives
   RELOADING=1 then READY=1.
2. SIGTERM with the broker up: STOPPING=1, exit 0 within 10 s, every committed seq is at the
   subscriber or still in the buffer, and the retained state on the broker says offline.
3. SIGTERM with the broker down: still exit 0 within 10 s, and the unsent events stay buffered.
4. The watchdog: gatewayd_freeze (a test-only build, tests/gateway/gatewayd_freeze_main.cpp)
   freezes its core loop on purpose. The keep-alives stop while the process lives on; the test
   then does what systemd does (SIGABRT, start again) and the restarted daemon is ready again
   and continues the seq where the frozen one stopped.
"""
import argparse
import json
import os
import resource
import signal
import socket
import sqlite3
import sys
import threading
import time

from harness import (Broker, ModbusSim, Subscriber, Workdir, gateway_config, log, stop_process,
                     wait_for)

GATEWAY = "sd-gw-01"
WATCHDOG_USEC = 1_000_000  # keep-alives expected every 0.5 s
STOP_LIMIT_S = 10.0


class FakeSystemd:
    """The notify socket: every datagram with the monotonic time it arrived."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages = []  # (time, {key: value})
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self.lock:
                self.messages.append((time.monotonic(), fields))

    def env(self):
        env = dict(os.environ)
        env.update(NOTIFY_SOCKET=self.path, WATCHDOG_USEC=str(WATCHDOG_USEC))
        env.pop("WATCHDOG_PID", None)
        return env

    def clear(self):
        with self.lock:
            self.messages.clear()

    def with_key(self, key, since=0.0):
        with self.lock:
            return [(t, f) for t, f in self.messages if key in f and t >= since]

    def wait(self, key, timeout, since=0.0):
        try:
            return wait_for(lambda: self.with_key(key, since), timeout,
                            f"{key} on the notify socket")[0]
        except AssertionError:
            with self.lock:
                recent = [(round(t - since, 3), f) for t, f in self.messages[-8:]]
            log(f"the last notifications (time relative to the wait): {recent}")
            raise

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


def no_core_dumps():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def start_daemon(work, build, config, notify, name, binary="gateway/gatewayd", extra=()):
    return work.spawn(name, [os.path.join(build, binary), "--config", config, *extra],
                      env=notify.env(), preexec_fn=no_core_dumps)


def check_keepalives(notify, since, until):
    """Regular WATCHDOG=1 between since and until: no gap reaches WATCHDOG_USEC."""
    times = [t for t, _ in notify.with_key("WATCHDOG") if since <= t <= until]
    assert times, "no WATCHDOG=1 at all"
    points = [since] + times
    worst = max(b - a for a, b in zip(points, points[1:]))
    expected = (until - since) / (WATCHDOG_USEC / 2e6)
    assert len(times) >= expected * 0.7, f"{len(times)} keep-alives in {until - since:.1f}s"
    assert worst < WATCHDOG_USEC / 1e6, f"keep-alives {worst:.2f}s apart"
    return len(times), worst


def buffer_state(data_dir):
    db = sqlite3.connect(f"file:{data_dir}/buffer.db?mode=ro", uri=True)
    try:
        seqs = [r[0] for r in db.execute("SELECT seq FROM events ORDER BY seq")]
        next_seq = db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0]
    finally:
        db.close()
    return seqs, int(next_seq)


def retained_online(work, build, broker):
    """What the retained state topic says now, read by a fresh subscriber."""
    report = work.file("state-report.json")
    proc = work.spawn("state-sub", [
        os.path.join(build, "tools/central/central_subscriber"), "--uri", broker.uri,
        "--topic", "campus/+/+/+/state", "--quiet", "--report", report, "--duration-s", "2"])
    proc.wait(timeout=15)
    with open(report) as f:
        return json.load(f)["gateways"].get(GATEWAY, {}).get("online")


def scenario_ready_watchdog_stop(work, build, broker, sim):
    notify = FakeSystemd(work.file("notify.sock"))
    central = Subscriber(work, build, broker)
    config = gateway_config(work, broker, sim.ports, GATEWAY)
    data_dir = os.path.join(work.path, "data")
    started = time.monotonic()
    gw = start_daemon(work, build, config, notify, "gatewayd")

    ready_at, ready = notify.wait("READY", 15)
    # Ready means ready: the buffer is there and the control socket answers right away.
    assert os.path.exists(os.path.join(data_dir, "buffer.db")), "READY=1 before the buffer exists"
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ctl.settimeout(5)
    ctl.connect(work.file("gatewayd.sock"))
    ctl.sendall(b'{"v":1,"id":1,"cmd":"status"}\n')
    status = json.loads(ctl.makefile().readline())
    ctl.close()
    assert status["ok"] and status["result"]["gateway_id"] == GATEWAY, status
    assert GATEWAY in ready.get("STATUS", ""), ready
    log(f"READY=1 {ready_at - started:.2f}s after start: {ready}")

    time.sleep(4)
    count, worst = check_keepalives(notify, ready_at, time.monotonic())
    log(f"{count} keep-alives in 4 s, at most {worst:.2f}s apart")

    hup_at = time.monotonic()
    gw.send_signal(signal.SIGHUP)
    reloading_at, _ = notify.wait("RELOADING", 5, since=hup_at)
    ready_again_at, _ = notify.wait("READY", 5, since=reloading_at)
    assert ready_again_at >= reloading_at
    assert "reloaded" in open(work.file("gatewayd.stderr")).read()

    wait_for(lambda: central.gateway(GATEWAY).get("received", 0) >= 20, 20,
             "20 events at the subscriber")
    term_at = time.monotonic()
    gw.send_signal(signal.SIGTERM)
    code = gw.wait(timeout=STOP_LIMIT_S + 5)
    took = time.monotonic() - term_at
    assert code == 0, f"exit {code} on SIGTERM"
    assert took < STOP_LIMIT_S, f"SIGTERM took {took:.1f}s"
    stopping = notify.with_key("STOPPING", since=term_at)
    assert stopping, "no STOPPING=1 on SIGTERM"
    log(f"SIGTERM: STOPPING=1 after {stopping[0][0] - term_at:.3f}s, exit 0 after {took:.2f}s")

    time.sleep(1.0)
    central.stop()
    report = central.gateway(GATEWAY)
    buffered, next_seq = buffer_state(data_dir)
    received = {int(e["event"]["seq"]) for e in central.events() if e["gateway_id"] == GATEWAY}
    missing = set(range(1, next_seq)) - received - set(buffered)
    assert not missing, f"{len(missing)} committed events lost on SIGTERM: {sorted(missing)[:10]}"
    assert retained_online(work, build, broker) is False, "retained state still says online"
    notify.close()
    return {"ready_s": round(ready_at - started, 2), "keepalives_4s": count,
            "stop_s": round(took, 2), "events": next_seq - 1, "buffered_at_stop": len(buffered),
            "received": report["received"]}


def scenario_stop_broker_down(work, build, broker, sim):
    notify = FakeSystemd(work.file("notify-down.sock"))
    data_dir = os.path.join(work.path, "data")
    _, next_before = buffer_state(data_dir)
    config = gateway_config(work, broker, sim.ports, GATEWAY)
    gw = start_daemon(work, build, config, notify, "gatewayd-down")
    notify.wait("READY", 15)
    broker.stop()
    time.sleep(3)  # events pile up in the buffer
    term_at = time.monotonic()
    gw.send_signal(signal.SIGTERM)
    code = gw.wait(timeout=STOP_LIMIT_S + 5)
    took = time.monotonic() - term_at
    assert code == 0 and took < STOP_LIMIT_S, (code, took)
    buffered, next_seq = buffer_state(data_dir)
    assert next_seq > next_before and buffered, "nothing was buffered while the broker was down"
    assert buffered == list(range(buffered[0], next_seq)), "the buffered seqs have holes"
    log(f"broker down: SIGTERM exit 0 after {took:.2f}s, {len(buffered)} events kept buffered")
    notify.close()
    broker.start()
    return {"stop_s_broker_down": round(took, 2), "kept_buffered": len(buffered)}


def scenario_frozen_loop(work, build, broker, sim):
    notify = FakeSystemd(work.file("notify-freeze.sock"))
    data_dir = os.path.join(work.path, "data")
    config = gateway_config(work, broker, sim.ports, GATEWAY)
    freeze_after_s = 2.0
    gw = start_daemon(work, build, config, notify, "gatewayd-freeze",
                      "tests/gateway/gatewayd_freeze",
                      ["--freeze-after", str(int(freeze_after_s * 1000))])
    ready_at, _ = notify.wait("READY", 15)
    time.sleep(freeze_after_s - 0.2)
    count, _ = check_keepalives(notify, ready_at, time.monotonic())
    wait_for(lambda: "freezing the core loop" in open(work.file("gatewayd-freeze.stderr")).read(),
             5, "the freeze")
    # Systemd's view: WatchdogSec passes without a keep-alive. Watch three times that long.
    frozen_at = time.monotonic()
    time.sleep(3 * WATCHDOG_USEC / 1e6)
    last = notify.with_key("WATCHDOG")[-1][0]
    silent = time.monotonic() - last
    assert gw.poll() is None, "the frozen daemon exited; the test needs it alive and stuck"
    assert not notify.with_key("WATCHDOG", since=frozen_at + 0.1), "keep-alives from a frozen loop"
    assert silent > 3 * WATCHDOG_USEC / 1e6, silent
    log(f"frozen loop: {count} keep-alives before the freeze, then none for {silent:.1f}s")

    # What systemd does next: WatchdogSignal (SIGABRT), then Restart=on-failure.
    _, seq_before = buffer_state(data_dir)
    gw.send_signal(signal.SIGABRT)
    code = gw.wait(timeout=10)
    assert code == -signal.SIGABRT, code
    notify.clear()
    restarted = start_daemon(work, build, config, notify, "gatewayd-restarted")
    restart_ready_at, _ = notify.wait("READY", 15)
    time.sleep(2)
    check_keepalives(notify, restart_ready_at, time.monotonic())
    assert stop_process(restarted) == 0
    _, seq_after = buffer_state(data_dir)
    assert seq_after > seq_before, "the restarted daemon committed nothing"
    notify.close()
    return {"keepalives_before_freeze": count, "silent_s": round(silent, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    with Workdir("systemd") as work:
        broker = Broker(work).start()
        sim = ModbusSim(work, args.build_dir, devices=2, tick_ms=200)
        figures = scenario_ready_watchdog_stop(work, args.build_dir, broker, sim)
        figures.update(scenario_stop_broker_down(work, args.build_dir, broker, sim))
        figures.update(scenario_frozen_loop(work, args.build_dir, broker, sim))
        print("systemd: " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
