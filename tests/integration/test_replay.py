"""Transaction replay (issue 16): a transaction whose server connection is lost before its
COMMIT is run again on the primary, and the client goes on as if nothing had happened when
the replay gives the answers it already got. The server connection is ended by
pg_terminate_backend (the primary stays) and, in the last class, by kill -9 of the primary
with pgswitch promoting a replica."""
from __future__ import annotations

import os
import sys
import threading
import time
import unittest
import uuid

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import PgCluster, PgSwitch  # noqa: E402
from proxycase import ProxyTestCase, budget, show_totals  # noqa: E402

SETUP = ("CREATE TABLE rp (id serial PRIMARY KEY, k text, v int); "
         "CREATE TABLE once (k text PRIMARY KEY); "
         "GRANT ALL ON rp, rp_id_seq, once TO app")


class ReplayCase(ProxyTestCase):
    default_budget = 60.0
    mode = "transaction"
    replicas = 1
    toml = "[failover]\nfailover_wait_ms = 15000\n"

    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster(replicas=cls.replicas).start()
        cls.sw = None
        try:
            cls.cluster.psql(0, SETUP, db="appdb")
            cls.cluster.wait_replicated()
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

    def connect(self, autocommit=False, sw=None):
        c = psycopg2.connect((sw or self.sw).dsn())
        c.autocommit = autocommit
        self.addCleanup(c.close)
        return c

    def primary(self):
        c = psycopg2.connect(self.cluster.dsn(0, db="appdb"))
        c.autocommit = True
        self.addCleanup(c.close)
        return c

    def terminate(self, marker: str, state: str | None = None, timeout: float = 10) -> None:
        """Ends the server connection whose last statement carries `marker`."""
        deadline = time.monotonic() + timeout
        with self.primary().cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute("SELECT pid FROM pg_stat_activity WHERE query LIKE %s "
                            "AND pid <> pg_backend_pid()" +
                            (" AND state = %s" if state else ""),
                            (f"%{marker}%", state) if state else (f"%{marker}%",))
                pids = [r[0] for r in cur.fetchall()]
                if pids:
                    for pid in pids:
                        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    return
                time.sleep(0.05)
        self.fail(f"no server connection ran {marker}")

    def count_rows(self, k: str) -> int:
        with self.primary().cursor() as cur:
            cur.execute("SELECT count(*) FROM rp WHERE k = %s", (k,))
            return cur.fetchone()[0]


