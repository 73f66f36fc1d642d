#!/usr/bin/python3
"""Pooling benchmark: pgbench straight to PostgreSQL 15 vs through pgswitch vs through PgBouncer.

Starts one PostgreSQL 15 primary (tests/integration/pgcluster.py), loads `pgbench -i -s 10`,
runs pgswitch (transaction mode, pool_size 20) and PgBouncer (transaction mode, pool 20) in
front of it on loopback, then runs each pgbench scenario against the three targets interleaved
(the starting target rotates per scenario and round, so no target always runs first or last).
Prints a markdown table (TPS, latency, proxy CPU per transaction, failures); --out also writes
it to a file. Exits non-zero if any pgswitch run had failed transactions or any pgbench run
exited non-zero. Everything it starts is stopped on exit, including on Ctrl-C / SIGTERM.

    /usr/bin/python3 bench/pooler_bench.py [-T 10 | --quick] [--rounds N] [--out FILE]
                                           [--baseline /path/to/older/pgswitch]

--baseline adds a fourth target: another pgswitch binary (e.g. built from an earlier commit)
with the same configuration, interleaved with the others, so a change is measured against
what it replaces in one run.

--tls measures the cost of TLS between clients and the target: a throwaway CA and server
certificate (openssl CLI), PostgreSQL with ssl=on (for the direct runs), pgswitch with [tls]
cert_file/key_file, PgBouncer with client_tls_sslmode=allow, pgbench with PGSSLMODE=require;
proxy-to-PostgreSQL stays plaintext for both proxies (server_sslmode / server_tls_sslmode =
disable). Scenarios: -S at 8 and 64 clients and connection churn (-C), unless --only.

The "logins" scenarios measure logins per second with bench/login_client (built with
`cmake --build build --target login_client`; $LOGIN_CLIENT_BIN overrides) instead of pgbench:
its SCRAM client derives the salted password once per process, not per login as libpq does
(pgbench -C spends most of its time in PBKDF2), so a login costs the client a few HMACs and
its system calls, and logins/s tells the proxies apart.
Each thread connects, logs in as `app` with SCRAM, optionally runs one simple query, sends
Terminate and repeats. They get a table of their own (logins/s, proxy and client CPU µs per
login) and are skipped with --tls and when login_client is not built.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from pgcluster import (HOST, PG_BIN, PGSWITCH_BIN, PgCluster, PgSwitch,  # noqa: E402
                       _chown_pg, _children_of, _pid_alive, _postmaster_pid, _set_pdeathsig,
                       free_port, run)

PGBENCH = str(PG_BIN / "pgbench")
PGBOUNCER = "/usr/sbin/pgbouncer"
DB, USER, PASSWORD = "appdb", "app", "app"
POOL_SIZE = 20
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
TARGETS = ("direct", "pgswitch", "pgbouncer")  # + "baseline" with --baseline
TLS: "Path | None" = None  # --tls: directory holding ca.crt, server.crt, server.key
TLS_SCENARIOS = ("select simple c8", "select simple c64", "select churn -C c8")
LOGIN_CLIENT = (os.environ.get("LOGIN_CLIENT_BIN")
                or str(REPO / "build" / "bench" / "login_client"))


@dataclass(frozen=True)
class Scenario:
    name: str
    args: tuple[str, ...]   # pgbench arguments besides -T/-j/connection
    clients: int
    mode: str                # -M
    churn: bool = False      # -C: TPS including connection time
    login: bool = False      # run login_client (clients = threads, args = its extra options)


SCENARIOS = [
    Scenario("select simple c8", ("-S",), 8, "simple"),
    Scenario("select extended c8", ("-S",), 8, "extended"),
    Scenario("select prepared c8", ("-S",), 8, "prepared"),
    Scenario("select simple c64", ("-S",), 64, "simple"),
    Scenario("select extended c64", ("-S",), 64, "extended"),
    Scenario("select prepared c64", ("-S",), 64, "prepared"),
    Scenario("tpcb-like simple c16", (), 16, "simple"),
    Scenario("select churn -C c8", ("-S", "-C"), 8, "simple", churn=True),
    Scenario("logins c4", (), 4, "simple", login=True),
    Scenario("logins c16", (), 16, "simple", login=True),
    Scenario("logins+select c16", ("--query", "SELECT 1"), 16, "simple", login=True),
]


@dataclass
class RunResult:
    tps: float | None = None
    latency_ms: float | None = None
    txns: int = 0
    failed: int = 0
    rc: int = 0
    cpu_s: float | None = None     # proxy CPU during the run (None for direct)
    ctx: int | None = None         # proxy context switches (all threads) during the run
    note: str = ""                 # e.g. "session mode"
    other_pct: float = 0.0         # CPU used by processes not part of the benchmark, % of all CPUs
    client_cpu_s: float | None = None  # login_client's own CPU (login scenarios)
    wall_s: float | None = None        # login_client's measured duration (login scenarios)
    stderr_tail: str = ""


@dataclass
class Cell:
    runs: list[RunResult] = field(default_factory=list)

    def median(self, attr):
        vals = [getattr(r, attr) for r in self.runs if getattr(r, attr) is not None]
        return statistics.median(vals) if vals else None

    def cpu_us_per_txn(self):
        runs = [r for r in self.runs if r.cpu_s is not None]
        txns = sum(r.txns for r in runs)
        return (sum(r.cpu_s for r in runs) * 1e6 / txns) if runs and txns else None

    def client_cpu_us_per_txn(self):
        runs = [r for r in self.runs if r.client_cpu_s is not None]
        txns = sum(r.txns for r in runs)
        return (sum(r.client_cpu_s for r in runs) * 1e6 / txns) if runs and txns else None

    def client_cpu_pct(self):
        """login_client's CPU as % of one CPU, over all runs."""
        runs = [r for r in self.runs if r.client_cpu_s is not None and r.wall_s]
        wall = sum(r.wall_s for r in runs)
        return 100.0 * sum(r.client_cpu_s for r in runs) / wall if runs and wall else None

    def proxy_cpu_pct(self):
        """The proxy's CPU as % of one CPU, over the runs that measured it (login scenarios)."""
        runs = [r for r in self.runs if r.cpu_s is not None and r.wall_s]
        wall = sum(r.wall_s for r in runs)
        return 100.0 * sum(r.cpu_s for r in runs) / wall if runs and wall else None

    def ctx_per_txn(self):
        runs = [r for r in self.runs if r.ctx is not None]
        txns = sum(r.txns for r in runs)
        return sum(r.ctx for r in runs) / txns if runs and txns else None

    def cpu_per_txn_by_round(self) -> list:
        """CPU µs per transaction of each round (None where not measured)."""
        return [r.cpu_s * 1e6 / r.txns if r.cpu_s is not None and r.txns else None
                for r in self.runs]

    def failures(self) -> int:
        return sum(r.failed for r in self.runs)

    def bad_rc(self) -> bool:
        return any(r.rc != 0 for r in self.runs)


