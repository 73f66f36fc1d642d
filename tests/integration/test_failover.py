"""Failover integration tests (issue 6) through pgswitch, with a promotion done by someone
else (pg_ctl promote, auto_failover off): clients idle between transactions never notice, a
transaction in flight gets a clean error and keeps its connection, new writes wait for the new
primary, and the old primary restarted afterwards is fenced and never routed to."""
from __future__ import annotations

import os
import sys
import threading
import time
import unittest

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import PgCluster, PgSwitch  # noqa: E402
from proxycase import ProxyTestCase, budget  # noqa: E402

FAILOVER_TOML = "[failover]\nfailover_wait_ms = 20000\n"


class FailoverCase(ProxyTestCase):
    """A primary and two replicas, `setup_sql` run on the primary (database appdb) and
    replicated, then pgswitch in transaction mode with `toml`; subclasses may add more
    pgswitch instances in `extra_switches` (stopped with the rest)."""
    setup_sql = ""
    toml = FAILOVER_TOML

    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster(replicas=2).start()
        cls.switches = []
        try:
            if cls.setup_sql:
                cls.cluster.psql(0, cls.setup_sql, db="appdb")
                cls.cluster.wait_replicated()
            cls.sw = cls.switch("transaction")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def switch(cls, mode):
        sw = PgSwitch(cls.cluster, pool_mode=mode, health_period_ms=200, extra_toml=cls.toml)
        cls.switches.append(sw)
        return sw

    @classmethod
    def tearDownClass(cls):
        try:
            for sw in cls.switches:
                sw.stop()
        finally:
            cls.cluster.stop()


class ExternalPromotionTest(FailoverCase):
    default_budget = 120.0
    setup_sql = ("CREATE TABLE fo (id serial PRIMARY KEY, who text, at timestamptz DEFAULT "
                 "now()); GRANT ALL ON fo, fo_id_seq TO app")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.session_sw = cls.switch("session")
        except BaseException:
            cls.tearDownClass()
            raise

    def connect(self, sw=None, autocommit=True):
        c = psycopg2.connect((sw or self.sw).dsn())
        c.autocommit = autocommit
        self.addCleanup(c.close)
        return c

    def write_port(self, conn, who):
        with conn.cursor() as cur:
            cur.execute("INSERT INTO fo (who) VALUES (%s) RETURNING inet_server_port()", (who,))
            return cur.fetchone()[0]

    @budget(150)
    def test_promotion_by_someone_else(self):
        old, new = self.cluster.port_of(0), self.cluster.port_of(1)
        idle = self.connect()
        self.assertEqual(self.write_port(idle, "idle-before"), old)
        sess = self.connect(self.session_sw)
        self.assertEqual(self.write_port(sess, "session-before"), old)
        intx = self.connect(autocommit=False)
        self.write_port(intx, "in-flight")  # BEGIN ... INSERT, not committed

        self.cluster.kill9(0)
        # The transaction in flight: a clean error, and the connection stays usable.
        with self.assertRaises(psycopg2.Error) as cm:
            with intx.cursor() as cur:
                cur.execute("SELECT 1")
        self.assertIn(cm.exception.pgcode, ("08006", "57P01"), str(cm.exception))
        self.assertIn("failover", str(cm.exception).lower())
        intx.rollback()

        # New writes wait (hold) until someone promotes a replica, then run there.
        result = {}

        def writer():
            t0 = time.monotonic()
            try:
                result["port"] = self.write_port(idle, "idle-after")
            except Exception as e:  # noqa: BLE001
                result["error"] = e
            result["waited"] = time.monotonic() - t0

        t = threading.Thread(target=writer)
        t.start()
        time.sleep(1.0)
        self.cluster.promote(1)
        promoted_at = time.monotonic()
        t.join(30)
        self.assertNotIn("error", result, f"the idle client saw an error: {result.get('error')}")
        self.assertEqual(result["port"], new)
        print(f"\nidle client's write waited {result['waited']:.2f}s, "
              f"done {time.monotonic() - promoted_at:.2f}s after pg_ctl promote returned")
        self.assertEqual(self.write_port(intx, "in-flight-retry"), new)
        intx.commit()
        # Session mode: a client without session state is moved to the new primary.
        self.assertEqual(self.write_port(sess, "session-after"), new)

        # The old primary comes back on its old timeline: fenced, never routed to.
        self.cluster.start_node(0)
        self.sw.wait_log("event=fenced backend=pg1", timeout=15)
        seen = set()
        conns = [self.connect() for _ in range(4)]
        t_end = time.monotonic() + 4
        while time.monotonic() < t_end:
            for c in conns:
                with c.cursor() as cur:
                    cur.execute("SELECT inet_server_port()")
                    seen.add(cur.fetchone()[0])
                seen.add(self.write_port(c, "after-return"))
        self.assertNotIn(old, seen, "a request reached the fenced old primary")
        self.assertIn(new, seen)
        self.assertIn("fenced", self.sw.log())


