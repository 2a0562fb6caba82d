"""The fleet: tools/fleet_render.py renders deploy/fleet/inventory.json with every building-type
template, and each rendered config passes `gatewayd --check-config` (exit 0) once the files its
manifest lists are provisioned. Every template is used by the shipped inventory. Inventory
mistakes (duplicate or malformed id, unknown type, missing or misspelt variable, a value that
would change the YAML) are refused with exit 78, each named, and nothing is written; a config
gatewayd rejects makes --check exit 1 naming the gateway.
"""
import argparse
import copy
import json
import os
import shutil
import subprocess
import sys

from harness import Workdir, log

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RENDER = os.path.join(ROOT, "tools", "fleet_render.py")
INVENTORY = os.path.join(ROOT, "deploy", "fleet", "inventory.json")
TEMPLATES = os.path.join(ROOT, "deploy", "fleet", "templates")
PROFILES = os.path.join(ROOT, "deploy", "profiles")


def render(*args):
    return subprocess.run([sys.executable, RENDER, *args], capture_output=True, text=True,
                          timeout=120)


def provision(manifest, etc_dir):
    """Puts every file the manifest asks for in place: the shipped profiles, dummy secrets
    (private keys owner-only, as gatewayd demands)."""
    count = 0
    for entry in manifest.values():
        for path in entry["needs_files"]:
            assert path.startswith(etc_dir + "/"), path
            if os.path.exists(path):
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if "/profiles/" in path:
                shutil.copy(os.path.join(PROFILES, os.path.basename(path)), path)
            else:
                with open(path, "w") as f:
                    f.write("provisioned by the fleet test\n")
                if path.endswith(".key"):
                    os.chmod(path, 0o600)
            count += 1
    return count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    gatewayd = os.path.join(args.build_dir, "gateway", "gatewayd")

    with Workdir("fleet") as work:
        etc = work.file("etc")
        out = work.file("out")
        first = render("--inventory", INVENTORY, "--out", out, "--etc-dir", etc)
        assert first.returncode == 0, first.stderr
        with open(os.path.join(out, "manifest.json")) as f:
            manifest = json.load(f)
        provided = provision(manifest, etc)

        checked = render("--inventory", INVENTORY, "--out", out, "--etc-dir", etc, "--check",
                         gatewayd)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        inventory = json.load(open(INVENTORY))
        ids = sorted(g["gateway_id"] for g in inventory["gateways"])
        assert sorted(manifest) == ids, (sorted(manifest), ids)
        for g in inventory["gateways"]:
            config = manifest[g["gateway_id"]]["config"]
            text = open(config).read()
            assert "${" not in text, f"{config}: a placeholder was left"
            for key in ("gateway_id", "site", "building"):
                assert f": {g[key]}\n" in text, (config, key)
            # Independently of the renderer's own --check.
            r = subprocess.run([gatewayd, "--check-config", config], capture_output=True,
                               text=True, timeout=60)
            assert r.returncode == 0, r.stderr
        types = {os.path.splitext(n)[0] for n in os.listdir(TEMPLATES) if n.endswith(".yaml")}
        used = {e["template"] for e in manifest.values()}
        assert used == types, f"templates no inventory entry renders: {sorted(types - used)}"
        log(f"{len(ids)} configs from {len(types)} templates valid; {provided} files provisioned")

        # Inventory mistakes, all reported at once, nothing written.
        bad = copy.deepcopy(inventory)
        gws = bad["gateways"]
        gws[1]["gateway_id"] = gws[0]["gateway_id"]
        gws[2]["gateway_id"] = "Teach_GW"
        gws[3]["type"] = "car-park"
        del gws[4]["vars"]["front_gate"]
        gws[5]["vars"]["hall_metre"] = gws[5]["vars"].pop("hall_meter")
        gws[0]["vars"]["entrance_camera"] = "10.1.3.40:80 # lobby"
        bad_path = work.file("bad-inventory.json")
        json.dump(bad, open(bad_path, "w"))
        bad_out = work.file("bad-out")
        r = render("--inventory", bad_path, "--templates", TEMPLATES, "--out", bad_out,
                   "--etc-dir", etc)
        assert r.returncode == 78, (r.returncode, r.stderr)
        for expected in (f"gateway_id '{gws[0]['gateway_id']}' is also gateways[0]",
                         "gateway_id 'Teach_GW' must match",
                         "type 'car-park' has no template",
                         "template dormitory needs 'front_gate'",
                         "vars.hall_metre: template sports-hall does not use it",
                         "template sports-hall needs 'hall_meter'",
                         "vars.entrance_camera: '10.1.3.40:80 # lobby' has characters"):
            assert expected in r.stderr, f"missing '{expected}' in:\n{r.stderr}"
        assert not os.path.exists(bad_out), "a refused inventory wrote files"

        # A value the renderer cannot judge but gatewayd can: --check names the gateway.
        wrong = copy.deepcopy(inventory)
        lib = next(g for g in wrong["gateways"] if g["type"] == "library")
        lib["vars"]["gate_serial"] = "0"
        wrong_path = work.file("wrong-inventory.json")
        json.dump(wrong, open(wrong_path, "w"))
        r = render("--inventory", wrong_path, "--templates", TEMPLATES, "--out",
                   work.file("wrong-out"), "--etc-dir", etc, "--check", gatewayd)
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        assert f"{lib['gateway_id']}: --check-config exit 78" in r.stderr, r.stderr
        assert "serial_number" in r.stderr, r.stderr
        print(f"fleet: {len(ids)} gateways, {len(types)} building types, all valid; "
              f"7 inventory mistakes refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
