"""pgswitch with [patroni] in front of three PostgreSQL 15 nodes under real Patroni and etcd
(patroni_cluster.py): 8 persistent clients run short write transactions through pgswitch while
the leader moves three times — the console's SWITCHOVER TO (which asks Patroni's /switchover),
`patronictl switchover`, and `kill -9` of the leader (postmaster and Patroni; Patroni fails over
once its leader key expires). Asserts 0 disconnected clients, errors only for transactions in
flight (08006/08007), writes on the new leader each time, no acknowledged commit lost in the
switchovers, and that pgswitch never promoted anything itself.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import unittest
from contextlib import closing

import psycopg2
import psycopg2.errors

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import HOST, PgSwitch, free_port  # noqa: E402
from patroni_cluster import PatroniCluster  # noqa: E402
from proxycase import ProxyTestCase, budget  # noqa: E402

CLIENTS = 8


class Writers:
    """CLIENTS persistent connections through pgswitch, each running
    BEGIN; INSERT ... RETURNING id, inet_server_port(); COMMIT in a loop."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.commits: list[tuple[float, int, int]] = []  # (time, server port, id)
        self.errors: dict[str, int] = {}
        self.error_log: list[str] = []
        self.disconnects = 0
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True)
                        for k in range(CLIENTS)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _run(self, k: int):
        conn = psycopg2.connect(self.dsn)
        try:
            while not self.stop.is_set():
                try:
                    with conn.cursor() as cur:
                        cur.execute("INSERT INTO drill(client) VALUES (%s) "
                                    "RETURNING id, inet_server_port()", (k,))
                        rid, port = cur.fetchone()
                    conn.commit()
                    with self.lock:
                        self.commits.append((time.monotonic(), port, rid))
                except psycopg2.Error as e:
                    code = getattr(e, "pgcode", None) or type(e).__name__
                    with self.lock:
                        self.errors[code] = self.errors.get(code, 0) + 1
                        self.error_log.append(f"client {k}: {code}: {str(e).strip().splitlines()[0]}")
                    if conn.closed:
                        with self.lock:
                            self.disconnects += 1
                        return
                    try:
                        conn.rollback()
                    except psycopg2.Error:
                        pass
                    time.sleep(0.01)
        finally:
            conn.close()

    def last_commit_port(self) -> int | None:
        with self.lock:
            return self.commits[-1][1] if self.commits else None

    def commits_since(self, t: float, port: int) -> int:
        with self.lock:
            return sum(1 for c in self.commits if c[0] >= t and c[1] == port)

    def first_commit_on(self, port: int, after: float) -> float | None:
        with self.lock:
            for c in self.commits:
                if c[0] >= after and c[1] == port:
                    return c[0]
        return None

    def longest_gap(self, start: float, end: float) -> float:
        with self.lock:
            ts = [c[0] for c in self.commits if start <= c[0] <= end]
        ts = [start] + ts + [end]
        return max(b - a for a, b in zip(ts, ts[1:]))

    def error_count(self) -> int:
        with self.lock:
            return sum(self.errors.values())


