"""A fake PostgreSQL server for tests of what pgswitch does with bad input from a *server*.
It logs anyone in (trust), answers pgswitch's health probe like an idle primary, and answers
a simple Query by its text: `SELECT 'bad:<name>'` makes it misbehave in the named way (see
MISBEHAVIOURS); BEGIN opens a transaction, in which a COMMIT or END (any text with the word) makes
the server vanish without an answer, as a primary that dies with the COMMIT in flight (or,
after a statement containing `commit_then_fatal`, answer it and send FATAL 57P01 right
behind, as a dying primary's backend does); any other Query gets one row with one column, "1". Everything runs in one
daemon thread per connection; stop() closes the listener and every connection."""
from __future__ import annotations

import re
import socket
import struct
import threading
import time

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


def _msg(t: bytes, payload: bytes = b"") -> bytes:
    return t + struct.pack("!I", len(payload) + 4) + payload


def _row_description(names: list[str]) -> bytes:
    body = struct.pack("!H", len(names))
    for n in names:
        body += n.encode() + b"\0" + struct.pack("!IhIhih", 0, 0, 25, -1, -1, 0)
    return _msg(b"T", body)


def _data_row(values: list[str | None]) -> bytes:
    body = struct.pack("!H", len(values))
    for v in values:
        if v is None:
            body += struct.pack("!i", -1)
        else:
            b = v.encode()
            body += struct.pack("!i", len(b)) + b
    return _msg(b"D", body)


READY = _msg(b"Z", b"I")


def _error_fatal(code: str, message: str) -> bytes:
    return _msg(b"E", b"SFATAL\0VFATAL\0C" + code.encode() + b"\0M" + message.encode()
                + b"\0\0")
ONE_ROW = _row_description(["x"]) + _data_row(["1"]) + _msg(b"C", b"SELECT 1\0")

# name -> bytes sent in answer to SELECT 'bad:<name>' (None: close the socket at once)
MISBEHAVIOURS = {
    "length_below_4": _row_description(["x"]) + b"D\x00\x00\x00\x02",
    "length_2gb": _row_description(["x"]) + b"D" + struct.pack("!I", 0x7FFFFFF0) + b"\0" * 64,
    "unknown_type": _row_description(["x"]) + _msg(b"~", b"what") + READY,
    "close_mid_result": _row_description(["x"]) + _data_row(["1"]),  # then closes
    "close_at_once": None,
    "bad_ready_status": ONE_ROW + _msg(b"Z", b"?"),
    "ready_too_long": ONE_ROW + _msg(b"Z", b"II"),
    "bad_error_fields": _msg(b"E", b"garbage-without-terminator"),
    "datarow_wrong_count": _row_description(["x"]) + _msg(b"D", b"\xff\xff") + READY,
    "auth_request_after_login": _msg(b"R", struct.pack("!I", 3)),
    "copy_out_unasked": _msg(b"H", b"\0\0\0") + _msg(b"d", b"x\n") + _msg(b"c")
                        + _msg(b"C", b"COPY 1\0") + READY,
    "key_data_after_login": _msg(b"K", struct.pack("!II", 1, 2)) + ONE_ROW + READY,
}
CLOSE_AFTER = {"close_mid_result", "length_below_4", "length_2gb", "bad_error_fields",
               "auth_request_after_login"}


class FakePg:
    def __init__(self, host: str = "127.0.0.1"):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.stopped = False
        self.misbehaved: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self.stopped = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass

    def _accept(self) -> None:
        while not self.stopped:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _read_exact(c: socket.socket, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = c.recv(n - len(out))
            if not chunk:
                raise ConnectionError
            out += chunk
        return out

    def _serve(self, c: socket.socket) -> None:
        try:
            while True:  # startup, after any number of SSL/GSS requests
                (ln,) = struct.unpack("!I", self._read_exact(c, 4))
                body = self._read_exact(c, ln - 4)
                (code,) = struct.unpack_from("!I", body)
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    c.sendall(b"N")
                    continue
                break
            out = _msg(b"R", struct.pack("!I", 0))
            for k, v in (("server_version", "15.0"), ("server_encoding", "UTF8"),
                         ("client_encoding", "UTF8"), ("DateStyle", "ISO, MDY"),
                         ("integer_datetimes", "on"), ("IntervalStyle", "postgres"),
                         ("standard_conforming_strings", "on"), ("TimeZone", "UTC"),
                         ("is_superuser", "off"), ("application_name", "")):
                out += _msg(b"S", k.encode() + b"\0" + v.encode() + b"\0")
            out += _msg(b"K", struct.pack("!II", 4242, 77)) + READY
            c.sendall(out)
            in_txn = False
            fatal_after_commit = False
            while True:
                t = self._read_exact(c, 1)
                (ln,) = struct.unpack("!I", self._read_exact(c, 4))
                body = self._read_exact(c, ln - 4)
                if t == b"X":
                    return
                if t != b"Q":  # extended protocol: only a COMMIT's Parse is looked at
                    if t == b"P" and in_txn and re.search(rb"\b(COMMIT|END)\b", body.upper()):
                        self.misbehaved.append("commit_lost")
                        return
                    if t == b"S":
                        c.sendall(_msg(b"Z", b"T" if in_txn else b"I"))
                    continue
                sql = body.rstrip(b"\0").decode(errors="replace")
                if "pg_is_in_recovery" in sql:
                    now_us = str(int(time.time() * 1e6))
                    c.sendall(_row_description(["a", "b", "c", "d", "e", "f", "g"])
                              + _data_row(["f", "1", "0/3000000", None, None, None, now_us])
                              + _msg(b"C", b"SELECT 1\0") + READY)
                    continue
                if sql.startswith("SELECT 'bad:"):
                    name = sql[len("SELECT 'bad:"):].split("'")[0]
                    self.misbehaved.append(name)
                    data = MISBEHAVIOURS[name]
                    if data is not None:
                        c.sendall(data)
                    if data is None or name in CLOSE_AFTER:
                        return
                    continue
                if sql.strip().upper().startswith("BEGIN"):
                    in_txn = True
                    c.sendall(_msg(b"C", b"BEGIN\0") + _msg(b"Z", b"T"))
                    continue
                if in_txn:
                    if "commit_then_fatal" in sql:
                        fatal_after_commit = True
                    if re.search(r"\b(COMMIT|END)\b", sql.upper()):
                        if fatal_after_commit:
                            # A dying primary's backend: the COMMIT is answered, then its
                            # FATAL follows in the same packet and the connection ends.
                            self.misbehaved.append("commit_then_fatal")
                            c.sendall(_msg(b"C", b"COMMIT\0") + READY + _error_fatal(
                                "57P01", "terminating connection due to unexpected "
                                "postmaster exit"))
                            return
                        self.misbehaved.append("commit_lost")
                        return
                    c.sendall(ONE_ROW + _msg(b"Z", b"T"))
                    continue
                c.sendall(ONE_ROW + READY)
        except (ConnectionError, OSError, struct.error, ValueError):
            return
        finally:
            try:
                c.close()
            except OSError:
                pass