class ReplayTransactionModeTest(ReplayCase):

    def test_interrupted_transaction_commits_once(self):
        before = show_totals(self.sw)
        k = uuid.uuid4().hex
        c = self.connect()
        with c.cursor() as cur:
            cur.execute("INSERT INTO rp (k, v) VALUES (%s, 1)", (k,))
            cur.execute(f"SELECT count(*) FROM rp WHERE k = %s /* {k} */", (k,))
            self.assertEqual(cur.fetchone()[0], 1)
            self.terminate(k, state="idle in transaction")
            time.sleep(0.3)  # pgswitch sees the FATAL and replays before the next statement
            cur.execute("INSERT INTO rp (k, v) VALUES (%s, 2)", (k,))
            cur.execute("SELECT sum(v) FROM rp WHERE k = %s", (k,))
            self.assertEqual(cur.fetchone()[0], 3)
        c.commit()
        self.assertEqual(self.count_rows(k), 2)
        after = show_totals(self.sw)
        self.assertEqual(after["replays_attempted"] - before["replays_attempted"], 1)
        self.assertEqual(after["replays_succeeded"] - before["replays_succeeded"], 1)

    def test_statement_in_flight_is_answered_after_replay(self):
        k = uuid.uuid4().hex
        c = self.connect()
        killer = threading.Timer(0.6, self.terminate, args=(k, "active"))
        killer.start()
        try:
            with c.cursor() as cur:
                cur.execute("INSERT INTO rp (k, v) VALUES (%s, 1)", (k,))
                cur.execute(f"SELECT 42 FROM pg_sleep(1.2) /* {k} */")
                self.assertEqual(cur.fetchone()[0], 42)
                cur.execute("INSERT INTO rp (k, v) VALUES (%s, 2)", (k,))
            c.commit()
        finally:
            killer.join()
        self.assertEqual(self.count_rows(k), 2)

    def test_transaction_that_read_now_is_refused(self):
        before = show_totals(self.sw)
        k = uuid.uuid4().hex
        c = self.connect()
        with c.cursor() as cur:
            cur.execute("INSERT INTO rp (k, v) VALUES (%s, 1)", (k,))
            cur.execute(f"SELECT clock_timestamp() /* {k} */")
            self.terminate(k, state="idle in transaction")
            time.sleep(0.5)
            with self.assertRaises(psycopg2.OperationalError) as cm:
                cur.execute("INSERT INTO rp (k, v) VALUES (%s, 2)", (k,))
            self.assertEqual(cm.exception.pgcode, "08006")
        c.rollback()
        self.assertEqual(self.count_rows(k), 0)
        with c.cursor() as cur:  # the connection is still usable
            cur.execute("SELECT 1")
            self.assertEqual(cur.fetchone()[0], 1)
        c.rollback()
        after = show_totals(self.sw)
        self.assertEqual(after["replays_refused_mismatch"] - before["replays_refused_mismatch"], 1)

    def test_autocommit_insert_in_flight_never_runs_twice(self):
        k = uuid.uuid4().hex
        c = self.connect(autocommit=True)
        killer = threading.Timer(0.6, self.terminate, args=(k, "active"))
        killer.start()
        try:
            with c.cursor() as cur:
                with self.assertRaises(psycopg2.OperationalError) as cm:
                    cur.execute(f"INSERT INTO once SELECT %s FROM pg_sleep(1.2) /* {k} */", (k,))
                self.assertEqual(cm.exception.pgcode, "08007")
        finally:
            killer.join()
        with self.primary().cursor() as cur:
            cur.execute("SELECT count(*) FROM once WHERE k = %s", (k,))
            self.assertLessEqual(cur.fetchone()[0], 1)
        with c.cursor() as cur:
            cur.execute("SELECT 1")
            self.assertEqual(cur.fetchone()[0], 1)

    def test_commit_in_flight_is_not_replayed(self):
        before = show_totals(self.sw)
        k = uuid.uuid4().hex
        c = self.connect()
        with c.cursor() as cur:
            cur.execute("INSERT INTO rp (k, v) VALUES (%s, 1)", (k,))
            # A COMMIT that waits on a deferred trigger-free lock is hard to hold open;
            # instead a commit-time sleep: a deferred constraint trigger.
            cur.execute(f"SELECT 1 /* {k} */")
        # Terminate as the COMMIT runs: a lone COMMIT is quick, so run it in flight with a
        # pg_sleep in the same simple-protocol Query text ("COMMIT" first keyword).
        killer = threading.Timer(0.4, self.terminate, args=(k, "active"))
        killer.start()
        try:
            with c.cursor() as cur:
                with self.assertRaises(psycopg2.OperationalError) as cm:
                    cur.execute(f"COMMIT; SELECT pg_sleep(1) /* {k} */")
                self.assertEqual(cm.exception.pgcode, "08007")
        finally:
            killer.join()
        after = show_totals(self.sw)
        self.assertEqual(after["replays_attempted"] - before["replays_attempted"], 0)
        self.assertGreaterEqual(after["replays_refused_commit_in_flight"] -
                                before["replays_refused_commit_in_flight"], 1)


    def test_pipelined_commit_is_never_replayed(self):
        """A transaction pipelined behind a committed one (one Write: BEGIN, INSERT, COMMIT,
        BEGIN, INSERT) must not be replayed from the recording, which holds the committed
        one too: the client gets the retryable error, and the committed row stays single."""
        from pgwire import PgWire, PgWireError, query_msg
        k = uuid.uuid4().hex
        with PgWire(port=self.sw.port) as w:
            w.startup("app", "appdb", password="app")
            w.send(query_msg("BEGIN") + query_msg(f"INSERT INTO rp (k, v) VALUES ('{k}', 1)")
                   + query_msg("COMMIT") + query_msg("BEGIN")
                   + query_msg(f"INSERT INTO rp (k, v) VALUES ('{k}', 2) /* {k}-2 */"))
            ready = 0
            while ready < 5:
                t, _ = w.read_msg()
                ready += t == b"Z"
            self.terminate(f"{k}-2", state="idle in transaction")
            time.sleep(0.3)
            with self.assertRaises(PgWireError) as cm:
                w.query(f"SELECT count(*) FROM rp WHERE k = '{k}'")
            self.assertEqual(cm.exception.fields.get("C"), "08006")
            self.assertEqual(w.query(f"SELECT count(*) FROM rp WHERE k = '{k}'"), [("1",)])
        self.assertEqual(self.count_rows(k), 1)

    def test_pipelined_transaction_with_commit_in_flight(self):
        """BEGIN, INSERT, COMMIT sent together from idle and the server lost before the answers:
        the COMMIT may have run, so nothing is replayed."""
        from pgwire import PgWire, parse_error_fields, query_msg
        before = show_totals(self.sw)
        k = uuid.uuid4().hex
        with PgWire(port=self.sw.port, timeout=5) as w:
            w.startup("app", "appdb", password="app")
            w.send(query_msg("BEGIN")
                   + query_msg(f"INSERT INTO rp (k, v) SELECT '{k}', 1 FROM pg_sleep(1) "
                               f"/* {k}-s */")
                   + query_msg("COMMIT"))
            self.terminate(f"{k}-s", state="active")
            # Every pipelined request gets its answer: an error and a ReadyForQuery each (the
            # socket's timeout fails the test if one is missing).
            codes, ready = [], 0
            while ready < 3:
                t, p = w.read_msg()
                if t == b"E":
                    codes.append(parse_error_fields(p).get("C"))
                ready += t == b"Z"
            self.assertEqual(codes[-2:], ["08007", "08007"])
            self.assertEqual(w.query("SELECT 1"), [("1",)])  # and the connection works
        time.sleep(0.5)
        self.assertEqual(self.count_rows(k), 0)
        after = show_totals(self.sw)
        self.assertEqual(after["replays_attempted"], before["replays_attempted"])


