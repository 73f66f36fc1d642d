#!/usr/bin/python3
"""Structured fuzzing of the built pgswitch over the wire, against real PostgreSQL 15.

The libFuzzer targets beside this file check pure code on bytes; they cannot tell whether
pgswitch's idea of a conversation agrees with what PostgreSQL does. This does: clients log in
through pgswitch (transaction and session mode, a primary and a replica behind it) and send
grammar-aware batches of mostly valid, sometimes truncated or random messages (simple and
extended protocol, COPY, SET, PREPARE, LISTEN, savepoints, errors, split writes, vanishing
clients). A problem is:
  - no answer within 30 s where PostgreSQL would have answered (a hang);
  - pgswitch's own "protocol error between pgswitch and the server" (its bookkeeping of what
    the server owes disagreed with the server);
  - pgswitch exiting;
  - a control client seeing another client's settings or an open transaction.
Each problem is printed with the seed and the batches of that session (replay them with a raw
client to reduce); the exit status is 1 when there is one.

Bounded: --sessions per client and --seconds in all. Not part of scripts/test.sh (its run time
is spent on the suites); see fuzz/README.md.
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import struct
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from pgcluster import PgCluster, PgSwitch  # noqa: E402
from pgwire import PgWire, msg, parse_error_fields, query_msg  # noqa: E402

import psycopg2  # noqa: E402

# No advisory locks: two clients waiting on each other's lock is PostgreSQL's behaviour too.
SQLS = [
    "SELECT 1", "SELECT $1::int", "SELECT $1::text, $2::int", "BEGIN", "COMMIT", "ROLLBACK",
    "SET statement_timeout = 1234", "SET LOCAL work_mem = '8MB'", "RESET ALL", "DISCARD ALL",
    "SET search_path = fuzz", "SELECT pg_sleep(0.01)", "SELECT 1/0", "INSERT INTO fz VALUES ($1)",
    "INSERT INTO fz VALUES (1) RETURNING *", "SELECT * FROM fz LIMIT 3", "SAVEPOINT a",
    "ROLLBACK TO SAVEPOINT a", "RELEASE a", "PREPARE p1 AS SELECT 2", "EXECUTE p1",
    "DEALLOCATE p1", "DEALLOCATE ALL", "LISTEN ch", "UNLISTEN *", "NOTIFY ch, 'x'",
    "COPY fz FROM STDIN", "COPY fz TO STDOUT", "COPY (SELECT 1) TO STDOUT",
    "CREATE TEMP TABLE IF NOT EXISTS t1 (a int)", "SELECT txid_current()",
    "SELECT 1; SELECT 2", "BEGIN; SELECT 1", "SELECT 1; COMMIT", "SHOW statement_timeout",
    "SELECT set_config('application_name', 'fz', false)",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1", "FETCH c", "CLOSE c", "BEGIN READ ONLY",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "SELECT pg_advisory_unlock_all()",
    "", ";", "SELEC garbage", "SET client_encoding = 'LATIN1'", "SET client_encoding = 'UTF8'",
    "SET DateStyle = 'German'", "SET TimeZone = 'Asia/Tokyo'", "SELECT repeat('x', 100000)",
    "SELECT generate_series(1, 2000)",
]

# What a fresh session sees; a control client checks it never sees anything else.
CONTROL_SQL = ("SELECT current_setting('statement_timeout'), current_setting('search_path'), "
               "current_setting('DateStyle'), current_setting('TimeZone'), "
               "current_setting('client_encoding'), current_setting('work_mem'), "
               "current_setting('default_transaction_read_only'), "
               "txid_current_if_assigned() IS NULL")

SYNC = msg(b"S")


class Batches:
    """Random frontend messages: names and SQL from small sets, so that they meet."""

    def __init__(self, rng: random.Random):
        self.r = rng
        self.names = [b"", b"s1", b"s2", b"pgsw_x", b"S_1"]
        self.portals = [b"", b"p1", b"c1"]

    def parse(self) -> bytes:
        r = self.r
        nparams = r.choice([0, 0, 1, 2, 3])
        oids = b"".join(struct.pack("!I", r.choice([0, 23, 25, 17, 99999]))
                        for _ in range(nparams))
        return msg(b"P", r.choice(self.names) + b"\0" + r.choice(SQLS).encode() + b"\0" +
                   struct.pack("!H", nparams) + oids)

    def bind(self) -> bytes:
        r = self.r
        nfmt = r.choice([0, 1, 2])
        fmts = b"".join(struct.pack("!H", r.choice([0, 1, 2])) for _ in range(nfmt))
        nparams = r.choice([0, 1, 2])
        vals = b""
        for _ in range(nparams):
            v = r.choice([None, b"1", b"abc", b"\0\0\0\5", r.randbytes(r.randrange(0, 10))])
            vals += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
        nres = r.choice([0, 1])
        res = b"".join(struct.pack("!H", r.choice([0, 1])) for _ in range(nres))
        return msg(b"B", r.choice(self.portals) + b"\0" + r.choice(self.names) + b"\0" +
                   struct.pack("!H", nfmt) + fmts + struct.pack("!H", nparams) + vals +
                   struct.pack("!H", nres) + res)

    def one(self) -> bytes:
        r = self.r
        k = r.randrange(100)
        if k < 15:
            return query_msg(r.choice(SQLS))
        if k < 30:
            return self.parse()
        if k < 42:
            return self.bind()
        if k < 50:
            return msg(b"D", r.choice([b"S", b"P"]) + r.choice(self.names + self.portals) + b"\0")
        if k < 60:
            return msg(b"E", r.choice(self.portals) + b"\0" +
                       struct.pack("!I", r.choice([0, 0, 1, 5])))
        if k < 66:
            return msg(b"C", r.choice([b"S", b"P"]) + r.choice(self.names + self.portals) + b"\0")
        if k < 80:
            return SYNC
        if k < 84:
            return msg(b"H")
        if k < 88:
            return msg(b"d", b"1\n" * r.randrange(0, 4))
        if k < 91:
            return msg(b"c")
        if k < 93:
            return msg(b"f", b"nope\0")
        if k < 95:
            return msg(b"F", struct.pack("!IHHH", r.choice([1598, 4242]), 0, 0, 0))
        # Mutations: a message cut short (its length says so), or random type and bytes.
        m = self.one() if k < 99 else msg(bytes([r.randrange(256)]),
                                          r.randbytes(r.randrange(0, 30)))
        if len(m) > 5 and r.random() < 0.5:
            cut = r.randrange(5, len(m))
            m = m[:1] + struct.pack("!I", cut - 1) + m[5:cut]
        return m


class Run:
    def __init__(self, seconds: float):
        self.until = time.monotonic() + seconds
        self.problems: list[str] = []
        self.sessions = self.batches = self.closed = 0
        self.lock = threading.Lock()

    def over(self) -> bool:
        return time.monotonic() >= self.until

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)


def drain(w: PgWire, want_ready: int) -> tuple[bool, str]:
    """Reads answers: until want_ready ReadyForQuery messages (30 s at most), or, with 0, until
    0.3 s of silence. (False, why) on a hang or pgswitch's own protocol error."""
    deadline = time.monotonic() + 30
    got, types = 0, []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, f"no ReadyForQuery within 30 s after {types[-20:]}"
        w.sock.settimeout(min(left, 2.0 if want_ready else 0.3))
        try:
            t, p = w.read_msg()
        except socket.timeout:
            if want_ready == 0:
                return True, "quiet"
            continue
        except (ConnectionError, OSError, ValueError) as e:
            return True, f"closed ({e})"
        types.append(t)
        if t == b"E":
            f = parse_error_fields(p)
            if "between pgswitch" in (f.get("M") or ""):
                return False, f"{f.get('C')} {f.get('M')} after {types[-20:]}"
        if t == b"G":  # CopyInResponse: end the copy
            try:
                w.send(msg(b"c"))
            except OSError as e:
                return True, f"closed ({e})"
        if t == b"Z":
            got += 1
            if got >= want_ready:
                return True, "ready"


