"""The Debian package (issue 15, item 1): `cpack -G DEB` in the build directory makes a .deb whose
control data declares the runtime dependencies, conffile and maintainer scripts; unpacked into a
scratch root it holds the binary, the example /etc/pgswitch/pgswitch.toml (which `--check`
accepts as shipped) and a systemd unit that `systemd-analyze verify` accepts. The packaged
binary then runs with the packaged example, changed only in listen/metrics ports and backend
hosts/ports, in front of a primary, a standby, a reporting replica and a cascading replica, and
serves libpq clients. It plays systemd's part for the notify protocol: READY=1 once the first
health round is in (roles known), RELOADING=1 then READY=1 around SIGHUP, STOPPING=1 on SIGINT,
which lets the running transaction commit before the process exits 0."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
from contextlib import closing
from pathlib import Path

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import HOST, PGSWITCH_BIN, PgCluster, PgSwitch, free_port  # noqa: E402
from proxycase import ProxyTestCase, budget  # noqa: E402

UNIT = "usr/lib/systemd/system/pgswitch.service"
CONF = "etc/pgswitch/pgswitch.toml"
# The example's passwords and health user, which the test cluster is given (the example is not
# changed for them: a user following docs/deploy.md creates the same roles).
APP_PASSWORD = "change-me-app"
ADMIN = ("pgswitch_admin", "change-me-admin")


def build_dir() -> Path:
    return Path(os.environ.get("PGSWITCH_BIN") or PGSWITCH_BIN).resolve().parent


def adjust_example(text: str, port: int, metrics_port: int, backends: list[int]) -> str:
    """The packaged example with only addresses changed: listen, metrics_listen, and each
    [[backend]]'s host and port, in order."""
    text, n = re.subn(r'(?m)^listen = "[^"]*"', f'listen = "{HOST}:{port}"', text)
    assert n == 1, "example has no listen line"
    text, n = re.subn(r'(?m)^metrics_listen = "[^"]*"',
                      f'metrics_listen = "{HOST}:{metrics_port}"', text)
    assert n == 1, "example has no metrics_listen line"
    parts = text.split("[[backend]]")
    assert len(parts) - 1 == len(backends), f"example has {len(parts) - 1} backends"
    for i, p in enumerate(backends, start=1):
        parts[i], h = re.subn(r'(?m)^host = "[^"]*"', f'host = "{HOST}"', parts[i], count=1)
        parts[i], q = re.subn(r"(?m)^port = \d+", f"port = {p}", parts[i], count=1)
        assert h == 1 and q == 1, f"backend {i} has no host/port line"
    return "[[backend]]".join(parts)


class PackagedSwitch(PgSwitch):
    """The packaged binary with the packaged example, addresses adjusted."""

    def __init__(self, cluster, root: Path, **kw):
        self.root = root
        self.metrics_port = free_port()
        super().__init__(cluster, binary=str(root / "usr/bin/pgswitch"), **kw)

    def config_text(self) -> str:
        return adjust_example((self.root / CONF).read_text(), self.port, self.metrics_port,
                              [n.port for n in self.cluster.nodes])


