"""Integration-test fixtures: real PostgreSQL 15 clusters (primary + streaming replicas) on
loopback ports, a running pgswitch in front of them, and a minimal protocol-v3 client.

Servers run as the `postgres` user when we are root. Everything a fixture starts is torn down
by pid on stop(), on exit (atexit) and on SIGTERM/SIGINT; leftovers of a killed earlier run are
reaped on the next start (see _reap_stale). Also a CLI: `python3 pgcluster.py demo-start|demo-stop`.
"""
from __future__ import annotations

import atexit
import ctypes
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgwire import PgWire, PgWireError  # noqa: E402  (re-exported for tests)

__all__ = ["free_port", "run", "PgCluster", "PgSwitch", "PgWire", "PgWireError", "HOST",
           "PG_BIN", "DEFAULT_USERS", "demo_start", "demo_stop"]

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
REPO = Path(__file__).resolve().parents[2]
PGSWITCH_BIN = os.environ.get("PGSWITCH_BIN") or str(REPO / "build" / "pgswitch")
TMP_PREFIX = "pgswitch-test-"
HOST = "127.0.0.1"
IS_ROOT = os.geteuid() == 0

# Roles created on every cluster: name -> (password, auth method pgswitch uses towards clients).
DEFAULT_USERS = [
    {"name": "app", "password": "app", "auth": "scram-sha-256"},
    {"name": "md5user", "password": "md5pass", "auth": "md5"},
    {"name": "trustuser", "password": "", "auth": "trust"},
    {"name": "admin", "password": "admin", "auth": "scram-sha-256"},
    {"name": "postgres", "password": "postgres", "auth": "scram-sha-256"},
]

PG_HBA = """\
# written by tests/integration/pgcluster.py
local   all             all                             trust
local   replication     all                             trust
host    replication     postgres        127.0.0.1/32    trust
host    all             md5user         127.0.0.1/32    md5
host    all             trustuser       127.0.0.1/32    trust
host    all             all             127.0.0.1/32    scram-sha-256
"""


# ----------------------------------------------------------------------------------------------
# small helpers

_handed_out_ports: set[int] = set()


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (never the same one twice in this process)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port
    raise RuntimeError("could not find a free port")


def _pg_user_ids() -> tuple[int, int]:
    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid


