"""Access rules and hostile clients against a real PostgreSQL 15: hba_file refuses a
database/user/address with PostgreSQL's exact FATAL (compared with PostgreSQL itself given the
same lines), hostssl/hostnossl and `cert` (client certificate CN = user), a live reload that
changes the rules (and a bad file that keeps the old ones), stats_users that may SHOW but not
PAUSE, clients that stall mid-login (before the TLS handshake, mid-SCRAM) closed after
client_login_timeout_ms, a burst over max_connections_per_second_per_address refused with
53300, and every refusal counted in SHOW TOTALS and logged without secrets."""
from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest
from contextlib import closing
from pathlib import Path

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import DEFAULT_USERS, HOST, PgCluster, PgSwitch, _chown_pg  # noqa: E402
from pgwire import PgWire, PgWireError, msg, ssl_request, startup_packet  # noqa: E402
from proxycase import ProxyTestCase, budget  # noqa: E402

# Lines PostgreSQL and pgswitch share: the refusals are compared between the two.
COMMON = """\
host    appdb       evil                127.0.0.1/32    reject
host    all         postgres            127.0.0.1/32    scram-sha-256
host    appdb       app                 127.0.0.1/32    scram-sha-256
"""
# PostgreSQL's file: the above, plus what pgswitch's own server logins need.
PG_FILE = "local all all trust\n" + COMMON + """\
host    appdb       certuser            127.0.0.1/32    scram-sha-256
host    appdb       md5user             127.0.0.1/32    md5
"""
# pgswitch's file: TLS-dependent lines and the console's users.
SW_FILE = "# pgswitch hba_file (tests/integration/test_access.py)\n" + COMMON + """\
hostssl   appdb     certuser            127.0.0.1/32    cert
hostnossl appdb     md5user             127.0.0.1/32    md5
host      pgswitch  admin,"stats"       127.0.0.1/32    scram-sha-256
"""
USERS = DEFAULT_USERS + [{"name": "stats", "password": "stats", "auth": "scram-sha-256"},
                         {"name": "certuser", "password": "certpass", "auth": "scram-sha-256"},
                         {"name": "evil", "password": "evil", "auth": "scram-sha-256"}]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_cert(d: Path, name: str, cn: str, san: str | None = None) -> None:
    """A certificate with this CN signed by d/ca."""
    ext = "extendedKeyUsage=serverAuth,clientAuth\n"
    if san:
        ext += f"subjectAltName={san}\n"
    (d / f"{name}.ext").write_text(ext)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt",
            cwd=d)


def closed_within(s: socket.socket, seconds: float) -> bool:
    """True when the peer closes s (EOF or reset) within `seconds`; what arrives is dropped."""
    s.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if not s.recv(65536):
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


