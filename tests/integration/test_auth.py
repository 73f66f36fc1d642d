"""No plaintext secrets in the config (issue 13, item 4), against a real PostgreSQL 15:
- a [[user]] whose password is the SCRAM secret copied from pg_authid logs in end to end: the
  client's proof is checked against the secret and the backend login uses the ClientKey it
  recovers (pool connections opened after the first login too);
- with [auth] (PgBouncer's auth_user / auth_query) and no [[user]] entry for them, SCRAM and md5
  roles log in, a wrong password and an unknown user get the same 28P01, a role created or
  re-passworded later is picked up within auth.cache_ms, and lookups are cached;
- the passwords come from a file (`<key>_file`) or an environment variable (`<key>_env`);
- an auth user that cannot log in refuses clients with FATAL 08006, counted."""
from __future__ import annotations

import os
import sys
import time
import unittest
from contextlib import closing

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import PgCluster, PgSwitch  # noqa: E402
from proxycase import ProxyTestCase, budget, show_totals  # noqa: E402

ADMIN = [{"name": "admin", "password": "admin", "auth": "scram-sha-256"}]

# The documented way (docs/auth.md): a non-superuser auth user calls a SECURITY DEFINER
# function that reads pg_shadow, instead of being a superuser itself.
LOOKUP_FUNCTION = """
CREATE ROLE pgswitch_auth LOGIN PASSWORD 'lookup-pw';
CREATE FUNCTION public.pgswitch_lookup(u text, OUT usename name, OUT passwd text)
  RETURNS SETOF record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
  $$ SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = u $$;
REVOKE ALL ON FUNCTION public.pgswitch_lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.pgswitch_lookup(text) TO pgswitch_auth;
"""


def totals(sw: PgSwitch) -> dict:
    return show_totals(sw, password="admin")


def login_error(sw: PgSwitch, user: str, password: str, db: str = "appdb"):
    """(sqlstate, message) of a refused login; None when it succeeded."""
    try:
        conn = psycopg2.connect(sw.dsn(user=user, password=password, db=db))
    except psycopg2.OperationalError as e:
        return str(e)
    conn.close()
    return None


