#!/usr/bin/env python3
"""Renders one gatewayd config per building from a fleet inventory and per-building-type
templates (deploy/fleet/), and optionally validates each with `gatewayd --check-config`.

    tools/fleet_render.py --inventory deploy/fleet/inventory.json --out build/fleet \
        [--templates DIR] [--etc-dir /etc/gatewayd] [--check build/gateway/gatewayd] [--only ID]

Writes OUT/<gateway_id>/gatewayd.yaml for every gateway and OUT/manifest.json, which lists per
gateway its template and the files it needs on the box (credentials, profiles): what to
provision before `systemctl enable --now gatewayd`.

The inventory (JSON): {"defaults": {VAR: VALUE}, "gateways": [{"gateway_id", "site",
"building", "type", "vars": {VAR: VALUE}}]}. A template is YAML with ${VAR} placeholders; a
gateway's variables are gateway_id, site, building, type, etc_dir, the defaults and its vars (its
own win). Values may use ${gateway_id}, ${site} and ${building}. Variables named *_file are paths:
relative ones are taken under --etc-dir. Problems are reported all at once, each naming the
gateway and the variable; a var a template does not use is an error (a typo must not pass).

Exit status: 0 ok; 1 a rendered config failed --check; 78 a bad inventory or template;
2 bad usage. Python standard library only.
"""
import argparse
import json
import os
import re
import string
import subprocess
import sys

GATEWAY_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}\Z")
# Values are pasted into YAML as they are: keep them to characters that cannot change its
# structure (no spaces, quotes, '#', ':' followed by space, brackets, anchors, tags...).
SAFE_VALUE = re.compile(r"[A-Za-z0-9._/:@+=-]+\Z")
EX_CONFIG = 78


class Problems:
    def __init__(self):
        self.items = []

    def add(self, where, message):
        self.items.append(f"{where}: {message}")

    def __bool__(self):
        return bool(self.items)


def placeholders(template_text):
    """Names used as ${name} or $name in a template."""
    names = set()
    for m in string.Template.pattern.finditer(template_text):
        name = m.group("named") or m.group("braced")
        if name:
            names.add(name)
        elif m.group("invalid") is not None:
            line = template_text.count("\n", 0, m.start()) + 1
            raise ValueError(f"line {line}: a '$' that starts no placeholder (write $$ for a "
                             "literal dollar sign)")
    return names


def load_templates(directory, problems):
    templates = {}
    if not os.path.isdir(directory):
        problems.add(directory, "no such templates folder")
        return templates
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".yaml"):
            continue
        path = os.path.join(directory, name)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            used = placeholders(text)
        except ValueError as e:
            problems.add(path, str(e))
            continue
        templates[name[:-len(".yaml")]] = (path, text, used)
    return templates


def gateway_variables(inventory_path, index, entry, defaults, etc_dir, problems):
    where = f"{inventory_path}: gateways[{index}]"
    if not isinstance(entry, dict):
        problems.add(where, "must be an object")
        return None
    gid = entry.get("gateway_id")
    where += f" ({gid})" if isinstance(gid, str) else ""
    known = {"gateway_id", "site", "building", "type", "vars", "_comment"}
    for key in entry:
        if key not in known:
            names = ", ".join(sorted(known - {"_comment"}))
            problems.add(where, f"unknown key '{key}' (known: {names})")
    ok = True
    for key in ("gateway_id", "site", "building", "type"):
        value = entry.get(key)
        if not isinstance(value, str) or not value:
            problems.add(where, f"'{key}' is required (a non-empty string)")
            ok = False
    if not ok:
        return None
    if not GATEWAY_ID.match(gid):
        problems.add(where, f"gateway_id '{gid}' must match [a-z0-9][a-z0-9-]{{0,63}} "
                            "(it is part of every topic and event id)")
    for key in ("site", "building"):
        if re.search(r"[+#/\s]", entry[key]):
            problems.add(where,
                         f"{key} '{entry[key]}' is a topic level: no '+', '#', '/' or spaces")
    own = entry.get("vars", {})
    if not isinstance(own, dict):
        problems.add(where, "'vars' must be an object")
        own = {}
    identity = {"gateway_id": gid, "site": entry["site"], "building": entry["building"]}
    variables = dict(identity, type=entry["type"], etc_dir=etc_dir)
    for source, values in (("defaults", defaults), ("vars", own)):
        for key, value in values.items():
            if key.startswith("_"):
                continue
            if key in variables and key not in defaults:
                problems.add(where, f"{source}.{key}: '{key}' is set by the inventory itself")
                continue
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                problems.add(where, f"{source}.{key}: must be a string or a number")
                continue
            try:
                text = string.Template(str(value)).substitute(identity)
            except (KeyError, ValueError) as e:
                problems.add(where, f"{source}.{key}: only ${{gateway_id}}, ${{site}} and "
                                    f"${{building}} may be used in values ({e})")
                continue
            if not SAFE_VALUE.match(text):
                problems.add(where, f"{source}.{key}: '{text}' has characters that could change "
                                    "the YAML (allowed: letters, digits and . _ / : @ + = -)")
                continue
            if key.endswith("_file") and not os.path.isabs(text):
                text = os.path.join(etc_dir, text)
            variables[key] = text
    return where, entry["type"], variables, set(k for k in own if not k.startswith("_"))


