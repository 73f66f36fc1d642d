"""Growing the cluster from a backup (issue 15, item 4; the procedure is in docs/deploy.md): the
primary archives its WAL with pgBackRest and has a full backup in a repository; under pgbench
load through pgswitch (transaction mode, reads on replicas, a tenth of the transactions write),
a new replica is restored from that backup with `pgbackrest restore --type=standby`, started
(it replays the archive, then streams from the primary), and added to pgswitch by a reload. The
load must see zero client errors, and reads must reach the new replica only once it is within
`routing.max_lag_bytes` of the primary. pgBackRest runs as the postgres user (it refuses root
for some commands) with its repository, locks and logs in the test's own directory."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import (HOST, PG_BIN, TMP_PREFIX, Node, PgCluster, PgSwitch,  # noqa: E402
                       _chown_pg, free_port, run)
from proxycase import ProxyTestCase, budget  # noqa: E402

STANZA = "grow"
MAX_LAG_BYTES = 1024 * 1024  # [routing] max_lag_bytes: reads only to replicas this close


class GrowFromBackupTest(ProxyTestCase):
    default_budget = 150.0

    @classmethod
    def setUpClass(cls):
        if shutil.which("pgbackrest") is None:
            raise RuntimeError("pgbackrest is not installed (scripts/install-deps.sh installs it)")
        cls.base = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir="/tmp"))
        os.chmod(cls.base, 0o755)
        _chown_pg(cls.base)
        cls.ports = [free_port() for _ in range(3)]
        br = cls.base / "backrest"
        for d in (br, br / "repo", br / "log", br / "lock", br / "spool"):
            d.mkdir(mode=0o750, exist_ok=True)
            _chown_pg(d)
        cls.conf = br / "pgbackrest.conf"
        # The stanza names the primary; restore names its target on the command line.
        cls.conf.write_text(f"""[global]
repo1-path={br / 'repo'}
repo1-retention-full=1
log-path={br / 'log'}
lock-path={br / 'lock'}
spool-path={br / 'spool'}
log-level-console=warn
log-level-file=info
compress-type=none
start-fast=y

