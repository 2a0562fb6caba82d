"""Central side at small campus scale: three real gateways (gatewayd + modbus_tcp_sim), one
mosquitto, and two central_consumer processes in one shared-subscription group writing one SQLite
store.

Mid-run, consumer A is stopped and started again (same client id, persistent session: what the
broker routed to it meanwhile arrives when it is back), then one gateway is killed with SIGKILL
and started again (it republishes what it had not seen acknowledged, so duplicates may reach the
consumers). At the end every event each gateway committed and did not still hold in its buffer is
in the store exactly once (the store has no other rows), both consumers stored a share, the
consumers' own counts add up to the store, and the store reports no missing seqs.
"""
import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

from harness import (Broker, Gatewayd, ModbusSim, Workdir, free_port, gateway_config, log,
                     stop_process, wait_for)

GATEWAYS = ["lib-gw-01", "teach-gw-02", "dorm-gw-03"]
DEVICES_PER_GATEWAY = 2
GROUP = "central"


class Subdir:
    """What gateway_config needs of a Workdir, rooted in a folder of its own per gateway."""

    def __init__(self, work, name):
        self.path = os.path.join(work.path, name)
        os.makedirs(self.path, exist_ok=True)

    def file(self, name):
        return os.path.join(self.path, name)


class Consumer:
    def __init__(self, work, build, broker, store, client_id):
        self.work, self.build, self.broker, self.store, self.client_id = (
            work, build, broker, store, client_id)
        self.report_file = work.file(f"{client_id}-report.json")
        self.runs = 0
        self.proc = None
        self.finished = []  # final reports of earlier runs

    def start(self):
        self.runs += 1
        if os.path.exists(self.report_file):
            os.unlink(self.report_file)
        self.proc = self.work.spawn(f"{self.client_id}-{self.runs}", [
            os.path.join(self.build, "tools/central/central_consumer"), "--uri", self.broker.uri,
            "--group", GROUP, "--client-id", self.client_id, "--store", self.store.target,
            "--report", self.report_file, "--report-interval-s", "0.5"])
        wait_for(lambda: os.path.exists(self.report_file), 15, f"{self.client_id} subscribed")
        return self

    def report(self):
        with open(self.report_file) as f:
            return json.load(f)

    def stop(self):
        assert stop_process(self.proc) == 0, f"{self.client_id} exited non-zero"
        self.finished.append(self.report())

    def totals(self):
        return {k: sum(r[k] for r in self.finished)
                for k in ("messages", "events", "inserted", "duplicates", "decode_errors",
                          "unstored")}


class SqliteStore:
    name = "sqlite"

    def __init__(self, work):
        self.target = work.file("central.db")

    def query(self, sql):
        db = sqlite3.connect(f"file:{self.target}?mode=ro", uri=True)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    def rows(self):
        return self.query("SELECT gateway_id, seq, consumer, body FROM events")

    def payloads(self, gateway_id, count):
        return [r[0] for r in self.query(
            f"SELECT payload FROM events WHERE gateway_id='{gateway_id}' "
            f"ORDER BY seq LIMIT {count}")]