class AccessTest(ProxyTestCase):
    cluster: PgCluster
    sw: PgSwitch
    default_budget = 60.0

    @classmethod
    def setUpClass(cls):
        cls.certs = Path(tempfile.mkdtemp(prefix="pgswitch-access-", dir="/tmp"))
        d = cls.certs
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=pgswitch access test ca", "-keyout", "ca.key", "-out", "ca.crt",
                cwd=d)
        make_cert(d, "server", "localhost", "DNS:localhost,IP:127.0.0.1")
        make_cert(d, "certuser", "certuser")
        make_cert(d, "other", "someoneelse")
        for f in d.iterdir():
            os.chmod(f, 0o600 if f.suffix == ".key" else 0o644)
        cls.cluster = PgCluster(replicas=0).start()
        try:
            cls.cluster.psql(0, "CREATE ROLE certuser LOGIN PASSWORD 'certpass'; "
                                "CREATE ROLE evil LOGIN PASSWORD 'evil'; "
                                "GRANT CONNECT ON DATABASE appdb TO PUBLIC")
            cls.set_pg_hba(PG_FILE)
            tls = (f'[tls]\ncert_file = "{d / "server.crt"}"\nkey_file = "{d / "server.key"}"\n'
                   f'ca_file = "{d / "ca.crt"}"\n')
            cls.sw = PgSwitch(cls.cluster, users=USERS, extra_toml=tls, start=False,
                              server_toml='hba_file = "hba.conf"\nstats_users = ["stats"]')
            cls.write_hba(SW_FILE)
            cls.sw.start()
        except BaseException:
            cls.cluster.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.sw.stop()
        finally:
            cls.cluster.stop()
            shutil.rmtree(cls.certs, ignore_errors=True)

    @classmethod
    def set_pg_hba(cls, text: str) -> None:
        hba = cls.cluster.nodes[0].datadir / "pg_hba.conf"
        hba.write_text(text)
        _chown_pg(hba)
        cls.cluster.psql(0, "SELECT pg_reload_conf()")

    @classmethod
    def write_hba(cls, text: str) -> None:
        (cls.sw.dir / "hba.conf").write_text(text)

    def refusal(self, port: int, user: str, db: str, password: str = "x") -> tuple[str, str]:
        """(SQLSTATE, message) of the FATAL a login gets."""
        with PgWire(port=port) as w:
            with self.assertRaises(PgWireError) as cm:
                w.startup(user, db, password)
        return cm.exception.fields.get("C"), cm.exception.fields.get("M")

    def totals(self) -> dict[str, int]:
        with closing(psycopg2.connect(self.sw.dsn(user="admin", db="pgswitch"))) as c:
            c.autocommit = True
            with c.cursor() as cur:
                cur.execute("SHOW TOTALS")
                return {k: int(v) for k, v in cur.fetchall()}

    def admin(self, sql: str) -> None:
        with closing(psycopg2.connect(self.sw.dsn(user="admin", db="pgswitch"))) as c:
            c.autocommit = True
            with c.cursor() as cur:
                cur.execute(sql)

    def connect(self, user: str, **extra):
        return psycopg2.connect(self.sw.dsn(user=user, **extra))

    # -- hba_file ------------------------------------------------------------------------------
    def test_refusals_are_worded_exactly_as_postgresql_words_them(self):
        before = self.totals()
        pg_port = self.cluster.port_of(0)
        for user, db in (("app", "postgres"), ("evil", "appdb"), ("nosuchuser", "appdb")):
            with self.subTest(user=user, db=db):
                want = self.refusal(pg_port, user, db)
                got = self.refusal(self.sw.port, user, db)
                self.assertEqual(got, want)
                self.assertEqual(got[0], "28000")
        self.assertIn("no pg_hba.conf entry for host \"127.0.0.1\", user \"app\", database "
                      "\"postgres\", no encryption", self.refusal(self.sw.port, "app",
                                                                  "postgres")[1])
        self.assertIn("pg_hba.conf rejects connection for host \"127.0.0.1\", user \"evil\"",
                      self.refusal(self.sw.port, "evil", "appdb")[1])
        after = self.totals()
        self.assertGreaterEqual(after["access_refused"] - before["access_refused"], 5, after)
        # Logged with address, user, database and reason.
        self.assertIn('login failed: address 127.0.0.1 user "evil" database "appdb": '
                      'hba_file line 2 rejects', self.sw.log())
        # The allowed combination works.
        with closing(self.connect("app")) as c, c.cursor() as cur:
            cur.execute("SELECT current_user")
            self.assertEqual(cur.fetchone()[0], "app")

    def test_hostssl_hostnossl_and_cert(self):
        d = self.certs
        # hostnossl: md5user in plaintext only.
        with closing(self.connect("md5user", sslmode="disable")) as c, c.cursor() as cur:
            cur.execute("SELECT 1")
        with self.assertRaises(psycopg2.OperationalError) as cm:
            self.connect("md5user", sslmode="require")
        self.assertIn('no pg_hba.conf entry for host "127.0.0.1", user "md5user", database '
                      '"appdb", SSL encryption', str(cm.exception))
        # hostssl ... cert: a certificate whose CN is the user, and no password at all.
        with closing(self.connect("certuser", password="", sslmode="require",
                                  sslcert=str(d / "certuser.crt"),
                                  sslkey=str(d / "certuser.key"))) as c, c.cursor() as cur:
            cur.execute("SELECT current_user, 1")
            self.assertEqual(cur.fetchone(), ("certuser", 1))
        with self.assertRaises(psycopg2.OperationalError) as cm:
            self.connect("certuser", password="", sslmode="require",
                         sslcert=str(d / "other.crt"), sslkey=str(d / "other.key"))
        self.assertIn('certificate authentication failed for user "certuser"', str(cm.exception))
        with self.assertRaises(psycopg2.OperationalError) as cm:
            self.connect("certuser", password="", sslmode="require",
                         sslcert=str(d / "none.crt"), sslkey=str(d / "none.key"))
        self.assertIn("connection requires a valid client certificate", str(cm.exception))
        with self.assertRaises(psycopg2.OperationalError) as cm:
            self.connect("certuser", password="certpass", sslmode="disable")
        self.assertIn('user "certuser", database "appdb", no encryption', str(cm.exception))

    @budget(90)
    def test_reload_changes_the_rules_live_and_a_bad_file_keeps_them(self):
        held = self.connect("app")
        held.autocommit = True
        try:
            self.write_hba("host appdb app 127.0.0.1/32 reject\n" + SW_FILE)
            self.sw.reload()
            self.wait_refused("app", "pg_hba.conf rejects connection")
            # Sessions already logged in stay.
            with held.cursor() as cur:
                cur.execute("SELECT 2")
                self.assertEqual(cur.fetchone()[0], 2)
            # A file that does not parse: the reload is refused, the rules stay, the log says
            # where.
            self.write_hba(SW_FILE + "hots all all 127.0.0.1/32 trust\n")
            self.sw.reload()
            for line in ("hba.conf:8: invalid connection type", "reload refused"):
                self.assertTrue(self.sw.wait_log(line, timeout=10), self.sw.log_tail())
            with self.assertRaises(psycopg2.OperationalError):
                self.connect("app")
        finally:
            self.write_hba(SW_FILE)
            self.sw.reload()
            held.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                with closing(self.connect("app")):
                    break
            except psycopg2.OperationalError:
                self.assertLess(time.monotonic(), deadline, self.sw.log_tail())
                time.sleep(0.1)

    def wait_refused(self, user: str, text: str) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                with closing(self.connect(user)):
                    pass
            except psycopg2.OperationalError as e:
                if text in str(e):
                    return
            self.assertLess(time.monotonic(), deadline, "rules not reloaded:\n"
                            + self.sw.log_tail())
            time.sleep(0.1)

    # -- console users -------------------------------------------------------------------------
    def test_stats_user_can_show_but_not_pause(self):
        with closing(psycopg2.connect(self.sw.dsn(user="stats", db="pgswitch"))) as c:
            c.autocommit = True
            with c.cursor() as cur:
                cur.execute("SHOW TOTALS")
                self.assertTrue(cur.fetchall())
                cur.execute("SHOW POOLS")
                with self.assertRaises(psycopg2.Error) as cm:
                    cur.execute("PAUSE")
                self.assertEqual(cm.exception.pgcode, "42501")
                self.assertIn("permission denied to run PAUSE", str(cm.exception))
                cur.execute("SHOW VERSION")  # the session goes on
        # Nothing was paused: a client still runs queries at once.
        with closing(self.connect("app")) as c, c.cursor() as cur:
            cur.execute("SELECT 1")

    # -- hostile clients -----------------------------------------------------------------------
    @budget(60)
    def test_clients_stalling_mid_login_are_closed_and_counted(self):
        before = self.totals()
        self.admin("SET client_login_timeout_ms = 1000")
        try:
            # One byte of a startup packet: a socket that says nothing at all stays with the
            # kernel (tcp_defer_accept) and never reaches pgswitch.
            silent = socket.create_connection((HOST, self.sw.port), timeout=10)
            silent.sendall(b"\x00")
            # Before the TLS handshake: 'S' came back, the ClientHello never does.
            tls = socket.create_connection((HOST, self.sw.port), timeout=10)
            tls.sendall(ssl_request())
            self.assertEqual(tls.recv(1), b"S")
            # In the middle of SCRAM: client-first sent, client-final never.
            scram = PgWire(port=self.sw.port)
            scram.send(startup_packet("app", "appdb"))
            t, p = scram.read_msg()
            self.assertEqual((t, struct.unpack_from("!I", p)[0]), (b"R", 10))
            first = b"n,,n=,r=abcdefghijklmnop"
            scram.send(msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
            t, p = scram.read_msg()
            self.assertEqual((t, struct.unpack_from("!I", p)[0]), (b"R", 11))
            for name, s in (("silent", silent), ("tls", tls), ("scram", scram.sock)):
                self.assertTrue(closed_within(s, 10), f"{name} client not closed")
                s.close()
        finally:
            self.admin("SET client_login_timeout_ms = 60000")
        after = self.totals()
        self.assertGreaterEqual(after["login_timeouts"] - before["login_timeouts"], 3, after)

    @budget(60)
    def test_burst_over_the_per_address_rate_is_refused_and_counted(self):
        before = self.totals()
        self.admin("SET max_connections_per_second_per_address = 5")
        socks = []
        try:
            refused = 0
            for _ in range(30):
                s = socket.create_connection((HOST, self.sw.port), timeout=10)
                s.sendall(b"\x00")  # accepted only once it speaks (tcp_defer_accept)
                socks.append(s)
            for s in socks:
                s.settimeout(0.5)
                try:
                    data = s.recv(4096)
                except socket.timeout:
                    continue  # admitted: pgswitch waits for its startup packet
                if data[:1] == b"E":
                    self.assertIn(b"C53300\0", data)
                    self.assertIn(b'too many connections from host "127.0.0.1"', data)
                    refused += 1
            self.assertGreaterEqual(refused, 15, self.sw.log_tail())
            self.assertLessEqual(refused, 25)
        finally:
            for s in socks:
                s.close()
            time.sleep(1.1)  # the bucket fills again
            self.admin("SET max_connections_per_second_per_address = 0")
        after = self.totals()
        self.assertGreaterEqual(after["rate_limited"] - before["rate_limited"], refused, after)
        self.assertIn("over max_connections_per_second_per_address (5)", self.sw.log())

    def test_failed_logins_are_counted_and_logged_without_secrets(self):
        before = self.totals()
        code, message = self.refusal(self.sw.port, "app", "appdb", password="hunter2-secret")
        self.assertEqual((code, message), ("28P01", 'password authentication failed for user '
                                                     '"app"'))
        after = self.totals()
        self.assertEqual(after["auth_failures"] - before["auth_failures"], 1, after)
        log = self.sw.log()
        self.assertIn('login failed: address 127.0.0.1 user "app" database "appdb": wrong '
                      'password', log)
        self.assertNotIn("hunter2", log)


if __name__ == "__main__":
    unittest.main()
