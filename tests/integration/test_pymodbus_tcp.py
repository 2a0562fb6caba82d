"""End to end against an independent Modbus implementation: pymodbus (Debian's python3-pymodbus)
serves the register maps of the shipped device profiles (deploy/profiles/) over Modbus TCP;
gatewayd polls them through `profile:`; the central subscriber must see, for every point of
every profile, exactly the engineering value the test encoded.

The register images are written here with Python's struct module from the vendors' manuals
(see each profile's comments), not from the gateway's code and not from the profile files: a
wrong address, word order, type or scale in a profile, or a decoding bug in the gateway, shows up
as a mismatch. Integers must match exactly after `raw * scale`; float32 values must match the
value rounded to float32 (what the meter can hold).

Values are chosen to exercise: float32 in big word order (Integra, SDM72D-M), negative floats,
int32 in little word order (Carlo Gavazzi: LSW first) with a non-zero high word and negative
values, int16 negatives, uint64/int64 with all four registers in use (ABB).
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import time

from harness import Broker, Gatewayd, Subscriber, Workdir, log, stop_process, wait_for

GATEWAY = "it-pymodbus-gw"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PROFILES = os.path.join(REPO, "deploy", "profiles")
SERVER = os.path.join(REPO, "tools", "sim", "pymodbus_server.py")


# ---- register encoding (independent of the gateway: Python's struct) -------------------------

def words(fmt, value, word_order):
    """16-bit registers of value packed big-endian with struct format fmt; word_order 'big'
    keeps the most significant register first, 'little' reverses the registers."""
    raw = struct.pack(">" + fmt, value)
    regs = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
    return regs if word_order == "big" else list(reversed(regs))


def f32(x):
    """x rounded to IEEE single precision, as a double (what a float32 register pair holds)."""
    return struct.unpack(">f", struct.pack(">f", x))[0]


class Point:
    def __init__(self, name, table, address, fmt, word_order, raw, scale=1.0, unit=""):
        self.name, self.table, self.address = name, table, address
        self.fmt, self.word_order, self.raw, self.scale, self.unit = fmt, word_order, raw, scale, unit

    def registers(self):
        return words(self.fmt, self.raw, self.word_order)

    def expected(self):
        if self.fmt == "f":
            return f32(self.raw) * self.scale
        return self.raw * self.scale  # the gateway computes raw * scale + offset in double


# Register maps as the manuals give them (addresses zero-based, as sent in the frame).
DEVICES = {
    # Carlo Gavazzi EM21: EM21-DIN Communication Protocol v1r0, Table 2.3-1; INT32 words LSW->MSW.
    "em21": ("carlo-gavazzi-em21.yaml", [
        Point("voltage_l1", "input", 0x0000, "i", "little", 2304, 0.1, "V"),
        Point("voltage_l2", "input", 0x0002, "i", "little", 2311, 0.1, "V"),
        Point("voltage_l3", "input", 0x0004, "i", "little", 2299, 0.1, "V"),
        Point("current_l1", "input", 0x000C, "i", "little", 70123, 0.001, "A"),    # > 65535
        Point("current_l2", "input", 0x000E, "i", "little", 1500, 0.001, "A"),
        Point("current_l3", "input", 0x0010, "i", "little", 65536, 0.001, "A"),    # high word only
        Point("active_power", "input", 0x0028, "i", "little", -1234567, 0.1, "W"),  # exporting
        Point("power_factor", "input", 0x0031, "h", "big", -870, 0.001, ""),      # lead (C)
        Point("frequency", "input", 0x0033, "h", "big", 499, 0.1, "Hz"),
        Point("energy_import", "input", 0x0034, "i", "little", 98765432, 0.1, "kWh"),
    ]),
    # Crompton Integra 1540: 3X table, IEEE 754 float, most significant register first.
    "integra": ("crompton-integra-1540.yaml", [
        Point("voltage_l1", "input", 0, "f", "big", 230.7, 1.0, "V"),
        Point("voltage_l2", "input", 2, "f", "big", 231.15, 1.0, "V"),
        Point("voltage_l3", "input", 4, "f", "big", 229.9, 1.0, "V"),
        Point("current_l1", "input", 6, "f", "big", 12.345, 1.0, "A"),
        Point("current_l2", "input", 8, "f", "big", 0.001, 1.0, "A"),
        Point("current_l3", "input", 10, "f", "big", 1234.5678, 1.0, "A"),
        Point("active_power", "input", 52, "f", "big", -15234.5, 1.0, "W"),
        Point("power_factor", "input", 62, "f", "big", -0.92, 1.0, ""),
        Point("frequency", "input", 70, "f", "big", 49.98, 1.0, "Hz"),
        Point("energy_import", "input", 72, "f", "big", 12345678.0, 1.0, "Wh"),
    ]),
    # Eastron SDM72D-M: input registers 3X, Float, Hi register first.
    "sdm72": ("eastron-sdm72d-m.yaml", [
        Point("voltage_l1", "input", 0, "f", "big", 239.1, 1.0, "V"),
        Point("voltage_l2", "input", 2, "f", "big", 238.4, 1.0, "V"),
        Point("voltage_l3", "input", 4, "f", "big", 240.25, 1.0, "V"),
        Point("current_l1", "input", 6, "f", "big", 3.21, 1.0, "A"),
        Point("current_l2", "input", 8, "f", "big", 65.5, 1.0, "A"),
        Point("current_l3", "input", 10, "f", "big", 0.125, 1.0, "A"),
        Point("active_power", "input", 52, "f", "big", -789.25, 1.0, "W"),
        Point("energy_import", "input", 72, "f", "big", 54321.7, 1.0, "kWh"),
        Point("energy_export", "input", 74, "f", "big", 1.5e-3, 1.0, "kWh"),
    ]),
    # ABB A43/A44: energy accumulators, 4 registers, most significant first, 0,01 kWh.
    "abb": ("abb-a43-a44.yaml", [
        Point("energy_import", "holding", 0x5000, "Q", "big", 123456789012, 0.01, "kWh"),
        Point("energy_export", "holding", 0x5004, "Q", "big", (5 << 32) + 17, 0.01, "kWh"),
        Point("energy_net", "holding", 0x5008, "q", "big", -98765432101, 0.01, "kWh"),
    ]),
}


def values_json(points):
    out = {}
    for p in points:
        table = out.setdefault(p.table, {})
        for i, reg in enumerate(p.registers()):
            key = str(p.address + i)
            assert key not in table, f"{p.name} overlaps another point at {key}"
            table[key] = reg
    return out


def pymodbus_python():
    """An interpreter that can import pymodbus' server (the one running this test may be a
    private Python without Debian's dist-packages)."""
    for exe in (sys.executable, "/usr/bin/python3"):
        if exe and os.path.exists(exe) and subprocess.run(
                [exe, "-c", "import pymodbus.server.async_io"], capture_output=True).returncode == 0:
            return exe
    raise AssertionError("no Python with pymodbus (install python3-pymodbus and "
                         "python3-serial-asyncio: bash tools/install-deps.sh)")


