#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/ (small valid inputs of each format).
Run from anywhere; rewrites the seeds it owns and leaves other files alone. The SCRAM seeds
are real exchanges against the fixed secret and nonces of scram_fuzz.cc."""
import base64, hashlib, hmac, os, re, struct

ROOT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(ROOT)


def put(target, name, data):
    d = os.path.join(ROOT, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def msg(t, body):
    return t.encode() + struct.pack("!I", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


def startup(params, proto=196608):
    body = struct.pack("!I", proto) + b"".join(cstr(k) + cstr(v) for k, v in params) + b"\0"
    return struct.pack("!I", len(body) + 4) + body


def sasl_initial(mech, data):
    return msg("p", cstr(mech) + struct.pack("!i", len(data)) + data)


# ---- SCRAM (RFC 5802) against scram_fuzz.cc's secret and nonces
PASSWORD, SALT, ITER = b"pencil", b"pgswitch-fuzz-salt", 4096
SNONCE, CNONCE = "SERVERNONCE0123456789abc", "CLIENTNONCE0123456789abc"
b64 = lambda b: base64.b64encode(b).decode()
H = lambda k, m: hmac.new(k, m.encode() if isinstance(m, str) else m, hashlib.sha256).digest()
salted = hashlib.pbkdf2_hmac("sha256", PASSWORD, SALT, ITER)
client_key, server_key = H(salted, "Client Key"), H(salted, "Server Key")
stored_key = hashlib.sha256(client_key).digest()


def exchange(client_first_bare, gs2="n,,"):
    nonce = re.search(r"r=([^,]*)", client_first_bare).group(1) + SNONCE
    server_first = f"r={nonce},s={b64(SALT)},i={ITER}"
    final_wo_proof = f"c={b64(gs2.encode())},r={nonce}"
    auth = f"{client_first_bare},{server_first},{final_wo_proof}"
    sig = H(stored_key, auth)
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    return server_first, f"{final_wo_proof},p={b64(proof)}", f"v={b64(H(server_key, auth))}"


# server side: client-first \n client-final
bare = "n=,r=" + CNONCE
sf, cf, sfin = exchange(bare)
put("scram", "server_ok", b"\0" + f"n,,{bare}\n{cf}".encode())
bare_y = "n=user,r=abcdefghijklmnop"
_, cf_y, _ = exchange(bare_y, "y,,")
put("scram", "server_y", b"\0" + f"y,,{bare_y}\n{cf_y}".encode())
put("scram", "server_bad_proof", b"\0" + f"n,,{bare}\n{cf[:-8]}AAAAAAA=".encode())
# client side: server-first \n server-final (keys mode, password mode)
put("scram", "client_keys", b"\1" + f"{sf}\n{sfin}".encode())
put("scram", "client_password", b"\2" + f"{sf}\n{sfin}".encode())
put("scram", "client_error", b"\2" + f"{sf}\ne=invalid-proof".encode())
# pg_authid secrets and base64
put("scram", "secret", b"\3" + f"SCRAM-SHA-256${ITER}:{b64(SALT)}${b64(stored_key)}:{b64(server_key)}".encode())
put("scram", "base64", b"\3cGdzd2l0Y2g=")

# ---- login: first byte = piece size (0: all at once), then the client's bytes
put("login", "scram_first", b"\0" + startup([("user", "scram"), ("database", "db")])
    + sasl_initial("SCRAM-SHA-256", f"n,,{bare}".encode()))
put("login", "ssl_md5", b"\x07" + struct.pack("!II", 8, 80877103)
    + startup([("user", "md5"), ("database", "db"), ("application_name", "psql")])
    + msg("p", cstr("md5" + "0" * 32)))
put("login", "trust_options", b"\x03" + startup([("user", "trusted"), ("database", "db"),
    ("options", "-c search_path=a,b --statement_timeout=5s")]))
put("login", "cancel", b"\0" + struct.pack("!IIii", 16, 80877102, 1234, 5678))
put("login", "gss_newer_proto", b"\0" + struct.pack("!II", 8, 80877104)
    + startup([("user", "nobody"), ("_pq_.x", "1")], proto=196610))
put("login", "unknown_user_cleartext", b"\x05" + startup([("user", "nobody")]) + msg("p", cstr("pw")))

# ---- frame reader: byte streams as they arrive
put("framing", "startup_then_query", startup([("user", "u")]) + msg("Q", cstr("SELECT 1")))
put("framing", "extended", msg("P", cstr("") + cstr("SELECT $1") + b"\0\0") + msg("B", b"\0\0\0\0\0\0\0\0")
    + msg("E", b"\0\0\0\0\0") + msg("S", b""))
put("framing", "server", msg("Z", b"I") + msg("C", cstr("SELECT 1")) + msg("D", b"\0\1\0\0\0\1" + b"1"))

# ---- message parsers: the first byte picks the parser, the rest is the body
put("messages", "startup", b"0" + startup([("user", "u"), ("database", "d")])[4:])
put("messages", "cancel", b"0" + struct.pack("!Iii", 80877102, 1, 2))
put("messages", "error", b"E" + b"SERROR\0VERROR\0C42601\0Msyntax error\0Ddetail\0Hhint\0P1\0\0")
put("messages", "parameter_status", b"S" + cstr("TimeZone") + cstr("UTC"))
put("messages", "backend_key", b"K" + struct.pack("!ii", 42, 4242))
put("messages", "ready", b"ZT")
put("messages", "auth_sasl", b"R" + struct.pack("!i", 10) + cstr("SCRAM-SHA-256") + b"\0")
put("messages", "auth_md5", b"R" + struct.pack("!i", 5) + b"abcd")
put("messages", "query", b"Q" + cstr("SELECT 1"))
put("messages", "parse", b"P" + cstr("s1") + cstr("SELECT $1") + struct.pack("!hi", 1, 23))
put("messages", "bind", b"B" + cstr("") + cstr("s1") + b"\0\0\0\1\0\0\0\1" + b"7\0\0")
put("messages", "describe", b"DSs1\0")
put("messages", "password", b"p" + cstr("secret"))
put("messages", "sasl_initial", b"p" + cstr("SCRAM-SHA-256") + struct.pack("!i", 8) + b"n,,n=,r=")
put("messages", "command_complete", b"C" + cstr("DISCARD ALL"))
put("messages", "row_description", b"T" + struct.pack("!h", 2)
    + cstr("a") + struct.pack("!ihihih", 16384, 1, 23, 4, -1, 0)
    + cstr("b") + struct.pack("!ihihih", 0, 0, 25, -1, -1, 1))

# ---- classifier: statements from the benchmark corpus and session SQL
sql = [l for l in open(os.path.join(REPO, "bench/corpus/oltp.sql")).read().splitlines()
       if l.strip() and not l.startswith("--")]
for i, s in enumerate(sql[:12]):
    put("classifier", f"oltp_{i:02d}", s)
for name, s in [("set_local", "SET LOCAL statement_timeout = '5s'"),
                ("hint", "/* pgswitch: replica tag=reporting */ SELECT 1"),
                ("temp", "CREATE TEMP TABLE t AS SELECT 1; SELECT * FROM t"),
                ("dealloc", 'DEALLOCATE PREPARE "S_1";'),
                ("dollar", "SELECT $$a;b$$, E'x\\'y', U&'\\0041' /* c /* d */ */ FROM x"),
                ("commit", "commit work;"),
                ("cte_write", "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d")]:
    put("classifier", name, s)

# ---- config: the README's example, and a small transaction-mode one
readme = open(os.path.join(REPO, "README.md")).read()
put("config", "readme", re.search(r"```toml\n(.*?)```", readme, re.S).group(1))
put("config", "small", """[server]
listen = "127.0.0.1:6432"
pool_mode = "transaction"
[[backend]]
name = "a"
host = "127.0.0.1"
port = 5432
role = "replica"
[[user]]
name = "u"
password = "SCRAM-SHA-256$4096:cGdzd2l0Y2gtZnV6ei1zYWx0$%s:%s"
[[routing.rule]]
application_name = "reporting"
tag = "reporting"
""" % (b64(stored_key), b64(server_key)))

# numbers that are not TOML integers where integers are wanted (1e300 once reached undefined
# behaviour in toml++'s float-to-integer cast)
put("config", "floats", """[server]
listen = "127.0.0.1:6432"
max_client_conn = 1e300
[health]
period_ms = -1e300
[[backend]]
name = "a"
host = "127.0.0.1"
port = 5432.0
""")

# ---- tls: real ClientHellos (TLS 1.3 with 1.2 fallback, and 1.2 only), whole and in pieces
import ssl


def client_hello(maximum):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = maximum
    ctx.set_alpn_protocols(["postgresql"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


hello13 = client_hello(ssl.TLSVersion.TLSv1_3)
hello12 = client_hello(ssl.TLSVersion.TLSv1_2)
put("tls", "hello13", b"\0" + hello13)
put("tls", "hello13_pieces", b"\x07" + hello13)
put("tls", "hello12", b"\0" + hello12)
put("tls", "alert", b"\0" + bytes([21, 3, 3, 0, 2, 2, 40]))
put("tls", "plaintext_startup", b"\0" + startup([("user", "u"), ("database", "d")]))

# exchange: operation sequences from a fuzzing run, kept as they are (corpus/exchange/seq_*)
