"""Failover in the health monitor, through health_probe_tool against real clusters:
a planned switchover under load from a writer that behaves like the proxy (it holds writes
while the topology says writes_paused) loses no acknowledged write; the other replica is
re-pointed and follows; a kill -9 of the new primary is failed over automatically (events,
the new topology within the target window, the old one fenced); an automatic failover is
refused when every replica is tagged no_promote, and PROMOTE still works by hand. The steps
of each class build on each other and run in order."""
from __future__ import annotations

import os
import sys
import threading
import time
import unittest

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import HOST, PgCluster  # noqa: E402
from test_health import HealthProbe, states, tool_path  # noqa: E402

PERIOD_MS = 500  # as test_health (HealthProbe passes it); fall 3
FAILOVER_AFTER = 3


def node_streams_from(cluster: PgCluster, upstream: int, app_name: str) -> bool:
    return cluster.psql(upstream, "SELECT count(*) FROM pg_stat_replication WHERE "
                        f"application_name = '{app_name}' AND state = 'streaming'",
                        check=False) == "1"


class ProxyLikeWriter(threading.Thread):
    """Writes rows to whatever the tool's last topology names as primary, one connection per
    primary; holds (does not fail) while writes_paused or no primary, like the proxy does.
    Remembers every acknowledged id."""

    def __init__(self, cluster: PgCluster, probe: HealthProbe):
        super().__init__(daemon=True)
        self.cluster, self.probe = cluster, probe
        self.stop = threading.Event()
        self.acked: list[int] = []
        self.errors: list[str] = []
        self.held_ms = 0.0

    def run(self):
        conn, conn_of, n = None, None, 0
        while not self.stop.is_set():
            topo = self.probe.last()
            if topo is None or topo["writes_paused"] or topo["primary"] < 0:
                time.sleep(0.002)
                self.held_ms += 2
                continue
            p = topo["primary"]
            try:
                if conn_of != p:
                    if conn is not None:
                        conn.close()
                    conn = psycopg2.connect(self.cluster.dsn(p))
                    conn.autocommit = True
                    conn_of = p
                n += 1
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO drill(id) VALUES (%s)", (n,))
                self.acked.append(n)
            except psycopg2.Error as e:
                self.errors.append(str(e).strip())
                conn, conn_of = None, None
                time.sleep(0.05)
        if conn is not None:
            conn.close()


