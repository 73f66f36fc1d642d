"""RELOAD applies backend renames and removals cleanly (issue 17, "never stuck"): pgswitch in
transaction mode in front of a primary and one streaming replica. Renaming the primary's
[[backend]] entry (same host:port, new name) and reloading must not leave the old name behind
as a second primary (split brain: every write held, then 57P03); renaming back, removing a
replica and adding it again work without a restart; and the whole cycle runs under a bounded
load with zero client errors. A removed backend is not health-checked, gets no reads, is not
shown by SHOW BACKENDS, and its server connections are closed once their clients moved on."""
from __future__ import annotations

import os
import sys
import threading
import time
import unittest
from contextlib import closing

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import PgCluster, PgSwitch  # noqa: E402
from proxycase import ProxyTestCase, budget  # noqa: E402

PERIOD_MS = 500
# Short, so that a write held by a split brain fails this test in seconds, not in 30.
FAILOVER_WAIT_MS = 4000


class RenamingSwitch(PgSwitch):
    """A PgSwitch whose [[backend]] names can be changed (`names`: node index -> name) and
    whose nodes can be left out (`omit`), both written by write_config()."""

    def __init__(self, cluster, **kw):
        self.names: dict[int, str] = {}
        self.omit: set[int] = set()
        super().__init__(cluster, **kw)

    def config_text(self) -> str:
        nodes = self.cluster.nodes
        try:
            self.cluster.nodes = [n for n in nodes if n.index not in self.omit]
            text = super().config_text()
        finally:
            self.cluster.nodes = nodes
        for i, name in self.names.items():
            text = text.replace(f'name = "pg{i + 1}"\n', f'name = "{name}"\n')
        return text


