"""privacy.card_id: hmac, end to end: 10,000 card numbers go through a simulated tcp_line reader
(half delivered, half held in the buffer while the broker is down). Then every place an operator
or an attacker with the disk could look — the daemon's log, gatewayctl's output (status, devices,
buffer, buffer export, tail and trace streams, the support bundle), and the SQLite files
(buffer.db, -wal, -shm) — is searched for every one of the numbers, as text and as the hex of
their bytes: none may be there. Every credential the central side gets is "h:" + the lowercase
hex HMAC-SHA256 under the key file's bytes (without the final newline) of the card id as raw mode
prints it, computed here with Python's hmac."""
import argparse
import hashlib
import hmac
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time

from harness import Broker, Gatewayd, Subscriber, Workdir, log, wait_for

GATEWAY = "privacy-gw-01"
SEED = 987654000000  # 12-digit card numbers
COUNT = 10000
KEY = b"campus-card-key-for-the-privacy-test-0123456789"

DIGIT_RUN = re.compile(rb"[0-9]{12,}")
HEX_RUN = re.compile(rb"(?:[0-9A-Fa-f]{2}[ :]?){12,}")


class Finder:
    """Finds card numbers in bytes: as decimal text, and as the hex of their ASCII bytes (how a
    trace would show a raw frame), with or without separators, in either case."""

    def __init__(self, cards):
        self.cards = set(cards)
        self.hex_cards = {c.encode().hex() for c in cards}
        self.width = len(next(iter(self.cards)))

    def find(self, data):
        found = set()
        w = self.width
        for m in DIGIT_RUN.finditer(data):
            run = m.group().decode()
            for i in range(len(run) - w + 1):
                if run[i:i + w] in self.cards:
                    found.add(run[i:i + w])
        for m in HEX_RUN.finditer(data):
            run = re.sub(rb"[ :]", b"", m.group()).decode().lower()
            for i in range(len(run) - 2 * w + 1):
                if run[i:i + 2 * w] in self.hex_cards:
                    found.add(bytes.fromhex(run[i:i + 2 * w]).decode())
        return found


def expected_credential(card):
    return "h:" + hmac.new(KEY, card.encode(), hashlib.sha256).hexdigest()