def main():
    ap = argparse.ArgumentParser(description="Render per-building gatewayd configs from a fleet "
                                             "inventory.")
    ap.add_argument("--inventory", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--templates", help="default: templates/ beside the inventory")
    ap.add_argument("--etc-dir", default="/etc/gatewayd",
                    help="where credentials and profiles live on the gateways "
                         "(default %(default)s)")
    ap.add_argument("--check", metavar="GATEWAYD",
                    help="validate every rendered file with GATEWAYD --check-config")
    ap.add_argument("--only", action="append", default=[], metavar="GATEWAY_ID")
    args = ap.parse_args()

    problems = Problems()
    try:
        with open(args.inventory, encoding="utf-8") as f:
            inventory = json.load(f)
    except (OSError, ValueError) as e:
        print(f"fleet_render: {args.inventory}: {e}", file=sys.stderr)
        return EX_CONFIG
    templates_dir = args.templates or os.path.join(os.path.dirname(args.inventory), "templates")
    templates = load_templates(templates_dir, problems)
    etc_dir = os.path.abspath(args.etc_dir)

    defaults = inventory.get("defaults", {}) if isinstance(inventory, dict) else {}
    gateways = inventory.get("gateways") if isinstance(inventory, dict) else None
    if not isinstance(defaults, dict) or not isinstance(gateways, list) or not gateways:
        problems.add(args.inventory, "needs {\"defaults\": {...}, \"gateways\": [ ... ]} with at "
                                     "least one gateway")
        gateways = []

    rendered = {}
    seen = {}
    for i, entry in enumerate(gateways):
        result = gateway_variables(args.inventory, i, entry, defaults, etc_dir, problems)
        if result is None:
            continue
        where, kind, variables, own_vars = result
        gid = variables["gateway_id"]
        if gid in seen:
            problems.add(where, f"gateway_id '{gid}' is also gateways[{seen[gid]}]")
            continue
        seen[gid] = i
        if kind not in templates:
            problems.add(where, f"type '{kind}' has no template in {templates_dir} "
                                f"(types: {', '.join(sorted(templates)) or 'none'})")
            continue
        path, text, used = templates[kind]
        for name in sorted(used - set(variables)):
            problems.add(where, f"template {kind} needs '{name}'; set it in vars or defaults")
        for name in sorted(own_vars - used):
            problems.add(where, f"vars.{name}: template {kind} does not use it (a typo?)")
        if used - set(variables):
            continue
        header = (f"# Rendered by tools/fleet_render.py from {os.path.relpath(path)} for {gid}.\n"
                  "# Edit the template or the inventory and render again, not this file.\n")
        files = sorted({v for k, v in variables.items() if k.endswith("_file") and k in used} |
                       set(re.findall(r"(" + re.escape(etc_dir) + r"/profiles/[^\s,}]+)",
                                      string.Template(text).substitute(variables))))
        rendered[gid] = (header + string.Template(text).substitute(variables), kind, files)

    if problems:
        for p in problems.items:
            print(f"fleet_render: {p}", file=sys.stderr)
        print(f"fleet_render: {len(problems.items)} problem(s); nothing written", file=sys.stderr)
        return EX_CONFIG

    selected = args.only or sorted(rendered)
    unknown = [g for g in selected if g not in rendered]
    if unknown:
        print(f"fleet_render: --only: no gateway {', '.join(unknown)} in the inventory",
              file=sys.stderr)
        return 2
    manifest = {}
    for gid in selected:
        text, kind, files = rendered[gid]
        folder = os.path.join(args.out, gid)
        os.makedirs(folder, exist_ok=True)
        config = os.path.join(folder, "gatewayd.yaml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(text)
        manifest[gid] = {"config": config, "template": kind, "needs_files": files}
    with open(os.path.join(args.out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"fleet_render: rendered {len(selected)} config(s) into {args.out}")

    if not args.check:
        return 0
    failed = 0
    for gid in selected:
        config = manifest[gid]["config"]
        r = subprocess.run([args.check, "--check-config", config], capture_output=True, text=True,
                           timeout=60)
        if r.returncode == 0:
            print(f"fleet_render: {gid}: OK ({r.stdout.strip()})")
        else:
            failed += 1
            print(f"fleet_render: {gid}: --check-config exit {r.returncode}\n{r.stderr.rstrip()}",
                  file=sys.stderr)
    print(f"fleet_render: {len(selected) - failed} of {len(selected)} valid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
