"""Integration-test fixture: one etcd and three PostgreSQL 15 nodes under real Patroni (Debian's
`etcd-server` and `patroni` packages), all on free loopback ports in a temp dir, torn down by pid
even on failure (atexit and SIGTERM through pgcluster's registry).

Patroni and PostgreSQL refuse to run as root, so when we are root each Patroni process runs as the
`postgres` user (setuid in the child, so the pid we hold is Patroni's own). DCS timings are short
(ttl 10 s, loop_wait 1 s, retry_timeout 4 s) so that a failover takes seconds, not a minute.

Duck-types what pgcluster.PgSwitch needs from a cluster: `nodes` (index, port), `tmpdir`,
`node_log()`.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from etcd_server import EtcdServer
from pgcluster import (HOST, IS_ROOT, PG_BIN, TMP_PREFIX, _chown_pg, _hard_stop_datadir,
                       _pg_user_ids, _pid_alive, _postmaster_pid, _register, _set_pdeathsig,
                       _unregister, _wait_gone, free_port, run)

PATRONI_BIN = os.environ.get("PATRONI_BIN", "/usr/bin/patroni")
PATRONICTL_BIN = os.environ.get("PATRONICTL_BIN", "/usr/bin/patronictl")
SCOPE = "pgswitch"

PG_HBA = [
    "local all all trust",
    "local replication all trust",
    f"host replication replicator {HOST}/32 scram-sha-256",
    f"host all md5user {HOST}/32 md5",
    f"host all trustuser {HOST}/32 trust",
    f"host all all {HOST}/32 scram-sha-256",
]


class PatroniNode:
    def __init__(self, index: int, port: int, api_port: int, tmpdir: Path):
        self.index = index
        self.name = f"node{index}"
        self.port = port
        self.api_port = api_port
        self.datadir = tmpdir / f"node{index}"
        self.config = tmpdir / f"patroni{index}.yml"
        self.logfile = tmpdir / f"patroni{index}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def api(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    def __repr__(self):
        return f"PatroniNode({self.name}, port={self.port}, api={self.api_port})"


class PatroniCluster:
    """etcd + `n` Patroni-managed PostgreSQL nodes (node0 bootstraps; the others clone it)."""

    def __init__(self, n: int = 3, tags: dict[int, dict] | None = None):
        self.n = n
        self.tags = tags or {}
        self.tmpdir: Path | None = None
        self.nodes: list[PatroniNode] = []
        self.etcd: EtcdServer | None = None
        self.etcd_port = 0
        self._started = False

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return f"PatroniCluster({self.tmpdir})"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 120) -> "PatroniCluster":
        if self._started:
            return self
        self.tmpdir = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "patroni-", dir="/tmp"))
        os.chmod(self.tmpdir, 0o755)
        _chown_pg(self.tmpdir)
        (self.tmpdir / "owner.pid").write_text(f"{os.getpid()}\n")
        _register(self)
        self._started = True
        try:
            self._start_etcd()
            for i in range(self.n):
                node = PatroniNode(i, free_port(), free_port(), self.tmpdir)
                self.nodes.append(node)
            for node in self.nodes:
                self._write_config(node)
            # node0 first so that it bootstraps; the others then clone it.
            self._start_patroni(self.nodes[0])
            self.wait_until(lambda: self.leader() == "node0", 60, "node0 bootstrapped as leader")
            self._create_roles()
            for node in self.nodes[1:]:
                self._start_patroni(node)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_etcd(self) -> None:
        self.etcd = EtcdServer(self.tmpdir)
        self.etcd_port = self.etcd.port
        self.etcd.start()

    def _write_config(self, node: PatroniNode) -> None:
        # JSON is YAML: no YAML writer needed.
        cfg = {
            "scope": SCOPE,
            "name": node.name,
            "log": {"level": "INFO"},
            "restapi": {"listen": f"{HOST}:{node.api_port}",
                        "connect_address": f"{HOST}:{node.api_port}"},
            "etcd3": {"hosts": [f"{HOST}:{self.etcd_port}"]},
            "bootstrap": {
                "dcs": {
                    "ttl": 10, "loop_wait": 1, "retry_timeout": 4,
                    "maximum_lag_on_failover": 16 * 1024 * 1024,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": {
                            "wal_level": "replica", "hot_standby": "on",
                            "max_connections": 200, "max_wal_senders": 10,
                            "max_replication_slots": 10, "wal_keep_size": "256MB",
                            "wal_log_hints": "on", "fsync": "off",
                            "shared_buffers": "32MB",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, "no-sync",
                           {"auth-host": "scram-sha-256"}, {"auth-local": "trust"}],
            },
            "postgresql": {
                "listen": f"{HOST}:{node.port}",
                "connect_address": f"{HOST}:{node.port}",
                "data_dir": str(node.datadir),
                "bin_dir": str(PG_BIN),
                "pgpass": str(self.tmpdir / f"pgpass{node.index}"),
                # Without a fast checkpoint a clone waits for a spread one (minutes).
                "basebackup": [{"checkpoint": "fast"}, "no-sync"],
                "authentication": {
                    "superuser": {"username": "postgres", "password": "postgres"},
                    "replication": {"username": "replicator", "password": "replicator"},
                    "rewind": {"username": "postgres", "password": "postgres"},
                },
                "parameters": {"unix_socket_directories": str(self.tmpdir),
                               "wal_receiver_status_interval": "1s",
                               "wal_retrieve_retry_interval": "500ms",
                               "log_line_prefix": "%m [%p] %q%u@%d "},
                "pg_hba": PG_HBA,
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False,
                     "nosync": False, **self.tags.get(node.index, {})},
        }
        node.config.write_text(json.dumps(cfg, indent=1))
        _chown_pg(node.config)

    def _preexec_pg(self):
        if IS_ROOT:
            uid, gid = _pg_user_ids()
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        _set_pdeathsig()  # after setuid: a credential change clears it

    def _start_patroni(self, node: PatroniNode) -> None:
        log = open(node.logfile, "ab")
        _chown_pg(node.logfile)
        env = dict(os.environ, HOME=str(self.tmpdir), PATRONICTL_CONFIG_FILE=str(node.config))
        try:
            node.proc = subprocess.Popen([PATRONI_BIN, str(node.config)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         cwd=self.tmpdir, env=env, preexec_fn=self._preexec_pg)
        finally:
            log.close()

    def _create_roles(self) -> None:
        leader = self.nodes[0]
        self.psql(leader.index, """
            SET password_encryption = 'scram-sha-256';
            CREATE ROLE app LOGIN CREATEDB PASSWORD 'app';
            CREATE ROLE admin LOGIN PASSWORD 'admin';
            CREATE ROLE trustuser LOGIN;
            SET password_encryption = 'md5';
            CREATE ROLE md5user LOGIN CREATEDB PASSWORD 'md5pass';
        """)
        self.psql(leader.index, "CREATE DATABASE appdb OWNER app")
        self.psql(leader.index, "GRANT ALL ON SCHEMA public TO PUBLIC", db="appdb")

    def _teardown(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Stops every Patroni (SIGTERM: it stops its PostgreSQL; then SIGKILL), every
        postmaster left, and etcd; removes the temp dir. Idempotent."""
        if not self._started:
            return
        self._started = False
        _unregister(self)
        procs = [n.proc for n in self.nodes if n.proc is not None and n.proc.poll() is None]
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        for n in self.nodes:
            _hard_stop_datadir(n.datadir)
        if self.etcd is not None:
            self.etcd.stop()
        if self.tmpdir and self.tmpdir.name.startswith(TMP_PREFIX) and \
                not os.environ.get("PGSWITCH_KEEP_PATRONI"):
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    # -- REST API ----------------------------------------------------------------------------
    @staticmethod
    def _http_ok(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def cluster_json(self) -> dict | None:
        """GET /cluster from the first node that answers."""
        for n in self.nodes:
            if n.proc is None or n.proc.poll() is not None:
                continue
            try:
                with urllib.request.urlopen(n.api + "/cluster", timeout=2) as r:
                    return json.loads(r.read())
            except (OSError, urllib.error.URLError, ValueError):
                continue
        return None

    def members(self) -> list[dict]:
        c = self.cluster_json()
        return c.get("members", []) if c else []

    def leader(self) -> str | None:
        for m in self.members():
            if m.get("role") == "leader" and m.get("state") == "running":
                return m["name"]
        return None

    def leader_index(self) -> int | None:
        name = self.leader()
        return int(name[4:]) if name else None

    def healthy(self) -> bool:
        ms = self.members()
        leaders = [m for m in ms if m.get("role") == "leader" and m.get("state") == "running"]
        streaming = [m for m in ms if m.get("role") in ("replica", "sync_standby")
                     and m.get("state") in ("streaming", "running")]
        return len(leaders) == 1 and len(streaming) == self.n - 1 and \
            all(self._streaming(m["name"]) for m in streaming)

    def _streaming(self, name: str) -> bool:
        node = self.nodes[int(name[4:])]
        out = self.psql(node.index, "SELECT count(*) FROM pg_stat_wal_receiver "
                        "WHERE status = 'streaming'", check=False)
        return out == "1"

    def wait_healthy(self, timeout: float = 90) -> None:
        self.wait_until(self.healthy, timeout, "a leader and streaming replicas")

    # -- control -----------------------------------------------------------------------------
    def patronictl(self, *args: str, timeout: float = 60, check: bool = True):
        cmd = [PATRONICTL_BIN, "-c", str(self.nodes[0].config), *args]
        return run(cmd, timeout=timeout, check=check, env={"HOME": str(self.tmpdir)})

    def switchover(self, leader: str, candidate: str) -> str:
        cp = self.patronictl("switchover", "--leader", leader, "--candidate", candidate,
                             "--force", SCOPE)
        return cp.stdout

    def set_tags(self, i: int, tags: dict) -> None:
        """Changes node i's tags in its YAML and reloads its Patroni (SIGHUP)."""
        self.tags[i] = {**self.tags.get(i, {}), **tags}
        self._write_config(self.nodes[i])
        self.nodes[i].proc.send_signal(signal.SIGHUP)

    def kill9_leader(self) -> int:
        """kill -9 of the leader's postmaster and of its Patroni: the leader key then expires
        after ttl and a replica is promoted. Returns the killed node's index."""
        i = self.leader_index()
        if i is None:
            raise RuntimeError("no leader to kill")
        node = self.nodes[i]
        pids = []
        if node.proc is not None and node.proc.poll() is None:
            pids.append(node.proc.pid)
        pm = _postmaster_pid(node.datadir)
        if pm is not None:
            pids.append(pm)
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if node.proc is not None:
            node.proc.wait(10)
        _wait_gone(pids, 10)
        return i

    def psql(self, i: int, sql: str, db: str = "postgres", check: bool = True,
             timeout: float = 60) -> str:
        cp = run([PG_BIN / "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                  "-h", self.tmpdir, "-p", self.nodes[i].port, "-U", "postgres", "-d", db,
                  "-c", sql], timeout=timeout, check=check)
        return cp.stdout.strip()

    def is_running(self, i: int) -> bool:
        return _postmaster_pid(self.nodes[i].datadir) is not None

    def node_log(self, i: int, tail: int = 40) -> str:
        try:
            lines = self.nodes[i].logfile.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-tail:]) + "\n"

    @staticmethod
    def wait_until(pred, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if pred():
                    return
            except Exception:  # noqa: BLE001 - not ready yet
                pass
            time.sleep(0.25)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _main() -> int:
    """`python3 patroni_cluster.py`: bring a cluster up, print /cluster, tear it down."""
    t0 = time.monotonic()
    with PatroniCluster() as c:
        print(f"up in {time.monotonic() - t0:.1f}s: {json.dumps(c.cluster_json(), indent=1)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
