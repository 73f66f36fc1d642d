"""Connection pooling integration tests (issue 3): 1,000 pgbench clients through 20 server
connections, pgbench/psycopg 3/asyncpg prepared statements in transaction mode while server
connections change hands (also in failed pipelined batches and with LRU eviction), cancel in
both modes, query_wait_timeout, max_client_conn, min/reserve pool, session state that follows
a client (and session-only features that pin it), and server_reset_query. Each test starts
its own pgswitch in front of one shared PostgreSQL primary."""
from __future__ import annotations

import asyncio
import logging
import os
import random
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest
from decimal import Decimal

import asyncpg
import psycopg
import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import HOST, PG_BIN, PgCluster, PgSwitch  # noqa: E402
from pgwire import (CANCEL_REQUEST_CODE, PgWire, PgWireError, bind_msg,  # noqa: E402
                    close_stmt_msg, describe_stmt_msg, execute_msg, msg, parse_error_fields,
                    parse_msg, query_msg, run_batch, sync_msg)
from proxycase import ProxyTestCase, budget  # noqa: E402

PGBENCH = str(PG_BIN / "pgbench")


Switch = PgSwitch  # [server] keys go in through server_toml


def raise_nofile(want: int = 8192) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def pgbench_summary(out: str) -> dict:
    """The numbers the tests check from pgbench's report (PostgreSQL 15 format)."""
    res = {"failed": None, "processed": None, "tps": None}
    for line in out.splitlines():
        if line.startswith("number of failed transactions:"):
            res["failed"] = int(line.split(":")[1].split()[0])
        elif line.startswith("number of transactions actually processed:"):
            res["processed"] = int(line.split(":")[1].split("/")[0].strip())
        elif line.startswith("tps = "):
            res["tps"] = float(line.split()[2])
    return res