# ----------------------------------------------------------------------------------------------
# processes

def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class ProxyCpu:
    """A proxy's CPU time at one moment, for the CPU-per-transaction columns. utime + stime
    from /proc/PID/stat come in 10 ms clock ticks: a churn run of a few hundred milliseconds
    of proxy CPU would be read to a few percent. Each thread's /proc/PID/task/TID/schedstat
    holds its run time in nanoseconds (the same total, unrounded), so the difference of two
    readings uses those while every thread of the first one is still there (a thread that
    ended takes its nanoseconds with it) and falls back to the clock ticks otherwise."""

    def __init__(self, pid: int):
        self.ticks_s = proc_cpu_seconds(pid)
        self.ns: dict[str, int] | None = {}
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    self.ns[tid] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            self.ns = None  # no schedstat (CONFIG_SCHED_INFO off) or a thread ended meanwhile

    def seconds_until(self, later: "ProxyCpu") -> float:
        a, b = self.ns, later.ns
        ticks = later.ticks_s - self.ticks_s
        if a is None or b is None or not a.keys() <= b.keys():
            return ticks
        ns = sum(b[t] - a.get(t, 0) for t in b) / 1e9
        # A thread that began and ended between the readings is in neither: its time shows
        # only in the clock ticks (two ticks of rounding allowed).
        return ticks if ns < ticks - 2 / CLK_TCK else ns


def proc_ctx_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of the process."""
    n = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:",
                                        "nonvoluntary_ctxt_switches:")):
                        n += int(line.split()[1])
        except FileNotFoundError:  # a thread that ended meanwhile
            pass
    return n


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _system_busy_s() -> float:
    """Busy CPU time of the whole machine (all CPUs; steal counts: it is not ours either)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


class CpuSnapshot:
    """Busy time of the machine and of everything this benchmark runs: reaped children
    (pgbench), the proxies, the postmaster and its backends. The difference between two
    snapshots tells how much CPU other processes (a compile, another test run) took."""

    def __init__(self, proxies: list[int], postmaster: int | None):
        self.wall = time.monotonic()
        self.busy = _system_busy_s()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.children = ru.ru_utime + ru.ru_stime
        self.procs: dict[int, float] = {}
        for pid in proxies:
            try:
                self.procs[pid] = proc_cpu_seconds(pid)
            except OSError:
                pass
        self.pm = 0.0
        self.backends: dict[int, float] = {}
        if postmaster:
            try:
                f = _stat_fields(postmaster)
                # cutime/cstime: backends that exited (e.g. with pgbench -C) end up here.
                self.pm = sum(int(x) for x in f[11:15]) / CLK_TCK
            except OSError:
                pass
            for kid in _children_of(postmaster):
                try:
                    self.backends[kid] = proc_cpu_seconds(kid)
                except OSError:
                    pass

    def other_pct(self, later: "CpuSnapshot") -> float:
        ours = later.children - self.children + later.pm - self.pm
        ours += sum(v - self.procs.get(pid, 0.0) for pid, v in later.procs.items())
        ours += sum(v - self.backends.get(pid, 0.0) for pid, v in later.backends.items())
        # An exited backend's whole life is in the postmaster's cutime; its part before the
        # first snapshot was not ours to count.
        ours -= sum(v for pid, v in self.backends.items() if pid not in later.backends)
        wall = max(later.wall - self.wall, 1e-3)
        other = (later.busy - self.busy) - ours
        return max(0.0, 100.0 * other / (NCPU * wall))


