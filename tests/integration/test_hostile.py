"""Hostile protocol input after login, through pgswitch in transaction and in session mode:
unknown message types, impossible lengths, truncated or inconsistent messages, messages out
of place, random frames, clients that vanish mid-message or mid-transaction. Each case must
end in an ErrorResponse (with the SQLSTATE PostgreSQL uses where it has one) followed by
ReadyForQuery or a clean close, within seconds: never a hang or a crash. Meanwhile another
client, in the middle of a transaction, must not notice, and the pool must hand out only clean
server connections afterwards."""
from __future__ import annotations

import os
import random
import socket
import struct
import sys
import time
import unittest

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import PgCluster, PgSwitch  # noqa: E402
from pgwire import PgWire, msg, parse_error_fields, query_msg  # noqa: E402
from proxycase import ProxyTestCase, budget  # noqa: E402

SYNC = msg(b"S")
FLUSH = msg(b"H")


def bind(portal: bytes, stmt: bytes) -> bytes:
    return msg(b"B", portal + b"\0" + stmt + b"\0" + struct.pack("!HHH", 0, 0, 0))


def execute(portal: bytes) -> bytes:
    return msg(b"E", portal + b"\0" + struct.pack("!I", 0))


def random_frames(seed: int, n: int) -> bytes:
    rng = random.Random(seed)
    out = b""
    for _ in range(n):
        t = bytes([rng.choice(b"PBDECHSFQdcfpXz" + bytes([rng.randrange(256)]))])
        if t == b"X":
            t = b"H"  # a Terminate would just end the case early
        out += msg(t, rng.randbytes(rng.randrange(0, 40)))
    return out + SYNC


# name -> (bytes sent after login, SQLSTATEs acceptable, whether the connection may stay)
CASES = {
    "unknown message type": (msg(b"z", b"abc"), {"08P01"}, False),
    "length below 4": (b"Q" + struct.pack("!I", 2), {"08P01"}, False),
    "length of 2 GB": (b"Q" + struct.pack("!I", 0x7FFFFFF0) + b"SELECT 1", {"08P01", "54000"},
                       False),
    "query without terminator": (msg(b"Q", b"SELECT 1"), {"08P01"}, True),
    "truncated parse": (msg(b"P", b"s1\0SELECT 1") + SYNC, {"08P01"}, True),
    "bind of a missing statement": (bind(b"", b"nope") + execute(b"") + SYNC, {"26000"}, True),
    # PostgreSQL looks the statement up before it reads the rest: 26000 (no unnamed statement)
    "truncated bind": (msg(b"B", b"\0\0\0") + SYNC, {"08P01", "26000"}, True),
    "execute of a missing portal": (execute(b"nope") + SYNC, {"34000"}, True),
    "describe with a bad kind": (msg(b"D", b"Xx\0") + SYNC, {"08P01"}, True),
    "close with a bad kind": (msg(b"C", b"Xx\0") + SYNC, {"08P01"}, True),
    "copy data outside copy": (msg(b"d", b"junk") + msg(b"c") + query_msg("SELECT 1"), set(),
                               True),
    "function call of a missing function": (
        msg(b"F", struct.pack("!IHHH", 4242424, 0, 0, 0)), {"42883", "08P01"}, True),
    "password message after login": (msg(b"p", b"secret\0"), {"08P01"}, False),
    "flush then sync": (FLUSH + SYNC, set(), True),
    "random frames 1": (random_frames(1, 30), None, True),
    "random frames 2": (random_frames(2, 30), None, True),
    "random frames 3": (random_frames(3, 200), None, True),
}


