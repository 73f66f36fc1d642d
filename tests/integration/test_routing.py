"""Read/write routing integration tests (issue 5): pgswitch in transaction mode in front of a
primary and two streaming replicas. A mixed pgbench workload (autocommit reads and writes,
explicit and read-only transactions, simple and prepared protocol) must see no 25006 and
spread its reads over the replicas by weight; read-your-writes must never miss its own row
while a replica lags, and the same loop without it must miss (so the test can fail)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import unittest

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import HOST, PG_BIN, PgCluster, PgSwitch  # noqa: E402
from proxycase import ProxyTestCase, budget, show, show_totals  # noqa: E402

PGBENCH = str(PG_BIN / "pgbench")

SCRIPTS = {
    "read.sql": """\\set aid random(1, 100000 * :scale)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
""",
    "write.sql": """\\set aid random(1, 100000 * :scale)
\\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
""",
    "txn.sql": """\\set aid random(1, 100000 * :scale)
\\set delta random(-5000, 5000)
BEGIN;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
END;
""",
    "rotxn.sql": """\\set aid random(1, 100000 * :scale)
BEGIN READ ONLY;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SELECT count(*) FROM pgbench_branches;
COMMIT;
""",
    "settxn.sql": """\\set aid random(1, 100000 * :scale)
BEGIN;
SET TRANSACTION READ WRITE;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid FOR UPDATE;
UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = 1;
COMMIT;
""",
    "seq.sql": """SELECT nextval('routing_seq');
