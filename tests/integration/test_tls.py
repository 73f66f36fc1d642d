"""TLS on both sides of pgswitch against a real PostgreSQL that accepts only hostssl: psql with
sslmode=verify-full and channel_binding=require, the pool's and the health checks' TLS to the
backend with server_sslmode=verify-full, client_tls="require" refusing plaintext with 28000,
the buffered-plaintext-after-SSLRequest guard, a certificate reload that keeps open sessions,
and psycopg2 / psycopg 3 with sslmode=require in transaction mode. Certificates come from a
throwaway CA made with the openssl CLI in the test's temp dir."""
from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import psycopg
import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import HOST, PG_BIN, PgCluster, PgSwitch, _chown_pg  # noqa: E402
from pgwire import PgWire, PgWireError, ssl_request, startup_packet  # noqa: E402
from proxycase import ProxyTestCase, budget  # noqa: E402

PSQL = str(PG_BIN / "psql")

HBA_SSL_ONLY = """\
# written by tests/integration/test_tls.py: TCP only with TLS
local   all             all                             trust
local   replication     all                             trust
hostssl all             md5user         127.0.0.1/32    md5
hostssl all             trustuser       127.0.0.1/32    trust
hostssl all             all             127.0.0.1/32    scram-sha-256
hostnossl all           all             127.0.0.1/32    reject
"""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN=pgswitch test {name}", "-keyout", f"{name}.key", "-out",
            f"{name}.crt", cwd=d)


def make_cert(d: Path, name: str, ca: str) -> None:
    """A certificate for localhost and 127.0.0.1 signed by `ca`."""
    (d / f"{name}.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                   "extendedKeyUsage=serverAuth,clientAuth\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt",
            cwd=d)


def der_of(pem_path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem_path.read_text())


def peer_cert(port: int, ca: Path) -> bytes:
    """The certificate pgswitch shows a new TLS client (SSLRequest, then the handshake)."""
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(ssl_request())
        assert s.recv(1) == b"S"
        ctx = ssl.create_default_context(cafile=str(ca))
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return t.getpeercert(binary_form=True)