def client(run: Run, sw: PgSwitch, seed: int, sessions: int) -> None:
    rng = random.Random(seed)
    gen = Batches(rng)
    for n in range(sessions):
        if run.over():
            return
        try:
            w = PgWire(port=sw.port, timeout=10)
            w.startup("app", "appdb", "app")
        except Exception as e:  # noqa: BLE001 - any failure to log in is reported
            run.problem(f"[{sw.pool_mode}] seed {seed} session {n}: login failed: {e!r}")
            time.sleep(1)
            continue
        run.sessions += 1
        history: list[bytes] = []
        try:
            for _ in range(rng.randrange(1, 8)):
                data = b"".join(gen.one() for _ in range(rng.randrange(1, 10)))
                if rng.random() < 0.7:
                    data += SYNC
                history.append(data)
                run.batches += 1
                try:
                    if rng.random() < 0.2 and len(data) > 3:  # in two writes
                        cut = rng.randrange(1, len(data))
                        w.send(data[:cut])
                        time.sleep(rng.random() * 0.05)
                        w.send(data[cut:])
                    else:
                        w.send(data)
                except OSError:
                    run.closed += 1
                    break
                ok, why = drain(w, 1 if SYNC in data else 0)
                if ok and not why.startswith("closed") and rng.random() < 0.5:
                    # Still usable: a Sync (after a stray CopyDone) must be answered.
                    try:
                        w.send(msg(b"c") + SYNC)
                        ok, why = drain(w, 1)
                    except OSError as e:
                        why = f"closed ({e})"
                if not ok:
                    run.problem(f"[{sw.pool_mode}] seed {seed} session {n}: {why}\n"
                                f"  batches: {history!r}")
                    return
                if why.startswith("closed"):
                    run.closed += 1
                    break
        finally:
            if rng.random() < 0.3:
                w.sock.close()  # vanishes
            else:
                w.close()
        if sw.proc.poll() is not None:
            run.problem(f"[{sw.pool_mode}] pgswitch exited with {sw.proc.returncode} "
                        f"(seed {seed} session {n})")
            return