class ReplicaLossTest(FailoverCase):
    default_budget = 90.0

    def test_read_retried_when_its_replica_dies(self):
        conn = psycopg2.connect(self.sw.dsn())
        conn.autocommit = True
        self.addCleanup(conn.close)
        replicas = {self.cluster.port_of(1): 1, self.cluster.port_of(2): 2}
        result = {}

        def reader():
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT inet_server_port(), pg_sleep(1.5), inet_server_port()")
                    result["row"] = cur.fetchone()
            except Exception as e:  # noqa: BLE001
                result["error"] = e

        t = threading.Thread(target=reader)
        t.start()
        # Find the replica running the sleep, and kill it mid-query.
        victim = None
        deadline = time.monotonic() + 5
        while victim is None and time.monotonic() < deadline:
            for port, i in replicas.items():
                n = self.cluster.psql(i, "SELECT count(*) FROM pg_stat_activity "
                                         "WHERE query LIKE '%pg_sleep(1.5)%' AND pid <> "
                                         "pg_backend_pid()")
                if n.strip() not in ("", "0"):
                    victim = i
            time.sleep(0.05)
        self.assertIsNotNone(victim, "the read did not start on a replica")
        self.cluster.kill9(victim)
        t.join(20)
        self.assertNotIn("error", result, f"the read failed instead of being retried: "
                                          f"{result.get('error')}")
        port = result["row"][0]
        self.assertNotEqual(port, self.cluster.port_of(victim))
        print(f"\nread retried on port {port} after replica node{victim} was killed")
        with conn.cursor() as cur:  # the connection keeps working
            cur.execute("SELECT 1")
            self.assertEqual(cur.fetchone()[0], 1)
        self.cluster.start_node(victim)


class AutoFailoverTest(FailoverCase):
    """pgswitch promotes a replica itself (auto_failover = true) when the primary dies."""
    default_budget = 90.0
    setup_sql = "CREATE TABLE af (id serial PRIMARY KEY, v text); GRANT ALL ON af, af_id_seq TO app"
    toml = ("[failover]\nauto_failover = true\nfailover_after = 3\nrepoint_replicas = true\n"
            "failover_wait_ms = 20000\n")

    def test_pgswitch_promotes_and_fences(self):
        old = self.cluster.port_of(0)
        conns = []
        for _ in range(4):
            c = psycopg2.connect(self.sw.dsn())
            c.autocommit = True
            self.addCleanup(c.close)
            conns.append(c)
        for c in conns:
            with c.cursor() as cur:
                cur.execute("INSERT INTO af (v) VALUES ('before') RETURNING inet_server_port()")
                self.assertEqual(cur.fetchone()[0], old)
        self.cluster.wait_replicated()
        self.cluster.kill9(0)
        t0 = time.monotonic()
        ports = set()
        for c in conns:  # idle between transactions: no error, the writes wait and run
            with c.cursor() as cur:
                cur.execute("INSERT INTO af (v) VALUES ('after') RETURNING inet_server_port()")
                ports.add(cur.fetchone()[0])
        took = time.monotonic() - t0
        print(f"\nwrites resumed {took:.2f}s after kill -9, on port(s) {ports}")
        self.assertEqual(len(ports), 1)
        new = ports.pop()
        self.assertIn(new, (self.cluster.port_of(1), self.cluster.port_of(2)))
        self.assertLess(took, 10)
        new_index = 1 if new == self.cluster.port_of(1) else 2
        self.assertFalse(self.cluster.is_in_recovery(new_index), "promoted node still in recovery")
        for event in ("failover_started", "promoted", "fenced", "failover_done"):
            self.assertTrue(self.sw.wait_log(f"event={event}"), f"no event={event} in the log")
        # The old primary returns: fenced, never routed to.
        self.cluster.start_node(0)
        time.sleep(1.0)
        seen = set()
        for _ in range(30):
            for c in conns:
                with c.cursor() as cur:
                    cur.execute("SELECT inet_server_port()")
                    seen.add(cur.fetchone()[0])
                    cur.execute("INSERT INTO af (v) VALUES ('x') RETURNING inet_server_port()")
                    seen.add(cur.fetchone()[0])
        self.assertNotIn(old, seen)
        rows = self.cluster.psql(new_index, "SELECT count(*) FROM af WHERE v = 'before'",
                                 db="appdb")
        self.assertEqual(rows, "4", "acknowledged commits made before the failover are missing")


if __name__ == "__main__":
    unittest.main()
