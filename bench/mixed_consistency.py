#!/usr/bin/python3
"""Mixed load per consistency mode (issue 12, item 8): TPS, replica share of reads, stale reads.

Starts its own primary + 2 streaming replicas (tests/integration/pgcluster.py) and, for each
scenario (`nolag`: replicas as fast as they go; `lag`: recovery_min_apply_delay on both
replicas) and each consistency mode (`eventual`, `read_your_writes`, `strong`), a pgswitch in
transaction mode with `[routing] consistency = MODE` in front of it. A mode the binary refuses
at start-up is reported as skipped. Then N clients (default 32, spread over a few load
processes running asyncpg) run for --duration seconds (or until each has done --max-ops
operations):

  each client owns one row of `mc_counter` and two connections through pgswitch, W and R;
  of every --write-every operations (default 10) one is a write transaction on W
  (BEGIN; UPDATE mc_counter SET n = n + 1 ... RETURNING n; COMMIT), and the others are reads
  on R (SELECT n FROM mc_counter WHERE id = $1), the first of them right after the commit
  returned. A read that returns less than the value the client last committed is STALE
  (the write was acknowledged before the read started).

Reports per run: operations per second (TPS: reads + write transactions), reads/s, writes/s,
the share of reads that pgswitch routed to replicas (SHOW BACKENDS `reads` counters on the
admin console, before and after the run), stale reads (all reads, and those right after a
commit), read and write latency p50/p99, errors by SQLSTATE. Prints a markdown table; --json
prints everything as one JSON document on stdout (text on stderr).

Bounded: an alarm at setup + runs x (duration + 30 s) + teardown; each load process is killed
if it overruns; everything started is torn down by pid.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

MODES = ("eventual", "read_your_writes", "strong")
SCENARIOS = ("nolag", "lag")


def log(msg: str) -> None:
    print(f"[mixed {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# load process (python3 mixed_consistency.py --load-worker JSON): asyncio + asyncpg

def _pct(sorted_ms: list[float], p: float) -> float | None:
    if not sorted_ms:
        return None
    return round(sorted_ms[min(len(sorted_ms) - 1, int(p * len(sorted_ms)))], 3)


async def _client(cid: int, spec: dict, out: dict) -> None:
    import asyncpg
    kw = dict(host=spec["host"], port=spec["port"], user="app", password="app",
              database="appdb", timeout=20, command_timeout=30)
    w = await asyncpg.connect(**kw)
    r = await asyncpg.connect(**kw)
    committed = int(await w.fetchval("SELECT n FROM mc_counter WHERE id = $1", cid))
    await asyncio.sleep(max(0.0, spec["start_at"] - time.time()))
    deadline = spec["start_at"] + spec["duration"]
    every = spec["write_every"]
    op = 0
    just_committed = False
    try:
        while op < spec["max_ops"] and time.time() < deadline:
            t0 = time.perf_counter()
            try:
                if op % every == 0:
                    async with w.transaction():
                        committed = int(await w.fetchval(
                            "UPDATE mc_counter SET n = n + 1 WHERE id = $1 RETURNING n", cid))
                    out["write_ms"].append((time.perf_counter() - t0) * 1000)
                    out["writes"] += 1
                    just_committed = True
                else:
                    n = int(await r.fetchval("SELECT n FROM mc_counter WHERE id = $1", cid))
                    out["read_ms"].append((time.perf_counter() - t0) * 1000)
                    out["reads"] += 1
                    if n < committed:
                        out["stale"] += 1
                        out["stale_after_commit"] += just_committed
                        if len(out["stale_examples"]) < 5:
                            out["stale_examples"].append(
                                {"client": cid, "read": n, "committed": committed,
                                 "right_after_commit": just_committed})
                    just_committed = False
            except asyncpg.PostgresError as e:
                out["errors"][e.sqlstate or "?"] += 1
                if len(out["error_examples"]) < 5:
                    out["error_examples"].append(f"{e.sqlstate}: {e}")
                just_committed = False
            op += 1
    finally:
        await asyncio.gather(w.close(), r.close(), return_exceptions=True)


async def _load(spec: dict) -> dict:
    out = {"reads": 0, "writes": 0, "stale": 0, "stale_after_commit": 0, "stale_examples": [],
           "errors": Counter(), "error_examples": [], "read_ms": [], "write_ms": []}
    tasks = [asyncio.create_task(_client(cid, spec, out)) for cid in spec["clients"]]
    done = await asyncio.gather(*tasks, return_exceptions=True)
    for d in done:
        if isinstance(d, BaseException):
            out["errors"][type(d).__name__] += 1
            if len(out["error_examples"]) < 5:
                out["error_examples"].append(f"{type(d).__name__}: {d}")
    out["errors"] = dict(out["errors"])
    return out


def load_worker(spec_json: str) -> int:
    spec = json.loads(spec_json)
    out = asyncio.run(_load(spec))
    print(json.dumps(out))
    return 0


# ----------------------------------------------------------------------------------------------
# orchestration

def console_rows(sw, command: str) -> list[list[str]]:
    """A SHOW command on pgswitch's admin console, as rows of text fields."""
    from pgcluster import PG_BIN, HOST, run
    cp = run([PG_BIN / "psql", "-X", "-A", "-t", "-F", "|", "-h", HOST, "-p", sw.port, "-U",
              "admin", "-d", "pgswitch", "-c", command], env={"PGPASSWORD": "admin"},
             timeout=20, check=False)
    return [line.split("|") for line in cp.stdout.splitlines()]


