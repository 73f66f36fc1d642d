#!/usr/bin/python3
"""Chaos loop (issue 17, part 7): pgswitch under load while its cluster is abused.

Starts a primary and two streaming replicas (tests/integration/pgcluster.py), pgswitch in
transaction mode with auto failover in front, a pgbench loop and N persistent Python clients
(each transaction writes one uniquely keyed row and reads; then an autocommit read). For
--duration seconds it runs chaos actions one after the other, in an order drawn from --seed
(every kind once per round, shuffled): kill -9 + restart of a replica, SIGSTOP/SIGCONT of the
primary or of a replica, a failover (kill -9 of the primary, or the console's SWITCHOVER) with
the old primary rebuilt as a replica and ATTACHed, RELOADs with changed backends (a replica's
weight toggled; a replica removed and re-added), a descriptor storm (hundreds of TCP
connections that never send a byte) and a login storm (concurrent logins, some with a wrong
password). After each action the cluster is healed (stopped nodes started, fenced or forked
nodes rebuilt from the current primary and ATTACHed) so the next action starts from a full
cluster.

At the end it checks, prints a table, and exits 1 if a check failed: pgswitch alive (same pid,
SELECT 1, console SHOW STATS), no crash (exit status on SIGTERM, no core file, no
assert/AddressSanitizer in its log), no write ran on a replica (no 25006; every acknowledged
row on the final primary with synchronous replication, none of the rows whose transaction was
reported rolled back), no leaked server connection (SHOW POOLS / SHOW SERVERS after a settle),
no client op beyond the latency bound derived from failover_wait_ms + query_wait_timeout_ms,
and every client error's SQLSTATE in the allowed set (counted by SQLSTATE and printed).

Bounded: setup + duration + heal + checks, under a hard alarm; every client op has a hard
timeout (a watchdog shuts the socket); everything started is stopped by pid, also on failure.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import psycopg2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import pgcluster  # noqa: E402
from pgcluster import HOST, PG_BIN, PgCluster, PgSwitch, PgWire, PgWireError  # noqa: E402

# Errors a client may see while the cluster is abused: the transaction was lost (08006, safe
# to retry) or its COMMIT's outcome is unknown (08007), no primary/replica for
# failover_wait_ms (57P03), no server within query_wait_timeout_ms (53300).
ALLOWED_SQLSTATES = {"08006", "08007", "57P03", "53300"}
ACTIONS = ["kill_replica", "freeze_primary", "freeze_replica", "failover_kill", "switchover",
           "reload_weight", "reload_remove", "fd_storm", "login_storm"]
STORMS = {"fd_storm", "login_storm"}


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def classify_message(text: str) -> str:
    """A SQLSTATE (or a name) for an error that carries no SQLSTATE: libpq connect failures,
    a dropped connection, pgbench's error lines."""
    t = text.lower()
    for pat, code in [("read-only transaction", "25006"),
                      ("while commit was in progress", "08007"),
                      ("may or may not have committed", "08007"),
                      ("connection to the server lost", "08006"),
                      ("server connection lost", "08006"),
                      ("timeout while connecting to the server", "08006"),
                      ("could not connect to server", "08006"),
                      ("no primary server is available", "57P03"),
                      ("no replica can serve", "57P03"),
                      ("the database system is", "57P03"),
                      ("too many clients", "53300"),
                      ("query_wait_timeout", "53300"),
                      ("password authentication failed", "28P01"),
                      ("timeout expired", "CONNECT_TIMEOUT"),
                      ("server closed the connection", "CONNECTION_LOST"),
                      ("connection already closed", "CONNECTION_LOST"),
                      ("eof detected", "CONNECTION_LOST"),
                      ("connection refused", "CONNECTION_REFUSED")]:
        if pat in t:
            return code
    return "OTHER"


def first_line(e) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:240] if s else type(e).__name__


# ----------------------------------------------------------------------------------------------
# pgswitch with a config whose backends can be changed (weight, removed)

class ChaosSwitch(PgSwitch):
    def __init__(self, cluster: PgCluster, **kw):
        self.excluded: set[int] = set()   # node indexes left out of the config file
        self.weights: dict[int, int] = {}
        super().__init__(cluster, **kw)

    def config_text(self) -> str:
        self.backend_toml = {i: f"weight = {w}" for i, w in self.weights.items()}
        text = super().config_text().replace(
            "[health]\n", "[health]\nconnect_timeout_ms = 1000\nquery_timeout_ms = 1000\n", 1)
        blocks = text.split("\n\n")
        drop = {f'name = "pg{i + 1}"' for i in self.excluded}
        return "\n\n".join(b for b in blocks
                           if not (b.startswith("[[backend]]") and
                                   any(line in drop for line in b.splitlines())))

    def console(self):
        c = psycopg2.connect(self.dsn(user="admin", db="pgswitch", connect_timeout=5))
        c.autocommit = True
        return c

    def show(self, what: str) -> list[dict]:
        c = self.console()
        try:
            with c.cursor() as cur:
                cur.execute(f"SHOW {what}")
                cols = [d[0] for d in cur.description]
                return [dict(zip(cols, r)) for r in cur.fetchall()]
        finally:
            c.close()

    def command(self, sql: str) -> None:
        c = self.console()
        try:
            with c.cursor() as cur:
                cur.execute(sql)
        finally:
            c.close()

    def backends(self) -> dict[str, dict]:
        return {r["name"]: r for r in self.show("BACKENDS")}

    def primary(self) -> int | None:
        for name, r in self.backends().items():
            if r["role"] == "primary" and r["state"] == "up":
                return int(name[2:]) - 1
        return None

    def fd_count(self) -> int:
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except (OSError, TypeError):
            return -1


def low_fd_wrapper(dirpath: Path, binary: str, nofile: int) -> str:
    """A shell script that lowers RLIMIT_NOFILE and execs pgswitch (same pid)."""
    p = dirpath / "pgswitch-lowfd.sh"
    p.write_text(f"#!/bin/sh\nulimit -n {int(nofile)} || exit 111\nexec {binary} \"$@\"\n")
    os.chmod(p, 0o755)
    return str(p)


# ----------------------------------------------------------------------------------------------
# load: persistent Python clients

