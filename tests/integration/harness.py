"""Real processes for integration tests: a mosquitto broker, the Modbus simulator, the central
subscriber and gatewayd, each on loopback ports picked at run time, each stopped on exit.

Fixtures are named after what an operator would do: start_broker(), stop(), restart()...
Everything a test starts is registered with a Cleanup and killed even when the test fails.
"""
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time


def log(*parts):
    print("[it]", *parts, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Workdir:
    """A temporary folder for one test run, kept when the test fails (for the logs)."""

    def __init__(self, name):
        self.path = tempfile.mkdtemp(prefix=f"gw-it-{name}-")
        self.procs = []
        self.failed = True

    def file(self, name):
        return os.path.join(self.path, name)

    def spawn(self, name, argv, **kw):
        out = open(self.file(f"{name}.stdout"), "wb")
        err = open(self.file(f"{name}.stderr"), "wb")
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, **kw)
        proc.name = name
        self.procs.append(proc)
        return proc

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if self.failed:
            log(f"logs kept in {self.path}")
            for name in sorted(os.listdir(self.path)):
                if name.endswith(".stderr"):
                    tail = open(self.file(name), errors="replace").read()[-3000:]
                    log(f"--- {name} (tail) ---\n{tail}")
        else:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.failed = exc_type is not None
        self.close()
        return False


def stop_process(proc, timeout=15, sig=signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{proc.name} did not stop within {timeout}s")
    return proc.returncode


class Broker:
    """mosquitto on 127.0.0.1:port, persistent so that a subscriber's queued messages and
    session survive a restart (the subscriber is the oracle; it must not lose anything)."""

    def __init__(self, work, port=None):
        self.work = work
        self.port = port or free_port()
        self.proc = None
        self.data = work.file("mosquitto-data")
        os.makedirs(self.data, exist_ok=True)
        self.conf = work.file("mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write(
                f"listener {self.port} 127.0.0.1\n"
                "allow_anonymous true\n"
                "persistence true\n"
                f"persistence_location {self.data}/\n"
                "max_queued_messages 0\n"
                "max_inflight_messages 0\n"
                # As root, mosquitto would switch to its own user and fail to write here.
                + ("user root\n" if os.getuid() == 0 else "")
                + "log_dest stderr\n"
                "log_type error\nlog_type warning\nlog_type notice\n"
            )
        self.starts = 0

    @property
    def uri(self):
        return f"tcp://127.0.0.1:{self.port}"

    def start(self):
        self.starts += 1
        self.proc = self.work.spawn(f"mosquitto-{self.starts}", ["mosquitto", "-c", self.conf])
        wait_for(lambda: port_open(self.port), 10, f"mosquitto on port {self.port}")
        return self

    def stop(self):
        stop_process(self.proc)


class ModbusSim:
    def __init__(self, work, build, devices=2, tick_ms=200, extra=(), values_log=True):
        self.ports_file = work.file("sim-ports.txt")
        self.values_log = work.file("sim-values.jsonl")
        log_args = ["--values-log", self.values_log] if values_log else []
        self.proc = work.spawn("modbus-sim", [
            os.path.join(build, "tools/sim/modbus_tcp_sim"), "--devices", str(devices),
            "--tick-ms", str(tick_ms), "--ports-file", self.ports_file, *log_args, *extra])

        def ports():
            if not os.path.exists(self.ports_file):
                return None
            lines = [l.split() for l in open(self.ports_file).read().splitlines() if l.strip()]
            return [int(l[-1]) for l in lines] if len(lines) == devices else None

        self.ports = wait_for(ports, 10, "the simulator's ports file")

    def values(self):
        """device index -> list of value dicts, in the order the simulator served them."""
        out = {}
        for line in open(self.values_log):
            rec = json.loads(line)
            out.setdefault(rec["device"], []).append(rec["values"])
        return out


class Subscriber:
    def __init__(self, work, build, broker, client_id="it-central", quiet=False):
        self.report_file = work.file("central-report.json")
        self.events_file = work.file("central.stdout")
        self.proc = work.spawn("central", [
            os.path.join(build, "tools/central/central_subscriber"), "--uri", broker.uri,
            "--client-id", client_id, "--quiet" if quiet else "--json",
            "--report", self.report_file])
        wait_for(lambda: os.path.exists(self.report_file), 10, "the subscriber's first report")

    def report(self):
        try:
            with open(self.report_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"gateways": {}}

    def gateway(self, gateway_id):
        return self.report().get("gateways", {}).get(gateway_id, {})

    def events(self):
        out = []
        for line in open(self.events_file):
            rec = json.loads(line)
            if "event" in rec:
                out.append(rec)
        return out

    def stop(self):
        return stop_process(self.proc)


METER_POINTS = """
      - { name: energy_total,  table: holding, address: 0,  type: uint32,  word_order: big, scale: 0.01, unit: kWh }
      - { name: voltage_l1,    table: holding, address: 2,  type: float32, word_order: big, unit: V }
      - { name: current_l1,    table: input,   address: 4,  type: float32, word_order: little, unit: A }
      - { name: active_power,  table: holding, address: 6,  type: int16,   scale: 10, unit: W }
      - { name: frequency,     table: holding, address: 7,  type: uint16,  scale: 0.01, unit: Hz }
      - { name: energy_export, table: holding, address: 8,  type: int64,   unit: Wh }
      - { name: runtime_hours, table: holding, address: 12, type: float64, unit: h }
      - { name: device_tag,    table: holding, address: 20, type: uint16 }
      - { name: relay,         table: coil,    address: 0,  type: bool }
"""


def gateway_config(work, broker, sim_ports, gateway_id="it-gw-01", poll="200ms",
                   max_inflight=10, batch=20, extra_mqtt="", extra=""):
    devices = ""
    for i, port in enumerate(sim_ports):
        devices += f"""
  - id: meter-{i}
    kind: energy_meter
    driver: modbus_tcp
    address: 127.0.0.1:{port}
    unit_id: 1
    poll: {poll}
    timeout: 150ms
    points:{METER_POINTS}"""
    path = work.file("gateway.yaml")
    with open(path, "w") as f:
        f.write(f"""gateway:
  id: {gateway_id}
  site: test-site
  building: test-building
  data_dir: data
control: {{ socket: gatewayd.sock }}
mqtt:
  uri: {broker.uri}
  max_inflight: {max_inflight}
  batch_max_events: {batch}
  backoff: {{ initial: 100ms, max: 1s }}
{extra_mqtt}{extra}devices:{devices}
""")
    return path


class Gatewayd:
    def __init__(self, work, build, config, name="gatewayd"):
        self.config = config
        self.data_dir = os.path.join(os.path.dirname(config), "data")
        self.proc = work.spawn(name, [os.path.join(build, "gateway/gatewayd"), "--config", config])
        self.stderr_file = work.file(f"{name}.stderr")

    def stop(self, sig=signal.SIGTERM):
        return stop_process(self.proc, sig=sig)

    def stderr(self):
        return open(self.stderr_file, errors="replace").read()

    def buffer_rows(self):
        """seqs still in the buffer, and the persisted next seq, read with plain sqlite3."""
        db = sqlite3.connect(f"file:{self.data_dir}/buffer.db?mode=ro", uri=True)
        try:
            seqs = [r[0] for r in db.execute("SELECT seq FROM events ORDER BY seq")]
            next_seq = db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0]
        finally:
            db.close()
        return seqs, next_seq