def _as_pg(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if IS_ROOT else cmd


def _chown_pg(path: Path) -> None:
    if IS_ROOT:
        uid, gid = _pg_user_ids()
        os.chown(path, uid, gid)


def run(cmd, *, as_pg=False, timeout=120, check=True, env=None, cwd=None, input=None):
    """Runs a command, captures text output; raises with stderr included on failure."""
    cmd = [str(c) for c in cmd]
    if as_pg:
        cmd = _as_pg(cmd)
    full_env = dict(os.environ)
    full_env.update(env or {})
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env,
                        cwd=cwd or "/tmp", input=input)
    if check and cp.returncode != 0:
        raise RuntimeError(f"command failed ({cp.returncode}): {' '.join(cmd)}\n"
                           f"stdout: {cp.stdout[-3000:]}\nstderr: {cp.stderr[-3000:]}")
    return cp


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is as good as dead for us.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _postmaster_pid(datadir: Path) -> int | None:
    """The pid in datadir/postmaster.pid if that process is a live postgres on this datadir."""
    try:
        lines = (datadir / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return None
    if "postgres" not in cmdline or not _pid_alive(pid):
        return None
    return pid


def _remove_stale_lockfiles(datadir: Path, socket_lock: Path) -> None:
    """Removes postmaster.pid and the unix socket's lock file when no live postgres owns them.
    After a kill -9 the postmaster can stay a zombie until init reaps it, and PostgreSQL
    refuses to start while the pid in either file still exists."""
    if _postmaster_pid(datadir) is not None:
        return
    for f in (datadir / "postmaster.pid", socket_lock):
        try:
            pid = int(f.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            continue
        if not _pid_alive(pid):
            try:
                f.unlink()
            except FileNotFoundError:
                pass


def _children_of(pid: int) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                kids.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return kids


def _wait_gone(pids, timeout) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_pid_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return not any(_pid_alive(p) for p in pids)


def _hard_stop_datadir(datadir: Path) -> None:
    """Stops the postgres running on datadir (immediate, then SIGKILL of it and its children)."""
    pid = _postmaster_pid(datadir)
    if pid is None:
        return
    kids = _children_of(pid)
    run([PG_BIN / "pg_ctl", "stop", "-D", datadir, "-m", "immediate", "-w", "-t", "10"],
        as_pg=True, check=False, timeout=30)
    if not _wait_gone([pid], 5):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if not _wait_gone(kids, 5):
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _reap_stale() -> None:
    """Stops servers and removes temp dirs left by earlier test processes that were killed."""
    for d in Path("/tmp").glob(TMP_PREFIX + "*"):
        try:
            owner = int((d / "owner.pid").read_text().strip())
        except (OSError, ValueError):
            # No owner file: a dir still being created, or not ours; leave it unless it is old.
            try:
                if time.time() - d.stat().st_mtime < 3600:
                    continue
            except OSError:
                continue
            owner = -1
        if owner > 0 and _pid_alive(owner):
            continue
        for node in sorted(d.glob("node*")):
            _hard_stop_datadir(node)
        shutil.rmtree(d, ignore_errors=True)


# Every live fixture, stopped at interpreter exit and on SIGTERM.
_live: list = []
_live_lock = threading.Lock()


def _stop_all() -> None:
    with _live_lock:
        items = list(reversed(_live))
    for obj in items:
        try:
            obj._teardown()
        except Exception as e:  # noqa: BLE001 - best effort at exit
            print(f"pgcluster: teardown of {obj!r} failed: {e}", file=sys.stderr)


atexit.register(_stop_all)


def _on_sigterm(signum, frame):
    # Behave like Ctrl-C: unittest stops the run on KeyboardInterrupt (it records SystemExit
    # as a test error and goes on), and the interpreter's exit then runs the atexit teardown.
    raise KeyboardInterrupt(f"signal {signum}")


if threading.current_thread() is threading.main_thread():
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)


def _register(obj) -> None:
    with _live_lock:
        _live.append(obj)


def _unregister(obj) -> None:
    with _live_lock:
        if obj in _live:
            _live.remove(obj)


# ----------------------------------------------------------------------------------------------
# PostgreSQL cluster

class Node:
    def __init__(self, index: int, port: int, datadir: Path, upstream: int | None):
        self.index = index
        self.port = port
        self.datadir = datadir
        self.upstream = upstream  # None for the primary
        self.logfile = datadir.parent / f"node{index}.log"
        self.name = f"node{index}"

    def __repr__(self):
        return f"Node({self.index}, port={self.port}, upstream={self.upstream})"


class PgCluster:
    """A primary plus `replicas` streaming replicas (and with cascade=True one more replica
    streaming from replica 1). Nodes are numbered 0 (primary), 1..replicas, then the cascade."""

    def __init__(self, replicas: int = 2, cascade: bool = False, sync: bool = False,
                 extra_conf: dict | None = None, base_dir: str | Path | None = None,
                 ports: list[int] | None = None, keep: bool = False):
        if cascade and replicas < 1:
            raise ValueError("cascade needs at least one replica")
        self.n_replicas = replicas
        self.cascade = cascade
        self.sync = sync
        self.extra_conf = dict(extra_conf or {})
        self.base_dir = Path(base_dir).resolve() if base_dir else None
        self.keep = keep
        self._want_ports = list(ports) if ports else None
        self.tmpdir: Path | None = None
        self.nodes: list[Node] = []
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return f"PgCluster({self.tmpdir})"

    @property
    def node_count(self) -> int:
        return 1 + self.n_replicas + (1 if self.cascade else 0)

    def _layout(self) -> None:
        ports = self._want_ports or [free_port() for _ in range(self.node_count)]
        if len(ports) < self.node_count:
            raise ValueError(f"need {self.node_count} ports, got {ports}")
        self.nodes = []
        for i in range(self.node_count):
            if i == 0:
                up = None
            elif self.cascade and i == self.node_count - 1:
                up = 1
            else:
                up = 0
            self.nodes.append(Node(i, ports[i], self.tmpdir / f"node{i}", up))

    def start(self) -> "PgCluster":
        if self._started:
            return self
        if self.base_dir is None:
            _reap_stale()
            self.tmpdir = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir="/tmp"))
        else:
            self.tmpdir = self.base_dir
            self.tmpdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.tmpdir, 0o755)
        _chown_pg(self.tmpdir)
        (self.tmpdir / "owner.pid").write_text(f"{os.getpid()}\n")
        self._layout()
        if not self.keep:
            _register(self)
        self._started = True
        try:
            self._init_primary()
            self._create_roles()
            for node in self.nodes[1:]:
                self._init_replica(node)
            self.wait_streaming()
            if self.sync:
                names = ", ".join(n.name for n in self.nodes[1:] if n.upstream == 0)
                self.psql(0, f"ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 ({names})'")
                self.psql(0, "SELECT pg_reload_conf()")
                self._wait_until(lambda: self.psql(
                    0, "SELECT count(*) FROM pg_stat_replication "
                       "WHERE sync_state IN ('sync','quorum')") != "0", 30, "sync standby")
            self._write_manifest()
        except BaseException:
            self.stop()
            raise
        return self

    def _conf_lines(self, node: Node) -> str:
        conf = {
            "listen_addresses": f"'{HOST}'",
            "port": str(node.port),
            "unix_socket_directories": f"'{self.tmpdir}'",
            "wal_level": "replica",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
            "hot_standby": "on",
            "fsync": "off",
            # PostgreSQL's default. With fsync off a local flush is only a write(), and a
            # commit reaches the replicas at once (async commits wait for the WAL writer,
            # up to wal_writer_delay: strong consistency would read them from the primary).
            "synchronous_commit": "on",
            "max_connections": "300",
            "shared_buffers": "32MB",
            "wal_keep_size": "256MB",
            "checkpoint_timeout": "30min",
            "max_wal_size": "1GB",
            "logging_collector": "off",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
            "wal_receiver_status_interval": "1s",
            "wal_retrieve_retry_interval": "500ms",
        }
        for k, v in self.extra_conf.items():
            if isinstance(v, bool):
                v = "on" if v else "off"
            if isinstance(v, str) and not v.startswith("'"):
                v = "'" + v.replace("'", "''") + "'"
            conf[k] = str(v)
        return "\n# pgcluster.py\n" + "".join(f"{k} = {v}\n" for k, v in conf.items())

    def _init_primary(self) -> None:
        node = self.nodes[0]
        pwfile = self.tmpdir / "pwfile"
        pwfile.write_text("postgres\n")
        _chown_pg(pwfile)
        run([PG_BIN / "initdb", "-D", node.datadir, "-U", "postgres", "--auth-local=trust",
             "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync",
             f"--pwfile={pwfile}"], as_pg=True, cwd=self.tmpdir)
        with open(node.datadir / "postgresql.conf", "a") as f:
            f.write(self._conf_lines(node))
        (node.datadir / "pg_hba.conf").write_text(PG_HBA)
        _chown_pg(node.datadir / "pg_hba.conf")
        self.start_node(0)

    def _create_roles(self) -> None:
        self.psql(0, """
            SET password_encryption = 'scram-sha-256';
            ALTER ROLE postgres PASSWORD 'postgres';
            CREATE ROLE app LOGIN CREATEDB PASSWORD 'app';
            CREATE ROLE admin LOGIN PASSWORD 'admin';
            CREATE ROLE trustuser LOGIN;
            SET password_encryption = 'md5';
            CREATE ROLE md5user LOGIN CREATEDB PASSWORD 'md5pass';
        """)
        self.psql(0, "CREATE DATABASE appdb OWNER app")
        self.psql(0, "GRANT ALL ON SCHEMA public TO PUBLIC", db="appdb")

    def _init_replica(self, node: Node) -> None:
        up = self.nodes[node.upstream]
        if node.upstream != 0:
            # A standby can only finish a base backup at a restartpoint: give it a checkpoint.
            self.psql(0, "CHECKPOINT")
        run([PG_BIN / "pg_basebackup", "-D", node.datadir, "-R", "-X", "stream", "-c", "fast",
             "--no-sync", "-h", HOST, "-p", up.port, "-U", "postgres"],
            as_pg=True, cwd=self.tmpdir, timeout=180)
        with open(node.datadir / "postgresql.conf", "a") as f:
            f.write(self._conf_lines(node))
        with open(node.datadir / "postgresql.auto.conf", "a") as f:
            f.write(f"primary_conninfo = 'host={HOST} port={up.port} user=postgres "
                    f"application_name={node.name}'\n")
        self.start_node(node.index)

    def _write_manifest(self) -> None:
        (self.tmpdir / "cluster.json").write_text(json.dumps({
            "nodes": [{"index": n.index, "port": n.port, "upstream": n.upstream}
                      for n in self.nodes]}, indent=1))

    def _teardown(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Stops every node (fast, falling back to immediate and SIGKILL) and removes the temp
        dir (unless keep). Idempotent."""
        if not self._started:
            return
        self._started = False
        _unregister(self)
        # Replicas first so that the primary's walsenders need not wait for them.
        for node in reversed(self.nodes):
            if _postmaster_pid(node.datadir) is None:
                continue
            cp = run([PG_BIN / "pg_ctl", "stop", "-D", node.datadir, "-m", "fast", "-w", "-t",
                      "10"], as_pg=True, check=False, timeout=30)
            if cp.returncode != 0:
                _hard_stop_datadir(node.datadir)
        if not self.keep and self.tmpdir and self.tmpdir.name.startswith(TMP_PREFIX):
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    # -- per-node control -----------------------------------------------------------------------
    def port_of(self, i: int) -> int:
        return self.nodes[i].port

    def dsn(self, i: int = 0, user: str = "postgres", password: str | None = None,
            db: str = "postgres", **extra) -> str:
        if password is None:
            password = {u["name"]: u["password"] for u in DEFAULT_USERS}.get(user, "")
        parts = {"host": HOST, "port": self.port_of(i), "user": user, "dbname": db,
                 "password": password, "connect_timeout": 10, **extra}
        return " ".join(f"{k}={_dsn_quote(str(v))}" for k, v in parts.items())

    def psql(self, node: int, sql: str, user: str = "postgres", db: str = "postgres",
             timeout: float = 120, check: bool = True) -> str:
        """Runs sql through psql on the node's unix socket (trust); returns stripped stdout."""
        cp = run([PG_BIN / "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                  "-h", self.tmpdir, "-p", self.port_of(node), "-U", user, "-d", db, "-c", sql],
                 timeout=timeout, check=check)
        return cp.stdout.strip()

    def start_node(self, i: int, timeout: int = 60) -> None:
        node = self.nodes[i]
        if _postmaster_pid(node.datadir) is not None:
            return
        _remove_stale_lockfiles(node.datadir, self.tmpdir / f".s.PGSQL.{node.port}.lock")
        run([PG_BIN / "pg_ctl", "start", "-D", node.datadir, "-l", node.logfile, "-w",
             "-t", str(timeout)], as_pg=True, timeout=timeout + 30, cwd=self.tmpdir)

    def stop_node(self, i: int, mode: str = "fast") -> None:
        node = self.nodes[i]
        if _postmaster_pid(node.datadir) is None:
            return
        cp = run([PG_BIN / "pg_ctl", "stop", "-D", node.datadir, "-m", mode, "-w", "-t", "20"],
                 as_pg=True, check=False, timeout=40)
        if cp.returncode != 0:
            _hard_stop_datadir(node.datadir)

    def is_running(self, i: int) -> bool:
        return _postmaster_pid(self.nodes[i].datadir) is not None

    def kill9_primary(self) -> None:
        """SIGKILLs the primary's postmaster (a crash), then waits until its backends are gone."""
        self.kill9(0)

    def kill9(self, i: int) -> None:
        pid = _postmaster_pid(self.nodes[i].datadir)
        if pid is None:
            return
        kids = _children_of(pid)
        os.kill(pid, signal.SIGKILL)
        _wait_gone([pid], 5)
        if not _wait_gone(kids, 5):
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _wait_gone(kids, 5)

    def promote(self, i: int, timeout: int = 30) -> None:
        run([PG_BIN / "pg_ctl", "promote", "-D", self.nodes[i].datadir, "-w", "-t",
             str(timeout)], as_pg=True, timeout=timeout + 30)
        self._wait_until(lambda: self.psql(i, "SELECT pg_is_in_recovery()") == "f", timeout,
                         f"node{i} promoted")

    def is_in_recovery(self, i: int) -> bool:
        return self.psql(i, "SELECT pg_is_in_recovery()") == "t"

    def set_conf(self, i: int, name: str, value: str | None) -> None:
        """ALTER SYSTEM SET name = value (RESET when value is None) on node i, then reloads.
        Only for settings that a reload applies (e.g. recovery_min_apply_delay)."""
        if value is None:
            self.psql(i, f"ALTER SYSTEM RESET {name}")
        else:
            self.psql(i, f"ALTER SYSTEM SET {name} = '" + str(value).replace("'", "''") + "'")
        self.psql(i, "SELECT pg_reload_conf()")

    # -- replication ----------------------------------------------------------------------------
    def wait_streaming(self, timeout: float = 60) -> None:
        """Waits until every replica shows up as streaming on its upstream."""
        want: dict[int, int] = {}
        for n in self.nodes[1:]:
            want[n.upstream] = want.get(n.upstream, 0) + 1
        for up, count in want.items():
            self._wait_until(
                lambda up=up, count=count: int(self.psql(
                    up, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                    check=False) or 0) >= count,
                timeout, f"{count} streaming replicas on node{up}")

    def wait_replicated(self, timeout: float = 30) -> None:
        """Waits until every running replica has replayed the primary's current WAL position.
        The insert position, not the write position: with synchronous_commit = off a commit
        record may not be written yet, and waiting for the write position would miss it."""
        lsn = self.psql(0, "SELECT pg_current_wal_insert_lsn()")
        for n in self.nodes[1:]:
            if not self.is_running(n.index):
                continue
            self._wait_until(lambda n=n: self.psql(
                n.index, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn") == "t",
                timeout, f"node{n.index} replayed {lsn}")

    @staticmethod
    def _wait_until(pred, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        last_err = None
        while time.monotonic() < deadline:
            try:
                if pred():
                    return
            except Exception as e:  # noqa: BLE001 - keep polling until the deadline
                last_err = e
            time.sleep(0.1)
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}"
                           + (f" (last error: {last_err})" if last_err else ""))

    def node_log(self, i: int, tail: int = 40) -> str:
        try:
            return "".join(self.nodes[i].logfile.read_text(errors="replace")
                           .splitlines(keepends=True)[-tail:])
        except OSError:
            return ""


def _dsn_quote(v: str) -> str:
    if v and all(c not in v for c in " '\\"):
        return v
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ----------------------------------------------------------------------------------------------
# pgswitch process

def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def _set_pdeathsig():
    # pgswitch dies with the test process even if that one is SIGKILLed (e.g. a ctest timeout).
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _refuse_io_uring():
    """A seccomp filter on this process (inherited by what it execs) under which
    io_uring_setup fails with EPERM, as Docker's and containerd's default profiles make it
    (moby/moby#46762). io_uring_setup is 425 on x86_64, arm64 and the other architectures
    with the generic syscall table (there is no architecture check: a test helper only)."""
    import struct
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    ld_nr = struct.pack("=HBBI", 0x20, 0, 0, 0)                   # A = seccomp_data.nr
    is_setup = struct.pack("=HBBI", 0x15, 0, 1, 425)              # A == io_uring_setup ?
    refuse = struct.pack("=HBBI", 0x06, 0, 0, 0x00050000 | 1)     # SECCOMP_RET_ERRNO | EPERM
    allow = struct.pack("=HBBI", 0x06, 0, 0, 0x7FFF0000)          # SECCOMP_RET_ALLOW
    code = ctypes.create_string_buffer(ld_nr + is_setup + refuse + allow)

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Prog(4, ctypes.addressof(code))
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


class PgSwitch:
    """Writes a TOML config for `cluster` and runs $PGSWITCH_BIN --config FILE in front of it.
    refuse_io_uring: run it under a seccomp filter that refuses io_uring (a container's)."""

    def __init__(self, cluster: PgCluster, pool_mode: str = "session", users=None,
                 extra_toml: str = "", workers: int | None = None, port: int | None = None,
                 admin_users=("admin",), log_level: str = "info", health_period_ms: int = 500,
                 binary: str | None = None, start: bool = True, nofile: int | None = None,
                 server_toml: str = "", refuse_io_uring: bool = False):
        self.cluster = cluster
        self.refuse_io_uring = refuse_io_uring
        self.server_toml = server_toml  # extra lines for the [server] table
        self.nofile = nofile  # RLIMIT_NOFILE of the process (soft and hard), None = inherited
        self.pool_mode = pool_mode
        self.users = list(users) if users is not None else [dict(u) for u in DEFAULT_USERS]
        self.extra_toml = extra_toml
        self.workers = workers
        self.port = port or free_port()
        self.admin_users = list(admin_users)
        self.log_level = log_level
        self.health_period_ms = health_period_ms
        self.binary = binary or os.environ.get("PGSWITCH_BIN") or PGSWITCH_BIN
        base = cluster.tmpdir if cluster.tmpdir else Path(tempfile.gettempdir())
        self.dir = Path(tempfile.mkdtemp(prefix="pgswitch-", dir=base))
        self.config_path = self.dir / "pgswitch.toml"
        self.log_path = self.dir / "pgswitch.log"
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.write_config()
        if start:
            self.start()

    def __repr__(self):
        return f"PgSwitch(port={self.port}, pid={self.pid})"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _preexec(self):
        _set_pdeathsig()
        if self.refuse_io_uring:
            _refuse_io_uring()
        if self.nofile is not None:
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def config_text(self) -> str:
        out = ["[server]",
               f"listen = {_toml_str(f'{HOST}:{self.port}')}",
               f"pool_mode = {_toml_str(self.pool_mode)}",
               "admin_users = [" + ", ".join(_toml_str(a) for a in self.admin_users) + "]",
               f"log_level = {_toml_str(self.log_level)}"]
        if self.workers is not None:
            out.append(f"workers = {int(self.workers)}")
        if self.server_toml:
            out.append(self.server_toml.strip())
        # PGSWITCH_IO_URING=off runs a suite on the epoll path (scripts/test.sh does, for a few
        # modules); by default the workers use io_uring where the kernel allows it.
        io_uring = os.environ.get("PGSWITCH_IO_URING")
        if io_uring and "io_uring" not in self.server_toml:
            out.append(f"io_uring = {_toml_str(io_uring)}")
        out += ["", "[health]", f"period_ms = {int(self.health_period_ms)}",
                'user = "postgres"', 'password = "postgres"', ""]
        # backend_toml: {node index: extra TOML lines for that [[backend]] (weight, tags)}
        extra = getattr(self, "backend_toml", {})
        for n in self.cluster.nodes:
            out += ["[[backend]]", f"name = {_toml_str(f'pg{n.index + 1}')}",
                    f"host = {_toml_str(HOST)}", f"port = {n.port}"]
            if extra.get(n.index):
                out.append(extra[n.index].strip())
            out.append("")
        for u in self.users:
            out += ["[[user]]", f"name = {_toml_str(u['name'])}",
                    f"password = {_toml_str(u.get('password', ''))}",
                    f"auth = {_toml_str(u.get('auth', 'scram-sha-256'))}", ""]
        if self.extra_toml:
            out.append(self.extra_toml.strip() + "\n")
        return "\n".join(out)

    def write_config(self) -> None:
        self.config_path.write_text(self.config_text())

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10) -> None:
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError(f"pgswitch binary not found or not executable: {self.binary} "
                               "(build it, or set PGSWITCH_BIN)")
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([self.binary, "--config", str(self.config_path)],
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         cwd=self.dir, preexec_fn=self._preexec)
        finally:
            logf.close()
        self.returncode = None
        _register(self)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.returncode = rc
                _unregister(self)
                raise RuntimeError(f"pgswitch exited with {rc} during start-up; log:\n"
                                   + self.log_tail())
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"pgswitch did not accept on {HOST}:{self.port} within "
                                   f"{timeout}s; log:\n" + self.log_tail())
            time.sleep(0.05)

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, then wait; returns the exit code. Raises AssertionError if it had to be
        SIGKILLed because it did not exit within `timeout` seconds."""
        if self.proc is None:
            return self.returncode
        _unregister(self)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self.returncode = self.proc.returncode
                self.proc = None
                raise AssertionError(f"pgswitch did not exit within {timeout}s of SIGTERM; "
                                     "log:\n" + self.log_tail())
        self.returncode = self.proc.returncode
        self.proc = None
        return self.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc is not None:
            self.returncode = self.proc.returncode
        self.proc = None
        _unregister(self)

    def _teardown(self) -> None:
        self.kill()

    def reload(self) -> None:
        """Rewrites the config file and sends SIGHUP."""
        self.write_config()
        if self.running():
            self.proc.send_signal(signal.SIGHUP)

    def dsn(self, user: str = "app", password: str | None = None, db: str = "appdb",
            **extra) -> str:
        if password is None:
            password = {u["name"]: u.get("password", "") for u in self.users}.get(user, "")
        parts = {"host": HOST, "port": self.port, "user": user, "dbname": db,
                 "password": password, "connect_timeout": 10, **extra}
        return " ".join(f"{k}={_dsn_quote(str(v))}" for k, v in parts.items())

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_log(self, text: str, timeout: float = 20) -> bool:
        """Waits until `text` is in the log: events logged after the effect a test saw (a
        failover is done only once the replicas are repointed, after writes resume)."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def log_tail(self, lines: int = 60) -> str:
        return "".join(self.log().splitlines(keepends=True)[-lines:])

    def _status_kb(self, key: str) -> int:
        if self.proc is None:
            return 0
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def rss_kb(self) -> int:
        return self._status_kb("VmRSS")

    def hwm_kb(self) -> int:
        return self._status_kb("VmHWM")