class Client(threading.Thread):
    """One persistent psycopg2 connection; loop: BEGIN; INSERT a unique row; SELECT; COMMIT;
    then an autocommit read. Every statement is an op whose latency is recorded; the watchdog
    shuts the socket of an op older than the hard timeout."""

    def __init__(self, cid: int, dsn: str, stop: threading.Event, think_s: float):
        super().__init__(daemon=True, name=f"client{cid}")
        self.cid, self.dsn, self.stop, self.think_s = cid, dsn, stop, think_s
        self.conn = None
        self.op: tuple[str, float] | None = None
        self.max_op = (0.0, "", 0.0)        # (seconds, op, monotonic end)
        self.ops = self.commits = self.reads = 0
        self.errors: Counter = Counter()
        self.samples: dict[str, str] = {}
        self.acked: list[str] = []
        self.unknown: dict[str, str] = {}   # COMMIT sent, no answer: key -> code
        self.rolled_back: dict[str, str] = {}  # failed before COMMIT: key -> code
        self.disconnects = 0
        self.stuck: list[str] = []
        self.fatal: str | None = None

    def timed(self, name: str, fn):
        t = time.monotonic()
        self.op = (name, t)
        try:
            return fn()
        finally:
            self.op = None
            dt = time.monotonic() - t
            self.ops += 1
            if dt > self.max_op[0]:
                self.max_op = (dt, name, time.monotonic())

    def record(self, e: Exception) -> str:
        code = getattr(e, "pgcode", None) or classify_message(str(e))
        self.errors[code] += 1
        self.samples.setdefault(code, first_line(e))
        return code

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - a harness bug must not hang the run
            self.fatal = f"{type(e).__name__}: {e}"
        finally:
            try:
                if self.conn is not None:
                    self.conn.close()
            except Exception:  # noqa: BLE001
                pass

    def _run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            if self.conn is None or self.conn.closed:
                try:
                    self.conn = self.timed("connect", lambda: psycopg2.connect(self.dsn))
                    self.conn.autocommit = True
                except psycopg2.Error as e:
                    self.conn = None
                    self.record(e)
                    self.stop.wait(0.2)
                    continue
            seq += 1
            key = f"{self.cid}:{seq}"
            stage = "BEGIN"
            cur = self.conn.cursor()
            try:
                self.timed("BEGIN", lambda: cur.execute("BEGIN"))
                stage = "INSERT"
                self.timed("INSERT", lambda: cur.execute(
                    "INSERT INTO chaos_rows (k, cid, seq) VALUES (%s, %s, %s)",
                    (key, self.cid, seq)))
                stage = "SELECT"
                self.timed("SELECT", lambda: cur.execute(
                    "SELECT count(*) FROM chaos_rows WHERE cid = %s", (self.cid,)))
                cur.fetchone()
                stage = "COMMIT"
                self.timed("COMMIT", lambda: cur.execute("COMMIT"))
                self.acked.append(key)
                self.commits += 1
                stage = "read"
                self.timed("read", lambda: cur.execute(
                    "SELECT count(*) FROM chaos_rows WHERE cid = %s", (self.cid,)))
                cur.fetchone()
                self.reads += 1
            except psycopg2.Error as e:
                code = self.record(e)
                if stage == "COMMIT":
                    self.unknown[key] = code
                elif stage != "read":
                    self.rolled_back[key] = code
                if not self.conn.closed:
                    try:
                        self.timed("ROLLBACK", lambda: self.conn.cursor().execute("ROLLBACK"))
                    except psycopg2.Error as e2:
                        self.record(e2)
                if self.conn.closed:
                    self.disconnects += 1
                    self.conn = None
                self.stop.wait(0.05)
            finally:
                try:
                    cur.close()
                except Exception:  # noqa: BLE001
                    pass
            if self.think_s:
                self.stop.wait(self.think_s)


def stuck_diagnosis(cluster, sw) -> str:
    """What the servers and pgswitch are doing right now, for a stuck op's report: each
    node's active client backends (wait events: a COMMIT waiting for a synchronous standby
    shows SyncRep) and its replication, and pgswitch's SHOW SERVERS."""
    out = []
    for n in cluster.nodes:
        try:
            rows = cluster.psql(
                n.index,
                "SELECT string_agg(format('%s %s/%s %s [%s]', pid, wait_event_type, wait_event,"
                " state, left(query, 40)), '; ') FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND state <> 'idle' AND pid <> "
                "pg_backend_pid()", timeout=5, check=False)
            repl = cluster.psql(
                n.index, "SELECT pg_is_in_recovery() || ' senders: ' || coalesce((SELECT "
                "string_agg(application_name || '=' || state || '/' || sync_state, ',') "
                "FROM pg_stat_replication), '-')", timeout=5, check=False)
            out.append(f"node{n.index}: {repl}; active: {rows or '-'}")
        except Exception as e:  # noqa: BLE001
            out.append(f"node{n.index}: {e}")
    try:
        with closing(psycopg2.connect(sw.dsn(user="admin", db="pgswitch"))) as a:
            a.autocommit = True
            with a.cursor() as cur:
                cur.execute("SHOW SERVERS")
                cols = [d[0] for d in cur.description]
                busy = [dict(zip(cols, r)) for r in cur.fetchall()]
                busy = [b for b in busy if str(b.get("state")) not in ("idle",)]
                out.append(f"pgswitch servers not idle: {busy}")
    except Exception as e:  # noqa: BLE001
        out.append(f"pgswitch: {e}")
    return " | ".join(out)


def watchdog(clients: list[Client], hard_s: float, stop: threading.Event,
             diagnose=None) -> None:
    """Shuts the socket of any op older than hard_s (libpq has no read timeout), after
    noting what the servers were doing (`diagnose`)."""
    while not stop.wait(0.5):
        now = time.monotonic()
        for c in clients:
            op = c.op
            if op is None or now - op[1] < hard_s or c.conn is None:
                continue
            why = ""
            if diagnose is not None:
                try:
                    why = "; at that moment: " + diagnose()
                except Exception as e:  # noqa: BLE001
                    why = f"; diagnosis failed: {e}"
            log(f"{c.name}: {op[0]} stuck for {hard_s:.0f}s{why}")
            c.stuck.append(f"{c.name}: {op[0]} took more than {hard_s:.0f}s{why[:1500]}")
            try:
                s = socket.socket(fileno=os.dup(c.conn.fileno()))
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except Exception:  # noqa: BLE001
                pass


# ----------------------------------------------------------------------------------------------
# load: a pgbench loop (tpcb-like through pgswitch)

