"""Bad input from a *server*: pgswitch in front of a fake PostgreSQL (fakepg.py) that answers
chosen queries with malformed or out-of-place messages, or drops the connection mid-result.
The client must get an ErrorResponse (connection class 08, or XX000 for what the server got
wrong) or a clean close within seconds, never a hang; pgswitch must stay up; the broken
server connection must not be reused, so the next query (on the same client connection when
it stayed open, else on a new one) works. A real PostgreSQL cannot be made to do this, hence
the fake; everything else in the suite runs against real servers."""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import unittest
from pathlib import Path
from types import SimpleNamespace

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakepg import MISBEHAVIOURS, FakePg  # noqa: E402
from pgwire import PgWire, msg, parse_error_fields  # noqa: E402
from pgcluster import PgSwitch  # noqa: E402
from proxycase import ProxyTestCase, budget  # noqa: E402

BENIGN: set[str] = set()  # misbehaviours the client need not hear about (none so far)


class ServerGarbageTest(ProxyTestCase):
    default_budget = 120.0

    @classmethod
    def setUpClass(cls):
        cls.fake = FakePg()
        cls.tmp = tempfile.TemporaryDirectory(prefix="pgswitch-test-")
        cluster = SimpleNamespace(nodes=[SimpleNamespace(index=0, port=cls.fake.port)],
                                  tmpdir=Path(cls.tmp.name))
        try:
            cls.switches = {mode: PgSwitch(cluster, pool_mode=mode, health_period_ms=200)
                            for mode in ("transaction", "session")}
        except BaseException:
            cls.fake.stop()
            cls.tmp.cleanup()
            raise
        cls.sw = cls.switches["transaction"]

    @classmethod
    def tearDownClass(cls):
        try:
            for sw in cls.switches.values():
                sw.stop()
        finally:
            cls.fake.stop()
            cls.tmp.cleanup()

    def one(self, sw: PgSwitch, name: str) -> None:
        conn = psycopg2.connect(sw.dsn(connect_timeout=5))
        conn.autocommit = True
        outcome = {}

        def run():
            try:
                with conn.cursor() as cur:
                    cur.execute(f"SELECT 'bad:{name}'")
                    outcome["rows"] = cur.fetchall()
            except psycopg2.Error as e:
                outcome["error"] = e
        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(10)
        try:
            self.assertFalse(t.is_alive(), f"{name}: no answer within 10 s")
            if name in BENIGN:
                self.assertNotIn("error", outcome, outcome)
            else:
                err = outcome.get("error")
                self.assertIsNotNone(err, f"{name}: no error, got {outcome}")
                if err.pgcode is not None:  # None: the connection was closed cleanly
                    self.assertTrue(err.pgcode.startswith("08") or err.pgcode == "XX000",
                                    f"{name}: {err.pgcode} {err}")
            self.assertTrue(sw.running(), f"pgswitch exited after {name}")
            if not conn.closed:
                with conn.cursor() as cur:  # the connection stays usable
                    cur.execute("SELECT 1")
                    self.assertEqual(cur.fetchone()[0], "1")
        finally:
            conn.close()
        with closing_conn(sw) as other, other.cursor() as cur:
            cur.execute("SELECT 1")
            self.assertEqual(cur.fetchone()[0], "1")

    def check_mode(self, mode: str) -> None:
        self.fake.misbehaved.clear()
        for name in MISBEHAVIOURS:
            with self.subTest(mode=mode, misbehaviour=name):
                self.one(self.switches[mode], name)
        # Each reached the server (a lone read may reach it twice: pgswitch retries a read
        # whose server vanished before answering).
        self.assertEqual(set(self.fake.misbehaved), set(MISBEHAVIOURS))

    @budget(150)
    def test_transaction_mode(self):
        self.check_mode("transaction")

    @budget(150)
    def test_session_mode(self):
        self.check_mode("session")

    @budget(60)
    def test_commit_in_flight_is_outcome_unknown(self):
        """The server vanishes while a COMMIT is in flight: the client gets 08007 ("may or may
        not have committed"), not the "safe to retry" 08006, also when the COMMIT carries a
        leading comment or routing hint; work lost before its COMMIT gets 08006."""
        cases = [("COMMIT", "08007"), ("/* pgswitch: primary */ COMMIT", "08007"),
                 ("-- app tag\n  end", "08007"), ("SELECT 'still in the transaction'", None)]
        for sql, code in cases:
            with self.subTest(sql=sql):
                conn = psycopg2.connect(self.sw.dsn(connect_timeout=5))
                try:
                    with conn.cursor() as cur:
                        cur.execute("SELECT 1")  # psycopg2 opens the transaction with BEGIN
                        if code is None:
                            cur.execute(sql)
                            self.assertEqual(cur.fetchone()[0], "1")
                            continue
                        with self.assertRaises(psycopg2.Error) as cm:
                            cur.execute(sql)
                        self.assertEqual(cm.exception.pgcode, code, str(cm.exception))
                    conn.rollback()
                    with conn.cursor() as cur:  # the connection stays usable
                        cur.execute("SELECT 1")
                        self.assertEqual(cur.fetchone()[0], "1")
                finally:
                    conn.close()
        # The same COMMIT over the extended protocol (as pgjdbc commits), in both pool modes.
        for mode, sw in self.switches.items():
            with self.subTest(mode=mode, protocol="extended"):
                w = PgWire(port=sw.port, timeout=10)
                try:
                    w.startup("app", "appdb", "app")
                    w.query("BEGIN")
                    parse = msg(b"P", b"\0COMMIT\0\0\0")
                    bind = msg(b"B", b"\0\0" + b"\0\0" + b"\0\0" + b"\0\0")
                    execute = msg(b"E", b"\0" + b"\0\0\0\0")
                    w.send(parse + bind + execute + msg(b"S"))
                    t, p = w.read_msg()
                    self.assertEqual(t, b"E", (t, p))
                    self.assertEqual(parse_error_fields(p).get("C"), "08007", p)
                finally:
                    w.close()
        # Work lost before any COMMIT was sent is safe to retry.
        conn = psycopg2.connect(self.sw.dsn(connect_timeout=5))
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
            with self.assertRaises(psycopg2.Error) as cm, conn.cursor() as cur:
                cur.execute("SELECT 'bad:close_at_once'")
            self.assertEqual(cm.exception.pgcode, "08006", str(cm.exception))
        finally:
            conn.close()


