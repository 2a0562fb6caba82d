"""End-to-end garbage: a Modbus TCP device and a card reader that send random and mutated frames
(1,000,000 each) at a running gatewayd, next to two healthy meters.

- The Modbus device (a server in this test) answers every request with a random or mutated
  answer (bit flips, truncations, wrong transaction id, unit or function, absurd lengths,
  protocol id, exceptions; one in twenty is a correct answer, so the device keeps coming back
  online), followed by a burst of more such frames.
- The card reader (tcp_line, a server in this test) streams frames as fast as the gateway reads
  them: random bytes, overlong lines, empty lines, card numbers with a byte flipped or a
  non-digit inserted, and one in two hundred a good swipe.

gatewayd must not crash, its RSS must stay bounded, the healthy meters must keep being polled
(their telemetry keeps arriving at the subscriber), and the reader's good swipes arrive.
"""
import argparse
import os
import random
import socket
import struct
import sys
import threading
import time

from harness import (Broker, Gatewayd, ModbusSim, Subscriber, Workdir, gateway_config, log,
                     wait_for)

GATEWAY = "garbage-gw-01"
FRAMES = 1_000_000
RSS_GROWTH_BOUND_KIB = 32 * 1024
# Under AddressSanitizer freed blocks wait in a quarantine (256 MiB by default) to catch
# use-after-free; the test shrinks it so that the bound measures the gateway, not ASan.
ASAN_QUARANTINE_MIB = 16
MAX_RUN_S = 150


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def asan_instrumented(binary):
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


class CardSubscriber(Subscriber):
    """The harness subscriber with raw card ids (this test is the central side)."""

    def __init__(self, work, build, broker):
        self.report_file = work.file("central-report.json")
        self.events_file = work.file("central.stdout")
        self.proc = work.spawn("central", [
            os.path.join(build, "tools/central/central_subscriber"), "--uri", broker.uri,
            "--client-id", "it-central-garbage", "--json", "--show-credentials",
            "--report", self.report_file])
        wait_for(lambda: os.path.exists(self.report_file), 10, "the subscriber's first report")