def wait_listening(proc: subprocess.Popen, port: int, timeout: float, name: str,
                   log_tail, stop) -> None:
    """Returns once something accepts on HOST:port; raises with the log if `proc` exits
    first, or (after `stop()`) if `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; log:\n" + log_tail())
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                stop()
                raise RuntimeError(f"{name} did not start listening; log:\n" + log_tail())
            time.sleep(0.05)


def pgbouncer_version() -> tuple[int, int]:
    out = run([PGBOUNCER, "--version"], check=False).stdout
    m = re.search(r"PgBouncer (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


class PgBouncer:
    """Debian's pgbouncer in its own temp dir, run as the postgres user (it refuses root).
    Two database aliases: `appdb` (transaction mode, pool 20) and, when the installed version
    cannot keep protocol-level prepared statements in transaction mode (< 1.21),
    `appdb_session` (session mode, a pool as large as the most clients) for -M prepared."""

    def __init__(self, cluster: PgCluster, session_pool_size: int):
        self.cluster = cluster
        tls = []
        if TLS is not None:
            tls = ["client_tls_sslmode = allow", f"client_tls_cert_file = {TLS / 'server.crt'}",
                   f"client_tls_key_file = {TLS / 'server.key'}", "server_tls_sslmode = disable"]
        self.version = pgbouncer_version()
        self.prepared_in_txn_mode = self.version >= (1, 21)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgbouncer-", dir=cluster.tmpdir))
        _chown_pg(self.dir)
        self.log_path = self.dir / "pgbouncer.log"
        secret = cluster.psql(0, f"SELECT rolpassword FROM pg_authid WHERE rolname = '{USER}'")
        if not secret.startswith("SCRAM-SHA-256$"):
            secret = PASSWORD  # plaintext works too (PgBouncer then does SCRAM itself)
        auth = self.dir / "userlist.txt"
        auth.write_text(f'"{USER}" "{secret}"\n')
        os.chmod(auth, 0o600)
        _chown_pg(auth)
        pg_port = cluster.port_of(0)
        dbs = [f"{DB} = host={HOST} port={pg_port} dbname={DB}"]
        if not self.prepared_in_txn_mode:
            dbs.append(f"{DB}_session = host={HOST} port={pg_port} dbname={DB} "
                       f"pool_mode=session pool_size={session_pool_size}")
        settings = [
            f"listen_addr = {HOST}", f"listen_port = {self.port}", "unix_socket_dir =",
            "auth_type = scram-sha-256", f"auth_file = {auth}",
            "pool_mode = transaction", f"default_pool_size = {POOL_SIZE}",
            "max_client_conn = 2000", "max_db_connections = 0",
            # pgswitch logs no per-connection lines at info; keep the comparison fair for -C.
            "log_connections = 0", "log_disconnections = 0",
            "ignore_startup_parameters = extra_float_digits",
        ]
        if self.prepared_in_txn_mode:
            settings.append("max_prepared_statements = 200")
        settings += tls
        self.config_path = self.dir / "pgbouncer.ini"
        self.config_path.write_text("[databases]\n" + "\n".join(dbs) + "\n\n[pgbouncer]\n"
                                    + "\n".join(settings) + "\n")
        os.chmod(self.config_path, 0o644)
        self.proc: subprocess.Popen | None = None

    def dbname_for(self, mode: str) -> tuple[str, str]:
        """(database alias, note for the table) for a pgbench -M mode."""
        if mode == "prepared" and not self.prepared_in_txn_mode:
            return f"{DB}_session", "session mode"
        return DB, ""

    def start(self, timeout: float = 10) -> None:
        logf = open(self.log_path, "ab")
        kw = {}
        if os.geteuid() == 0:
            kw = {"user": "postgres", "group": "postgres", "extra_groups": []}
        try:
            self.proc = subprocess.Popen([PGBOUNCER, str(self.config_path)],
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         cwd=self.dir, preexec_fn=_set_pdeathsig, **kw)
        finally:
            logf.close()
        wait_listening(self.proc, self.port, timeout, "pgbouncer", self.log_tail, self.stop)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # SIGINT: "safe shutdown" is not needed here
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "".join(self.log_path.read_text(errors="replace")
                           .splitlines(keepends=True)[-lines:])
        except OSError:
            return ""


# ----------------------------------------------------------------------------------------------
# pgbench

def pgbench_env(setup: bool = False) -> dict:
    """setup: the pgbench -i run, always plaintext."""
    mode = "require" if TLS is not None and not setup else "disable"
    return {"PGPASSWORD": PASSWORD, "PGSSLMODE": mode, "PGCONNECT_TIMEOUT": "10"}


def make_certs() -> Path:
    """A throwaway CA and a certificate for 127.0.0.1/localhost, readable by PostgreSQL and
    PgBouncer (both run as the postgres user)."""
    d = Path(tempfile.mkdtemp(prefix="pgswitch-bench-tls-", dir="/tmp"))
    os.chmod(d, 0o755)

    def ossl(*a):
        subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True, timeout=60)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=bench CA",
         "-keyout", "ca.key", "-out", "ca.crt")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout",
         "server.key", "-out", "server.csr")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt")
    for f in d.iterdir():
        os.chmod(f, 0o644)
        _chown_pg(f)
    os.chmod(d / "server.key", 0o600)
    return d


def parse_pgbench(out: str, churn: bool) -> RunResult:
    r = RunResult()
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    r.txns = int(m.group(1)) if m else 0
    m = re.search(r"number of failed transactions: (\d+)", out)
    r.failed = int(m.group(1)) if m else 0
    m = re.search(r"latency average = ([\d.]+) ms", out)
    r.latency_ms = float(m.group(1)) if m else None
    tps = {}
    for m in re.finditer(r"^tps = ([\d.]+) \((.*)\)", out, re.M):
        tps[m.group(2)] = float(m.group(1))
    want = "including" if churn else "without"
    for label, v in tps.items():
        if want in label:
            r.tps = v
    if r.tps is None and tps:
        r.tps = next(iter(tps.values()))
    return r


def run_pgbench(port: int, db: str, sc: Scenario, seconds: int, proxy_pid: int | None,
                watch=lambda: ([], None)) -> RunResult:
    """One pgbench run; `watch()` returns (proxy pids, postmaster pid) for CPU accounting."""
    cmd = [PGBENCH, "-h", HOST, "-p", str(port), "-U", USER, "-n", "-j", "2",
           "-c", str(sc.clients), "-M", sc.mode, "-T", str(seconds), *sc.args, db]
    snap0 = CpuSnapshot(*watch())
    cpu0 = ProxyCpu(proxy_pid) if proxy_pid else None
    ctx0 = proc_ctx_switches(proxy_pid) if proxy_pid else None
    cp = run(cmd, env=pgbench_env(), check=False, timeout=seconds + 120)
    alive = proxy_pid and _pid_alive(proxy_pid)
    cpu1 = ProxyCpu(proxy_pid) if alive else None
    ctx1 = proc_ctx_switches(proxy_pid) if alive else None
    snap1 = CpuSnapshot(*watch())
    r = parse_pgbench(cp.stdout, sc.churn)
    r.rc = cp.returncode
    r.other_pct = snap0.other_pct(snap1)
    if cpu0 is not None and cpu1 is not None:
        r.cpu_s = cpu0.seconds_until(cpu1)
    if ctx0 is not None and ctx1 is not None:
        r.ctx = ctx1 - ctx0
    if cp.returncode != 0 or r.tps is None:
        r.stderr_tail = "\n".join((cp.stdout + cp.stderr).strip().splitlines()[-15:])
    return r


def run_login_client(port: int, db: str, sc: Scenario, seconds: int, proxy_pid: int | None,
                     watch=lambda: ([], None)) -> RunResult:
    """One login_client run, accounted like run_pgbench: txns = logins, failed = errors,
    latency = threads x duration / logins (closed loop, as pgbench computes it)."""
    cmd = [LOGIN_CLIENT, "--host", HOST, "--port", str(port), "--user", USER,
           "--password", PASSWORD, "--dbname", db, "--threads", str(sc.clients),
           "--seconds", str(seconds), *sc.args]
    snap0 = CpuSnapshot(*watch())
    cpu0 = ProxyCpu(proxy_pid) if proxy_pid else None
    ctx0 = proc_ctx_switches(proxy_pid) if proxy_pid else None
    cp = run(cmd, check=False, timeout=seconds + 60)
    alive = proxy_pid and _pid_alive(proxy_pid)
    cpu1 = ProxyCpu(proxy_pid) if alive else None
    ctx1 = proc_ctx_switches(proxy_pid) if alive else None
    snap1 = CpuSnapshot(*watch())
    r = RunResult(rc=cp.returncode)
    try:
        out = json.loads(cp.stdout.strip().splitlines()[-1])
        r.txns, r.failed = int(out["logins"]), int(out["errors"])
        r.tps, r.wall_s, r.client_cpu_s = out["logins_per_s"], out["seconds"], out["cpu_s"]
        if r.txns:
            r.latency_ms = sc.clients * r.wall_s * 1000 / r.txns
    except (IndexError, KeyError, ValueError):
        pass
    r.other_pct = snap0.other_pct(snap1)
    if cpu0 is not None and cpu1 is not None:
        r.cpu_s = cpu0.seconds_until(cpu1)
    if ctx0 is not None and ctx1 is not None:
        r.ctx = ctx1 - ctx0
    if cp.returncode != 0 or r.tps is None or r.failed:
        r.stderr_tail = "\n".join((cp.stdout + cp.stderr).strip().splitlines()[-15:])
    return r


def wait_quiet(watch, threshold: float, max_wait: float) -> float:
    """Waits (up to max_wait s) for a second in which other processes use less than
    `threshold` % of the CPUs; returns the last measured share."""
    deadline = time.monotonic() + max_wait
    while True:
        a = CpuSnapshot(*watch())
        time.sleep(1.0)
        pct = a.other_pct(CpuSnapshot(*watch()))
        if pct < threshold or time.monotonic() >= deadline:
            return pct


# ----------------------------------------------------------------------------------------------
# report

def fmt_num(v, digits=0):
    if v is None:
        return "—"
    return f"{v:.{digits}f}"


def fmt_lat(v):
    if v is None:
        return "—"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "—"


def round_ratio_span(a: Cell, b: Cell) -> str:
    """min–max over the rounds of a's CPU per transaction ÷ b's in the same round. The targets
    of one round run back to back, so this shows how far the pooled ratio moves with the
    machine (a shared machine drifts by more than the differences measured)."""
    rs = [x / y for x, y in zip(a.cpu_per_txn_by_round(), b.cpu_per_txn_by_round())
          if x is not None and y]
    if not rs:
        return "—"
    return f"{min(rs):.2f}" if len(rs) == 1 else f"{min(rs):.2f}–{max(rs):.2f}"


def tps_cells(cell: "dict[str, Cell]", targets, max_other: float) -> tuple[dict, dict, bool]:
    """Median TPS per target, its text (marked ~ when the machine was busy), any busy run."""
    tps = {t: cell[t].median("tps") for t in targets}
    text = {t: fmt_num(tps[t]) for t in targets}
    noisy = False
    for t in targets:
        if any(r.other_pct >= max_other for r in cell[t].runs):
            text[t] += " ~"
            noisy = True
    return tps, text, noisy


def make_table(results: dict, scenarios: list[Scenario], notes: dict, max_other: float) -> str:
    if "baseline" in TARGETS:
        return make_baseline_table(results, scenarios, max_other)
    head = ("| scenario | direct TPS | pgswitch TPS | pgbouncer TPS | pgswitch/direct | "
            "pgswitch/pgbouncer | latency ms (d/s/b) | CPU µs/txn (s/b) | "
            "CPU s/b by round | ctx switches/txn (s/b) | failures (d/s/b) |")
    lines = [head, "|" + "---|" * 11]
    footnote = noisy = False
    for sc in scenarios:
        c = results[sc.name]
        tps, cell, busy = tps_cells(c, TARGETS, max_other)
        noisy |= busy
        lat = {t: c[t].median("latency_ms") for t in TARGETS}
        if notes.get(sc.name):
            cell["pgbouncer"] += " †"
            footnote = True
        fails = []
        for t in TARGETS:
            f = str(c[t].failures())
            if c[t].bad_rc():
                f += "!"
            fails.append(f)
        lines.append(
            f"| {sc.name} | {cell['direct']} | {cell['pgswitch']} | {cell['pgbouncer']} | "
            f"{ratio(tps['pgswitch'], tps['direct'])} | "
            f"{ratio(tps['pgswitch'], tps['pgbouncer'])} | "
            f"{' / '.join(fmt_lat(lat[t]) for t in TARGETS)} | "
            f"{fmt_num(c['pgswitch'].cpu_us_per_txn(), 1)} / "
            f"{fmt_num(c['pgbouncer'].cpu_us_per_txn(), 1)} | "
            f"{round_ratio_span(c['pgswitch'], c['pgbouncer'])} | "
            f"{fmt_num(c['pgswitch'].ctx_per_txn(), 2)} / "
            f"{fmt_num(c['pgbouncer'].ctx_per_txn(), 2)} | {' / '.join(fails)} |")
    if footnote:
        lines.append("")
        lines.append("† PgBouncer < 1.21 cannot keep protocol-level prepared statements in "
                     "transaction mode: this PgBouncer row ran in **session** mode (pool size = "
                     "clients), so it is not a like-for-like comparison.")
    others = [r.other_pct for sc in scenarios for t in TARGETS for r in results[sc.name][t].runs]
    lines += noise_note(noisy, max_other)
    lines.append("")
    if others:
        lines.append(f"CPU used by processes outside the benchmark during the runs: median "
                     f"{statistics.median(others):.0f}%, max {max(others):.0f}% of "
                     f"{NCPU} CPUs. ")
    lines.append("TPS excludes connection time, except the -C row (includes reconnects). "
                 "CPU µs/txn: the proxy's CPU time during the run (all threads; nanoseconds "
                 "from schedstat) ÷ transactions, over all rounds. CPU s/b by round: the "
                 "lowest and highest of pgswitch's CPU µs/txn ÷ PgBouncer's in one round "
                 "(the two run back to back), how far the machine moves the ratio. "
                 "ctx switches/txn: the proxy's voluntary + involuntary context switches "
                 "(all threads) ÷ transactions. "
                 "`!` after a failure count: pgbench exited non-zero.")
    return "\n".join(lines) + "\n"


def make_baseline_table(results: dict, scenarios: list[Scenario], max_other: float) -> str:
    """--baseline: the change (pgswitch) against what it replaces (baseline), with PgBouncer
    as the yardstick both are compared to."""
    head = ("| scenario | pgswitch TPS | baseline TPS | pgbouncer TPS | pgswitch/baseline | "
            "pgswitch/pgbouncer | baseline/pgbouncer | CPU µs/txn (s/base/b) | "
            "CPU s/b, base/b by round | ctx switches/txn (s/base/b) | failures (s/base/b) |")
    lines = [head, "|" + "---|" * 11]
    noisy = False
    order = ("pgswitch", "baseline", "pgbouncer")
    for sc in scenarios:
        c = results[sc.name]
        tps, cell, busy = tps_cells(c, order, max_other)
        noisy |= busy
        lines.append(
            f"| {sc.name} | {cell['pgswitch']} | {cell['baseline']} | {cell['pgbouncer']} | "
            f"{ratio(tps['pgswitch'], tps['baseline'])} | "
            f"{ratio(tps['pgswitch'], tps['pgbouncer'])} | "
            f"{ratio(tps['baseline'], tps['pgbouncer'])} | "
            + " / ".join(fmt_num(c[t].cpu_us_per_txn(), 1) for t in order) + " | "
            + round_ratio_span(c["pgswitch"], c["pgbouncer"]) + ", "
            + round_ratio_span(c["baseline"], c["pgbouncer"]) + " | "
            + " / ".join(fmt_num(c[t].ctx_per_txn(), 2) for t in order) + " | "
            + " / ".join(str(c[t].failures()) + ("!" if c[t].bad_rc() else "") for t in order)
            + " |")
    lines += noise_note(noisy, max_other)
    lines.append("")
    lines.append("TPS excludes connection time, except the -C row (includes reconnects). "
                 "CPU µs/txn: the proxy's CPU time during the run (all threads, ns from "
                 "schedstat) ÷ transactions, over all rounds. By round: the lowest and highest "
                 "ratio of two targets' CPU µs/txn in one round.")
    return "\n".join(lines) + "\n"


def noise_note(noisy: bool, max_other: float) -> list[str]:
    """The tables' footnote for cells marked ~ (other processes busy during the run)."""
    if not noisy:
        return []
    return ["", f"~ other processes on the machine used ≥ {max_other:.0f}% of the CPUs "
                "during this run (after the retries): treat the number with suspicion."]


