"""Transparency (issue 12): an application cannot tell pgswitch from one PostgreSQL.

Cancels: PostgreSQL ignores a CancelRequest that arrives while the backend is idle. pgswitch
used to forward it anyway, late (it opens a connection to the backend first), so psycopg2's
`conn.cancel()` on an idle connection cancelled the *next* query (57014). A cancel for a
client with nothing in flight is now dropped, and one whose request ended while it was being
forwarded is not sent.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
import time
import unittest
from contextlib import closing

import psycopg2
import psycopg2.errors
import psycopg2.extensions

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import PgCluster, PgSwitch  # noqa: E402
from proxycase import ProxyTestCase, budget, show_totals  # noqa: E402


class CancelCase(ProxyTestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster(replicas=0).start()
        cls.switches = {m: PgSwitch(cls.cluster, pool_mode=m, workers=2)
                        for m in ("session", "transaction")}

    @classmethod
    def tearDownClass(cls):
        try:
            for sw in cls.switches.values():
                sw.stop()
        finally:
            cls.cluster.stop()

    def check_idle_cancel_ignored(self, mode: str, rounds: int = 15):
        sw = self.switches[mode]
        self.sw = sw
        conn = psycopg2.connect(sw.dsn())
        conn.autocommit = True
        try:
            for i in range(rounds):
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                conn.cancel()  # nothing running: PostgreSQL ignores it
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_sleep(0.05), %s", (i,))
                    self.assertEqual(cur.fetchone()[1], i)
        finally:
            conn.close()

    def check_running_query_is_cancelled(self, mode: str):
        sw = self.switches[mode]
        self.sw = sw
        conn = psycopg2.connect(sw.dsn())
        conn.autocommit = True
        try:
            timer = threading.Timer(0.5, conn.cancel)
            timer.start()
            t0 = time.monotonic()
            with conn.cursor() as cur:
                with self.assertRaises(psycopg2.extensions.QueryCanceledError):
                    cur.execute("SELECT pg_sleep(10)")
            self.assertLess(time.monotonic() - t0, 5)
            timer.join()
            with conn.cursor() as cur:
                cur.execute("SELECT 2")
                self.assertEqual(cur.fetchone()[0], 2)
        finally:
            conn.close()

    @budget(60)
    def test_idle_cancel_is_ignored_session_mode(self):
        self.check_idle_cancel_ignored("session")

    @budget(60)
    def test_idle_cancel_is_ignored_transaction_mode(self):
        self.check_idle_cancel_ignored("transaction")

    @budget(30)
    def test_running_query_is_cancelled(self):
        for mode in ("session", "transaction"):
            with self.subTest(mode=mode):
                self.check_running_query_is_cancelled(mode)


class ExtendedCopyCase(ProxyTestCase):
    """libpq's PQexecParams("COPY ... FROM STDIN") sends Parse, Bind, Describe, Execute and Sync;
    after PQputCopyEnd, CopyDone and a second Sync. PostgreSQL ignores the first Sync (it comes
    during COPY IN) and sends one ReadyForQuery. pgswitch used to owe the client two, and ended
    the connection with 08P01 at its next query (found by a structured fuzz of the protocol)."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster(replicas=0).start()
        try:
            cls.cluster.psql(0, "CREATE TABLE xcopy (a int); GRANT ALL ON xcopy TO app",
                             db="appdb")
            cls.switches = {m: PgSwitch(cls.cluster, pool_mode=m) for m in
                            ("session", "transaction")}
        except BaseException:
            cls.cluster.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            for sw in cls.switches.values():
                sw.stop()
        finally:
            cls.cluster.stop()

    def check(self, mode: str):
        self.sw = sw = self.switches[mode]
        pq = ctypes.CDLL(ctypes.util.find_library("pq"))
        pq.PQconnectdb.restype = ctypes.c_void_p
        pq.PQconnectdb.argtypes = [ctypes.c_char_p]
        for name in ("PQstatus", "PQfinish", "PQputCopyEnd", "PQputCopyData", "PQexec",
                     "PQexecParams", "PQgetResult", "PQerrorMessage"):
            getattr(pq, name).argtypes = [ctypes.c_void_p]
        pq.PQexecParams.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int] + \
            [ctypes.c_void_p] * 4 + [ctypes.c_int]
        pq.PQexecParams.restype = pq.PQexec.restype = pq.PQgetResult.restype = ctypes.c_void_p
        pq.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        pq.PQputCopyData.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        pq.PQputCopyEnd.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        pq.PQresultStatus.argtypes = pq.PQclear.argtypes = [ctypes.c_void_p]
        pq.PQgetvalue.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        pq.PQgetvalue.restype = ctypes.c_char_p
        pq.PQerrorMessage.restype = ctypes.c_char_p
        conn = pq.PQconnectdb(sw.dsn().encode())
        try:
            self.assertEqual(pq.PQstatus(conn), 0, pq.PQerrorMessage(conn))
            for rnd in range(3):
                res = pq.PQexecParams(conn, b"COPY xcopy FROM STDIN", 0, None, None, None,
                                      None, 0)
                self.assertEqual(pq.PQresultStatus(res), 4, pq.PQerrorMessage(conn))  # COPY_IN
                pq.PQclear(res)
                rows = b"".join(b"%d\n" % (rnd * 10 + i) for i in range(10))
                self.assertEqual(pq.PQputCopyData(conn, rows, len(rows)), 1)
                self.assertEqual(pq.PQputCopyEnd(conn, None), 1)
                res = pq.PQgetResult(conn)
                self.assertEqual(pq.PQresultStatus(res), 1, pq.PQerrorMessage(conn))
                pq.PQclear(res)
                self.assertIsNone(pq.PQgetResult(conn))
                res = pq.PQexec(conn, b"SELECT count(*) FROM xcopy WHERE a < %d" % (rnd * 10 + 10))
                self.assertEqual(pq.PQresultStatus(res), 2, pq.PQerrorMessage(conn))
                self.assertGreaterEqual(int(pq.PQgetvalue(res, 0, 0)), rnd * 10 + 10)
                pq.PQclear(res)
        finally:
            pq.PQfinish(conn)

    @budget(60)
    def test_session_mode(self):
        self.check("session")

    @budget(60)
    def test_transaction_mode(self):
        self.check("transaction")