def sim_line(work, name, prefix):
    def find():
        try:
            for line in open(work.file(f"{name}.stdout")):
                if line.startswith(prefix):
                    return line.split()[1] if len(line.split()) > 1 else line
        except OSError:
            return None
        return None
    return find


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    build = args.build_dir
    ctl = os.path.join(build, "tools/gatewayctl/gatewayctl")
    with Workdir("privacy-hmac") as work:
        broker = Broker(work).start()
        central = Subscriber(work, build, broker, client_id="it-central-privacy")
        cards_file = work.file("cards.txt")
        work.spawn("sim", [
            os.path.join(build, "tools/sim/card_reader_sim"), "--tcp", "--framing", "line",
            "--format", "decimal", "--digits", "12", "--seed", str(SEED), "--count", str(COUNT),
            "--rate", "1000", "--garbage-every", "97", "--cards-file", cards_file])
        port = int(wait_for(sim_line(work, "sim", "listening"), 10, "the simulator's port"))
        key_file = work.file("card.key")
        with open(key_file, "wb") as f:
            f.write(KEY + b"\n")  # the final newline is not part of the key
        os.chmod(key_file, 0o600)
        config = work.file("gateway.yaml")
        with open(config, "w") as f:
            f.write(f"""gateway: {{ id: {GATEWAY}, site: north, building: library, data_dir: data }}
control: {{ socket: gatewayd.sock }}
mqtt: {{ uri: "{broker.uri}", max_inflight: 64, batch_max_events: 200,
        backoff: {{ initial: 100ms, max: 1s }} }}
privacy: {{ card_id: hmac, key_file: card.key }}
devices:
  - id: reader-1
    kind: card_reader
    driver: tcp_line
    address: 127.0.0.1:{port}
    door: main-entrance
    direction: in
    framing: {{ type: line, delimiter: "\\r\\n", max_length: 64 }}
    card_format: decimal
""")
        gw = Gatewayd(work, build, config)
        outputs = {}  # name -> bytes, everything gatewayctl printed

        def ctl_run(name, *argv, ok=(0,)):
            p = subprocess.run([ctl, "--config", config, *argv], capture_output=True, timeout=60)
            assert p.returncode in ok, (argv, p.returncode, p.stderr[-2000:])
            outputs[name] = p.stdout + p.stderr
            return p.stdout

        wait_for(lambda: os.path.exists(work.file("gatewayd.sock")), 10, "the control socket")
        # Live streams an operator might leave running, asking for credentials they may not see.
        streams = {}
        for name, argv in {
            "tail": ["tail", "--show-credentials"],
            "tail-json": ["tail", "--json", "--show-credentials"],
            "trace": ["trace", "reader-1", "--show-credentials"],
            "trace-json": ["trace", "reader-1", "--json"],
        }.items():
            streams[name] = work.spawn(f"ctl-{name}", [ctl, "--config", config, *argv])

        # Half the swipes reach the central side, then the broker goes down and the rest wait in
        # the buffer (so buffer.db holds access events when it is searched).
        def central_access():
            return central.gateway(GATEWAY).get("by_class", {}).get("access", 0)
        wait_for(lambda: central_access() >= COUNT // 2, 60, "half the swipes at the central side")
        broker.stop()
        wait_for(sim_line(work, "sim", "done"), 60, "the simulator to send every swipe")
        cards = open(cards_file).read().split()
        assert len(cards) == COUNT

        def committed():
            out = json.loads(ctl_run("devices-json", "devices", "--json"))
            return {d["id"]: d for d in out["devices"]}["reader-1"]["events"]
        wait_for(lambda: committed() >= COUNT, 30, "every swipe committed")
        time.sleep(1)  # the streams catch up

        ctl_run("status", "status")
        ctl_run("status-json", "status", "--json")
        ctl_run("devices", "devices")
        ctl_run("device", "devices", "reader-1")
        ctl_run("device-json", "devices", "reader-1", "--json")
        buffer_json = json.loads(ctl_run("buffer-json", "buffer", "--oldest", "1000", "--json"))
        ctl_run("buffer", "buffer", "--oldest", "1000")
        pending = buffer_json.get("pending", buffer_json)
        log("buffer while the broker is down:", json.dumps(pending)[:300])
        export = work.file("export.jsonl")
        ctl_run("export", "buffer", "export", export, "--show-credentials", "--data-dir",
                os.path.join(work.path, "data"))
        outputs["export-file"] = open(export, "rb").read()
        exported = [json.loads(l) for l in outputs["export-file"].splitlines() if l.strip()]
        held = [e for e in exported if "access" in json.dumps(e)]
        assert held, "the buffer export holds the swipes waiting for the broker"
        assert all(e["access"]["credential"].startswith("h:") for e in held if "access" in e), held[0]
        bundle = work.file("bundle.tar.gz")
        ctl_run("bundle", "bundle", bundle, ok=(0, 1))
        with tarfile.open(bundle) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    outputs["bundle:" + member.name] = tar.extractfile(member).read()
        assert any(k.startswith("bundle:") for k in outputs), "an empty bundle"

        # The SQLite files as they are while the swipes wait in them (after the drain, acked rows
        # are gone), and again at the end.
        data_dir = os.path.join(work.path, "data")
        for name in sorted(os.listdir(data_dir)):
            outputs["data-held/" + name] = open(os.path.join(data_dir, name), "rb").read()
        assert len(outputs["data-held/buffer.db"]) + len(outputs.get("data-held/buffer.db-wal", b"")) > 0

        # The broker comes back: the held half drains.
        broker.start()
        wait_for(lambda: central_access() >= COUNT, 60, f"all {COUNT} swipes at the central side")
        for name, proc in streams.items():
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)
            outputs["stream:" + name] = open(work.file(f"ctl-{name}.stdout"), "rb").read()
        assert gw.stop() == 0

        # Credentials: one by hand, then all of them in swipe order.
        by_seq = {}
        for e in central.events():
            ev = e["event"]
            if e["gateway_id"] == GATEWAY and ev.get("device_id") == "reader-1" and "access" in ev:
                by_seq[int(ev["seq"])] = ev["access"]["credential"]
        credentials = [by_seq[s] for s in sorted(by_seq)]
        first = "h:" + hmac.new(KEY, cards[0].encode(), hashlib.sha256).hexdigest()
        assert credentials[0] == first, (credentials[0], first)
        assert re.fullmatch(r"h:[0-9a-f]{64}", credentials[0])
        assert credentials == [expected_credential(c) for c in cards], "credentials != HMAC of cards"

        # The search itself works: it finds every number in the simulator's list, in hex too.
        finder = Finder(cards)
        assert len(finder.find(open(cards_file, "rb").read())) == COUNT
        sample = cards[123].encode().hex(" ").upper().encode()
        assert finder.find(b"rx " + sample + b" ok") == {cards[123]}
        # ... and the streams had something to hide: frames were traced, events tailed.
        trace_lines = outputs["stream:trace-json"].splitlines()
        assert len(trace_lines) >= 100, f"only {len(trace_lines)} trace lines"
        assert b"h:" in outputs["stream:tail"] and b"h:" in outputs["stream:tail-json"]

        places = dict(outputs)
        places["gatewayd.stderr"] = open(gw.stderr_file, "rb").read()
        assert b"bad input device=reader-1" in places["gatewayd.stderr"], "junk lines are logged"
        for name in sorted(os.listdir(data_dir)):
            places["data/" + name] = open(os.path.join(data_dir, name), "rb").read()
        assert "data/buffer.db" in places
        leaks = {}
        scanned = 0
        for name, data in places.items():
            scanned += len(data)
            found = finder.find(data)
            if found:
                leaks[name] = sorted(found)[:3] + ([f"... {len(found)} in all"] if len(found) > 3 else [])
        assert not leaks, f"raw card numbers found: {leaks}"
        log(f"searched {len(places)} places ({scanned} bytes): "
            + ", ".join(sorted(places)[:40]))
        print(f"privacy hmac: {COUNT} card numbers, {len(credentials)} credentials all equal to "
              f"h:HMAC-SHA256(key, id); none of the numbers in {len(places)} logs, CLI outputs and "
              f"SQLite files ({scanned} bytes)")
        work.failed = False
    return 0


if __name__ == "__main__":
    sys.exit(main())
