"""Cameras end to end, through the real daemon to the central subscriber:
- a Hikvision camera serving its alert stream behind digest login: every active/inactive
  transition arrives once, in order; its "still active" repeats and its heartbeats do not;
- a Dahua camera whose stream stalls (the socket stays open, nothing more is written): the
  gateway takes it for dead after its heartbeat timeout, reconnects, and the rest of the
  sequence arrives; the time from the stream's last byte to the new connection is measured;
- a camera pushing its alarms to the gateway's listener, as XML with a picture attached and as
  JSON: 200 for each alarm, 400 for garbage, the same exactly-once transitions.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

from harness import Broker, Gatewayd, Subscriber, Workdir, free_port, log, port_open, wait_for

GATEWAY = "cams-gw-01"
HEARTBEAT_TIMEOUT_S = 3.0

HIK_SEQUENCE = ("VMD@1=active*4,VMD@1=inactive,linedetection@2=active*3,linedetection@2=inactive,"
                "fielddetection@1=active,fielddetection@1=inactive,shelteralarm@3=active*2,"
                "shelteralarm@3=inactive")
HIK_EXPECTED = [("motion", True, 1), ("motion", False, 1), ("line_crossing", True, 2),
                ("line_crossing", False, 2), ("intrusion", True, 1), ("intrusion", False, 1),
                ("tamper", True, 3), ("tamper", False, 3)]

DAHUA_SEQUENCE = ("VideoMotion@1=active*3,VideoMotion@1=inactive,CrossLineDetection@2=active,"
                  "CrossLineDetection@2=inactive,AlarmLocal@1=pulse*2,VideoBlind@1=active*2,"
                  "VideoBlind@1=inactive")
DAHUA_EXPECTED = [("motion", True, 1), ("motion", False, 1), ("line_crossing", True, 2),
                  ("line_crossing", False, 2), ("alarm_input", True, 1), ("alarm_input", True, 1),
                  ("tamper", True, 1), ("tamper", False, 1)]
DAHUA_STALL_AFTER = 6  # parts (heartbeats and posts) on the first connection, then silence

PUSH_XML_SEQUENCE = ("VMD@1=active*3,VMD@1=inactive,linedetection@1=active*2,"
                     "linedetection@1=inactive,garbage")
PUSH_JSON_SEQUENCE = "tamper@2=active*2,tamper@2=inactive,garbage"
PUSH_EXPECTED = [("motion", True, 1), ("motion", False, 1), ("line_crossing", True, 1),
                 ("line_crossing", False, 1), ("tamper", True, 2), ("tamper", False, 2)]


def sim_port(work, name):
    def find():
        try:
            for line in open(work.file(f"{name}.stdout")):
                if line.startswith("listening "):
                    return int(line.split()[2])
        except OSError:
            return None
        return None
    return wait_for(find, 10, f"{name}'s port")


def sim_log(work, name):
    """(unix time, text) of each stamped line the simulator printed."""
    out = []
    for line in open(work.file(f"{name}.stdout")):
        m = re.match(r"t=(\d+\.\d+) (.*)", line.strip())
        if m:
            out.append((float(m.group(1)), m.group(2)))
    return out


def camera_events(central, device):
    """(type, active, channel) of `device`'s camera events, deduplicated by seq, in seq order."""
    by_seq = {}
    for e in central.events():
        ev = e["event"]
        if e["gateway_id"] != GATEWAY or ev["device_id"] != device or "camera" not in ev:
            continue
        c = ev["camera"]
        by_seq[int(ev["seq"])] = (c["type"], bool(c.get("active", False)), int(c.get("channel", 0)))
    return [by_seq[s] for s in sorted(by_seq)]