class CommitThenFatalTest(ProxyTestCase):
    """Default consistency ("strong") holds a write transaction's final ReadyForQuery until its
    LSN is known. A dying primary's backend answers the COMMIT and sends FATAL 57P01 right
    behind it, in one packet: the client must still get its COMMIT's answer at once (found by
    the chaos test, where such a COMMIT waited forever). A second, unreachable backend makes
    pgswitch hold the ReadyForQuery (with one backend nothing could read stale data)."""
    default_budget = 60.0

    @classmethod
    def setUpClass(cls):
        cls.fake = FakePg()
        cls.tmp = tempfile.TemporaryDirectory(prefix="pgswitch-test-")
        from pgcluster import free_port
        cluster = SimpleNamespace(nodes=[SimpleNamespace(index=0, port=cls.fake.port),
                                         SimpleNamespace(index=1, port=free_port())],
                                  tmpdir=Path(cls.tmp.name))
        try:
            cls.sw = PgSwitch(cluster, pool_mode="transaction", health_period_ms=200)
        except BaseException:
            cls.fake.stop()
            cls.tmp.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.sw.stop()
        finally:
            cls.fake.stop()
            cls.tmp.cleanup()

    @budget(60)
    def test_commit_answered_when_fatal_follows(self):
        conn = psycopg2.connect(self.sw.dsn(connect_timeout=5))
        outcome = {}

        def run():
            try:
                with conn.cursor() as cur:  # psycopg2 opens the transaction with BEGIN
                    cur.execute("INSERT INTO commit_then_fatal VALUES (1)")
                conn.commit()
                outcome["ok"] = True
            except psycopg2.Error as e:
                outcome["error"] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(10)
        try:
            self.assertFalse(t.is_alive(), "the COMMIT got no answer within 10 s")
            self.assertEqual(outcome, {"ok": True})
            self.assertIn("commit_then_fatal", self.fake.misbehaved)
            with closing_conn(self.sw) as c2, c2.cursor() as cur:  # pgswitch still serves
                cur.execute("SELECT 1")
                self.assertEqual(cur.fetchone()[0], "1")
        finally:
            conn.close()


class closing_conn:
    def __init__(self, sw: PgSwitch):
        self.conn = psycopg2.connect(sw.dsn(connect_timeout=5))
        self.conn.autocommit = True

    def __enter__(self):
        return self.conn

    def __exit__(self, *exc):
        self.conn.close()


if __name__ == "__main__":
    unittest.main()
