"""gatewayd and gatewayctl on bad configs and unusable resources: the contract's exit codes,
and messages that name the file, line, key path and offending value."""
import argparse
import os
import subprocess
import sys
import tempfile

GOOD = """gateway:
  id: cfg-gw-01
  site: s
  building: b
  data_dir: {data_dir}
control: {{ socket: gatewayd.sock }}
mqtt:
  uri: tcp://127.0.0.1:1
devices:
  - id: meter-1
    kind: energy_meter
    driver: modbus_tcp
    address: 127.0.0.1:1502
    poll: 1s
    points:
      - {{ name: energy_total, address: 0, type: uint32, scale: 0.01, unit: kWh }}
"""


def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    gatewayd = os.path.join(args.build_dir, "gateway/gatewayd")
    gatewayctl = os.path.join(args.build_dir, "tools/gatewayctl/gatewayctl")
    failures = 0

    def expect(name, argv, code, *needles):
        nonlocal failures
        rc, out, err = run(argv)
        ok = rc == code and all(n in err for n in needles)
        if "Traceback" in err or "terminate called" in err or rc < 0:
            ok = False
        print(f"{'ok  ' if ok else 'FAIL'} {name}: exit {rc}")
        if not ok:
            failures += 1
            print(f"     expected exit {code} and {needles}\n     stderr: {err.strip()}")

    with tempfile.TemporaryDirectory() as d:
        def write(name, text):
            path = os.path.join(d, name)
            with open(path, "w") as f:
                f.write(text)
            return path

        good = write("good.yaml", GOOD.format(data_dir="data"))
        rc, out, err = run([gatewayd, "--check-config", good])
        print(f"{'ok  ' if rc == 0 else 'FAIL'} valid config: exit {rc} {out.strip()}")
        failures += rc != 0
        rc, out, err = run([gatewayctl, "check-config", good])
        failures += rc != 0

        typo = write("typo.yaml", GOOD.format(data_dir="data").replace("    poll: 1s", "    pol: 1s"))
        for tool in ([gatewayd, "--check-config"], [gatewayctl, "check-config"]):
            expect(f"{os.path.basename(tool[0])} unknown key", tool + [typo], 78,
                   "typo.yaml:14", "devices[0]", "pol")
        bad_value = write("bad.yaml", GOOD.format(data_dir="data").replace("poll: 1s", "poll: 5"))
        expect("bad duration names line, key and value", [gatewayd, "--config", bad_value], 78,
               "bad.yaml:14", "devices[0].poll", "'5'")
        expect("missing file", [gatewayd, "--config", os.path.join(d, "nope.yaml")], 78,
               "nope.yaml")
        # Every driver the schema names is built now; a camera without its mode stands in for a
        # device the daemon cannot run.
        no_mode = write("no_mode.yaml", GOOD.format(data_dir="data").split("devices:")[0] +
                        "devices:\n  - id: cam-1\n    kind: camera\n    driver: camera_http\n"
                        "    address: 127.0.0.1:8080\n")
        expect("camera without mode", [gatewayd, "--check-config", no_mode], 78,
               "no_mode.yaml:", "devices[0].mode", "push")
        # A data_dir below a regular file can never be created, even by root.
        blocker = write("blocker", "")
        unusable = write("unusable.yaml", GOOD.format(data_dir=os.path.join(blocker, "data")))
        expect("data_dir unusable", [gatewayd, "--config", unusable], 69, "data_dir")
        expect("unknown flag", [gatewayd, "--bogus"], 1, "--bogus")
        expect("unknown command", [gatewayctl, "frobnicate"], 1, "frobnicate")
    print(f"{'config exit codes: all passed' if not failures else f'{failures} failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
