"""Several pgswitch instances, one decision ([coordination], docs/deploy.md): a real etcd, one
primary and two replicas, three instances with `auto_failover = true` agreeing through etcd.
Only the instance holding the etcd leader key promotes; the others adopt its decision.

Runs in order: (1) etcd stopped: writes to the healthy primary go on, and when the primary then
dies nobody promotes and SHOW EVENTS says why; the primary and etcd come back. (2) kill -9 of
the primary under load: exactly one promotion, all three instances route writes to the new
primary. (3) kill -9 of the new primary and at once of the lease-holding pgswitch: another
instance takes the leader key once the lease expires and completes the failover."""
from __future__ import annotations

import os
import sys
import threading
import time
import unittest
from contextlib import closing

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from etcd_server import EtcdServer  # noqa: E402
from pgcluster import HOST, PgCluster, PgSwitch  # noqa: E402
from proxycase import ProxyTestCase, budget  # noqa: E402

PERIOD_MS = 250
TTL_MS = 2000
FAILOVER_WINDOW = 10.0  # seconds from kill -9 until every instance writes to the new primary
CONFIG = """[failover]
auto_failover = true
failover_after = 3
repoint_replicas = true
failover_wait_ms = 15000

[coordination]
etcd = ["{url}"]
prefix = "/pgswitch/test"
name = "{name}"
lease_ttl_ms = {ttl}
timeout_ms = 500
"""


