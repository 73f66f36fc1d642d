"""Session state carried across a lost server (issue 16 item 2): a session-mode client with
settings, prepared statements (SQL PREPARE and protocol-level) and a LISTEN keeps working on
the next server and still receives notifications sent after the move; state no other server
can be given (a temporary table) ends the session with a FATAL that says so. The server is
ended by pg_terminate_backend, and in the last class by kill -9 of the primary with pgswitch
promoting a replica."""
from __future__ import annotations

import os
import select
import sys
import time
import unittest
import uuid

import psycopg
import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import PgCluster, PgSwitch  # noqa: E402
from proxycase import ProxyTestCase, budget, show_totals  # noqa: E402


class RebuildCase(ProxyTestCase):
    default_budget = 60.0
    mode = "session"
    replicas = 1
    toml = "[failover]\nfailover_wait_ms = 15000\n"

    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster(replicas=cls.replicas).start()
        cls.sw = None
        try:
            cls.sw = PgSwitch(cls.cluster, pool_mode=cls.mode, health_period_ms=200,
                              extra_toml=cls.toml)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.sw is not None:
                cls.sw.stop()
        finally:
            cls.cluster.stop()

    def primary_conn(self):
        c = psycopg2.connect(self.cluster.dsn(0, db="appdb"))
        c.autocommit = True
        self.addCleanup(c.close)
        return c

    def terminate_app(self, app: str) -> None:
        with self.primary_conn().cursor() as cur:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = %s AND pid <> pg_backend_pid()", (app,))
                if cur.rowcount:
                    return
                time.sleep(0.05)
        self.fail(f"no server connection with application_name {app}")

    def notify_until_heard(self, conn, channel: str, payload: str, timeout: float = 10) -> None:
        """NOTIFY on the current primary (through pgswitch's other sessions would do too) until
        `conn` hears it: the first NOTIFY may go out before the channel is listened to
        again."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with psycopg2.connect(self.sw.dsn()) as n:
                n.autocommit = True
                with n.cursor() as cur:
                    cur.execute("SELECT pg_notify(%s, %s)", (channel, payload))
            n.close()
            if select.select([conn], [], [], 0.5)[0]:
                conn.poll()
            while conn.notifies:
                note = conn.notifies.pop(0)
                if note.channel == channel and note.payload == payload:
                    return
        self.fail(f"no notification on {channel} within {timeout} s")

    def check_session(self, move):
        """Builds the state, calls move(app), then checks the state on the new server."""
        app = "rb-" + uuid.uuid4().hex[:12]
        chan = "ch_" + uuid.uuid4().hex[:8]
        before = show_totals(self.sw)
        c = psycopg2.connect(self.sw.dsn(application_name=app))
        c.autocommit = True
        self.addCleanup(c.close)
        p3 = psycopg.connect(self.sw.dsn(application_name=app + "-3"), autocommit=True)
        self.addCleanup(p3.close)
        with c.cursor() as cur:
            cur.execute("SET work_mem = '77MB'")
            cur.execute("SET TimeZone = 'Asia/Tokyo'")
            cur.execute("PREPARE twice(int) AS SELECT $1 * 2")
            cur.execute(f"LISTEN {chan}")
        q = "SELECT %s::int + 1"
        for _ in range(3):  # prepare=True: a protocol-level named statement (_pg3_...)
            self.assertEqual(p3.execute(q, (1,), prepare=True).fetchone()[0], 2)
        p3.execute("SET search_path = public, pg_catalog")
        move(app)
        self.notify_until_heard(c, chan, "after the move")
        with c.cursor() as cur:
            cur.execute("SHOW work_mem")
            self.assertEqual(cur.fetchone()[0], "77MB")
            cur.execute("SHOW TimeZone")
            self.assertEqual(cur.fetchone()[0], "Asia/Tokyo")
            cur.execute("EXECUTE twice(21)")
            self.assertEqual(cur.fetchone()[0], 42)
        self.assertEqual(p3.execute(q, (41,), prepare=True).fetchone()[0], 42)
        self.assertEqual(p3.execute("SHOW search_path").fetchone()[0], "public, pg_catalog")
        after = show_totals(self.sw)
        self.assertGreaterEqual(after["sessions_rebuilt"] - before["sessions_rebuilt"], 2)


class SessionRebuildTest(RebuildCase):

    def test_state_follows_to_a_new_server(self):
        def move(app):
            self.terminate_app(app)
            self.terminate_app(app + "-3")
            time.sleep(0.3)
        self.check_session(move)

    def test_temporary_table_ends_the_session_saying_so(self):
        from pgwire import PgWire, parse_error_fields
        app = "tt-" + uuid.uuid4().hex[:12]
        before = show_totals(self.sw)
        with PgWire(port=self.sw.port) as w:
            w.startup("app", "appdb", password="app", params={"application_name": app})
            w.query("CREATE TEMP TABLE scratch (x int)")
            self.terminate_app(app)
            t, p = w.read_msg()  # the FATAL pgswitch sends at once
            self.assertEqual(t, b"E")
            f = parse_error_fields(p)
            self.assertEqual((f.get("S"), f.get("C")), ("FATAL", "08006"))
            self.assertIn("temporary table", f.get("D", ""))
        after = show_totals(self.sw)
        self.assertEqual(after["sessions_unmovable"] - before["sessions_unmovable"], 1)


class SessionRebuildTransactionModeTest(RebuildCase):
    """A transaction-mode client pinned by LISTEN keeps listening on the next server."""
    mode = "transaction"

    def test_listen_follows(self):
        app = "tl-" + uuid.uuid4().hex[:12]
        chan = "ch_" + uuid.uuid4().hex[:8]
        c = psycopg2.connect(self.sw.dsn(application_name=app))
        c.autocommit = True
        self.addCleanup(c.close)
        with c.cursor() as cur:
            cur.execute(f"LISTEN {chan}")
        self.terminate_app(app)
        time.sleep(0.3)
        self.notify_until_heard(c, chan, "moved")


class ListenerWithoutPrimaryTest(RebuildCase):
    """A transaction-mode client pinned by LISTEN whose server is lost while no primary comes
    back within failover_wait_ms: it asked nothing, so it gets FATAL 57P03 and the connection
    closes (it used to get an ErrorResponse with no ReadyForQuery, and its next request was
    dropped)."""
    mode = "transaction"
    replicas = 0
    toml = "[failover]\nfailover_wait_ms = 1500\n"

    def test_listener_ends_with_fatal(self):
        app = "lw-" + uuid.uuid4().hex[:12]
        c = psycopg2.connect(self.sw.dsn(application_name=app))
        c.autocommit = True
        self.addCleanup(c.close)
        with c.cursor() as cur:
            cur.execute("LISTEN nobody_sends")
        self.cluster.stop_node(0, mode="immediate")
        try:
            deadline = time.monotonic() + 20
            err = None
            while time.monotonic() < deadline and err is None:
                if select.select([c], [], [], 0.5)[0]:
                    try:
                        c.poll()
                    except psycopg2.Error as e:
                        err = e
            # libpq takes an error that arrives while idle as a notice, then sees the close.
            self.assertIsNotNone(err, "the listening client's connection stayed open")
            told = str(err) + "".join(c.notices)
            self.assertIn("FATAL", told)
            self.assertIn("no primary server is available", told)
            self.assertNotEqual(c.closed, 0)
        finally:
            self.cluster.start_node(0)


class SessionRebuildAcrossFailoverTest(RebuildCase):
    """kill -9 of the primary, pgswitch promotes the replica: the session-mode client's
    settings, prepared statements and LISTEN are there on the new primary."""
    default_budget = 90.0
    replicas = 2
    toml = ("[failover]\nauto_failover = true\nfailover_after = 2\nfailover_wait_ms = 20000\n"
            "repoint_replicas = true\n")

    @budget(90)
    def test_session_survives_kill_of_primary(self):
        def move(app):
            self.cluster.kill9_primary()
        self.check_session(move)


if __name__ == "__main__":
    unittest.main()