class PymodbusServer:
    def __init__(self, work, python, name, points):
        self.values_file = work.file(f"{name}-values.json")
        with open(self.values_file, "w") as f:
            json.dump(values_json(points), f, indent=1)
        self.port_file = work.file(f"{name}-port.txt")
        # --sparse: a read of any register the test did not set answers exception 02, so a
        # profile address that is off by one fails loudly instead of reading a zero.
        self.proc = work.spawn(f"pymodbus-{name}", [
            python, SERVER, "--values", self.values_file, "--port", "0",
            "--port-file", self.port_file, "--sparse"])
        self.port = wait_for(lambda: self._port(), 20, f"pymodbus server {name}'s port")

    def _port(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.proc.name} exited with {self.proc.returncode}")
        try:
            with open(self.port_file) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None


def read_events(path):
    """Decoded events so far; a line still being written is skipped."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if "event" in rec and rec.get("gateway_id") == GATEWAY:
                    out.append(rec["event"])
    except OSError:
        pass
    return out


def telemetry_by_device(events):
    seen = {}
    for ev in events:
        if "meter" in ev:
            seen.setdefault(ev["device_id"], []).append(ev["meter"]["values"])
    return seen


def all_points_seen(events):
    seen = telemetry_by_device(events)
    for device, (_, points) in DEVICES.items():
        names = {v["name"] for batch in seen.get(device, []) for v in batch}
        if names != {p.name for p in points}:
            return False
    return True


def write_config(work, broker, ports):
    devices = ""
    for device, (profile, _) in DEVICES.items():
        extra = "    max_registers: 60\n" if device == "sdm72" else ""  # SDM72D-M: <= 30 values
        devices += f"""  - id: {device}
    kind: energy_meter
    driver: modbus_tcp
    address: 127.0.0.1:{ports[device]}
    unit_id: 1
    poll: 300ms
    timeout: 250ms
{extra}    profile: {os.path.join(PROFILES, profile)}
"""
    path = work.file("gateway.yaml")
    with open(path, "w") as f:
        f.write(f"""gateway:
  id: {GATEWAY}
  site: test-site
  building: test-building
  data_dir: data
