#!/usr/bin/python3
"""Memory per idle client: pgswitch against PgBouncer, side by side (issue 14).

Starts a PostgreSQL 15 primary (the test fixture), then for each proxy in turn: the proxy in
transaction mode, --clients SCRAM logins held open (each ran one query, then nothing; each
sent an application_name and client_encoding, as drivers do), and the proxy's RSS before and
after (after --settle seconds). Prints a Markdown table: RSS growth per
idle client, in bytes.

    /usr/bin/python3 bench/idle_clients.py --clients 10000
"""
from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from pathlib import Path

import psycopg2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))
from pgcluster import PgCluster, PgSwitch  # noqa: E402
from pooler_bench import DB, PASSWORD, USER, PgBouncer  # noqa: E402


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# What an application's driver sends at startup besides user and database (pgjdbc, for one,
# sends both; --bare-startup sends neither). Both proxies track these two natively.
DRIVER_STARTUP = {"application_name": "idle-bench", "client_encoding": "UTF8"}


def open_idle(port: int, n: int, threads: int = 4, startup: dict | None = None) -> list:
    """n connections that each ran one query; fails loudly if any login fails."""
    conns: list = []
    errors: list = []
    lock = threading.Lock()

    def work(count: int) -> None:
        mine = []
        try:
            for _ in range(count):
                c = psycopg2.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD,
                                     dbname=DB, connect_timeout=20, **(startup or {}))
                c.autocommit = True
                with c.cursor() as cur:
                    cur.execute("SELECT 1")
                mine.append(c)
        except Exception as e:  # reported below
            errors.append(e)
        with lock:
            conns.extend(mine)

    per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    ts = [threading.Thread(target=work, args=(k,)) for k in per]
    for t in ts:
        t.start()
    for t in ts:
        t.join(600)
    if errors:
        for c in conns:
            c.close()
        raise RuntimeError(f"{len(errors)} logins failed, first: {errors[0]}")
    return conns


def measure(name: str, pid: int, port: int, clients: int, settle: float,
            startup: dict) -> dict:
    # The proxy's own start-up allocations happen first.
    warm = open_idle(port, 20, threads=2, startup=startup)
    time.sleep(settle)
    before = rss_kib(pid)
    t0 = time.monotonic()
    conns = open_idle(port, clients, startup=startup)
    took = time.monotonic() - t0
    time.sleep(settle)
    after = rss_kib(pid)
    for c in conns + warm:
        c.close()
    per = (after - before) * 1024 / clients
    print(f"{name}: {clients} idle clients, RSS {before} -> {after} KiB, {per:.0f} bytes each, "
          f"logins {clients / took:.0f}/s", file=sys.stderr)
    return {"name": name, "before": before, "after": after, "per": per,
            "logins": clients / took}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=10000)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=2, help="pgswitch workers")
    ap.add_argument("--no-pgbouncer", action="store_true")
    ap.add_argument("--bare-startup", action="store_true",
                    help="no application_name or client_encoding in the startup packet")
    args = ap.parse_args(argv)
    startup = {} if args.bare_startup else DRIVER_STARTUP

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    need = args.clients + 200
    if hard < need:
        print(f"RLIMIT_NOFILE hard limit {hard} < {need}: lower --clients", file=sys.stderr)
        return 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    rows = []
    with PgCluster(replicas=0) as cluster:
        cluster.start()
        sw = PgSwitch(cluster, pool_mode="transaction", workers=args.workers,
                      server_toml=f"max_client_conn = {args.clients + 100}\n"
                                  f"max_login_clients = {args.clients + 100}",
                      users=[{"name": USER, "password": PASSWORD}])
        try:
            rows.append(measure("pgswitch", sw.pid, sw.port, args.clients, args.settle, startup))
        finally:
            sw.stop()
        if not args.no_pgbouncer:
            bouncer = PgBouncer(cluster, session_pool_size=20)
            text = bouncer.config_path.read_text().replace(
                "max_client_conn = 2000", f"max_client_conn = {args.clients + 100}")
            bouncer.config_path.write_text(text)
            bouncer.start()
            try:
                rows.append(measure("PgBouncer", bouncer.pid, bouncer.port, args.clients,
                                    args.settle, startup))
            finally:
                bouncer.stop()

    print(f"| proxy | idle clients | RSS before (KiB) | RSS after (KiB) | bytes per idle client "
          f"| logins/s (4 client threads) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {args.clients} | {r['before']} | {r['after']} | "
              f"{r['per']:.0f} | {r['logins']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