class Server(threading.Thread):
    """A TCP server on 127.0.0.1 serving one client at a time until `stop` is set."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.frames = 0
        self.error = None

    def run(self):
        try:
            while not self.stop.is_set():
                try:
                    conn, _ = self.sock.accept()
                except socket.timeout:
                    continue
                with conn:
                    try:
                        self.serve(conn)
                    except OSError:
                        pass  # the gateway dropped the connection: it may, after garbage
        except Exception as e:  # a bug in the test itself must fail the test
            self.error = e


class GarbageModbus(Server):
    def __init__(self, seed):
        super().__init__()
        self.rng = random.Random(seed)
        self.requests = 0
        self.good = 0

    def answer(self, tid, unit, fc, count):
        r = self.rng
        nbytes = count * 2 if fc in (3, 4) else (count + 7) // 8
        data = bytes(r.getrandbits(8) for _ in range(nbytes))
        pdu = bytes([fc, nbytes]) + data
        good = struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu
        kind = r.randrange(12)
        if kind == 0:
            self.good += 1
            return good
        if kind == 1:
            return r.randbytes(r.randrange(1, 300))
        if kind == 2:
            b = bytearray(good)
            b[r.randrange(len(b))] ^= 1 << r.randrange(8)
            return bytes(b)
        if kind == 3:
            return good[:r.randrange(1, len(good))]
        if kind == 4:
            return struct.pack(">HHHB", tid ^ 0x5A5A, 0, len(pdu) + 1, unit) + pdu
        if kind == 5:
            return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit ^ 0x11) + pdu
        if kind == 6:
            length = r.choice([0, 1, 2, 255, 256, 260, 0x7FFF, 0xFFFF])
            return struct.pack(">HHHB", tid, 0, length, unit) + pdu + r.randbytes(r.randrange(64))
        if kind == 7:
            return struct.pack(">HHHB", tid, r.randrange(1, 0x10000), len(pdu) + 1, unit) + pdu
        if kind == 8:
            return struct.pack(">HHHBBB", tid, 0, 3, unit, fc | 0x80, r.randrange(256))
        if kind == 9:
            return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + bytes([r.randrange(256)]) + pdu[1:]
        if kind == 10:
            return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu[:1] + bytes([r.randrange(256)]) + pdu[2:]
        return good + r.randbytes(r.randrange(1, 32))  # trailing junk glued to a good answer

    def serve(self, conn):
        conn.settimeout(1.0)
        buf = b""
        while not self.stop.is_set():
            try:
                chunk = conn.recv(4096)
            except socket.timeout:
                continue
            if not chunk:
                return
            buf += chunk
            while len(buf) >= 12:
                tid, _, length, unit = struct.unpack(">HHHB", buf[:7])
                fc, _start, count = struct.unpack(">BHH", buf[7:12])
                buf = buf[6 + length:]
                self.requests += 1
                frames = [self.answer(tid, unit, fc, max(1, min(count, 125)))]
                # The answer's "good" counter only counts the first frame: the rest is flood.
                good_before = self.good
                frames += [self.answer(tid, unit, fc, max(1, min(count, 125)))
                           for _ in range(self.rng.randrange(0, 2000))]
                self.good = good_before
                conn.sendall(b"".join(frames))
                self.frames += len(frames)


class GarbageReader(Server):
    """Streams FRAMES frames, then a last good swipe, then idles."""

    def __init__(self, seed):
        super().__init__()
        self.rng = random.Random(seed)
        self.good_cards = []
        self.sent_all = threading.Event()

    def frame(self, i):
        r = self.rng
        card = f"{4100000000 + i:010d}".encode()
        kind = r.randrange(200)
        if kind == 0:
            self.good_cards.append(card.decode())
            return card + b"\r\n"
        if kind < 40:
            return r.randbytes(r.randrange(1, 80)).replace(b"\r\n", b"") + b"\r\n"
        if kind < 60:
            return b"9" * r.randrange(65, 400) + b"\r\n"  # longer than max_length
        if kind < 80:
            return r.choice([b"\r\n", b"   \r\n", b"\n", b"\r"])
        if kind < 140:
            b = bytearray(card)
            b.insert(r.randrange(len(b) + 1), r.choice(b"ABCxyz-+. \x00\x7f\xff"))
            return bytes(b) + b"\r\n"
        b = bytearray(card)
        b[r.randrange(len(b))] = r.choice(b"\x00\x02\x03\x1b:;/?\x80\xfe")
        return bytes(b) + b"\r\n"

    def serve(self, conn):
        if self.frames >= FRAMES:
            while not self.stop.is_set():
                time.sleep(0.1)
            return
        while self.frames < FRAMES and not self.stop.is_set():
            n = min(20000, FRAMES - self.frames)
            chunk = b"".join(self.frame(self.frames + k) for k in range(n))
            conn.sendall(chunk)
            self.frames += n
        conn.sendall(b"4199999999\r\n")  # the last word: must arrive after all that
        self.good_cards.append("4199999999")
        self.sent_all.set()
        while not self.stop.is_set():
            time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    build = args.build_dir
    with Workdir("garbage") as work:
        broker = Broker(work).start()
        sim = ModbusSim(work, build, devices=2, tick_ms=200, values_log=False)
        central = CardSubscriber(work, build, broker)
        modbus = GarbageModbus(seed=7)
        reader = GarbageReader(seed=11)
        modbus.start()
        config = gateway_config(work, broker, sim.ports, GATEWAY, poll="200ms")
        with open(config, "a") as f:
            f.write(f"""
  - id: garbage-meter
    kind: energy_meter
    driver: modbus_tcp
    address: 127.0.0.1:{modbus.port}
    unit_id: 1
    poll: 20ms
    timeout: 15ms
    offline_after: 100
    points:
      - {{ name: energy_total, table: holding, address: 0, type: uint32 }}
      - {{ name: voltage, table: holding, address: 2, type: float32 }}
  - id: garbage-reader
    kind: card_reader
    driver: tcp_line
    address: 127.0.0.1:{reader.port}
    door: dock-1
    direction: in
    framing: {{ type: line, delimiter: "\\r\\n", max_length: 64 }}
    card_format: decimal
