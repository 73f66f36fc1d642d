"""Integration-test fixture: one etcd member (Debian's `etcd-server` package) on free loopback
ports with its data in a directory the caller owns. Used by patroni_cluster.py (Patroni's DCS) and
test_coordination.py (pgswitch's [coordination]). stop() ends only the process this object
started; start() again reuses the same ports and data (an etcd that was down and came back).
"""
from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from pgcluster import HOST, _register, _set_pdeathsig, _unregister, free_port

ETCD_BIN = os.environ.get("ETCD_BIN", "/usr/bin/etcd")


class EtcdServer:
    def __init__(self, tmpdir: Path):
        self.dir = Path(tmpdir)
        self.port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30) -> "EtcdServer":
        if self.running():
            return self
        log = open(self.dir / "etcd.log", "ab")
        peer = f"http://{HOST}:{self.peer_port}"
        try:
            self.proc = subprocess.Popen(
                [ETCD_BIN, "--name", "e0", "--data-dir", str(self.dir / "etcd"),
                 "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"e0={peer}", "--initial-cluster-state", "new",
                 "--log-level", "warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.dir,
                preexec_fn=_set_pdeathsig)
        finally:
            log.close()
        _register(self)  # stopped at exit and on SIGTERM even if the caller's teardown is skipped
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}; see "
                                   f"{self.dir / 'etcd.log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"etcd not healthy within {timeout:.0f}s")
            time.sleep(0.1)
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 10 s) of the process this object started. Idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        _unregister(self)

    _teardown = stop
