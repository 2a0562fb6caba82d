"""The real gatewayctl against the real daemon: every query command's --json has the documented
keys with values that match what the simulators did; the human status screen, seen in a
terminal (tmux) as a person would, leads with the verdict and names the offline device and why;
tail streams, read answers, reload refuses a bad file, and errors exit with the contract's codes."""
import argparse
import json
import os
import subprocess
import sys
import time

from harness import Broker, Gatewayd, ModbusSim, Subscriber, Workdir, free_port, wait_for

GATEWAY = "cli-gw-01"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    ctl = os.path.join(args.build_dir, "tools/gatewayctl/gatewayctl")
    with Workdir("gatewayctl") as work:
        broker = Broker(work).start()
        sim = ModbusSim(work, args.build_dir, devices=2, tick_ms=200)
        dead_port = free_port()  # nothing listens there: a meter that is unplugged
        config = work.file("gateway.yaml")
        with open(config, "w") as f:
            f.write(f"""gateway: {{ id: {GATEWAY}, site: north, building: library, data_dir: data }}
control: {{ socket: gatewayd.sock }}
mqtt: {{ uri: "{broker.uri}" }}
devices:
  - {{ id: meter-0, kind: energy_meter, driver: modbus_tcp, address: "127.0.0.1:{sim.ports[0]}",
      poll: 500ms, points: [ {{ name: energy_total, address: 0, type: uint32, scale: 0.01, unit: kWh }},
                             {{ name: device_tag, address: 20, type: uint16 }} ] }}
  - {{ id: meter-1, kind: energy_meter, driver: modbus_tcp, address: "127.0.0.1:{sim.ports[1]}",
      poll: 500ms, points: [ {{ name: device_tag, address: 20, type: uint16 }} ] }}
  - {{ id: meter-gone, kind: energy_meter, driver: modbus_tcp, address: "127.0.0.1:{dead_port}",
      poll: 500ms, timeout: 200ms, offline_after: 2, points: [ {{ name: e, address: 0, type: uint16 }} ] }}
""")
        gw = Gatewayd(work, args.build_dir, config)

        def run(*argv, timeout=20):
            p = subprocess.run([ctl, "--config", config, *argv], capture_output=True, text=True,
                               timeout=timeout)
            return p.returncode, p.stdout, p.stderr

        def js(*argv):
            rc, out, err = run(*argv, "--json")
            assert rc == 0, (argv, rc, err)
            return json.loads(out)

        wait_for(lambda: os.path.exists(work.file("gatewayd.sock")), 10, "the control socket")
        wait_for(lambda: js("status")["devices_offline"] == 1 and js("status")["devices_online"] == 2,
                 20, "two meters online and one offline")

        st = js("status")
        for key in ("gateway_id", "version", "uptime_s"):
            assert key in st
        assert st["gateway_id"] == GATEWAY and st["mqtt"]["connected"] is True
        assert {"pending", "oldest_age_s"} <= set(st["buffer"])
        assert {(d["id"], d["online"]) for d in st["devices"]} == {
            ("meter-0", True), ("meter-1", True), ("meter-gone", False)}

        devs = js("devices")["devices"]
        assert [d["id"] for d in devs] == ["meter-0", "meter-1", "meter-gone"]
        for d in devs:
            for key in ("driver", "address", "online", "last_good_read_us", "errors",
                        "poll_ms_configured", "poll_ms_achieved", "latency_ms", "points"):
                assert key in d, (d["id"], key)
        assert devs[2]["errors"]["unavailable"] >= 2 and "refused" in devs[2]["last_error"], devs[2]
        one = js("devices", "meter-1")["devices"]
        assert len(one) == 1 and one[0]["points"][0]["value"] == 1001, one

        rc, out, _ = run("read", "meter-0", "device_tag")
        assert rc == 0 and "1000" in out, out
        buf = js("buffer")
        assert buf["next_seq"] > 1 and "telemetry" in buf["classes"]

        # The status screen in an 80x24 terminal: the verdict first, the offline meter named
        # with its reason, nothing wider than the terminal.
        session = f"gwctl{os.getpid()}"
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24",
                        f"{ctl} --config {config} status; sleep 30"], check=True)
        try:
            screen = wait_for(lambda: (lambda s: s if "meter-gone" in s else None)(
                subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                               capture_output=True, text=True).stdout), 10, "the status screen")
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session])
        lines = [l for l in screen.splitlines() if l.strip()]
        assert lines[0].startswith(GATEWAY) and "DEGRADED" in lines[0], lines[0]
        # The verdict's reasons wrap whole onto an indented second line when they do not fit
        # 80 columns (e.g. when events are waiting).
        verdict = lines[0] + (" " + lines[1].strip() if lines[1].startswith("  ") else "")
        assert "1/3 devices offline" in verdict or "2/3" in verdict, verdict
        gone = [l for l in lines if "meter-gone" in l]
        assert gone and "refused" in gone[0], gone
        assert all(len(l) <= 80 for l in lines), [l for l in lines if len(l) > 80]
        assert len(lines) <= 24, f"{len(lines)} lines do not fit one screen"

        # tail streams decoded events until interrupted.
        tail = subprocess.Popen([ctl, "--config", config, "tail", "--device", "meter-1"],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(2.5)
        tail.terminate()
        out, _ = tail.communicate(timeout=10)
        tail_lines = [l for l in out.splitlines() if "meter-1" in l]
        assert len(tail_lines) >= 2, out

        # A bad file is refused by reload and the daemon keeps running the old one.
        good = open(config).read()
        with open(config, "w") as f:
            f.write(good.replace("poll: 500ms", "poll: soon", 1))
        rc, out, err = run("reload")
        assert rc != 0 and "poll" in (out + err), (rc, out, err)
        with open(config, "w") as f:
            f.write(good)
        assert js("status")["devices_online"] == 2

        # Errors: an unknown device and a daemon that is not there.
        rc, _, err = run("devices", "nope")
        assert rc == 1 and "nope" in err, (rc, err)
        p = subprocess.run([ctl, "--socket", work.file("absent.sock"), "status"],
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 69 and "absent.sock" in p.stderr, (p.returncode, p.stderr)

        assert gw.stop() == 0
        print(f"gatewayctl: status/devices/read/buffer/tail ok; status screen {len(lines)} lines, "
              f"first: {lines[0]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