class HostileInputTest(ProxyTestCase):
    default_budget = 90.0

    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster(replicas=1).start()
        try:
            cls.cluster.psql(0, "CREATE TABLE hostile (id int); "
                                "GRANT ALL ON hostile TO app", db="appdb")
            cls.txn = PgSwitch(cls.cluster, pool_mode="transaction", health_period_ms=200,
                               extra_toml="[pool]\npool_size = 4\n")
            cls.session = PgSwitch(cls.cluster, pool_mode="session", health_period_ms=200)
        except BaseException:
            cls.cluster.stop()
            raise
        cls.sw = cls.txn

    @classmethod
    def tearDownClass(cls):
        try:
            cls.txn.stop()
            cls.session.stop()
        finally:
            cls.cluster.stop()

    def probe(self, sw: PgSwitch, data: bytes) -> tuple[list[bytes], list[str], str, PgWire]:
        """Logs in, sends data, reads until ReadyForQuery, close or 5 s. Returns the message
        types, the SQLSTATEs of errors, how it ended ("ready", "closed", "timeout") and the
        connection."""
        w = PgWire(port=sw.port, timeout=5)
        w.startup("app", "appdb", "app")
        types, codes = [], []
        try:
            w.send(data)
        except OSError:
            return types, codes, "closed", w
        try:
            while True:
                t, p = w.read_msg()
                types.append(t)
                if t == b"E":
                    codes.append(parse_error_fields(p).get("C"))
                if t == b"Z":
                    return types, codes, "ready", w
        except socket.timeout:
            return types, codes, "timeout", w
        except (ConnectionError, OSError, ValueError):
            return types, codes, "closed", w

    def run_cases(self, sw: PgSwitch):
        keeper = psycopg2.connect(sw.dsn())
        kc = keeper.cursor()
        kc.execute("INSERT INTO hostile VALUES (1)")  # a transaction open through it all
        for name, (data, allowed, may_stay) in CASES.items():
            with self.subTest(mode=sw.pool_mode, case=name):
                types, codes, end, w = self.probe(sw, data)
                try:
                    self.assertNotEqual(end, "timeout", f"no answer within 5 s: {types}")
                    if allowed is not None:
                        for c in codes:
                            self.assertIn(c, allowed, f"got {codes}")
                        if allowed and not (end == "closed" and not codes):
                            self.assertTrue(codes, f"no ErrorResponse: {types}, {end}")
                    if end == "ready":
                        self.assertTrue(may_stay, f"connection kept after {codes}")
                        self.assertEqual(w.query("SELECT 41 + 1"), [("42",)])
                finally:
                    w.sock.close()
                self.assertIsNone(sw.proc.poll(), "pgswitch exited")
                kc.execute("SELECT count(*) FROM hostile")
                self.assertGreaterEqual(kc.fetchone()[0], 1)
        keeper.commit()
        keeper.close()

    def vanish_cases(self, sw: PgSwitch):
        # A client that disappears halfway through a message, or inside a transaction with an
        # uncommitted write: nothing of it may reach the next user of the server connection.
        for data in (b"Q" + struct.pack("!I", 1000) + b"SELECT pg_sleep(0)",
                     query_msg("BEGIN") + query_msg("INSERT INTO hostile VALUES (-1)"),
                     msg(b"P", b"\0INSERT INTO hostile VALUES (-2)\0\0\0") + bind(b"", b"")
                     + execute(b"")):
            w = PgWire(port=sw.port, timeout=5)
            w.startup("app", "appdb", "app")
            w.send(data)
            time.sleep(0.2)
            w.sock.close()
        time.sleep(0.5)
        for _ in range(3):
            with PgWire(port=sw.port, timeout=5) as w:
                w.startup("app", "appdb", "app")
                for _ in range(5):
                    self.assertEqual(w.query("/* pgswitch: primary */ SELECT txid_current_if_assigned() IS NULL, "
                                             "count(*) FILTER (WHERE id < 0) FROM hostile"),
                                     [("t", "0")])

    def answers_until_ready(self, w: PgWire, readies: int) -> tuple[list[bytes], list[str]]:
        """The message types up to the given number of ReadyForQuery, and the SQLSTATEs of the
        errors among them; a hang fails the test with what had arrived."""
        types, codes = [], []
        try:
            while types.count(b"Z") < readies:
                t, p = w.read_msg()
                types.append(t)
                if t == b"E":
                    codes.append(parse_error_fields(p).get("C"))
        except socket.timeout:
            self.fail(f"no answer within 5 s after {types}")
        return types, codes

    def error_then_pipelined_write(self, sw: PgSwitch):
        # A read (to a replica in transaction mode), then an Execute that fails, a Query and a
        # Parse of a write, one Sync. The server skips everything after the error up to the
        # Sync, so the answer is: the read, the error, one ReadyForQuery. pgswitch used to
        # hold the write back for the read's server to say ReadyForQuery, which the server
        # only says after the Sync it was holding back: a hang (found by a structured fuzz).
        data = (query_msg("SELECT 1") + execute(b"") +
                query_msg("INSERT INTO hostile VALUES (-3)") +
                msg(b"P", b"s_w\0SELECT txid_current()\0\0\0") + SYNC)
        with PgWire(port=sw.port, timeout=5) as w:
            w.startup("app", "appdb", "app")
            w.send(data)
            types, codes = self.answers_until_ready(w, 2)
            self.assertEqual(types, [b"T", b"D", b"C", b"Z", b"E", b"Z"])
            self.assertEqual(codes, ["34000"])
            self.assertEqual(w.query("SELECT count(*) FROM hostile WHERE id = -3"), [("0",)])

    def read_left_unsynced_then_write(self, sw: PgSwitch):
        # A Parse of a read with neither Sync nor Flush behind it (on a replica in transaction
        # mode), then a Parse that needs the primary and a Sync. The server keeps the first
        # ParseComplete until a Sync or Flush; pgswitch used to hold the second Parse back for
        # that answer: a hang (found by fuzz/wire_fuzz.py).
        with PgWire(port=sw.port, timeout=5) as w:
            w.startup("app", "appdb", "app")
            w.send(msg(b"C", b"Sp1\0") + SYNC + msg(b"P", b"r1\0SELECT 1\0\0\0"))
            time.sleep(0.3)
            w.send(msg(b"P", b"w1\0LISTEN hostile\0\0\0") + SYNC)
            types, _ = self.answers_until_ready(w, 2)
            self.assertEqual(types, [b"3", b"Z", b"1", b"1", b"Z"])
            self.assertEqual(w.query("SELECT 41 + 1"), [("42",)])

    def unsynced_read_continued_then_write(self, sw: PgSwitch):
        # As above, but the message after the unsynced read arrives in two parts: while only
        # part of its header is in, pgswitch cannot tell a read and asks for the answers with
        # a Flush. It is a Describe of the statement just parsed (rewritten in transaction
        # mode): it continues the batch. Then a write: pgswitch must ask again, for the
        # Describe's answers, or it waits for them for ever.
        with PgWire(port=sw.port, timeout=5) as w:
            w.startup("app", "appdb", "app")
            w.send(msg(b"C", b"Sp1\0") + SYNC + msg(b"P", b"p1\0SELECT 2 AS continued\0\0\0"))
            time.sleep(0.3)
            describe = msg(b"D", b"Sp1\0")
            w.send(describe[:3])
            time.sleep(0.3)
            w.send(describe[3:])
            time.sleep(0.3)
            w.send(msg(b"P", b"w1\0LISTEN hostile\0\0\0") + SYNC)
            types, _ = self.answers_until_ready(w, 2)
            self.assertEqual(types, [b"3", b"Z", b"1", b"t", b"T", b"1", b"Z"])
            self.assertEqual(w.query("SELECT 41 + 1"), [("42",)])

    @budget(120)
    def test_transaction_mode(self):
        self.error_then_pipelined_write(self.txn)
        self.read_left_unsynced_then_write(self.txn)
        self.unsynced_read_continued_then_write(self.txn)
        self.run_cases(self.txn)
        self.vanish_cases(self.txn)

    @budget(120)
    def test_session_mode(self):
        self.error_then_pipelined_write(self.session)
        self.read_left_unsynced_then_write(self.session)
        self.unsynced_read_continued_then_write(self.session)
        self.run_cases(self.session)
        self.vanish_cases(self.session)


if __name__ == "__main__":
    unittest.main()
