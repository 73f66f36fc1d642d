"""Admin console, live reload, Prometheus metrics and the status page (issue 7): pgswitch in
transaction mode in front of a primary and two streaming replicas, the second replica left out
of the configuration at first. psql prints every SHOW as a table and the values match the real
cluster (roles, replication lag, server connections, backend pids); RELOAD adds the missing
replica under pgbench load with zero client errors; /metrics counters move under load; /status
is JSON; headless chromium renders the status page; SHUTDOWN WAIT lets a transaction finish
while a second instance on the same port (SO_REUSEPORT) takes the new clients."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import unittest
import urllib.request
from contextlib import closing

import psycopg
import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import HOST, PG_BIN, PgCluster, PgSwitch, free_port  # noqa: E402
from pgwire import PgWire, PgWireError  # noqa: E402
from proxycase import ProxyTestCase, budget  # noqa: E402

PSQL = str(PG_BIN / "psql")
PGBENCH = str(PG_BIN / "pgbench")

SHOW_COLUMNS = {
    "SHOW BACKENDS": ["name", "host", "port", "role", "state", "weight", "tags", "lag_bytes",
                      "lag_ms", "timeline", "server_connections", "reads", "writes"],
    "SHOW POOLS": ["database", "user", "backend", "pool_mode", "cl_active", "cl_waiting",
                   "sv_active", "sv_idle", "sv_connecting", "sv_total", "pool_size",
                   "maxwait_ms"],
    "SHOW CLIENTS": ["id", "worker", "user", "database", "application_name", "addr", "state",
                     "age_ms", "server_id", "pinned", "pin_reason"],
    "SHOW SERVERS": ["id", "worker", "backend", "database", "user", "state", "txn_status",
                     "age_ms", "idle_ms", "client_id", "backend_pid", "prepared_statements"],
    "SHOW STATS": ["backend", "transactions", "queries", "reads", "writes", "bytes_in",
                   "bytes_out", "avg_latency_us", "p99_latency_us"],
    "SHOW CONFIG": ["key", "value", "reloadable"],
    "SHOW EVENTS": ["time", "type", "backend", "detail"],
    "SHOW COORDINATION": ["key", "value"],
    "SHOW VERSION": ["version"],
    "HELP": ["command", "description"],
}


class PartialSwitch(PgSwitch):
    """A PgSwitch with metrics_listen whose config leaves out some cluster nodes (added later
    with RELOAD)."""

    def __init__(self, cluster, omit=(), metrics_port=None, **kw):
        self.omit = set(omit)
        self.metrics_port = metrics_port
        super().__init__(cluster, **kw)

    def config_text(self) -> str:
        nodes = self.cluster.nodes
        try:
            self.cluster.nodes = [n for n in nodes if n.index not in self.omit]
            text = super().config_text()
        finally:
            self.cluster.nodes = nodes
        if self.metrics_port:
            text = text.replace(
                "[server]\n", f'[server]\nmetrics_listen = "{HOST}:{self.metrics_port}"\n', 1)
        return text


def http_get(port: int, path: str, timeout: float = 10) -> tuple[int, str, str]:
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()


def metric_sum(text: str, name: str, **labels) -> float:
    """Sum of the samples of metric `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
    return total


class ConsoleTest(ProxyTestCase):
    cluster: PgCluster
    sw: PgSwitch
    default_budget = 60.0

    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster(replicas=2).start()
        try:
            cls.metrics_port = free_port()
            cls.sw = PartialSwitch(cls.cluster, omit={2}, metrics_port=cls.metrics_port,
                                   pool_mode="transaction", workers=2)
            cls.tmp = cls.cluster.tmpdir
            env = dict(os.environ, PGPASSWORD="postgres")
            subprocess.run([PGBENCH, "-i", "-s", "1", "-q", "-h", HOST, "-p",
                            str(cls.cluster.port_of(0)), "-U", "postgres", "appdb"],
                           check=True, capture_output=True, env=env, cwd=cls.tmp, timeout=60)
            cls.cluster.psql(0, "GRANT ALL ON ALL TABLES IN SCHEMA public TO app", db="appdb")
            cls.cluster.wait_replicated()
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

    # -- helpers ------------------------------------------------------------------------------
    def psql(self, command, *opts, user="admin", db="pgswitch", sw=None, check=True):
        sw = sw or self.sw
        cp = subprocess.run([PSQL, "-X", "-v", "ON_ERROR_STOP=1", *opts,
                             sw.dsn(user=user, db=db), "-c", command],
                            capture_output=True, text=True, timeout=30, cwd=self.tmp,
                            env=dict(os.environ, PGCONNECT_TIMEOUT="10"))
        if check and cp.returncode != 0:
            self.fail(f"psql -c {command!r} failed ({cp.returncode}): {cp.stderr}")
        return cp

    def app(self, **kw):
        conn = psycopg2.connect(self.sw.dsn(**kw))
        conn.autocommit = True
        return conn

    # -- SHOW ---------------------------------------------------------------------------------
    def test_01_every_show_prints_a_table(self):
        for command, cols in SHOW_COLUMNS.items():
            with self.subTest(command=command):
                out = self.psql(command).stdout
                lines = out.rstrip("\n").splitlines()
                header = [c.strip() for c in lines[0].split("|")]
                self.assertEqual(header, cols, out)
                self.assertRegex(lines[1], r"^-+(\+-+)*$")
                self.assertRegex(lines[-1], r"^\(\d+ rows?\)$")
        out = self.psql("SHOW VERSION").stdout
        self.assertIn("pgswitch 0.1.0", out)
        out = self.psql("HELP").stdout
        for cmd in ("SHOW BACKENDS", "PAUSE [db]", "SWITCHOVER TO backend", "SHUTDOWN [WAIT]"):
            self.assertIn(cmd, out)

    def test_02_backends_match_the_cluster(self):
        b = self.wait_for(lambda: (lambda r: r if r["pg1"]["role"] == "primary" and
                                   r["pg2"]["role"] == "replica" and
                                   r["pg2"]["state"] == "up" else None)(self.backends()),
                          what="pg1 primary, pg2 replica")
        self.assertEqual(set(b), {"pg1", "pg2"})  # pg3 is not configured yet
        self.assertEqual(b["pg1"]["port"], self.cluster.port_of(0))
        self.assertEqual(b["pg2"]["port"], self.cluster.port_of(1))
        self.assertEqual(b["pg1"]["state"], "up")
        tl = int(self.cluster.psql(0, "SELECT timeline_id FROM pg_control_checkpoint()"))
        self.assertEqual(b["pg1"]["timeline"], tl)
        self.assertEqual(b["pg1"]["lag_bytes"], 0)
        # Replication lag as the cluster itself measures it: pause replay on the replica,
        # write, and compare with pg_wal_lsn_diff(primary's current LSN, replica's replay LSN).
        self.cluster.psql(1, "SELECT pg_wal_replay_pause()")
        try:
            self.cluster.psql(0, "CREATE TABLE lagtest AS SELECT g FROM generate_series(1, 30000) g",
                              db="appdb")
            time.sleep(0.3)
            replay = self.cluster.psql(1, "SELECT pg_last_wal_replay_lsn()")
            expected = int(float(self.cluster.psql(
                0, f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{replay}')")))
            self.assertGreater(expected, 100_000)
            lag = self.wait_for(
                lambda: (lambda v: v if v and v >= expected * 0.95 else None)(
                    self.backends()["pg2"]["lag_bytes"]),
                what=f"pg2 lag_bytes near {expected}")
            self.assertLessEqual(lag, expected + 256 * 1024, f"expected about {expected}")
            out = self.psql("SHOW BACKENDS").stdout
            self.assertRegex(out, rf"pg2\s*\|.*\|\s*replica\s*\|\s*up\s*\|.*\|\s*{lag}\s*\|")
        finally:
            self.cluster.psql(1, "SELECT pg_wal_replay_resume()")
            self.cluster.psql(0, "DROP TABLE IF EXISTS lagtest", db="appdb")
        self.wait_for(lambda: self.backends()["pg2"]["lag_bytes"] == 0, what="pg2 caught up")

    def test_03_clients_servers_pools_stats(self):
        with closing(self.app(application_name="console-test")) as conn, conn.cursor() as cur:
            before = {r["backend"]: r for r in self.rows("SHOW STATS")}
            for _ in range(20):
                cur.execute("SELECT 1")
            conn.autocommit = False
            cur.execute("SELECT pg_backend_pid()")  # opens a transaction: the server stays
            pid = cur.fetchone()[0]
            clients = self.rows("SHOW CLIENTS")
            mine = [c for c in clients if c["application_name"] == "console-test"]
            self.assertEqual(len(mine), 1, clients)
            me = mine[0]
            self.assertEqual((me["user"], me["database"], me["state"]), ("app", "appdb", "active"))
            self.assertIsNotNone(me["server_id"])
            consoles = [c for c in clients if c["database"] == "pgswitch"]
            self.assertTrue(consoles and consoles[0]["state"] == "console", clients)
            servers = {s["id"]: s for s in self.rows("SHOW SERVERS")}
            srv = servers[me["server_id"]]
            self.assertEqual(srv["backend_pid"], pid)
            self.assertEqual(srv["client_id"], me["id"])
            self.assertEqual((srv["state"], srv["txn_status"], srv["database"], srv["user"]),
                             ("active", "T", "appdb", "app"))
            pools = [p for p in self.rows("SHOW POOLS")
                     if p["database"] == "appdb" and p["user"] == "app"
                     and p["backend"] == srv["backend"]]
            self.assertEqual(len(pools), 1)
            self.assertEqual(pools[0]["pool_mode"], "transaction")
            self.assertGreaterEqual(pools[0]["cl_active"], 1)
            self.assertGreaterEqual(pools[0]["sv_active"], 1)
            self.assertEqual(pools[0]["pool_size"], 20)
            conn.rollback()
            after = {r["backend"]: r for r in self.rows("SHOW STATS")}
        total_q = after["total"]["queries"] - before["total"]["queries"]
        self.assertGreaterEqual(total_q, 21)
        self.assertGreaterEqual(after["total"]["transactions"] - before["total"]["transactions"],
                                20)
        self.assertGreater(after["total"]["bytes_in"], before["total"]["bytes_in"])
        self.assertGreater(after["total"]["bytes_out"], before["total"]["bytes_out"])
        self.assertGreater(after["total"]["p99_latency_us"], 0)
        self.assertGreaterEqual(after["total"]["p99_latency_us"], after["total"]["avg_latency_us"])

    def test_04_config_events_version(self):
        cfg = {r["key"]: r for r in self.rows("SHOW CONFIG")}
        self.assertEqual(cfg["server.pool_mode"]["value"], "transaction")
        self.assertEqual(cfg["server.workers"]["value"], "2")
        self.assertFalse(cfg["server.listen"]["reloadable"])
        self.assertEqual(cfg["user.app.password"]["value"], "********")
        self.assertEqual(cfg["server.metrics_listen"]["value"], f"{HOST}:{self.metrics_port}")
        self.assertEqual(cfg["config_file"]["value"], str(self.sw.config_path))
        self.assertEqual(self.rows("SHOW VERSION"), [{"version": "pgswitch 0.1.0"}])
        # A replica stopped and started shows up as events.
        self.cluster.stop_node(1)
        try:
            self.wait_for(lambda: self.backends()["pg2"]["state"] == "down", what="pg2 down")
        finally:
            self.cluster.start_node(1)
        self.wait_for(lambda: self.backends()["pg2"]["state"] == "up", what="pg2 up again")
        events = self.rows("SHOW EVENTS")
        kinds = [(e["type"], e["backend"]) for e in events]
        self.assertIn(("backend_down", "pg2"), kinds)
        self.assertIn(("backend_up", "pg2"), kinds)
        self.assertRegex(events[-1]["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        out = self.psql("SHOW EVENTS").stdout
        self.assertIn("backend_down", out)

    # -- errors and admission -----------------------------------------------------------------
    def test_05_unknown_command_and_errors(self):
        cp = self.psql("FROBNICATE", check=False)
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn('unknown command "FROBNICATE"', cp.stderr)
        self.assertIn("HINT:  try HELP", cp.stderr)
        with closing(self.console()) as conn, conn.cursor() as cur:
            for sql, code in [("FROBNICATE", "42601"), ("DISABLE pg9", "42704"),
                              ("SET server.listen = '0.0.0.0:1'", "55000"),
                              ("SET poolsize = 3", "42704"), ("SELECT 1", "42601")]:
                with self.assertRaises(psycopg2.Error) as cm:
                    cur.execute(sql)
                self.assertEqual(cm.exception.pgcode, code, sql)
            cur.execute("SHOW VERSION")  # the session is still usable
            self.assertEqual(cur.fetchone()[0], "pgswitch 0.1.0")

    def test_06_non_admin_refused(self):
        with PgWire(HOST, self.sw.port) as w:
            with self.assertRaises(PgWireError) as cm:
                w.startup("app", "pgswitch", password="app")
            self.assertEqual(cm.exception.sqlstate, "42501")
            self.assertEqual(cm.exception.fields.get("S"), "FATAL")
        with PgWire(HOST, self.sw.port) as w:
            with self.assertRaises(PgWireError) as cm:
                w.startup("admin", "pgswitch", password="wrong")
            self.assertEqual(cm.exception.sqlstate, "28P01")
        cp = self.psql("SHOW VERSION", user="app", check=False)
        self.assertIn('permission denied for database "pgswitch"', cp.stderr)

    def test_07_extended_protocol_refused(self):
        with psycopg.connect(self.sw.dsn(user="admin", db="pgswitch"), autocommit=True) as conn:
            with self.assertRaises(psycopg.errors.FeatureNotSupported):
                conn.execute("SHOW VERSION", prepare=True)  # Parse/Bind/Execute/Sync
            cur = psycopg.ClientCursor(conn)
            cur.execute("SHOW VERSION")  # simple protocol
            self.assertEqual(cur.fetchone()[0], "pgswitch 0.1.0")

    # -- actions ------------------------------------------------------------------------------
    def test_08_pause_resume(self):
        with closing(self.console()) as con, con.cursor() as ccur, closing(self.app()) as conn:
            conn.cursor().execute("SELECT 1")
            ccur.execute("PAUSE appdb")
            result = {}

            def run():
                t0 = time.monotonic()
                with conn.cursor() as cur:
                    cur.execute("SELECT 42")
                    result["value"] = cur.fetchone()[0]
                result["elapsed"] = time.monotonic() - t0

            th = threading.Thread(target=run, daemon=True)
            th.start()
            time.sleep(1.0)
            self.assertNotIn("value", result, "a request ran while appdb was paused")
            waiting = [c for c in self.rows("SHOW CLIENTS") if c["state"] == "waiting"]
            self.assertEqual(len(waiting), 1)
            with self.assertRaises(psycopg2.Error) as cm:
                ccur.execute("RESUME otherdb")  # no client ever used it: a typo
            self.assertEqual(cm.exception.pgcode, "3D000")
            ccur.execute("RESUME appdb")
            th.join(10)
            self.assertEqual(result.get("value"), 42)
            self.assertGreater(result["elapsed"], 0.9)

    def test_08b_console_guard_rails(self):
        """Issue 17: a console command must not leave pgswitch stuck. PAUSE of an empty or
        unknown database, a SET that locks every admin out or blanks the check query are
        refused; what SET and RELOAD log is cut to a sane length."""
        def refused(cur, sql, code, text=None):
            with self.assertRaises(psycopg2.Error) as cm:
                cur.execute(sql)
            self.assertEqual(cm.exception.pgcode, code, sql)
            if text:
                self.assertIn(text, str(cm.exception), sql)

        def app_query_runs():
            """A request through pgswitch answers (nothing paused), bounded in time."""
            out = {}

            def run():
                with closing(self.app()) as conn, conn.cursor() as cur:
                    cur.execute("SELECT 7")
                    out["v"] = cur.fetchone()[0]
            t = threading.Thread(target=run, daemon=True)
            t.start()
            t.join(5)
            return out.get("v") == 7

        with closing(self.console()) as con, con.cursor() as cur:
            with closing(self.app()) as conn:  # appdb has a pool and a client: known
                conn.cursor().execute("SELECT 1")
            refused(cur, 'PAUSE ""', "42601", "zero-length delimited identifier")
            refused(cur, 'RESUME ""', "42601")
            refused(cur, "PAUSE nosuchdb", "3D000", 'database "nosuchdb" does not exist')
            refused(cur, "RESUME nosuchdb", "3D000")
            refused(cur, "PAUSE pgswitch", "55000")
            self.assertTrue(app_query_runs(), "a refused PAUSE paused something")
            self.assertEqual(metric_sum(http_get(self.metrics_port, "/metrics")[2],
                                        "pgswitch_paused"), 0)
            cur.execute("PAUSE appdb")  # a known database still pauses...
            cur.execute("RESUME appdb")
            self.assertTrue(app_query_runs())

            # SET that would lock every admin out, or blank the check query: 22023.
            refused(cur, "SET admin_users = ''", "22023", "lock every admin out")
            refused(cur, "SET server.admin_users = 'nobody'", "22023", "lock every admin out")
            refused(cur, "SET pool.server_check_query = ''", "22023", "must not be empty")
            refused(cur, "SET pool.server_check_query = '   '", "22023", "must not be empty")
            cfg = {r["key"]: r["value"] for r in self.rows("SHOW CONFIG")}
            self.assertEqual(cfg["server.admin_users"], "admin")
            self.assertEqual(cfg["pool.server_check_query"], "SELECT 1")
            # ...and a new admin login still works.
            self.assertEqual(self.rows("SHOW VERSION"), [{"version": "pgswitch 0.1.0"}])

            # A 1 MB value is applied but logged cut.
            big = "SELECT 1 -- " + "x" * 1_000_000
            cur.execute(f"SET pool.server_check_query = '{big}'")
            cur.execute("SET pool.server_check_query = 'SELECT 1'")
        log = self.sw.log()
        lines = [ln for ln in log.splitlines() if "console: SET pool.server_check_query" in ln]
        self.assertTrue(lines, log[-2000:])
        self.assertIn(f"... ({len(big)} bytes)", lines[-2])
        self.assertLess(max(len(ln) for ln in log.splitlines()), 2000)

        # RELOAD of a file with a blank check query is refused too, and its errors are logged
        # cut as well.
        good = self.sw.config_path.read_text()
        try:
            self.sw.config_path.write_text(good + '\n[pool]\nserver_check_query = " "\n')
            with closing(self.console()) as con, con.cursor() as cur:
                refused(cur, "RELOAD", "55000", "server_check_query must not be empty or blank")
            self.sw.config_path.write_text(good + f'\n[pool]\n{"k" * 100_000} = 1\n')
            with closing(self.console()) as con, con.cursor() as cur:
                refused(cur, "RELOAD", "55000", "unknown key")
        finally:
            self.sw.config_path.write_text(good)
        self.assertLess(max(len(ln) for ln in self.sw.log().splitlines()), 2000)
        self.assertTrue(app_query_runs())

    def test_09_set_disable_drain_enable(self):
        with closing(self.console()) as con, con.cursor() as cur:
            cur.execute("SET pool_size = 7")
            cfg = {r["key"]: r["value"] for r in self.rows("SHOW CONFIG")}
            self.assertEqual(cfg["pool.pool_size"], "7")
            cur.execute("SET pool.pool_size TO '20'")
            with self.assertRaises(psycopg2.Error) as cm:
                cur.execute("SET pool_size = 0")
            self.assertEqual(cm.exception.pgcode, "22023")
            cur.execute("DISABLE pg2")
            self.wait_for(lambda: self.backends()["pg2"]["state"] == "disabled",
                          what="pg2 disabled")
            cur.execute("ENABLE pg2")
            self.wait_for(lambda: self.backends()["pg2"]["state"] == "up", what="pg2 enabled")
            cur.execute("DRAIN pg2")
            self.wait_for(lambda: self.backends()["pg2"]["state"] == "draining",
                          what="pg2 draining")
            cur.execute("ENABLE pg2")
            self.wait_for(lambda: self.backends()["pg2"]["state"] == "up", what="pg2 up")
            cur.execute("ATTACH pg2")
            with self.assertRaises(psycopg2.Error) as cm:
                cur.execute("PROMOTE pg1")
            self.assertEqual(cm.exception.pgcode, "55000")
            self.assertIn("pg1 is already the primary", str(cm.exception))
            with self.assertRaises(psycopg2.Error) as cm:
                cur.execute("SWITCHOVER TO pg2; SHOW BACKENDS")
            self.assertEqual(cm.exception.pgcode, "0A000")
            self.assertEqual(self.backends()["pg1"]["role"], "primary")

    def test_09b_disable_with_a_query_in_flight(self):
        """DISABLE closes the backend's connections, also one with a query running: its
        client must hear about it (the read is retried elsewhere or fails), never wait on a
        connection that is gone."""
        conn = self.app()
        self.addCleanup(conn.close)
        cur = conn.cursor()
        result = {}

        def run():
            try:
                cur.execute("/* pgswitch: replica */ SELECT inet_server_port() "
                            "FROM pg_sleep(2)")
                result["port"] = cur.fetchone()[0]
            except psycopg2.Error as e:
                result["error"] = e.pgcode
        t = threading.Thread(target=run, daemon=True)
        t.start()
        time.sleep(0.5)
        with closing(self.console()) as con, con.cursor() as ccur:
            ccur.execute("DISABLE pg2")
            try:
                t.join(10)
                self.assertFalse(t.is_alive(), "the client of a closed server connection hangs")
                if "port" in result:  # retried on the primary
                    self.assertEqual(result["port"], self.cluster.port_of(0))
                else:
                    self.assertIn(result.get("error"), ("08006", "57P01"), result)
                cur.execute("SELECT 1")  # the connection stays usable
                self.assertEqual(cur.fetchone()[0], 1)
            finally:
                ccur.execute("ENABLE pg2")
        self.wait_for(lambda: self.backends()["pg2"]["state"] == "up", what="pg2 up")

    def test_09c_disable_enable_churn_under_load(self):
        """DISABLE/ENABLE over and over while clients with their own settings run reads: a
        server closed at any moment (also while being configured for a client) costs no
        client an error, a disconnect or its settings."""
        stop = time.monotonic() + 6
        errors, done = [], [0]

        def client(i):
            dsn = self.sw.dsn(application_name=f"churn{i}",
                              options=f"-c statement_timeout={1001 + i}")
            try:
                with closing(psycopg2.connect(dsn)) as conn:
                    conn.autocommit = True
                    cur = conn.cursor()
                    while time.monotonic() < stop:
                        cur.execute("SELECT current_setting('statement_timeout'), "
                                    "current_setting('application_name')")
                        got = cur.fetchone()
                        if got != (f"{1001 + i}ms", f"churn{i}"):
                            errors.append(f"client {i} got settings {got}")
                        done[0] += 1
            except psycopg2.Error as e:
                errors.append(f"client {i}: {e.pgcode} {e}")
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        toggles = 0
        with closing(self.console()) as con, con.cursor() as cur:
            try:
                while time.monotonic() < stop - 0.5:
                    cur.execute("DISABLE pg2" if toggles % 2 == 0 else "ENABLE pg2")
                    toggles += 1
                    time.sleep(0.15)
            finally:
                cur.execute("ENABLE pg2")
        for t in threads:
            t.join(20)
        self.assertEqual(errors, [])
        self.assertGreater(toggles, 10)
        self.assertGreater(done[0], 100)
        self.wait_for(lambda: self.backends()["pg2"]["state"] == "up", what="pg2 up")

    @budget(90)
    def test_10_reload_adds_replica_under_load(self):
        env = dict(os.environ, PGPASSWORD="app", PGCONNECT_TIMEOUT="10")
        bench = subprocess.Popen(
            [PGBENCH, "-h", HOST, "-p", str(self.sw.port), "-U", "app", "-S", "-c", "4",
             "-j", "2", "-T", "10", "-n", "appdb"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=self.tmp)
        try:
            time.sleep(3)
            self.sw.omit = set()
            self.sw.write_config()
            with closing(self.console()) as con, con.cursor() as cur:
                cur.execute("RELOAD")
            b = self.wait_for(lambda: (lambda r: r if "pg3" in r and r["pg3"]["role"] == "replica"
                                       and r["pg3"]["state"] == "up" else None)(self.backends()),
                              what="pg3 up as a replica")
            self.assertEqual(b["pg3"]["port"], self.cluster.port_of(2))
            try:
                out, err = bench.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                for what in ("SHOW CLIENTS", "SHOW SERVERS", "SHOW POOLS", "SHOW BACKENDS"):
                    print(f"\n{what}:", *self.rows(what), sep="\n  ", file=sys.stderr)
                raise
        finally:
            if bench.poll() is None:
                bench.kill()
                bench.communicate()
        self.assertEqual(bench.returncode, 0, out + err)
        m = re.search(r"number of failed transactions: (\d+)", out)
        if m:
            self.assertEqual(int(m.group(1)), 0, out)
        self.assertNotIn("error", err.lower(), err)
        # The reload restarted the health checks; the events from before are still shown.
        kinds = [(e["type"], e["backend"]) for e in self.rows("SHOW EVENTS")]
        self.assertIn(("backend_down", "pg2"), kinds)
        # Reads reach the new replica.
        stats = {r["backend"]: r for r in self.rows("SHOW STATS")}
        self.assertIn("pg3", stats)
        before = stats["pg3"]["queries"]
        with closing(self.app()) as conn, conn.cursor() as cur:
            for _ in range(200):
                cur.execute("SELECT abalance FROM pgbench_accounts WHERE aid = 1")
        stats = {r["backend"]: r for r in self.rows("SHOW STATS")}
        self.assertGreater(stats["pg3"]["queries"], before,
                           f"no read reached pg3 after RELOAD: {stats}")
        # An invalid file is refused and the running configuration stays.
        good = self.sw.config_path.read_text()
        try:
            self.sw.config_path.write_text(good + "\n[pool]\npool_size = \"many\"\n")
            with closing(self.console()) as con, con.cursor() as cur:
                with self.assertRaises(psycopg2.Error) as cm:
                    cur.execute("RELOAD")
                self.assertEqual(cm.exception.pgcode, "55000")
                self.assertIn("pgswitch.toml", str(cm.exception))
        finally:
            self.sw.config_path.write_text(good)
        self.assertIn("pg3", self.backends())

    # -- HTTP -----------------------------------------------------------------------------------
    def test_11_metrics_move_under_load(self):
        status, ctype, text = http_get(self.metrics_port, "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"), ctype)
        self.assertEqual(metric_sum(text, "pgswitch_backend_up", backend="pg1"), 1)
        self.assertEqual(metric_sum(text, "pgswitch_backend_role", backend="pg1", role="primary"),
                         1)
        q0 = metric_sum(text, "pgswitch_queries_total")
        t0 = metric_sum(text, "pgswitch_transactions_total")
        b0 = metric_sum(text, "pgswitch_bytes_total", direction="out")
        h0 = metric_sum(text, "pgswitch_query_duration_seconds_count")
        stop = threading.Event()
        errors = []

        def load():
            try:
                with closing(self.app()) as conn, conn.cursor() as cur:
                    while not stop.is_set():
                        cur.execute("SELECT count(*) FROM pgbench_branches")
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            samples = []
            for _ in range(3):
                time.sleep(1)
                samples.append(metric_sum(http_get(self.metrics_port, "/metrics")[2],
                                          "pgswitch_queries_total"))
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        self.assertEqual(errors, [])
        self.assertTrue(q0 < samples[0] < samples[1] < samples[2], (q0, samples))
        text = http_get(self.metrics_port, "/metrics")[2]
        self.assertGreater(metric_sum(text, "pgswitch_transactions_total"), t0)
        self.assertGreater(metric_sum(text, "pgswitch_bytes_total", direction="out"), b0)
        self.assertGreater(metric_sum(text, "pgswitch_query_duration_seconds_count"), h0)

    def test_12_status_json(self):
        status, ctype, body = http_get(self.metrics_port, "/status")
        self.assertEqual(status, 200)
        self.assertTrue(ctype.startswith("application/json"), ctype)
        doc = json.loads(body)
        self.assertTrue(doc["topology"]["known"])
        self.assertEqual(doc["topology"]["primary"], "pg1")
        roles = {b["name"]: b["role"] for b in doc["backends"]}
        self.assertEqual(roles.get("pg1"), "primary")
        self.assertEqual(roles.get("pg2"), "replica")
        self.assertGreater(doc["totals"]["queries"], 0)
        self.assertIsInstance(doc["events"], list)

    @budget(90)
    def test_13_status_page_in_headless_chromium(self):
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if not chromium:
            self.fail("chromium is not installed (scripts/install-deps.sh installs it)")
        profile = self.tmp / f"chromium-{os.getpid()}"
        cp = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}",
             "--virtual-time-budget=5000", "--dump-dom",
             f"http://{HOST}:{self.metrics_port}/"],
            capture_output=True, text=True, timeout=80, cwd=self.tmp)
        shutil.rmtree(profile, ignore_errors=True)
        dom = cp.stdout
        self.assertIn('id="backends"', dom, cp.stderr[-2000:])
        cards = dom.split('id="backends"', 1)[1].split('id="pools"', 1)[0]
        for name in ("pg1", "pg2"):
            self.assertIn(name, cards, "the page's script did not render the backends")
        self.assertIn("primary", cards)
        self.assertIn("replica", cards)

    # -- SHUTDOWN WAIT and a restart without refusing clients -----------------------------------
    @budget(90)
    def test_14_shutdown_wait_with_a_second_instance(self):
        old = PgSwitch(self.cluster, pool_mode="transaction", workers=2)
        new = None
        try:
            conn = psycopg2.connect(old.dsn())
            cur = conn.cursor()
            cur.execute("CREATE TABLE IF NOT EXISTS shutdown_wait(x int)")
            conn.commit()
            cur.execute("INSERT INTO shutdown_wait VALUES (1)")  # a transaction stays open
            # The replacement binds the same port (SO_REUSEPORT) before the old one drains.
            new = PgSwitch(self.cluster, pool_mode="transaction", workers=2, port=old.port)
            self.wait_for(lambda: "listening on" in new.log(), what="the new instance listening")
            # Reach the old instance's console (the kernel spreads connections over both).
            for _ in range(50):
                con = self.console(old)
                ccur = con.cursor()
                ccur.execute("SHOW CONFIG")
                cfg = dict((k, v) for k, v, _ in ccur.fetchall())
                if cfg["config_file"] == str(old.config_path):
                    break
                con.close()
            else:
                self.fail("never reached the old instance's console")
            ccur.execute("SHUTDOWN WAIT")
            time.sleep(0.5)
            self.assertTrue(old.running(), "SHUTDOWN WAIT did not wait for the transaction")
            # New clients are served (by the new instance) while the old one drains.
            for _ in range(10):
                c2 = psycopg2.connect(old.dsn())
                c2.cursor().execute("SELECT 1")
                c2.close()
            # The open transaction finishes normally on the old instance...
            cur.execute("INSERT INTO shutdown_wait VALUES (2)")
            conn.commit()
            # ...and then its connection ends, and the old process exits cleanly.
            deadline = time.monotonic() + 10
            while old.running() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertFalse(old.running(), "the old instance did not exit after the "
                                            "transaction finished")
            self.assertEqual(old.stop(), 0)
            with self.assertRaises(psycopg2.Error):
                cur.execute("SELECT 1")
            conn.close()
            self.assertEqual(self.cluster.psql(0, "SELECT count(*) FROM shutdown_wait",
                                               db="appdb"), "2")
            c3 = psycopg2.connect(new.dsn())  # the new instance carries on
            c3.cursor().execute("SELECT 1")
            c3.close()
        finally:
            old.kill()
            if new is not None:
                new.stop()
            self.cluster.psql(0, "DROP TABLE IF EXISTS shutdown_wait", db="appdb")

    @budget(30)
    def test_15_shutdown(self):
        sw = PgSwitch(self.cluster, pool_mode="session", workers=1)
        try:
            with closing(self.console(sw)) as con, con.cursor() as cur:
                with self.assertRaises(psycopg2.Error):
                    cur.execute("SHUTDOWN")
                    cur.execute("SELECT 1")  # the console closed after SHUTDOWN's answer
            deadline = time.monotonic() + 10
            while sw.running() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertFalse(sw.running())
            self.assertEqual(sw.stop(), 0)
        finally:
            sw.kill()

    @budget(90)
    def test_16_switchover(self):
        """Last: it moves the primary to pg2 for good."""
        self.cluster.wait_replicated()
        with closing(self.console()) as con, con.cursor() as cur:
            cur.execute("SWITCHOVER TO pg2")
        self.assertFalse(self.cluster.is_in_recovery(1), "pg2 was not promoted")
        b = self.wait_for(lambda: (lambda r: r if r["pg2"]["role"] == "primary" else None)(
            self.backends()), what="pg2 primary in SHOW BACKENDS")
        self.assertNotEqual((b["pg1"]["role"], b["pg1"]["state"]), ("primary", "up"))
        with closing(self.app()) as conn, conn.cursor() as cur:  # writes go to the new primary
            cur.execute("CREATE TABLE after_switchover(x int)")
            cur.execute("INSERT INTO after_switchover SELECT inet_server_port() RETURNING x")
            self.assertEqual(cur.fetchone()[0], self.cluster.port_of(1))
        text = http_get(self.metrics_port, "/metrics")[2]
        self.assertGreaterEqual(metric_sum(text, "pgswitch_failovers_total"), 1)


if __name__ == "__main__":
    unittest.main()
