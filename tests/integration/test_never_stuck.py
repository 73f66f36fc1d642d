"""Never stuck (issue 17): the failures that used to turn one bad afternoon into an outage only
a restart ended.

- Out of descriptors: with RLIMIT_NOFILE 256 and 400 connections that never log in, pgswitch
  used to spin in accept4 on every core, serve nobody, never close the silent sockets and
  ignore SIGTERM. Now logged-in clients go on being served, the silent sockets are refused or
  closed by the login timeout, everything recovers once they leave, and SIGTERM works.
- A client that stops in the middle of a large message no longer holds a server connection:
  pool_size such clients do not lock the others out, and the stalled ones are closed.
- Logins to databases that do not exist leave no pools behind, and repeat failures are answered
  without a connection to the backend each.
- Paused clients obey query_wait_timeout_ms.
"""
from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import time
import unittest
from contextlib import closing

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import HOST, PgCluster, PgSwitch  # noqa: E402
from pgwire import PgWire, msg  # noqa: E402
from proxycase import ProxyTestCase, budget  # noqa: E402


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def silent_sockets(port: int, n: int, deadline_s: float = 10) -> list[socket.socket]:
    """n TCP connections that never send a byte (connect only; failures skipped)."""
    out = []
    end = time.monotonic() + deadline_s
    for _ in range(n):
        if time.monotonic() > end:
            break
        s = socket.socket()
        s.settimeout(1.0)
        try:
            s.connect((HOST, port))
            out.append(s)
        except OSError:
            s.close()
    return out


def closed_by_peer(s: socket.socket) -> bool:
    """True when the other end closed (EOF, reset, or an error message then EOF)."""
    s.setblocking(False)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


class NeverStuckCase(ProxyTestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster(replicas=0).start()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()

    def start_switch(self, **kw) -> PgSwitch:
        sw = PgSwitch(self.cluster, **kw)
        self.sw = sw  # the watchdog's target
        self.addCleanup(sw.kill)
        return sw

    def totals(self, sw) -> dict[str, int]:
        with closing(psycopg2.connect(sw.dsn(user="admin", db="pgswitch"))) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SHOW TOTALS")
                return {k: int(v) for k, v in cur.fetchall()}

    @budget(90)
    def test_descriptor_exhaustion_is_survivable(self):
        # A short login timeout, so the silent sockets are also closed by it.
        sw = self.start_switch(pool_mode="transaction", workers=2, nofile=256,
                               server_toml="client_login_timeout_ms = 3000")
        app = psycopg2.connect(sw.dsn())
        app.autocommit = True
        with app.cursor() as cur:
            cur.execute("SELECT 1")
        baseline_fds = open_fds(sw.pid)
        silent = silent_sockets(sw.port, 400)
        try:
            self.assertGreater(len(silent), 250, "the silent connections could not be opened")
            # Logged-in clients keep being served while the descriptors are gone, and the
            # process does not spin.
            cpu0, t0 = cpu_seconds(sw.pid), time.monotonic()
            for i in range(20):
                with app.cursor() as cur:
                    cur.execute("SELECT %s", (i,))
                    self.assertEqual(cur.fetchone()[0], i)
                time.sleep(0.05)
            time.sleep(max(0.0, 2.0 - (time.monotonic() - t0)))
            busy = (cpu_seconds(sw.pid) - cpu0) / (time.monotonic() - t0)
            self.assertLess(busy, 0.5, f"pgswitch used {busy:.0%} CPU while out of descriptors")
            # Every silent socket is refused or closed by the login timeout.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if all(closed_by_peer(s) for s in silent):
                    break
                time.sleep(0.5)
            still_open = sum(1 for s in silent if not closed_by_peer(s))
            self.assertEqual(still_open, 0, f"{still_open} silent sockets never closed")
        finally:
            for s in silent:
                s.close()
        # Recovered: new logins work, the descriptors are back to where they were, and the
        # counters saw it.
        deadline = time.monotonic() + 10
        while open_fds(sw.pid) > baseline_fds + 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertLessEqual(open_fds(sw.pid), baseline_fds + 4, "descriptors leaked")
        with closing(psycopg2.connect(sw.dsn())) as c2, c2.cursor() as cur:
            cur.execute("SELECT 42")
            self.assertEqual(cur.fetchone()[0], 42)
        t = self.totals(sw)
        self.assertGreater(t["accept_fd_exhausted"] + t["login_timeouts"], 0, t)
        self.assertEqual(t["login_clients"], 0, t)
        app.close()
        t0 = time.monotonic()
        self.assertEqual(sw.stop(timeout=10), 0)
        self.assertLess(time.monotonic() - t0, 10)
    test_descriptor_exhaustion_is_survivable.stops_pgswitch = True


if __name__ == "__main__":
    unittest.main()
