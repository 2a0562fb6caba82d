"""Card readers end to end: 100,000 swipes from a simulated tcp_line reader at 1,000 per second
reach the central subscriber exactly once each, in swipe order (after dedup by (gateway_id,
seq)), with the card ids the simulator wrote down; then a serial_line reader on a pty is fed a
10 MiB line without a delimiter between swipes: gatewayd's RSS stays bounded, the line is
counted once as overflow, and the swipes around it still arrive."""
import argparse
import json
import os
import subprocess
import sys
import time

from harness import Broker, Gatewayd, Subscriber, Workdir, log, wait_for

GATEWAY = "cards-gw-01"
SEED = 987650000000  # 12 digits: never a substring of anything else the test looks at
GARBAGE = 10 * 1024 * 1024
RSS_BOUND_KIB = 4096  # growth allowed while the garbage flows: far below its 10 MiB


class CredentialSubscriber(Subscriber):
    """The harness subscriber, printing raw card ids (it is the central side of this test)."""

    def __init__(self, work, build, broker):
        self.report_file = work.file("central-report.json")
        self.events_file = work.file("central.stdout")
        self.proc = work.spawn("central", [
            os.path.join(build, "tools/central/central_subscriber"), "--uri", broker.uri,
            "--client-id", "it-central-cards", "--json", "--show-credentials",
            "--report", self.report_file])
        wait_for(lambda: os.path.exists(self.report_file), 10, "the subscriber's first report")


