"""Read scaling in session mode (issue 12 item 6): pgswitch in session mode with
routing.session_reads = true in front of a primary and one streaming replica. A session's
autocommit reads run on the replica (pg_is_in_recovery(), SHOW TOTALS session_reads), writes
and transactions on the session's own primary connection (the same backend pid each time), its
SETs and protocol-level prepared statements follow it to the replica, a write is seen by the
read right after it (strong consistency), a cancel reaches the replica running the read, and
session state a replica cannot share (temporary table, set_config) leaves the session on the
primary alone. Without the setting, session mode never uses the replica."""
from __future__ import annotations

import os
import sys
import threading
import time
import unittest
from contextlib import closing

import psycopg2
import psycopg2.errors

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import HOST, PgCluster, PgSwitch  # noqa: E402
from proxycase import ProxyTestCase, budget  # noqa: E402


def totals(sw: PgSwitch) -> dict:
    with closing(psycopg2.connect(sw.dsn(user="admin", db="pgswitch"))) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SHOW TOTALS")
            return {k: int(v) for k, v in cur.fetchall()}


class SessionReadsTest(ProxyTestCase):
    default_budget = 60.0

    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster(replicas=1).start()
        try:
            cls.cluster.psql(0, "CREATE SCHEMA sr; "
                                "CREATE TABLE sr.only_here (v text); "
                                "INSERT INTO sr.only_here VALUES ('from schema sr'); "
                                "CREATE TABLE items (id bigint PRIMARY KEY, v text); "
                                "GRANT ALL ON SCHEMA sr TO app; "
                                "GRANT ALL ON ALL TABLES IN SCHEMA sr TO app; "
                                "GRANT ALL ON ALL TABLES IN SCHEMA public TO app", db="appdb")
            cls.cluster.wait_replicated()
            cls.sw = PgSwitch(cls.cluster, pool_mode="session", health_period_ms=200,
                              extra_toml="[routing]\nsession_reads = true\n")
        except BaseException:
            cls.cluster.stop()
            raise
        cls.next_id = 0

    @classmethod
    def tearDownClass(cls):
        try:
            cls.sw.stop()
        finally:
            cls.cluster.stop()

    def setUp(self):
        super().setUp()
        # A test's reads must not wait for an earlier test's writes (strong consistency would
        # send them to the primary while the replica is behind).
        self.cluster.wait_replicated()

    def connect(self, sw: PgSwitch | None = None):
        conn = psycopg2.connect((sw or self.sw).dsn())
        conn.autocommit = True
        return conn

    def wait_reading_replica(self, cur, timeout: float = 10) -> None:
        """Until a read lands on the replica: after an earlier test's writes, strong
        consistency keeps reads on the primary until a health check (or the replica itself)
        shows it has replayed them."""
        deadline = time.monotonic() + timeout
        while True:
            cur.execute("SELECT pg_is_in_recovery()")
            if cur.fetchone()[0]:
                return
            self.assertLess(time.monotonic(), deadline, "reads never reached the replica")
            time.sleep(0.1)

    def new_id(self) -> int:
        type(self).next_id += 1
        return self.next_id

    def test_reads_go_to_the_replica(self):
        before = totals(self.sw)["session_reads"]
        with closing(self.connect()) as conn, conn.cursor() as cur:
            self.wait_reading_replica(cur)
            for _ in range(5):
                cur.execute("SELECT pg_is_in_recovery()")
                self.assertTrue(cur.fetchone()[0], "a session-mode read ran on the primary")
        self.assertGreaterEqual(totals(self.sw)["session_reads"] - before, 5)

    def test_writes_and_transactions_use_the_sessions_own_primary_connection(self):
        with closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO items VALUES (%s, 'w') RETURNING pg_backend_pid()",
                        (self.new_id(),))
            pid = cur.fetchone()[0]
            self.wait_reading_replica(cur)
            conn.autocommit = False
            # A transaction with a write: everything in it, before and after the write, runs
            # on the primary, on the session's own server connection.
            cur.execute("SELECT pg_is_in_recovery(), pg_backend_pid()")
            self.assertEqual(cur.fetchone(), (False, pid))
            cur.execute("INSERT INTO items VALUES (%s, 'in txn')", (self.new_id(),))
            cur.execute("SELECT pg_is_in_recovery(), pg_backend_pid()")
            self.assertEqual(cur.fetchone(), (False, pid))
            conn.commit()
            conn.autocommit = True
            self.wait_reading_replica(cur)
            cur.execute("UPDATE items SET v = 'u' WHERE id = %s RETURNING pg_backend_pid()",
                        (self.next_id,))
            self.assertEqual(cur.fetchone()[0], pid)

    def test_a_read_right_after_a_write_sees_it(self):
        self.cluster.set_conf(1, "recovery_min_apply_delay", "300ms")
        try:
            time.sleep(1.0)
            with closing(self.connect()) as conn, conn.cursor() as cur:
                for _ in range(30):
                    i = self.new_id()
                    cur.execute("INSERT INTO items VALUES (%s, 'ryw')", (i,))
                    cur.execute("SELECT v FROM items WHERE id = %s", (i,))
                    self.assertEqual(cur.fetchall(), [("ryw",)],
                                     "the session's read missed its own committed write")
        finally:
            self.cluster.set_conf(1, "recovery_min_apply_delay", None)

    def test_set_follows_the_session_to_the_replica(self):
        with closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute("SET search_path = sr, public")
            cur.execute("SET application_name = 'sr-reader'")
            cur.execute("SET work_mem = '3MB'")
            self.wait_reading_replica(cur)
            for _ in range(3):
                cur.execute("SELECT pg_is_in_recovery(), current_setting('search_path'), "
                            "current_setting('application_name'), "
                            "current_setting('work_mem'), (SELECT v FROM only_here)")
                self.assertEqual(cur.fetchone(),
                                 (True, "sr, public", "sr-reader", "3MB", "from schema sr"))
            cur.execute("SHOW search_path")
            self.assertEqual(cur.fetchone()[0], "sr, public")
            cur.execute("RESET search_path")
            cur.execute("SELECT pg_is_in_recovery(), current_setting('search_path')")
            self.assertEqual(cur.fetchone(), (True, '"$user", public'))

    def test_protocol_prepared_statements_on_both(self):
        import psycopg  # psycopg 3: prepare_threshold=0 prepares every statement (named)
        with psycopg.connect(self.sw.dsn(), autocommit=True, prepare_threshold=0) as conn:
            i = self.new_id()
            self.wait_reading_replica(conn.cursor())
            for n in range(4):
                row = conn.execute("SELECT pg_is_in_recovery(), %s::int + 1", (n,)).fetchone()
                self.assertEqual(row, (True, n + 1))
            # The same statements on the primary (writes, reads the replica may not have yet)
            # and back: each server gets them prepared under its own names.
            for n in range(4):
                conn.execute("INSERT INTO items VALUES (%s, %s)", (i + n * 1000, str(n)))
                row = conn.execute("SELECT v FROM items WHERE id = %s",
                                   (i + n * 1000,)).fetchone()
                self.assertEqual(row[0], str(n))
                row = conn.execute("SELECT pg_is_in_recovery(), %s::int + 1", (n,)).fetchone()
                self.assertEqual(row[1], n + 1)
        type(self).next_id += 4000

    def test_asyncpg_prepared_reads_and_writes(self):
        import asyncio

        import asyncpg  # prepares with Parse/Describe/Flush, then Bind/Execute/Sync

        async def run():
            conn = await asyncpg.connect(host=HOST, port=self.sw.port, user="app",
                                         password="app", database="appdb")
            try:
                deadline = time.monotonic() + 10
                while not await conn.fetchval("SELECT pg_is_in_recovery()"):
                    self.assertLess(time.monotonic(), deadline, "reads never reached the replica")
                    await asyncio.sleep(0.1)
                stmt = await conn.prepare("SELECT pg_is_in_recovery(), $1::int * 2")
                for n in range(3):
                    self.assertEqual(tuple(await stmt.fetchrow(n)), (True, n * 2))
                base = self.new_id()
                type(self).next_id += 10
                for n in range(3):
                    await conn.execute("INSERT INTO items VALUES ($1, 'apg')", base + n)
                    self.assertEqual(await conn.fetchval(
                        "SELECT count(*) FROM items WHERE id = $1", base + n), 1)
                    self.assertEqual((await stmt.fetchrow(n))[1], n * 2)
                async with conn.transaction():
                    await conn.execute("UPDATE items SET v = 'apg2' WHERE id = $1", base)
                    self.assertFalse(await conn.fetchval("SELECT pg_is_in_recovery()"))
            finally:
                await conn.close()

        asyncio.run(run())

    def test_pipelined_reads_and_writes(self):
        import psycopg  # psycopg 3 pipeline mode: requests sent without waiting for answers
        with psycopg.connect(self.sw.dsn(), autocommit=True) as conn:
            self.wait_reading_replica(conn.cursor())
            base = self.new_id()
            type(self).next_id += 100
            for round_ in range(5):
                i = base + round_ * 10
                with conn.pipeline():
                    c1 = conn.execute("SELECT %s::int", (round_,))
                    c2 = conn.execute("INSERT INTO items VALUES (%s, 'p') RETURNING id", (i,))
                    c3 = conn.execute("SELECT count(*) FROM items WHERE id = %s", (i,))
                    conn.execute(f"SET application_name = 'pipe{round_}'")
                    c5 = conn.execute("SELECT current_setting('application_name')")
                self.assertEqual(c1.fetchone()[0], round_)
                self.assertEqual(c2.fetchone()[0], i)
                self.assertEqual(c3.fetchone()[0], 1)
                self.assertEqual(c5.fetchone()[0], f"pipe{round_}")

    def test_cancel_reaches_the_replica_running_the_read(self):
        with closing(self.connect()) as conn, conn.cursor() as cur:
            self.wait_reading_replica(cur)
            # The read runs on the replica: a cancel sent to the session's primary connection
            # (the key the client got at login) would leave it sleeping.
            threading.Timer(0.5, conn.cancel).start()
            t0 = time.monotonic()
            with self.assertRaises(psycopg2.errors.QueryCanceled):
                cur.execute("SELECT pg_is_in_recovery(), pg_sleep(20)")
            self.assertLess(time.monotonic() - t0, 10)
            cur.execute("SELECT 1")
            self.assertEqual(cur.fetchone()[0], 1)

    def test_temp_table_falls_back_to_the_primary(self):
        before = totals(self.sw)["session_reads_fallbacks"]
        with closing(self.connect()) as conn, conn.cursor() as cur:
            self.wait_reading_replica(cur)
            cur.execute("CREATE TEMP TABLE scratch (x int)")
            cur.execute("INSERT INTO scratch VALUES (7)")
            for _ in range(3):
                cur.execute("SELECT x, pg_is_in_recovery() FROM scratch")
                self.assertEqual(cur.fetchall(), [(7, False)])
            cur.execute("SELECT pg_is_in_recovery()")
            self.assertFalse(cur.fetchone()[0], "a session with a temp table read a replica")
        self.assertEqual(totals(self.sw)["session_reads_fallbacks"] - before, 1)

    def test_other_session_state_falls_back_to_the_primary(self):
        for sql in ("PREPARE p AS SELECT 1", "LISTEN ch", "SELECT pg_advisory_lock(42)",
                    "DECLARE c CURSOR WITH HOLD FOR SELECT 1", "SET ROLE app",
                    "RESET ALL", "SET search_path = sr; RESET ALL"):
            with self.subTest(sql=sql), closing(self.connect()) as conn, conn.cursor() as cur:
                self.wait_reading_replica(cur)
                before = totals(self.sw)["session_reads_fallbacks"]
                cur.execute(sql)
                for _ in range(3):
                    cur.execute("SELECT pg_is_in_recovery()")
                    self.assertFalse(cur.fetchone()[0], f"read on a replica after {sql}")
                self.assertEqual(totals(self.sw)["session_reads_fallbacks"] - before, 1)

    def test_read_only_transaction_runs_on_the_primary(self):
        with closing(self.connect()) as conn, conn.cursor() as cur:
            self.wait_reading_replica(cur)
            cur.execute("BEGIN READ ONLY")
            cur.execute("DECLARE c CURSOR WITH HOLD FOR SELECT pg_is_in_recovery()")
            cur.execute("COMMIT")
            cur.execute("FETCH ALL FROM c")
            self.assertEqual(cur.fetchall(), [(False,)])

    def test_lost_primary_connection_between_requests_is_replaced(self):
        with closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute("SET application_name = 'lost-parked'")
            cur.execute("INSERT INTO items VALUES (%s, 'a') RETURNING pg_backend_pid()",
                        (self.new_id(),))
            pid = cur.fetchone()[0]
            self.cluster.psql(0, f"SELECT pg_terminate_backend({pid})")
            time.sleep(0.3)
            cur.execute("INSERT INTO items VALUES (%s, 'b') "
                        "RETURNING pg_backend_pid(), current_setting('application_name')",
                        (self.new_id(),))
            new_pid, app = cur.fetchone()
            self.assertNotEqual(new_pid, pid)
            self.assertEqual(app, "lost-parked")
            self.wait_reading_replica(cur)

    def test_set_config_falls_back_to_the_primary(self):
        with closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT set_config('app.tenant', '42', false)")
            for _ in range(3):
                cur.execute("SELECT current_setting('app.tenant'), pg_is_in_recovery()")
                self.assertEqual(cur.fetchone(), ("42", False))

    def test_show_clients_names_the_parked_primary_server(self):
        with closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute("SET application_name = 'parked-check'")
            cur.execute("SELECT 1")
            with closing(psycopg2.connect(self.sw.dsn(user="admin", db="pgswitch"))) as a:
                a.autocommit = True
                with a.cursor() as ac:
                    ac.execute("SHOW CLIENTS")
                    cols = [d[0] for d in ac.description]
                    rows = [dict(zip(cols, r)) for r in ac.fetchall()]
                    ac.execute("SHOW SERVERS")
                    cols = [d[0] for d in ac.description]
                    servers = [dict(zip(cols, r)) for r in ac.fetchall()]
            mine = [r for r in rows if r.get("application_name") == "parked-check"]
            self.assertEqual(len(mine), 1, rows)
            self.assertEqual(mine[0]["state"], "idle")
            self.assertIsNotNone(mine[0]["server_id"], mine[0])
            # Between requests the client's own primary connection is still named as its.
            srv = [s for s in servers if str(s["id"]) == str(mine[0]["server_id"])]
            self.assertEqual(len(srv), 1, servers)
            self.assertEqual(srv[0]["backend"], "pg1")
            self.assertEqual(str(srv[0]["client_id"]), str(mine[0]["id"]))

    @budget(60)
    def test_setting_off_session_mode_never_uses_the_replica(self):
        plain = PgSwitch(self.cluster, pool_mode="session", health_period_ms=200)
        try:
            with closing(self.connect(plain)) as conn, conn.cursor() as cur:
                for _ in range(5):
                    cur.execute("SELECT pg_is_in_recovery()")
                    self.assertFalse(cur.fetchone()[0])
            self.assertEqual(totals(plain)["session_reads"], 0)
        finally:
            plain.stop()


if __name__ == "__main__":
    unittest.main()
