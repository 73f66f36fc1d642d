"""A minimal blocking PostgreSQL protocol-v3 client over a raw socket, for tests that need to
control the bytes: hostile startup packets, SSLRequest, slow readers. Handles trust, cleartext,
MD5 and SCRAM-SHA-256 authentication and simple queries."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct

HOST = "127.0.0.1"


PROTOCOL_V3 = 196608
SSL_REQUEST_CODE = 80877103
CANCEL_REQUEST_CODE = 80877102


# Extended-protocol messages for tests that must control the exact batch.
def parse_msg(name: str, sql: str) -> bytes:
    return msg(b"P", name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0))


def bind_msg(stmt: str, *params: str) -> bytes:
    body = b"\0" + stmt.encode() + b"\0" + struct.pack("!HH", 0, len(params))
    for v in params:
        body += struct.pack("!i", len(v.encode())) + v.encode()
    return msg(b"B", body + struct.pack("!H", 0))


def execute_msg() -> bytes:
    return msg(b"E", b"\0" + struct.pack("!i", 0))


def close_stmt_msg(name: str) -> bytes:
    return msg(b"C", b"S" + name.encode() + b"\0")


def describe_stmt_msg(name: str) -> bytes:
    return msg(b"D", b"S" + name.encode() + b"\0")


def sync_msg() -> bytes:
    return msg(b"S")


def run_batch(w: PgWire, *messages: bytes) -> list:
    """Sends messages (ending with Sync) and reads up to ReadyForQuery. Returns the responses
    as a list: message type letters, ('D', first column) for rows, ('E', SQLSTATE) for
    errors."""
    w.send(b"".join(messages))
    out = []
    while True:
        t, p = w.read_msg()
        if t == b"D":
            (ln,) = struct.unpack_from("!i", p, 2)
            out.append(("D", p[6:6 + ln].decode() if ln >= 0 else None))
        elif t == b"E":
            out.append(("E", parse_error_fields(p).get("C")))
        elif t in (b"N", b"S"):
            continue
        else:
            out.append(t.decode())
        if t == b"Z":
            return out


class PgWireError(Exception):
    def __init__(self, fields: dict):
        self.fields = fields
        self.sqlstate = fields.get("C")
        super().__init__(f"{fields.get('S', 'ERROR')} {fields.get('C')}: {fields.get('M')}")


def parse_error_fields(payload: bytes) -> dict:
    fields = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


def msg(type_: bytes, payload: bytes = b"") -> bytes:
    return type_ + struct.pack("!I", len(payload) + 4) + payload


def startup_packet(user: str, database: str, params: dict | None = None) -> bytes:
    body = struct.pack("!I", PROTOCOL_V3)
    for k, v in {"user": user, "database": database, **(params or {})}.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def ssl_request() -> bytes:
    return struct.pack("!II", 8, SSL_REQUEST_CODE)


def query_msg(sql: str) -> bytes:
    return msg(b"Q", sql.encode() + b"\0")


class PgWire:
    """A blocking protocol-v3 client over a raw socket: startup with trust, cleartext, MD5 or
    SCRAM-SHA-256, simple queries, message-level reads."""

    def __init__(self, host: str = HOST, port: int = 5432, timeout: float = 10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = bytearray()
        self.params: dict[str, str] = {}
        self.backend_key: tuple[int, int] | None = None
        self.notices: list[dict] = []
        self.auth_codes: list[int] = []  # authentication requests seen during startup

    def close(self) -> None:
        try:
            self.sock.sendall(msg(b"X"))
        except OSError:
            pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def read_msg(self) -> tuple[bytes, bytes]:
        while len(self.buf) < 5:
            self._fill()
        t = bytes(self.buf[:1])
        (ln,) = struct.unpack_from("!I", self.buf, 1)
        if ln < 4:
            raise ValueError(f"bad message length {ln}")
        while len(self.buf) < 1 + ln:
            self._fill()
        payload = bytes(self.buf[5:1 + ln])
        del self.buf[:1 + ln]
        return t, payload

    def startup(self, user: str, database: str, password: str = "",
                params: dict | None = None) -> dict:
        self.send(startup_packet(user, database, params))
        scram = None
        while True:
            t, p = self.read_msg()
            if t == b"E":
                raise PgWireError(parse_error_fields(p))
            if t == b"R":
                (code,) = struct.unpack_from("!I", p)
                self.auth_codes.append(code)
                if code == 0:
                    continue
                if code == 3:
                    self.send(msg(b"p", password.encode() + b"\0"))
                elif code == 5:
                    inner = hashlib.md5((password + user).encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + p[4:8]).hexdigest()
                    self.send(msg(b"p", b"md5" + outer.encode() + b"\0"))
                elif code == 10:
                    mechs = [m.decode() for m in p[4:].split(b"\0") if m]
                    if "SCRAM-SHA-256" not in mechs:
                        raise ValueError(f"no supported SASL mechanism in {mechs}")
                    scram = _ScramClient(password)
                    first = scram.client_first().encode()
                    self.send(msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first))
                                  + first))
                elif code == 11:
                    self.send(msg(b"p", scram.client_final(p[4:].decode()).encode()))
                elif code == 12:
                    scram.verify_server_final(p[4:].decode())
                else:
                    raise ValueError(f"unsupported authentication request {code}")
            elif t == b"S":
                k, v, _ = p.split(b"\0", 2)
                self.params[k.decode()] = v.decode()
            elif t == b"K":
                self.backend_key = struct.unpack("!II", p)
            elif t == b"N":
                self.notices.append(parse_error_fields(p))
            elif t == b"Z":
                return self.params
            elif t == b"v":
                continue
            else:
                raise ValueError(f"unexpected message {t!r} during startup")

    def query(self, sql: str) -> list[tuple]:
        """Simple query; returns the DataRows of all result sets as tuples of str/None.
        Raises PgWireError on an ErrorResponse (after reading up to ReadyForQuery)."""
        self.send(query_msg(sql))
        rows: list[tuple] = []
        err = None
        while True:
            t, p = self.read_msg()
            if t == b"D":
                (n,) = struct.unpack_from("!H", p)
                off, row = 2, []
                for _ in range(n):
                    (ln,) = struct.unpack_from("!i", p, off)
                    off += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(p[off:off + ln].decode())
                        off += ln
                rows.append(tuple(row))
            elif t == b"E":
                err = PgWireError(parse_error_fields(p))
            elif t == b"N":
                self.notices.append(parse_error_fields(p))
            elif t == b"S":
                k, v, _ = p.split(b"\0", 2)
                self.params[k.decode()] = v.decode()
            elif t == b"Z":
                if err:
                    raise err
                return rows


class _ScramClient:
    def __init__(self, password: str):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"
        self.auth_message = b""
        self.salted = b""

    def client_first(self) -> str:
        return "n,," + self.first_bare

    def client_final(self, server_first: str) -> str:
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        if not attrs["r"].startswith(self.nonce):
            raise ValueError("server nonce does not extend client nonce")
        self.salted = hashlib.pbkdf2_hmac("sha256", self.password, base64.b64decode(attrs["s"]),
                                          int(attrs["i"]))
        without_proof = f"c=biws,r={attrs['r']}"
        self.auth_message = f"{self.first_bare},{server_first},{without_proof}".encode()
        client_key = hmac.digest(self.salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        sig = hmac.digest(stored_key, self.auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        return f"{without_proof},p={base64.b64encode(proof).decode()}"

    def verify_server_final(self, server_final: str) -> None:
        attrs = dict(kv.split("=", 1) for kv in server_final.split(","))
        if "e" in attrs:
            raise ValueError(f"SCRAM error: {attrs['e']}")
        server_key = hmac.digest(self.salted, b"Server Key", "sha256")
        expect = hmac.digest(server_key, self.auth_message, "sha256")
        if base64.b64decode(attrs["v"]) != expect:
            raise ValueError("SCRAM server signature mismatch")