def sim_line(work, name, prefix):
    """The simulator's first stdout line starting with `prefix`, once it is there."""
    def find():
        try:
            for line in open(work.file(f"{name}.stdout")):
                if line.startswith(prefix):
                    return line.split()[1] if len(line.split()) > 1 else line
        except OSError:
            return None
        return None
    return find


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def access_events(central, device):
    """(seq, credential) of `device`'s access events, deduplicated by seq, in seq order, and the
    number of duplicates dropped."""
    by_seq = {}
    received = 0
    for e in central.events():
        if e["gateway_id"] != GATEWAY:
            continue
        ev = e["event"]
        if ev["device_id"] != device or "access" not in ev:
            continue
        received += 1
        by_seq[int(ev["seq"])] = ev["access"]
    return [by_seq[s] for s in sorted(by_seq)], received - len(by_seq)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--swipes", type=int, default=100000)
    ap.add_argument("--rate", type=float, default=1000)
    args = ap.parse_args()
    build = args.build_dir
    ctl = os.path.join(build, "tools/gatewayctl/gatewayctl")
    with Workdir("card-reader") as work:
        broker = Broker(work).start()
        central = CredentialSubscriber(work, build, broker)
        cards_file = work.file("cards.txt")
        work.spawn("sim-tcp", [
            os.path.join(build, "tools/sim/card_reader_sim"), "--tcp", "--framing", "line",
            "--format", "decimal", "--digits", "12", "--seed", str(SEED),
            "--count", str(args.swipes), "--rate", str(args.rate), "--cards-file", cards_file])
        port = int(wait_for(sim_line(work, "sim-tcp", "listening"), 10, "the simulator's port"))
        pty_link = work.file("ttyREADER")  # appears only when the second reader is plugged in
        config = work.file("gateway.yaml")
        with open(config, "w") as f:
            f.write(f"""gateway: {{ id: {GATEWAY}, site: north, building: library, data_dir: data }}
control: {{ socket: gatewayd.sock }}
mqtt: {{ uri: "{broker.uri}", max_inflight: 64, batch_max_events: 200 }}
devices:
  - id: reader-tcp
    kind: card_reader
    driver: tcp_line
    address: 127.0.0.1:{port}
    door: north-gate-1
    direction: in
    framing: {{ type: line, delimiter: "\\r\\n", max_length: 64 }}
    card_format: decimal
  - id: reader-serial
    kind: card_reader
    driver: serial_line
    port: {pty_link}
    baud: 9600
    door: lab-door
    direction: out
    framing: {{ type: line, max_length: 64 }}
    card_format: decimal
""")
        gw = Gatewayd(work, build, config)

        # ---- 100,000 swipes at 1,000/s ----
        started = time.monotonic()
        wait_for(sim_line(work, "sim-tcp", "done"), args.swipes / args.rate * 1.5 + 30,
                 "the simulator to send every swipe")
        sent_s = time.monotonic() - started
        cards = open(cards_file).read().split()
        assert len(cards) == args.swipes, f"the simulator wrote {len(cards)} card ids"

        def delivered():
            gwr = central.gateway(GATEWAY)
            return gwr.get("by_class", {}).get("access", 0) >= args.swipes
        wait_for(delivered, 60, f"{args.swipes} access events at the central subscriber",
                 interval=0.5)
        delivered_s = time.monotonic() - started
        got, duplicates = access_events(central, "reader-tcp")
        credentials = [a["credential"] for a in got]
        assert len(credentials) == len(cards), f"{len(credentials)} swipes for {len(cards)} sent"
        if credentials != cards:
            first = next(i for i, (a, b) in enumerate(zip(credentials, cards)) if a != b)
            raise AssertionError(f"swipe {first} differs: got {credentials[first]}, sent {cards[first]}")
        assert len(set(credentials)) == len(credentials), "a swipe arrived twice under two seqs"
        a0 = got[0]
        assert a0["door"] == "north-gate-1" and a0["direction"] == "IN", a0
        assert a0["result"] == "RESULT_UNKNOWN", a0
        report = central.gateway(GATEWAY)
        assert report["out_of_order"] == 0, report
        log(f"{len(credentials)} swipes sent in {sent_s:.1f}s, all delivered after "
            f"{delivered_s:.1f}s; {duplicates} duplicates dropped by seq, order intact")

        # ---- 10 MiB without a delimiter on a serial_line reader ----
        def devices():
            p = subprocess.run([ctl, "--config", config, "devices", "--json"], capture_output=True,
                               text=True, timeout=20)
            assert p.returncode == 0, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
            return {d["id"]: d for d in json.loads(p.stdout)["devices"]}
        assert devices()["reader-serial"]["online"] is False  # not plugged in yet
        time.sleep(2)  # let the first phase's buffers settle before the baseline
        before = rss_kib(gw.proc.pid)
        cards2_file = work.file("cards-serial.txt")
        work.spawn("sim-pty", [
            os.path.join(build, "tools/sim/card_reader_sim"), "--pty", "--link", pty_link,
            "--framing", "line", "--format", "decimal", "--digits", "12",
            "--seed", str(SEED + 5000000), "--count", "10", "--rate", "0",
            "--endless-line", str(GARBAGE), "--endless-after", "5", "--cards-file", cards2_file])
        peak = before
        fed_at = time.monotonic()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            peak = max(peak, rss_kib(gw.proc.pid))
            if sim_line(work, "sim-pty", "done")():
                break
            time.sleep(0.02)
        assert sim_line(work, "sim-pty", "done")(), "the garbage never got through"
        fed_s = time.monotonic() - fed_at  # includes up to 5 s of the reader's reopen backoff
        cards2 = open(cards2_file).read().split()
        assert len(cards2) == 10
        wait_for(lambda: len(access_events(central, "reader-serial")[0]) >= 10, 30,
                 "the serial reader's swipes")
        peak = max(peak, rss_kib(gw.proc.pid))
        after = rss_kib(gw.proc.pid)
        got2, _ = access_events(central, "reader-serial")
        assert [a["credential"] for a in got2] == cards2, "swipes before and after the garbage"
        assert got2[0]["door"] == "lab-door" and got2[0]["direction"] == "OUT", got2[0]
        dev = devices()["reader-serial"]
        log("reader-serial:", json.dumps(dev))
        bad = dev.get("bad_input", {})
        assert bad.get("overflow") == 1, f"one endless line, counted once: {dev}"
        growth = peak - before
        log(f"gatewayd RSS: {before} KiB before {GARBAGE} bytes of garbage, peak {peak} KiB, "
            f"{after} KiB after (growth {growth} KiB, bound {RSS_BOUND_KIB} KiB); fed in {fed_s:.1f}s")
        assert growth <= RSS_BOUND_KIB, f"RSS grew {growth} KiB while garbage was fed"

        assert gw.proc.poll() is None, "gatewayd must stay up"
        assert gw.stop() == 0
        stderr = gw.stderr()
        for card in cards[:100] + cards2:
            assert card not in stderr, "a card number in the daemon's log"
        print(f"card readers: {len(credentials)} swipes at {args.rate:.0f}/s delivered exactly once "
              f"in order ({duplicates} duplicates removed by seq); RSS {before} -> peak {peak} KiB "
              f"under {GARBAGE} bytes of garbage")
        work.failed = False
    return 0


if __name__ == "__main__":
    sys.exit(main())
