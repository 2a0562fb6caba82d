"""The control socket of the real daemon, spoken to directly (protocol version 1): the contract's
status keys with values that match what the simulators did, devices, buffer, one-off reads,
tail, garbage and overlong requests, and safe reload — a bad file keeps the old config running;
a reload that changes one device loses no event (seqs stay continuous at the subscriber)."""
import argparse
import json
import os
import signal
import socket
import stat
import sys
import time

import re
import urllib.request

from harness import (Broker, Gatewayd, ModbusSim, Subscriber, Workdir, free_port, gateway_config,
                     log, wait_for)

GATEWAY = "ctl-gw-01"


class Control:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.settimeout(10)
        self.buf = b""
        self.next_id = 1

    def send_raw(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("control socket closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, cmd, **args):
        rid = self.next_id
        self.next_id += 1
        self.send_raw(json.dumps({"v": 1, "id": rid, "cmd": cmd, "args": args}).encode() + b"\n")
        reply = self.line()
        assert reply["id"] == rid, reply
        return reply


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    with Workdir("control") as work:
        broker = Broker(work).start()
        sim = ModbusSim(work, args.build_dir, devices=2, tick_ms=200)
        central = Subscriber(work, args.build_dir, broker)
        metrics_port = free_port()
        config = gateway_config(work, broker, sim.ports, GATEWAY,
                                extra=f"metrics: {{ listen: 127.0.0.1:{metrics_port} }}\n")
        gw = Gatewayd(work, args.build_dir, config)
        sock_path = os.path.join(os.path.dirname(config), "gatewayd.sock")
        wait_for(lambda: os.path.exists(sock_path), 10, "the control socket")
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o660, oct(os.stat(sock_path).st_mode)
        ctl = Control(sock_path)

        hello = ctl.call("hello")["result"]
        assert hello["protocol"] == 1 and hello["gateway_id"] == GATEWAY, hello
        wait_for(lambda: ctl.call("status")["result"]["devices_online"] == 2, 15, "2 devices online")
        wait_for(lambda: ctl.call("status")["result"]["mqtt"]["connected"], 15, "MQTT connected")
        st = ctl.call("status")["result"]
        for key in ("gateway_id", "version", "uptime_s"):
            assert key in st, key
        assert st["gateway_id"] == GATEWAY
        assert st["mqtt"]["connected"] is True
        assert isinstance(st["buffer"]["pending"], int) and "oldest_age_s" in st["buffer"]
        assert sorted(d["id"] for d in st["devices"]) == ["meter-0", "meter-1"], st["devices"]
        assert all(d["online"] for d in st["devices"]), st["devices"]

        devs = ctl.call("devices")["result"]["devices"]
        assert [d["id"] for d in devs] == ["meter-0", "meter-1"]
        d0 = devs[0]
        assert d0["driver"] == "modbus_tcp" and d0["address"] == f"127.0.0.1:{sim.ports[0]}", d0
        assert d0["poll_ms_configured"] == 200 and d0["polls"] > 0, d0
        tag = [p for p in d0["points"] if p["name"] == "device_tag"][0]
        assert tag["value"] == 1000 and tag["good"], tag
        assert ctl.call("devices", device="nope")["error"]["code"] == "not_found"

        r = ctl.call("read", device="meter-1", point="device_tag")
        assert r["ok"] and r["result"]["value"] == 1001 and r["result"]["good"], r
        r = ctl.call("read", device="meter-1", point="energy_total")["result"]
        served = [v["energy_total"] for v in sim.values()[1]]
        assert any(abs(r["value"] - s) < 1e-9 for s in served), (r, served[-3:])
        assert ctl.call("read", device="meter-1", point="nope")["error"]["code"] == "not_found"

        # Prometheus: the same story in metrics.
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        def metric(line_start):
            m = re.search(r"^" + re.escape(line_start) + r" (\S+)$", body, re.M)
            assert m, f"no {line_start} in /metrics"
            return float(m.group(1))
        assert metric("gateway_mqtt_connected") == 1
        assert metric('gateway_device_online{device="meter-1"}') == 1
        assert metric('gateway_events_committed_total{class="telemetry",device="meter-0"}') > 0
        assert "gateway_publish_ack_latency_seconds_bucket" in body
        assert "gateway_poll_latency_seconds_count" in body

        buf = ctl.call("buffer", oldest=3)["result"]
        assert buf["next_seq"] > 1 and set(buf["classes"]) == {"access", "alarm", "telemetry", "status"}

        # Garbage, an unknown command, a wrong version and an overlong line: clear errors, and the
        # connection still answers afterwards.
        ctl.send_raw(b"this is not json\n")
        assert ctl.line()["error"]["code"] == "bad_request"
        ctl.send_raw(json.dumps({"v": 2, "id": 9, "cmd": "status"}).encode() + b"\n")
        assert ctl.line()["error"]["code"] == "unsupported_version"
        assert ctl.call("frobnicate")["error"]["code"] == "unknown_command"
        ctl.send_raw(b"x" * 200000 + b"\n")
        assert ctl.line()["error"]["code"] == "bad_request"
        assert ctl.call("hello")["ok"]

        # tail: live decoded events on a second connection.
        tail = Control(sock_path)
        assert tail.call("tail", device="meter-0")["result"]["streaming"]
        items = [tail.line() for _ in range(3)]
        assert all(i["item"]["event"]["device_id"] == "meter-0" for i in items), items

        # trace: the Modbus TCP frames of one device, both ways, with the decoder's reading.
        trace = Control(sock_path)
        assert trace.call("trace", device="meter-1")["result"]["streaming"]
        frames = [trace.line()["item"] for _ in range(8)]
        while frames[0]["dir"] != "tx":  # the stream may begin mid-poll
            frames = frames[1:] + [trace.line()["item"]]
        tx, rx = frames[0], frames[1]
        assert tx["device"] == "meter-1" and rx["dir"] == "rx", frames
        req, ans = bytes.fromhex(tx["hex"]), bytes.fromhex(rx["hex"])
        assert len(req) == 12 and req[2:4] == b"\0\0" and req[6] == 1, tx  # MBAP, unit 1
        assert ans[:2] == req[:2], (tx, rx)  # the answer carries the request's transaction id
        assert rx["note"].startswith("tid ") and "=" in rx["note"], rx
        assert any("voltage" in f["note"] for f in frames if f["dir"] == "rx"), frames
        trace.sock.close()

        # A bad config file: refused, the running config stays.
        original = open(config).read()
        with open(config, "w") as f:
            f.write(original.replace("poll: 200ms", "poll: fast", 1))
        r = ctl.call("reload")
        assert r["error"]["code"] == "invalid_config" and "poll" in r["error"]["message"], r
        polls_before = ctl.call("devices", device="meter-0")["result"]["devices"][0]["polls"]
        time.sleep(1.0)
        polls_after = ctl.call("devices", device="meter-0")["result"]["devices"][0]["polls"]
        assert polls_after > polls_before, "the old config must keep polling"

        # One device changed: only it restarts; nothing is lost.
        lines = original.split("\n")
        second = [i for i, l in enumerate(lines) if "poll: 200ms" in l][1]
        lines[second] = lines[second].replace("200ms", "300ms")
        with open(config, "w") as f:
            f.write("\n".join(lines))
        r = ctl.call("reload")["result"]
        assert r["changed"] == ["meter-1"] and r["unchanged"] == 1 and not r["added"], r
        wait_for(lambda: ctl.call("devices", device="meter-1")["result"]["devices"][0]
                 ["poll_ms_configured"] == 300, 5, "meter-1 on its new period")
        # A change outside devices and buses needs a restart: refused whole, nothing applied.
        changed_now = open(config).read()
        with open(config, "w") as f:
            f.write(changed_now.replace("max_inflight: 10", "max_inflight: 11"))
        r = ctl.call("reload")
        assert r["error"]["code"] == "restart_required" and "mqtt" in r["error"]["message"], r
        with open(config, "w") as f:
            f.write(changed_now)
        # SIGHUP reloads the same way (nothing changed now).
        gw.proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        assert "reloaded" in gw.stderr()

        assert gw.stop() == 0
        time.sleep(1.0)
        central.stop()
        report = central.gateway(GATEWAY)
        pending, next_seq = gw.buffer_rows()
        assert report["gaps"] == 0, report
        missing = set(range(1, next_seq)) - {int(e["event"]["seq"]) for e in central.events()} - set(pending)
        assert not missing, sorted(missing)[:10]
        assert not os.path.exists(sock_path), "the socket is removed at exit"
        print(f"control socket: status/devices/read/buffer/tail ok; reload bad file refused, one "
              f"device changed live; events {report['distinct']}, gaps {report['gaps']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