""",
}


def replica_reads(cluster: PgCluster, i: int) -> int:
    out = cluster.psql(i, "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_tables "
                          "WHERE relname = 'pgbench_accounts'", db="appdb")
    return int(out.strip() or 0)


class RoutingTest(ProxyTestCase):
    default_budget = 120.0

    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster(replicas=2).start()
        try:
            env = dict(os.environ, PGPASSWORD="postgres")
            run = lambda *a: subprocess.run(a, check=True, capture_output=True, text=True,
                                            timeout=120, env=env)
            run(PGBENCH, "-i", "-s", "1", "-q", "-h", HOST, "-p", str(cls.cluster.port_of(0)),
                "-U", "postgres", "appdb")
            cls.cluster.psql(0, "CREATE SEQUENCE routing_seq; "
                                "CREATE TABLE ryw (id bigint PRIMARY KEY, v text); "
                                "GRANT ALL ON ALL TABLES IN SCHEMA public TO app; "
                                "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO app", db="appdb")
            cls.cluster.wait_replicated()
            cls.sw = PgSwitch(cls.cluster, pool_mode="transaction", health_period_ms=200,
                              start=False, extra_toml="[pool]\npool_size = 16\n")
            cls.sw.backend_toml = {1: "weight = 2", 2: "weight = 1"}
            cls.sw.write_config()
            cls.sw.start()
        except BaseException:
            cls.cluster.stop()
            raise
        cls.scripts = tempfile.mkdtemp(prefix="routing-", dir=cls.cluster.tmpdir)
        for name, text in SCRIPTS.items():
            with open(os.path.join(cls.scripts, name), "w") as f:
                f.write(text)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.sw.stop()
        finally:
            cls.cluster.stop()

    def pgbench(self, mode: str, seconds: int = 8) -> str:
        s = self.scripts
        args = [PGBENCH, "-n", "-c", "8", "-j", "2", "-T", str(seconds), "-M", mode,
                "-f", f"{s}/read.sql@10", "-f", f"{s}/write.sql@2", "-f", f"{s}/txn.sql@2",
                "-f", f"{s}/rotxn.sql@3", "-f", f"{s}/settxn.sql@1", "-f", f"{s}/seq.sql@1",
                "-h", HOST, "-p", str(self.sw.port), "-U", "app", "appdb"]
        env = dict(os.environ, PGPASSWORD="app")
        p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=seconds + 60)
        out = p.stdout + p.stderr
        self.assertEqual(p.returncode, 0, f"pgbench -M {mode} failed:\n{out[-3000:]}")
        self.assertNotIn("25006", out, out[-3000:])
        self.assertNotIn("read-only transaction", out, out[-3000:])
        self.assertIn("number of failed transactions: 0", out, out[-3000:])
        return out

    @budget(150)
    def test_mixed_workload_no_readonly_errors_and_weighted_spread(self):
        before = [replica_reads(self.cluster, i) for i in (1, 2)]
        primary_before = replica_reads(self.cluster, 0)
        for mode in ("simple", "extended", "prepared"):
            out = self.pgbench(mode)
            tps = [l for l in out.splitlines() if l.startswith("tps")]
            print(f"\nmixed pgbench -M {mode}: {tps[0] if tps else '?'}")
        time.sleep(1.0)  # standby statistics are flushed at most once a second
        after = [replica_reads(self.cluster, i) for i in (1, 2)]
        d = [a - b for a, b in zip(after, before)]
        primary_reads = replica_reads(self.cluster, 0) - primary_before
        total = sum(d)
        print(f"index scans: replica pg2 (weight 2) {d[0]}, pg3 (weight 1) {d[1]}, "
              f"primary {primary_reads}")
        self.assertGreater(total, 1000, "reads did not reach the replicas")
        share = d[0] / total
        self.assertAlmostEqual(share, 2 / 3, delta=(2 / 3) * 0.10,
                               msg=f"pg2 got {share:.3f} of replica reads, weight says 0.667")
        # Reads are the majority of this mix: most index scans ran on replicas.
        self.assertGreater(total, primary_reads, "replicas served fewer reads than the primary")

    def ryw_loop(self, sw: PgSwitch, n: int, stop_after_misses: int | None = None) -> int:
        conn = psycopg2.connect(sw.dsn())
        conn.autocommit = True
        cur = conn.cursor()
        misses = 0
        base = int(time.time() * 1000) * 100000
        try:
            for k in range(n):
                key = base + k
                cur.execute("INSERT INTO ryw (id, v) VALUES (%s, 'x')", (key,))
                cur.execute("SELECT v FROM ryw WHERE id = %s", (key,))
                if cur.fetchone() is None:
                    misses += 1
                    if stop_after_misses and misses >= stop_after_misses:
                        break
        finally:
            conn.close()
        return misses

    @budget(200)
    def test_read_your_writes(self):
        # One replica replays two seconds late; the other is plain asynchronous.
        self.cluster.set_conf(1, "recovery_min_apply_delay", "2s")
        try:
            time.sleep(1.0)
            ryw = PgSwitch(self.cluster, pool_mode="transaction", health_period_ms=200,
                           extra_toml='[routing]\nconsistency = "read_your_writes"\n')
            try:
                t0 = time.monotonic()
                misses = self.ryw_loop(ryw, 10000)
                took = time.monotonic() - t0
                log = ryw.log_tail()
            finally:
                ryw.stop()
            print(f"\nread_your_writes: 10000 insert+select in {took:.1f}s, {misses} misses")
            self.assertEqual(misses, 0, "read-your-writes missed its own rows\n" + log)
            eventual = PgSwitch(self.cluster, pool_mode="transaction", health_period_ms=200,
                                extra_toml='[routing]\nconsistency = "eventual"\n')
            try:
                misses = self.ryw_loop(eventual, 2000, stop_after_misses=20)
            finally:
                eventual.stop()
            print(f"eventual consistency: {misses} misses (expected > 0)")
            self.assertGreater(misses, 0, "without read_your_writes no read missed: the test "
                                          "cannot tell the two apart (is a replica lagging?)")
        finally:
            self.cluster.set_conf(1, "recovery_min_apply_delay", None)

    def two_connection_loop(self, sw: PgSwitch, n: int, seconds: float,
                            stop_after_misses: int | None = None) -> tuple[int, int]:
        """Writes a row on one connection and reads it at once on another (the redirect after
        a POST, with a connection pool): returns (misses, rounds)."""
        a = psycopg2.connect(sw.dsn())
        b = psycopg2.connect(sw.dsn())
        a.autocommit = b.autocommit = True
        ca, cb = a.cursor(), b.cursor()
        misses = rounds = 0
        base = int(time.time() * 1000) * 100000 + 50000
        deadline = time.monotonic() + seconds
        try:
            for k in range(n):
                if time.monotonic() > deadline:
                    break
                rounds += 1
                ca.execute("INSERT INTO ryw (id, v) VALUES (%s, 'y')", (base + k,))
                cb.execute("SELECT v FROM ryw WHERE id = %s", (base + k,))
                if cb.fetchone() is None:
                    misses += 1
                    if stop_after_misses and misses >= stop_after_misses:
                        break
        finally:
            a.close()
            b.close()
        return misses, rounds

    @budget(150)
    def test_strong_default_sees_other_connections_writes(self):
        # Both replicas replay 300 ms late: a read another connection makes right after a
        # commit must still see it (consistency = "strong", the default), and reads go back to
        # the replicas once they have caught up.
        for i in (1, 2):
            self.cluster.set_conf(i, "recovery_min_apply_delay", "300ms")
        try:
            time.sleep(1.0)
            before = show_totals(self.sw)
            misses, rounds = self.two_connection_loop(self.sw, 3000, 20)
            after = show_totals(self.sw)
            on_primary = after["reads_on_primary"] - before["reads_on_primary"]
            waited = after["replica_waits"] - before["replica_waits"]
            print(f"\nstrong: {rounds} insert on A + select on B, {misses} misses, "
                  f"{on_primary} reads on the primary at once, {waited} waited")
            self.assertGreater(rounds, 100)
            # 300 ms behind is far beyond max_wait_ms: the reads go to the primary without
            # waiting for a replica first, and are counted.
            self.assertGreater(on_primary, waited, "reads waited for a replica 300 ms behind")
            self.assertEqual(misses, 0, "a read on another connection missed a committed row\n"
                             + self.sw.log_tail())
            # DDL then an immediate read on another connection.
            a = psycopg2.connect(self.sw.dsn())
            b = psycopg2.connect(self.sw.dsn())
            a.autocommit = b.autocommit = True
            a.cursor().execute("DROP TABLE IF EXISTS strong_ddl")
            a.cursor().execute("CREATE TABLE strong_ddl AS SELECT 7 AS v")
            cur = b.cursor()
            cur.execute("SELECT v FROM strong_ddl")
            self.assertEqual(cur.fetchone()[0], 7)
            a.close()
            time.sleep(1.5)  # the replicas catch up: reads go back to them
            cur.execute("SELECT inet_server_port()")
            self.assertIn(cur.fetchone()[0], {self.cluster.port_of(1), self.cluster.port_of(2)})
            b.close()
            eventual = PgSwitch(self.cluster, pool_mode="transaction", health_period_ms=200,
                                extra_toml='[routing]\nconsistency = "eventual"\n')
            try:
                misses, rounds = self.two_connection_loop(eventual, 1000, 10,
                                                          stop_after_misses=10)
            finally:
                eventual.stop()
            print(f"eventual: {misses} misses in {rounds} rounds (expected > 0)")
            self.assertGreater(misses, 0, "eventual consistency missed nothing: the replicas "
                                          "do not lag, the test cannot tell the modes apart")
        finally:
            for i in (1, 2):
                self.cluster.set_conf(i, "recovery_min_apply_delay", None)

    def _writer_and_reader(self, sw=None):
        """Two autocommit cursors on two connections through pgswitch (`sw`, else the class's),
        closed after the test."""
        cursors = []
        for _ in range(2):
            conn = psycopg2.connect((sw or self.sw).dsn())
            self.addCleanup(conn.close)
            conn.autocommit = True
            cursors.append(conn.cursor())
        return cursors

    @budget(90)
    def test_replay_watcher_answers_reads_after_commits(self):
        # Strong consistency without lag on purpose: a read on another connection right after a
        # commit sees it, and mostly runs on a replica, which the replay watcher (not the read)
        # asked how far it had replayed, on its own connection to each replica. A read may
        # wait up to 200 ms here: on a slow, shared machine replay can take longer than the
        # default 10 ms, and then reads rightly go to the primary (not what is tested here).
        sw = PgSwitch(self.cluster, pool_mode="transaction", health_period_ms=200,
                      extra_toml="[routing]\nmax_wait_ms = 200\n")
        self.addCleanup(sw.stop)
        ca, cb = self._writer_and_reader(sw)
        ca.execute("DROP TABLE IF EXISTS watched; CREATE TABLE watched (id int)")
        time.sleep(0.5)
        before = show_totals(sw)
        replicas = {self.cluster.port_of(1), self.cluster.port_of(2)}
        on_replica = 0
        for i in range(200):
            ca.execute("INSERT INTO watched VALUES (%s)", (i,))
            cb.execute("SELECT count(*), inet_server_port() FROM watched")
            count, port = cb.fetchone()
            self.assertEqual(count, i + 1, "a read missed a commit acknowledged before it")
            on_replica += port in replicas
        after = show_totals(sw)
        delta = {k: after[k] - before[k] for k in ("replica_waits", "replica_wait_fallbacks",
                                                  "reads_on_primary",
                                                  "replica_position_questions")}
        questions = delta["replica_position_questions"]
        print(f"\nwatcher: {on_replica}/200 reads on replicas, {delta}")
        servers = show(sw, "SHOW SERVERS")
        self.assertGreater(on_replica, 100, f"{delta}\n{servers}\n{sw.log_tail()}")
        self.assertGreater(questions, 0)
        for i in (1, 2):
            n = self.cluster.psql(i, "SELECT count(*) FROM pg_stat_activity "
                                     "WHERE application_name = 'pgswitch_replay'")
            self.assertGreaterEqual(int(n.strip()), 1, f"no watcher connection on replica {i}")

    @budget(90)
    def test_asynchronous_commit_inside_transaction_is_seen(self):
        # The fixture's servers run synchronous_commit = off; this client sets it on, so its
        # commits are covered by the primary's flush position, except in the transactions that
        # make their own commit asynchronous again (SET LOCAL, set_config): those need the
        # insert position, or the next read could run on a replica without them.
        ca, cb = self._writer_and_reader()
        ca.execute("DROP TABLE IF EXISTS async_seen; CREATE TABLE async_seen (id int)")
        ca.execute("SET synchronous_commit = on")
        time.sleep(0.5)
        ways = ["SET LOCAL synchronous_commit = off",
                "SELECT set_config('synchronous_commit', 'off', true)",
                None]  # synchronous: the flush position
        for i in range(150):
            way = ways[i % 3]
            ca.execute("BEGIN")
            if way:
                ca.execute(way)
            ca.execute("INSERT INTO async_seen VALUES (%s)", (i,))
            ca.execute("COMMIT")
            cb.execute("SELECT count(*) FROM async_seen")
            self.assertEqual(cb.fetchone()[0], i + 1, f"a read missed a commit made with {way}")

    def test_hints_and_tags(self):
        conn = psycopg2.connect(self.sw.dsn())
        conn.autocommit = True
        cur = conn.cursor()
        ports = set()
        for _ in range(30):
            cur.execute("/* pgswitch: primary */ SELECT inet_server_port()")
            ports.add(cur.fetchone()[0])
        self.assertEqual(ports, {self.cluster.port_of(0)})
        ports = set()
        for _ in range(60):
            cur.execute("SELECT inet_server_port()")
            ports.add(cur.fetchone()[0])
        self.assertEqual(ports, {self.cluster.port_of(1), self.cluster.port_of(2)})
        cur.execute("BEGIN")
        cur.execute("SELECT inet_server_port()")
        self.assertEqual(cur.fetchone()[0], self.cluster.port_of(0))
        cur.execute("COMMIT")
        cur.execute("SET default_transaction_read_only = on")
        cur.execute("BEGIN")
        cur.execute("SELECT inet_server_port(), current_setting('transaction_read_only')")
        port, ro = cur.fetchone()
        cur.execute("COMMIT")
        self.assertEqual(ro, "on")
        self.assertIn(port, {self.cluster.port_of(1), self.cluster.port_of(2)})
        conn.close()

    def test_reporting_tag_by_application_name(self):
        sw = PgSwitch(self.cluster, pool_mode="transaction", health_period_ms=200, start=False,
                      extra_toml='[[routing.rule]]\napplication_name = "reporting"\n'
                                 'tag = "reporting"\n')
        sw.backend_toml = {2: 'tags = ["reporting"]'}
        sw.write_config()
        sw.start()
        try:
            conn = psycopg2.connect(sw.dsn(application_name="reporting"))
            conn.autocommit = True
            cur = conn.cursor()
            ports = set()
            for _ in range(40):
                cur.execute("SELECT inet_server_port()")
                ports.add(cur.fetchone()[0])
            self.assertEqual(ports, {self.cluster.port_of(2)})
            cur.execute("INSERT INTO ryw VALUES (-1, 'w') ON CONFLICT (id) DO NOTHING "
                        "RETURNING inet_server_port()")
            conn.close()
            other = psycopg2.connect(sw.dsn(application_name="web"))
            other.autocommit = True
            cur = other.cursor()
            ports = set()
            for _ in range(60):
                cur.execute("/* pgswitch: tag=reporting */ SELECT inet_server_port()")
                ports.add(cur.fetchone()[0])
            self.assertEqual(ports, {self.cluster.port_of(2)})
            other.close()
        finally:
            sw.stop()

    def test_fallback_error_when_no_replica(self):
        sw = PgSwitch(self.cluster, pool_mode="transaction", health_period_ms=200,
                      extra_toml='[routing]\nfallback = "error"\nmax_lag_bytes = 1\n'
                                 'max_lag_ms = 1\n')
        try:
            self.cluster.set_conf(1, "recovery_min_apply_delay", "3s")
            self.cluster.set_conf(2, "recovery_min_apply_delay", "3s")
            time.sleep(0.5)
            conn = psycopg2.connect(sw.dsn())
            conn.autocommit = True
            cur = conn.cursor()
            deadline = time.monotonic() + 15
            got = None
            while time.monotonic() < deadline and got is None:
                cur.execute("INSERT INTO ryw VALUES (%s, 'f')", (int(time.time() * 1e6),))
                try:
                    cur.execute("SELECT 1")
                except psycopg2.Error as e:
                    got = e.pgcode
                time.sleep(0.1)
            self.assertEqual(got, "57P03")
            cur.execute("/* pgswitch: primary */ SELECT 1")  # the connection still works
            conn.close()
        finally:
            self.cluster.set_conf(1, "recovery_min_apply_delay", None)
            self.cluster.set_conf(2, "recovery_min_apply_delay", None)
            sw.stop()

    def _ports(self, cur, sql: str, n: int) -> set:
        ports = set()
        for _ in range(n):
            cur.execute(sql)
            ports.add(cur.fetchone()[0])
        return ports

    def test_rules_by_database_and_user_and_write_functions(self):
        self.cluster.psql(0, "CREATE TABLE IF NOT EXISTS audit (t text); "
                             "GRANT ALL ON audit TO app, md5user; "
                             "CREATE OR REPLACE FUNCTION audit_note(t text) RETURNS int "
                             "LANGUAGE sql AS $$ INSERT INTO audit VALUES (t); "
                             "SELECT inet_server_port() $$; "
                             "CREATE OR REPLACE FUNCTION audit_peek() RETURNS int "
                             "LANGUAGE sql STABLE AS $$ SELECT inet_server_port() $$",
                          db="appdb")
        self.cluster.wait_replicated()
        # Eventual: this is about where rules and write functions send requests. Under the
        # default (strong) a read right after the audit_note writes waits at most max_wait_ms
        # (10 ms) for a replica to confirm it replayed them and otherwise runs on the primary,
        # which a scheduling hiccup made happen once in a full run.
        sw = PgSwitch(self.cluster, pool_mode="transaction", health_period_ms=200, start=False,
                      extra_toml='[routing]\nconsistency = "eventual"\n'
                                 'write_functions = ["audit_note"]\n\n'
                                 '[[routing.rule]]\nuser = "md5user"\ntag = "reporting"\n\n'
                                 '[[routing.rule]]\ndatabase = "postgres"\ntag = "web"\n')
        sw.backend_toml = {1: 'tags = ["web"]', 2: 'tags = ["reporting"]'}
        sw.write_config()
        sw.start()
        primary, web, reporting = (self.cluster.port_of(i) for i in (0, 1, 2))
        try:
            def cursor(**kw):
                conn = psycopg2.connect(sw.dsn(**kw))
                conn.autocommit = True
                self.addCleanup(conn.close)
                return conn.cursor()

            by_user = cursor(user="md5user")
            self.assertEqual(self._ports(by_user, "SELECT inet_server_port()", 40), {reporting})
            by_db = cursor(db="postgres")
            self.assertEqual(self._ports(by_db, "SELECT inet_server_port()", 40), {web})
            plain = cursor()  # no rule matches app@appdb: both replicas
            self.assertEqual(self._ports(plain, "SELECT inet_server_port()", 80),
                             {web, reporting})
            # A configured write function goes to the primary (on a replica it would fail
            # with 25006); a function not in the list is a read like any other.
            self.assertEqual(self._ports(plain, "SELECT audit_note('x')", 20), {primary})
            self.assertEqual(self._ports(plain, "SELECT audit_peek()", 40), {web, reporting})
            # A rule still sends writes to the primary.
            by_user.execute("SELECT audit_note('y')")
            self.assertEqual(by_user.fetchone()[0], primary)
        finally:
            sw.stop()

    def test_max_lag_ms_alone_skips_a_delayed_replica(self):
        sw = PgSwitch(self.cluster, pool_mode="transaction", health_period_ms=200,
                      extra_toml="[routing]\nmax_lag_bytes = 0\nmax_lag_ms = 500\n")
        slow, fast = self.cluster.port_of(1), self.cluster.port_of(2)
        try:
            conn = psycopg2.connect(sw.dsn())
            conn.autocommit = True
            cur = conn.cursor()
            self.assertEqual(self._ports(cur, "SELECT inet_server_port()", 60), {slow, fast})
            self.cluster.set_conf(1, "recovery_min_apply_delay", "3s")
            # Commit steadily so the delayed replica's newest replayed commit grows old.
            deadline = time.monotonic() + 20
            ports: list = []
            while time.monotonic() < deadline:
                cur.execute("INSERT INTO ryw VALUES (%s, 'lag')", (int(time.time() * 1e6),))
                cur.execute("SELECT inet_server_port()")
                ports.append(cur.fetchone()[0])
                if len(ports) >= 30 and set(ports[-30:]) == {fast}:
                    break
                time.sleep(0.05)
            self.assertEqual(set(ports[-30:]), {fast},
                             "reads kept reaching the replica 3 s behind")
            self.cluster.set_conf(1, "recovery_min_apply_delay", None)
            # Once it has caught up, the replica gets reads again.
            deadline = time.monotonic() + 20
            seen = set()
            while time.monotonic() < deadline and slow not in seen:
                cur.execute("SELECT inet_server_port()")
                seen.add(cur.fetchone()[0])
                time.sleep(0.02)
            self.assertIn(slow, seen, "the replica never got reads back after catching up")
            conn.close()
        finally:
            self.cluster.set_conf(1, "recovery_min_apply_delay", None)
            sw.stop()

    def test_pinned_on_a_replica_gets_a_clear_error_for_writes(self):
        conn = psycopg2.connect(self.sw.dsn())
        conn.autocommit = True
        self.addCleanup(conn.close)
        cur = conn.cursor()
        cur.execute("BEGIN READ ONLY")
        cur.execute("DECLARE held CURSOR WITH HOLD FOR SELECT inet_server_port()")
        cur.execute("COMMIT")
        cur.execute("FETCH held")
        port = cur.fetchone()[0]
        self.assertIn(port, {self.cluster.port_of(1), self.cluster.port_of(2)})
        with self.assertRaises(psycopg2.Error) as cm:
            cur.execute("INSERT INTO ryw VALUES (-42, 'pinned')")
        self.assertEqual(cm.exception.pgcode, "0A000", str(cm.exception))
        self.assertIn("pinned to replica", str(cm.exception))
        self.assertIn("WITH HOLD cursor", str(cm.exception))
        # Reads still run there, the cursor and SQL prepared statements included.
        cur.execute("SELECT inet_server_port()")
        self.assertEqual(cur.fetchone()[0], port)
        cur.execute("BEGIN READ ONLY")
        cur.execute("PREPARE p AS SELECT inet_server_port()")
        cur.execute("COMMIT")
        cur.execute("EXECUTE p")
        self.assertEqual(cur.fetchone()[0], port)
        cur.execute("DEALLOCATE p")
        cur.execute("CLOSE held")


if __name__ == "__main__":
    unittest.main()