def control(run: Run, sw: PgSwitch, expected: tuple) -> None:
    while not run.over():
        try:
            with psycopg2.connect(sw.dsn(), connect_timeout=10) as c:
                c.autocommit = True
                cur = c.cursor()
                for _ in range(5):
                    cur.execute(CONTROL_SQL)
                    row = cur.fetchone()
                    if row != expected:
                        run.problem(f"[{sw.pool_mode}] control client saw {row}, "
                                    f"expected {expected}")
                    time.sleep(0.05)
            c.close()
        except Exception as e:  # noqa: BLE001
            run.problem(f"[{sw.pool_mode}] control client failed: {e!r}")
        time.sleep(0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1, help="base seed (client i uses seed*1000+i)")
    ap.add_argument("--clients", type=int, default=4, help="clients per pool mode")
    ap.add_argument("--sessions", type=int, default=200, help="logins per client at most")
    ap.add_argument("--seconds", type=float, default=300, help="time for the whole run")
    ap.add_argument("--modes", default="transaction,session")
    ap.add_argument("--binary", default=os.environ.get("PGSWITCH_BIN",
                                                       str(ROOT / "build" / "pgswitch")))
    args = ap.parse_args()

    run = Run(args.seconds)
    cluster = PgCluster(replicas=1).start()
    switches: list[PgSwitch] = []
    try:
        cluster.psql(0, "CREATE TABLE fz (id int); GRANT ALL ON fz TO app; "
                        "CREATE SCHEMA fuzz; GRANT ALL ON SCHEMA fuzz TO app", db="appdb")
        for mode in args.modes.split(","):
            # Few servers, so that clients take turns on them and leftovers would show.
            switches.append(PgSwitch(cluster, pool_mode=mode, binary=args.binary,
                                     health_period_ms=200,
                                     extra_toml="[pool]\npool_size = 3\n"))
        threads = []
        for k, sw in enumerate(switches):
            with psycopg2.connect(sw.dsn()) as c:
                c.autocommit = True
                cur = c.cursor()
                cur.execute(CONTROL_SQL)
                expected = cur.fetchone()
            c.close()
            threads.append(threading.Thread(target=control, args=(run, sw, expected),
                                            daemon=True))
            for i in range(args.clients):
                threads.append(threading.Thread(
                    target=client, args=(run, sw, args.seed * 1000 + k * 100 + i,
                                         args.sessions), daemon=True))
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, run.until - time.monotonic()) + 60)
        run.until = 0  # stops whatever is left
        print(f"sessions {run.sessions}, batches {run.batches}, closed by pgswitch or the "
              f"server {run.closed}")
        for sw in switches:
            alive = sw.proc.poll() is None
            print(f"{sw.pool_mode}: {'running' if alive else f'EXITED {sw.proc.returncode}'}, "
                  f"log {sw.log_path}")
            if not alive and not any("exited" in p for p in run.problems):
                run.problem(f"[{sw.pool_mode}] pgswitch exited with {sw.proc.returncode}")
        for p in run.problems:
            print("PROBLEM", p)
        print(f"{len(run.problems)} problem(s)")
        return 1 if run.problems else 0
    finally:
        for sw in switches:
            sw.stop()
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