# ----------------------------------------------------------------------------------------------
# demo CLI (used by scripts/demo.sh): a persistent cluster under a directory, fixed ports

def demo_start(base: Path, ports: list[int]) -> PgCluster:
    """Reuses the cluster under `base` if it matches `ports` and comes up streaming, else
    recreates it from scratch. Leaves the servers running."""
    base = base.resolve()
    manifest = base / "cluster.json"
    c = PgCluster(replicas=len(ports) - 1, base_dir=base, ports=ports, keep=True)
    if manifest.exists():
        try:
            old = [n["port"] for n in json.loads(manifest.read_text())["nodes"]]
            if old == ports:
                c.tmpdir = base
                c._layout()
                c._started = True
                for i in range(len(ports)):
                    c.start_node(i)
                c.wait_streaming(timeout=20)
                print(f"demo: reusing the cluster in {base}", file=sys.stderr)
                return c
        except Exception as e:  # noqa: BLE001 - fall through to a fresh cluster
            print(f"demo: existing cluster unusable ({e}); recreating", file=sys.stderr)
        demo_stop(base)
    for d in list(base.glob("node*")) + [manifest, base / "pwfile"]:
        if d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
        elif d.exists():
            d.unlink()
    print(f"demo: creating a primary and {len(ports) - 1} replicas in {base}", file=sys.stderr)
    c.start()
    return c


