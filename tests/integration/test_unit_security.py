"""deploy/gatewayd.service: `systemd-analyze security --offline=yes` rates it "OK" or better
(exposure below 5.0), `systemd-analyze verify` finds nothing to say about it, and the directives
the daemon's contract with systemd depends on are there (Type=notify with a watchdog, restart
except on a bad config, its own user in dialout, serial devices reachable, no capabilities).
"""
import argparse
import os
import re
import subprocess
import sys

from harness import Workdir, log

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
UNIT = os.path.join(ROOT, "deploy", "gatewayd.service")
GOOD_ENOUGH = ("OK", "SAFE", "PERFECT")  # systemd's ratings below "MEDIUM" (exposure < 5.0)


def directives(path):
    """Key -> list of values, in order (systemd allows a key several times)."""
    out = {}
    for line in open(path):
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()

    with Workdir("unit") as work:
        # --threshold: systemd-analyze exits non-zero above 4.9 (it counts in tenths).
        r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=49",
                            "--no-pager", UNIT], capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for gatewayd\.service: ([0-9.]+) (\w+)", r.stdout)
        assert m, r.stdout + r.stderr
        exposure, rating = float(m.group(1)), m.group(2)
        assert r.returncode == 0, f"exposure {exposure} {rating}:\n{r.stdout}"
        assert rating in GOOD_ENOUGH and exposure < 5.0, (exposure, rating)
        log(f"systemd-analyze security: {exposure} {rating}")

        # verify, with the build's binaries in place of /usr/bin (it checks they exist).
        unit = work.file("gatewayd.service")
        text = open(UNIT).read()
        text = text.replace("/usr/bin/gatewayd ",
                            os.path.join(args.build_dir, "gateway/gatewayd") + " ")
        text = text.replace("/usr/bin/gatewayctl ",
                            os.path.join(args.build_dir, "tools/gatewayctl/gatewayctl") + " ")
        open(unit, "w").write(text)
        v = subprocess.run(["systemd-analyze", "verify", "--man=no", unit], capture_output=True,
                           text=True, timeout=60)
        assert v.returncode == 0 and not v.stdout.strip() and not v.stderr.strip(), (
            f"systemd-analyze verify: {v.stdout}{v.stderr}")

        d = directives(UNIT)
        expect = {
            "Type": "notify", "Restart": "on-failure", "RestartPreventExitStatus": "78",
            "User": "gatewayd", "Group": "gatewayd", "SupplementaryGroups": "dialout",
            "StateDirectory": "gatewayd", "RuntimeDirectory": "gatewayd",
            "NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "ProtectSystem": "strict",
            "PrivateTmp": "yes", "ProtectHome": "yes", "DevicePolicy": "closed",
        }
        for key, value in expect.items():
            assert d.get(key) == [value], f"{key}={d.get(key)}, expected {value!r}"
        assert d["ExecStart"][0].startswith("/usr/bin/gatewayd --config /etc/gatewayd/")
        assert "reload" in d["ExecReload"][0]
        assert "WatchdogSec" in d and d["WatchdogSec"][0] not in ("0", "infinity")
        # RS-485 must keep working: serial devices allowed, /dev not replaced.
        assert d.get("PrivateDevices", ["no"]) == ["no"]
        allowed = " ".join(d.get("DeviceAllow", []))
        for group in ("char-ttyS", "char-ttyUSB"):
            assert group in allowed, allowed
        # The control socket path of the shipped config lives in the RuntimeDirectory.
        shipped = open(os.path.join(ROOT, "deploy", "gatewayd.yaml")).read()
        assert "socket: /run/gatewayd/gatewayd.sock" in shipped
        print(f"unit: systemd-analyze security {exposure} {rating}; verify clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
