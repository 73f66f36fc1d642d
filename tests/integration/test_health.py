"""Health-check integration tests: health_probe_tool (HealthMonitor on the command line,
one JSON line per published topology or event) against a real primary, two replicas and a
cascading replica. Covers the first topology, replica lag against pg_stat_replication under
write load, kill -9 and restart of a replica, a promotion, the old primary coming back fenced,
and a split brain on equal timelines. The steps build on each other and run in order."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import unittest

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pgcluster  # noqa: E402
from pgcluster import HOST, REPO, PgCluster  # noqa: E402

PERIOD_MS = 500
FALL = 3
RISE = 2
TIMEOUT_MS = 1000
MAX_LAG_BYTES = 256 * 1024
APPLY_DELAY_S = 2
SLACK_S = 0.4  # scheduling, pg_ctl and pipe latency on a loaded 2-core box


def tool_path() -> str:
    if os.environ.get("HEALTH_PROBE_TOOL"):
        return os.environ["HEALTH_PROBE_TOOL"]
    if os.environ.get("PGSWITCH_BIN"):
        return os.path.join(os.path.dirname(os.environ["PGSWITCH_BIN"]), "health_probe_tool")
    return str(REPO / "build" / "health_probe_tool")


class HealthProbe:
    """Runs health_probe_tool; a reader thread collects its JSON lines with arrival times."""

    def __init__(self, cluster: PgCluster, log_path, extra_args=()):
        args = [tool_path(), "--period-ms", str(PERIOD_MS), "--fall", str(FALL),
                "--rise", str(RISE), "--connect-timeout-ms", str(TIMEOUT_MS),
                "--query-timeout-ms", str(TIMEOUT_MS), "--user", "postgres",
                "--password", "postgres", "--max-lag-bytes", str(MAX_LAG_BYTES)]
        for n in cluster.nodes:
            args += ["--backend", f"pg{n.index + 1}={HOST}:{n.port}"]
        args += list(extra_args)
        self.log_path = log_path
        logf = open(log_path, "ab")
        try:
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=logf, text=True,
                                         preexec_fn=pgcluster._set_pdeathsig)
        finally:
            logf.close()
        self.lines: list[tuple[float, dict]] = []
        self.cv = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        pgcluster._register(self)

    def _read(self):
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            with self.cv:
                self.lines.append((time.monotonic(), obj))
                self.cv.notify_all()
        with self.cv:
            self.cv.notify_all()

    def mark(self) -> int:
        with self.cv:
            return len(self.lines)

    def wait(self, pred, timeout: float, after: int = 0, kind: str = "topology"):
        """First line of `kind` with index >= after that satisfies pred: (arrival, obj)."""
        deadline = time.monotonic() + timeout
        i = after
        with self.cv:
            while True:
                while i < len(self.lines):
                    t, obj = self.lines[i]
                    i += 1
                    if obj.get("type") == kind and pred(obj):
                        return t, obj
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and i >= len(self.lines):
                    raise AssertionError(f"no {kind} line matched within {timeout}s; last: "
                                         f"{self.last(kind)}\nlog:\n{self.log_tail()}")
                self.cv.wait(left)

    def next_topology(self, timeout: float = 5):
        return self.wait(lambda o: True, timeout, after=self.mark())

    def last(self, kind: str = "topology"):
        with self.cv:
            for _, obj in reversed(self.lines):
                if obj.get("type") == kind:
                    return obj
        return None

    def events(self, name: str, after: int = 0) -> list[dict]:
        with self.cv:
            return [o for _, o in self.lines[after:]
                    if o.get("type") == "event" and o["event"] == name]

    def command(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = 15) -> int:
        pgcluster._unregister(self)
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("health_probe_tool did not exit after stdin closed")
        self.reader.join(5)
        return rc

    def _teardown(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def states(topo: dict) -> list[str]:
    return [b["state"] for b in topo["backends"]]


def roles(topo: dict) -> list[str]:
    return [b["role"] for b in topo["backends"]]


class HealthTest(unittest.TestCase):
    cluster: PgCluster
    probe: HealthProbe

    @classmethod
    def setUpClass(cls):
        if not os.access(tool_path(), os.X_OK):
            raise RuntimeError(f"health_probe_tool not built: {tool_path()}")
        cls.cluster = PgCluster(replicas=2, cascade=True).start()
        try:
            cls.cluster.psql(0, "CREATE TABLE IF NOT EXISTS load(id serial, pad text)")
            cls.probe = HealthProbe(cls.cluster, cls.cluster.tmpdir / "health_probe.log")
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

    # Nodes: 0 primary, 1 and 2 replicas of 0, 3 cascades from 1. Backend i is node i.
    def test_1_first_round(self):
        _, topo = self.probe.wait(
            lambda o: o["version"] >= 2 and all(s == "up" for s in states(o)), 10)
        self.assertEqual(topo["primary"], 0)
        self.assertFalse(topo["writes_refused"])
        self.assertEqual(roles(topo), ["primary", "replica", "replica", "replica"])
        self.assertEqual([b["timeline"] for b in topo["backends"]], [1, 1, 1, 1])
        self.assertEqual(self.probe.events("backend_down"), [])

    def test_2_lag_matches_pg_stat_replication(self):
        c = self.cluster
        c.set_conf(2, "recovery_min_apply_delay", f"{APPLY_DELAY_S}s")
        stop = threading.Event()

        def load():
            conn = psycopg2.connect(c.dsn(0))
            conn.autocommit = True
            with conn.cursor() as cur:
                # Each commit flushes and ships its WAL at once, so the standby's feedback (the
                # replay_lsn of pg_stat_replication) is current, not up to wal_writer_delay old.
                cur.execute("SET synchronous_commit = on")
                while not stop.is_set():
                    cur.execute("INSERT INTO load(pad) SELECT repeat('x', 200) "
                                "FROM generate_series(1, 40)")
                    time.sleep(0.01)
            conn.close()

        ref = psycopg2.connect(c.dsn(0))
        ref.autocommit = True
        writer = threading.Thread(target=load, daemon=True)
        mark = self.probe.mark()
        writer.start()
        try:
            time.sleep(APPLY_DELAY_S + 2)  # steady state: node2 replays 2s behind
            pairs = []
            with ref.cursor() as cur:
                for _ in range(8):
                    # Compare with pg_stat_replication as soon as the tool reports a round.
                    _, topo = self.probe.next_topology()
                    cur.execute("SELECT pg_current_wal_lsn() - replay_lsn FROM "
                                "pg_stat_replication WHERE application_name = 'node2'")
                    row = cur.fetchone()
                    pairs.append((topo["backends"][2]["lag_bytes"],
                                  int(row[0]) if row and row[0] is not None else 0, topo))
        finally:
            stop.set()
            writer.join(10)
            ref.close()
        report = "\n".join(f"tool={a} pg_stat_replication={b}" for a, b, _ in pairs)
        sys.stderr.write(f"\nlag samples (node2, apply delay {APPLY_DELAY_S}s):\n{report}\n")
        errors = [abs(a - b) / b for a, b, _ in pairs if b]
        self.assertEqual(len(errors), len(pairs), report)
        self.assertGreater(min(b for _, b, _ in pairs), MAX_LAG_BYTES, report)
        self.assertLess(statistics.median(errors), 0.05, report)
        self.assertLess(max(errors), 0.10, report)
        for _, _, topo in pairs:
            node2 = topo["backends"][2]
            # Approximation: now() - last replayed commit, i.e. about the apply delay.
            self.assertGreater(node2["lag_ms"], APPLY_DELAY_S * 1000 * 0.5, topo)
            self.assertLess(node2["lag_ms"], APPLY_DELAY_S * 1000 * 2.5, topo)
            # The others (the cascading one included, measured against the primary) keep up.
            for i in (1, 3):
                self.assertLess(topo["backends"][i]["lag_bytes"], node2["lag_bytes"] / 4, topo)
        exceeded = self.probe.events("lag_exceeded", after=mark)
        self.assertEqual([e["backend"] for e in exceeded], ["pg3"], exceeded)

        c.set_conf(2, "recovery_min_apply_delay", None)
        self.probe.wait(lambda o: o["backends"][2]["lag_bytes"] == 0
                        and o["backends"][2]["lag_ms"] == 0, 15, after=self.probe.mark())

    def test_3_killed_replica_down_then_up(self):
        c = self.cluster
        mark = self.probe.mark()
        t0 = time.monotonic()
        c.kill9(2)
        t_down, topo = self.probe.wait(lambda o: o["backends"][2]["state"] == "down", 10,
                                       after=mark)
        budget = FALL * PERIOD_MS / 1000 + TIMEOUT_MS / 1000
        sys.stderr.write(f"\nkill -9 -> down: {t_down - t0:.2f}s (budget {budget}s)\n")
        self.assertLessEqual(t_down - t0, budget + SLACK_S,
                             f"down after {t_down - t0:.2f}s, budget {budget}s")
        self.assertEqual(topo["primary"], 0)
        self.assertEqual([e["backend"] for e in self.probe.events("backend_down", mark)], ["pg3"])

        up_mark = self.probe.mark()
        c.start_node(2)
        t1 = time.monotonic()  # pg_ctl start -w returns once the server accepts connections
        t_up, _ = self.probe.wait(lambda o: o["backends"][2]["state"] == "up", 10,
                                  after=up_mark)
        budget = (RISE + 1) * PERIOD_MS / 1000
        sys.stderr.write(f"restart -> up: {t_up - t1:.2f}s (budget {budget}s)\n")
        self.assertLessEqual(t_up - t1, budget + SLACK_S,
                             f"up after {t_up - t1:.2f}s, budget {budget}s")
        self.assertEqual([e["backend"] for e in self.probe.events("backend_up", mark)], ["pg3"])

    def test_4_promotion_is_followed(self):
        c = self.cluster
        mark = self.probe.mark()
        c.kill9(0)
        self.probe.wait(lambda o: o["backends"][0]["state"] == "down", 10, after=mark)
        mark = self.probe.mark()
        c.promote(1)  # returns once pg_is_in_recovery() is false
        t0 = time.monotonic()
        t, topo = self.probe.wait(lambda o: o["primary"] == 1, 10, after=mark)
        sys.stderr.write(f"\npromote -> followed: {t - t0:.2f}s\n")
        self.assertLessEqual(t - t0, 2 * PERIOD_MS / 1000 + SLACK_S,
                             f"primary followed after {t - t0:.2f}s")
        self.assertEqual(topo["backends"][1]["role"], "primary")
        self.assertEqual(topo["backends"][1]["timeline"], 2)
        self.assertFalse(topo["writes_refused"])
        changed = self.probe.events("role_changed", mark)
        self.assertIn("pg2", [e["backend"] for e in changed])
        # The cascading replica streams from the new primary and follows it to timeline 2.
        self.probe.wait(lambda o: o["backends"][3]["timeline"] == 2
                        and o["backends"][3]["state"] == "up", 15, after=mark)

    def test_5_old_primary_back_is_fenced(self):
        c = self.cluster
        mark = self.probe.mark()
        c.start_node(0)  # comes back as a primary on timeline 1
        _, topo = self.probe.wait(lambda o: o["backends"][0]["state"] == "fenced", 10,
                                  after=mark)
        self.assertEqual(topo["primary"], 1)
        self.assertEqual(topo["backends"][0]["role"], "primary")
        self.assertEqual(topo["backends"][0]["timeline"], 1)
        fenced = self.probe.events("fenced", mark)
        self.assertEqual([e["backend"] for e in fenced], ["pg1"], fenced)
        self.assertIn("below timeline 2", fenced[0]["detail"])
        # An operator attach does not help while it still claims an old timeline.
        mark = self.probe.mark()
        self.probe.command("attach 0")
        self.probe.wait(lambda o: o["event"] == "fenced", 5, after=mark, kind="event")
        self.assertEqual([e["backend"] for e in self.probe.events("fenced", mark)], ["pg1"])
        for _ in range(3):
            _, topo = self.probe.next_topology()
            self.assertEqual(topo["backends"][0]["state"], "fenced")
            self.assertEqual(topo["primary"], 1)

    def test_6_split_brain_on_equal_timelines(self):
        c = self.cluster
        mark = self.probe.mark()
        c.promote(2)  # a replica of the (restarted) old primary: timeline 2 as well
        _, topo = self.probe.wait(lambda o: o["writes_refused"], 10, after=mark)
        self.assertEqual(topo["primary"], -1)
        self.assertEqual(topo["backends"][1]["timeline"], 2)
        self.assertEqual(topo["backends"][2]["timeline"], 2)
        self.assertEqual(states(topo)[1:3], ["up", "up"])
        split = self.probe.events("split_brain", mark)
        self.assertEqual(len(split), 1, split)
        self.assertIn("writes refused", split[0]["detail"])
        # The operator fences one: the other is the primary again.
        self.probe.command("fence 2")
        self.probe.wait(lambda o: o["primary"] == 1 and not o["writes_refused"]
                        and o["backends"][2]["state"] == "fenced", 5, after=mark)

    def test_7_clean_shutdown(self):
        rc = self.probe.stop()
        self.assertEqual(rc, 0, self.probe.log_tail())
        self.assertEqual(self.probe.last("exit"), {"type": "exit", "clean": True})


if __name__ == "__main__":
    unittest.main()
