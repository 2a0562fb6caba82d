"""The Debian packages, on this machine (needs root; CI runs as root):

1. cpack builds gatewayd and gatewayd-central at the project's version, and again at a higher one.
2. `dpkg -i` installs them: the gatewayd user (in dialout) and /var/lib/gatewayd exist, the
   files are in place, /etc/gatewayd/* are conffiles, the installed unit verifies clean.
3. The installed daemon starts with the shipped config as the gatewayd user (no systemd here: the
   test plays systemd — RuntimeDirectory, NOTIFY_SOCKET) and reports READY=1; gatewayctl sees it.
4. The operator edits the config (a broker that is down, one meter); events pile up in the buffer.
5. `dpkg -i` of the higher version: no prompt, the edited config stays, the buffer with its
   pending events is opened by the new binary, and once a broker is up they are delivered.
6. `dpkg -i` of the first version again (a downgrade): config and buffer still kept and opened.
7. `dpkg --purge` leaves nothing behind; the test also removes the gatewayd user it caused.
Whatever fails, the packages are purged and the user removed at the end.
"""
import argparse
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time

from harness import Broker, ModbusSim, Subscriber, Workdir, free_port, log, wait_for

PACKAGES = ["gatewayd", "gatewayd-central"]
CONFIG = "/etc/gatewayd/gatewayd.yaml"
STATE = "/var/lib/gatewayd"
RUNTIME = "/run/gatewayd"


def run(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=kw.pop("timeout", 300), **kw)
    return r


def must(argv, **kw):
    r = run(argv, **kw)
    assert r.returncode == 0, f"{' '.join(argv)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def installed_version(package):
    r = run(["dpkg-query", "-W", "-f=${Status} ${Version}", package])
    if r.returncode != 0 or "install ok installed" not in r.stdout:
        return None
    return r.stdout.split()[-1]


class FakeSystemd:
    """A notify socket the gatewayd user may write to, in a folder only it needs to traverse."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="gw-deb-notify-")
        os.chmod(self.dir, 0o711)
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.sock.settimeout(0.2)
        self.seen = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                self.seen.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass

    def ready_count(self):
        return sum("READY=1" in m for m in self.seen)

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Installed:
    """The installed daemon, started the way the unit starts it."""

    def __init__(self, work, notify, name):
        # systemd's RuntimeDirectory=gatewayd, RuntimeDirectoryMode=0750.
        os.makedirs(RUNTIME, exist_ok=True)
        shutil.chown(RUNTIME, "gatewayd", "gatewayd")
        os.chmod(RUNTIME, 0o750)
        before = notify.ready_count()
        env = {"PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "2000000"}
        self.proc = work.spawn(name, ["/usr/bin/gatewayd", "--config", CONFIG], env=env,
                               user="gatewayd", group="gatewayd", extra_groups=["dialout"],
                               cwd="/")
        self.stderr_file = work.file(f"{name}.stderr")
        wait_for(lambda: notify.ready_count() > before or self.proc.poll() is not None, 20,
                 "READY=1 from the installed gatewayd")
        assert self.proc.poll() is None, f"installed gatewayd exited {self.proc.returncode}:\n" + \
            open(self.stderr_file).read()

    def status(self):
        r = must(["/usr/bin/gatewayctl", "--config", CONFIG, "status", "--json"])
        return json.loads(r.stdout)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=15)
        assert code == 0, f"exit {code} on SIGTERM"


def buffer_state():
    db = sqlite3.connect(f"file:{STATE}/buffer.db?mode=ro", uri=True)
    try:
        seqs = sorted(r[0] for r in db.execute("SELECT seq FROM events"))
        next_seq = int(db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0])
        version = db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()
    return seqs, next_seq, version


def build_packages(build, out, version=None):
    os.makedirs(out, exist_ok=True)
    argv = ["cpack", "-G", "DEB", "--config", os.path.join(build, "CPackConfig.cmake"), "-B", out]
    if version:
        argv += ["-D", f"CPACK_PACKAGE_VERSION={version}"]
    started = time.monotonic()
    must(argv, cwd=build, timeout=600)
    debs = {}
    for name in os.listdir(out):
        m = re.match(r"(gatewayd(?:-central)?)_([^_]+)_\w+\.deb$", name)
        if m:
            debs[m.group(1)] = (os.path.join(out, name), m.group(2))
    assert sorted(debs) == PACKAGES, f"cpack made {os.listdir(out)}"
    names = sorted(os.path.basename(d[0]) for d in debs.values())
    log(f"cpack {version or '(project version)'}: {names} in {time.monotonic() - started:.0f}s")
    return debs


def dpkg_install(debs):
    # No --force-conf*: an upgrade that would ask about a conffile must not happen silently, and
    # with stdin closed dpkg fails instead of asking.
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return must(["dpkg", "-i", *[d[0] for d in debs.values()]], env=env)


def edit_config(broker_port, meter_port):
    """What an operator does after installing: own identity, the broker, one meter."""
    text = open(CONFIG).read()
    text = text.replace("id: gw-unconfigured", "id: deb-gw-01")
    text = text.replace("building: unassigned", "building: package-lab")
    text = text.replace("uri: tcp://127.0.0.1:1883", f"uri: tcp://127.0.0.1:{broker_port}")
    text = text.replace("devices: []", f"""devices:
  - id: meter-1
    kind: energy_meter
    driver: modbus_tcp
    address: 127.0.0.1:{meter_port}
    poll: 200ms
    timeout: 150ms
    points:
      - {{ name: energy_total, table: holding, address: 0, type: uint32, scale: 0.01, unit: kWh }}