def demo_stop(base: Path) -> None:
    base = base.resolve()
    for node in sorted(base.glob("node*"), reverse=True):
        if not node.is_dir() or _postmaster_pid(node) is None:
            continue
        cp = run([PG_BIN / "pg_ctl", "stop", "-D", node, "-m", "fast", "-w", "-t", "15"],
                 as_pg=True, check=False, timeout=40)
        if cp.returncode != 0:
            _hard_stop_datadir(node)


def _main(argv: list[str]) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("demo-start")
    s.add_argument("--dir", required=True)
    s.add_argument("--ports", required=True, help="comma-separated, primary first")
    s = sub.add_parser("demo-stop")
    s.add_argument("--dir", required=True)
    s = sub.add_parser("selftest", help="start a cluster, check replication, tear down")
    args = ap.parse_args(argv)
    if args.cmd == "demo-start":
        demo_start(Path(args.dir), [int(p) for p in args.ports.split(",")])
    elif args.cmd == "demo-stop":
        demo_stop(Path(args.dir))
    elif args.cmd == "selftest":
        with PgCluster(replicas=2, cascade=True) as c:
            c.psql(0, "CREATE TABLE t(x int); INSERT INTO t SELECT generate_series(1,100)",
                   db="appdb")
            c.wait_replicated()
            for i in range(c.node_count):
                print(i, c.port_of(i), c.psql(i, "SELECT count(*) FROM t", db="appdb"),
                      c.psql(i, "SELECT pg_is_in_recovery()"))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
