"""Transparency (issue 12): an application cannot tell pgswitch from one PostgreSQL.

Cancels: PostgreSQL ignores a CancelRequest that arrives while the backend is idle. pgswitch
used to forward it anyway, late (it opens a connection to the backend first), so psycopg2's
`conn.cancel()` on an idle connection cancelled the *next* query (57014). A cancel for a
client with nothing in flight is now dropped, and one whose request ended while it was being
forwarded is not sent.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import unittest

import psycopg2
import psycopg2.extensions

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import PgCluster, PgSwitch  # noqa: E402
from proxycase import ProxyTestCase, budget  # noqa: E402


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


if __name__ == "__main__":
    unittest.main()