class ReplicaBatchCase(ProxyTestCase):
    """Requests that follow a batch or a pipelined request on a replica go where they must.

    asyncpg's copy_records_to_table prepares its introspection query with Parse/Describe/Flush
    (no Sync) and then sends COPY ... FROM STDIN: pgswitch used to keep the replica it picked
    for the Parse and sent the COPY there (25006). libpq/psycopg 3 pipelines a read and then a
    write: the write used to follow the read to its replica."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster(replicas=2).start()
        cls.cluster.psql(0, "CREATE TABLE IF NOT EXISTS batch_t (id int, v text)", db="appdb",
                         user="app")
        cls.cluster.wait_replicated()
        # my_write_fn is trusted as read-only (wrongly) so that it reaches a replica and the
        # 25006 safety net is what saves it; without that, the catalog of volatile functions
        # sends it to the primary (test_volatile_functions.py).
        cls.sw = PgSwitch(cls.cluster, pool_mode="transaction", workers=1,
                          extra_toml='[routing]\nread_only_functions = ["my_write_fn"]\n')

    @classmethod
    def tearDownClass(cls):
        try:
            cls.sw.stop()
        finally:
            cls.cluster.stop()

    def primary_count(self) -> int:
        out = self.cluster.psql(0, "SELECT count(*) FROM batch_t", db="appdb", user="app")
        return int(out)

    @budget(60)
    def test_asyncpg_copy_after_flush_batch(self):
        import asyncio
        import asyncpg

        async def run():
            conn = await asyncpg.connect(host="127.0.0.1", port=self.sw.port, user="app",
                                         password="app", database="appdb")
            try:
                for i in range(5):
                    await conn.copy_records_to_table("batch_t", records=[(i, "a"), (i, "b")],
                                                     columns=["id", "v"])
                # the statement prepared on the replica is usable wherever the next run goes
                self.assertEqual(await conn.fetchval("SELECT $1::int + 1", 41), 42)
            finally:
                await conn.close()

        before = self.primary_count()
        asyncio.run(run())
        self.assertEqual(self.primary_count() - before, 10)

    @budget(60)
    def test_pipelined_write_after_read(self):
        from pgwire import PgWire, parse_error_fields, query_msg
        before = self.primary_count()
        with PgWire(port=self.sw.port) as w:
            w.startup("app", "appdb", "app")
            for i in range(10):
                # Three simple queries in one write: a read, a write, a read.
                w.send(query_msg("SELECT 1") + query_msg(f"INSERT INTO batch_t VALUES ({i}, 'p')")
                       + query_msg("SELECT 2"))
                ready = 0
                while ready < 3:
                    t, p = w.read_msg()
                    if t == b"E":
                        self.fail(f"pipelined request failed: {parse_error_fields(p)}")
                    ready += t == b"Z"
        self.assertEqual(self.primary_count() - before, 10)

    @budget(90)
    def test_select_of_a_writing_function(self):
        # A user's function that writes, called as SELECT, that pgswitch believes read-only
        # (trusted in routing.read_only_functions here; also one created outside pgswitch
        # before its catalog is read again): sent to a replica, refused there with 25006;
        # pgswitch runs it again on the primary and the client sees only the primary's answer.
        self.cluster.psql(0, """
            CREATE TABLE IF NOT EXISTS fn_t (id serial, at timestamptz DEFAULT now());
            CREATE OR REPLACE FUNCTION my_write_fn() RETURNS int LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO fn_t DEFAULT VALUES; RETURN 1; END $$;""", db="appdb", user="app")
        self.cluster.wait_replicated()

        def fn_rows() -> int:
            return int(self.cluster.psql(0, "SELECT count(*) FROM fn_t", db="appdb", user="app"))

        def retries() -> int:
            return show_totals(self.sw)["readonly_retries"]

        before = fn_rows()
        with closing(psycopg2.connect(self.sw.dsn(user="app", db="appdb"))) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                for _ in range(20):
                    cur.execute("SELECT my_write_fn()")
                    self.assertEqual(cur.fetchall(), [(1,)])
                    self.assertEqual([d.name for d in cur.description], ["my_write_fn"])
                # The connection goes on as usual: a plain read, a read that fails on its own.
                cur.execute("SELECT 41 + 1")
                self.assertEqual(cur.fetchone(), (42,))
                with self.assertRaises(psycopg2.errors.UndefinedTable):
                    cur.execute("SELECT * FROM no_such_table_here")
                cur.execute("SELECT 1")
                self.assertEqual(cur.fetchone(), (1,))
        self.assertEqual(fn_rows() - before, 20)
        # Counted once per retried call (nothing else in this class fails with 25006; a call
        # that fell back to the primary for replica lag would not need a retry).
        n = retries()
        self.assertGreaterEqual(n, 1)
        self.assertLessEqual(n, 20)
        import asyncio
        import asyncpg
        import psycopg

        # The same over the extended protocol (psycopg 3 sends Parse/Bind/Describe/Execute/Sync
        # for a query with parameters; asyncpg prepares a named statement first, then runs it
        # with Bind/Execute/Sync): the whole batch is taken back and run on the primary.
        # Each call commits a row on the primary; with strong consistency the next read waits
        # for a replica to have replayed it, or goes to the primary (slow builds, ASan): wait
        # for replication first, so the calls do reach a replica and are retried from there.
        before = fn_rows()
        with psycopg.connect(self.sw.dsn(user="app", db="appdb"), autocommit=True) as conn:
            for i in range(10):
                self.cluster.wait_replicated()
                row = conn.execute("SELECT my_write_fn() + %s - %s", (i, i)).fetchone()
                self.assertEqual(row, (1,))

        async def with_asyncpg():
            conn = await asyncpg.connect(host="127.0.0.1", port=self.sw.port, user="app",
                                         password="app", database="appdb")
            try:
                stmt = await conn.prepare("SELECT my_write_fn() AS v")
                for _ in range(10):
                    await asyncio.to_thread(self.cluster.wait_replicated)
                    self.assertEqual(await stmt.fetchval(), 1)
            finally:
                await conn.close()

        asyncio.run(with_asyncpg())
        self.assertEqual(fn_rows() - before, 20)
        self.assertGreater(retries(), n, "no extended-protocol batch was retried")

    @budget(60)
    def test_retried_batch_that_waited_for_a_result_shape(self):
        # A batch on a replica whose named statement's copy there has no known result shape
        # waits, part sent, while pgswitch asks for it; the replica's 25006 then takes the whole
        # batch to the primary. The part never sent must not be sent twice (the client would
        # get two answers and one ReadyForQuery too many). max_prepared_statements 1 makes
        # every statement of the batch a new copy on its server.
        from pgwire import (PgWire, bind_msg, describe_stmt_msg, execute_msg, parse_msg,
                            run_batch, sync_msg)
        self.cluster.psql(0, """
            CREATE TABLE IF NOT EXISTS fn_t (id serial, at timestamptz DEFAULT now());
            CREATE OR REPLACE FUNCTION my_write_fn() RETURNS int LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO fn_t DEFAULT VALUES; RETURN 1; END $$;""", db="appdb", user="app")
        sw = PgSwitch(self.cluster, pool_mode="transaction", workers=1,
                      extra_toml='[routing]\nread_only_functions = ["my_write_fn"]\n'
                                 '[pool]\nmax_prepared_statements = 1\n')
        self.addCleanup(sw.stop)

        def fn_rows() -> int:
            return int(self.cluster.psql(0, "SELECT count(*) FROM fn_t", db="appdb", user="app"))

        with PgWire(port=sw.port) as w:
            w.startup("app", "appdb", "app")
            self.assertEqual(run_batch(w, parse_msg("w", "SELECT my_write_fn()"),
                                       describe_stmt_msg("w"), sync_msg()), ["1", "t", "T", "Z"])
            self.assertEqual(run_batch(w, parse_msg("r", "SELECT 7"), describe_stmt_msg("r"),
                                       sync_msg()), ["1", "t", "T", "Z"])
            for _ in range(3):
                self.cluster.wait_replicated()
                before = fn_rows()
                self.assertEqual(run_batch(w, bind_msg("w"), execute_msg(), bind_msg("r"),
                                           execute_msg(), sync_msg()),
                                 ["2", ("D", "1"), "C", "2", ("D", "7"), "C", "Z"])
                self.assertEqual(w.query("SELECT 1"), [("1",)])
                self.assertEqual(fn_rows() - before, 1)
        self.assertGreater(show_totals(sw)["readonly_retries"], 0, "no batch was retried")


if __name__ == "__main__":
    unittest.main()