# edited by test_deb_package""")
    assert "deb-gw-01" in text and "devices:\n  - id: meter-1" in text, "the shipped config changed"
    with open(CONFIG, "w") as f:
        f.write(text)


def purge_everything(user_existed):
    for p in PACKAGES:
        if installed_version(p) or run(["dpkg-query", "-W", p]).returncode == 0:
            run(["dpkg", "--purge", p])
    if not user_existed:
        run(["userdel", "gatewayd"])
        run(["groupdel", "gatewayd"])
    shutil.rmtree(RUNTIME, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    build = os.path.abspath(args.build_dir)

    assert os.geteuid() == 0, "this test installs packages: run it as root (CI does)"
    for p in PACKAGES:
        assert installed_version(p) is None, (
            f"{p} is already installed on this machine; this test installs and purges it, so it "
            "refuses to touch a real installation")
    user_existed = True
    try:
        pwd.getpwnam("gatewayd")
    except KeyError:
        user_existed = False

    with Workdir("deb") as work:
        notify = FakeSystemd()
        try:
            figures = scenario(work, build, notify)
        finally:
            notify.close()
            purge_everything(user_existed)
        # Purge left nothing behind.
        for path in (STATE, "/etc/gatewayd", "/usr/bin/gatewayd",
                     "/usr/bin/gatewayctl", "/usr/bin/central_consumer",
                     "/lib/systemd/system/gatewayd.service"):
            assert not os.path.exists(path), f"{path} survived the purge"
        print("deb: " + json.dumps(figures))
    return 0


def scenario(work, build, notify):
    with open(os.path.join(build, "CPackConfig.cmake")) as f:
        version = re.search(r'set\(CPACK_PACKAGE_VERSION "([^"]+)"\)', f.read()).group(1)
    first = build_packages(build, work.file("pkg-1"))
    newer_version = f"{version}+upgrade1"
    newer = build_packages(build, work.file("pkg-2"), newer_version)
    assert run(["dpkg", "--compare-versions", newer_version, "gt", version]).returncode == 0

    # ---- install ----
    dpkg_install(first)
    assert installed_version("gatewayd") == version
    assert installed_version("gatewayd-central") == version
    user = pwd.getpwnam("gatewayd")
    assert "gatewayd" in grp.getgrnam("dialout").gr_mem, "gatewayd is not in dialout"
    st = os.stat(STATE)
    assert st.st_uid == user.pw_uid and stat.S_IMODE(st.st_mode) == 0o750, oct(st.st_mode)
    for path in ("/usr/bin/gatewayd", "/usr/bin/gatewayctl", "/usr/bin/central_consumer",
                 "/usr/bin/central_subscriber", "/lib/systemd/system/gatewayd.service", CONFIG,
                 "/etc/gatewayd/profiles/eastron-sdm72d-m.yaml",
                 "/usr/share/man/man1/gatewayctl.1.gz",
                 "/usr/share/bash-completion/completions/gatewayctl"):
        assert os.path.exists(path) or os.path.exists(path[:-3]), f"{path} not installed"
    conffiles = must(["dpkg-query", "-W", "-f=${Conffiles}", "gatewayd"]).stdout
    assert CONFIG in conffiles and "/etc/gatewayd/profiles/eastron-sdm72d-m.yaml" in conffiles, \
        conffiles
    assert must(["/usr/bin/gatewayd", "--version"]).stdout.strip() == f"gatewayd {version}"
    v = run(["systemd-analyze", "verify", "--man=no", "/lib/systemd/system/gatewayd.service"])
    assert v.returncode == 0 and not (v.stdout + v.stderr).strip(), v.stdout + v.stderr
    must(["/usr/bin/gatewayd", "--check-config", CONFIG])

    # ---- the shipped config runs as the gatewayd user ----
    daemon = Installed(work, notify, "installed-shipped")
    status = daemon.status()
    assert status["gateway_id"] == "gw-unconfigured", status
    db = os.stat(f"{STATE}/buffer.db")
    assert db.st_uid == user.pw_uid, "the buffer is not the gatewayd user's"
    sock = os.stat(f"{RUNTIME}/gatewayd.sock")
    assert stat.S_IMODE(sock.st_mode) == 0o660, oct(sock.st_mode)
    daemon.stop()
    log("installed daemon came up with the shipped config as gatewayd")

    # ---- the operator's edits, and a backlog while the broker is down ----
    broker_port = free_port()
    sim = ModbusSim(work, build, devices=1, tick_ms=200)
    edit_config(broker_port, sim.ports[0])
    must(["/usr/bin/gatewayd", "--check-config", CONFIG])
    daemon = Installed(work, notify, "installed-edited")
    wait_for(lambda: daemon.status()["buffer"]["pending"] >= 10, 20, "10 events buffered")
    daemon.stop()
    pending, next_seq, schema = buffer_state()
    assert len(pending) >= 10 and pending == list(range(1, next_seq)), (pending[:5], next_seq)
    edited = open(CONFIG).read()
    log(f"backlog before the upgrade: {len(pending)} events, next_seq {next_seq}, schema {schema}")

    # ---- upgrade ----
    dpkg_install(newer)
    assert installed_version("gatewayd") == newer_version
    assert open(CONFIG).read() == edited, "the upgrade changed the edited config"
    assert not os.path.exists(CONFIG + ".dpkg-new"), "the upgrade left a .dpkg-new"
    kept, kept_next, _ = buffer_state()
    assert kept == pending and kept_next == next_seq, "the upgrade touched the buffer"
    daemon = Installed(work, notify, "installed-upgraded")
    s = daemon.status()
    assert s["buffer"]["pending"] >= len(pending), s["buffer"]
    # Now a broker: the backlog from before the upgrade is delivered.
    broker = Broker(work, port=broker_port).start()
    central = Subscriber(work, build, broker, client_id="deb-central")
    wait_for(lambda: central.gateway("deb-gw-01").get("distinct", 0) >= len(pending) + 5, 30,
             "the backlog and new events at the subscriber")
    daemon.stop()
    time.sleep(0.5)
    central.stop()
    received = {int(e["event"]["seq"]) for e in central.events()}
    lost = sorted(set(pending) - received)
    assert not lost, f"lost across the upgrade: {lost[:10]}"
    assert max(received) >= next_seq, "no new events after the upgrade"
    _, next_after_upgrade, _ = buffer_state()
    log(f"upgrade to {newer_version}: config kept, {len(pending)} buffered events delivered")

    # ---- downgrade ----
    dpkg_install(first)
    assert installed_version("gatewayd") == version
    assert open(CONFIG).read() == edited, "the downgrade changed the edited config"
    daemon = Installed(work, notify, "installed-downgraded")
    s = daemon.status()
    wait_for(lambda: daemon.status()["buffer"]["next_seq"] > next_after_upgrade, 15,
             "new events after the downgrade")
    daemon.stop()
    broker.stop()
    log("downgrade: config kept, buffer opened, seq continued")

    # ---- purge ----
    must(["dpkg", "--purge", *PACKAGES])
    return {"version": version, "upgraded_to": newer_version, "backlog_kept": len(pending),
            "schema": schema, "delivered_after_upgrade": len(received)}


if __name__ == "__main__":
    sys.exit(main())