class PoolingTest(ProxyTestCase):
    cluster: PgCluster
    sw = None  # each test starts its own pgswitch (see start_switch)

    @classmethod
    def setUpClass(cls):
        raise_nofile()
        cls.cluster = PgCluster(replicas=0).start()
        try:
            cls.tmp = cls.cluster.tmpdir
            cp = cls.pgbench_raw(cls.cluster.port_of(0), "-i", "-s", "2", "-q", timeout=120)
            if cp.returncode != 0:
                raise RuntimeError("pgbench -i failed:\n" + cp.stdout + cp.stderr)
        except BaseException:
            cls.cluster.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()

    # -- helpers ------------------------------------------------------------------------------
    @classmethod
    def pgbench_raw(cls, port, *args, timeout=120):
        env = dict(os.environ, PGPASSWORD="app", PGCONNECT_TIMEOUT="30", PGSSLMODE="disable")
        cmd = [PGBENCH, "-h", HOST, "-p", str(port), "-U", "app", *args, "appdb"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=cls.tmp)

    def start_switch(self, pool_mode="transaction", pool_size=4, workers=1, pool_toml="",
                     server_toml="", log_level="info") -> Switch:
        """A pgswitch for this test only: the watchdog and the per-test checks of
        ProxyTestCase follow it (self.sw), and it is stopped when the test ends."""
        pool = f"[pool]\npool_size = {pool_size}\n" + pool_toml.strip() + "\n"
        sw = Switch(self.cluster, pool_mode=pool_mode, workers=workers, extra_toml=pool,
                    server_toml=server_toml, log_level=log_level)
        self.addCleanup(sw.stop)
        self.sw = sw
        return sw

    def direct(self, user="postgres", db="appdb"):
        conn = psycopg2.connect(self.cluster.dsn(0, user=user, db=db))
        conn.autocommit = True
        self.addCleanup(conn.close)
        return conn

    def connect2(self, sw=None, user="app", db="appdb", autocommit=True, **kw):
        conn = psycopg2.connect((sw or self.sw).dsn(user=user, db=db, **kw))
        conn.autocommit = autocommit
        self.addCleanup(conn.close)
        return conn

    @staticmethod
    def one(conn, sql, args=None):
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchone()[0]

    def app_server_count(self, probe) -> int:
        """Server connections PostgreSQL has for user app (pgswitch's pool) right now."""
        return self.one(probe, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' "
                               "AND datname = 'appdb' AND backend_type = 'client backend'")

    def wait_query_running(self, probe, text, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = self.one(probe, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                "AND query = %s", (text,))
            if n:
                return
            time.sleep(0.02)
        self.fail(f"{text!r} did not show up as running in pg_stat_activity within {timeout}s")

    def steal_server(self, sw):
        """Opens a client that begins a transaction and keeps it open: it takes the most
        recently used idle server connection (the pool hands those out LIFO)."""
        thief = self.connect2(sw, autocommit=False)
        self.one(thief, "SELECT 1")
        return thief

    # -- 1. 1,000 clients through 20 server connections ----------------------------------------
    @budget(150)
    def test_01_thousand_pgbench_clients_pool_20(self):
        pool, reserve = 20, 4
        sw = self.start_switch(pool_size=pool, workers=2, log_level="warn",
                               server_toml="worker_fill = 0",
                               pool_toml=f"reserve_pool_size = {reserve}\n"
                                         "reserve_pool_timeout_ms = 2000\n"
                                         "query_wait_timeout_ms = 60000")
        probe = self.direct()
        env = dict(os.environ, PGPASSWORD="app", PGCONNECT_TIMEOUT="30", PGSSLMODE="disable")
        cmd = [PGBENCH, "-h", HOST, "-p", str(sw.port), "-U", "app", "-n", "-S",
               "-c", "1000", "-j", "4", "-T", "10", "appdb"]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, cwd=self.tmp)
        samples = []
        try:
            while proc.poll() is None:
                samples.append(self.app_server_count(probe))
                if time.monotonic() - t0 > 120:
                    proc.kill()
                    self.fail("pgbench -c 1000 did not finish within 120 s")
                time.sleep(0.1)
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        report = out + err
        s = pgbench_summary(out)
        print(f"\npgbench -c 1000 -S through pool_size {pool}: tps={s['tps']} "
              f"processed={s['processed']} max server connections seen={max(samples)} "
              f"({len(samples)} samples, {time.monotonic() - t0:.1f}s)", file=sys.stderr)
        self.assertEqual(proc.returncode, 0, f"pgbench exited with {proc.returncode}:\n"
                         + report[-4000:])
        self.assertNotIn("error", err.lower(), "pgbench reported errors:\n" + err[-4000:])
        self.assertIn("number of clients: 1000", out, report[-3000:])
        self.assertEqual(s["failed"], 0, "failed transactions:\n" + report[-3000:])
        self.assertIsNotNone(s["processed"], report[-3000:])
        self.assertGreater(s["processed"], 1000, "too few transactions:\n" + report[-3000:])
        self.assertGreater(max(samples), 0, "never saw a pgswitch server connection")
        self.assertLessEqual(max(samples), pool + reserve,
                             f"PostgreSQL saw {max(samples)} server connections from pgswitch "
                             f"with pool_size {pool} + reserve_pool_size {reserve}")

    # -- 2. pgbench in every query mode through a pool of 4 ------------------------------------
    @budget(90)
    def test_02_pgbench_modes_transaction_pool_4(self):
        sw = self.start_switch(pool_size=4, workers=1)
        probe = self.direct()
        runs = [("simple", "-S"), ("extended", "-S"), ("prepared", "-S"), ("prepared", None)]
        for mode, script in runs:
            with self.subTest(mode=mode, script=script or "tpcb-like"):
                args = ["-n", "-c", "16", "-j", "2", "-T", "4", "-M", mode]
                if script:
                    args.append(script)
                cp = self.pgbench_raw(sw.port, *args, timeout=60)
                report = cp.stdout + cp.stderr
                s = pgbench_summary(cp.stdout)
                print(f"\npgbench -M {mode} {script or 'tpcb-like'} -c 16, pool 4: "
                      f"tps={s['tps']}", file=sys.stderr)
                self.assertEqual(cp.returncode, 0, report[-4000:])
                self.assertEqual(s["failed"], 0, report[-3000:])
                self.assertGreater(s["processed"] or 0, 100, report[-3000:])
                self.assertNotIn("error", cp.stderr.lower(), report[-3000:])
        self.assertLessEqual(self.app_server_count(probe), 4,
                             "more server connections than pool_size 4")

    # -- 3. psycopg 3 with prepare_threshold=0 while server connections churn -------------------
    @budget(90)
    def test_03_psycopg3_prepared_statements_move_between_servers(self):
        sw = self.start_switch(pool_size=3, workers=1)
        stop = threading.Event()
        errors: list[str] = []
        pids: dict[int, set] = {}
        counts = {"checked": 0, "churn": 0}
        lock = threading.Lock()

        def user(n: int):
            try:
                with psycopg.connect(sw.dsn(), prepare_threshold=0,
                                     autocommit=(n % 2 == 0)) as conn:
                    seen = pids.setdefault(n, set())
                    for i in range(40):
                        a, b = n * 1000 + i, i * 7
                        if conn.autocommit:
                            r = conn.execute("SELECT %s::int + %s::int, pg_backend_pid()",
                                             (a, b)).fetchone()
                            t = conn.execute("SELECT %s::text || '-' || %s::text",
                                             (f"c{n}", i)).fetchone()
                        else:
                            with conn.transaction():
                                r = conn.execute("SELECT %s::int + %s::int, pg_backend_pid()",
                                                 (a, b)).fetchone()
                                t = conn.execute("SELECT %s::text || '-' || %s::text",
                                                 (f"c{n}", i)).fetchone()
                        if r[0] != a + b or t[0] != f"c{n}-{i}":
                            errors.append(f"client {n} iteration {i}: got {r[0]}, {t[0]!r}")
                            return
                        seen.add(r[1])
                        with lock:
                            counts["checked"] += 1
                        time.sleep(random.random() * 0.004)
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                errors.append(f"client {n}: {type(e).__name__}: {e}")

        def churn(n: int):
            try:
                while not stop.is_set():
                    with psycopg2.connect(sw.dsn()) as c:  # a transaction, then close
                        with c.cursor() as cur:
                            cur.execute("SELECT pg_sleep(0.003), %s", (n,))
                    c.close()
                    with lock:
                        counts["churn"] += 1
            except Exception as e:  # noqa: BLE001
                errors.append(f"churn {n}: {type(e).__name__}: {e}")

        churners = [threading.Thread(target=churn, args=(n,)) for n in range(3)]
        users = [threading.Thread(target=user, args=(n,)) for n in range(8)]
        for t in churners + users:
            t.start()
        for t in users:
            t.join(60)
        stop.set()
        for t in churners:
            t.join(20)
        self.assertFalse(any(t.is_alive() for t in users + churners), "threads did not finish")
        self.assertEqual(errors, [], "psycopg 3 errors:\n" + "\n".join(errors[:10]))
        self.assertEqual(counts["checked"], 8 * 40)
        moved = [n for n, s in pids.items() if len(s) > 1]
        print(f"\npsycopg3: {counts['checked']} checked executions, {counts['churn']} churn "
              f"sessions, backends per client: {[len(s) for s in pids.values()]}",
              file=sys.stderr)
        self.assertTrue(moved, "no client ever moved to another server connection, so the "
                               f"test proved nothing (backend pids per client: {pids})")
        # The statements were prepared at protocol level, under pgswitch's names.
        with psycopg.connect(sw.dsn(), prepare_threshold=0, autocommit=True) as conn:
            self.assertEqual(conn.execute("SELECT %s::int + %s::int, pg_backend_pid()",
                                          (2, 3)).fetchone()[0], 5)
            with conn.transaction():
                names = [r[0] for r in conn.execute(
                    "SELECT name FROM pg_prepared_statements").fetchall()]
            self.assertTrue(names and all(n.startswith("pgsw_") for n in names),
                            f"server-side statements: {names}")

    @budget(30)
    def test_03b_psycopg3_statement_cache_rotation(self):
        # psycopg 3.1 with libpq < 17 evicts a statement from its cache (prepared_max) with an
        # SQL "DEALLOCATE _pg3_N"; a ROLLBACK makes it send "DEALLOCATE ALL".
        sw = self.start_switch(pool_size=2, workers=1)
        with psycopg.connect(sw.dsn(), prepare_threshold=0, autocommit=True) as conn:
            conn.prepared_max = 2
            for rnd in range(3):
                for k in range(5):
                    got = conn.execute(f"SELECT %s::int + {k}", (rnd,)).fetchone()[0]
                    self.assertEqual(got, rnd + k)
            conn.autocommit = False
            conn.execute("SELECT %s::int", (1,))
            conn.rollback()
            for k in range(3):
                self.assertEqual(conn.execute(f"SELECT %s::int + {k}", (10,)).fetchone()[0],
                                 10 + k)
            conn.commit()

    @budget(30)
    def test_03c_prepared_statements_in_failed_batches(self):
        # PostgreSQL skips everything after an error up to Sync: a Close or Parse that was
        # skipped did not happen. pool_size 1 keeps the client on one server connection, and
        # max_prepared_statements 1 makes pgswitch evict (Close) on the server inside the
        # batch that fails.
        sw = self.start_switch(pool_size=1, workers=1, pool_toml="max_prepared_statements = 1")
        w = PgWire(port=sw.port, timeout=10)
        self.addCleanup(w.close)
        w.startup("app", "appdb", "app")
        # random() keeps PostgreSQL from folding 10 / 0 at Bind: the error comes at Execute.
        s1 = "SELECT 10 / ($1::int + (random() * 0)::int)"
        self.assertEqual(run_batch(w, parse_msg("s1", s1), sync_msg()), ["1", "Z"])
        # Division by zero, then a new statement whose Parse (and pgswitch's eviction of s1
        # before it) the server skips.
        self.assertEqual(run_batch(w, bind_msg("s1", "0"), execute_msg(),
                                   parse_msg("s2", "SELECT 2"), bind_msg("s2"), execute_msg(),
                                   sync_msg()),
                         ["2", ("E", "22012"), "Z"])
        self.assertEqual(run_batch(w, bind_msg("s1", "5"), execute_msg(), sync_msg()),
                         ["2", ("D", "2"), "C", "Z"],
                         "s1 must still work after a batch whose eviction was skipped")
        self.assertEqual(run_batch(w, bind_msg("s2"), execute_msg(), sync_msg()),
                         [("E", "26000"), "Z"], "s2 was never prepared")
        # A Close skipped after an error: s1 still exists, as in PostgreSQL.
        self.assertEqual(run_batch(w, bind_msg("s1", "0"), execute_msg(),
                                   close_stmt_msg("s1"), sync_msg()),
                         ["2", ("E", "22012"), "Z"])
        self.assertEqual(run_batch(w, bind_msg("s1", "2"), execute_msg(), sync_msg()),
                         ["2", ("D", "5"), "C", "Z"], "a skipped Close closed s1")
        # Close + re-Parse of the same name, both skipped: the old s1 stays.
        self.assertEqual(run_batch(w, bind_msg("s1", "0"), execute_msg(),
                                   close_stmt_msg("s1"), parse_msg("s1", "SELECT 'new'"),
                                   sync_msg()),
                         ["2", ("E", "22012"), "Z"])
        self.assertEqual(run_batch(w, bind_msg("s1", "1"), execute_msg(), sync_msg()),
                         ["2", ("D", "10"), "C", "Z"], "a skipped Close+Parse replaced s1")
        # Close + re-Parse that succeed: the new text is used.
        self.assertEqual(run_batch(w, close_stmt_msg("s1"), parse_msg("s1", "SELECT 'new'"),
                                   bind_msg("s1"), execute_msg(), sync_msg()),
                         ["3", "1", "2", ("D", "new"), "C", "Z"])
        self.assertEqual(w.query("SELECT 1"), [("1",)])

    @budget(30)
    def test_03e_result_type_change_on_a_copy_prepared_after_it(self):
        # PostgreSQL holds a prepared statement to the result columns it had when prepared: after
        # ALTER TABLE changes them, Bind and Describe answer 0A000 until it is prepared again.
        # Through pgswitch the client's statement may be prepared afresh on a server after the
        # ALTER; that copy must answer as the old one would (pgjdbc and asyncpg cache the
        # columns and would read rows of another shape). max_prepared_statements 1 evicts the
        # copy whenever another statement is used, so every use below prepares it again.
        sw = self.start_switch(pool_size=1, workers=1, pool_toml="max_prepared_statements = 1")
        d = self.direct()
        d.cursor().execute("DROP TABLE IF EXISTS shape_t; CREATE TABLE shape_t (a int);"
                           "INSERT INTO shape_t VALUES (1); GRANT ALL ON shape_t TO app")
        w = PgWire(port=sw.port, timeout=10)
        self.addCleanup(w.close)
        w.startup("app", "appdb", "app")
        self.assertEqual(run_batch(w, parse_msg("s", "SELECT * FROM shape_t"), describe_stmt_msg("s"),
                                   sync_msg()), ["1", "t", "T", "Z"])
        self.assertEqual(run_batch(w, parse_msg("u", "SELECT 2"), bind_msg("u"), execute_msg(),
                                   sync_msg()), ["1", "2", ("D", "2"), "C", "Z"])
        # s prepared again (u evicted it), same columns: it runs.
        self.assertEqual(run_batch(w, bind_msg("s"), execute_msg(), sync_msg()),
                         ["2", ("D", "1"), "C", "Z"])
        self.assertEqual(run_batch(w, bind_msg("u"), execute_msg(), sync_msg()),
                         ["2", ("D", "2"), "C", "Z"])
        d.cursor().execute("ALTER TABLE shape_t ADD COLUMN b text DEFAULT 'x'")
        # s prepared afresh after the ALTER: PostgreSQL's error, with its routine (pgjdbc
        # re-prepares on it).
        w.send(bind_msg("s") + execute_msg() + sync_msg())
        t, p = w.read_msg()
        self.assertEqual(t, b"E")
        fields = parse_error_fields(p)
        self.assertEqual((fields.get("C"), fields.get("M"), fields.get("R")),
                         ("0A000", "cached plan must not change result type",
                          "RevalidateCachedQuery"))
        self.assertEqual(w.read_msg()[0], b"Z")
        self.assertEqual(run_batch(w, describe_stmt_msg("s"), sync_msg()), ["t", ("E", "0A000"), "Z"])
        # In the middle of a batch, after u evicted s again: the server skips the rest.
        self.assertEqual(run_batch(w, bind_msg("u"), execute_msg(), bind_msg("s"), execute_msg(),
                                   bind_msg("u"), execute_msg(), sync_msg()),
                         ["2", ("D", "2"), "C", ("E", "0A000"), "Z"])
        # Inside a transaction the error aborts it, as on PostgreSQL.
        self.assertEqual(run_batch(w, msg(b"Q", b"BEGIN\0")), ["C", "Z"])
        self.assertEqual(run_batch(w, bind_msg("s"), execute_msg(), sync_msg()),
                         [("E", "0A000"), "Z"])
        self.assertEqual(run_batch(w, bind_msg("u"), execute_msg(), sync_msg()),
                         [("E", "25P02"), "Z"])
        self.assertEqual(run_batch(w, msg(b"Q", b"ROLLBACK\0")), ["C", "Z"])
        # Prepared again under its name, s has the new columns.
        self.assertEqual(run_batch(w, close_stmt_msg("s"), parse_msg("s", "SELECT * FROM shape_t"),
                                   describe_stmt_msg("s"), bind_msg("s"), execute_msg(), sync_msg()),
                         ["3", "1", "t", "T", "2", ("D", "1"), "C", "Z"])
        self.assertEqual(run_batch(w, bind_msg("u"), execute_msg(), bind_msg("s"), execute_msg(),
                                   sync_msg()),
                         ["2", ("D", "2"), "C", "2", ("D", "1"), "C", "Z"])
        # A statement without a result (NoData) keeps running after eviction.
        self.assertEqual(run_batch(w, parse_msg("i", "INSERT INTO shape_t (a) VALUES (7)"),
                                   describe_stmt_msg("i"), sync_msg()), ["1", "t", "n", "Z"])
        self.assertEqual(run_batch(w, bind_msg("u"), execute_msg(), bind_msg("i"), execute_msg(),
                                   sync_msg()),
                         ["2", ("D", "2"), "C", "2", "C", "Z"])
        self.assertEqual(w.query("SELECT count(*) FROM shape_t WHERE a = 7"), [("1",)])

        # asyncpg caches the columns of its statements and, outside a transaction, prepares
        # again and retries once on PostgreSQL's 0A000: the application sees no error and the
        # new columns, as it does on PostgreSQL.
        async def run_asyncpg():
            conn = await asyncpg.connect(host=HOST, port=sw.port, user="app", password="app",
                                         database="appdb")
            try:
                first = await conn.fetch("SELECT * FROM shape_t WHERE a = 1")
                await conn.fetch("SELECT 2")  # evicts the statement above on the server
                d.cursor().execute("ALTER TABLE shape_t ADD COLUMN c int DEFAULT 3")
                second = await conn.fetch("SELECT * FROM shape_t WHERE a = 1")
                return [tuple(r) for r in first], [tuple(r) for r in second]
            finally:
                await conn.close()
        first, second = asyncio.run(asyncio.wait_for(run_asyncpg(), 20))
        self.assertEqual((first, second), ([(1, "x")], [(1, "x", 3)]))

    @budget(40)
    def test_03d_psycopg3_pipeline_with_small_statement_cache(self):
        # More statements than max_prepared_statements: pgswitch evicts (Close) and prepares
        # again on the server inside pipelined batches, also around an error in a pipeline.
        sw = self.start_switch(pool_size=2, workers=1, pool_toml="max_prepared_statements = 2")
        errors: list[str] = []
        # psycopg logs a warning when a pipeline ends with the error we provoke on purpose.
        log = logging.getLogger("psycopg")
        self.addCleanup(log.setLevel, log.level)
        log.setLevel(logging.ERROR)

        def client(n: int):
            try:
                with psycopg.connect(sw.dsn(), prepare_threshold=0, autocommit=True) as conn:
                    for rnd in range(8):
                        with conn.pipeline():
                            curs = [conn.execute(f"SELECT %s::int * {k} + {n}", (rnd,))
                                    for k in range(5)]
                        got = [c.fetchone()[0] for c in curs]
                        if got != [rnd * k + n for k in range(5)]:
                            errors.append(f"client {n} round {rnd}: {got}")
                            return
                        if rnd % 3 == 1:
                            try:
                                with conn.pipeline():
                                    conn.execute("SELECT %s::int * 1 + 0", (1,))
                                    conn.execute("SELECT 1 / %s::int", (0,))
                                    conn.execute("SELECT %s::int * 2 + 0", (1,))
                                errors.append(f"client {n}: no division-by-zero error")
                                return
                            except psycopg.errors.DivisionByZero:
                                pass
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                errors.append(f"client {n}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertFalse(any(t.is_alive() for t in threads), "clients did not finish")
        self.assertEqual(errors, [], "\n".join(errors[:10]))

    # -- 4. asyncpg ----------------------------------------------------------------------------
    @budget(60)
    def test_04_asyncpg_transaction_mode(self):
        sw = self.start_switch(pool_size=3, workers=1)

        async def go():
            kw = dict(host=HOST, port=sw.port, user="app", password="app", database="appdb")
            conn = await asyncpg.connect(**kw, timeout=10)
            try:
                await conn.execute("DROP TABLE IF EXISTS apg_items")
                await conn.execute("CREATE TABLE apg_items(id int PRIMARY KEY, name text, "
                                   "price numeric)")
                stmt = await conn.prepare("SELECT $1::int * 2 AS d, $2::text || '!' AS t")
                for i in range(20):
                    row = await stmt.fetchrow(i, f"s{i}")
                    assert row["d"] == 2 * i and row["t"] == f"s{i}!", row
                rows = await conn.fetch("SELECT g, g * $1::int FROM generate_series(1, $2) g",
                                        3, 50)
                assert [tuple(r) for r in rows] == [(g, 3 * g) for g in range(1, 51)], rows[:3]
                await conn.executemany("INSERT INTO apg_items VALUES ($1, $2, $3)",
                                       [(i, f"item{i}", Decimal(i) * Decimal("1.5"))
                                        for i in range(500)])
                async with conn.transaction():
                    await conn.executemany("UPDATE apg_items SET price = price + $2 "
                                           "WHERE id = $1", [(i, 1) for i in range(0, 500, 5)])
                total = await conn.fetchval("SELECT sum(price) FROM apg_items")
                pool = await asyncpg.create_pool(**kw, min_size=4, max_size=8)
                try:
                    async def task(n):
                        async with pool.acquire() as c:
                            r = await c.fetchrow("SELECT name, price FROM apg_items "
                                                 "WHERE id = $1", n)
                            v = await c.fetchval("SELECT $1::int + $2::int", n, 1000)
                            async with c.transaction():
                                pid = await c.fetchval("SELECT pg_backend_pid()")
                                cnt = await c.fetchval("SELECT count(*) FROM apg_items "
                                                       "WHERE id < $1", n)
                            return n, r["name"], r["price"], v, cnt, pid
                    results = await asyncio.gather(*(task(n) for n in range(200)))
                finally:
                    await pool.close()
                # The statement prepared at the start still works after all that churn.
                row = await stmt.fetchrow(21, "end")
                return total, results, (row["d"], row["t"])
            finally:
                await conn.close()

        total, results, last = asyncio.run(go())
        expect_total = sum(i * 1.5 for i in range(500)) + 100
        self.assertEqual(float(total), expect_total, "executemany rows or updates missing")
        for n, name, price, v, cnt, _ in results:
            self.assertEqual((name, float(price), v, cnt),
                             (f"item{n}", n * 1.5 + (1 if n % 5 == 0 else 0), n + 1000, n),
                             f"pool task {n}")
        pids = {r[5] for r in results}
        self.assertGreater(len(pids), 1, "pool tasks never ran on more than one server")
        self.assertEqual(last, (42, "end!"))

    # -- 5. cancel ------------------------------------------------------------------------------
    def _cancel_sleep(self, sw, in_txn: bool):
        conn = self.connect2(sw, autocommit=not in_txn)
        probe = self.direct()
        result = {}

        def sleeper():
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_sleep(30)")
                result["error"] = "pg_sleep(30) returned without being cancelled"
            except psycopg2.Error as e:
                result["t"] = time.monotonic()
                result["pgcode"] = e.pgcode
                result["msg"] = str(e)

        th = threading.Thread(target=sleeper)
        th.start()
        try:
            self.wait_query_running(probe, "SELECT pg_sleep(30)")
            t0 = time.monotonic()
            conn.cancel()
            th.join(5)
        finally:
            if th.is_alive():
                probe.cursor().execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                                       "WHERE query = 'SELECT pg_sleep(30)'")
                th.join(10)
        self.assertNotIn("error", result, result.get("error"))
        self.assertEqual(result.get("pgcode"), "57014", f"not a query_canceled error: {result}")
        self.assertLess(result["t"] - t0, 5.0, "cancel took longer than 5 s")
        if in_txn:
            conn.rollback()
        self.assertEqual(self.one(conn, "SELECT 41 + 1"), 42, "connection unusable after cancel")
        if in_txn:
            conn.commit()

    @budget(40)
    def test_05a_cancel_session_mode(self):
        sw = self.start_switch(pool_mode="session", pool_size=4)
        self._cancel_sleep(sw, in_txn=False)
        self._cancel_sleep(sw, in_txn=True)

    @budget(40)
    def test_05b_cancel_transaction_mode(self):
        sw = self.start_switch(pool_mode="transaction", pool_size=2)
        busy = self.steal_server(sw)  # the cancelled client is not on the first server
        self._cancel_sleep(sw, in_txn=False)
        self._cancel_sleep(sw, in_txn=True)
        busy.rollback()

    @budget(40)
    def test_05c_unknown_cancel_key_is_ignored(self):
        sw = self.start_switch(pool_mode="transaction", pool_size=2, workers=2,
                               server_toml="worker_fill = 0")
        conn = self.connect2(sw)
        my_pid = conn.get_backend_pid()
        done = {}

        def sleeper():
            try:
                t = time.monotonic()
                self.one(conn, "SELECT pg_sleep(1.5)")
                done["elapsed"] = time.monotonic() - t
            except psycopg2.Error as e:
                done["error"] = f"{e.pgcode}: {e}"

        th = threading.Thread(target=sleeper)
        th.start()
        self.wait_query_running(self.direct(), "SELECT pg_sleep(1.5)")
        rng = random.Random(3)
        keys = [(rng.randint(1, 2**31 - 1), rng.randint(-2**31, 2**31 - 1)) for _ in range(20)]
        keys.append((my_pid, rng.randint(-2**31, 2**31 - 1)))  # right pid, wrong key
        for pid, key in keys:
            with socket.create_connection((HOST, sw.port), timeout=5) as s:
                s.sendall(struct.pack("!IIii", 16, CANCEL_REQUEST_CODE, pid, key))
                s.settimeout(5)
                self.assertEqual(s.recv(100), b"", "pgswitch answered a CancelRequest")
        th.join(10)
        self.assertNotIn("error", done, "a CancelRequest with an unknown key cancelled a query")
        self.assertGreaterEqual(done.get("elapsed", 0), 1.4)
        self.assertEqual(self.one(conn, "SELECT 7"), 7)
        self.assertEqual(self.one(self.connect2(sw), "SELECT 8"), 8)

    # -- 6. pool exhausted, too many clients ----------------------------------------------------
    @budget(40)
    def test_06a_query_wait_timeout_gives_clean_error(self):
        timeout_ms = 1500
        sw = self.start_switch(pool_size=1, workers=1,
                               pool_toml=f"query_wait_timeout_ms = {timeout_ms}")
        holder = self.connect2(sw, autocommit=False)
        waiter = PgWire(port=sw.port, timeout=15)
        self.addCleanup(waiter.sock.close)
        waiter.startup("app", "appdb", "app")  # logs in while the server is free
        self.assertEqual(waiter.query("SELECT 1"), [("1",)])
        self.one(holder, "SELECT 1")  # BEGIN ...: holds the only server connection
        t0 = time.monotonic()
        waiter.send(query_msg("SELECT 2"))
        try:
            t, payload = waiter.read_msg()
        except (ConnectionError, OSError) as e:
            self.fail(f"socket dropped without an ErrorResponse after "
                      f"{time.monotonic() - t0:.1f}s: {e}")
        elapsed = time.monotonic() - t0
        self.assertEqual(t, b"E", f"expected ErrorResponse, got {t!r} {payload[:80]!r}")
        fields = parse_error_fields(payload)
        print(f"\nquery_wait_timeout {timeout_ms} ms: {fields.get('S')} {fields.get('C')} "
              f"{fields.get('M')!r} after {elapsed:.2f}s", file=sys.stderr)
        self.assertEqual(fields.get("C"), "53300", fields)
        self.assertIn("query_wait_timeout", fields.get("M", ""), fields)
        self.assertGreaterEqual(elapsed, timeout_ms / 1000 - 0.1, "error came before the timeout")
        self.assertLess(elapsed, timeout_ms / 1000 + 3.0, "error came long after the timeout")
        self.assertEqual(fields.get("S"), "ERROR", "a logged-in client keeps its connection")
        t, payload = waiter.read_msg()
        self.assertEqual(t, b"Z", "ReadyForQuery follows the error")
        # The holder is unaffected, and once it commits the pool serves new clients again.
        self.assertEqual(self.one(holder, "SELECT 3"), 3)
        holder.commit()
        self.assertEqual(waiter.query("SELECT 5"), [("5",)], "the waiter's connection works")
        self.assertEqual(self.one(self.connect2(sw), "SELECT 4"), 4)

    def show(self, sw, command) -> list[dict]:
        conn = psycopg2.connect(sw.dsn(user="admin", db="pgswitch"))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(command)
                names = [d[0] for d in cur.description]
                return [dict(zip(names, r)) for r in cur.fetchall()]
        finally:
            conn.close()

    def app_backends(self) -> int:
        """Server connections of user app on the primary right now."""
        with self.direct().cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' "
                        "AND backend_type = 'client backend'")
            return cur.fetchone()[0]

    @budget(60)
    def test_06c_pool_size_is_a_total_over_workers(self):
        """pool_size counts over all workers, however it divides: 3 over 2 workers opens 3,
        not 2 + 2, and 1 over 2 workers opens 1, which serves clients of both workers (the
        worker that has it gives it up when the other one is short)."""
        for size in (3, 1):
            with self.subTest(pool_size=size):
                sw = self.start_switch(pool_size=size, workers=2, server_toml="worker_fill = 0",
                                       pool_toml="query_wait_timeout_ms = 10000")
                # Sixteen clients (worker_fill = 0 spreads them over both workers), each holding a
                # transaction open for a moment, all at once.
                conns = [self.connect2(sw, autocommit=False) for _ in range(16)]
                peak = 0
                stop = threading.Event()

                def sample():
                    nonlocal peak
                    while not stop.is_set():
                        peak = max(peak, self.app_backends())
                        time.sleep(0.02)

                sampler = threading.Thread(target=sample)
                sampler.start()
                errors = []

                def work(c):
                    try:
                        for _ in range(3):
                            with c.cursor() as cur:
                                cur.execute("SELECT pg_sleep(0.05)")
                            c.commit()
                    except Exception as e:  # noqa: BLE001
                        errors.append(repr(e))

                threads = [threading.Thread(target=work, args=(c,)) for c in conns]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
                stop.set()
                sampler.join(5)
                self.assertEqual(errors, [])
                self.assertLessEqual(peak, size, f"{peak} server connections for pool_size {size}")
                rows = {r["database"]: r for r in self.show(sw, "SHOW POOLS")}
                self.assertLessEqual(int(rows["appdb"]["sv_total"]), size)
                for c in conns:
                    c.close()
                sw.stop()

    @budget(60)
    def test_06d_workers_do_not_trade_connections(self):
        """More clients than pool_size, over two workers, all busy: each worker serves its
        sessions with the connections it has (they come free within a transaction) instead
        of taking one from the other worker each time it is short, which closed a connection
        there and opened a new one here, a server login each (issue 14)."""
        size = 4
        sw = self.start_switch(pool_size=size, workers=2, server_toml="worker_fill = 0",
                               pool_toml="query_wait_timeout_ms = 10000")
        conns = [self.connect2(sw) for _ in range(16)]
        errors = []

        def work(c, seconds):
            try:
                deadline = time.monotonic() + seconds
                with c.cursor() as cur:
                    while time.monotonic() < deadline:
                        cur.execute("SELECT 1")
                        cur.fetchone()
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        def totals():
            return {r["name"]: int(r["value"]) for r in self.show(sw, "SHOW TOTALS")}

        # Counted in the middle of a 4.5 s run: at its start and end clients start and stop
        # at different times, one worker's connections sit idle while the other's sessions
        # wait, and the budget moving there is what it is for. In between, with every
        # session busy, connections stay where they are: the bar leaves room for a move or
        # two, not for trading (which opened 6 to 12 in this window before a worker that gave
        # a connection away stopped taking its unit straight back). A slow build, as under
        # ASan, stretches the edges, which is why they are left out.
        threads = [threading.Thread(target=work, args=(c, 4.5)) for c in conns]
        for t in threads:
            t.start()
        time.sleep(1.0)  # the pools grow to the total (and workers may rebalance once)
        before = totals()
        time.sleep(2.5)
        after = totals()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])
        opened = after["servers_opened"] - before["servers_opened"]
        print(f"\n16 busy clients, pool_size {size} over 2 workers: {opened} server "
              f"connections opened in 2.5 s", file=sys.stderr)
        self.assertLessEqual(opened, 2, "the workers traded server connections")

    @budget(40)
    def test_06e_worker_fill_packs_clients_onto_the_first_workers(self):
        """worker_fill = 4 over 2 workers: the first four clients are served by worker 0 and
        the next two by worker 1 (worker 0, which alone accepts, passes them on, counted in
        clients_handed_over); with both full, each goes to the worker with fewer clients.
        worker_fill = 0 spreads them evenly from the first."""
        from collections import Counter
        sw = self.start_switch(pool_size=2, workers=2, server_toml="worker_fill = 4")
        conns = []
        for _ in range(6):  # one after another: each is registered before the next arrives
            conns.append(self.connect2(sw))
            self.assertEqual(self.one(conns[-1], "SELECT 1"), 1)

        def app_workers():
            return Counter(int(r["worker"]) for r in self.show(sw, "SHOW CLIENTS")
                           if r["user"] == "app")

        self.assertEqual(app_workers(), Counter({0: 4, 1: 2}))
        totals = {r["name"]: int(r["value"]) for r in self.show(sw, "SHOW TOTALS")}
        self.assertIn("clients_handed_over", totals)
        self.assertGreaterEqual(totals["clients_handed_over"], 2)
        self.assertLessEqual(totals["clients_handed_over"], 2 + 3)  # and the console's logins
        # Both workers hold four: the next ones go to the one with fewer, so both end near 9.
        more = [self.connect2(sw) for _ in range(12)]
        for c in more:
            self.assertEqual(self.one(c, "SELECT 2"), 2)
        per = app_workers()
        self.assertEqual(sum(per.values()), 18)
        self.assertLessEqual(abs(per[0] - per[1]), 2, f"uneven past worker_fill: {per}")
        # Clients that leave make room: once all are gone, the next one is worker 0's again.
        for c in conns + more:
            c.close()
        deadline = time.monotonic() + 5
        while sum(app_workers().values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        late = self.connect2(sw)
        self.assertEqual(self.one(late, "SELECT 3"), 3)
        self.assertEqual(app_workers(), Counter({0: 1}))

        sw2 = self.start_switch(pool_size=2, workers=2, server_toml="worker_fill = 0")
        spread = [self.connect2(sw2) for _ in range(16)]
        for c in spread:
            self.assertEqual(self.one(c, "SELECT 4"), 4)
        per = Counter(int(r["worker"]) for r in self.show(sw2, "SHOW CLIENTS")
                      if r["user"] == "app")
        self.assertLessEqual(abs(per[0] - per[1]), 2, f"16 clients not spread evenly: {per}")
        t2 = {r["name"]: int(r["value"]) for r in self.show(sw2, "SHOW TOTALS")}
        self.assertGreaterEqual(t2["clients_handed_over"], 6)

    @budget(40)
    def test_06f_min_pool_size_is_a_total_when_one_worker_has_the_clients(self):
        """min_pool_size divides over the workers that have a pool of the key: with
        worker_fill giving every client to worker 0, worker 0 keeps all 3 warm (its share of
        two workers would be 2); once worker 1 has a pool too, the two keep at least 3."""
        sw = self.start_switch(pool_size=6, workers=2,
                               server_toml="worker_fill = 2", pool_toml="min_pool_size = 3")
        probe = self.direct()

        def settles_at(n):
            deadline = time.monotonic() + 6  # the pools' janitor runs once a second
            while self.app_server_count(probe) != n and time.monotonic() < deadline:
                time.sleep(0.1)
            return self.app_server_count(probe)

        first = self.connect2(sw)
        self.assertEqual(self.one(first, "SELECT 1"), 1)
        self.assertEqual(settles_at(3), 3, "min_pool_size 3 with every client on worker 0")
        second = self.connect2(sw)
        third = self.connect2(sw)  # worker 0 holds two (worker_fill): this one is worker 1's
        for c in (second, third):
            self.assertEqual(self.one(c, "SELECT 2"), 2)
        workers = {int(r["worker"]) for r in self.show(sw, "SHOW CLIENTS") if r["user"] == "app"}
        self.assertEqual(workers, {0, 1})
        # Worker 1 opened one to serve its client; worker 0 keeps its three until they idle
        # out: min_pool_size is a floor, pool_size the ceiling.
        time.sleep(2.5)
        self.assertGreaterEqual(self.app_server_count(probe), 3)
        self.assertLessEqual(self.app_server_count(probe), 6)

    @budget(30)
    def test_06b_max_client_conn(self):
        sw = self.start_switch(pool_size=2, workers=1, server_toml="max_client_conn = 3")
        conns = [self.connect2(sw) for _ in range(3)]
        with PgWire(port=sw.port, timeout=10) as w:
            with self.assertRaises(PgWireError) as cm:
                w.startup("app", "appdb", "app")
        self.assertEqual(cm.exception.sqlstate, "53300", cm.exception.fields)
        with self.assertRaises(psycopg2.OperationalError) as cm2:
            psycopg2.connect(sw.dsn())
        self.assertIn("too many clients", str(cm2.exception))
        for c in conns:
            self.assertEqual(self.one(c, "SELECT 1"), 1, "existing clients must keep working")
        conns[0].close()
        deadline = time.monotonic() + 3
        while True:
            try:
                c = psycopg2.connect(sw.dsn())
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.addCleanup(c.close)
        self.assertEqual(self.one(c, "SELECT 5"), 5)

    @budget(30)
    def test_06c_min_pool_size_and_reserve_pool(self):
        sw = self.start_switch(pool_size=2, workers=1,
                               pool_toml="min_pool_size = 2\nreserve_pool_size = 1\n"
                                         "reserve_pool_timeout_ms = 500\n"
                                         "query_wait_timeout_ms = 10000")
        probe = self.direct()
        self.assertEqual(self.one(self.connect2(sw), "SELECT 1"), 1)  # first use of the pool
        deadline = time.monotonic() + 4
        while self.app_server_count(probe) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.app_server_count(probe), 2, "min_pool_size 2 was not pre-warmed")
        holders = [self.connect2(sw, autocommit=False) for _ in range(2)]
        for h in holders:
            self.one(h, "SELECT 1")  # both pool connections are in a transaction now
        t0 = time.monotonic()
        self.assertEqual(self.one(self.connect2(sw), "SELECT 6"), 6)
        waited = time.monotonic() - t0
        self.assertGreaterEqual(waited, 0.4, "served before reserve_pool_timeout")
        self.assertLess(waited, 3.0, "the reserve connection was not used")
        self.assertEqual(self.app_server_count(probe), 3, "pool_size 2 + reserve 1")
        for h in holders:
            h.rollback()

    # -- 7. session state in transaction mode ---------------------------------------------------
    @budget(40)
    def test_07a_reported_settings_follow_the_client(self):
        sw = self.start_switch(pool_size=2, workers=1)
        defaults = self.direct(user="app")
        d_tz = self.one(defaults, "SHOW TimeZone")
        d_ds = self.one(defaults, "SHOW DateStyle")
        x = self.connect2(sw)
        x.cursor().execute("SET application_name = 'client_x'")
        x.cursor().execute("SET TimeZone = 'Asia/Tokyo'")
        x.cursor().execute("SET DateStyle = 'SQL, DMY'")
        pid1 = self.one(x, "SELECT pg_backend_pid()")
        # Another client takes x's server: it must see its own (default) settings there.
        y = self.steal_server(sw)
        self.assertEqual(self.one(y, "SELECT pg_backend_pid()"), pid1,
                         "the thief did not get the most recently used server")
        self.assertEqual(self.one(y, "SHOW application_name"), "")
        self.assertEqual(self.one(y, "SHOW TimeZone"), d_tz)
        self.assertEqual(self.one(y, "SHOW DateStyle"), d_ds)
        self.assertEqual(y.get_parameter_status("TimeZone"), d_tz)
        # x now runs on another server with its settings reapplied.
        with x.cursor() as cur:
            cur.execute("SELECT pg_backend_pid(), current_setting('application_name'), "
                        "current_setting('TimeZone'), current_setting('DateStyle'), "
                        "'2024-03-05'::date::text")
            pid2, app, tz, ds, date = cur.fetchone()
        self.assertNotEqual(pid2, pid1, "x was not moved to another server connection")
        self.assertEqual((app, tz, ds, date),
                         ("client_x", "Asia/Tokyo", "SQL, DMY", "05/03/2024"))
        self.assertEqual(x.get_parameter_status("application_name"), "client_x")
        self.assertEqual(x.get_parameter_status("TimeZone"), "Asia/Tokyo")
        self.assertEqual(x.get_parameter_status("DateStyle"), "SQL, DMY")
        # y commits; x keeps its settings on whatever server it lands on.
        y.commit()
        for _ in range(5):
            self.assertEqual(self.one(x, "SELECT current_setting('TimeZone')"), "Asia/Tokyo")

    def test_07h_discard_all_keeps_startup_settings(self):
        """DISCARD ALL resets a session to its defaults, which include the settings of the
        startup packet (as on PostgreSQL): the server must be brought back to them."""
        sw = self.start_switch(pool_size=1, workers=1)
        x = self.connect2(sw, options="-c statement_timeout=1001")
        self.assertEqual(self.one(x, "SELECT current_setting('statement_timeout')"), "1001ms")
        pid = self.one(x, "SELECT pg_backend_pid()")
        with x.cursor() as cur:
            cur.execute("SET search_path = pg_catalog")  # carried to other servers until...
            cur.execute("SET TimeZone = 'Asia/Tokyo'")
            cur.execute("DISCARD ALL")                   # ...the session is reset
        for _ in range(3):  # pool_size 1: the same server connection every time
            self.assertEqual(self.one(x, "SELECT pg_backend_pid()"), pid)
            with x.cursor() as cur:
                cur.execute("SELECT current_setting('statement_timeout'), "
                            "current_setting('search_path'), current_setting('TimeZone')")
                timeout, path, tz = cur.fetchone()
            self.assertEqual((timeout, path), ("1001ms", '"$user", public'))
            self.assertNotEqual(tz, "Asia/Tokyo")
            self.assertEqual(x.get_parameter_status("TimeZone"), tz)

    def _check_pins(self, sw, setup, check, what):
        """setup() runs on client x; then a thief takes x's last server. A pinned x keeps its
        server (same pid) and check(x) sees its session state."""
        x = self.connect2(sw)
        setup(x)
        pid1 = self.one(x, "SELECT pg_backend_pid()")
        thief = self.steal_server(sw)
        self.assertNotEqual(self.one(thief, "SELECT pg_backend_pid()"), pid1,
                            "another client got the pinned client's server")
        self.assertEqual(self.one(x, "SELECT pg_backend_pid()"), pid1,
                         f"not pinned after {what}: the client moved to another server")
        check(x)
        thief.rollback()
        x.close()

    @budget(40)
    def test_07b_unreported_set_follows_client(self):
        # A session SET of a setting PostgreSQL does not report is read back after its
        # transaction and re-applied wherever the client goes: no pinning needed.
        sw = self.start_switch(pool_size=2, workers=1)
        x = self.connect2(sw)
        x.cursor().execute("SET statement_timeout = '7s'")
        x.cursor().execute("SET search_path = pg_catalog, public")
        pid1 = self.one(x, "SELECT pg_backend_pid()")
        thief = self.steal_server(sw)  # takes x's last server (LIFO): x is not pinned
        self.assertEqual(self.one(thief, "SELECT pg_backend_pid()"), pid1,
                         "x kept its server: pinned instead of carrying its settings")
        self.assertEqual(self.one(thief, "SHOW statement_timeout"), "0",
                         "another client inherited the setting")
        self.assertNotEqual(self.one(x, "SELECT pg_backend_pid()"), pid1,
                            "the client was pinned instead of moving")
        self.assertEqual(self.one(x, "SHOW statement_timeout"), "7s")
        self.assertEqual(self.one(x, "SHOW search_path"), "pg_catalog, public")
        x.cursor().execute("RESET statement_timeout")
        thief.rollback()
        for _ in range(3):  # wherever x lands now, the RESET followed it
            self.assertEqual(self.one(x, "SHOW statement_timeout"), "0")
            self.assertEqual(self.one(x, "SHOW search_path"), "pg_catalog, public")
        x.close()

    @budget(40)
    def test_07c_sql_prepare_pins(self):
        sw = self.start_switch(pool_size=2, workers=1)
        self._check_pins(
            sw, lambda x: x.cursor().execute("PREPARE p7(int) AS SELECT $1 * 3"),
            lambda x: self.assertEqual(self.one(x, "EXECUTE p7(5)"), 15), "PREPARE")

    @budget(40)
    def test_07d_listen_pins_and_notifications_arrive(self):
        sw = self.start_switch(pool_size=2, workers=1)

        def check(x):
            self.direct(user="app").cursor().execute("NOTIFY chan7, 'hello'")
            deadline = time.monotonic() + 5
            while not x.notifies and time.monotonic() < deadline:
                self.one(x, "SELECT 1")
                time.sleep(0.05)
            self.assertTrue(x.notifies, "the NOTIFY never reached the listening client")
            self.assertEqual((x.notifies[0].channel, x.notifies[0].payload), ("chan7", "hello"))
        self._check_pins(sw, lambda x: x.cursor().execute("LISTEN chan7"), check, "LISTEN")

    @budget(40)
    def test_07e_with_hold_cursor_pins(self):
        sw = self.start_switch(pool_size=2, workers=1)

        def setup(x):
            x.autocommit = False
            x.cursor().execute("DECLARE c7 CURSOR WITH HOLD FOR SELECT generate_series(1, 10)")
            x.commit()
            x.autocommit = True

        def check(x):
            with x.cursor() as cur:
                cur.execute("FETCH 3 FROM c7")
                self.assertEqual(cur.fetchall(), [(1,), (2,), (3,)])
        self._check_pins(sw, setup, check, "CURSOR")

    @budget(40)
    def test_07f_temp_table_pins(self):
        sw = self.start_switch(pool_size=2, workers=1)
        self._check_pins(
            sw, lambda x: x.cursor().execute("CREATE TEMP TABLE tt7 AS SELECT 1 AS a"),
            lambda x: self.assertEqual(self.one(x, "SELECT a FROM tt7"), 1), "temp")

    @budget(40)
    def test_07g_session_advisory_lock_pins(self):
        sw = self.start_switch(pool_size=2, workers=1)
        self._check_pins(
            sw, lambda x: self.one(x, "SELECT pg_advisory_lock(77)"),
            lambda x: self.assertTrue(self.one(x, "SELECT pg_advisory_unlock(77)")), "advisory")

    # -- 8. session mode: server_reset_query ----------------------------------------------------
    @budget(40)
    def test_08a_session_mode_reset_between_clients(self):
        sw = self.start_switch(pool_mode="session", pool_size=1, workers=1)
        a = self.connect2(sw)
        with a.cursor() as cur:
            cur.execute("CREATE TEMP TABLE secret8 AS SELECT 'a-data'::text AS v")
            cur.execute("SET statement_timeout = '9s'")
            cur.execute("SET application_name = 'client_a'")
            cur.execute("PREPARE q8 AS SELECT 1")
            cur.execute("SELECT pg_advisory_lock(88)")
            cur.execute("LISTEN chan8")
        pid_a = self.one(a, "SELECT pg_backend_pid()")
        a.close()
        b = self.connect2(sw)
        with b.cursor() as cur:
            cur.execute("SELECT pg_backend_pid(), to_regclass('secret8'), "
                        "current_setting('statement_timeout'), "
                        "current_setting('application_name'), "
                        "(SELECT count(*) FROM pg_prepared_statements), "
                        "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'), "
                        "(SELECT count(*) FROM pg_listening_channels())")
            pid_b, table, st, app, prepared, locks, channels = cur.fetchone()
        self.assertEqual(pid_b, pid_a, "pool_size 1: the server connection should be reused")
        self.assertIsNone(table, "the previous client's temp table is visible")
        self.assertEqual(st, "0", "the previous client's SET statement_timeout leaked")
        self.assertEqual(app, "", "the previous client's application_name leaked")
        self.assertEqual(b.get_parameter_status("application_name"), "")
        self.assertEqual(prepared, 0, "the previous client's prepared statement leaked")
        self.assertEqual(locks, 0, "the previous client's advisory lock leaked")
        self.assertEqual(channels, 0, "the previous client's LISTEN leaked")

    @budget(40)
    def test_08b_transaction_mode_pinned_client_reset_on_leave(self):
        sw = self.start_switch(pool_mode="transaction", pool_size=1, workers=1)
        a = self.connect2(sw)
        with a.cursor() as cur:
            cur.execute("SET statement_timeout = '9s'")  # pins
            cur.execute("PREPARE q8b AS SELECT 1")
        pid_a = self.one(a, "SELECT pg_backend_pid()")
        a.close()
        b = self.connect2(sw)
        with b.cursor() as cur:
            cur.execute("SELECT pg_backend_pid(), current_setting('statement_timeout'), "
                        "(SELECT count(*) FROM pg_prepared_statements)")
            pid_b, st, prepared = cur.fetchone()
        self.assertEqual(pid_b, pid_a, "pool_size 1: the server connection should be reused")
        self.assertEqual(st, "0", "a pinned client's SET leaked to the next client")
        self.assertEqual(prepared, 0, "a pinned client's PREPARE leaked to the next client")


if __name__ == "__main__":
    unittest.main(verbosity=2)