def make_logins_table(results: dict, scenarios: list[Scenario], max_other: float) -> str:
    """The login_client scenarios, every target side by side (with --baseline too)."""
    proxies = [t for t in TARGETS if t != "direct"]
    vs = [t for t in proxies if t != "pgbouncer"]
    short = {"direct": "d", "pgswitch": "s", "baseline": "base", "pgbouncer": "b"}
    both = "/".join(short[t] for t in TARGETS)
    prox = "/".join(short[t] for t in proxies)
    head = ("| scenario | " + " | ".join(f"{t} logins/s" for t in TARGETS) + " | "
            + " | ".join(f"{t}/pgbouncer" for t in vs)
            + f" | proxy CPU µs/login ({prox}) | proxy CPU % of 1 CPU ({prox}) | "
            f"client CPU µs/login ({both}) | client CPU % of 1 CPU ({both}) | errors ({both}) |")
    lines = [head, "|" + "---|" * (len(TARGETS) + len(vs) + 6)]
    noisy = False
    for sc in scenarios:
        c = results[sc.name]
        tps, cell, busy = tps_cells(c, TARGETS, max_other)
        noisy |= busy
        lines.append(
            f"| {sc.name} | " + " | ".join(cell[t] for t in TARGETS) + " | "
            + " | ".join(ratio(tps[t], tps["pgbouncer"]) for t in vs) + " | "
            + " / ".join(fmt_num(c[t].cpu_us_per_txn(), 1) for t in proxies) + " | "
            + " / ".join(fmt_num(c[t].proxy_cpu_pct()) for t in proxies) + " | "
            + " / ".join(fmt_num(c[t].client_cpu_us_per_txn(), 1) for t in TARGETS) + " | "
            + " / ".join(fmt_num(c[t].client_cpu_pct()) for t in TARGETS) + " | "
            + " / ".join(str(c[t].failures()) + ("!" if c[t].bad_rc() else "") for t in TARGETS)
            + " |")
    lines += noise_note(noisy, max_other)
    lines.append("")
    lines.append("login_client (bench/login_client.cc): cN = N threads, each connecting, logging "
                 "in with SCRAM-SHA-256 (PBKDF2 once per process), "
                 "optionally running SELECT 1, then Terminate. logins/s: median over rounds. "
                 "CPU µs/login: the proxy's CPU time during the runs ÷ logins; % of 1 CPU: "
                 f"the same ÷ wall time ({NCPU} CPUs in all). `!` after an error count: "
                 "login_client exited non-zero.")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# main