class ReplaySessionModeTest(ReplayCase):
    mode = "session"

    def test_session_mode_transaction_replayed(self):
        k = uuid.uuid4().hex
        c = self.connect()
        with c.cursor() as cur:
            cur.execute("INSERT INTO rp (k, v) VALUES (%s, 1)", (k,))
            cur.execute(f"SELECT count(*) FROM rp WHERE k = %s /* {k} */", (k,))
            self.terminate(k, state="idle in transaction")
            time.sleep(0.3)
            cur.execute("INSERT INTO rp (k, v) VALUES (%s, 2)", (k,))
        c.commit()
        self.assertEqual(self.count_rows(k), 2)


class ReplayAcrossFailoverTest(ReplayCase):
    """kill -9 of the primary; pgswitch promotes the replica; the open transaction is replayed
    there and commits once."""
    default_budget = 90.0
    replicas = 2
    toml = ("[failover]\nauto_failover = true\nfailover_after = 2\nfailover_wait_ms = 20000\n"
            "repoint_replicas = true\n")

    @budget(90)
    def test_transaction_survives_kill_of_primary(self):
        k = uuid.uuid4().hex
        c = self.connect()
        with c.cursor() as cur:
            cur.execute("INSERT INTO rp (k, v) VALUES (%s, 1)", (k,))
            cur.execute("INSERT INTO rp (k, v) VALUES (%s, 2)", (k,))
            self.cluster.kill9_primary()
            t0 = time.monotonic()
            cur.execute("INSERT INTO rp (k, v) VALUES (%s, 3)", (k,))
            cur.execute("SELECT sum(v), count(*) FROM rp WHERE k = %s", (k,))
            self.assertEqual(cur.fetchone(), (6, 3))
        c.commit()
        waited = time.monotonic() - t0
        totals = show_totals(self.sw)
        self.assertGreaterEqual(totals["replays_succeeded"], 1)
        with c.cursor() as cur:
            cur.execute("SELECT count(*) FROM rp WHERE k = %s", (k,))
            self.assertEqual(cur.fetchone()[0], 3)
            cur.execute("SELECT pg_is_in_recovery()")
            self.assertFalse(cur.fetchone()[0])
        c.rollback()
        sys.stderr.write(f"(replayed across the failover; the client waited {waited:.2f} s)\n")
        # A few seconds after the move, one event sums up what the clients went through.
        deadline = time.monotonic() + 15
        found = None
        while time.monotonic() < deadline and not found:
            a = psycopg2.connect(self.sw.dsn(user="admin", db="pgswitch"))
            try:
                a.autocommit = True
                with a.cursor() as cur:
                    cur.execute("SHOW EVENTS")
                    found = [r for r in cur.fetchall() if r[1] == "failover_clients"]
            finally:
                a.close()
            time.sleep(0.5)
        self.assertTrue(found, "no failover_clients event")
        self.assertIn("transactions replayed 1 of 1", found[-1][3])


if __name__ == "__main__":
    unittest.main()
