#!/usr/bin/python3
"""Memory after connection bursts: does pgswitch's RSS go back towards its working set?

Starts a PostgreSQL 15 primary (test fixture) and pgswitch in transaction mode, then runs
--rounds bursts: --clients SCRAM logins held open at once (each runs one query, the first
few also a 1 MB result so buffers are used), then all closed. Prints pgswitch's RSS before,
at the peak of each burst, right after it and --settle seconds later (the janitor gives
memory back on a timer). Use --binary to compare two builds side by side.

    /usr/bin/python3 bench/memory_burst.py --clients 2000 --rounds 3
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
from pathlib import Path

import psycopg2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from pgcluster import PgCluster, PgSwitch  # noqa: E402


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def burst(sw: PgSwitch, clients: int, threads: int = 8) -> list:
    conns: list = []
    lock = threading.Lock()
    per = (clients + threads - 1) // threads

    def opener(k: int) -> None:
        mine = []
        for i in range(per):
            if k * per + i >= clients:
                break
            c = psycopg2.connect(sw.dsn())
            c.autocommit = True
            with c.cursor() as cur:
                if k * per + i < 20:
                    cur.execute("SELECT repeat('x', 1024 * 1024)")
                else:
                    cur.execute("SELECT 1")
                cur.fetchall()
            mine.append(c)
        with lock:
            conns.extend(mine)

    ts = [threading.Thread(target=opener, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    return conns


def run(binary: str | None, clients: int, rounds: int, settle: float) -> list[tuple]:
    rows = []
    with PgCluster(replicas=0) as cluster:
        cluster.start()
        with PgSwitch(cluster, pool_mode="transaction", workers=2, binary=binary,
                      server_toml=f"max_client_conn = {clients * 2}") as sw:
            time.sleep(1)
            rows.append(("start", rss_mib(sw.pid)))
            for r in range(rounds):
                conns = burst(sw, clients)
                rows.append((f"burst {r + 1}: {len(conns)} clients open", rss_mib(sw.pid)))
                for c in conns:
                    c.close()
                time.sleep(1)
                rows.append((f"burst {r + 1}: closed +1 s", rss_mib(sw.pid)))
                time.sleep(settle)
                rows.append((f"burst {r + 1}: closed +{1 + settle:.0f} s", rss_mib(sw.pid)))
    return rows


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=float, default=12.0, help="seconds after each burst")
    ap.add_argument("--binary", action="append", default=[],
                    help="pgswitch binary (repeatable; default build/pgswitch)")
    a = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    binaries = a.binary or [os.environ.get("PGSWITCH_BIN") or str(REPO / "build" / "pgswitch")]
    results = {b: run(b, a.clients, a.rounds, a.settle) for b in binaries}
    print(f"\npgswitch RSS (MiB), {a.clients} SCRAM clients per burst, transaction mode, "
          "2 workers\n")
    print("| moment | " + " | ".join(binaries) + " |")
    print("|---|" + "---:|" * len(binaries))
    for i, (label, _) in enumerate(results[binaries[0]]):
        print(f"| {label} | " + " | ".join(f"{results[b][i][1]:.1f}" for b in binaries) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