def backend_counters(sw) -> dict[str, dict]:
    return {f[0]: {"role": f[3], "reads": int(f[11]), "writes": int(f[12])}
            for f in console_rows(sw, "SHOW BACKENDS") if len(f) >= 13 and f[11].isdigit()}


def totals(sw) -> dict[str, int]:
    return {f[0]: int(f[1]) for f in console_rows(sw, "SHOW TOTALS")
            if len(f) >= 2 and f[1].strip().isdigit()}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def run_mode(cluster, scenario: str, mode: str, args) -> dict:
    from pgcluster import HOST, PgSwitch
    res = {"scenario": scenario, "mode": mode}
    routing = f'consistency = "{mode}"\n' + "".join(x + "\n" for x in args.routing_toml)
    extra = f"[pool]\npool_size = {args.pool_size}\n\n[routing]\n{routing}"
    try:
        sw = PgSwitch(cluster, pool_mode="transaction", workers=args.workers, extra_toml=extra,
                      health_period_ms=args.period_ms, binary=args.pgswitch)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = [ln.split(".toml:", 1)[1] for ln in lines if ".toml:" in ln] or lines[-2:]
        res["skipped"] = "pgswitch refused to start: " + " | ".join(why)[-300:]
        log(f"{scenario}/{mode}: skipped ({res['skipped']})")
        return res
    try:
        n = args.clients
        procs = max(1, min(args.procs, n))
        start_at = time.time() + 3.0  # connect first; also lets read_your_writes' login floors pass
        before = None
        children = []
        for p in range(procs):
            spec = {"host": HOST, "port": sw.port, "clients": list(range(p, n, procs)),
                    "duration": args.duration, "max_ops": args.max_ops, "start_at": start_at,
                    "write_every": args.write_every}
            children.append(subprocess.Popen(
                [sys.executable, __file__, "--load-worker", json.dumps(spec)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        time.sleep(max(0.0, start_at - time.time() - 0.2))
        before = backend_counters(sw)
        totals0 = totals(sw)
        cpu0 = cpu_seconds(sw.pid)
        t0 = time.monotonic()
        parts = []
        for c in children:
            try:
                so, se = c.communicate(timeout=args.duration + 30)
            except subprocess.TimeoutExpired:
                c.kill()
                so, se = c.communicate()
                res.setdefault("problems", []).append("a load process overran and was killed")
            try:
                parts.append(json.loads(so.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                res.setdefault("problems", []).append(f"load process failed: {se[-800:]}")
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(sw.pid) - cpu0
        after = backend_counters(sw)
        totals1 = totals(sw)
    finally:
        sw.stop()
    reads = sum(p["reads"] for p in parts)
    writes = sum(p["writes"] for p in parts)
    read_ms = sorted(x for p in parts for x in p["read_ms"])
    write_ms = sorted(x for p in parts for x in p["write_ms"])
    errors = Counter()
    for p in parts:
        errors.update(p["errors"])
    routed = {k: {"reads": v["reads"] - before.get(k, {}).get("reads", 0),
                  "writes": v["writes"] - before.get(k, {}).get("writes", 0), "role": v["role"]}
              for k, v in after.items()}
    routed_reads = sum(v["reads"] for v in routed.values())
    replica_reads = sum(v["reads"] for v in routed.values() if v["role"] == "replica")
    res.update({
        "clients": n, "elapsed_s": round(elapsed, 2), "reads": reads, "writes": writes,
        "tps": round((reads + writes) / elapsed, 1) if elapsed else 0,
        "reads_per_s": round(reads / elapsed, 1) if elapsed else 0,
        "writes_per_s": round(writes / elapsed, 1) if elapsed else 0,
        "routed": routed,
        "replica_read_share": round(replica_reads / routed_reads, 3) if routed_reads else None,
        "stale": sum(p["stale"] for p in parts),
        "stale_after_commit": sum(p["stale_after_commit"] for p in parts),
        "stale_examples": [e for p in parts for e in p["stale_examples"]][:5],
        "read_ms_p50": _pct(read_ms, 0.5), "read_ms_p99": _pct(read_ms, 0.99),
        "write_ms_p50": _pct(write_ms, 0.5), "write_ms_p99": _pct(write_ms, 0.99),
        "proxy_cpu_us_per_op": round(cpu * 1e6 / (reads + writes), 1) if reads + writes else None,
        "replica_waits": totals1.get("replica_waits", 0) - totals0.get("replica_waits", 0),
        "replica_wait_fallbacks": totals1.get("replica_wait_fallbacks", 0)
        - totals0.get("replica_wait_fallbacks", 0),
        "replica_position_questions": totals1.get("replica_position_questions", 0)
        - totals0.get("replica_position_questions", 0),
        "errors": dict(errors),
        "error_examples": [e for p in parts for e in p["error_examples"]][:5],
    })
    log(f"{scenario}/{mode}: {res['tps']} ops/s, replica share {res['replica_read_share']}, "
        f"stale {res['stale']} of {reads} reads ({res['stale_after_commit']} right after a "
        f"commit), errors {dict(errors) or 0}, replica waits {res['replica_waits']} "
        f"(fallbacks {res['replica_wait_fallbacks']}, questions "
        f"{res['replica_position_questions']})")
    return res


def run_all(args) -> dict:
    from pgcluster import PgCluster
    doc = {"clients": args.clients, "duration_s": args.duration, "write_every": args.write_every,
           "apply_delay": args.apply_delay, "period_ms": args.period_ms,
           "synchronous_commit": args.synchronous_commit,
           "workers": args.workers, "pool_size": args.pool_size,
           "routing_toml": args.routing_toml, "pgswitch": args.pgswitch,
           "loadavg_start": os.getloadavg(), "runs": []}
    # The fixture's synchronous_commit = off would let a commit wait up to wal_writer_delay
    # (200 ms) before its WAL is flushed and streamed: the replicas would always lag.
    cluster = PgCluster(replicas=2,
                        extra_conf={"synchronous_commit": args.synchronous_commit}).start()
    try:
        cluster.psql(0, "CREATE TABLE mc_counter (id int PRIMARY KEY, n bigint NOT NULL); "
                        f"INSERT INTO mc_counter SELECT g, 0 FROM generate_series(0, "
                        f"{args.clients - 1}) g", user="app", db="appdb")
        cluster.wait_replicated()
        for scenario in args.scenarios:
            delay = args.apply_delay if scenario == "lag" else None
            for i in (1, 2):
                cluster.set_conf(i, "recovery_min_apply_delay", delay)
            cluster.wait_replicated(timeout=30)
            log(f"scenario {scenario}: recovery_min_apply_delay = {delay or 0}")
            # Rounds alternate the modes so that a noisy phase of a shared machine hits each
            # about equally; the summary adds them up.
            for rnd in range(1, args.rounds + 1):
                for mode in args.modes:
                    r = run_mode(cluster, scenario, mode, args)
                    r["round"] = rnd
                    doc["runs"].append(r)
    finally:
        cluster.stop()
    doc["loadavg_end"] = os.getloadavg()
    return doc


def table(doc: dict) -> str:
    head = ("| scenario | consistency | ops/s | reads/s | writes/s | reads on replicas | "
            "stale reads (right after commit) / reads | read p50 / p99 ms | "
            "write txn p50 / p99 ms | pgswitch CPU µs/op | errors |")
    lines = [head, "|" + "---|" * 11]
    for r in doc["runs"]:
        if "skipped" in r:
            lines.append(f"| {r['scenario']} | {r['mode']} | skipped: {r['skipped'][:120]} "
                         "| | | | | | | | |")
            continue
        share = ("–" if r["replica_read_share"] is None
                 else f"{100 * r['replica_read_share']:.1f} %")
        errs = ", ".join(f"{k} × {v}" for k, v in r["errors"].items()) or "0"
        lines.append(
            f"| {r['scenario']} | {r['mode']} | {r['tps']:.0f} | {r['reads_per_s']:.0f} | "
            f"{r['writes_per_s']:.0f} | {share} | {r['stale']} ({r['stale_after_commit']}) / "
            f"{r['reads']} | {r['read_ms_p50']} / {r['read_ms_p99']} | {r['write_ms_p50']} / "
            f"{r['write_ms_p99']} | {r['proxy_cpu_us_per_op']} | {errs} |")
    if any(r.get("round", 1) > 1 for r in doc["runs"]):
        lines += ["", "| scenario | consistency | rounds | ops/s (all rounds) | × eventual | "
                  "reads on replicas | stale reads | pgswitch CPU µs/op (mean) |", "|" + "---|" * 8]
        for key, agg in summary(doc).items():
            ratio = "–" if agg["ratio"] is None else f"{agg['ratio']:.2f}"
            lines.append(f"| {key[0]} | {key[1]} | {agg['rounds']} | {agg['tps']:.0f} | {ratio} | "
                         f"{agg['share']} | {agg['stale']} | {agg['cpu']} |")
    return "\n".join(lines)


def summary(doc: dict) -> dict:
    """Per (scenario, mode): operations over time summed across rounds, and × eventual."""
    out: dict = {}
    for r in doc["runs"]:
        if "skipped" in r:
            continue
        a = out.setdefault((r["scenario"], r["mode"]), {"rounds": 0, "ops": 0, "s": 0.0,
                                                         "stale": 0, "cpu": [], "shares": []})
        a["rounds"] += 1
        a["ops"] += r["reads"] + r["writes"]
        a["s"] += r["elapsed_s"]
        a["stale"] += r["stale"]
        if r["proxy_cpu_us_per_op"] is not None:
            a["cpu"].append(r["proxy_cpu_us_per_op"])
        if r["replica_read_share"] is not None:
            a["shares"].append(r["replica_read_share"])
    for (scenario, mode), a in out.items():
        a["tps"] = a["ops"] / a["s"] if a["s"] else 0
        ev = out.get((scenario, "eventual"))
        a["ratio"] = a["tps"] / (ev["ops"] / ev["s"]) if ev and ev["s"] and ev["ops"] else None
        a["cpu"] = round(sum(a["cpu"]) / len(a["cpu"]), 1) if a["cpu"] else None
        a["share"] = (f"{100 * min(a['shares']):.1f}–{100 * max(a['shares']):.1f} %"
                      if a["shares"] else "–")
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--load-worker"]:
        return load_worker(argv[1])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default=",".join(MODES),
                    help="comma-separated consistency modes (default: all three)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help="nolag, lag or both (default both)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--procs", type=int, default=4, help="load processes (asyncio each)")
    ap.add_argument("--duration", type=float, default=20, help="seconds per run (max 60)")
    ap.add_argument("--max-ops", type=int, default=1_000_000, help="per client and run")
    ap.add_argument("--write-every", type=int, default=10,
                    help="one write transaction per N operations (default 10: 1 write, 9 reads)")
    ap.add_argument("--apply-delay", default="300ms",
                    help="recovery_min_apply_delay of both replicas in the lag scenario")
    ap.add_argument("--synchronous-commit", default="local",
                    help="the servers' synchronous_commit (default local; replication is "
                         "asynchronous either way)")
    ap.add_argument("--period-ms", type=int, default=500, help="[health] period_ms")
    ap.add_argument("--workers", type=int, default=2, help="pgswitch worker threads")
    ap.add_argument("--pool-size", type=int, default=20, help="[pool] pool_size")
    ap.add_argument("--routing-toml", action="append", default=[],
                    help="an extra line for [routing], e.g. 'max_wait_ms = 50' (repeatable)")
    ap.add_argument("--pgswitch", default=os.environ.get("PGSWITCH_BIN")
                    or str(REPO / "build" / "pgswitch"))
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the modes this many times, alternating (default 1)")
    ap.add_argument("--json", action="store_true", help="JSON on stdout (text on stderr)")
    ap.add_argument("--out", help="also write the markdown table to this file")
    args = ap.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    if any(s not in SCENARIOS for s in args.scenarios):
        ap.error(f"scenarios are {SCENARIOS}")
    if not 1 <= args.rounds <= 10:
        ap.error("--rounds must be in [1, 10]")
    if not 0 < args.duration <= 60:
        ap.error("--duration must be in (0, 60]")
    if args.write_every < 2:
        ap.error("--write-every must be at least 2")

    runs = len(args.modes) * len(args.scenarios) * args.rounds
    budget = int(90 + runs * (args.duration + 45) + 60)

    def on_alarm(signum, frame):
        raise TimeoutError(f"benchmark exceeded its {budget}s budget")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(budget)
    try:
        doc = run_all(args)
    finally:
        signal.alarm(0)
    text = table(doc)
    out = sys.stderr if args.json else sys.stdout
    print(text, file=out)
    print(f"load average at start {doc['loadavg_start'][0]:.2f}, at end "
          f"{doc['loadavg_end'][0]:.2f}", file=out)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.json:
        print(json.dumps(doc, indent=1))
    bad = [r for r in doc["runs"] if r.get("problems")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