def ensure_deps() -> None:
    need = [p for p in (PGBOUNCER, PGBENCH) if not os.access(p, os.X_OK)]
    if need:
        print(f"pooler_bench: missing {need}; running scripts/install-deps.sh --bench",
              file=sys.stderr)
        subprocess.run([str(REPO / "scripts" / "install-deps.sh"), "--bench"], check=True)
    if not os.access(PGSWITCH_BIN, os.X_OK):
        sys.exit(f"pooler_bench: {PGSWITCH_BIN} not found; build it first "
                 "(cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build) "
                 "or set PGSWITCH_BIN")


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-T", "--seconds", type=int, default=10, help="pgbench -T per run")
    ap.add_argument("--quick", action="store_true", help="3 s per run (CI smoke)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat every scenario N times")
    ap.add_argument("--scale", type=int, default=10, help="pgbench -i -s")
    ap.add_argument("--only", default="",
                    help="run only scenarios whose name contains this (comma-separated: any)")
    ap.add_argument("--out", help="also write the table to this file")
    ap.add_argument("--max-other", type=float, default=10.0, metavar="PCT",
                    help="a run during which other processes used more than PCT%% of the "
                         "CPUs is noisy: it is retried, and marked if it stays noisy")
    ap.add_argument("--retries", type=int, default=1, help="re-runs of a noisy run")
    ap.add_argument("--baseline", metavar="BIN",
                    help="another pgswitch binary to run as a fourth target (before/after)")
    ap.add_argument("--workers", type=int, default=int(os.environ.get("PGSWITCH_WORKERS", "2")),
                    help="pgswitch worker threads (default 2, or $PGSWITCH_WORKERS)")
    ap.add_argument("--baseline-workers", type=int, metavar="N",
                    help="worker threads of the --baseline target (default: --workers); with "
                         "--baseline build/pgswitch this compares worker counts in one run")
    ap.add_argument("--server", default="", metavar="TOML",
                    help="extra [server] lines for the pgswitch target, e.g. 'io_uring = \"off\"'")
    ap.add_argument("--baseline-server", default="", metavar="TOML",
                    help="extra [server] lines for the --baseline target; with --baseline "
                         "build/pgswitch this compares settings in one run")
    ap.add_argument("--tls", action="store_true",
                    help="clients connect with sslmode=require (see above)")
    ap.add_argument("--idle-wait", type=float, default=60, metavar="S",
                    help="before each run wait up to S seconds for the machine to be quiet "
                         "(0: do not wait)")
    args = ap.parse_args(argv)
    global TARGETS, TLS
    if args.baseline:
        if not os.access(args.baseline, os.X_OK):
            ap.error(f"--baseline {args.baseline}: not an executable")
        args.baseline = os.path.abspath(args.baseline)  # pgswitch runs in its own directory
        TARGETS = ("direct", "pgswitch", "baseline", "pgbouncer")
    seconds = 3 if args.quick else args.seconds
    scenarios = [s for s in SCENARIOS if any(o in s.name for o in args.only.split(","))]
    if args.tls and not args.only:
        scenarios = [s for s in scenarios if s.name in TLS_SCENARIOS]
    if any(s.login for s in scenarios):
        why = ("--tls (login_client speaks plaintext only)" if args.tls else
               f"{LOGIN_CLIENT} is not built (cmake --build build --target login_client)"
               if not os.access(LOGIN_CLIENT, os.X_OK) else "")
        if why:
            log(f"skipping the logins scenarios: {why}")
            scenarios = [s for s in scenarios if not s.login]
    if not scenarios:
        ap.error(f"no scenario matches {args.only!r}")

    ensure_deps()
    raise_nofile()
    results = {s.name: {t: Cell() for t in TARGETS} for s in scenarios}
    notes: dict[str, str] = {}
    problems: list[str] = []
    extra_conf = {"shared_buffers": "256MB"}
    tls_toml = ""
    if args.tls:
        TLS = make_certs()
        extra_conf.update({"ssl": True, "ssl_cert_file": str(TLS / "server.crt"),
                           "ssl_key_file": str(TLS / "server.key")})
        tls_toml = (f'\n[tls]\ncert_file = "{TLS / "server.crt"}"\n'
                    f'key_file = "{TLS / "server.key"}"\n')
    cluster = PgCluster(replicas=0, extra_conf=extra_conf)
    sw = bouncer = base = None
    try:
        log("starting PostgreSQL 15")
        cluster.start()
        pg_port = cluster.port_of(0)
        log(f"pgbench -i -s {args.scale}")
        run([PGBENCH, "-i", "-q", "-s", str(args.scale), "-h", HOST, "-p", str(pg_port),
             "-U", USER, DB], env=pgbench_env(setup=True), timeout=600)
        cluster.psql(0, "CHECKPOINT")
        log("starting pgswitch and PgBouncer")
        sw = PgSwitch(cluster, pool_mode="transaction", workers=args.workers,
                      server_toml=args.server,
                      extra_toml=f"[pool]\npool_size = {POOL_SIZE}" + tls_toml)
        if args.baseline:
            base = PgSwitch(cluster, pool_mode="transaction", binary=args.baseline,
                            workers=args.baseline_workers or args.workers,
                            server_toml=args.baseline_server,
                            extra_toml=f"[pool]\npool_size = {POOL_SIZE}" + tls_toml)
        bouncer = PgBouncer(cluster, session_pool_size=max(s.clients for s in scenarios))
        bouncer.start()
        log(f"PgBouncer {bouncer.version[0]}.{bouncer.version[1]} on {bouncer.port}, "
            f"pgswitch on {sw.port}, PostgreSQL on {pg_port}")

        def target(t: str, mode: str):
            """(port, dbname, proxy pid, note)"""
            if t == "direct":
                return pg_port, DB, None, ""
            if t == "pgswitch":
                return sw.port, DB, sw.pid, ""
            if t == "baseline":
                return base.port, DB, base.pid, ""
            db, note = bouncer.dbname_for(mode)
            return bouncer.port, db, bouncer.pid, note

        # Warm up caches and open the pools (not recorded).
        pm_pid = _postmaster_pid(cluster.nodes[0].datadir)

        def watch():
            return [p for p in (sw.pid, bouncer.pid, base.pid if base else None) if p], pm_pid

        warm = Scenario("warm-up", ("-S",), 8, "simple")
        for t in TARGETS:
            port, db, _, _ = target(t, "simple")
            r = run_pgbench(port, db, warm, 2, None, watch)
            if r.rc != 0:
                problems.append(f"warm-up via {t} failed:\n{r.stderr_tail}")
                log(problems[-1])

        for rnd in range(args.rounds):
            for i, sc in enumerate(scenarios):
                k = (i + rnd) % len(TARGETS)
                for t in TARGETS[k:] + TARGETS[:k]:
                    port, db, pid, note = target(t, sc.mode)
                    proc = {"pgswitch": sw, "baseline": base, "pgbouncer": bouncer}.get(t)
                    if proc is not None and not proc.running():
                        problems.append(f"{t} is not running before '{sc.name}'")
                        log(problems[-1])
                        results[sc.name][t].runs.append(RunResult(rc=-1))
                        continue
                    r = None
                    for attempt in range(1 + args.retries):
                        quiet = wait_quiet(watch, args.max_other, args.idle_wait)
                        if quiet >= args.max_other:
                            log(f"machine still busy ({quiet:.0f}% CPU used by other "
                                f"processes); running anyway")
                        a = (run_login_client if sc.login else run_pgbench)(
                            port, db, sc, seconds, pid, watch)
                        if a.rc != 0 or a.failed or a.tps is None:
                            r = a  # a failure is never retried away
                            break
                        if r is None or a.other_pct < r.other_pct:
                            r = a
                        if a.other_pct < args.max_other:
                            break
                        log(f"{sc.name} via {t}: other processes used {a.other_pct:.0f}% of "
                            f"the CPUs (tps={fmt_num(a.tps, 1)})"
                            + ("; running it again" if attempt < args.retries else ""))
                    r.note = note
                    if note:
                        notes[sc.name] = note
                    results[sc.name][t].runs.append(r)
                    log(f"round {rnd + 1} {sc.name:22s} {t:9s} tps={fmt_num(r.tps, 1):>9s} "
                        f"lat={fmt_lat(r.latency_ms)}ms failed={r.failed} rc={r.rc}"
                        + (f" cpu={r.cpu_s:.2f}s" if r.cpu_s is not None else "")
                        + (f" client_cpu={r.client_cpu_s:.2f}s" if r.client_cpu_s is not None
                           else "")
                        + f" other={r.other_pct:.0f}%"
                        + (f" [{note}]" if note else ""))
                    if r.rc != 0 or r.failed or r.tps is None:
                        problems.append(f"{sc.name} via {t}: rc={r.rc} failed={r.failed}\n"
                                        f"{r.stderr_tail}")
        bench_sc = [s for s in scenarios if not s.login]
        login_sc = [s for s in scenarios if s.login]
        table = make_table(results, bench_sc, notes, args.max_other) if bench_sc else ""
        if login_sc:
            table += ("\n" if table else "") + make_logins_table(results, login_sc,
                                                                  args.max_other)
        table += (f"pgswitch: {args.workers} worker thread(s)"
                  + (f", baseline: {args.baseline_workers or args.workers}" if base else "")
                  + f", pool_size {POOL_SIZE}, transaction mode.\n")
    finally:
        if bouncer is not None:
            bouncer.stop()
        if base is not None:
            try:
                base.stop()
            except AssertionError as e:
                problems.append(f"baseline: {e}")
        sw_log = sw.log() if sw is not None else ""
        if sw is not None:
            try:
                rc = sw.stop()
                if rc not in (0, None):
                    problems.append(f"pgswitch exited with {rc}")
            except AssertionError as e:
                problems.append(str(e))
        cluster.stop()
        if TLS is not None:
            import shutil
            shutil.rmtree(TLS, ignore_errors=True)

    print(table, end="")
    if args.out:
        Path(args.out).write_text(table)
    sw_noise = [ln for ln in sw_log.splitlines()
                if re.search(r"\b(warn|warning|error|critical)\b", ln, re.I)]
    if sw_noise:
        print(f"\npgswitch logged {len(sw_noise)} warning/error lines; first ones:",
              file=sys.stderr)
        print("\n".join(sw_noise[:15]), file=sys.stderr)
    for p in problems:
        print(f"\nproblem: {p}", file=sys.stderr)

    bad = [sc.name for sc in scenarios
           if results[sc.name]["pgswitch"].failures() or results[sc.name]["pgswitch"].bad_rc()]
    bad_rc = [f"{sc.name} via {t}" for sc in scenarios for t in TARGETS
              if results[sc.name][t].bad_rc()]
    if bad and sw_log:
        print("\npgswitch log (last 30 lines):\n"
              + "".join(sw_log.splitlines(keepends=True)[-30:]), file=sys.stderr)
    if bad or bad_rc:
        print(f"\npooler_bench: FAILED (pgswitch failures: {bad or 'none'}; "
              f"pgbench non-zero exits: {bad_rc or 'none'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM via the fixture's handler
        print(f"pooler_bench: interrupted ({e or 'SIGINT'}); everything it started is stopped",
              file=sys.stderr)
        sys.exit(130)