class PgbenchLoop(threading.Thread):
    def __init__(self, port: int, clients: int, rate: int, stop: threading.Event,
                 workdir: Path, run_s: float = 15):
        super().__init__(daemon=True, name="pgbench")
        self.port, self.clients, self.rate, self.stop = port, clients, rate, stop
        self.dir, self.run_s = workdir, run_s
        self.runs = self.txns = self.failed = self.aborted = 0
        self.exit_codes: Counter = Counter()
        self.errors: Counter = Counter()
        self.samples: dict[str, str] = {}
        self.max_avg_latency_ms = 0.0  # the worst run's average (pgbench logs no maximum here)
        self.context = ""  # the output of the first run with an unexpected error
        self.stuck: list[str] = []
        self.proc: subprocess.Popen | None = None

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            cmd = [str(PG_BIN / "pgbench"), "-n", "-M", "simple", "-c", str(self.clients),
                   "-j", "1", "-T", str(int(self.run_s)), "-h", HOST, "-p", str(self.port),
                   "-U", "app", "appdb"]
            if self.rate:
                cmd[1:1] = ["-R", str(self.rate)]
            env = dict(os.environ, PGPASSWORD="app", PGCONNECT_TIMEOUT="10")
            out = open(self.dir / f"pgb{n}.out", "w+")
            try:
                self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                             cwd=self.dir, stdin=subprocess.DEVNULL)
                try:
                    rc = self.proc.wait(self.run_s + 60)
                except subprocess.TimeoutExpired:
                    self.stuck.append(f"pgbench run {n} did not end {self.run_s + 60:.0f}s "
                                      "after it started (killed)")
                    self.proc.kill()
                    rc = self.proc.wait(10)
                out.seek(0)
                text = out.read()
            finally:
                out.close()
            self.runs += 1
            self.exit_codes[rc] += 1
            self._parse(text)
            if rc != 0:
                self.stop.wait(0.5)

    def halt(self) -> None:
        """Ends the current run early (SIGINT: pgbench prints its summary)."""
        p = self.proc
        if p is not None and p.poll() is None:
            try:
                p.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass

    def _parse(self, text: str) -> None:
        m = re.search(r"number of transactions actually processed: (\d+)", text)
        self.txns += int(m.group(1)) if m else 0
        m = re.search(r"number of failed transactions: (\d+)", text)
        self.failed += int(m.group(1)) if m else 0
        for line in text.splitlines():
            if "Run was aborted" in line:  # pgbench's summary after an aborted client
                continue
            if "aborted in command" in line or "error:" in line:
                if "aborted in command" in line:
                    self.aborted += 1
                code = classify_message(line)
                self.errors[code] += 1
                self.samples.setdefault(code, line.strip()[:240])
        m = re.search(r"latency average = ([\d.]+) ms", text)
        if m:
            self.max_avg_latency_ms = max(self.max_avg_latency_ms, float(m.group(1)))
        if any(c not in ALLOWED_SQLSTATES for c in self.errors) and not self.context:
            self.context = text[-2000:]


# ----------------------------------------------------------------------------------------------
# the cluster: freezing, rebuilding, healing

def pids_of(cluster: PgCluster, i: int) -> list[int]:
    pid = pgcluster._postmaster_pid(cluster.nodes[i].datadir)
    return [] if pid is None else [pid] + pgcluster._children_of(pid)


def freeze(cluster: PgCluster, i: int, seconds: float) -> None:
    pids = pids_of(cluster, i)
    for p in pids:
        try:
            os.kill(p, signal.SIGSTOP)
        except ProcessLookupError:
            pass
    try:
        time.sleep(seconds)
    finally:
        for p in pids:
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass


def rebuild_replica(cluster: PgCluster, i: int, upstream: int) -> None:
    """Stops node i, throws its data away and makes it a fresh streaming replica of upstream
    (pg_basebackup), like PgCluster._init_replica does at start-up."""
    node, up = cluster.nodes[i], cluster.nodes[upstream]
    cluster.stop_node(i, mode="immediate")
    shutil.rmtree(node.datadir, ignore_errors=True)
    pgcluster.run([PG_BIN / "pg_basebackup", "-D", node.datadir, "-R", "-X", "stream", "-c",
                   "fast", "--no-sync", "-h", HOST, "-p", up.port, "-U", "postgres"],
                  as_pg=True, cwd=cluster.tmpdir, timeout=120)
    with open(node.datadir / "postgresql.conf", "a") as f:
        f.write(cluster._conf_lines(node))
    with open(node.datadir / "postgresql.auto.conf", "a") as f:
        f.write(f"primary_conninfo = 'host={HOST} port={up.port} user=postgres "
                f"application_name={node.name}'\n")
    node.upstream = upstream
    cluster.start_node(i)


def streams_from(cluster: PgCluster, i: int, upstream: int) -> bool:
    try:
        out = cluster.psql(i, "SELECT pg_is_in_recovery(), (SELECT status || ':' || sender_port "
                              "FROM pg_stat_wal_receiver)", timeout=10)
    except (RuntimeError, subprocess.TimeoutExpired):
        return False
    return out == f"t|streaming:{cluster.port_of(upstream)}"


