"""TLS to the broker, against a real mosquitto with a TLS listener and certificates made here.

The test makes its own PKI with openssl: a CA, a second CA the broker does not use, server
certificates for 127.0.0.1/localhost (one good, one for another host name, one expired) and a
client certificate. Then, each against a fresh broker:

- right CA: the gateway connects and events reach the subscriber (which uses a plain listener
  of the same broker);
- wrong CA, host name mismatch, expired server certificate, a broker that requires a client
  certificate the gateway lacks: 0 successful connections at
  the broker, and exactly one log line per connection attempt naming the reason;
- a server that speaks only TLS 1.1 (openssl s_server): no TLS session, one line per attempt;
- verify_hostname: false accepts the other host name's certificate (the switch does something);
- mTLS with the right client certificate works;
- a client key readable by others stops gatewayd at start with exit 78 naming the key file.
"""
import argparse
import datetime
import os
import re
import subprocess
import sys
import time

from harness import (Broker, Gatewayd, ModbusSim, Subscriber, Workdir, free_port,
                     gateway_config, log, port_open, wait_for)

GATEWAY = "it-gw-01"
FAIL_RUN_S = 4.0


def openssl(work, *args):
    subprocess.run(["openssl", *args], cwd=work.path, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_pki(work):
    """Every file the scenarios need, in the work folder."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for ca in ("ca", "other-ca"):
        openssl(work, "req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                "-days", "30", "-subj", f"/CN=gw-test {ca}",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl(work, "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj",
            "/CN=localhost")
    openssl(work, "req", *ec, "-keyout", "client.key", "-out", "client.csr", "-subj",
            f"/CN={GATEWAY}")
    os.chmod(work.file("client.key"), 0o600)
    # `openssl ca` is the one way OpenSSL 3.0 can write chosen validity dates (for the expired
    # certificate); it signs every certificate here.
    os.makedirs(work.file("cadb"), exist_ok=True)
    open(work.file("cadb/index.txt"), "w").close()
    with open(work.file("cadb/serial"), "w") as f:
        f.write("1000\n")
    with open(work.file("ca.cnf"), "w") as f:
        f.write("""[ca]
default_ca = test
[test]
database = cadb/index.txt
new_certs_dir = cadb
serial = cadb/serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
[server]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
[other_name]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = DNS:broker.invalid
[client]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
""")
    now = datetime.datetime.now(datetime.timezone.utc)

    def stamp(t):
        return t.strftime("%Y%m%d%H%M%SZ")

    def sign(csr, out, ext, start, end):
        openssl(work, "ca", "-batch", "-config", "ca.cnf", "-cert", "ca.crt", "-keyfile", "ca.key",
                "-in", csr, "-out", out, "-extensions", ext, "-notext",
                "-startdate", stamp(start), "-enddate", stamp(end))

    day = datetime.timedelta(days=1)
    sign("server.csr", "server.crt", "server", now - day, now + 30 * day)
    sign("server.csr", "other-name.crt", "other_name", now - day, now + 30 * day)
    sign("server.csr", "expired.crt", "server", now - 60 * day, now - 2 * day)
    sign("client.csr", "client.crt", "client", now - day, now + 30 * day)


class TlsBroker(Broker):
    """The harness broker (plain listener, for the subscriber) plus a TLS listener."""

    def __init__(self, work, cert, require_client_cert=False):
        super().__init__(work)
        self.tls_port = free_port()
        with open(self.conf, "a") as f:
            f.write(f"listener {self.tls_port} 127.0.0.1\n"
                    f"cafile {work.file('ca.crt')}\n"
                    f"certfile {work.file(cert)}\n"
                    f"keyfile {work.file('server.key')}\n")
            if require_client_cert:
                f.write("require_certificate true\n")

    def log_text(self):
        return open(self.work.file(f"mosquitto-{self.starts}.stderr"), errors="replace").read()

    def tls_attempts(self):
        return len(re.findall(rf"New connection from \S+ on port {self.tls_port}\.",
                              self.log_text()))

    def gateway_connections(self):
        return len(re.findall(rf"New client connected from \S+ as {GATEWAY} ", self.log_text()))


class SslUri:
    """What gateway_config() needs from a broker: its uri."""

    def __init__(self, port):
        self.uri = f"ssl://127.0.0.1:{port}"


def tls_config(work, port, sim, ca="ca.crt", client=False, verify_hostname=None, name="gw"):
    tls = f"ca_file: {ca}"
    if client:
        tls += ", cert_file: client.crt, key_file: client.key"
    if verify_hostname is not None:
        tls += f", verify_hostname: {'true' if verify_hostname else 'false'}"
    path = gateway_config(work, SslUri(port), sim.ports, GATEWAY,
                          extra_mqtt=f"  tls: {{ {tls} }}\n")
    # Each scenario gets its own config and data dir.
    own = work.file(f"{name}.yaml")
    text = open(path).read().replace("data_dir: data", f"data_dir: {name}-data")
    text = text.replace("backoff: { initial: 100ms, max: 1s }", "backoff: { initial: 400ms, max: 800ms }")
    text = text.replace("socket: gatewayd.sock", f"socket: {name}.sock")
    with open(own, "w") as f:
        f.write(text)
    return own


def expect_connects(work, build, sim, name, **kw):
    broker = TlsBroker(work, kw.pop("cert", "server.crt"),
                       require_client_cert=kw.pop("require_client_cert", False)).start()
    wait_for(lambda: port_open(broker.tls_port), 10, "the TLS listener")
    # One subscriber per scenario; the previous one's report must not count for this one.
    if os.path.exists(work.file("central-report.json")):
        os.unlink(work.file("central-report.json"))
    central = Subscriber(work, build, broker, client_id=f"central-{name}")
    gw = Gatewayd(work, build, tls_config(work, broker.tls_port, sim, name=name, **kw), name=name)
    wait_for(lambda: central.gateway(GATEWAY).get("received", 0) >= 3, 20,
             f"{name}: events through the TLS connection")
    assert gw.stop() == 0
    central.stop()
    broker.stop()
    assert broker.gateway_connections() >= 1, broker.log_text()[-2000:]
    assert "not connected" not in gw.stderr(), gw.stderr()[-2000:]
    log(f"{name}: connected, {central.gateway(GATEWAY)['received']} events received")


def expect_refused(work, build, sim, name, reason, broker_kw=None, **kw):
    """0 connections at the broker; one log line per attempt, each naming `reason`."""
    broker = TlsBroker(work, **(broker_kw or {"cert": "server.crt"})).start()
    wait_for(lambda: port_open(broker.tls_port), 10, "the TLS listener")
    gw = Gatewayd(work, build, tls_config(work, broker.tls_port, sim, name=name, **kw), name=name)
    wait_for(lambda: broker.tls_attempts() >= 2, 15, f"{name}: two connection attempts")
    time.sleep(FAIL_RUN_S)
    assert gw.proc.poll() is None, f"{name}: gatewayd must keep running and retrying"
    assert gw.stop() == 0
    broker.stop()
    attempts = broker.tls_attempts()
    assert broker.gateway_connections() == 0, f"{name}: the gateway must not get through"
    lines = [l for l in gw.stderr().splitlines() if "mqtt: not connected" in l]
    assert lines, f"{name}: no log line about the failure"
    for line in lines:
        assert re.search(reason, line), f"{name}: the log line must name the reason: {line}"
    # One line per attempt (the attempt still in progress at SIGTERM may have no line yet).
    assert attempts - 1 <= len(lines) <= attempts, (name, attempts, len(lines))
    log(f"{name}: refused, {attempts} attempts, {len(lines)} log lines: {lines[0]}")


def expect_tls11_refused(work, build, sim):
    """A server that speaks nothing newer than TLS 1.1 (mosquitto cannot be limited that way;
    openssl s_server can): the gateway never gets a TLS session, and says so once per attempt."""
    port = free_port()
    server = work.spawn("s_server-tls1.1", [
        "openssl", "s_server", "-www", "-accept", f"127.0.0.1:{port}",
        "-cert", work.file("server.crt"),
        "-key", work.file("server.key"), "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])
    wait_for(lambda: port_open(port), 10, "openssl s_server")
    gw = Gatewayd(work, build, tls_config(work, port, sim, name="tls-1.1"), name="tls-1.1")
    time.sleep(FAIL_RUN_S + 2)
    assert gw.stop() == 0
    server.kill()
    server.wait()
    lines = [l for l in gw.stderr().splitlines() if "mqtt: not connected" in l]
    # OpenSSL 3 at Paho's security level 1 has no protocol in common with the server, and
    # ends the handshake itself (alert "internal error").
    assert len(lines) >= 2, lines
    assert all("TLS: the gateway refused the broker's TLS handshake" in l for l in lines), lines
    assert "connected to" not in gw.stderr().replace("not connected to", "")
    log(f"tls-1.1: refused, {len(lines)} attempts: {lines[0]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    build = args.build_dir
    with Workdir("tls") as work:
        make_pki(work)
        sim = ModbusSim(work, build, devices=1, tick_ms=200, values_log=False)

        expect_connects(work, build, sim, "right-ca")
        expect_refused(work, build, sim, "wrong-ca",
                       r"TLS: the broker's server certificate is not signed by a CA in ca_file "
                       + re.escape(work.file("other-ca.crt")), ca="other-ca.crt")
        expect_refused(work, build, sim, "hostname",
                       r"TLS: the broker's server certificate does not match the host name "
                       r"127\.0\.0\.1",
                       broker_kw={"cert": "other-name.crt"})
        expect_connects(work, build, sim, "hostname-unchecked", cert="other-name.crt",
                        verify_hostname=False)
        expect_refused(work, build, sim, "expired",
                       r"TLS: the broker's server certificate has expired",
                       broker_kw={"cert": "expired.crt"})
        expect_refused(work, build, sim, "no-client-cert",
                       r"TLS: the broker requires a client certificate and none is configured",
                       broker_kw={"cert": "server.crt", "require_client_cert": True})
        expect_connects(work, build, sim, "mtls", client=True, require_client_cert=True)
        expect_tls11_refused(work, build, sim)

        # A private key others can read: refused before anything starts, naming the file.
        os.chmod(work.file("client.key"), 0o644)
        config = tls_config(work, free_port(), sim, client=True, name="exposed-key")
        run = subprocess.run([os.path.join(build, "gateway/gatewayd"), "--config", config],
                             capture_output=True, text=True, timeout=20)
        assert run.returncode == 78, (run.returncode, run.stderr)
        assert work.file("client.key") in run.stderr and "0644" in run.stderr, run.stderr
        log(f"exposed key: exit 78: {run.stderr.strip().splitlines()[0]}")
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