control: {{ socket: gatewayd.sock }}
mqtt:
  uri: {broker.uri}
  backoff: {{ initial: 100ms, max: 1s }}
devices:
{devices}""")
    return path


def check(events):
    """Every reported value of every device equals the encoded one; returns values checked."""
    failures = []
    checked = 0
    seen = telemetry_by_device(events)
    for device, (_, points) in DEVICES.items():
        want = {p.name: p for p in points}
        batches = seen.get(device, [])
        if not batches:
            failures.append(f"{device}: no telemetry")
            continue
        for batch in batches:
            for v in batch:
                p = want.get(v["name"])
                if p is None:
                    failures.append(f"{device}: unexpected point {v['name']}")
                    continue
                got = float(v.get("value", 0.0))
                if v.get("quality") != "GOOD":
                    failures.append(f"{device}.{p.name}: quality {v.get('quality')}")
                elif got != p.expected():
                    failures.append(f"{device}.{p.name}: got {got!r}, expected {p.expected()!r} "
                                    f"(registers {p.registers()})")
                elif v.get("unit", "") != p.unit:
                    failures.append(f"{device}.{p.name}: unit {v.get('unit')!r}, expected {p.unit!r}")
                checked += 1
    return checked, failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()

    # The encoder itself: spot checks against values worked by hand from the manuals' rules.
    assert words("i", -1234567, "little") == [0x2979, 0xFFED]        # 0xFFED2979, LSW first
    assert words("f", 240.5, "big") == [0x4370, 0x8000]              # Eastron §3.7 example value
    assert words("Q", 0x31292, "big") == [0, 0, 0x0003, 0x1292]      # ABB p.169 example bytes
    assert math.isclose(f32(230.7), 230.7, rel_tol=1e-7) and f32(230.7) != 230.7

    python = pymodbus_python()
    log(f"pymodbus server runs on {python}")
    with Workdir("pymodbus") as work:
        broker = Broker(work).start()
        servers = {d: PymodbusServer(work, python, d, pts) for d, (_, pts) in DEVICES.items()}
        ports = {d: s.port for d, s in servers.items()}
        log(f"pymodbus servers on ports {ports}")
        central = Subscriber(work, args.build_dir, broker, client_id="it-central-pymodbus")
        config = write_config(work, broker, ports)
        check_rc = subprocess.run([os.path.join(args.build_dir, "gateway/gatewayd"),
                                   "--check-config", config], capture_output=True, text=True)
        assert check_rc.returncode == 0, f"--check-config failed: {check_rc.stderr}"
        gw = Gatewayd(work, args.build_dir, config)

        wait_for(lambda: all_points_seen(read_events(central.events_file)), 30,
                 "every point of every profile at the subscriber")
        time.sleep(1.0)  # a few more polls, all of which must decode the same
        assert gw.stop() == 0, "gatewayd must exit 0 on SIGTERM"
        time.sleep(0.5)
        central.stop()
        for name, server in servers.items():
            rc = stop_process(server.proc)
            assert rc == 0, f"pymodbus server {name} exited {rc}"

        events = read_events(central.events_file)
        checked, failures = check(events)
        for f in failures[:40]:
            log("MISMATCH " + f)
        assert not failures, f"{len(failures)} mismatches (first: {failures[0]})"
        status = [e for e in events if "status" in e]
        online = sorted({e["device_id"] for e in status if e["status"].get("online")})
        assert online == sorted(DEVICES), f"online status events: {online}"
        offline = [e for e in status if not e["status"].get("online")]
        assert not offline, f"a device went offline: {offline}"
        per_device = {d: len(b) for d, b in telemetry_by_device(events).items()}
        print(f"pymodbus_tcp: {checked} values checked, 0 mismatches; telemetry events per "
              f"device {per_device}; points "
              f"{ {d: len(p) for d, (_, p) in DEVICES.items()} }")
    return 0


if __name__ == "__main__":
    sys.exit(main())