class ReloadBackendsTest(ProxyTestCase):
    cluster: PgCluster
    sw: RenamingSwitch
    default_budget = 60.0

    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster(replicas=1).start()
        try:
            cls.cluster.psql(0, "CREATE TABLE reload_t(id serial PRIMARY KEY, v int); "
                                "GRANT ALL ON reload_t, reload_t_id_seq TO app", db="appdb")
            cls.cluster.wait_replicated()
            cls.sw = RenamingSwitch(
                cls.cluster, pool_mode="transaction", workers=2, health_period_ms=PERIOD_MS,
                extra_toml=f"[failover]\nfailover_wait_ms = {FAILOVER_WAIT_MS}\n")
        except BaseException:
            try:
                if getattr(cls, "sw", None):
                    cls.sw.stop()
            finally:
                cls.cluster.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.sw.stop()
        finally:
            cls.cluster.stop()

    def setUp(self):
        super().setUp()
        # Every test starts from the file as first written: pg1 primary, pg2 replica.
        if self.sw.names or self.sw.omit:
            self.sw.names, self.sw.omit = {}, set()
            self.reload()
        self.wait_topology({"pg1": "primary", "pg2": "replica"})

    # -- helpers ------------------------------------------------------------------------------
    def reload(self, names=None, omit=None):
        if names is not None:
            self.sw.names = dict(names)
        if omit is not None:
            self.sw.omit = set(omit)
        self.sw.write_config()
        with closing(self.console()) as con, con.cursor() as cur:
            cur.execute("RELOAD")

    def wait_topology(self, want: dict[str, str], timeout=10.0):
        """SHOW BACKENDS lists exactly the backends of `want` (name -> role), all up."""
        def check():
            b = self.backends()
            got = {n: r["role"] for n, r in b.items() if r["state"] == "up"}
            return b if got == want and set(b) == set(want) else None
        return self.wait_for(check, timeout, f"SHOW BACKENDS = {want}")

    def health_checks_on(self, node: int) -> int:
        return int(self.cluster.psql(
            node, "SELECT count(*) FROM pg_stat_activity "
                  "WHERE application_name = 'pgswitch_health'"))

    def app_servers_on(self, node: int) -> int:
        return int(self.cluster.psql(
            node, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'"))

    def login_and_write(self) -> float:
        """A new login and a write through pgswitch; returns how long it took."""
        t0 = time.monotonic()
        with closing(psycopg2.connect(self.sw.dsn())) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("INSERT INTO reload_t(v) VALUES (1) RETURNING inet_server_port()")
                self.assertEqual(cur.fetchone()[0], self.cluster.port_of(0))
        return time.monotonic() - t0

    def writes_keep_working(self, seconds: float):
        """Logins and writes, one after the other for `seconds`: each one done within a
        health period (plus slack for a loaded machine)."""
        stop = time.monotonic() + seconds
        n = 0
        while time.monotonic() < stop:
            took = self.login_and_write()
            self.assertLess(took, PERIOD_MS / 1000 + 1.0, f"a login and write took {took:.1f}s")
            n += 1
            time.sleep(0.1)
        return n

    def read_ports(self, n=30) -> set[int]:
        with closing(psycopg2.connect(self.sw.dsn())) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                ports = set()
                for _ in range(n):
                    cur.execute("SELECT inet_server_port()")
                    ports.add(cur.fetchone()[0])
                return ports

    # -- tests --------------------------------------------------------------------------------
    def test_01_rename_primary_and_back(self):
        self.login_and_write()  # pools of pg1 are in use before the rename
        self.reload(names={0: "main"})
        # Right after RELOAD and for a while (the new health checks settle meanwhile).
        self.writes_keep_working(2 * PERIOD_MS / 1000 + 1.0)
        self.wait_topology({"main": "primary", "pg2": "replica"})
        # One health check connection to the primary, not one per name.
        self.wait_for(lambda: self.health_checks_on(0) == 1, what="one health check on node 0")
        time.sleep(2 * PERIOD_MS / 1000)
        self.assertEqual(self.health_checks_on(0), 1)
        # The old name's server connections close once their clients moved on.
        self.wait_for(lambda: not [s for s in self.rows("SHOW SERVERS") if s["backend"] == "pg1"],
                      what="no server connection of pg1")
        with closing(self.console()) as con, con.cursor() as cur:
            with self.assertRaises(psycopg2.Error) as cm:
                cur.execute("DISABLE pg1")
            self.assertEqual(cm.exception.pgcode, "42704")

        self.reload(names={})  # back to pg1: the old slot is taken again
        self.writes_keep_working(2 * PERIOD_MS / 1000 + 1.0)
        self.wait_topology({"pg1": "primary", "pg2": "replica"})
        self.wait_for(lambda: self.health_checks_on(0) == 1, what="one health check on node 0")
        self.wait_for(lambda: not [s for s in self.rows("SHOW SERVERS") if s["backend"] == "main"],
                      what="no server connection of main")
        events = [(e["type"], e["backend"]) for e in self.rows("SHOW EVENTS")]
        self.assertNotIn("split_brain", [t for t, _ in events], events)

    def test_02_remove_and_readd_replica(self):
        replica = self.cluster.port_of(1)
        self.wait_for(lambda: replica in self.read_ports(), what="reads on the replica")
        self.reload(omit={1})
        self.wait_topology({"pg1": "primary"})
        self.wait_for(lambda: self.health_checks_on(1) == 0, what="no health check on node 1")
        self.assertEqual(self.read_ports(), {self.cluster.port_of(0)})
        self.wait_for(lambda: self.app_servers_on(1) == 0,
                      what="no server connection on the removed replica")
        time.sleep(2 * PERIOD_MS / 1000)
        self.assertEqual(self.health_checks_on(1), 0, "a removed backend is still checked")
        self.assertEqual(self.read_ports(), {self.cluster.port_of(0)})
        self.writes_keep_working(0.5)

        self.reload(omit=set())  # added again: same name, same slot
        self.wait_topology({"pg1": "primary", "pg2": "replica"})
        self.wait_for(lambda: replica in self.read_ports(), what="reads on the replica again")
        self.assertEqual(self.health_checks_on(1), 1)

    @budget(90)
    def test_03_rename_remove_readd_under_load(self):
        """Short transactions and reads on four connections for a bounded time while the
        backends are renamed, removed and added again: no client sees an error."""
        stop = time.monotonic() + 12
        errors: list[str] = []
        done = [0] * 4

        def client(i):
            try:
                with closing(psycopg2.connect(self.sw.dsn(application_name=f"load{i}"))) as conn:
                    cur = conn.cursor()
                    while time.monotonic() < stop and done[i] < 20000:
                        if done[i] % 2:
                            conn.autocommit = True
                            cur.execute("SELECT count(*) FROM reload_t WHERE id < 10")
                            cur.fetchone()
                        else:
                            conn.autocommit = False
                            cur.execute("INSERT INTO reload_t(v) VALUES (%s) RETURNING id", (i,))
                            cur.fetchone()
                            cur.execute("SELECT v FROM reload_t WHERE id < 3")
                            cur.fetchall()
                            conn.commit()
                        done[i] += 1
            except psycopg2.Error as e:
                errors.append(f"client {i} after {done[i]}: {e.pgcode} {e}".strip())

        def new_logins():
            n = 0
            try:
                while time.monotonic() < stop and n < 2000:
                    self.login_and_write()
                    n += 1
                    time.sleep(0.05)
            except (psycopg2.Error, AssertionError) as e:
                errors.append(f"login {n}: {e}")

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
        threads.append(threading.Thread(target=new_logins, daemon=True))
        for t in threads:
            t.start()
        steps = [dict(names={0: "main"}), dict(names={}), dict(omit={1}), dict(omit=set()),
                 dict(names={1: "standby"}), dict(names={}), dict(names={0: "main"}, omit={1}),
                 dict(names={}, omit=set())]
        try:
            for step in steps:
                if time.monotonic() > stop - 1:
                    break
                self.reload(**step)
                time.sleep(1.2)
        finally:
            for t in threads:
                t.join(30)
        self.assertFalse(any(t.is_alive() for t in threads), "a load thread did not finish")
        self.assertEqual(errors, [])
        self.assertGreater(sum(done), 100, done)
        self.wait_topology({"pg1": "primary", "pg2": "replica"})


if __name__ == "__main__":
    unittest.main()
