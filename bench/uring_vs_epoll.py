#!/usr/bin/python3
"""io_uring against epoll on the forwarding path alone (issue 14): CPU per transaction of
bench/forward_loop (a bare one-thread TCP relay) in its epoll mode and its io_uring mode, with
PgBouncer in session mode (also a relay once logged in) as the yardstick.

Starts one PostgreSQL 15 (tests/integration/pgcluster.py), loads `pgbench -i -s 10`, starts
forward_loop --mode epoll, forward_loop --mode uring and PgBouncer (session mode, pool as large
as the most clients) in front of it, then runs pgbench -S (simple and extended protocol, 8 and
64 clients, -j 2) through each, interleaved over --rounds (the first target rotates). For each
run: TPS, the relay's CPU (utime+stime from /proc/PID/stat) ÷ transactions, its context
switches, and the whole machine's busy CPU ÷ transactions. Then, separately (strace slows the
traced process down), one `strace -c -f -p PID` run per scenario and target counts system calls
per transaction. Prints a Markdown table; --out also writes it to a file. Everything it starts
is stopped on exit.

    /usr/bin/python3 bench/uring_vs_epoll.py [-T 8] [--rounds 3] [--out FILE]
        [--targets epoll,uring,pgbouncer[,uring-single,uring-nodefer]] [--strace-seconds 4]

forward_loop is built with `cmake --build build --target forward_loop` (it needs liburing-dev);
$FORWARD_LOOP_BIN overrides the path. uring-single re-arms a single-shot recv after each
completion instead of one multishot recv; uring-nodefer sets up the ring without
IORING_SETUP_DEFER_TASKRUN.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pooler_bench as pb  # noqa: E402  (also puts tests/integration on sys.path)
from pgcluster import HOST, PgCluster, _postmaster_pid, _set_pdeathsig, run  # noqa: E402

FORWARD_LOOP = (os.environ.get("FORWARD_LOOP_BIN")
                or str(pb.REPO / "build" / "bench" / "forward_loop"))
STRACE = "/usr/bin/strace"
# target name -> forward_loop arguments (None: PgBouncer)
TARGET_ARGS = {
    "epoll": ["--mode", "epoll"],
    "uring": ["--mode", "uring"],
    "uring-single": ["--mode", "uring", "--recv", "single"],
    "uring-nodefer": ["--mode", "uring", "--no-defer-taskrun"],
    "pgbouncer": None,
}
SCENARIOS = [
    pb.Scenario("select simple c8", ("-S",), 8, "simple"),
    pb.Scenario("select extended c8", ("-S",), 8, "extended"),
    pb.Scenario("select simple c64", ("-S",), 64, "simple"),
    pb.Scenario("select extended c64", ("-S",), 64, "extended"),
]


class ForwardLoop:
    """bench/forward_loop on a free port, relaying to PostgreSQL."""

    def __init__(self, upstream_port: int, args: list[str], log_dir: Path):
        self.port = pb.free_port()
        self.log_path = log_dir / f"forward_loop-{self.port}.log"
        cmd = [FORWARD_LOOP, "--listen", str(self.port), "--upstream", str(upstream_port), *args]
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         preexec_fn=_set_pdeathsig)
        # Probing opens (and drops) one upstream connection: PostgreSQL logs an "incomplete
        # startup packet", nothing more.
        pb.wait_listening(self.proc, self.port, 10, "forward_loop",
                          lambda: self.log_path.read_text(errors="replace"), self.stop)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def session_mode(bouncer: pb.PgBouncer, pool_size: int) -> None:
    """Turns pooler_bench's PgBouncer (transaction mode, pool 20) into session mode with a pool
    for every client: like for like with a relay that gives each client its own server."""
    text = bouncer.config_path.read_text()
    text = text.replace("pool_mode = transaction", "pool_mode = session")
    text = text.replace(f"default_pool_size = {pb.POOL_SIZE}", f"default_pool_size = {pool_size}")
    assert "pool_mode = session" in text and f"default_pool_size = {pool_size}" in text
    bouncer.config_path.write_text(text)


@dataclass
class Cell(pb.Cell):
    machine_s: list[float] = field(default_factory=list)  # busy CPU of the benchmark's processes
    syscalls: dict[str, int] | None = None                 # strace -c counts of one run
    strace_txns: int = 0

    def machine_us_per_txn(self):
        txns = sum(r.txns for r in self.runs if r.rc == 0 and r.tps is not None)
        return sum(self.machine_s) * 1e6 / txns if self.machine_s and txns else None


def timed_run(port: int, sc: pb.Scenario, seconds: int, pid: int, watch, cell: Cell,
              max_other: float, retries: int, idle_wait: float) -> pb.RunResult:
    """One recorded pgbench run (re-run if other processes were busy, as pooler_bench does)."""
    best = best_busy = None
    for attempt in range(1 + retries):
        pb.wait_quiet(watch, max_other, idle_wait)
        busy0, wall0 = pb._system_busy_s(), time.monotonic()
        r = pb.run_pgbench(port, pb.DB, sc, seconds, pid, watch)
        # The machine's busy time less what processes outside the benchmark used meanwhile.
        busy = (pb._system_busy_s() - busy0
                - r.other_pct / 100 * pb.NCPU * (time.monotonic() - wall0))
        if r.rc != 0 or r.failed or r.tps is None:
            best, best_busy = r, busy
            break
        if best is None or r.other_pct < best.other_pct:
            best, best_busy = r, busy
        if r.other_pct < max_other:
            break
    cell.runs.append(best)
    if best.tps is not None and best.rc == 0:
        cell.machine_s.append(best_busy)
    return best


def strace_counts(port: int, sc: pb.Scenario, seconds: int, pid: int) -> tuple[dict, int]:
    """System calls of the relay during one pgbench run of `seconds` s, and its transactions."""
    with tempfile.NamedTemporaryFile(prefix="strace-", suffix=".txt", delete=False) as f:
        out = Path(f.name)
    st = subprocess.Popen([STRACE, "-c", "-f", "-q", "-o", str(out), "-p", str(pid)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, preexec_fn=_set_pdeathsig)
    try:
        time.sleep(0.5)  # attached before the clients connect
        r = pb.run_pgbench(port, pb.DB, sc, seconds, None)
    finally:
        st.send_signal(signal.SIGINT)  # strace detaches and writes its summary
        try:
            st.wait(15)
        except subprocess.TimeoutExpired:
            st.kill()
            st.wait()
    counts: dict[str, int] = {}
    for line in out.read_text().splitlines():
        tok = line.split()
        # "% time seconds usecs/call calls [errors] syscall"; skip the header, rules and total.
        if len(tok) >= 5 and tok[0][0].isdigit() and tok[-1] != "total":
            counts[tok[-1]] = int(tok[3])
    out.unlink()
    return counts, r.txns


def fmt_calls(counts: dict | None, txns: int) -> str:
    if not counts or not txns:
        return "—"
    per = sorted(((n / txns, name) for name, n in counts.items()), reverse=True)
    top = ", ".join(f"{name} {v:.2f}" for v, name in per[:4] if v >= 0.01)
    return f"{sum(v for v, _ in per):.2f} ({top})"


def make_table(results: dict, targets: list[str], max_other: float) -> str:
    lines = ["| scenario | relay | TPS | CPU µs/txn | vs epoll | vs pgbouncer | "
             "ctx switches/txn | machine CPU µs/txn | syscalls/txn (strace) | failures |",
             "|" + "---|" * 10]
    ratios = {t: [] for t in targets}
    noisy = False
    for name, cells in results.items():
        cpu = {t: cells[t].cpu_us_per_txn() for t in targets}
        for t in targets:
            c = cells[t]
            tps = pb.fmt_num(c.median("tps"))
            if any(r.other_pct >= max_other for r in c.runs):
                tps += " ~"
                noisy = True
            if cpu[t] and cpu.get("epoll"):
                ratios[t].append(cpu[t] / cpu["epoll"])
            lines.append(
                f"| {name} | {t} | {tps} | {pb.fmt_num(cpu[t], 1)} | "
                f"{pb.ratio(cpu[t], cpu.get('epoll'))} | {pb.ratio(cpu[t], cpu.get('pgbouncer'))}"
                f" | {pb.fmt_num(c.ctx_per_txn(), 2)} | {pb.fmt_num(c.machine_us_per_txn(), 1)}"
                f" | {fmt_calls(c.syscalls, c.strace_txns)} | "
                f"{c.failures()}{'!' if c.bad_rc() else ''} |")
    lines.append("")
    geo = [f"{t} {math.exp(statistics.mean(math.log(x) for x in v)):.2f}"
           for t, v in ratios.items() if v and t != "epoll"]
    if geo:
        lines.append("CPU µs/txn relative to epoll, geometric mean over the scenarios: "
                     + ", ".join(geo) + ".")
    if noisy:
        lines.append(f"~ other processes used ≥ {max_other:.0f}% of the CPUs during this run "
                     "(after the retries): treat the number with suspicion.")
    others = [r.other_pct for cells in results.values() for c in cells.values() for r in c.runs]
    if others:
        lines.append(f"CPU used by processes outside the benchmark during the runs: median "
                     f"{statistics.median(others):.0f}%, max {max(others):.0f}% of "
                     f"{pb.NCPU} CPUs.")
    lines.append("CPU µs/txn: the relay process's utime+stime during the runs ÷ transactions "
                 "(all rounds). machine CPU µs/txn: busy time of all CPUs less other processes' "
                 "share (relay, PostgreSQL, pgbench and their kernel work) ÷ transactions. "
                 "TPS: median over rounds, without connection time. syscalls/txn: one "
                 "separate `strace -c -f` run, total and the top four; operations done "
                 "inside io_uring are not system calls and do not appear.")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-T", "--seconds", type=int, default=8, help="pgbench -T per run")
    ap.add_argument("--rounds", type=int, default=3, help="repeat every scenario N times")
    ap.add_argument("--scale", type=int, default=10, help="pgbench -i -s")
    ap.add_argument("--targets", default="epoll,uring,pgbouncer",
                    help="comma-separated, from: " + ", ".join(TARGET_ARGS))
    ap.add_argument("--only", default="", help="only scenarios whose name contains this")
    ap.add_argument("--strace-seconds", type=int, default=4,
                    help="pgbench -T of the strace run per scenario and target (0: none)")
    ap.add_argument("--out", help="also write the table to this file")
    ap.add_argument("--max-other", type=float, default=10.0, metavar="PCT",
                    help="a run during which other processes used more than PCT%% of the CPUs "
                         "is retried, and marked if it stays noisy")
    ap.add_argument("--retries", type=int, default=1, help="re-runs of a noisy run")
    ap.add_argument("--idle-wait", type=float, default=30, metavar="S",
                    help="before each run wait up to S s for the machine to be quiet")
    args = ap.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    if not targets or any(t not in TARGET_ARGS for t in targets):
        ap.error(f"--targets: choose from {', '.join(TARGET_ARGS)}")
    scenarios = [s for s in SCENARIOS if args.only in s.name]
    if not scenarios:
        ap.error(f"no scenario matches {args.only!r}")
    if any(TARGET_ARGS[t] for t in targets) and not os.access(FORWARD_LOOP, os.X_OK):
        sys.exit(f"uring_vs_epoll: {FORWARD_LOOP} not found; build it (needs liburing-dev): "
                 "cmake --build build --target forward_loop, or set FORWARD_LOOP_BIN")
    for p in (pb.PGBENCH, pb.PGBOUNCER if "pgbouncer" in targets else pb.PGBENCH):
        if not os.access(p, os.X_OK):
            sys.exit(f"uring_vs_epoll: {p} missing; run scripts/install-deps.sh --bench")
    pb.raise_nofile()

    results = {s.name: {t: Cell() for t in targets} for s in scenarios}
    problems: list[str] = []
    cluster = PgCluster(replicas=0, extra_conf={"shared_buffers": "256MB",
                                                "max_connections": 200})
    relays: dict[str, ForwardLoop] = {}
    bouncer = None
    table = ""
    try:
        pb.log("starting PostgreSQL 15")
        cluster.start()
        pg_port = cluster.port_of(0)
        pb.log(f"pgbench -i -s {args.scale}")
        run([pb.PGBENCH, "-i", "-q", "-s", str(args.scale), "-h", HOST, "-p", str(pg_port),
             "-U", pb.USER, pb.DB], env=pb.pgbench_env(setup=True), timeout=600)
        cluster.psql(0, "CHECKPOINT")
        for t in targets:
            if TARGET_ARGS[t] is not None:
                relays[t] = ForwardLoop(pg_port, TARGET_ARGS[t], Path(cluster.tmpdir))
        if "pgbouncer" in targets:
            most = max(s.clients for s in scenarios)
            bouncer = pb.PgBouncer(cluster, session_pool_size=most)
            session_mode(bouncer, most + 4)
            bouncer.start()
        pm_pid = _postmaster_pid(cluster.nodes[0].datadir)

        def port_pid(t: str) -> tuple[int, int]:
            return (bouncer.port, bouncer.pid) if t == "pgbouncer" else (relays[t].port,
                                                                          relays[t].pid)

        def watch():
            return [port_pid(t)[1] for t in targets], pm_pid

        pb.log("PgBouncer " + ".".join(map(str, bouncer.version)) if bouncer else "no PgBouncer")
        # Warm-up (not recorded): caches, and PgBouncer's server connections for 64 clients.
        for t in targets:
            port, _ = port_pid(t)
            for sc in (pb.Scenario("warm-up", ("-S",), max(s.clients for s in scenarios),
                                   "simple"),):
                r = pb.run_pgbench(port, pb.DB, sc, 2, None, watch)
                if r.rc != 0:
                    problems.append(f"warm-up via {t} failed:\n{r.stderr_tail}")
                    pb.log(problems[-1])

        try:
            for rnd in range(args.rounds):
                for i, sc in enumerate(scenarios):
                    k = (i + rnd) % len(targets)
                    for t in targets[k:] + targets[:k]:
                        port, pid = port_pid(t)
                        alive = bouncer.running() if t == "pgbouncer" else relays[t].running()
                        if not alive:
                            problems.append(f"{t} is not running before '{sc.name}'")
                            pb.log(problems[-1])
                            results[sc.name][t].runs.append(pb.RunResult(rc=-1))
                            continue
                        r = timed_run(port, sc, args.seconds, pid, watch, results[sc.name][t],
                                      args.max_other, args.retries, args.idle_wait)
                        pb.log(f"round {rnd + 1} {sc.name:20s} {t:13s} "
                               f"tps={pb.fmt_num(r.tps, 1):>9s} cpu={pb.fmt_num(r.cpu_s, 2)}s "
                               f"txns={r.txns} failed={r.failed} rc={r.rc} "
                               f"other={r.other_pct:.0f}%")
                        if r.rc != 0 or r.failed or r.tps is None:
                            problems.append(f"{sc.name} via {t}: rc={r.rc} failed={r.failed}\n"
                                            f"{r.stderr_tail}")
            if args.strace_seconds > 0 and os.access(STRACE, os.X_OK):
                for sc in scenarios:
                    for t in targets:
                        port, pid = port_pid(t)
                        counts, txns = strace_counts(port, sc, args.strace_seconds, pid)
                        cell = results[sc.name][t]
                        cell.syscalls, cell.strace_txns = counts, txns
                        pb.log(f"strace {sc.name:20s} {t:13s} "
                               f"{fmt_calls(counts, txns)} over {txns} txns")
        except KeyboardInterrupt as e:
            # Ctrl-C, or SIGTERM (e.g. from `timeout`): keep what was measured so far.
            problems.append(f"interrupted ({e or 'SIGINT'}): the table has the runs done")
            pb.log(problems[-1])
        table = make_table(results, targets, args.max_other)
    finally:
        if bouncer is not None:
            bouncer.stop()
        for fl in relays.values():
            fl.stop()
        for t, fl in relays.items():
            if fl.proc.returncode not in (0, -signal.SIGTERM):
                problems.append(f"forward_loop {t} exited with {fl.proc.returncode}")
        cluster.stop()

    print(table, end="")
    if args.out:
        Path(args.out).write_text(table)
    for p in problems:
        print(f"\nproblem: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt as e:
        print(f"uring_vs_epoll: interrupted ({e or 'SIGINT'}); everything it started is stopped",
              file=sys.stderr)
        sys.exit(130)