class PatroniTest(ProxyTestCase):
    default_budget = 240.0

    @classmethod
    def setUpClass(cls):
        cls.cluster = PatroniCluster(3)
        cls.cluster.start()
        try:
            urls = ", ".join(f'"{n.api}"' for n in cls.cluster.nodes)
            # auto_failover = true proves that [patroni] turns it off.
            toml = (f"[patroni]\nurl = [{urls}]\nperiod_ms = 300\ntimeout_ms = 1000\n\n"
                    "[failover]\nauto_failover = true\nfailover_wait_ms = 40000\n")
            cls.sw = PgSwitch(cls.cluster, pool_mode="transaction", extra_toml=toml,
                              health_period_ms=300)
        except BaseException:
            cls.cluster.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.sw is not None:
            cls.sw.stop()
        cls.cluster.stop()

    def port_of(self, name: str) -> int:
        return self.cluster.nodes[int(name[4:])].port

    def backend_of(self, name: str) -> str:
        return f"pg{int(name[4:]) + 1}"

    def wait_writes_on(self, w: Writers, port: int, after: float, what: str,
                       timeout: float = 40) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = w.first_commit_on(port, after)
            if t is not None and w.commits_since(t, port) >= 20:
                return t
            time.sleep(0.1)
        self.fail(f"no writes on port {port} within {timeout}s after {what}; errors "
                  f"{w.errors}; pgswitch log:\n{self.sw.log_tail(40)}")

    def write_port(self, sw) -> int:
        with closing(psycopg2.connect(sw.dsn())) as conn, conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS x(i int)")
            cur.execute("INSERT INTO x SELECT inet_server_port() RETURNING i")
            port = cur.fetchone()[0]
            conn.rollback()
            return port

    @budget(60)
    def test_a_dead_urls_are_skipped_and_unreachable_is_reported(self):
        """Runs first (name order). A dead URL before the live ones costs nothing; with no
        URL answering, patroni_unreachable is reported and pgswitch's own probes decide."""
        dead = f'"http://{HOST}:{free_port()}"'
        live = ", ".join(f'"{n.api}"' for n in self.cluster.nodes)
        leader_port = self.port_of(self.cluster.leader())
        sw = PgSwitch(self.cluster, pool_mode="transaction", health_period_ms=300,
                      extra_toml=f"[patroni]\nurl = [{dead}, {live}]\nperiod_ms = 300\n")
        try:
            self.assertEqual(self.write_port(sw), leader_port)
            self.assertTrue(sw.wait_log("patroni: leader is", timeout=10), sw.log_tail())
            self.assertNotIn("event=patroni_unreachable", sw.log())
        finally:
            sw.stop()
        sw = PgSwitch(self.cluster, pool_mode="transaction", health_period_ms=300,
                      extra_toml=f"[patroni]\nurl = [{dead}]\nperiod_ms = 300\n")
        try:
            self.assertEqual(self.write_port(sw), leader_port)
            self.assertTrue(sw.wait_log("event=patroni_unreachable", timeout=10), sw.log_tail())
            self.assertEqual(sw.log().count("event=patroni_unreachable"), 1)  # once per outage
        finally:
            sw.stop()
        # The health loop closed every handle (libcurl's polls and timer included).
        self.assertNotIn("handle still open", sw.log())
        self.assertNotIn("uv_loop_close failed", sw.log())

    @budget(90)
    def test_b_noloadbalance_member_gets_no_reads(self):
        """Patroni's noloadbalance tag (set in a member's YAML, applied by SIGHUP) keeps reads
        off that member; removing it brings them back."""
        c = self.cluster
        c.wait_healthy(60)
        replicas = [n for n in c.nodes if n.name != c.leader()]
        tagged, other = replicas[0], replicas[1]

        def read_ports(k=40):
            ports = set()
            with closing(psycopg2.connect(self.sw.dsn())) as conn:
                conn.autocommit = True
                with conn.cursor() as cur:
                    for _ in range(k):
                        cur.execute("SELECT inet_server_port()")
                        ports.add(cur.fetchone()[0])
            return ports

        def set_tag(on: bool):
            c.set_tags(tagged.index, {"noloadbalance": on})
            c.wait_until(lambda: any(m["name"] == tagged.name and
                                     bool(m.get("tags", {}).get("noloadbalance")) == on
                                     for m in c.members()), 30, "the tag in /cluster")
            time.sleep(1)  # pgswitch reads /cluster every 300 ms

        self.assertIn(tagged.port, read_ports(), "reads reach both replicas before the tag")
        set_tag(True)
        try:
            ports = read_ports()
            self.assertNotIn(tagged.port, ports)
            self.assertIn(other.port, ports)
        finally:
            set_tag(False)
        deadline = time.monotonic() + 10
        while tagged.port not in read_ports(20) and time.monotonic() < deadline:
            time.sleep(0.3)
        self.assertIn(tagged.port, read_ports(), "reads come back once the tag is gone")

    @budget(240)
    def test_switchovers_and_kill9_under_persistent_clients(self):
        c = self.cluster
        c.psql(c.leader_index(), "CREATE TABLE drill(id bigserial PRIMARY KEY, client int, "
               "at timestamptz DEFAULT now())", db="appdb")
        c.psql(c.leader_index(), "GRANT ALL ON drill, drill_id_seq TO app", db="appdb")
        log_start = len(self.sw.log())
        # pgswitch follows Patroni's leader.
        leader0 = c.leader()
        w = Writers(self.sw.dsn())
        w.start()
        report = []
        try:
            t_start = time.monotonic()
            self.wait_writes_on(w, self.port_of(leader0), t_start, "start")

            # 1. The console's SWITCHOVER TO asks Patroni.
            target1 = next(n.name for n in c.nodes if n.name != leader0)
            c.wait_healthy(60)
            t1 = time.monotonic()
            with closing(self.console()) as con, con.cursor() as cur:
                cur.execute(f"SWITCHOVER TO {self.backend_of(target1)}")
            answered = time.monotonic() - t1
            got = self.wait_writes_on(w, self.port_of(target1), t1, "console SWITCHOVER")
            self.assertEqual(c.leader(), target1)
            e1 = w.error_count()
            report.append(f"console SWITCHOVER {leader0}->{target1}: answered in "
                          f"{answered:.2f}s, writes on the new leader after {got - t1:.2f}s, "
                          f"longest commit gap {w.longest_gap(t1, got + 1):.2f}s, errors {e1}")

            # 2. patronictl switchover behind pgswitch's back.
            time.sleep(1)
            c.wait_healthy(60)
            target2 = next(n.name for n in c.nodes if n.name not in (target1,))
            t2 = time.monotonic()
            out = c.switchover(target1, target2)
            got = self.wait_writes_on(w, self.port_of(target2), t2, "patronictl switchover")
            e2 = w.error_count() - e1
            report.append(f"patronictl switchover {target1}->{target2}: writes on the new "
                          f"leader after {got - t2:.2f}s, longest commit gap "
                          f"{w.longest_gap(t2, got + 1):.2f}s, errors {e2} "
                          f"({next((ln for ln in out.splitlines() if 'Successfully' in ln), '').strip()})")
            # No acknowledged commit is lost by a switchover.
            with self.lock_ids(w) as ids:
                missing = self.missing_ids(ids)
            self.assertEqual(missing, 0, "acknowledged commits missing after the switchovers")

            # 3. kill -9 of the leader (postmaster and Patroni): Patroni fails over after ttl.
            time.sleep(1)
            c.wait_healthy(60)
            t3 = time.monotonic()
            killed = c.kill9_leader()
            c.wait_until(lambda: c.leader() not in (None, c.nodes[killed].name), 60,
                         "a new leader after kill -9")
            leader3 = c.leader()
            got = self.wait_writes_on(w, self.port_of(leader3), t3, "kill -9", timeout=60)
            e3 = w.error_count() - e1 - e2
            report.append(f"kill -9 of {c.nodes[killed].name}: new leader {leader3}, writes "
                          f"on it after {got - t3:.2f}s (Patroni ttl 10 s), errors {e3}")
            time.sleep(1)
        finally:
            w.finish()
        with self.lock_ids(w) as ids:
            lost = self.missing_ids(ids)
        report.append(f"total: {len(w.commits)} commits, errors {w.errors}, disconnects "
                      f"{w.disconnects}, acknowledged commits missing at the end {lost}")
        sys.stderr.write("\n" + "\n".join("  " + r for r in report) + "\n")
        for line in w.error_log[:30]:
            sys.stderr.write(f"    {line}\n")

        self.assertEqual(w.disconnects, 0, w.error_log)
        # Errors only for transactions in flight: 08006 (lost before COMMIT) or 08007 (lost
        # during COMMIT), at most one per client and leader change.
        self.assertTrue(set(w.errors) <= {"08006", "08007"}, w.errors)
        self.assertLessEqual(w.error_count(), 3 * CLIENTS, w.error_log)

        log = self.sw.log()[log_start:]
        full = self.sw.log()
        self.assertIn("failover.auto_failover is ignored", full)
        self.assertNotIn("event=promoted", full)
        self.assertNotIn("event=failover_started", full)
        self.assertIn("event=switchover_done", log)
        types = [e["type"] for e in self.rows("SHOW EVENTS")]
        self.assertIn("switchover_done", types)
        self.assertNotIn("promoted", types)
        self.assertNotIn("failover_started", types)
        # PROMOTE is refused: Patroni owns promotion.
        standby = next(m["name"] for m in c.members() if m["role"] != "leader"
                       and m["state"] in ("running", "streaming"))
        with closing(self.console()) as con, con.cursor() as cur:
            with self.assertRaises(psycopg2.Error) as ctx:
                cur.execute(f"PROMOTE {self.backend_of(standby)}")
        self.assertIn("Patroni", str(ctx.exception))

    # -- helpers -------------------------------------------------------------------------------
    class _Ids:
        def __init__(self, w):
            self.w = w

        def __enter__(self):
            self.w.lock.acquire()
            return [c[2] for c in self.w.commits]

        def __exit__(self, *exc):
            self.w.lock.release()

    def lock_ids(self, w):
        return self._Ids(w)

    def missing_ids(self, ids: list[int]) -> int:
        """How many acknowledged ids the current leader does not have."""
        if not ids:
            return 0
        port = self.cluster.nodes[self.cluster.leader_index()].port
        with closing(psycopg2.connect(host=HOST, port=port, user="postgres",
                                      password="postgres", dbname="appdb")) as conn, \
                conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM drill WHERE id = ANY(%s)", (list(set(ids)),))
            return len(set(ids)) - cur.fetchone()[0]

if __name__ == "__main__":
    unittest.main()