class NotifyListener:
    """The service manager's end of sd_notify: a datagram socket named by NOTIFY_SOCKET."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.got: list[dict[str, str]] = []

    def wait_for(self, key: str, value: str, timeout: float) -> dict[str, str]:
        """The first message not yet seen with key=value, reading on until it comes."""
        deadline = time.monotonic() + timeout
        for m in self.got:
            if m.get(key) == value and not m.get("_seen"):
                m["_seen"] = "1"
                return m
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                break
            msg = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.got.append(msg)
            if msg.get(key) == value:
                msg["_seen"] = "1"
                return msg
        raise AssertionError(f"no {key}={value} within {timeout}s; got {self.got}")

    def close(self):
        self.sock.close()


class PackageTest(ProxyTestCase):
    default_budget = 90.0
    tmp: Path
    root: Path
    deb: Path

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="pgswitch-pkg-"))
        bdir = build_dir()
        if not (bdir / "CPackConfig.cmake").exists():
            raise RuntimeError(f"{bdir}/CPackConfig.cmake missing: configure the build with "
                               "cmake (packaging/ is part of it) before running this test")
        t0 = time.monotonic()
        out = cls.tmp / "out"
        r = subprocess.run(["cpack", "-G", "DEB", "--config", str(bdir / "CPackConfig.cmake"),
                            "-B", str(out)], cwd=bdir, capture_output=True, text=True,
                           timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"cpack failed:\n{r.stdout}\n{r.stderr}")
        cls.cpack_seconds = time.monotonic() - t0
        debs = sorted(out.glob("pgswitch_*.deb"))
        if len(debs) != 1:
            raise RuntimeError(f"expected one pgswitch_*.deb in {out}: {list(out.iterdir())}")
        cls.deb = debs[0]
        cls.root = cls.tmp / "root"
        subprocess.run(["dpkg-deb", "-x", str(cls.deb), str(cls.root)], check=True)
        cls.control = cls.tmp / "control"
        subprocess.run(["dpkg-deb", "-e", str(cls.deb), str(cls.control)], check=True)
        sys.stderr.write(f"\n(package {cls.deb.name}, {cls.deb.stat().st_size // 1024} KiB, "
                         f"built by cpack in {cls.cpack_seconds:.1f}s)\n")
        try:
            cls.cluster = PgCluster(replicas=2, cascade=True).start()
            cls.cluster.psql(0, f"""
                SET password_encryption = 'scram-sha-256';
                ALTER ROLE app PASSWORD '{APP_PASSWORD}';
                CREATE ROLE pgswitch_health LOGIN PASSWORD 'change-me-health' IN ROLE pg_monitor;
            """)
            cls.cluster.psql(0, "CREATE TABLE pkg_t(id int PRIMARY KEY, v text); "
                                "GRANT ALL ON pkg_t TO app", db="appdb")
            cls.cluster.wait_replicated()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.cluster is not None:
            cls.cluster.stop()
            cls.cluster = None
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def tearDown(self):
        if self.sw is not None:
            self.sw.kill()
            self.sw = None
        super().tearDown()

    # -- the package's contents --------------------------------------------------------------
    def test_control_declares_dependencies_conffile_and_scripts(self):
        fields = subprocess.run(["dpkg-deb", "-f", str(self.deb)], check=True,
                                capture_output=True, text=True).stdout
        depends = re.search(r"(?m)^Depends: (.*)$", fields).group(1)
        names = {d.strip().split(" ")[0] for d in depends.split(",")}
        # The libraries `ldd build/pgswitch` shows, by their Debian 12 package names (spdlog
        # by the name its shlibs file gives, which libspdlog1.10 provides).
        for pkg in ("libc6", "libstdc++6", "libuv1", "libpq5", "libssl3", "libspdlog1.10-fmt9",
                    "libfmt9", "libxxhash0", "libtomlplusplus3", "libpg-query1504.0",
                    "adduser"):
            self.assertIn(pkg, names, f"Depends: {depends}")
        self.assertEqual((self.control / "conffiles").read_text().split(),
                         ["/etc/pgswitch/pgswitch.toml"])
        postinst = (self.control / "postinst").read_text()
        self.assertIn("adduser --system --group", postinst)
        for script in ("postinst", "prerm", "postrm"):
            self.assertTrue(os.access(self.control / script, os.X_OK), script)
            r = subprocess.run(["sh", "-n", str(self.control / script)], capture_output=True,
                               text=True)
            self.assertEqual(r.returncode, 0, f"{script}: {r.stderr}")

    def test_apt_resolves_dependencies(self):
        if shutil.which("apt-get") is None:
            self.skipTest("apt-get is not installed")
        # A simulated install: every Depends must be satisfiable from what apt knows (nothing
        # is changed on this machine).
        r = subprocess.run(["apt-get", "install", "-s", "-q", str(self.deb)],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("Inst pgswitch", r.stdout)

    def test_files_in_place(self):
        binary = self.root / "usr/bin/pgswitch"
        self.assertTrue(os.access(binary, os.X_OK), "usr/bin/pgswitch")
        self.assertTrue((self.root / CONF).is_file())
        self.assertTrue((self.root / "usr/share/doc/pgswitch/examples/pgswitch.toml").is_file())
        self.assertTrue((self.root / "usr/share/doc/pgswitch/deploy.md").is_file())
        unit = (self.root / UNIT).read_text()
        for line in ("Type=notify",
                     "ExecStart=/usr/bin/pgswitch --config /etc/pgswitch/pgswitch.toml",
                     "ExecReload=/bin/kill -HUP $MAINPID", "KillSignal=SIGINT",
                     "User=pgswitch", "Group=pgswitch", "WantedBy=multi-user.target"):
            self.assertIn(line + "\n", unit)
        r = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("pgswitch "), r.stdout)

    def test_example_config_passes_check_as_shipped(self):
        r = subprocess.run([str(self.root / "usr/bin/pgswitch"), "--config",
                            str(self.root / CONF), "--check"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("configuration is valid (4 backends, 2 users)", r.stdout)

    def test_without_config_reads_etc_pgswitch(self):
        if Path("/etc/pgswitch/pgswitch.toml").exists():
            self.skipTest("/etc/pgswitch/pgswitch.toml exists on this machine")
        r = subprocess.run([str(self.root / "usr/bin/pgswitch"), "--check"],
                           capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("/etc/pgswitch/pgswitch.toml", r.stdout + r.stderr)

    def test_systemd_analyze_verify(self):
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze is not installed: unit not verified")
        # verify checks that ExecStart's binary exists: copy the unit where its path resolves
        # (into the scratch root's /usr/bin, named by the unit rewritten to that root).
        unit = self.tmp / "verify" / "pgswitch.service"
        unit.parent.mkdir(exist_ok=True)
        text = (self.root / UNIT).read_text()
        unit.write_text(text.replace("/usr/bin/pgswitch", str(self.root / "usr/bin/pgswitch")))
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        complaints = [ln for ln in (r.stdout + r.stderr).splitlines()
                      if "pgswitch.service" in ln]
        self.assertEqual(complaints, [], r.stdout + r.stderr)

    # -- the packaged binary with the packaged config ----------------------------------------
    @budget(90)
    def test_serves_clients_and_speaks_sd_notify(self):
        listener = NotifyListener(self.tmp / "notify.sock")
        os.environ["NOTIFY_SOCKET"] = str(listener.path)
        try:
            t0 = time.monotonic()
            self.sw = sw = PackagedSwitch(self.cluster, self.root)
        finally:
            del os.environ["NOTIFY_SOCKET"]
        try:
            ready = listener.wait_for("READY", "1", 15)
            ready_s = time.monotonic() - t0
            self.assertEqual(ready.get("MAINPID"), str(sw.pid))
            self.assertIn("serving on", ready.get("STATUS", ""))
            # Ready means the first health round is in: every backend has its real role.
            roles = self.admin("SHOW BACKENDS")
            by_name = {r[0]: r for r in roles}
            self.assertEqual(set(by_name), {"primary", "standby", "reporting", "cascade"})
            self.assertNotIn("unknown", repr(roles))
            sys.stderr.write(f"(READY=1 {ready_s:.2f}s after exec)\n")

            # libpq (psql) through the packaged example: a write, then reads.
            dsn = (f"host={HOST} port={sw.port} dbname=appdb user=app "
                   f"password={APP_PASSWORD}")
            out = self.psql(dsn, "INSERT INTO pkg_t VALUES (1, 'packaged') "
                                 "ON CONFLICT (id) DO UPDATE SET v = excluded.v RETURNING v")
            self.assertEqual(out, "packaged")
            self.assertEqual(self.psql(dsn, "SELECT v FROM pkg_t WHERE id = 1"), "packaged")
            self.assertEqual(self.psql(dsn + " application_name=reporting",
                                       "SELECT count(*) FROM pkg_t"), "1")
            with urllib.request.urlopen(f"http://{HOST}:{sw.metrics_port}/metrics",
                                        timeout=5) as resp:
                self.assertIn(b"pgswitch_", resp.read())

            # systemctl reload = SIGHUP: RELOADING=1 (with MONOTONIC_USEC), then READY=1.
            sw.proc.send_signal(signal.SIGHUP)
            rel = listener.wait_for("RELOADING", "1", 10)
            self.assertTrue(rel.get("MONOTONIC_USEC", "").isdigit(), rel)
            again = listener.wait_for("READY", "1", 10)
            self.assertEqual(again.get("STATUS"), "configuration reloaded")

            # systemctl stop = SIGINT: STOPPING=1, no new clients, the open transaction commits.
            conn = psycopg2.connect(dsn)
            with closing(conn):
                cur = conn.cursor()
                cur.execute("INSERT INTO pkg_t VALUES (2, 'during stop')")
                sw.proc.send_signal(signal.SIGINT)
                listener.wait_for("STOPPING", "1", 10)
                # The workers close their listeners on their own loops, just after STOPPING=1.
                refused = None
                deadline = time.monotonic() + 10
                while refused is None and time.monotonic() < deadline:
                    try:
                        psycopg2.connect(dsn, connect_timeout=3).close()
                        time.sleep(0.05)
                    except psycopg2.OperationalError as e:
                        refused = e
                self.assertIsNotNone(refused, "new clients still accepted 10 s after SIGINT")
                cur.execute("UPDATE pkg_t SET v = 'committed' WHERE id = 2")
                conn.commit()
            self.assertEqual(sw.proc.wait(15), 0, sw.log_tail())
            self.assertEqual(self.cluster.psql(0, "SELECT v FROM pkg_t WHERE id = 2",
                                               db="appdb"), "committed")
        finally:
            listener.close()

    # -- helpers -----------------------------------------------------------------------------
    def psql(self, dsn: str, sql: str) -> str:
        r = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", dsn, "-c", sql],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip().splitlines()[0]

    def admin(self, sql: str):
        conn = psycopg2.connect(host=HOST, port=self.sw.port, dbname="pgswitch",
                                user=ADMIN[0], password=ADMIN[1])
        conn.autocommit = True
        with closing(conn):
            cur = conn.cursor()
            cur.execute(sql)
            return cur.fetchall()


if __name__ == "__main__":
    unittest.main()
