"""Foundation integration tests: pgswitch in session mode in front of a primary and two
streaming replicas. Covers pgbench in all three query modes, bulk COPY, client authentication
errors, hostile startup bytes, SSLRequest, the extended protocol through real drivers, and
bounded memory for a slow reader."""
from __future__ import annotations

import asyncio
import hashlib
import os
import random
import select
import socket
import struct
import subprocess
import sys
import time
import unittest

import asyncpg
import psycopg
import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import HOST, PG_BIN, PgCluster, PgSwitch  # noqa: E402
from pgwire import PROTOCOL_V3, PgWire, PgWireError, query_msg, ssl_request  # noqa: E402
from proxycase import ProxyTestCase, budget  # noqa: E402

PGBENCH = str(PG_BIN / "pgbench")
PSQL = str(PG_BIN / "psql")


class FoundationTest(ProxyTestCase):
    cluster: PgCluster
    sw: PgSwitch

    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster(replicas=2).start()
        try:
            cls.sw = PgSwitch(cls.cluster, pool_mode="session")
        except BaseException:
            cls.cluster.stop()
            raise
        cls.tmp = cls.cluster.tmpdir

    @classmethod
    def tearDownClass(cls):
        try:
            cls.sw.stop()
        finally:
            cls.cluster.stop()

    # -- helpers ------------------------------------------------------------------------------
    def connect2(self, user="app", db="appdb", **kw):
        return psycopg2.connect(self.sw.dsn(user=user, db=db, **kw))

    def assertAlive(self):
        self.assertTrue(self.sw.running(), "pgswitch is no longer running:\n"
                        + self.sw.log_tail())

    def pgbench(self, *args, timeout=90):
        env = dict(os.environ, PGPASSWORD="app", PGCONNECT_TIMEOUT="10")
        cmd = [PGBENCH, "-h", HOST, "-p", str(self.sw.port), "-U", "app", *args, "appdb"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=self.tmp)

    def psql_sw(self, command, user="app", db="appdb", timeout=60):
        dsn = self.sw.dsn(user=user, db=db)
        return subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", dsn,
                               "-c", command], capture_output=True, text=True,
                              timeout=timeout, cwd=self.tmp,
                              env=dict(os.environ, PGCONNECT_TIMEOUT="10"))

    # -- pgbench ------------------------------------------------------------------------------
    @budget(120)
    def test_pgbench_modes(self):
        init = self.pgbench("-i", "-s", "5", "-q", timeout=60)
        self.assertEqual(init.returncode, 0, init.stdout + init.stderr)
        for mode in ("simple", "extended", "prepared"):
            with self.subTest(mode=mode):
                cp = self.pgbench("-c", "8", "-j", "2", "-T", "10", "-M", mode)
                out = cp.stdout + cp.stderr
                self.assertEqual(cp.returncode, 0, out)
                failed = [l for l in out.splitlines()
                          if l.startswith("number of failed transactions")]
                self.assertTrue(failed, "no 'number of failed transactions' line:\n" + out)
                self.assertTrue(failed[0].split(":")[1].strip().startswith("0 "), failed[0])
                tps = [l for l in out.splitlines() if l.startswith("tps = ")]
                self.assertTrue(tps, out)
                self.assertGreater(float(tps[0].split()[2]), 0.0, tps[0])
                print(f"\npgbench -M {mode}: {tps[0]}", file=sys.stderr)
        self.assertAlive()

    # -- COPY through psql ----------------------------------------------------------------------
    @budget(90)
    def test_copy_million_rows(self):
        n = 1_000_000
        src = self.tmp / "copy_in.tsv"
        dst = self.tmp / "copy_out.tsv"
        with open(src, "w") as f:
            f.writelines(f"{i}\trow {i} {'x' * (i % 37)}\n" for i in range(1, n + 1))
        cp = self.psql_sw("DROP TABLE IF EXISTS big; CREATE TABLE big(id int, txt text)")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        cp = self.psql_sw(f"\\copy big from '{src}'")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        cp = self.psql_sw(f"\\copy (SELECT id, txt FROM big ORDER BY id) to '{dst}'")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        cp = self.psql_sw("SELECT count(*), sum(id) FROM big")
        self.assertEqual(cp.stdout.strip(), f"{n}|{n * (n + 1) // 2}")
        digest = [hashlib.md5(p.read_bytes()).hexdigest() for p in (src, dst)]
        self.assertEqual(digest[0], digest[1], "COPY out differs from COPY in")
        src.unlink()
        dst.unlink()
        self.psql_sw("DROP TABLE big")

    # -- client authentication ----------------------------------------------------------------
    def wire_error(self, user, password, db):
        w = PgWire(port=self.sw.port, timeout=10)
        try:
            with self.assertRaises(PgWireError) as cm:
                w.startup(user, db, password)
        finally:
            w.sock.close()
        return cm.exception

    def asyncpg_error(self, user, password, db):
        async def go():
            conn = await asyncpg.connect(host=HOST, port=self.sw.port, user=user,
                                         password=password, database=db, timeout=10)
            await conn.close()
        with self.assertRaises(asyncpg.PostgresError) as cm:
            asyncio.run(go())
        return cm.exception

    def test_auth_wrong_password(self):
        with self.assertRaises(psycopg2.OperationalError) as cm:
            self.connect2(password="wrong")
        self.assertIn('password authentication failed for user "app"', str(cm.exception))
        # libpq reports no SQLSTATE for a failed connection; check it on the wire too.
        if cm.exception.pgcode is not None:
            self.assertEqual(cm.exception.pgcode, "28P01")
        self.assertEqual(self.wire_error("app", "wrong", "appdb").sqlstate, "28P01")
        self.assertEqual(self.asyncpg_error("app", "wrong", "appdb").sqlstate, "28P01")
        self.assertAlive()

    def test_auth_unknown_user(self):
        with self.assertRaises(psycopg2.OperationalError) as cm:
            self.connect2(user="nosuchuser", password="whatever")
        self.assertIn('password authentication failed for user "nosuchuser"',
                      str(cm.exception))
        e = self.wire_error("nosuchuser", "whatever", "appdb")
        self.assertEqual(e.sqlstate, "28P01")
        self.assertEqual(e.fields.get("M"),
                         'password authentication failed for user "nosuchuser"')
        self.assertEqual(self.asyncpg_error("nosuchuser", "whatever", "appdb").sqlstate,
                         "28P01")

    def test_auth_unknown_database(self):
        with self.assertRaises(psycopg2.OperationalError) as cm:
            self.connect2(db="nosuchdb")
        self.assertIn('database "nosuchdb" does not exist', str(cm.exception))
        self.assertEqual(self.wire_error("app", "app", "nosuchdb").sqlstate, "3D000")
        self.assertEqual(self.asyncpg_error("app", "app", "nosuchdb").sqlstate, "3D000")

    @budget(45)
    def test_auth_methods(self):
        for user, password, want_codes in (("app", "app", {10, 11, 12}),
                                           ("md5user", "md5pass", {5}),
                                           ("trustuser", "", set())):
            with self.subTest(user=user):
                with self.connect2(user=user, password=password) as conn:
                    with conn.cursor() as cur:
                        cur.execute("SELECT current_user")
                        self.assertEqual(cur.fetchone()[0], user)
                conn.close()
                with PgWire(port=self.sw.port) as w:
                    w.startup(user, "appdb", password)
                    self.assertEqual(set(w.auth_codes) - {0}, want_codes,
                                     f"authentication requests seen: {w.auth_codes}")
                    self.assertEqual(w.query("SELECT current_user"), [(user,)])
        with self.assertRaises(psycopg2.OperationalError):
            self.connect2(user="md5user", password="wrong")

    @budget(45)
    def test_sequential_sessions(self):
        # Session after session of the same user, by two different clients: each one must get
        # a clean server connection (pooled servers are reused between them).
        for i in range(24):
            user, password = (("trustuser", ""), ("app", "app"))[i % 2]
            with self.subTest(i=i, user=user):
                if i % 4 < 2:
                    with PgWire(port=self.sw.port) as w:
                        w.startup(user, "appdb", password)
                        self.assertEqual(w.query(f"SELECT {i}, current_user"),
                                         [(str(i), user)])
                else:
                    conn = self.connect2(user=user, password=password)
                    try:
                        with conn.cursor() as cur:
                            cur.execute("SELECT %s, current_user", (i,))
                            self.assertEqual(cur.fetchone(), (i, user))
                    finally:
                        conn.close()
        self.assertAlive()

    # -- hostile startup bytes ----------------------------------------------------------------
    @budget(80)
    def test_random_startup_bytes(self):
        rng = random.Random(0x5EED)
        cases = [
            ("two-byte packet", b"\x00\x08", True),
            ("huge length header", struct.pack("!I", 0x7FFFFFF0) + rng.randbytes(64), False),
            ("negative length header", struct.pack("!I", 0xFFFFFF00) + rng.randbytes(16),
             False),
            ("length below minimum", struct.pack("!I", 4), False),
            ("unknown protocol code", struct.pack("!II", 16, 0x00020000) + rng.randbytes(8),
             False),
            ("v3 with garbage parameters",
             struct.pack("!II", 8 + 40, PROTOCOL_V3) + rng.randbytes(40), False),
        ]
        for n in (1, 3, 7, 64, 1000, 4096, 70000):
            data = rng.randbytes(n)
            declared = struct.unpack("!I", data[:4])[0] if n >= 4 else 0
            incomplete = n < 4 or (8 <= declared <= 10000 and n < declared)
            cases.append((f"{n} random bytes", data, incomplete))

        keeper = self.connect2()
        keeper.autocommit = True
        try:
            for name, data, half_close in cases:
                with self.subTest(case=name):
                    received, closed = self._send_garbage(data, half_close)
                    self.assertTrue(closed, f"{name}: connection still open after 5 s "
                                            f"(received {received[:40]!r})")
                    self.assertTrue(received == b"" or received[:1] == b"E",
                                    f"{name}: unexpected reply {received[:40]!r}")
                    self.assertAlive()
                    with keeper.cursor() as cur:
                        cur.execute("SELECT 42")
                        self.assertEqual(cur.fetchone()[0], 42)
            with self.connect2() as fresh:
                with fresh.cursor() as cur:
                    cur.execute("SELECT 1")
                    self.assertEqual(cur.fetchone()[0], 1)
            fresh.close()
        finally:
            keeper.close()

    def _send_garbage(self, data: bytes, half_close: bool) -> tuple[bytes, bool]:
        """Sends data as a startup packet; returns (bytes received, closed within 5 s)."""
        s = socket.create_connection((HOST, self.sw.port), timeout=5)
        received = b""
        try:
            try:
                s.sendall(data)
                if half_close:
                    s.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                return received, True
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = s.recv(4096)
                except socket.timeout:
                    break
                except ConnectionResetError:
                    return received, True
                if not chunk:
                    return received, True
                received += chunk
            return received, False
        finally:
            s.close()

    # -- SSLRequest -----------------------------------------------------------------------------
    def test_ssl_request(self):
        with PgWire(port=self.sw.port) as w:
            w.send(ssl_request())
            self.assertEqual(w.sock.recv(1), b"N")
            w.startup("trustuser", "appdb")
            self.assertEqual(w.query("SELECT 'after ssl refusal'"), [("after ssl refusal",)])
        with self.connect2(sslmode="prefer") as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT 7")
                self.assertEqual(cur.fetchone()[0], 7)
        conn.close()

    # -- drivers: extended protocol, notices, notify, parameters, COPY --------------------------
    def test_psycopg3_pipeline(self):
        with psycopg.connect(self.sw.dsn(), autocommit=True) as conn:
            with conn.pipeline():
                curs = [conn.execute("SELECT %s::int * 2, %s::text", (i, f"v{i}"))
                        for i in range(200)]
            self.assertEqual([c.fetchone() for c in curs],
                             [(i * 2, f"v{i}") for i in range(200)])
            # An error inside a pipeline aborts the rest up to the Sync; the session survives.
            with self.assertRaises(psycopg.errors.DivisionByZero):
                with conn.pipeline():
                    conn.execute("SELECT 1")
                    conn.execute("SELECT 1 / 0")
                    conn.execute("SELECT 2")
            self.assertEqual(conn.execute("SELECT 3").fetchone(), (3,))

    def test_notices(self):
        with self.connect2() as conn:
            with conn.cursor() as cur:
                cur.execute("DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$")
            self.assertTrue(any("hello 42" in n for n in conn.notices), conn.notices)
        conn.close()

    def test_listen_notify(self):
        listener, notifier = self.connect2(), self.connect2()
        try:
            listener.autocommit = notifier.autocommit = True
            listener.cursor().execute("LISTEN pgswitch_chan")
            notifier.cursor().execute("NOTIFY pgswitch_chan, 'payload-1'")
            deadline = time.monotonic() + 5
            while not listener.notifies and time.monotonic() < deadline:
                select.select([listener], [], [], 0.5)
                listener.poll()
            self.assertTrue(listener.notifies, "no notification within 5 s")
            n = listener.notifies[0]
            self.assertEqual((n.channel, n.payload), ("pgswitch_chan", "payload-1"))
        finally:
            listener.close()
            notifier.close()

    def test_parameter_status(self):
        with self.connect2() as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SET application_name = 'pgswitch-test'")
            self.assertEqual(conn.get_parameter_status("application_name"), "pgswitch-test")
            self.assertEqual(conn.get_parameter_status("server_encoding"), "UTF8")
        conn.close()

    def test_psycopg3_copy(self):
        n = 20000
        with psycopg.connect(self.sw.dsn()) as conn:
            with conn.cursor() as cur:
                cur.execute("CREATE TEMP TABLE ct(a int, b text)")
                with cur.copy("COPY ct (a, b) FROM STDIN") as copy:
                    for i in range(n):
                        copy.write_row((i, f"text {i}"))
                cur.execute("SELECT count(*), sum(a) FROM ct")
                self.assertEqual(cur.fetchone(), (n, n * (n - 1) // 2))
                with cur.copy("COPY (SELECT a, b FROM ct ORDER BY a) TO STDOUT") as copy:
                    rows = list(copy.rows())
                self.assertEqual(len(rows), n)
                self.assertEqual(rows[123], ("123", "text 123"))
                # A failing COPY FROM STDIN leaves the session usable.
                with self.assertRaises(psycopg.errors.InvalidTextRepresentation):
                    with cur.copy("COPY ct (a, b) FROM STDIN") as copy:
                        copy.write(b"not-a-number\tx\n")
                conn.rollback()
                cur.execute("SELECT 1")
                self.assertEqual(cur.fetchone(), (1,))

    def test_asyncpg(self):
        async def go():
            conn = await asyncpg.connect(host=HOST, port=self.sw.port, user="app",
                                         password="app", database="appdb", timeout=10)
            try:
                self.assertEqual(await conn.fetchval("SELECT 1 + 1"), 2)
                stmt = await conn.prepare("SELECT $1::int * 3, $2::text")
                for i in range(20):
                    self.assertEqual(tuple(await stmt.fetchrow(i, f"s{i}")), (i * 3, f"s{i}"))
                rows = await conn.fetch("SELECT g FROM generate_series(1, 1000) g")
                self.assertEqual(len(rows), 1000)
            finally:
                await conn.close()
        asyncio.run(asyncio.wait_for(go(), 60))

    # -- backpressure ---------------------------------------------------------------------------
    @budget(150)
    @unittest.skipIf(os.environ.get("PGSWITCH_SANITIZED"),
                     "AddressSanitizer keeps freed memory in quarantine: RSS says nothing here "
                     "(the release build's run checks it)")
    def test_slow_reader_bounded_memory(self):
        want_rows = 2_000_000
        limit_kb = 64 * 1024
        w = PgWire(port=self.sw.port, timeout=10)
        try:
            w.startup("trustuser", "appdb")
            w.sock.settimeout(15)
            base_rss = self.sw.rss_kb()
            w.send(query_msg(f"SELECT repeat('x', 1000) FROM generate_series(1, {want_rows})"))
            sock, buf = w.sock, bytearray()
            rows = 0
            done = False
            max_rss = base_rss
            next_sample = 0.0
            deadline = time.monotonic() + 120
            unpack = struct.Struct("!BI").unpack_from
            while not done:
                self.assertLess(time.monotonic(), deadline,
                                f"only {rows} rows after 120 s")
                try:
                    chunk = sock.recv(65536)
                except socket.timeout:
                    self.fail(f"no data for 15 s after {rows} rows")
                self.assertTrue(chunk, f"connection closed after {rows} rows")
                buf += chunk
                off, end = 0, len(buf)
                while end - off >= 5:
                    t, ln = unpack(buf, off)
                    if end - off < 1 + ln:
                        break
                    if t == 0x44:  # DataRow
                        rows += 1
                    elif t == 0x45:  # ErrorResponse
                        self.fail(f"error after {rows} rows: {bytes(buf[off:off + 1 + ln])!r}")
                    elif t == 0x5A:  # ReadyForQuery
                        done = True
                    off += 1 + ln
                del buf[:off]
                now = time.monotonic()
                if now >= next_sample:
                    max_rss = max(max_rss, self.sw.rss_kb())
                    next_sample = now + 0.05
                    self.assertLess(max_rss, limit_kb,
                                    f"pgswitch RSS reached {max_rss} kB after {rows} rows")
                time.sleep(0.001)
            max_rss = max(max_rss, self.sw.rss_kb())
            print(f"\nslow reader: {rows} rows, pgswitch RSS {base_rss} kB before, "
                  f"max {max_rss} kB, HWM {self.sw.hwm_kb()} kB", file=sys.stderr)
            self.assertEqual(rows, want_rows)
            self.assertLess(max_rss, limit_kb, f"pgswitch RSS reached {max_rss} kB")
            self.assertEqual(w.query("SELECT 'still usable'"), [("still usable",)])
        finally:
            w.close()
        self.assertAlive()

    @budget(120)
    def test_full_sockets_both_ways_and_a_reader_that_leaves(self):
        # Sends that find a socket full (the server's taking a large COPY, a client not
        # reading) wait for room in the loop, not in the kernel: nothing is lost or repeated,
        # and a client that leaves while its socket is full is closed without holding anyone.
        if os.environ.get("PGSWITCH_IO_URING") != "off" and \
                "io_uring unavailable" not in self.sw.log():
            # The ring's sends are the ones under test here, not the fallback for old kernels.
            self.assertNotIn("not known to complete in the submission", self.sw.log())
        n, pad = 150_000, "p" * 200
        with psycopg.connect(self.sw.dsn()) as conn:
            with conn.cursor() as cur:
                cur.execute("CREATE TEMP TABLE big(a int, b text)")
                with cur.copy("COPY big (a, b) FROM STDIN") as copy:
                    for i in range(n):
                        copy.write_row((i, f"{pad}{i}"))
                cur.execute("SELECT count(*), sum(a), sum(length(b)) FROM big")
                self.assertEqual(cur.fetchone(),
                                 (n, n * (n - 1) // 2,
                                  sum(len(pad) + len(str(i)) for i in range(n))))
                got = hashlib.sha256()
                rows = 0
                with cur.copy("COPY (SELECT a, b FROM big ORDER BY a) TO STDOUT") as copy:
                    for block in copy:
                        got.update(block)
                        rows += bytes(block).count(b"\n")
                want = hashlib.sha256(b"".join(f"{i}\t{pad}{i}\n".encode() for i in range(n)))
                self.assertEqual(rows, n)
                self.assertEqual(got.hexdigest(), want.hexdigest())
        w = PgWire(port=self.sw.port, timeout=10)
        try:
            w.startup("trustuser", "appdb")
            w.send(query_msg("SELECT repeat('x', 1000) FROM generate_series(1, 200000)"))
            time.sleep(1.0)  # pgswitch's socket to this client fills, and stays full
        finally:
            w.close()
        t0 = time.monotonic()
        for i in range(20):
            with psycopg2.connect(self.sw.dsn()) as c, c.cursor() as cur:
                cur.execute("SELECT %s", (i,))
                self.assertEqual(cur.fetchone()[0], i)
        self.assertLess(time.monotonic() - t0, 10, "the leaving reader held things up")
        self.assertAlive()

    # -- shutdown (runs last: tests run in name order) ------------------------------------------
    def test_zz_sigterm_clean_exit(self):
        self.assertAlive()
        rc = self.sw.stop(timeout=10)
        self.assertEqual(rc, 0, "pgswitch exit code on SIGTERM\n" + self.sw.log_tail())

    test_zz_sigterm_clean_exit.stops_pgswitch = True


if __name__ == "__main__":
    unittest.main(verbosity=2)