def status_events(central, device):
    out = {}
    for e in central.events():
        ev = e["event"]
        if e["gateway_id"] == GATEWAY and ev["device_id"] == device and "status" in ev:
            out[int(ev["seq"])] = (bool(ev["status"].get("online", False)),
                                   ev["status"].get("error", ""))
    return [out[s] for s in sorted(out)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    build = args.build_dir
    sim = os.path.join(build, "tools/sim/camera_sim")
    ctl = os.path.join(build, "tools/gatewayctl/gatewayctl")
    with Workdir("camera") as work:
        broker = Broker(work).start()
        central = Subscriber(work, build, broker, client_id="it-central-cams")
        work.spawn("sim-hik", [sim, "stream", "--vendor", "hikvision", "--auth", "digest",
                               "--user", "gateway", "--password", "cam-pass-1",
                               "--heartbeat", "1", "--interval", "0.15", "--start-delay", "1",
                               "--sequence", HIK_SEQUENCE])
        work.spawn("sim-dahua", [sim, "stream", "--vendor", "dahua", "--auth", "digest",
                                 "--user", "gateway", "--password", "cam-pass-1",
                                 "--heartbeat", "1", "--interval", "0.3", "--start-delay", "1",
                                 "--stall-after", str(DAHUA_STALL_AFTER), "--chunked",
                                 "--sequence", DAHUA_SEQUENCE])
        hik_port = sim_port(work, "sim-hik")
        dahua_port = sim_port(work, "sim-dahua")
        push_port = free_port()
        with open(work.file("camera.pass"), "w") as f:
            f.write("cam-pass-1\n")
        config = work.file("gateway.yaml")
        with open(config, "w") as f:
            f.write(f"""gateway: {{ id: {GATEWAY}, site: north, building: library, data_dir: data }}
control: {{ socket: gatewayd.sock }}
mqtt: {{ uri: "{broker.uri}", backoff: {{ initial: 100ms, max: 1s }} }}
devices:
  - id: cam-hik
    kind: camera
    driver: camera_http
    mode: stream
    vendor: hikvision
    address: 127.0.0.1:{hik_port}
    username: gateway
    password_file: camera.pass
    heartbeat: 1s
  - id: cam-dahua
    kind: camera
    driver: camera_http
    mode: stream
    vendor: dahua
    address: 127.0.0.1:{dahua_port}
    username: gateway
    password_file: camera.pass
    heartbeat: 1s
    heartbeat_timeout: {HEARTBEAT_TIMEOUT_S:g}s
  - id: cam-push
    kind: camera
    driver: camera_http
    mode: push
    listen: 127.0.0.1:{push_port}
    path: /alarm
    allow_from: [127.0.0.1]
""")
        gw = Gatewayd(work, build, config)

        # ---- push: XML with a picture, then JSON ----
        wait_for(lambda: port_open(push_port), 15, "the push listener")
        for fmt, seq in (("multipart", PUSH_XML_SEQUENCE), ("json", PUSH_JSON_SEQUENCE)):
            p = subprocess.run([sim, "push", "--url", f"http://127.0.0.1:{push_port}/alarm",
                                "--format", fmt, "--interval", "0.05", "--image-bytes", "150000",
                                "--sequence", seq], capture_output=True, text=True, timeout=60)
            log(f"push {fmt}:\n" + p.stdout.strip())
            assert p.returncode == 0, f"push {fmt}: an answer was not 200 (400 for garbage)"
            assert "-> 400 XML: end tag </eventTyp> does not match <eventType>" in p.stdout or \
                fmt != "multipart", p.stdout

        def all_arrived():
            return (len(camera_events(central, "cam-hik")) >= len(HIK_EXPECTED) and
                    len(camera_events(central, "cam-dahua")) >= len(DAHUA_EXPECTED) and
                    len(camera_events(central, "cam-push")) >= len(PUSH_EXPECTED))
        wait_for(all_arrived, 60, "every camera's transitions at the central subscriber",
                 interval=0.2)
        time.sleep(2)  # anything extra (a repeat re-sent, a heartbeat as an event) shows up now

        results = {}
        for device, expected in (("cam-hik", HIK_EXPECTED), ("cam-dahua", DAHUA_EXPECTED),
                                 ("cam-push", PUSH_EXPECTED)):
            got = camera_events(central, device)
            assert got == expected, f"{device}: got {got}, expected {expected}"
            results[device] = len(got)
        report = central.gateway(GATEWAY)
        assert report["out_of_order"] == 0, report

        # ---- the stall: silence for the heartbeat timeout, then a new connection ----
        lines = sim_log(work, "sim-dahua")
        stall = next(t for t, text in lines if text.startswith("stall 1 after"))
        last_byte = max(t for t, text in lines if t <= stall and
                        (text.startswith("heartbeat 1") or text.startswith("sent 1 ")))
        reconnect = next(t for t, text in lines if text.startswith("connection 2 "))
        gap = reconnect - last_byte
        log(f"cam-dahua: stream stalled after its last byte at {last_byte:.3f}, new connection "
            f"{gap * 1000:.0f} ms later (heartbeat timeout {HEARTBEAT_TIMEOUT_S * 1000:.0f} ms)")
        assert HEARTBEAT_TIMEOUT_S - 0.1 <= gap <= HEARTBEAT_TIMEOUT_S + 0.5, gap
        statuses = status_events(central, "cam-dahua")
        assert statuses[:3] == [(True, ""),
                                (False, f"alert stream silent for {HEARTBEAT_TIMEOUT_S:g}s "
                                        "(heartbeat timeout)"),
                                (True, "")], statuses
        assert status_events(central, "cam-hik") == [(True, "")]

        # ---- what gatewayctl shows: bad input counted per device, everyone online ----
        p = subprocess.run([ctl, "--config", config, "devices", "--json"], capture_output=True,
                           text=True, timeout=20)
        assert p.returncode == 0, p.stderr
        devices = {d["id"]: d for d in json.loads(p.stdout)["devices"]}
        log("cam-push:", json.dumps(devices["cam-push"]))
        assert all(devices[d]["online"] for d in ("cam-hik", "cam-dahua", "cam-push")), devices
        assert devices["cam-push"].get("bad_input", {}).get("format") == 2, devices["cam-push"]

        assert gw.proc.poll() is None, "gatewayd must stay up"
        assert gw.stop() == 0
        stderr = gw.stderr()
        assert "cam-pass-1" not in stderr, "a camera password in the daemon's log"
        print(f"cameras: transitions delivered exactly once in order: {results}; "
              f"stalled stream reconnected {gap * 1000:.0f} ms after its last byte "
              f"(heartbeat timeout {HEARTBEAT_TIMEOUT_S * 1000:.0f} ms)")
        work.failed = False
    return 0


if __name__ == "__main__":
    sys.exit(main())
