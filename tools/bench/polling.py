#!/usr/bin/env python3
"""Polling workload W(N): N Modbus TCP energy meters, one loopback port each, 20 holding
registers read once per second per meter, every reading published at QoS 1 to mosquitto.

For each N the same workload runs against:
  gatewayd  the real daemon: N modbus_tcp devices (20 registers in one read), every reading
            committed to the SQLite buffer, published, PUBACKed and removed;
  bare      tools/bench/bare_poll: libmodbus poll + Paho publish, nothing else (the floor);
  node-red  Node-RED 4.1.15 + node-red-contrib-modbus 5.23.3, one modbus-read node per meter
            wired to an mqtt out node (QoS 1), installed from the npm registry into a temporary
            folder (--nodered; skipped with a reason when npm cannot install it).
Each runs against its own fresh modbus_tcp_sim (one process, one epoll loop serving all N
ports) and the same mosquitto. After a warm-up, CPU (% of one core, utime+stime from /proc over
the window) and RSS are measured; the poll interval p50/p99 comes from the simulator's request
timestamps (--intervals-log), the same clock for all three.

    python3 tools/bench/polling.py [--build-dir build] [--sizes 100,500,1000] [--window 20]
                                   [--long] [--nodered 100,500] [--smoke]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchlib import (Figures, Workdir, build_dir, control, cpu_window, exe, free_port, percentile,
                      quiet_broker, terminate, wait_for)

NODE_RED = "node-red@4.1.15"
NODE_RED_MODBUS = "node-red-contrib-modbus@5.23.3"

# The simulator's 20 first holding registers as gateway points: one read of registers 0..19.
POINTS = """[
      {name: energy_total, address: 0, type: uint32, scale: 0.01, unit: kWh},
      {name: voltage_l1, address: 2, type: float32, unit: V},
      {name: current_l1, address: 4, type: float32, word_order: little, unit: A},
      {name: active_power, address: 6, type: int16, scale: 10, unit: W},
      {name: frequency, address: 7, type: uint16, scale: 0.01, unit: Hz},
      {name: energy_export, address: 8, type: int64, unit: Wh},
      {name: runtime_hours, address: 12, type: float64, unit: h},
      {name: r16, address: 16, type: uint16}, {name: r17, address: 17, type: uint16},
      {name: r18, address: 18, type: uint16}, {name: r19, address: 19, type: uint16}]"""


class Sim:
    """A fresh modbus_tcp_sim with N meters, recording request intervals."""

    def __init__(self, work, build, n, tag):
        self.ports_file = work.file(f"sim-{tag}.ports")
        self.intervals = work.file(f"sim-{tag}.intervals")
        self.proc = work.spawn(f"sim-{tag}", [
            exe(build, "tools/sim/modbus_tcp_sim"), "--devices", str(n), "--tick-ms", "1000",
            "--ports-file", self.ports_file, "--intervals-log", self.intervals])

        def ports():
            if not os.path.exists(self.ports_file):
                return None
            lines = [l.split() for l in open(self.ports_file).read().splitlines() if l.strip()]
            return [int(l[-1]) for l in lines] if len(lines) == n else None

        self.ports = wait_for(ports, 30, "the simulator's ports")
        self.t0 = time.monotonic()

    def stop_and_intervals(self, w0, w1):
        """Stops the simulator; the poll intervals (s) of requests between monotonic w0 and w1."""
        terminate(self.proc)
        lo, hi = (w0 - self.t0) * 1000, (w1 - self.t0) * 1000
        out = []
        if os.path.exists(self.intervals):
            for line in open(self.intervals):
                t_ms, _, us = line.split()
                if lo <= int(t_ms) <= hi:
                    out.append(int(us) / 1e6)
        return out


def measure(proc, warmup, window):
    time.sleep(warmup)
    if proc.poll() is not None:
        raise RuntimeError(f"{proc.name} exited {proc.returncode} during the warm-up")
    w0 = time.monotonic()
    cpu, rss, hwm = cpu_window(proc.pid, window)
    w1 = time.monotonic()
    if proc.poll() is not None:
        raise RuntimeError(f"{proc.name} exited {proc.returncode} during the window")
    return cpu, rss, hwm, w0, w1


def run_gatewayd(work, build, broker, n, warmup, window):
    sim = Sim(work, build, n, f"gw{n}")
    devices = "".join(
        f"\n  - {{ id: m{i:04d}, kind: energy_meter, driver: modbus_tcp, "
        f"address: \"127.0.0.1:{port}\", poll: 1s, timeout: 500ms, points: {POINTS} }}"
        for i, port in enumerate(sim.ports))
    data = work.file(f"data-{n}")
    os.makedirs(data, exist_ok=True)
    config = work.file(f"gateway-{n}.yaml")
    with open(config, "w") as f:
        f.write(f"""gateway: {{ id: bench-gw, site: bench, building: b, data_dir: data-{n} }}