def wait_for(pred, timeout: float, what: str, step: float = 0.05):
    """pred() until truthy (returned) or `timeout` seconds (AssertionError)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except psycopg2.Error as e:
            last = e
        else:
            if last:
                return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what} (last: {last!r})")


class CoordinationTest(ProxyTestCase):
    default_budget = 45.0
    sws: list[PgSwitch]

    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster(replicas=2).start()
        cls.sws = []
        cls.etcd = None
        try:
            cls.etcd = EtcdServer(cls.cluster.tmpdir).start()
            cls.cluster.psql(0, "CREATE TABLE coord (id serial PRIMARY KEY, via text); "
                                "GRANT ALL ON coord, coord_id_seq TO app", db="appdb")
            cls.cluster.wait_replicated()
            for i in range(3):
                cls.sws.append(PgSwitch(
                    cls.cluster, pool_mode="transaction", health_period_ms=PERIOD_MS,
                    extra_toml=CONFIG.format(url=cls.etcd.url, name=f"sw{i}", ttl=TTL_MS)))
            cls.sw = cls.sws[0]  # what ProxyTestCase watches
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for sw in cls.sws:
            sw.kill()
        cls.sws = []
        cls.sw = None
        if cls.etcd is not None:
            cls.etcd.stop()
        cls.cluster.stop()

    # -- console -------------------------------------------------------------------------------
    def console(self, sw: PgSwitch, sql: str) -> list[tuple]:
        conn = psycopg2.connect(host=HOST, port=sw.port, dbname="pgswitch", user="admin",
                                password="admin", connect_timeout=3)
        conn.autocommit = True
        with closing(conn):
            cur = conn.cursor()
            cur.execute(sql)
            return cur.fetchall()

    def coordination(self, sw: PgSwitch) -> dict:
        return dict(self.console(sw, "SHOW COORDINATION"))

    def leaders(self) -> list[PgSwitch]:
        return [sw for sw in self.sws if sw.running()
                and self.coordination(sw).get("leader") == "yes"]

    def one_leader(self, timeout: float) -> PgSwitch:
        def only():
            found = self.leaders()
            return found[0] if len(found) == 1 else None
        return wait_for(only, timeout, "exactly one coordination leader")

    def events(self, sw: PgSwitch) -> list[tuple[str, str, str]]:
        return [(t, b, d) for _, t, b, d in self.console(sw, "SHOW EVENTS")]

    def count(self, sw: PgSwitch, kind: str) -> int:
        return sum(1 for t, _, _ in self.events(sw) if t == kind)

    def primary_of(self, sw: PgSwitch) -> str | None:
        conn = psycopg2.connect(host=HOST, port=sw.port, dbname="pgswitch", user="admin",
                                password="admin", connect_timeout=3)
        conn.autocommit = True
        with closing(conn):
            cur = conn.cursor()
            cur.execute("SHOW BACKENDS")
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        prim = [r["name"] for r in rows if r["role"] == "primary" and r["state"] == "up"]
        return prim[0] if len(prim) == 1 else None

    def write(self, sw: PgSwitch, via: str, timeout: int = 3) -> int:
        conn = psycopg2.connect(sw.dsn() + f" connect_timeout={timeout}")
        conn.autocommit = True
        with closing(conn):
            cur = conn.cursor()
            cur.execute("INSERT INTO coord (via) VALUES (%s) RETURNING inet_server_port()",
                        (via,))
            return cur.fetchone()[0]

    def writes_go_to(self, sws, port: int, timeout: float, via: str):
        for sw in sws:
            wait_for(lambda sw=sw: self.write(sw, via) == port, timeout,
                     f"writes through {sw} on port {port}", step=0.1)

    def load(self, stop: threading.Event, counts: dict):
        """Bounded load: one writer per instance, at most 40 s, until `stop`."""
        def writer(sw: PgSwitch):
            end = time.monotonic() + 40
            while not stop.is_set() and time.monotonic() < end:
                try:
                    self.write(sw, "load", timeout=2)
                    counts[sw.port] = counts.get(sw.port, 0) + 1
                except psycopg2.Error:
                    time.sleep(0.05)
                time.sleep(0.02)
        threads = [threading.Thread(target=writer, args=(sw,), daemon=True) for sw in self.sws]
        for t in threads:
            t.start()
        return threads

    def running_nodes_in_recovery(self) -> dict[int, bool]:
        return {i: self.cluster.is_in_recovery(i) for i in range(3) if self.cluster.is_running(i)}

    # -- tests ---------------------------------------------------------------------------------
    @budget(60)
    def test_1_etcd_stopped_no_promotion(self):
        cluster, sws = self.cluster, self.sws
        self.one_leader(10)
        for sw in sws:
            self.assertEqual(self.write(sw, "before"), cluster.port_of(0))
        self.etcd.stop()
        # Nobody may promote once its lease could have expired: the holder stops by itself.
        wait_for(lambda: all(self.coordination(sw)["leader"] == "no" and
                             self.coordination(sw)["may_promote"].startswith(
                                 "no: coordination: etcd unreachable") for sw in sws),
                 TTL_MS / 1000 + 5, "every instance refusing to promote: etcd unreachable")
        for sw in sws:
            self.assertGreaterEqual(self.count(sw, "etcd_unreachable"), 1)
            # Traffic to the healthy primary goes on.
            self.assertEqual(self.write(sw, "etcd down"), cluster.port_of(0))
        cluster.kill9(0)
        wait_for(lambda: all(any(t == "failover_refused" and "coordination: etcd unreachable" in d
                                 for t, _, d in self.events(sw)) for sw in sws),
                 FAILOVER_WINDOW, "failover_refused (etcd unreachable) on every instance")
        time.sleep(1.0)  # well past failover_after: still nobody promoted
        self.assertEqual(self.running_nodes_in_recovery(), {1: True, 2: True})
        for sw in sws:
            self.assertEqual(self.count(sw, "promoted"), 0)
        # The primary and etcd come back; writes resume there and one instance leads again.
        cluster.start_node(0)
        self.writes_go_to(sws, cluster.port_of(0), 20, "primary back")
        self.etcd.start()
        self.one_leader(TTL_MS / 1000 + 8)
        cluster.wait_replicated()
        cluster.wait_streaming(20)

    @budget(45)
    def test_2_failover_under_load_one_promotion(self):
        cluster, sws = self.cluster, self.sws
        leader = self.one_leader(10)

        def agreed():
            p = [self.primary_of(sw) for sw in sws]
            return p[0] if len(set(p)) == 1 and p[0] not in (None, "pg1") else None

        stop, counts = threading.Event(), {}
        threads = self.load(stop, counts)
        try:
            time.sleep(0.5)
            cluster.kill9(0)
            t0 = time.monotonic()
            new = wait_for(agreed, FAILOVER_WINDOW, "all three instances publishing one primary")
            new_index = int(new[2:]) - 1
            left = FAILOVER_WINDOW - (time.monotonic() - t0)
            self.writes_go_to(sws, cluster.port_of(new_index), left, "after failover")
            took = time.monotonic() - t0
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        # Exactly one pg_promote: one replica left recovery, one promoted event in all three
        # consoles together, on the leader.
        other = 3 - new_index
        self.assertEqual(self.running_nodes_in_recovery(), {new_index: False, other: True})
        promoted = {sw.port: self.count(sw, "promoted") for sw in sws}
        self.assertEqual(sum(promoted.values()), 1, promoted)
        self.assertEqual(promoted[leader.port], 1, promoted)
        self.assertTrue(any(t == "decision_written" and new in d
                            for t, _, d in self.events(leader)))
        for sw in sws:
            if sw is not leader:
                self.assertTrue(any(t == "decision_adopted" and b == new
                                    for t, b, _ in self.events(sw)), self.events(sw))
        self.assertTrue(all(counts.get(sw.port, 0) > 0 for sw in sws), counts)
        # The other replica follows the new primary (repoint_replicas).
        wait_for(lambda: cluster.psql(new_index, "SELECT count(*) FROM pg_stat_replication "
                                                 "WHERE state = 'streaming'", check=False) == "1",
                 20, f"pg{other + 1} streaming from {new}")
        sys.stderr.write(f"\n(kill -9 of pg1 under load: all three instances wrote to {new} "
                         f"{took:.2f}s later; writes under load: {sorted(counts.values())})\n")

    @budget(45)
    def test_3_leader_killed_during_failover(self):
        cluster, sws = self.cluster, self.sws
        leader = self.one_leader(10)
        primary = wait_for(lambda: self.primary_of(leader), 5, "a primary")
        p_index = int(primary[2:]) - 1
        last = next(i for i in (1, 2) if i != p_index)
        # The remaining replica streams from the promoted one (checked by test 2).
        wait_for(lambda: cluster.psql(p_index, "SELECT count(*) FROM pg_stat_replication "
                                               "WHERE state = 'streaming'", check=False) == "1",
                 20, f"pg{last + 1} streaming from {primary}")
        before = {sw.port: self.count(sw, "promoted") for sw in sws}
        dead_log_promoted = leader.log().count("event=promoted")
        cluster.kill9(p_index)
        leader.kill()  # kill -9 of the lease holder: it never gets to promote
        t0 = time.monotonic()
        survivors = [sw for sw in sws if sw is not leader]
        target = f"pg{last + 1}"
        wait_for(lambda: all(self.primary_of(sw) == target for sw in survivors),
                 TTL_MS / 1000 + FAILOVER_WINDOW, f"both survivors publishing {target}")
        self.writes_go_to(survivors, cluster.port_of(last), 5, "after leader died")
        took = time.monotonic() - t0
        self.assertFalse(cluster.is_in_recovery(last))
        after = {sw.port: self.count(sw, "promoted") for sw in survivors}
        new_promotions = sum(after[p] - before[p] for p in after)
        self.assertEqual(new_promotions, 1, (before, after))
        self.assertEqual(leader.log().count("event=promoted"), dead_log_promoted)
        promoter = next(sw for sw in survivors if after[sw.port] > before[sw.port])
        self.assertEqual(self.coordination(promoter)["leader"], "yes")
        sys.stderr.write(f"\n(kill -9 of {primary} and of the leading pgswitch: "
                         f"{promoter} took over and both survivors wrote to {target} "
                         f"{took:.2f}s later)\n")
        leader.start()  # the instance ProxyTestCase watches may be this one


if __name__ == "__main__":
    unittest.main()
