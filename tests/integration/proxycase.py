"""unittest base class for tests that talk to a running pgswitch (cls.sw) in front of a
PgCluster (cls.cluster): a per-test time budget enforced by a watchdog, pgswitch restarted
between tests if it died, and log tails printed when a test fails."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import unittest
from contextlib import closing


def budget(seconds: float):
    """Decorator: the test's time budget (default ProxyTestCase.default_budget)."""
    def deco(fn):
        fn._budget = seconds
        return fn
    return deco


def show(sw, command: str, user: str = "admin", password: str | None = None) -> list[tuple]:
    """The rows of admin console `command` (e.g. "SHOW SERVERS") of pgswitch `sw`."""
    import psycopg2  # here, so that tests without a console need no driver
    with closing(psycopg2.connect(sw.dsn(user=user, password=password, db="pgswitch"))) as c:
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute(command)
            return cur.fetchall()


def show_totals(sw, user: str = "admin", password: str | None = None) -> dict[str, int]:
    """The admin console's SHOW TOTALS of pgswitch `sw`, as {name: value}."""
    return {k: int(v) for k, v in show(sw, "SHOW TOTALS", user, password)}


class ProxyTestCase(unittest.TestCase):
    """A client blocked on a hung proxy (libpq has no read timeout) would hang the whole run, so
    a watchdog SIGKILLs pgswitch when a test overruns its budget: blocked clients then see EOF
    and the test fails with a clear message. setUp restarts pgswitch if it is not running, and
    tearDown fails a test during which pgswitch exited (unless the test is marked with
    `stops_pgswitch = True` on the method, e.g. a shutdown test)."""
    sw = None  # PgSwitch, set by setUpClass
    cluster = None  # PgCluster, set by setUpClass
    default_budget = 30.0

    def _method(self):
        return getattr(self, self._testMethodName)

    def run(self, result=None):
        if result is None:
            return super().run(result)
        limit = getattr(self._method(), "_budget", self.default_budget)
        self._overrun = False
        timer = threading.Timer(limit, self._on_overrun, args=(limit,))
        timer.daemon = True
        timer.start()
        before = len(result.failures) + len(result.errors)
        try:
            out = super().run(result)
        finally:
            timer.cancel()
        if len(result.failures) + len(result.errors) > before and self.sw is not None:
            sys.stderr.write(f"\n----- pgswitch log tail ({self.id()}) -----\n"
                             f"{self.sw.log_tail(80)}----- end of log -----\n")
            if self.cluster is not None:
                sys.stderr.write(f"----- primary log tail -----\n{self.cluster.node_log(0, 20)}"
                                 "----- end of log -----\n")
        return out

    def _on_overrun(self, limit):
        sw = self.sw
        proc = sw.proc if sw is not None else None
        if proc is not None and proc.poll() is None:
            self._overrun = True
            sys.stderr.write(f"\nwatchdog: {self.id()} exceeded its {limit:.0f} s budget; "
                             f"SIGKILLing pgswitch (pid {proc.pid}) so blocked clients see EOF\n")
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def setUp(self):
        sw = self.sw
        if sw is not None and sw.proc is not None and sw.proc.poll() is not None:
            sys.stderr.write(f"\n(restarting pgswitch, which had exited with "
                             f"{sw.proc.returncode})\n")
            sw.kill()
            sw.start()

    def tearDown(self):
        sw = self.sw
        if sw is None or getattr(self._method(), "stops_pgswitch", False):
            return
        if self._overrun:
            self.fail("test exceeded its time budget: pgswitch was SIGKILLed by the watchdog")
        if sw.proc is not None and sw.proc.poll() is not None:
            self.fail(f"pgswitch exited during this test with status {sw.proc.returncode}")

    # -- the admin console, and waiting for what it shows --------------------------------------
    def console(self, sw=None):
        """An autocommit connection to the admin console of `sw` (default: self.sw)."""
        import psycopg2  # here, so that tests without a console need no driver
        conn = psycopg2.connect((sw or self.sw).dsn(user="admin", db="pgswitch"))
        conn.autocommit = True
        return conn

    def rows(self, command: str, sw=None) -> list[dict]:
        """The rows of console `command`, each as {column: value}."""
        with closing(self.console(sw)) as conn, conn.cursor() as cur:
            cur.execute(command)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def backends(self, sw=None) -> dict[str, dict]:
        """SHOW BACKENDS by backend name."""
        return {r["name"]: r for r in self.rows("SHOW BACKENDS", sw)}

    def wait_for(self, pred, timeout: float = 15.0, what: str = "condition", step: float = 0.1):
        """pred()'s first truthy value within `timeout` seconds; the test fails otherwise."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = pred()
            if last:
                return last
            time.sleep(step)
        self.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