def wait_for(pred, timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if pred():
                return True
        except Exception:  # noqa: BLE001 - keep polling
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


class Chaos:
    def __init__(self, opts, cluster: PgCluster, sw: ChaosSwitch):
        self.o, self.cluster, self.sw = opts, cluster, sw
        self.local = threading.local()  # each action draws from its own generator
        self.counts: Counter = Counter()      # action -> times run
        self.notes: list[str] = []            # what happened, in order
        self.problems: list[str] = []         # pgswitch misbehaviour seen during actions
        self.harness_problems: list[str] = []  # could not heal the cluster etc.
        self.storm = Counter()
        self.storm_bad: list[str] = []
        self.rebuilds = 0
        self.failovers = Counter()

    def note(self, s: str) -> None:
        log(s)
        self.notes.append(f"{time.strftime('%H:%M:%S')} {s}")

    # -- healing --------------------------------------------------------------------------
    def heal(self, timeout: float = 90) -> bool:
        """Back to a full cluster: one primary published by pgswitch, every other node a
        streaming replica of it, every backend in the config and up."""
        c, sw = self.cluster, self.sw
        deadline = time.monotonic() + timeout
        if sw.excluded:
            sw.excluded.clear()
            sw.reload()
        primary = None
        if not wait_for(lambda: sw.primary() is not None, 30):
            # No primary published (e.g. a failover refused): the last node not in recovery.
            self.problems.append("no primary published by pgswitch within 30 s during heal")
            return False
        primary = sw.primary()
        for n in c.nodes:
            i = n.index
            if i == primary:
                continue
            if not c.is_running(i):
                try:
                    c.start_node(i)
                except RuntimeError as e:
                    self.note(f"heal: node{i} does not start ({first_line(e)}); rebuilding")
            claims = c.psql(i, "SELECT pg_is_in_recovery()", check=False, timeout=10) == "f"
            ok = not claims and wait_for(lambda: streams_from(c, i, primary), 8)
            state = sw.backends().get(f"pg{i + 1}", {}).get("state")
            if not ok or state == "fenced":
                self.note(f"heal: rebuilding node{i} (pg{i + 1}, state {state}, "
                          f"streaming={ok}) as a replica of node{primary}")
                try:
                    rebuild_replica(c, i, primary)
                    self.rebuilds += 1
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    self.harness_problems.append(f"rebuild of node{i} failed: {first_line(e)}")
                    return False
                if not wait_for(lambda: streams_from(c, i, primary), 30):
                    self.harness_problems.append(f"node{i} rebuilt but not streaming")
                    return False
            # ATTACH, and again if the backend is still fenced a few seconds later: once in a
            # CI run an ATTACH right after a SWITCHOVER did not take (the switchover's own
            # fencing may land after it; under investigation), and the run then failed on the
            # harness's heal rather than on anything a client saw. Repeats are counted.
            name = f"pg{i + 1}"
            for attempt in range(4):
                if sw.backends().get(name, {}).get("state") != "fenced":
                    break
                if attempt:
                    self.storm["heal: ATTACH repeated"] += 1
                sw.command(f"ATTACH {name}")
                self.note(f"heal: ATTACH {name}" + (f" (again, {attempt + 1})" if attempt else ""))
                wait_for(lambda: sw.backends().get(name, {}).get("state") != "fenced", 5)
        left = max(5.0, deadline - time.monotonic())
        if not wait_for(lambda: all(r["state"] == "up" for r in sw.backends().values()), left):
            states = {k: (r["role"], r["state"]) for k, r in sw.backends().items()}
            self.problems.append(f"backends not all up {left:.0f}s after heal: {states}")
            return False
        return True

    # -- actions ----------------------------------------------------------------------------
    def replicas(self) -> list[int]:
        p = self.sw.primary()
        return [n.index for n in self.cluster.nodes if n.index != p]

    @property
    def rng(self) -> random.Random:
        return self.local.rng

    def run(self, action: str, k: int) -> None:
        """Action number k; its random choices come from (seed, k), so a background storm
        does not shift the draws of the actions that follow."""
        self.local.rng = random.Random(f"{self.o.seed}:{k}")
        self.counts[action] += 1
        getattr(self, "do_" + action)()

    def guarded(self, action: str, k: int) -> None:
        try:
            self.run(action, k)
        except Exception as e:  # noqa: BLE001 - a failed action is reported, then healed
            self.harness_problems.append(f"{action}: {type(e).__name__}: {first_line(e)}")
            log(f"action {action} raised {type(e).__name__}: {e}")

    def do_kill_replica(self):
        i = self.rng.choice(self.replicas())
        down = round(self.rng.uniform(0.5, 3.0), 1)
        self.note(f"kill -9 of replica node{i}, restart after {down}s")
        self.cluster.kill9(i)
        time.sleep(down)
        self.cluster.start_node(i)

    def do_freeze_primary(self):
        p = self.sw.primary()
        s = round(self.rng.uniform(1.0, self.o.freeze_max), 1)
        self.note(f"SIGSTOP of the primary node{p} for {s}s")
        freeze(self.cluster, p, s)
        time.sleep(1.0)
        now = self.sw.primary()
        if now != p:
            self.failovers["after a freeze"] += 1
            self.note(f"  the freeze caused a failover: primary is now node{now}")

    def do_freeze_replica(self):
        i = self.rng.choice(self.replicas())
        s = round(self.rng.uniform(1.0, self.o.freeze_max), 1)
        self.note(f"SIGSTOP of replica node{i} for {s}s")
        freeze(self.cluster, i, s)

    def do_failover_kill(self):
        p = self.sw.primary()
        self.note(f"failover: kill -9 of the primary node{p}")
        self.cluster.kill9(p)
        self.wait_new_primary(p, "kill -9")

    def do_switchover(self):
        p = self.sw.primary()
        to = self.rng.choice(self.replicas())
        self.note(f"failover: SWITCHOVER TO pg{to + 1}")
        try:
            self.sw.command(f"SWITCHOVER TO pg{to + 1}")
        except psycopg2.Error as e:
            self.problems.append(f"SWITCHOVER TO pg{to + 1} failed: {first_line(e)}")
            return
        self.wait_new_primary(p, "switchover")

    def wait_new_primary(self, p: int, kind: str) -> None:
        t = time.monotonic()
        if wait_for(lambda: self.sw.primary() not in (None, p), 30):
            self.failovers[kind] += 1
            self.note(f"  new primary node{self.sw.primary()} after "
                      f"{time.monotonic() - t:.1f}s")
        else:
            self.problems.append(f"{kind} of node{p}: no new primary within 30 s")

    def reload(self, why: str) -> None:
        how = self.rng.choice(["RELOAD", "SIGHUP"])
        self.sw.write_config()
        if how == "SIGHUP":
            self.sw.proc.send_signal(signal.SIGHUP)
        else:
            self.sw.command("RELOAD")
        self.note(f"{why} ({how})")

    def do_reload_weight(self):
        i = self.rng.choice(self.replicas())
        w = 3 if self.sw.weights.get(i, 1) == 1 else 1
        self.sw.weights[i] = w
        self.reload(f"weight of pg{i + 1} -> {w}")
        if not wait_for(lambda: int(self.sw.backends()[f"pg{i + 1}"]["weight"]) == w, 10):
            self.problems.append(f"RELOAD: weight of pg{i + 1} not {w} after 10 s")

    def do_reload_remove(self):
        i = self.rng.choice(self.replicas())
        self.sw.excluded.add(i)
        self.reload(f"pg{i + 1} removed from the config")
        time.sleep(self.rng.uniform(1.0, 3.0))
        self.sw.excluded.discard(i)
        self.reload(f"pg{i + 1} added back")
        if not wait_for(lambda: self.sw.backends().get(f"pg{i + 1}", {}).get("state") == "up",
                        15):
            st = self.sw.backends().get(f"pg{i + 1}")
            self.problems.append(f"RELOAD: pg{i + 1} re-added but not up after 15 s: {st}")

    def do_fd_storm(self):
        n, hold = self.o.fd_storm, round(self.rng.uniform(2.0, 5.0), 1)
        socks, refused = [], 0
        self.note(f"descriptor storm: {n} silent TCP connections for {hold}s")
        try:
            for _ in range(n):
                s = socket.socket()
                s.settimeout(2)
                try:
                    s.connect((HOST, self.sw.port))
                    socks.append(s)
                except OSError:
                    refused += 1
                    s.close()
            t = time.monotonic()
            ok, dt = self.probe_login()
            # With --low-fd the storm takes every descriptor: a new login is then refused with
            # 53300 "too many clients" (as PostgreSQL does when full), which is the designed
            # answer, not a failure. Without it, the probe must log in.
            refused_full = not ok and self.o.low_fd and "53300" in str(dt)
            self.storm["fd_storm probe ok" if ok else
                       "fd_storm probe refused (53300)" if refused_full else
                       "fd_storm probe failed"] += 1
            if not ok and not refused_full:
                self.storm_bad.append(f"login during a descriptor storm failed: {dt}")
            elif refused_full:
                self.note(f"  a login during the storm was refused (descriptors gone): {dt}")
            else:
                self.note(f"  a login + SELECT 1 during the storm took {dt * 1000:.0f} ms")
            time.sleep(max(0.0, hold - (time.monotonic() - t)))
        finally:
            for s in socks:
                s.close()
        self.storm["fd_storm connections"] += len(socks)
        self.storm["fd_storm connect failures"] += refused

    def probe_login(self):
        t = time.monotonic()
        try:
            with PgWire(HOST, self.sw.port, timeout=15) as w:
                w.startup("app", "appdb", "app")
                w.query("SELECT 1")
            return True, time.monotonic() - t
        except (OSError, PgWireError, ValueError, ConnectionError) as e:
            return False, first_line(e)

    def do_login_storm(self):
        n = self.o.login_storm
        wrong = set(self.rng.sample(range(n), max(1, n // 4)))
        results: list[tuple[bool, str]] = [None] * n  # type: ignore[list-item]
        self.note(f"login storm: {n} concurrent logins, {len(wrong)} with a wrong password")

        def one(k: int) -> None:
            bad = k in wrong
            try:
                with PgWire(HOST, self.sw.port, timeout=20) as w:
                    w.startup("app", "appdb", "wrong" if bad else "app")
                    w.query("SELECT 1")
                results[k] = (bad, "ok")
            except PgWireError as e:
                results[k] = (bad, e.sqlstate or "NOSTATE")
            except (OSError, ValueError, ConnectionError) as e:
                results[k] = (bad, f"{type(e).__name__}")
        threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)
        for bad, r in results:
            r = r if r is not None else "no answer in 40 s"
            self.storm[f"login {'wrong' if bad else 'right'} password: {r}"] += 1
            if bad and r != "28P01":
                self.storm_bad.append(f"login with a wrong password: {r}")
            if not bad and r not in ["ok"] + sorted(ALLOWED_SQLSTATES):
                self.storm_bad.append(f"login with the right password: {r}")


# ----------------------------------------------------------------------------------------------
# the run

def pgswitch_toml(o) -> str:
    return "\n".join([
        "[pool]",
        f"pool_size = {o.pool_size}",
        f"query_wait_timeout_ms = {o.query_wait_timeout_ms}",
        "server_connect_timeout_ms = 2000",
        "server_login_retry_ms = 500",
        "",
        "[failover]",
        "auto_failover = true",
        "failover_after = 3",
        "repoint_replicas = true",
        f"failover_wait_ms = {o.failover_wait_ms}",
    ])


def latency_bound_s(o) -> float:
    """The longest a client op may legitimately take: held for a primary (failover_wait_ms),
    then queued for a server (query_wait_timeout_ms), on a server that may be frozen
    (freeze_max), plus slack for a loaded 2-core machine."""
    return (o.failover_wait_ms + o.query_wait_timeout_ms) / 1000 + o.freeze_max + 5


def run_chaos(o) -> dict:
    r: dict = {"seed": o.seed, "duration_s": o.duration, "clients": o.clients,
               "pgbench_clients": o.pgbench_clients, "sync": not o.async_repl,
               "low_fd": o.low_fd, "checks": [], "binary": o.pgswitch}
    rng = random.Random(o.seed)
    cluster = sw = None
    clients: list[Client] = []
    pgb = None
    stop_load = threading.Event()
    stop_wd = threading.Event()
    work = Path(tempfile.mkdtemp(prefix="pgswitch-chaos-"))
    try:
        t_setup = time.monotonic()
        log("starting a primary and 2 replicas")
        conf = {"synchronous_commit": "local" if o.async_repl else "on"}
        cluster = PgCluster(replicas=2, extra_conf=conf).start()
        pgcluster.run([PG_BIN / "pgbench", "-i", "-q", "-s", "1", "-h", HOST, "-p",
                       cluster.port_of(0), "-U", "app", "appdb"], env={"PGPASSWORD": "app"},
                      timeout=120)
        cluster.psql(0, "CREATE TABLE chaos_rows (k text PRIMARY KEY, cid int, seq int, "
                        "at timestamptz DEFAULT now())", user="app", db="appdb")
        cluster.wait_replicated()
        if not o.async_repl:
            # Every acknowledged commit is on a replica ('*': whichever streams, also after
            # failovers and rebuilds), so the most advanced one loses nothing on promotion.
            cluster.extra_conf["synchronous_standby_names"] = "ANY 1 (*)"
            for n in cluster.nodes:
                with open(n.datadir / "postgresql.conf", "a") as f:
                    f.write("synchronous_standby_names = 'ANY 1 (*)'\n")
                cluster.psql(n.index, "SELECT pg_reload_conf()")
        binary = o.pgswitch
        if o.low_fd:
            binary = low_fd_wrapper(work, binary, o.low_fd)
        sw = ChaosSwitch(cluster, pool_mode="transaction", extra_toml=pgswitch_toml(o),
                         health_period_ms=500, log_level=o.log_level, binary=binary,
                         workers=o.workers)
        pid0 = sw.pid
        wait_for(lambda: sw.primary() == 0 and
                 all(b["state"] == "up" for b in sw.backends().values()), 15)
        r["setup_s"] = round(time.monotonic() - t_setup, 1)
        fd0 = sw.fd_count()
        log(f"pgswitch pid {pid0} on port {sw.port}, {fd0} fds; setup took {r['setup_s']}s")

        dsn = sw.dsn(user="app", db="appdb", connect_timeout=10)
        clients = [Client(i, dsn, stop_load, o.think_ms / 1000) for i in range(o.clients)]
        bound = latency_bound_s(o)
        hard = bound + 10
        r["latency_bound_s"] = bound
        wd = threading.Thread(target=watchdog, args=(clients, hard, stop_wd,
                                                     lambda: stuck_diagnosis(cluster, sw)),
                              daemon=True)
        for c in clients:
            c.start()
        wd.start()
        if o.pgbench_clients:
            pgb = PgbenchLoop(sw.port, o.pgbench_clients, o.pgbench_rate, stop_load, work)
            pgb.start()

        chaos = Chaos(o, cluster, sw)
        t0 = time.monotonic()
        end = t0 + o.duration
        time.sleep(min(3.0, o.duration / 10))
        bag: list[str] = []
        background: list[threading.Thread] = []
        k = 0
        aborted = None
        # The first shuffled set runs whole even past --duration (up to twice it), so a short
        # run on a slow machine still exercises every kind of action once.
        first_set = len([a for a in ACTIONS if a not in o.skip])
        while (time.monotonic() < end - 2
               or (k < first_set and time.monotonic() < end + o.duration)):
            if not bag:
                bag = [a for a in ACTIONS if a not in o.skip]
                rng.shuffle(bag)
            action = bag.pop(0)
            k += 1
            if action in STORMS and rng.random() < o.overlap:
                chaos.note(f"{action} starts in the background")
                th = threading.Thread(target=chaos.guarded, args=(action, k), daemon=True)
                th.start()
                background.append(th)
                continue
            chaos.guarded(action, k)
            if not sw.running():
                aborted = "pgswitch exited"
                break
            if not chaos.heal():
                aborted = "the cluster could not be healed"
                break
            time.sleep(rng.uniform(0.5, 2.0))
        for th in background:
            th.join(60)
        r["chaos_s"] = round(time.monotonic() - t0, 1)
        if aborted:
            log(f"chaos stopped early: {aborted}")
            r["aborted"] = aborted

        # --- stop the load
        log("stopping the load")
        stop_load.set()
        if pgb is not None:
            pgb.halt()
            pgb.join(60)
        for c in clients:
            c.join(max(5.0, hard + 5))
        stop_wd.set()
        hung = [c.name for c in clients if c.is_alive()]

        # --- settle, then look at pgswitch
        time.sleep(o.settle)
        checks = r["checks"]

        def check(name: str, ok: bool, detail: str = "") -> None:
            checks.append({"check": name, "ok": bool(ok), "detail": detail})

        alive = sw.running() and sw.pid == pid0
        sel = stats = None
        try:
            with psycopg2.connect(dsn) as conn_, conn_.cursor() as cur:
                cur.execute("SELECT 1")
                sel = cur.fetchone()[0]
            conn_.close()
        except psycopg2.Error as e:
            sel = first_line(e)
        try:
            stats = sw.show("STATS")
        except psycopg2.Error as e:
            stats = first_line(e)
        check("pgswitch alive (same pid, SELECT 1, SHOW STATS)",
              alive and sel == 1 and isinstance(stats, list),
              f"pid {sw.pid} (started as {pid0}), SELECT 1 -> {sel}, SHOW STATS -> "
              f"{len(stats) if isinstance(stats, list) else stats} rows")
        if isinstance(stats, list):
            tot = [s for s in stats if s["backend"] == "total"]
            r["show_stats_total"] = {k: v for k, v in (tot[0] if tot else {}).items()}

        # leaks: wait up to 10 s for active servers to drain
        def pools_ok():
            pools = sw.show("POOLS")
            servers = sw.show("SERVERS")
            act = sum(int(p["sv_active"]) for p in pools)
            over = [p for p in pools if int(p["sv_total"]) > min(int(p["pool_size"]),
                                                                  o.pool_size)]
            sact = [s for s in servers if s["state"] == "active"]
            cl = sum(int(p["cl_active"]) + int(p["cl_waiting"]) for p in pools)
            return act == 0 and not over and not sact and cl == 0, pools, servers
        leak_ok, pools, servers = False, [], []
        for _ in range(20):
            try:
                leak_ok, pools, servers = pools_ok()
            except psycopg2.Error as e:
                pools = [{"error": first_line(e)}]
            if leak_ok:
                break
            time.sleep(0.5)
        r["pools"] = pools
        r["servers_by_state"] = dict(Counter(s.get("state") for s in servers))
        check("no leaked server connections (SHOW POOLS/SERVERS: 0 active, total <= pool_size)",
              leak_ok, "; ".join(
                  f"{p.get('backend')}/{p.get('database')}/{p.get('user')}: cl_active "
                  f"{p.get('cl_active')} cl_waiting {p.get('cl_waiting')} sv_active "
                  f"{p.get('sv_active')} sv_total {p.get('sv_total')}/{p.get('pool_size')}"
                  if "error" not in p else p["error"] for p in pools))
        fd1 = sw.fd_count()
        r["fds"] = {"start": fd0, "end": fd1}
        total_sv = sum(int(p.get("sv_total", 0)) for p in pools if "error" not in p)
        check("no leaked descriptors (fds at the end <= start + server connections + 20)",
              0 <= fd1 <= fd0 + total_sv + 20, f"{fd0} at start, {fd1} at the end, "
              f"{total_sv} server connections open")

        # --- data check on the final primary
        try:
            p = sw.primary()
        except psycopg2.Error as e:  # pgswitch not answering: find the primary directly
            log(f"SHOW BACKENDS failed at the end: {first_line(e)}")
            p = None
        if p is None:
            p = next((n.index for n in cluster.nodes if cluster.is_running(n.index) and
                      cluster.psql(n.index, "SELECT pg_is_in_recovery()", check=False) == "f"),
                     None)
        r["final_primary"] = f"node{p} (pg{p + 1})" if p is not None else None
        acked = {k for c in clients for k in c.acked}
        unknown = {k for c in clients for k in c.unknown}
        rolled = {k for c in clients for k in c.rolled_back}
        present: set[str] = set()
        if p is not None:
            present = set(cluster.psql(p, "SELECT k FROM chaos_rows", db="appdb",
                                       timeout=60).split())
        lost = acked - present
        rolled_present = rolled & present
        phantom = present - acked - unknown - rolled
        r["rows"] = {"acked": len(acked), "on_final_primary": len(present),
                     "lost": len(lost), "unknown_outcome": len(unknown),
                     "unknown_committed": len(unknown & present),
                     "rolled_back_but_present": len(rolled_present), "phantom": len(phantom),
                     "lost_sample": sorted(lost)[:10]}
        n25006 = sum(c.errors["25006"] for c in clients) + (pgb.errors["25006"] if pgb else 0)
        check("no write ran on a replica (no 25006 read-only error)", n25006 == 0,
              f"{n25006} errors 25006")
        if o.async_repl:
            check("acknowledged rows on the final primary (async: losses are reported only)",
                  True, f"{len(lost)} of {len(acked)} lost to asynchronous replication")
        else:
            check("every acknowledged row is on the final primary (sync replication)",
                  p is not None and not lost,
                  f"{len(acked)} acknowledged, {len(lost)} missing {sorted(lost)[:5]}")
        check("no row of a transaction reported as rolled back (08006 etc.) was committed",
              not rolled_present, f"{len(rolled)} rolled back, {len(rolled_present)} present "
              f"{sorted(rolled_present)[:5]}")
        check("no row appeared that no client wrote", not phantom, f"{len(phantom)}")

        # --- client errors and latencies
        errs: Counter = Counter()
        samples: dict[str, str] = {}
        for c in clients:
            errs.update(c.errors)
            for k, v in c.samples.items():
                samples.setdefault(k, v)
        r["client_errors"] = dict(errs)
        r["client_error_samples"] = samples
        bad = {k: v for k, v in errs.items() if k not in ALLOWED_SQLSTATES}
        check(f"every client error is one of {sorted(ALLOWED_SQLSTATES)}", not bad,
              ", ".join(f"{k} x{v}: {samples.get(k)}" for k, v in bad.items()))
        if pgb is not None:
            r["pgbench"] = {"runs": pgb.runs, "transactions": pgb.txns, "failed": pgb.failed,
                            "aborted_clients": pgb.aborted, "exit_codes": dict(pgb.exit_codes),
                            "errors": dict(pgb.errors), "samples": pgb.samples,
                            "max_run_avg_latency_ms": round(pgb.max_avg_latency_ms, 1),
                            "context": pgb.context}
            pbad = {k: v for k, v in pgb.errors.items() if k not in ALLOWED_SQLSTATES}
            check("every pgbench error is one of the allowed SQLSTATEs", not pbad,
                  ", ".join(f"{k} x{v}: {pgb.samples.get(k)}" for k, v in pbad.items()))
            check("pgbench made progress and never hung", pgb.txns > 0 and not pgb.stuck,
                  f"{pgb.txns} transactions; {pgb.stuck}")
        worst = max(clients, key=lambda c: c.max_op[0]) if clients else None
        max_op = worst.max_op[0] if worst else 0.0
        r["max_client_op_s"] = round(max_op, 3)
        r["max_client_op"] = f"{worst.max_op[1]} by {worst.name}" if worst else ""
        stuck = [s for c in clients for s in c.stuck]
        check(f"no client op longer than the bound ({bound:.0f}s = failover_wait_ms + "
              "query_wait_timeout_ms + freeze_max + 5)",
              max_op <= bound and not stuck and not hung,
              f"max {max_op * 1000:.0f} ms ({r['max_client_op']}); stuck {stuck}; hung {hung}")
        check("clients ran without harness failures",
              not [c.fatal for c in clients if c.fatal],
              str([c.fatal for c in clients if c.fatal]))
        r["client_totals"] = {"ops": sum(c.ops for c in clients),
                              "commits": sum(c.commits for c in clients),
                              "reads": sum(c.reads for c in clients),
                              "disconnects": sum(c.disconnects for c in clients)}
        check("storms: wrong passwords get 28P01, right ones log in (or an allowed error)",
              not chaos.storm_bad, "; ".join(sorted(set(chaos.storm_bad)))[:500])
        check("chaos actions behaved (failover, RELOAD, heal)",
              not chaos.problems and not aborted,
              "; ".join(chaos.problems + ([aborted] if aborted else [])))
        r["actions"] = dict(chaos.counts)
        r["failovers"] = dict(chaos.failovers)
        r["rebuilds"] = chaos.rebuilds
        r["storm"] = dict(chaos.storm)
        r["timeline"] = chaos.notes
        r["harness_problems"] = chaos.harness_problems
        if chaos.harness_problems:
            check("harness problems (not pgswitch)", False, "; ".join(chaos.harness_problems))

        # --- stop pgswitch: a crash shows as a signal exit status, a core or a log line
        rc = sw.stop(timeout=15)
        logtext = sw.log()
        needles = ["assert", "addresssanitizer", "leaksanitizer", "runtime error:",
                   "segmentation fault", "terminate called", "core dumped"]
        hits = [ln for ln in logtext.splitlines() if any(n in ln.lower() for n in needles)]
        cores = [str(p) for p in sw.dir.glob("core*")] + [str(p) for p in work.glob("core*")]
        check("0 crashes (clean exit on SIGTERM, no core, no assert/sanitizer in the log)",
              rc == 0 and not hits and not cores, f"exit {rc}; cores {cores}; {hits[:3]}")
        levels = re.compile(r"^\S+ \S+ (warning|error|critical) \[\d+\] (.*)")
        r["log_warnings"] = Counter(
            re.sub(r"\d+", "N", m.group(1) + " " + m.group(2))[:110]
            for m in map(levels.match, logtext.splitlines()) if m).most_common(15)
        if o.keep_log:
            shutil.copy(sw.log_path, o.keep_log)
        return r
    finally:
        stop_load.set()
        stop_wd.set()
        if pgb is not None:
            pgb.halt()
            pgb.join(20)
            if pgb.proc is not None and pgb.proc.poll() is None:
                pgb.proc.kill()
        if sw is not None:
            if o.keep_log and sw.log_path.exists():
                try:
                    shutil.copy(sw.log_path, o.keep_log)
                except OSError:
                    pass
            try:
                sw.stop(timeout=15)
            except AssertionError as e:
                log(f"pgswitch stop: {first_line(e)}")
                r.setdefault("checks", []).append(
                    {"check": "pgswitch exits on SIGTERM", "ok": False, "detail": "SIGKILLed"})
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


def print_report(r: dict, out=sys.stdout) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"chaos loop: seed={r['seed']} duration={r['duration_s']}s (chaos ran "
      f"{r.get('chaos_s')}s) clients={r['clients']} pgbench_clients={r['pgbench_clients']} "
      f"replication={'sync' if r['sync'] else 'async'}"
      + (f" low_fd={r['low_fd']}" if r.get("low_fd") else ""))
    if "failure" in r:
        p(f"  run failed: {r['failure']}")
    if r.get("actions"):
        p("  actions      : " + ", ".join(f"{k} x{v}" for k, v in sorted(r["actions"].items())))
        p(f"  failovers    : {r.get('failovers')}; nodes rebuilt: {r.get('rebuilds')}; "
          f"final primary {r.get('final_primary')}")
    if r.get("client_totals"):
        t = r["client_totals"]
        p(f"  clients      : {t['commits']} commits, {t['reads']} reads, {t['ops']} ops, "
          f"{t['disconnects']} disconnects; max op {r['max_client_op_s'] * 1000:.0f} ms "
          f"({r['max_client_op']}); bound {r['latency_bound_s']:.0f} s")
        p("  client errors: " + (", ".join(f"{k}: {v}" for k, v in
                                           sorted(r["client_errors"].items())) or "none"))
        for k, v in sorted(r["client_error_samples"].items()):
            p(f"      {k}: {v}")
    if r.get("pgbench"):
        g = r["pgbench"]
        p(f"  pgbench      : {g['runs']} runs, {g['transactions']} transactions, "
          f"{g['aborted_clients']} clients aborted, worst run's average latency "
          f"{g['max_run_avg_latency_ms']} ms, "
          f"exit codes {g['exit_codes']}")
        p("  pgbench errs : " + (", ".join(f"{k}: {v}" for k, v in sorted(g["errors"].items()))
                                 or "none"))
        for k, v in sorted(g["samples"].items()):
            p(f"      {k}: {v}")
        if g.get("context"):
            p("      output of the first run with an unexpected error:")
            for line in g["context"].splitlines()[-12:]:
                p(f"        | {line}")
    if r.get("rows"):
        p(f"  rows         : {r['rows']}")
    if r.get("storm"):
        p("  storms       : " + ", ".join(f"{k}: {v}" for k, v in sorted(r["storm"].items())))
    if r.get("fds"):
        p(f"  pgswitch fds : {r['fds']}; servers by state {r.get('servers_by_state')}")
    if r.get("log_warnings"):
        p("  pgswitch log warnings/errors (most frequent):")
        for line, n in r["log_warnings"]:
            p(f"      {n:6d}  {line}")
    p("")
    p(f"  {'check':<88} result")
    p(f"  {'-' * 88} ------")
    for c in r.get("checks", []):
        p(f"  {c['check'][:88]:<88} {'PASS' if c['ok'] else 'FAIL'}")
        if not c["ok"] and c["detail"]:
            p(f"      {c['detail'][:600]}")
    p(f"  verdict: {'PASS' if passed(r) else 'FAIL'} (seed {r['seed']})")


def passed(r: dict) -> bool:
    return "failure" not in r and bool(r.get("checks")) and all(c["ok"] for c in r["checks"])


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=300, help="seconds of chaos")
    ap.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    ap.add_argument("--clients", type=int, default=8, help="persistent Python clients")
    ap.add_argument("--think-ms", type=int, default=20, help="client pause between loops")
    ap.add_argument("--pgbench-clients", type=int, default=2, help="0: no pgbench")
    ap.add_argument("--pgbench-rate", type=int, default=50, help="pgbench -R (0: unthrottled)")
    ap.add_argument("--pgswitch", default=os.environ.get("PGSWITCH_BIN") or pgcluster.PGSWITCH_BIN,
                    help="pgswitch binary (default $PGSWITCH_BIN or build/pgswitch)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pool-size", type=int, default=8)
    ap.add_argument("--failover-wait-ms", type=int, default=10000)
    ap.add_argument("--query-wait-timeout-ms", type=int, default=10000)
    ap.add_argument("--freeze-max", type=float, default=4.0, help="longest SIGSTOP, seconds")
    ap.add_argument("--fd-storm", type=int, default=400, help="connections per descriptor storm")
    ap.add_argument("--login-storm", type=int, default=100, help="logins per login storm")
    ap.add_argument("--low-fd", type=int, default=0,
                    help="run pgswitch with ulimit -n N (known livelock when low)")
    ap.add_argument("--async", dest="async_repl", action="store_true",
                    help="asynchronous replication (lost acknowledged rows are only reported)")
    ap.add_argument("--overlap", type=float, default=0.5,
                    help="probability that a storm runs in the background, overlapping the "
                         "next actions (default 0.5)")
    ap.add_argument("--skip", action="append", default=[], choices=ACTIONS,
                    help="leave out an action kind (repeatable)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after the load stops")
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--keep-log", help="copy pgswitch's log to this file")
    ap.add_argument("--json", help="also write the result as JSON to this file")
    return ap


def main(argv=None) -> int:
    o = parser().parse_args(argv)
    if o.seed is None:
        o.seed = random.SystemRandom().randrange(1, 2**31)
    log(f"seed {o.seed} (rerun with --seed {o.seed})")
    budget = int(120 + o.duration + 240)

    def on_alarm(signum, frame):
        raise TimeoutError(f"chaos run exceeded its {budget}s budget")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(budget)
    try:
        r = run_chaos(o)
    except Exception as e:  # noqa: BLE001 - report after teardown (run_chaos's finally)
        r = {"seed": o.seed, "duration_s": o.duration, "clients": o.clients,
             "pgbench_clients": o.pgbench_clients, "sync": not o.async_repl,
             "failure": f"{type(e).__name__}: {e}", "checks": []}
    finally:
        signal.alarm(0)
    print_report(r)
    if o.json:
        Path(o.json).write_text(json.dumps(r, indent=1, default=str))
    return 0 if passed(r) else 1


if __name__ == "__main__":
    sys.exit(main())