[{STANZA}]
pg1-path={cls.base / 'node0'}
pg1-port={cls.ports[0]}
pg1-socket-path={cls.base}
pg1-user=postgres
""")
        _chown_pg(cls.conf)
        archive = f"pgbackrest --config={cls.conf} --stanza={STANZA} archive-push %p"
        cls.cluster = PgCluster(replicas=1, base_dir=cls.base, ports=cls.ports[:2],
                                extra_conf={"archive_mode": "on", "archive_command": archive})
        cls.sw = None
        try:
            cls.cluster.start()
            t0 = time.monotonic()
            cls.backrest("stanza-create")
            cls.backrest("check")
            # pgbench's tables, in the backup.
            run([PG_BIN / "pgbench", "-i", "-q", "-s", "2", cls.cluster.dsn(0, user="app",
                                                                      db="appdb")])
            cls.backrest("backup", "--type=full")
            cls.backup_seconds = time.monotonic() - t0
            cls.sw = PgSwitch(cls.cluster, pool_mode="transaction", health_period_ms=250,
                              extra_toml=f"[routing]\nmax_lag_bytes = {MAX_LAG_BYTES}\n")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.sw is not None:
            cls.sw.kill()
            cls.sw = None
        cls.cluster.stop()  # every node, the restored one included
        shutil.rmtree(cls.base, ignore_errors=True)

    @classmethod
    def backrest(cls, *args: str, timeout: float = 180):
        return run(["pgbackrest", f"--config={cls.conf}", f"--stanza={STANZA}", *args],
                   as_pg=True, timeout=timeout, cwd=cls.base)

    @budget(150)
    def test_restored_replica_joins_under_load(self):
        cluster, sw = self.cluster, self.sw
        dsn = sw.dsn()
        # pgbench through pgswitch, in 4 s runs back to back until told to stop: each run must
        # exit 0 with no failed transaction (any client error aborts a pgbench client).
        stop = threading.Event()
        runs: list[subprocess.CompletedProcess] = []
        run_starts: list[float] = []  # monotonic start of each finished run, same order

        def load():
            while not stop.is_set():
                started = time.monotonic()
                runs.append(subprocess.run(
                    [str(PG_BIN / "pgbench"), "-n", "-c", "4", "-j", "2", "-T", "4",
                     "-b", "select-only@9", "-b", "tpcb-like@1", dsn],
                    capture_output=True, text=True, timeout=60))
                run_starts.append(started)
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        try:
            time.sleep(2)
            # WAL the backup does not have, so the new replica starts behind: about 24 MB.
            cluster.psql(0, "CREATE TABLE grow_filler AS SELECT g, repeat('x', 200) AS pad "
                            "FROM generate_series(1, 100000) g", db="appdb")

            # Restore the backup as a standby that streams from the primary.
            t0 = time.monotonic()
            node = Node(2, self.ports[2], self.base / "node2", upstream=0)
            node.datadir.mkdir(mode=0o700)
            _chown_pg(node.datadir)
            conninfo = (f"host={HOST} port={self.ports[0]} user=postgres "
                        f"application_name={node.name}")
            self.backrest("restore", f"--pg1-path={node.datadir}", "--type=standby",
                          f"--recovery-option=primary_conninfo={conninfo}")
            restore_s = time.monotonic() - t0
            # The restored postgresql.conf is the primary's: only the port differs.
            with open(node.datadir / "postgresql.conf", "a") as f:
                f.write(f"\n# restored as a new replica\nport = {node.port}\n")
            cluster.nodes.append(node)
            cluster.start_node(2)

            # Added to pgswitch live: a new [[backend]] (pg3) and a reload (SIGHUP).
            sw.reload()
            samples = []  # (seconds since reload, state, lag_bytes, reads) of pg3
            t_reload = time.monotonic()
            first_read = None
            while time.monotonic() - t_reload < 60:
                rows = self.backends()
                b = rows.get("pg3")
                if b is not None:
                    samples.append((round(time.monotonic() - t_reload, 2), b["role"], b["state"],
                                    b["lag_bytes"], int(b["reads"])))
                    if int(b["reads"]) > 0:
                        first_read = samples[-1]
                        break
                time.sleep(0.05)
            self.assertIsNotNone(first_read, f"no read reached pg3 within 60 s: {samples}")
            # Every sample before the first read shows why none was routed there yet, and at
            # the first read it was an up replica within max_lag_bytes.
            self.assertEqual(first_read[1:3], ("replica", "up"), samples)
            self.assertLessEqual(int(first_read[3]), MAX_LAG_BYTES, samples)
            # A whole pgbench run with the new replica serving reads: one that started after
            # the first read and has finished. Waiting on the runs, not on a clock, keeps this
            # true on a machine that restores faster or slower than this one.
            t_first_read = time.monotonic()
            deadline = t_first_read + 30
            while (not any(s >= t_first_read for s in run_starts)
                   and time.monotonic() < deadline):
                time.sleep(0.1)
        finally:
            stop.set()
            loader.join(90)

        self.assertTrue(any(s >= t_first_read for s in run_starts),
                        "no pgbench run started and finished after the first read on pg3")
        self.assertGreaterEqual(len(runs), 2)
        for r in runs:
            self.assertEqual(r.returncode, 0, r.stdout[-2000:] + r.stderr[-2000:])
            self.assertNotIn("error", r.stderr.lower(), r.stderr[-2000:])
            self.assertIn("number of failed transactions: 0 ", r.stdout)
        reads = {n: int(r["reads"]) for n, r in self.backends().items()}
        # The new replica has the data of the backup and of what was written since.
        self.assertEqual(cluster.psql(2, "SELECT count(*) FROM pgbench_accounts", db="appdb"),
                         "200000")
        cluster.wait_replicated()
        self.assertEqual(cluster.psql(2, "SELECT count(*) FROM grow_filler", db="appdb"),
                         "100000")
        behind = [s for s in samples if s[2] != "up" or s[3] is None or int(s[3]) > MAX_LAG_BYTES]
        sys.stderr.write(
            f"\n(backup {self.backup_seconds:.1f}s incl. stanza-create/check/pgbench -i; "
            f"restore {restore_s:.1f}s; first read on pg3 {first_read[0]:.2f}s after the reload;"
            f" {len(behind)} of {len(samples)} samples before it showed pg3 down or behind; "
            f"{len(runs)} pgbench runs, 0 errors; reads: {reads})\n"
            f"(pg3 after the reload, (s, role, state, lag_bytes, reads): first {samples[0]}, "
            f"first up {next((x for x in samples if x[2] == 'up'), None)}, "
            f"first read {first_read})\n")
        self.assertGreater(reads.get("pg3", 0), 0)


if __name__ == "__main__":
    unittest.main()
