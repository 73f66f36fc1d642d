"""Volatile functions (issue 12, item 4): a SELECT calling an application's own function that
writes runs on the primary with no configuration, because pgswitch reads which functions are
volatile (pg_proc.provolatile) in each database clients use. Not by the 25006 retry: the
readonly_retries total stays 0 while volatile_function_routes rises. A volatile function
trusted in routing.read_only_functions stays on the replicas."""
from __future__ import annotations

import os
import sys
import time
import unittest
from contextlib import closing

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import PgCluster, PgSwitch  # noqa: E402
from proxycase import ProxyTestCase, budget, show_totals  # noqa: E402


def totals(sw: PgSwitch) -> dict:
    return show_totals(sw)


def wait_catalog_reads(sw: PgSwitch, at_least: int, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while True:
        n = totals(sw)["function_catalog_reads"]
        if n >= at_least:
            return n
        if time.monotonic() > deadline:
            raise AssertionError(f"function_catalog_reads stayed at {n} (< {at_least})")
        time.sleep(0.05)


def settled_catalog_reads(sw: PgSwitch, quiet: float = 1.3, timeout: float = 10) -> int:
    """The count once no read happened for `quiet` seconds (a read still owed to earlier DDL
    must not be mistaken for the one a test waits for)."""
    deadline = time.monotonic() + timeout
    n, since = totals(sw)["function_catalog_reads"], time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError("function catalog reads never settled")
        time.sleep(0.1)
        m = totals(sw)["function_catalog_reads"]
        if m != n:
            n, since = m, time.monotonic()
    return n


class VolatileFunctionCase(ProxyTestCase):
    default_budget = 60.0

    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster(replicas=2).start()
        try:
            cls.cluster.psql(0, "CREATE TABLE IF NOT EXISTS vf_t (id serial, port int)",
                             db="appdb", user="app")
            cls.cluster.wait_replicated()
            # Default settings: function_refresh_ms is 30 s, longer than this test takes, so
            # only the CREATE FUNCTION passing through pgswitch can make it read again.
            cls.sw = PgSwitch(cls.cluster, pool_mode="transaction", workers=2)
        except BaseException:
            cls.cluster.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.sw.stop()
        finally:
            cls.cluster.stop()

    def row_count(self) -> int:
        return int(self.cluster.psql(0, "SELECT count(*) FROM vf_t", db="appdb", user="app"))

    def ports(self, cur, sql: str, n: int) -> set:
        out = set()
        for _ in range(n):
            cur.execute(sql)
            out.add(cur.fetchone()[0])
        return out

    @budget(60)
    def test_writing_function_created_through_pgswitch_runs_on_the_primary(self):
        primary = self.cluster.port_of(0)
        replicas = {self.cluster.port_of(1), self.cluster.port_of(2)}
        with closing(psycopg2.connect(self.sw.dsn())) as conn:
            conn.autocommit = True
            cur = conn.cursor()
            # The first login to appdb registers the database; its catalog is read at once.
            self.cluster.wait_replicated()  # the other tests' writes (see below)
            self.assertTrue(self.ports(cur, "SELECT inet_server_port()", 10) <= replicas)
            wait_catalog_reads(self.sw, 1)
            r0 = settled_catalog_reads(self.sw)
            before = totals(self.sw)
            cur.execute("CREATE OR REPLACE FUNCTION my_write_fn() RETURNS int LANGUAGE plpgsql "
                        "AS $$ BEGIN INSERT INTO vf_t (port) VALUES (inet_server_port()); "
                        "RETURN inet_server_port(); END $$")
            # Read again shortly after the CREATE FUNCTION (and once more a second later).
            wait_catalog_reads(self.sw, r0 + 2)
            rows0 = self.row_count()
            self.assertEqual(self.ports(cur, "SELECT my_write_fn()", 20), {primary})
            self.assertEqual(cur.description[0].name, "my_write_fn")
            # Qualified, nested, inside a subquery: still the primary.
            self.assertEqual(self.ports(cur, "SELECT (SELECT public.MY_WRITE_FN()) + 0", 5),
                             {primary})
            # Reads that call no volatile function of theirs still use the replicas, once they
            # have replayed those writes (strong consistency waits only routing.max_wait_ms for
            # a replica, then reads on the primary: on a loaded machine it did, now and then).
            self.cluster.wait_replicated()
            self.assertTrue(self.ports(cur, "SELECT inet_server_port()", 20) <= replicas)
            self.assertEqual(self.row_count() - rows0, 25)
        after = totals(self.sw)
        self.assertEqual(after["readonly_retries"], 0)
        self.assertEqual(after["readonly_retries"], before["readonly_retries"])
        self.assertGreaterEqual(after["volatile_function_routes"] -
                                before["volatile_function_routes"], 25)

    @budget(60)
    def test_function_created_inside_a_transaction(self):
        # BEGIN; CREATE FUNCTION ...; COMMIT through pgswitch (what migration tools do): the
        # CREATE is not the routed request, but the session sees it and asks for a read once
        # the transaction is over.
        primary = self.cluster.port_of(0)
        with closing(psycopg2.connect(self.sw.dsn())) as conn:
            conn.autocommit = True
            conn.cursor().execute("SELECT 1")
        wait_catalog_reads(self.sw, 1)
        r0 = settled_catalog_reads(self.sw)
        with closing(psycopg2.connect(self.sw.dsn())) as conn:
            with conn.cursor() as cur:  # psycopg2 sends BEGIN first
                cur.execute("CREATE TABLE IF NOT EXISTS vf_txn (id int)")
                cur.execute("CREATE OR REPLACE FUNCTION txn_write_fn() RETURNS int "
                            "LANGUAGE plpgsql AS $$ BEGIN INSERT INTO vf_txn VALUES (1); "
                            "RETURN inet_server_port(); END $$")
            conn.commit()
            wait_catalog_reads(self.sw, r0 + 1)
            conn.autocommit = True
            before = totals(self.sw)
            with conn.cursor() as cur:
                self.assertEqual(self.ports(cur, "SELECT txn_write_fn()", 10), {primary})
        after = totals(self.sw)
        self.assertEqual(after["readonly_retries"], before["readonly_retries"])

    @budget(60)
    def test_extended_protocol_call_runs_on_the_primary(self):
        import psycopg  # psycopg 3: Parse/Bind/Execute/Sync
        primary = self.cluster.port_of(0)
        self.cluster.psql(0, "CREATE OR REPLACE FUNCTION ext_write_fn(p int) RETURNS int "
                             "LANGUAGE plpgsql AS $$ BEGIN INSERT INTO vf_t (port) "
                             "VALUES (p); RETURN inet_server_port(); END $$",
                          db="appdb", user="app")
        self.cluster.wait_replicated()
        with closing(psycopg2.connect(self.sw.dsn())) as conn:
            conn.autocommit = True
            conn.cursor().execute("DROP FUNCTION IF EXISTS no_such_fn_here()")  # a stale mark
        r = totals(self.sw)["function_catalog_reads"]
        wait_catalog_reads(self.sw, r + 1)
        with psycopg.connect(self.sw.dsn(), autocommit=True) as conn:
            for i in range(10):
                got = conn.execute("SELECT ext_write_fn(%s)", (i,), prepare=True).fetchone()
                self.assertEqual(got[0], primary)
        # Pipelined behind a read that runs on a replica: the call waits for that read's
        # ReadyForQuery and is routed afresh, to the primary (not 25006 on the replica).
        from pgwire import PgWire, parse_error_fields, query_msg
        with PgWire(port=self.sw.port) as w:
            w.startup("app", "appdb", "app")
            for i in range(10):
                w.send(query_msg("SELECT inet_server_port()") +
                       query_msg(f"SELECT ext_write_fn({i})") + query_msg("SELECT 3"))
                ready, rows = 0, []
                while ready < 3:
                    t, p = w.read_msg()
                    if t == b"E":
                        self.fail(f"pipelined request failed: {parse_error_fields(p)}")
                    if t == b"D":
                        rows.append(p)
                    ready += t == b"Z"
                # DataRow: int16 count, int32 length, text
                self.assertEqual(int(rows[1][6:].decode()), primary)
        self.assertEqual(totals(self.sw)["readonly_retries"], 0)

    @budget(90)
    def test_trusted_volatile_function_stays_on_replicas(self):
        primary = self.cluster.port_of(0)
        replicas = {self.cluster.port_of(1), self.cluster.port_of(2)}
        body = "RETURNS int LANGUAGE sql VOLATILE AS $$ SELECT inet_server_port() $$"
        self.cluster.psql(0, f"CREATE OR REPLACE FUNCTION trusted_volatile_fn() {body}; "
                             f"CREATE OR REPLACE FUNCTION untrusted_volatile_fn() {body}",
                          db="appdb", user="app")
        self.cluster.wait_replicated()
        sw = PgSwitch(self.cluster, pool_mode="transaction", workers=1,
                      extra_toml='[routing]\nread_only_functions = ["Trusted_Volatile_Fn"]\n'
                                 'function_refresh_ms = 500\n')
        try:
            with closing(psycopg2.connect(sw.dsn())) as conn:
                conn.autocommit = True
                cur = conn.cursor()
                cur.execute("SELECT 1")
                wait_catalog_reads(sw, 1)
                self.assertEqual(self.ports(cur, "SELECT trusted_volatile_fn()", 40), replicas)
                self.assertEqual(self.ports(cur, "SELECT untrusted_volatile_fn()", 10),
                                 {primary})
                # Created outside pgswitch: seen after the refresh period.
                self.cluster.psql(0, f"CREATE OR REPLACE FUNCTION late_volatile_fn() {body}",
                                  db="appdb", user="app")
                self.cluster.wait_replicated()
                wait_catalog_reads(sw, totals(sw)["function_catalog_reads"] + 1)
                self.assertEqual(self.ports(cur, "SELECT late_volatile_fn()", 10), {primary})
                # A stable function is read-only by PostgreSQL's rules: replicas.
                self.cluster.psql(0, "CREATE OR REPLACE FUNCTION stable_fn() RETURNS int "
                                     "LANGUAGE sql STABLE AS $$ SELECT inet_server_port() $$",
                                  db="appdb", user="app")
                self.cluster.wait_replicated()
                self.assertEqual(self.ports(cur, "SELECT stable_fn()", 40), replicas)
            t = totals(sw)
            self.assertEqual(t["readonly_retries"], 0)
            self.assertGreaterEqual(t["volatile_function_routes"], 20)
        finally:
            sw.stop()


if __name__ == "__main__":
    unittest.main()
