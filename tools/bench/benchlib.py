"""Shared pieces of the benchmark scripts: the build folder, process CPU and memory from /proc,
figures printed as a table plus one machine-readable `BENCH ...` line each.

Processes come from tests/integration/harness.py (mosquitto, modbus_tcp_sim, gatewayd on free
127.0.0.1 ports, every one killed when the Workdir closes), so a benchmark run leaves nothing
behind, even when it fails.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../.."))
sys.path.insert(0, os.path.join(ROOT, "tests/integration"))
import harness  # noqa: E402,F401  (re-exported for the scripts)
from harness import Broker, Workdir, free_port, wait_for  # noqa: E402,F401

TICKS = os.sysconf("SC_CLK_TCK")


def build_dir(arg):
    return os.path.abspath(arg or os.environ.get("GW_BUILD_DIR") or os.path.join(ROOT, "build"))


def exe(build, rel):
    path = os.path.join(build, rel)
    if not os.access(path, os.X_OK):
        raise SystemExit(f"bench: {path} is missing: build it first "
                         f"(cmake --build {build} --target {os.path.basename(rel)})")
    return path


def cpu_seconds(pid):
    """CPU time of a live process (all its live threads), in seconds: the sum of the threads'
    schedstat run times (nanoseconds) where the kernel has them, else utime + stime (ticks of
    10 ms: too coarse for a process that uses 0.4 % of a core)."""
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def mem_mib(pid):
    """(VmRSS, VmHWM) in MiB."""
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def cpu_window(pid, seconds):
    """% of one core the process used over the next `seconds`, and its RSS at the end."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    c1, t1 = cpu_seconds(pid), time.monotonic()
    rss, hwm = mem_mib(pid)
    return 100.0 * (c1 - c0) / (t1 - t0), rss, hwm


def percentile(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))]


def kv(line):
    """`word k=v k=v` -> dict of the k=v pairs (numbers as floats where they parse)."""
    out = {}
    for part in line.split():
        if "=" in part:
            k, v = part.split("=", 1)
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def run_tool(argv, timeout, prefix):
    """Runs a bench program; returns the k=v dict of its output line starting with `prefix`."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(prefix):
            if proc.returncode != 0:
                print(f"bench: {os.path.basename(argv[0])} exited {proc.returncode}: "
                      f"{proc.stderr.strip()[-500:]}", file=sys.stderr)
            return kv(line)
    raise RuntimeError(f"{' '.join(argv)} printed no '{prefix}' line (exit {proc.returncode}): "
                       f"{proc.stderr.strip()[-1000:]}")


def control(path, cmd, timeout=2.0):
    """One request on gatewayd's control socket; the result dict, or None when nobody answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(json.dumps({"v": 1, "id": 1, "cmd": cmd}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    return None
                data += chunk
            reply = json.loads(data)
            return reply.get("result") if reply.get("ok") else None
    except (OSError, ValueError):
        return None


class Figures:
    """Collects figures; prints a table and one `BENCH name=... value=... unit=...` line each."""

    def __init__(self, title):
        self.title = title
        self.rows = []

    def add(self, name, value, unit, label, compared="", **extra):
        self.rows.append((name, value, unit, label, compared, extra))
        fields = " ".join(f"{k}={_fmt(v)}" for k, v in extra.items())
        line = f"BENCH name={name} value={_fmt(value)} unit={unit}"
        print(line + (f" {fields}" if fields else ""),
              flush=True)

    def table(self):
        print(f"\n== {self.title} ==")
        w = max([len(r[3]) for r in self.rows] + [10])
        for name, value, unit, label, compared, _ in self.rows:
            print(f"  {label:<{w}}  {_fmt(value):>12} {unit:<9} {compared}")
        print(flush=True)


def _fmt(v):
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.4g}"
    return str(v)


def terminate(proc, timeout=15):
    """SIGTERM, then SIGKILL after `timeout`; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def quiet_broker(work):
    """mosquitto on a free 127.0.0.1 port without persistence: a benchmark measures the gateway,
    not the broker's disk. set_tcp_nodelay: mosquitto otherwise lets Nagle hold each small
    PUBACK back (about 1 ms on loopback), which would measure the broker's default, not the
    gateway; a deployment that cares about live latency sets it too (README, Performance)."""
    b = Broker(work)
    with open(b.conf, "w") as f:
        f.write(f"listener {b.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "set_tcp_nodelay true\n"
                "max_queued_messages 0\nmax_inflight_messages 0\n"
                + ("user root\n" if os.getuid() == 0 else "")
                + "log_dest stderr\nlog_type error\nlog_type warning\n")
    return b.start()


def _exit_on_sigterm(signo, frame):
    # SystemExit unwinds through every Workdir, which kills the processes it started.
    raise SystemExit(128 + signo)


signal.signal(signal.SIGTERM, _exit_on_sigterm)
