"""Gate backfill, end to end: gate_sim -> gatewayd -> mosquitto -> central subscriber, for both
gate drivers (modbus_gate, uhppote).

For each driver, twice:
- "stop": the gateway runs and sees 5 live passages, is stopped (SIGTERM) while the simulated
  gate records 500 more, then restarted;
- "kill": the same, but the gateway is killed with SIGKILL while it is reading those 500 back
  (the gate answers slowly so that the kill lands mid-backfill; the test checks it did), then
  restarted once more.
Afterwards the central subscriber, deduplicating by (gateway_id, seq), must hold every one of the
505 passages exactly once by the gate's own log index (a log entry read twice would arrive under
two seqs), the 500 marked historical=true and the 5 live ones historical=false. Card ids are a
function of the passage number (tools/sim/gate_sim_core.h), and gate_sim's passages log maps
each card to its log index.
"""
import argparse
import json
import os
import select
import signal
import sqlite3
import subprocess
import time

from harness import Broker, Gatewayd, Workdir, free_port, log, wait_for

GATEWAY = "it-gw-gates"
SERIAL = 405419896
SEED = 11
LIVE = 5
OFFLINE = 500


class GateSim:
    """gate_sim with a command pipe on stdin; each command waits for its "ok" line."""

    def __init__(self, work, build, gates, extra=()):
        self.passages_log = work.file(f"gate-sim-{gates}.passages.jsonl")
        err = open(work.file(f"gate-sim-{gates}.stderr"), "wb")
        self.proc = subprocess.Popen(
            [os.path.join(build, "tools/sim/gate_sim"), "--gates", gates, "--seed", str(SEED),
             "--log-size", "1000", "--uhppote-log-size", "2000", "--serial-number", str(SERIAL),
             "--passages-log", self.passages_log, *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        self.proc.name = f"gate-sim-{gates}"
        work.procs.append(self.proc)
        self.buf = b""
        self.ports = {}
        while True:
            line = self.readline(10)
            if line == "ready":
                break
            parts = line.split()
            self.ports[parts[0]] = int(parts[2])

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, "gate_sim did not answer in time"
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                assert chunk, "gate_sim exited"
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def command(self, text):
        self.proc.stdin.write((text + "\n").encode())
        self.proc.stdin.flush()
        reply = self.readline(30)
        assert reply.startswith("ok "), f"gate_sim said {reply!r} to {text!r}"
        return reply

    def index_by_card(self, key):
        out = {}
        for line in open(self.passages_log):
            rec = json.loads(line)
            out[str(rec["card"])] = rec[key]
        return out


class Central:
    """The central subscriber with raw card ids shown, so a card maps back to its log entry."""

    def __init__(self, work, build, broker):
        self.out = work.file("central.stdout")
        self.report = work.file("central-report.json")
        self.proc = work.spawn("central", [
            os.path.join(build, "tools/central/central_subscriber"), "--uri", broker.uri,
            "--client-id", "it-central-gates", "--json", "--show-credentials",
            "--report", self.report])
        wait_for(lambda: os.path.exists(self.report), 10, "the subscriber's first report")

    def events(self, device):
        out = []
        try:
            lines = open(self.out).read().splitlines()
        except OSError:
            return out
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line being written
            ev = rec.get("event")
            if rec.get("gateway_id") == GATEWAY and ev and ev.get("device_id") == device:
                out.append(ev)
        return out

    def distinct_access(self, device):
        """Access events of the device, deduplicated by seq (the central's event id)."""
        by_seq = {}
        for ev in self.events(device):
            if "access" in ev:
                by_seq[int(ev["seq"])] = ev
        return [by_seq[s] for s in sorted(by_seq)]


def committed_index(data_dir, device):
    """The log index the gateway committed for the device (its cursor), read beside it."""
    try:
        db = sqlite3.connect(f"file:{data_dir}/buffer.db?mode=ro", uri=True, timeout=1)
        try:
            row = db.execute("SELECT value FROM cursors WHERE device_id=?", (device,)).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return 0
    return int(row[0].split("@")[0]) if row else 0


def write_config(work, broker, device_yaml):
    path = work.file("gateway.yaml")
    with open(path, "w") as f:
        f.write(f"""gateway:
  id: {GATEWAY}
  site: test-site
  building: test-building
  data_dir: data
control: {{ socket: gatewayd.sock }}
mqtt:
  uri: {broker.uri}
  max_inflight: 10
  batch_max_events: 50
  backoff: {{ initial: 100ms, max: 1s }}
devices:
{device_yaml}""")
    return path


def device_yaml(driver, sim):
    if driver == "modbus_gate":
        return f"""  - id: gate-m
    kind: access_gate
    driver: modbus_gate
    address: 127.0.0.1:{sim.ports['modbus']}
    poll: 200ms
    timeout: 150ms
    registers: {{ status: 0, log: 100 }}
    log_size: 1000
    door: north-gate-1
"""
    return f"""  - id: gate-u
    kind: access_gate
    driver: uhppote
    address: 127.0.0.1:{sim.ports['uhppote']}
    serial_number: {SERIAL}
    poll: 200ms
    timeout: 150ms
    door: library-main
"""


def check_exactly_once(central, device, sim, driver, expected):
    """Every passage 1..expected exactly once by log index; historical only for the backlog."""
    key = "modbus_index" if driver == "modbus_gate" else "uhppote_index"
    index_of = sim.index_by_card(key)
    events = central.distinct_access(device)
    indices = []
    for ev in events:
        card = ev["access"]["credential"]
        assert card in index_of, f"{device}: credential {card} is no passage the gate recorded"
        indices.append(index_of[card])
    dupes = sorted({i for i in indices if indices.count(i) > 1})
    assert not dupes, f"{device}: log entries delivered twice under different seqs: {dupes[:20]}"
    assert sorted(indices) == list(range(1, expected + 1)), (
        f"{device}: expected log indices 1..{expected}, missing "
        f"{sorted(set(range(1, expected + 1)) - set(indices))[:20]}")
    for ev in events:
        i = index_of[ev["access"]["credential"]]
        want = i > LIVE
        assert bool(ev.get("historical")) == want, f"{device}: index {i} historical should be {want}"
        assert ev["device_time_us"] != "0", f"{device}: index {i} has no device time"
    # Per device and class, seq order is observation order: the log's order.
    assert indices == sorted(indices), f"{device}: entries out of log order"
    return events


def run(driver, mode, build):
    gates = "modbus" if driver == "modbus_gate" else "uhppote"
    device = "gate-m" if driver == "modbus_gate" else "gate-u"
    with Workdir(f"gate-{driver}-{mode}") as work:
        broker = Broker(work).start()
        central = Central(work, build, broker)
        sim = GateSim(work, build, gates)
        config = write_config(work, broker, device_yaml(driver, sim))

        gw = Gatewayd(work, build, config, name="gatewayd-1")
        # The first door state carries the starting point; only after it are passages "new".
        wait_for(lambda: any("meter" in e for e in central.events(device)), 20,
                 f"{device}'s first door state")
        sim.command(f"pass {LIVE}")
        wait_for(lambda: len(central.distinct_access(device)) >= LIVE, 20, "the live passages")
        assert gw.stop() == 0, "gatewayd must exit 0 on SIGTERM"

        sim.command(f"pass {OFFLINE}")
        if mode == "kill":
            # A slow gate (a few seconds for the backlog), so that a kill -9 lands while the
            # backlog is being read: modbus_gate reads 15 entries per request, uhppote one.
            sim.command("delay 100" if driver == "modbus_gate" else "delay 5")
        started = time.monotonic()
        gw = Gatewayd(work, build, config, name="gatewayd-2")
        if mode == "kill":
            wait_for(lambda: committed_index(gw.data_dir, device) >= LIVE + 50, 30,
                     "the first 50 backfilled entries committed")
            gw.proc.send_signal(signal.SIGKILL)
            gw.proc.wait()
            at_kill = committed_index(gw.data_dir, device)
            assert at_kill < LIVE + OFFLINE, (
                f"the kill came after the backfill ended (cursor {at_kill}): nothing was proved")
            log(f"{driver}: killed mid-backfill, cursor at index {at_kill} of {LIVE + OFFLINE}, "
                f"{len(central.distinct_access(device))} at the subscriber")
            sim.command("delay 0")
            started = time.monotonic()
            gw = Gatewayd(work, build, config, name="gatewayd-3")
        wait_for(lambda: len(central.distinct_access(device)) >= LIVE + OFFLINE, 60,
                 f"all {LIVE + OFFLINE} passages at the subscriber")
        elapsed = time.monotonic() - started
        time.sleep(1.0)  # anything delivered twice would show up now
        events = check_exactly_once(central, device, sim, driver, LIVE + OFFLINE)
        received = sum(1 for e in central.events(device) if "access" in e)
        log(f"{driver}/{mode}: {OFFLINE} backfilled entries at the subscriber {elapsed:.2f}s after "
            f"the last restart; {len(events)} distinct access events, {received} received "
            f"(duplicates by seq: {received - len(events)})")
        assert gw.stop() == 0
        work.failed = False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--driver", choices=["modbus_gate", "uhppote"], action="append")
    ap.add_argument("--mode", choices=["stop", "kill"], action="append")
    args = ap.parse_args()
    for driver in args.driver or ["modbus_gate", "uhppote"]:
        for mode in args.mode or ["stop", "kill"]:
            run(driver, mode, args.build_dir)
    log("gate backfill: ok")


if __name__ == "__main__":
    main()