class AuthCase(ProxyTestCase):
    default_budget = 60.0

    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster(replicas=1).start()
        try:
            cls.cluster.psql(0, LOOKUP_FUNCTION)
            cls.app_secret = cls.cluster.psql(
                0, "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'").strip()
            assert cls.app_secret.startswith("SCRAM-SHA-256$"), cls.app_secret
        except BaseException:
            cls.cluster.stop()
            raise
        cls.sw = None

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()

    def start(self, **kw) -> PgSwitch:
        sw = PgSwitch(self.cluster, **kw)
        self.sw = sw
        self.addCleanup(sw.stop)
        return sw

    def query(self, sw: PgSwitch, user: str, password: str, sql: str, db: str = "appdb"):
        with closing(psycopg2.connect(sw.dsn(user=user, password=password, db=db))) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchone()[0]

    @budget(60)
    def test_scram_secret_only_config_end_to_end(self):
        """Only the secret from pg_authid is configured; health's password comes from an
        environment variable. Several connections at once make the pool open several backend
        logins, each with the recovered ClientKey."""
        os.environ["PGSWITCH_TEST_HEALTH_PW"] = "postgres"
        self.addCleanup(os.environ.pop, "PGSWITCH_TEST_HEALTH_PW", None)
        users = ADMIN + [{"name": "app", "password": self.app_secret}]
        sw = PgSwitch(self.cluster, pool_mode="transaction", users=users, start=False)
        self.sw = sw
        sw.config_path.write_text(sw.config_text().replace(
            'password = "postgres"', 'password_env = "PGSWITCH_TEST_HEALTH_PW"', 1))
        sw.start()
        self.addCleanup(sw.stop)
        conns = [psycopg2.connect(sw.dsn(user="app", password="app")) for _ in range(4)]
        try:
            curs = [c.cursor() for c in conns]
            for cur in curs:  # four transactions open at once: four backend logins
                cur.execute("BEGIN; SELECT current_user")
                self.assertEqual(cur.fetchone()[0], "app")
            for c in conns:
                c.commit()
        finally:
            for c in conns:
                c.close()
        self.assertIn("password authentication failed for user \"app\"",
                      login_error(sw, "app", "wrong") or "")
        self.assertNotIn("SCRAM-SHA-256$", sw.log(), "a secret reached the log")

    @budget(90)
    def test_auth_query_without_user_entries(self):
        pwfile = self.cluster.tmpdir / "auth_password"
        pwfile.write_text("lookup-pw\n")  # the final line break is not part of it
        sw = self.start(pool_mode="transaction", users=ADMIN, extra_toml=f"""
[auth]
user = "pgswitch_auth"
password_file = "{pwfile}"
query = "SELECT usename, passwd FROM public.pgswitch_lookup($1)"
database = "postgres"
cache_ms = 1000
""")
        # A SCRAM role: client SCRAM, backend login with the ClientKey.
        self.assertEqual(self.query(sw, "app", "app", "SELECT current_user"), "app")
        # An md5 role: the client is asked for md5, the backend gets the stored hash.
        self.assertEqual(self.query(sw, "md5user", "md5pass", "SELECT current_user",
                                    db="postgres"), "md5user")
        # Wrong password and unknown user: the same answer.
        wrong = login_error(sw, "app", "nope")
        unknown = login_error(sw, "nosuchuser", "nope")
        self.assertIn('password authentication failed for user "app"', wrong or "")
        self.assertIn('password authentication failed for user "nosuchuser"', unknown or "")
        # Cached: more logins of app within cache_ms run no query.
        before = totals(sw)["auth_lookups"]
        for _ in range(3):
            self.query(sw, "app", "app", "SELECT 1")
        self.assertEqual(totals(sw)["auth_lookups"], before)
        # A role created now, and a changed password, are seen after cache_ms at most.
        self.cluster.psql(0, "SET password_encryption = 'scram-sha-256'; "
                             "CREATE ROLE latecomer LOGIN PASSWORD 'late1'; "
                             "GRANT CONNECT ON DATABASE appdb TO latecomer")
        deadline = time.monotonic() + 5
        while login_error(sw, "latecomer", "late1") is not None:
            self.assertLess(time.monotonic(), deadline, "the new role never got in")
            time.sleep(0.2)
        self.cluster.psql(0, "ALTER ROLE latecomer PASSWORD 'late2'")
        time.sleep(1.2)
        self.assertIsNone(login_error(sw, "latecomer", "late2"))
        self.assertIn("password authentication failed",
                      login_error(sw, "latecomer", "late1") or "")
        t = totals(sw)
        self.assertGreater(t["auth_lookups"], before)
        self.assertEqual(t["auth_lookup_failures"], 0)
        self.assertNotIn("lookup-pw", sw.log(), "the auth user's password reached the log")

    @budget(60)
    def test_hba_file_with_looked_up_users(self):
        """hba_file and [auth] together: a refused client costs no lookup, and an md5 line
        lets a role whose stored password is a SCRAM secret log in (with SCRAM, as
        PostgreSQL does)."""
        hba = self.cluster.tmpdir / "pgswitch_hba.conf"
        hba.write_text("host all app,md5user 127.0.0.1/32 md5\n"
                       "host pgswitch admin 127.0.0.1/32 scram-sha-256\n"
                       "host all all 127.0.0.1/32 reject\n")
        sw = self.start(users=ADMIN, server_toml=f'hba_file = "{hba}"', extra_toml="""
[auth]
user = "pgswitch_auth"
password = "lookup-pw"
query = "SELECT usename, passwd FROM public.pgswitch_lookup($1)"
database = "postgres"
""")
        self.assertEqual(self.query(sw, "app", "app", "SELECT current_user"), "app")
        self.assertEqual(self.query(sw, "md5user", "md5pass", "SELECT current_user",
                                    db="postgres"), "md5user")
        before = totals(sw)["auth_lookups"]
        refused = login_error(sw, "latecomer2", "x") or ""
        self.assertIn('pg_hba.conf rejects connection for host "127.0.0.1", user "latecomer2"',
                      refused)
        self.assertEqual(totals(sw)["auth_lookups"], before, "a refused client was looked up")

    @budget(60)
    def test_auth_user_that_cannot_log_in(self):
        sw = self.start(users=ADMIN, extra_toml="""
[auth]
user = "pgswitch_auth"
password = "not-its-password"
query = "SELECT usename, passwd FROM public.pgswitch_lookup($1)"
database = "postgres"
""")
        err = login_error(sw, "app", "app") or ""
        self.assertIn('could not look up the password of user "app"', err)
        self.assertEqual(totals(sw)["auth_lookup_failures"], 1)
        # Users with a [[user]] entry are not affected.
        self.assertEqual(self.query(sw, "admin", "admin", "SHOW VERSION", db="pgswitch")[:8],
                         "pgswitch")


if __name__ == "__main__":
    unittest.main()