""")
        rss_bound_kib = RSS_GROWTH_BOUND_KIB
        if asan_instrumented(os.path.join(build, "gateway/gatewayd")):
            os.environ["ASAN_OPTIONS"] = ":".join(
                filter(None, [os.environ.get("ASAN_OPTIONS"),
                              f"quarantine_size_mb={ASAN_QUARANTINE_MIB}"]))
            rss_bound_kib += ASAN_QUARANTINE_MIB * 1024
        gw = Gatewayd(work, build, config)
        wait_for(lambda: central.gateway(GATEWAY).get("received", 0) >= 10, 20,
                 "the healthy meters' first events")
        time.sleep(1.0)
        rss_start = rss_kib(gw.proc.pid)
        healthy_before = telemetry(central)
        started = time.monotonic()
        reader.start()

        rss_max = rss_start
        while time.monotonic() - started < MAX_RUN_S:
            assert gw.proc.poll() is None, "gatewayd died"
            rss_max = max(rss_max, rss_kib(gw.proc.pid))
            if modbus.frames >= FRAMES and reader.sent_all.is_set():
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        assert modbus.error is None and reader.error is None, (modbus.error, reader.error)
        assert modbus.frames >= FRAMES and reader.frames >= FRAMES, (
            f"in {elapsed:.0f}s only {modbus.frames} Modbus and {reader.frames} reader frames "
            "went out")
        wait_for(lambda: "4199999999" in cards(central), 30, "the reader's last good swipe")
        time.sleep(1.0)
        healthy_after = telemetry(central)
        rss_max = max(rss_max, rss_kib(gw.proc.pid))
        assert gw.proc.poll() is None, "gatewayd died"
        assert gw.stop() == 0
        modbus.stop.set()
        reader.stop.set()
        central.stop()

        # Healthy meters polled every 200 ms: at least half the polls made it through.
        for dev in ("meter-0", "meter-1"):
            got = healthy_after.get(dev, 0) - healthy_before.get(dev, 0)
            assert got >= elapsed * 5 * 0.5, f"{dev}: {got} telemetry events in {elapsed:.0f}s"
        growth = rss_max - rss_start
        assert growth <= rss_bound_kib, f"RSS grew {growth} KiB ({rss_start} -> {rss_max})"
        seen = cards(central)
        missing = [c for c in reader.good_cards if c not in seen]
        assert not missing, f"{len(missing)} good swipes lost, e.g. {missing[:3]}"
        log(f"{modbus.frames} Modbus frames ({modbus.requests} requests, {modbus.good} answered "
            f"correctly) and {reader.frames} reader frames in {elapsed:.0f}s; RSS {rss_start} -> "
            f"max {rss_max} KiB; healthy telemetry "
            f"{ {d: healthy_after.get(d, 0) - healthy_before.get(d, 0) for d in healthy_after} }; "
            f"{len(reader.good_cards)} good swipes all arrived")
    print("1 passed, 0 failed")
    return 0


def telemetry(central):
    counts = {}
    for rec in central.events():
        ev = rec["event"]
        if "meter" in ev:
            counts[ev["device_id"]] = counts.get(ev["device_id"], 0) + 1
    return counts


def cards(central):
    return {rec["event"]["access"]["credential"] for rec in central.events()
            if "access" in rec["event"]}


if __name__ == "__main__":
    sys.exit(main())