control: {{ socket: gatewayd-{n}.sock }}
mqtt: {{ uri: "{broker.uri}", max_inflight: 64 }}
devices:{devices}
""")
    gw = work.spawn(f"gatewayd-{n}", [exe(build, "gateway/gatewayd"), "--config", config])
    cpu, rss, hwm, w0, w1 = measure(gw, warmup, window)
    # Every reading must have been stored and published, not just polled.
    st = control(work.file(f"gatewayd-{n}.sock"), "status") or {}
    terminate(gw)
    intervals = sim.stop_and_intervals(w0, w1)
    mq, buf = st.get("mqtt", {}), st.get("buffer", {})
    check = {"acked": mq.get("acked_events", -1), "pending": buf.get("pending", -1),
             "online": st.get("devices_online", -1)}
    return cpu, rss, hwm, intervals, check


def run_bare(work, build, broker, n, warmup, window):
    sim = Sim(work, build, n, f"bare{n}")
    proc = work.spawn(f"bare-{n}", [exe(build, "tools/bench/bare_poll"), "--ports-file",
                                    sim.ports_file, "--uri", broker.uri, "--seconds",
                                    str(warmup + window + 5)])
    cpu, rss, hwm, w0, w1 = measure(proc, warmup, window)
    terminate(proc)
    intervals = sim.stop_and_intervals(w0, w1)
    return cpu, rss, hwm, intervals, {}


def install_nodered(folder):
    """npm install into `folder`; None when it worked, else why not."""
    if not shutil.which("node") or not shutil.which("npm"):
        return "node or npm is not installed (tools/install-deps.sh installs Debian's nodejs npm)"
    with open(os.path.join(folder, "package.json"), "w") as f:
        json.dump({"name": "gw-bench-nodered", "version": "1.0.0", "private": True}, f)
    try:
        p = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--omit=dev",
                            "--loglevel=error", NODE_RED, NODE_RED_MODBUS], cwd=folder,
                           capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return "npm install took more than 600 s"
    if p.returncode != 0:
        return f"npm install failed ({p.returncode}): {p.stderr.strip()[-400:]}"
    return None


def nodered_flow(ports, mqtt_port):
    nodes = [{"id": "tab", "type": "tab", "label": "bench"},
             {"id": "broker", "type": "mqtt-broker", "name": "bench", "broker": "127.0.0.1",
              "port": str(mqtt_port), "clientid": "bench-nodered", "autoConnect": True,
              "usetls": False, "protocolVersion": "4", "keepalive": "60", "cleansession": True}]
    for i, port in enumerate(ports):
        nodes.append({"id": f"c{i}", "type": "modbus-client", "name": f"m{i}", "clienttype": "tcp",
                      "bufferCommands": True, "stateLogEnabled": False, "queueLogEnabled": False,
                      "failureLogEnabled": False, "tcpHost": "127.0.0.1", "tcpPort": str(port),
                      "tcpType": "DEFAULT", "serialPort": "/dev/null", "serialType": "RTU-BUFFERD",
                      "serialBaudrate": "9600", "serialDatabits": "8", "serialStopbits": "1",
                      "serialParity": "none", "serialConnectionDelay": "100", "unit_id": "1",
                      "commandDelay": "1", "clientTimeout": "1000", "reconnectOnTimeout": True,
                      "reconnectTimeout": "2000", "parallelUnitIdsAllowed": True})
        nodes.append({"id": f"r{i}", "type": "modbus-read", "z": "tab", "name": f"read m{i}",
                      "topic": "", "showStatusActivities": False, "logIOActivities": False,
                      "showErrors": False, "showWarnings": False, "unitid": "",
                      "dataType": "HoldingRegister", "adr": "0", "quantity": "20", "rate": "1",
                      "rateUnit": "s", "delayOnStart": False, "startDelayTime": "",
                      "server": f"c{i}", "useIOFile": False, "ioFile": "",
                      "useIOForPayload": False, "emptyMsgOnFail": False,
                      "wires": [[f"o{i}"], []]})
        nodes.append({"id": f"o{i}", "type": "mqtt out", "z": "tab", "name": "",
                      "topic": f"bench/nodered/m{i}", "qos": "1", "retain": "false",
                      "broker": "broker", "wires": []})
    return nodes


def run_nodered(work, folder, build, broker, n, warmup, window):
    sim = Sim(work, build, n, f"nr{n}")
    # The install folder is the userDir: Node-RED finds the modbus nodes in its node_modules.
    flows = os.path.join(folder, f"flows-{n}.json")
    settings = os.path.join(folder, f"settings-{n}.js")
    with open(flows, "w") as f:
        json.dump(nodered_flow(sim.ports, broker.port), f)
    with open(settings, "w") as f:
        f.write("module.exports = { uiHost: '127.0.0.1', uiPort: %d, flowFile: %s,\n"
                "  logging: { console: { level: 'warn' } } };\n" % (free_port(), json.dumps(flows)))
    proc = work.spawn(f"nodered-{n}", ["node", os.path.join(folder, "node_modules/node-red/red.js"),
                                       "--userDir", folder, "--settings", settings])
    # Node-RED takes a few seconds to load and start its flows: a longer warm-up.
    cpu, rss, hwm, w0, w1 = measure(proc, warmup + 10, window)
    terminate(proc)
    intervals = sim.stop_and_intervals(w0, w1)
    return cpu, rss, hwm, intervals, {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--long", action="store_true", help="60 s windows")
    ap.add_argument("--window", type=float, help="measuring window in seconds (default 20)")
    ap.add_argument("--warmup", type=float, help="seconds before the window (default 5)")
    ap.add_argument("--sizes", help="comma-separated N (default 100,500,1000; smoke 20)")
    ap.add_argument("--nodered", help="N to run Node-RED at (default 100,500; smoke: none); "
                    "'none' skips it")
    ap.add_argument("--nodered-dir", help="reuse an installed Node-RED folder (else a temp one)")
    args = ap.parse_args()
    build = build_dir(args.build_dir)
    window = args.window or (60 if args.long else (4 if args.smoke else 20))
    warmup = args.warmup if args.warmup is not None else (2 if args.smoke else 5)
    sizes = [int(x) for x in (args.sizes or ("20" if args.smoke else "100,500,1000")).split(",")]
    nr_arg = args.nodered or ("none" if args.smoke else "100,500")
    nr_sizes = [] if nr_arg == "none" else [int(x) for x in nr_arg.split(",")]

    fig = Figures(f"polling W(N): 20 registers per device per second; {window:.0f} s windows")
    results = {}
    with Workdir("bench-poll") as work:
        broker = quiet_broker(work)
        for n in sizes:
            for who, fn in (("bare", run_bare), ("gatewayd", run_gatewayd)):
                results[(who, n)] = fn(work, build, broker, n, warmup, window)
        nr_folder = None
        nr_problem = None
        if nr_sizes:
            nr_folder = args.nodered_dir or tempfile.mkdtemp(prefix="gw-bench-nodered-")
            if not os.path.exists(os.path.join(nr_folder, "node_modules/node-red/red.js")):
                print(f"bench: installing {NODE_RED} {NODE_RED_MODBUS} into {nr_folder} ...",
                      file=sys.stderr, flush=True)
                nr_problem = install_nodered(nr_folder)
            for n in nr_sizes if nr_problem is None else []:
                try:
                    results[("node-red", n)] = run_nodered(work, nr_folder, build, broker, n,
                                                           warmup, window)
                except (RuntimeError, AssertionError) as e:
                    nr_problem = f"Node-RED at N={n}: {e}"
                    break
        work.failed = False
    if nr_folder and not args.nodered_dir:
        shutil.rmtree(nr_folder, ignore_errors=True)

    for n in sizes:
        b_cpu = results[("bare", n)][0]
        for who in ("bare", "gatewayd", "node-red"):
            if (who, n) not in results:
                continue
            cpu, rss, hwm, iv, check = results[(who, n)]
            p50, p99 = percentile(iv, 0.5), percentile(iv, 0.99)
            ratio = cpu / b_cpu if b_cpu > 0 else 0.0
            note = f"RSS {rss:.1f} MiB (peak {hwm:.1f}); interval p50 {p50:.4f} s p99 {p99:.4f} s"
            if who != "bare":
                note += f"; {ratio:.2f}x bare CPU"
            extra = {"n": n, "rss_mib": round(rss, 1), "rss_peak_mib": round(hwm, 1),
                     "interval_p50_s": f"{p50:.4f}", "interval_p99_s": f"{p99:.4f}",
                     "polls": len(iv), "window_s": window}
            if who != "bare":
                extra.update(bare=round(b_cpu, 3), ratio=round(ratio, 2))
            if check:
                extra.update(acked_events=check["acked"], pending=check["pending"],
                             devices_online=check["online"])
                note += (f"; {check['online']}/{n} online, {check['acked']} events acked, "
                         f"{check['pending']} pending")
            fig.add(f"poll_{who.replace('-', '')}_w{n}_cpu", cpu, "%core",
                    f"W({n}) {who} CPU", note, **extra)
        if ("node-red", n) in results and ("gatewayd", n) in results:
            g, r = results[("gatewayd", n)], results[("node-red", n)]
            fig.add(f"poll_nodered_vs_gatewayd_w{n}", r[0] / g[0] if g[0] else 0.0, "x",
                    f"W({n}) Node-RED / gatewayd CPU",
                    f"memory {r[1] / g[1]:.1f}x (target >= 3x CPU, >= 8x memory at W(500))",
                    mem_ratio=round(r[1] / g[1], 2))
    if nr_sizes and nr_problem:
        print(f"bench: Node-RED side by side skipped: {nr_problem}", flush=True)
        print(f"BENCH name=poll_nodered value=skipped unit=- reason={json.dumps(nr_problem)}")
    elif not nr_sizes:
        print("bench: Node-RED side by side not run (--nodered none, or --smoke)", flush=True)
    fig.table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