class TlsTest(ProxyTestCase):
    cluster: PgCluster
    sw: PgSwitch

    @classmethod
    def setUpClass(cls):
        cls.certs = Path(tempfile.mkdtemp(prefix="pgswitch-tls-", dir="/tmp"))
        os.chmod(cls.certs, 0o755)
        d = cls.certs
        make_ca(d, "ca")
        make_ca(d, "otherca")
        make_cert(d, "pg", "ca")      # the PostgreSQL server's
        make_cert(d, "sw1", "ca")     # pgswitch's, then after the reload:
        make_cert(d, "sw2", "ca")
        make_cert(d, "client", "ca")  # pgswitch's client certificate towards PostgreSQL
        for f in d.iterdir():
            os.chmod(f, 0o644)
        os.chmod(d / "pg.key", 0o600)
        _chown_pg(d / "pg.key")
        os.chmod(d / "client.key", 0o600)
        shutil.copy(d / "sw1.crt", d / "server.crt")
        shutil.copy(d / "sw1.key", d / "server.key")
        cls.ca = d / "ca.crt"
        cls.cluster = PgCluster(replicas=0, extra_conf={
            "ssl": True, "ssl_cert_file": str(d / "pg.crt"), "ssl_key_file": str(d / "pg.key"),
            "ssl_ca_file": str(d / "ca.crt")}).start()
        try:
            hba = cls.cluster.nodes[0].datadir / "pg_hba.conf"
            hba.write_text(HBA_SSL_ONLY)
            _chown_pg(hba)
            cls.cluster.psql(0, "SELECT pg_reload_conf()")
            cls.sw = PgSwitch(cls.cluster, pool_mode="transaction", extra_toml=cls.tls_toml())
        except BaseException:
            cls.cluster.stop()
            raise

    @classmethod
    def tls_toml(cls, **over) -> str:
        d = cls.certs
        v = {"cert_file": str(d / "server.crt"), "key_file": str(d / "server.key"),
             "client_tls": "allow", "server_sslmode": "verify-full",
             "server_ca_file": str(d / "ca.crt"), "server_cert_file": str(d / "client.crt"),
             "server_key_file": str(d / "client.key")}
        v.update(over)
        return "[tls]\n" + "".join(f'{k} = "{x}"\n' for k, x in v.items())

    @classmethod
    def tearDownClass(cls):
        try:
            cls.sw.stop()
        finally:
            cls.cluster.stop()
            shutil.rmtree(cls.certs, ignore_errors=True)

    def psql(self, conninfo: str, sql: str, port: int | None = None):
        dsn = (f"host=localhost port={port or self.sw.port} user=app password=app dbname=appdb "
               f"connect_timeout=10 {conninfo}")
        return subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", dsn,
                               "-c", sql], capture_output=True, text=True, timeout=60,
                              cwd=self.certs)

    # -- client side --------------------------------------------------------------------------
    def test_psql_verify_full_through_pgswitch_and_tls_to_the_backend(self):
        r = self.psql(f"sslmode=verify-full sslrootcert={self.ca}",
                      "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        self.assertEqual(r.returncode, 0, r.stderr + self.sw.log_tail())
        # The server connection pgswitch used is itself TLS (PostgreSQL allows nothing else).
        ssl_on, version = r.stdout.strip().split("|")
        self.assertEqual(ssl_on, "t")
        self.assertIn(version, ("TLSv1.2", "TLSv1.3"))
        # The health checks reach the hostssl-only backend too, over TLS.
        rows = self.cluster.psql(0, "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a "
                                    "USING (pid) WHERE a.application_name = 'pgswitch_health' "
                                    "AND s.ssl")
        deadline = time.monotonic() + 5
        while rows == "0" and time.monotonic() < deadline:
            time.sleep(0.2)
            rows = self.cluster.psql(0, "SELECT count(*) FROM pg_stat_ssl s JOIN "
                                        "pg_stat_activity a USING (pid) WHERE "
                                        "a.application_name = 'pgswitch_health' AND s.ssl")
        self.assertNotEqual(rows, "0", "no health check connection over TLS seen")
        self.assertNotIn("verify", self.sw.log().lower().replace("verify-full", ""))

    def test_channel_binding_require(self):
        r = self.psql(f"sslmode=verify-full sslrootcert={self.ca} channel_binding=require",
                      "SELECT 'bound'")
        self.assertEqual(r.returncode, 0, r.stderr + self.sw.log_tail())
        self.assertEqual(r.stdout.strip(), "bound")
        # Without TLS there is nothing to bind to: libpq refuses, as against PostgreSQL.
        r = self.psql("sslmode=disable channel_binding=require", "SELECT 1")
        self.assertNotEqual(r.returncode, 0)
        # A wrong password still fails with channel binding.
        r = subprocess.run([PSQL, "-X", "-c", "SELECT 1",
                            f"host=localhost port={self.sw.port} user=app password=wrong "
                            f"dbname=appdb sslmode=require channel_binding=require"],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("password authentication failed", r.stderr)

    def test_plaintext_still_allowed_with_allow(self):
        r = self.psql("sslmode=disable", "SELECT 'plain'")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "plain")

    def test_gssenc_request_gets_n(self):
        with socket.create_connection((HOST, self.sw.port), timeout=10) as s:
            s.sendall(bytes.fromhex("0000000804d21630"))
            self.assertEqual(s.recv(1), b"N")

    def test_direct_tls_needs_alpn_postgresql(self):
        # PostgreSQL 17's sslnegotiation=direct: the ClientHello first, no SSLRequest.
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.set_alpn_protocols(["postgresql"])
        with PgWire(port=self.sw.port) as w:
            w.sock = ctx.wrap_socket(w.sock, server_hostname="localhost")
            self.assertEqual(w.sock.selected_alpn_protocol(), "postgresql")
            w.startup("app", "appdb", "app")
            self.assertEqual(w.query("SELECT 'direct'"), [("direct",)])
        # Without ALPN the connection is closed once the handshake is done (a TLS client of
        # something else): no answer to its startup packet.
        bare = ssl.create_default_context(cafile=str(self.ca))
        with socket.create_connection((HOST, self.sw.port), timeout=10) as s:
            try:
                with bare.wrap_socket(s, server_hostname="localhost") as t:
                    t.sendall(startup_packet("app", "appdb"))
                    answer = t.recv(1)
            except (ssl.SSLError, ConnectionError):
                answer = b""
            self.assertEqual(answer, b"")
        self.assertIn("without ALPN", self.sw.log())

    def test_plaintext_after_ssl_request_is_refused(self):
        # CVE-2021-23214: a startup packet queued behind SSLRequest, before any handshake.
        with PgWire(port=self.sw.port) as w:
            w.send(ssl_request() + startup_packet("trustuser", "appdb"))
            t, payload = w.read_msg()
            self.assertEqual(t, b"E")
            self.assertIn(b"received unencrypted data after SSL request", payload)
            self.assertIn(b"C08P01", payload)

    def test_require_refuses_plaintext_with_28000(self):
        with PgSwitch(self.cluster, pool_mode="transaction",
                      extra_toml=self.tls_toml(client_tls="require")) as sw:
            with PgWire(port=sw.port) as w:
                with self.assertRaises(PgWireError) as cm:
                    w.startup("app", "appdb", "app")
                err = cm.exception.fields
                self.assertEqual(err.get("C"), "28000", err)
                self.assertEqual(err.get("S"), "FATAL")
                self.assertIn('user "app", database "appdb", no encryption', err.get("M", ""))
            r = self.psql("sslmode=disable", "SELECT 1", port=sw.port)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("no encryption", r.stderr)
            r = self.psql(f"sslmode=verify-full sslrootcert={self.ca}", "SELECT 'tls ok'",
                          port=sw.port)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.strip(), "tls ok")

    def test_backend_with_unknown_ca_is_refused(self):
        with PgSwitch(self.cluster, pool_mode="transaction",
                      extra_toml=self.tls_toml(server_ca_file=str(self.certs / "otherca.crt"))
                      ) as sw:
            r = self.psql("sslmode=disable", "SELECT 1", port=sw.port)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("certificate verify failed", r.stderr + sw.log())

    @budget(60)
    def test_server_sslmode_prefer_and_require_against_a_server_without_tls(self):
        hba = self.cluster.nodes[0].datadir / "pg_hba.conf"
        hba.write_text(HBA_SSL_ONLY.replace("hostssl", "host").replace(
            "hostnossl all           all             127.0.0.1/32    reject\n", ""))
        _chown_pg(hba)
        self.cluster.psql(0, "ALTER SYSTEM SET ssl = off")
        self.cluster.psql(0, "SELECT pg_reload_conf()")
        try:
            time.sleep(0.5)
            with PgSwitch(self.cluster, pool_mode="transaction",
                          extra_toml=self.tls_toml(server_sslmode="prefer")) as sw:
                r = self.psql("sslmode=disable", "SELECT ssl FROM pg_stat_ssl "
                              "WHERE pid = pg_backend_pid()", port=sw.port)
                self.assertEqual(r.returncode, 0, r.stderr + sw.log_tail())
                self.assertEqual(r.stdout.strip(), "f")  # 'N', and prefer goes on in plaintext
            with PgSwitch(self.cluster, pool_mode="transaction",
                          extra_toml=self.tls_toml(server_sslmode="require")) as sw:
                # The health checks (libpq, sslmode=require) find the backend down, so a
                # client waits for it and gives up (connect_timeout).
                r = self.psql("sslmode=disable connect_timeout=3", "SELECT 1", port=sw.port)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn("server does not support SSL, but SSL was required", sw.log())
        finally:
            hba.write_text(HBA_SSL_ONLY)
            _chown_pg(hba)
            self.cluster.psql(0, "ALTER SYSTEM RESET ssl")
            self.cluster.psql(0, "SELECT pg_reload_conf()")
            time.sleep(0.5)

    # -- reload -------------------------------------------------------------------------------
    @budget(60)
    def test_reload_new_certificate_keeps_sessions(self):
        d = self.certs
        shutil.copy(d / "sw1.crt", d / "server.crt")
        shutil.copy(d / "sw1.key", d / "server.key")
        self.sw.reload()
        time.sleep(0.5)
        self.assertEqual(peer_cert(self.sw.port, self.ca), der_of(d / "sw1.crt"))
        conn = psycopg2.connect(self.sw.dsn(host="localhost", sslmode="verify-full",
                                            sslrootcert=str(self.ca)))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                self.assertEqual(cur.fetchone(), (1,))
            shutil.copy(d / "sw2.crt", d / "server.crt")
            shutil.copy(d / "sw2.key", d / "server.key")
            self.sw.reload()
            deadline = time.monotonic() + 10
            while peer_cert(self.sw.port, self.ca) != der_of(d / "sw2.crt"):
                self.assertLess(time.monotonic(), deadline, "new certificate not served")
                time.sleep(0.2)
            # The session that began with the old certificate goes on.
            with conn.cursor() as cur:
                cur.execute("SELECT 2")
                self.assertEqual(cur.fetchone(), (2,))
        finally:
            conn.close()
        r = self.psql(f"sslmode=verify-full sslrootcert={self.ca} channel_binding=require",
                      "SELECT 'after reload'")
        self.assertEqual(r.returncode, 0, r.stderr)
        # A reload with a key that does not match the certificate is refused; the running
        # contexts stay.
        shutil.copy(d / "sw1.key", d / "server.key")
        try:
            self.sw.reload()
            time.sleep(0.5)
            self.assertIn("reload refused", self.sw.log())
            self.assertIn("key values mismatch", self.sw.log())
            self.assertEqual(peer_cert(self.sw.port, self.ca), der_of(d / "sw2.crt"))
        finally:
            shutil.copy(d / "sw2.key", d / "server.key")
            self.sw.reload()

    # -- drivers ------------------------------------------------------------------------------
    def test_psycopg2_sslmode_require_transaction_mode(self):
        conn = psycopg2.connect(self.sw.dsn(sslmode="require"))
        try:
            for i in range(20):
                with conn.cursor() as cur:
                    cur.execute("SELECT %s::int + 1, repeat('x', 100000)", (i,))
                    n, big = cur.fetchone()
                    self.assertEqual(n, i + 1)
                    self.assertEqual(len(big), 100000)
                conn.commit()
        finally:
            conn.close()

    def test_psycopg3_sslmode_require_transaction_mode(self):
        with psycopg.connect(self.sw.dsn(sslmode="require", channel_binding="require"),
                             autocommit=True) as conn:
            for i in range(20):
                row = conn.execute("SELECT %s::int * 2", (i,), prepare=True).fetchone()
                self.assertEqual(row, (i * 2,))
            with conn.cursor() as cur:
                with cur.copy("COPY (SELECT g FROM generate_series(1, 50000) g) TO STDOUT") as cp:
                    rows = sum(1 for _ in cp.rows())
            self.assertEqual(rows, 50000)


if __name__ == "__main__":
    unittest.main()