class SwitchoverThenFailoverTest(unittest.TestCase):
    cluster: PgCluster
    probe: HealthProbe

    @classmethod
    def setUpClass(cls):
        if not os.access(tool_path(), os.X_OK):
            raise RuntimeError(f"health_probe_tool not built: {tool_path()}")
        cls.cluster = PgCluster(replicas=2).start()
        try:
            cls.cluster.psql(0, "CREATE TABLE drill(id int PRIMARY KEY)")
            cls.probe = HealthProbe(
                cls.cluster, cls.cluster.tmpdir / "health_probe.log",
                ["--auto-failover", "1", "--failover-after", str(FAILOVER_AFTER),
                 "--repoint-replicas", "1", "--log-level", "debug"])
        except BaseException:
            cls.cluster.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.probe.proc.poll() is None:
                cls.probe.stop()
        finally:
            cls.cluster.stop()

    def test_1_switchover_under_proxy_like_load(self):
        c, p = self.cluster, self.probe
        p.wait(lambda o: o["version"] >= 2 and o["primary"] == 0 and
               all(s == "up" for s in states(o)), 10)
        w = ProxyLikeWriter(c, p)
        w.start()
        time.sleep(1.0)
        mark = p.mark()
        p.command("switchover 1 5000")
        _, res = p.wait(lambda o: o["op"] == "switchover", 30, after=mark, kind="result")
        self.assertTrue(res["ok"], res)
        self.assertEqual(res["new_primary"], 1)
        time.sleep(1.0)  # writes resume on the new primary
        w.stop.set()
        w.join(10)
        self.assertEqual(w.errors, [])
        names = [e["event"] for _, e in p.lines[mark:] if e.get("type") == "event"]
        for ev in ("switchover_started", "repointed", "promoted", "fenced", "switchover_done"):
            self.assertIn(ev, names)
        self.assertLess(names.index("repointed"), names.index("promoted"))  # before: no fork
        # Paused, then resumed in the snapshot that names the new primary.
        _, paused = p.wait(lambda o: o["writes_paused"], 1, after=mark)
        _, resumed = p.wait(lambda o: not o["writes_paused"] and o["primary"] == 1, 1, after=mark)
        self.assertEqual(resumed["backends"][0]["state"], "fenced")
        self.assertEqual(resumed["backends"][1]["timeline"], 2)
        # Every acknowledged write is on the new primary.
        self.assertGreater(len(w.acked), 20)
        got = c.psql(1, "SELECT count(*) FROM drill WHERE id <= %d" % max(w.acked))
        if int(got) != len(w.acked):
            have = {int(x) for x in c.psql(1, "SELECT id FROM drill").split()}
            miss = sorted(set(w.acked) - have)
            have0 = {int(x) for x in c.psql(0, "SELECT id FROM drill").split()}
            print("MISSING", len(miss), miss[:3], miss[-3:], "on node0:",
                  len(set(miss) & have0), "acked range", w.acked[0], w.acked[-1],
                  file=sys.stderr)
            for t, o in p.lines[mark:]:
                print(round(t, 3), {k: o.get(k) for k in ("type", "event", "version", "primary",
                      "writes_paused", "detail")}, file=sys.stderr)
        self.assertEqual(int(got), len(w.acked))
        # The other replica follows the new primary.
        c._wait_until(lambda: node_streams_from(c, 1, "node2"), 20, "node2 streams from node1")

    def test_2_kill9_is_failed_over_automatically(self):
        c, p = self.cluster, self.probe
        # Node 1 is the primary now, node 2 its replica, node 0 fenced (still running).
        # The cluster runs synchronous_commit = off: without `local` here the commit record
        # may still sit in WAL buffers (after pg_current_wal_lsn()) when the kill comes, and
        # then it is lost on the old primary too, not only on the new one.
        c.psql(1, "SET synchronous_commit = local; "
                  "INSERT INTO drill SELECT g FROM generate_series(100001, 100100) g")
        lsn = c.psql(1, "SELECT pg_current_wal_flush_lsn()")
        c._wait_until(lambda: c.psql(2, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'") == "t",
                      20, "node2 caught up")
        mark = p.mark()
        t_kill = time.monotonic()
        c.kill9(1)
        t_new, topo = p.wait(lambda o: o["primary"] == 2, 15, after=mark)
        took = t_new - t_kill
        # failover_after checks (the first right away: the connection drops), then promote.
        self.assertLess(took, FAILOVER_AFTER * PERIOD_MS / 1000 + 2.0, took)
        names = [e["event"] for _, e in p.lines[mark:] if e.get("type") == "event"]
        for ev in ("failover_started", "promoted", "fenced"):
            self.assertIn(ev, names)
        started = p.events("failover_started", mark)[0]
        self.assertEqual(started["backend"], "pg3")
        self.assertIn("failed 3 consecutive checks", started["detail"])
        p.wait(lambda o: o["event"] == "failover_done", 10, after=mark, kind="event")
        self.assertEqual(topo["backends"][1]["state"], "fenced")
        self.assertEqual(topo["backends"][2]["timeline"], 3)
        # Rows the new primary had replayed before the kill are all there (read for a few
        # seconds: on a loaded machine the first read may come before end-of-recovery
        # finished).
        deadline = time.monotonic() + 10
        got = c.psql(2, "SELECT count(*) FROM drill WHERE id > 100000")
        while got != "100" and time.monotonic() < deadline:
            time.sleep(0.2)
            got = c.psql(2, "SELECT count(*) FROM drill WHERE id > 100000")
        if got != "100":
            diag = c.psql(2, "SELECT pg_is_in_recovery(), pg_current_wal_lsn(), "
                             "count(*), max(id) FROM drill", check=False)
            print(f"\nflush lsn before the kill {lsn}; node2 now: {diag}", file=sys.stderr)
        self.assertEqual(got, "100", "rows replayed before the kill are missing on the new "
                                     "primary:\n" + c.node_log(2))
        print(f"\nkill -9 -> new primary published after {took * 1000:.0f} ms", file=sys.stderr)


class RefusedThenPromoteTest(unittest.TestCase):
    cluster: PgCluster
    probe: HealthProbe

    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster(replicas=1).start()
        try:
            cls.probe = HealthProbe(
                cls.cluster, cls.cluster.tmpdir / "health_probe.log",
                ["--auto-failover", "1", "--failover-after", "2", "--no-promote", "pg2"])
        except BaseException:
            cls.cluster.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.probe.proc.poll() is None:
                cls.probe.stop()
        finally:
            cls.cluster.stop()

    def test_1_refused_when_only_no_promote_replicas(self):
        c, p = self.cluster, self.probe
        p.wait(lambda o: o["version"] >= 2 and o["primary"] == 0 and
               all(s == "up" for s in states(o)), 10)
        mark = p.mark()
        c.kill9(0)
        _, ev = p.wait(lambda o: o["event"] == "failover_refused", 10, after=mark, kind="event")
        self.assertIn("pg2: tagged no_promote", ev["detail"])
        time.sleep(3 * PERIOD_MS / 1000)
        self.assertEqual(len(p.events("failover_refused", mark)), 1)  # once per outage
        self.assertEqual(p.events("promoted", mark), [])
        self.assertEqual(c.psql(1, "SELECT pg_is_in_recovery()"), "t")

    def test_2_promote_by_hand(self):
        c, p = self.cluster, self.probe
        mark = p.mark()
        p.command("promote 1")
        _, res = p.wait(lambda o: o["op"] == "promote", 20, after=mark, kind="result")
        self.assertTrue(res["ok"], res)
        p.wait(lambda o: o["primary"] == 1, 5, after=mark)
        self.assertEqual(c.psql(1, "SELECT pg_is_in_recovery()"), "f")
        # The old primary, restarted, stays fenced.
        # Three check periods, then (on a slow machine) up to 10 s more for the restarted node
        # to be seen and reported fenced.
        c.start_node(0)
        time.sleep(3 * PERIOD_MS / 1000)
        deadline = time.monotonic() + 10
        topo = p.last()
        while topo["backends"][0]["state"] != "fenced" and time.monotonic() < deadline:
            time.sleep(0.1)
            topo = p.last()
        self.assertEqual(topo["primary"], 1)
        self.assertEqual(topo["backends"][0]["state"], "fenced")
        # A second request while nothing is promotable is answered with the reason.
        mark = p.mark()
        p.command("switchover 0 1000")
        _, res = p.wait(lambda o: o["op"] == "switchover", 10, after=mark, kind="result")
        self.assertFalse(res["ok"])
        self.assertIn("fenced", res["error"])


if __name__ == "__main__":
    unittest.main()