class PostgresStore:
    """A throwaway PostgreSQL cluster (Debian's postgresql-15) owned by the postgres user, on a
    loopback port, trust authentication; stopped and deleted at the end."""
    name = "postgresql"
    BIN = "/usr/lib/postgresql/15/bin"

    def __init__(self, work):
        self.work = work
        self.data = work.file("pgdata")
        os.makedirs(self.data)
        shutil.chown(self.data, "postgres", "postgres")
        os.chmod(work.path, 0o755)  # the postgres user must reach its data folder
        self.port = free_port()
        self.run([f"{self.BIN}/initdb", "-D", self.data, "--auth=trust", "-U", "postgres",
                  "--no-sync"])
        self.server = work.spawn("postgres", [
            f"{self.BIN}/postgres", "-D", self.data, "-h", "127.0.0.1", "-p", str(self.port),
            "-k", self.data, "-c", "fsync=off"], user="postgres", group="postgres")
        self.target = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        wait_for(lambda: subprocess.run(
            [f"{self.BIN}/pg_isready", "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True).returncode == 0, 30, "postgres accepting connections")

    def run(self, argv):
        r = subprocess.run(argv, capture_output=True, text=True, user="postgres",
                           group="postgres", cwd=self.data, timeout=120)
        assert r.returncode == 0, f"{argv[0]}: {r.stdout}{r.stderr}"
        return r.stdout

    def query(self, sql):
        out = subprocess.run([f"{self.BIN}/psql", self.target, "-At", "-F", "\t", "-c", sql],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return [tuple(line.split("\t")) for line in out.stdout.splitlines() if line]

    def rows(self):
        return [(g, int(seq), c, body) for g, seq, c, body in
                self.query("SELECT gateway_id, seq, consumer, body FROM events")]

    def payloads(self, gateway_id, count):
        return [bytes.fromhex(r[0][2:]) for r in self.query(
            f"SELECT payload FROM events WHERE gateway_id='{gateway_id}' "
            f"ORDER BY seq LIMIT {count}")]

    def stop(self):
        stop_process(self.server)


def buffer_state(data_dir):
    db = sqlite3.connect(f"file:{data_dir}/buffer.db?mode=ro", uri=True)
    try:
        seqs = {r[0] for r in db.execute("SELECT seq FROM events")}
        next_seq = int(db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0])
    finally:
        db.close()
    return seqs, next_seq


def replay(work, broker, store, gateway_id, count):
    """Publishes `count` stored events of gateway_id again, in one EventBatch built by hand
    (field 1 gateway_id, field 2 the stored Event bytes) on the gateway's telemetry topic."""
    payloads = store.payloads(gateway_id, count)

    def field(number, data):
        out = bytearray([number << 3 | 2])
        n = len(data)
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                break
        return bytes(out) + data

    batch = field(1, gateway_id.encode()) + b"".join(field(2, p) for p in payloads)
    path = work.file("replay.bin")
    with open(path, "wb") as f:
        f.write(batch)
    subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-f", path, "-t",
                    f"campus/test-site/test-building/{gateway_id}/events/telemetry"],
                   check=True, timeout=10)
    return len(payloads)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--run-s", type=float, default=4.0, help="each phase's length")
    ap.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    args = ap.parse_args()
    build = args.build_dir

    with Workdir(f"consumer-{args.store}") as work:
        broker = Broker(work).start()
        store = SqliteStore(work) if args.store == "sqlite" else PostgresStore(work)
        consumers = [Consumer(work, build, broker, store, "consumer-a").start(),
                     Consumer(work, build, broker, store, "consumer-b").start()]
        sim = ModbusSim(work, build, devices=DEVICES_PER_GATEWAY * len(GATEWAYS), tick_ms=100)
        gateways = []
        for i, gw_id in enumerate(GATEWAYS):
            ports = sim.ports[i * DEVICES_PER_GATEWAY:(i + 1) * DEVICES_PER_GATEWAY]
            config = gateway_config(Subdir(work, gw_id), broker, ports, gw_id)
            gateways.append(Gatewayd(work, build, config, name=f"gatewayd-{gw_id}"))

        def stored():
            return sum(c.report()["inserted"] for c in consumers)

        wait_for(lambda: stored() >= 60, 30, "60 events in the store")
        assert all(g.proc.poll() is None for g in gateways), "a gateway did not start"
        time.sleep(args.run_s)

        log("restarting consumer-a (same client id: its session and share carry on)")
        consumers[0].stop()
        time.sleep(1.0)
        consumers[0].start()
        time.sleep(args.run_s)

        log("killing lib-gw-01 with SIGKILL and starting it again "
            "(it republishes what was unacked)")
        gateways[0].stop(sig=signal.SIGKILL)
        gateways[0] = Gatewayd(work, build, gateways[0].config, name="gatewayd-lib-gw-01-again")
        time.sleep(args.run_s)

        for g in gateways:
            assert g.stop() == 0, "gatewayd must exit 0 on SIGTERM"

        # Everything the gateways published is at the broker; wait until the store has it all.
        expected = {}
        for gw_id, g in zip(GATEWAYS, gateways):
            buffered, next_seq = buffer_state(g.data_dir)
            expected[gw_id] = set(range(1, next_seq)) - buffered
            log(f"{gw_id}: committed {next_seq - 1}, still buffered {len(buffered)}")

        def store_complete():
            have = {}
            for gw_id, seq, _, _ in store.rows():
                have.setdefault(gw_id, set()).add(seq)
            return all(expected[g] <= have.get(g, set()) for g in GATEWAYS)

        wait_for(store_complete, 20, "every published event in the store")

        # Deliver ten stored events once more, as a gateway's republish would: the group must
        # take them as duplicates and the store must not change.
        def duplicates_now():
            return sum(c.report()["duplicates"] for c in consumers)

        before = duplicates_now()
        replayed = replay(work, broker, store, "lib-gw-01", 10)
        wait_for(lambda: duplicates_now() >= before + replayed, 10,
                 "the replayed events counted as duplicates")
        time.sleep(1.0)  # anything later (a stray extra row) would show below
        for c in consumers:
            c.stop()

        rows = store.rows()
        by_gateway = {}
        by_consumer = {}
        for gw_id, seq, consumer, body in rows:
            by_gateway.setdefault(gw_id, []).append(seq)
            by_consumer[consumer] = by_consumer.get(consumer, 0) + 1
            assert int(json.loads(body)["seq"]) == seq, (gw_id, seq, body)
        assert sorted(by_gateway) == sorted(GATEWAYS), by_gateway.keys()
        for gw_id in GATEWAYS:
            seqs = by_gateway[gw_id]
            assert len(seqs) == len(set(seqs)), f"{gw_id}: a seq stored twice"
            assert set(seqs) == expected[gw_id], (
                f"{gw_id}: store differs from what the gateway published: missing "
                f"{sorted(expected[gw_id] - set(seqs))[:10]}, extra "
                f"{sorted(set(seqs) - expected[gw_id])[:10]}")

        totals = {c.client_id: c.totals() for c in consumers}
        for client_id, t in totals.items():
            assert t["inserted"] > 0, f"{client_id} stored nothing: the group did not share"
            assert t["decode_errors"] == 0 and t["unstored"] == 0, (client_id, t)
            assert by_consumer.get(client_id, 0) == t["inserted"], (client_id, by_consumer, t)
        assert sum(t["inserted"] for t in totals.values()) == len(rows)
        # Each event reached the group at least once; the extra deliveries were all deduplicated.
        received = sum(t["events"] for t in totals.values())
        duplicates = sum(t["duplicates"] for t in totals.values())
        assert received == len(rows) + duplicates, (received, len(rows), duplicates)
        assert duplicates >= replayed == 10, (duplicates, replayed)

        final = consumers[1].finished[-1]["gateways"]
        for gw_id in GATEWAYS:
            assert final[gw_id]["missing"] == 0, final[gw_id]
            assert final[gw_id]["events"] == len(by_gateway[gw_id]), final[gw_id]

        figures = {
            "store": store.name,
            "events_stored": len(rows),
            "per_gateway": {g: len(by_gateway[g]) for g in GATEWAYS},
            "per_consumer": by_consumer,
            "deliveries": received,
            "duplicates_dropped": duplicates,
            "replayed": replayed,
        }
        print("central_consumer: " + json.dumps(figures))
        if args.store == "postgresql":
            store.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
