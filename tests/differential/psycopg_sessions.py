"""psycopg 3 sessions of the differential suite: create-then-read, pipelines, prepared
statements, COPY in/out, transactions with savepoints and errors, catalog look-ups (also the
driver's own TypeInfo.fetch), two connections of one application, a writing plpgsql function
called as SELECT. Prints a JSON transcript (tests/differential/recorder.py).

    python3 psycopg_sessions.py DSN PREFIX     # every table name starts with PREFIX
"""
from __future__ import annotations

import os
import sys
import time

import psycopg
from psycopg.types.enum import EnumInfo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from recorder import Recorder  # noqa: E402


def run(conn, sql, params=None, prepare=None):
    """Executes sql; returns the rows if it returned some, else the command tag."""
    cur = conn.execute(sql, params, prepare=prepare)
    if cur.description is not None:
        return {"columns": [d.name for d in cur.description], "rows": cur.fetchall()}
    return {"tag": cur.statusmessage}


def psy_create_read(rec: Recorder, dsn: str, P: str):
    with psycopg.connect(dsn, autocommit=True) as c:
        rec.step("create", lambda: run(c, f"CREATE TABLE {P}cr (id int PRIMARY KEY, v text)"))
        rec.step("read_empty", lambda: run(c, f"SELECT id, v FROM {P}cr ORDER BY id"))
        rec.step("insert", lambda: run(c, f"INSERT INTO {P}cr VALUES (%s, %s), (%s, %s)",
                                       (1, "one", 2, "two")))
        rec.step("read_back", lambda: run(c, f"SELECT id, v FROM {P}cr ORDER BY id"))
        rec.step("read_back_param", lambda: run(c, f"SELECT v FROM {P}cr WHERE id = %s", (2,)))
        rec.step("insert_returning", lambda: run(
            c, f"INSERT INTO {P}cr VALUES (3, 'three') RETURNING id, v"))
        rec.step("count", lambda: run(c, f"SELECT count(*) FROM {P}cr"))
        rec.step("update", lambda: run(c, f"UPDATE {P}cr SET v = v || '!' WHERE id < %s", (3,)))
        rec.step("read_updated", lambda: run(c, f"SELECT id, v FROM {P}cr ORDER BY id"))
    # The same with implicit transactions (psycopg's default): each commit, then a read on the
    # same connection in its next transaction.
    with psycopg.connect(dsn) as c:
        rec.step("txn_create_insert", lambda: run(
            c, f"CREATE TABLE {P}cr2 AS SELECT g AS id FROM generate_series(1, 5) g"))
        rec.step("txn_commit", lambda: c.commit())
        rec.step("txn_read", lambda: run(c, f"SELECT sum(id) FROM {P}cr2"))
        rec.step("txn_commit_2", lambda: c.commit())


def psy_pipeline(rec: Recorder, dsn: str, P: str):
    with psycopg.connect(dsn, autocommit=True) as c:
        rec.step("create", lambda: run(c, f"CREATE TABLE {P}pl (id int PRIMARY KEY, v text)"))

        def writes_and_read():
            with c.pipeline() as p:
                c1 = c.execute(f"INSERT INTO {P}pl VALUES (%s, %s)", (1, "a"))
                c2 = c.execute(f"INSERT INTO {P}pl VALUES (%s, %s)", (2, "b"))
                c3 = c.execute(f"SELECT id, v FROM {P}pl ORDER BY id")
                p.sync()
                return [c1.statusmessage, c2.statusmessage, c3.fetchall()]
        rec.step("pipeline_writes_then_read", writes_and_read)

        def reads_only():
            with c.pipeline():
                c1 = c.execute(f"SELECT count(*) FROM {P}pl")
                c2 = c.execute(f"SELECT v FROM {P}pl WHERE id = %s", (2,))
                c3 = c.execute("SELECT %s::int + 1", (41,))
            return [c1.fetchall(), c2.fetchall(), c3.fetchall()]
        rec.step("pipeline_reads_after_sync", reads_only)

        def executemany():
            with c.cursor() as cur:
                cur.executemany(f"INSERT INTO {P}pl VALUES (%s, %s)",
                                [(i, f"m{i}") for i in range(10, 20)])
                return cur.rowcount
        rec.step("executemany", executemany)
        rec.step("count_after_executemany", lambda: run(c, f"SELECT count(*) FROM {P}pl"))

        def pipeline_error():
            out = []
            try:
                with c.pipeline() as p:
                    c.execute(f"INSERT INTO {P}pl VALUES (%s, %s)", (30, "ok"))
                    p.sync()
                    c.execute(f"INSERT INTO {P}pl VALUES (%s, %s)", (1, "dup"))
                    c.execute(f"SELECT count(*) FROM {P}pl")
                    p.sync()
            except psycopg.Error as e:
                out.append([type(e).__name__, e.sqlstate])
            return out
        rec.step("pipeline_error_23505", pipeline_error)
        rec.step("read_after_pipeline_error",
                 lambda: run(c, f"SELECT id, v FROM {P}pl WHERE id IN (1, 30) ORDER BY id"))

        def pipeline_transaction():
            with c.pipeline():
                with c.transaction():
                    c.execute(f"INSERT INTO {P}pl VALUES (%s, %s)", (40, "tx"))
                    c.execute(f"UPDATE {P}pl SET v = 'upd' WHERE id = %s", (10,))
            return "committed"
        rec.step("pipeline_transaction", pipeline_transaction)
        rec.step("read_after_pipeline_transaction",
                 lambda: run(c, f"SELECT id, v FROM {P}pl WHERE id IN (10, 40) ORDER BY id"))


def psy_prepared(rec: Recorder, dsn: str, P: str):
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as c:
        rec.step("create", lambda: run(c, f"CREATE TABLE {P}pr (id int PRIMARY KEY, n int)"))
        q_ins = f"INSERT INTO {P}pr VALUES (%s, %s)"
        q_sel = f"SELECT n FROM {P}pr WHERE id = %s"
        for i in range(3):
            rec.step(f"insert_{i}", lambda i=i: run(c, q_ins, (i, i * i), prepare=True))
            rec.step(f"select_{i}", lambda i=i: run(c, q_sel, (i,), prepare=True))
        rec.step("prepared_count", lambda: run(c, f"SELECT count(*) FROM {P}pr", prepare=True))
        rec.step("alter_table", lambda: run(c, f"ALTER TABLE {P}pr ADD COLUMN s text DEFAULT 's'"))
        rec.step("prepared_star_after_alter",
                 lambda: run(c, f"SELECT * FROM {P}pr WHERE id = %s", (1,), prepare=True))


def psy_copy(rec: Recorder, dsn: str, P: str):
    with psycopg.connect(dsn, autocommit=True) as c:
        rec.step("create", lambda: run(c, f"CREATE TABLE {P}cp (id int PRIMARY KEY, v text)"))

        def copy_in():
            with c.cursor() as cur:
                with cur.copy(f"COPY {P}cp (id, v) FROM STDIN") as cp:
                    for i in range(100):
                        cp.write_row((i, f"row {i}"))
                return cur.statusmessage
        rec.step("copy_in", copy_in)
        rec.step("count_after_copy_in", lambda: run(c, f"SELECT count(*), sum(id) FROM {P}cp"))

        def copy_out():
            with c.cursor() as cur:
                with cur.copy(f"COPY (SELECT id, v FROM {P}cp WHERE id < 5 ORDER BY id) "
                              "TO STDOUT") as cp:
                    rows = list(cp.rows())
                return {"rows": rows, "tag": cur.statusmessage}
        rec.step("copy_out", copy_out)

        def copy_table_out():
            with c.cursor() as cur:
                with cur.copy(f"COPY {P}cp TO STDOUT WITH (FORMAT csv)") as cp:
                    data = b"".join(bytes(b) for b in cp)
                return {"lines": len(data.splitlines()), "tag": cur.statusmessage}
        rec.step("copy_table_out_csv", copy_table_out)

        def copy_in_bad():
            with c.cursor() as cur:
                with cur.copy(f"COPY {P}cp (id, v) FROM STDIN") as cp:
                    cp.write(b"500\tok\nnot_a_number\tbad\n")
                return cur.statusmessage
        rec.step("copy_in_bad_22P02", copy_in_bad)
        rec.step("count_after_bad_copy", lambda: run(c, f"SELECT count(*) FROM {P}cp"))

        def copy_in_txn():
            with c.transaction():
                c.execute(f"DELETE FROM {P}cp WHERE id >= 50")
                with c.cursor() as cur:
                    with cur.copy(f"COPY {P}cp (id, v) FROM STDIN") as cp:
                        cp.write_row((1000, "in txn"))
            return "committed"
        rec.step("copy_in_transaction", copy_in_txn)
        rec.step("read_after_copy_txn",
                 lambda: run(c, f"SELECT count(*), max(id) FROM {P}cp"))


def psy_transactions(rec: Recorder, dsn: str, P: str):
    with psycopg.connect(dsn, autocommit=True) as c:
        rec.step("create", lambda: run(c, f"CREATE TABLE {P}tx (id int PRIMARY KEY, v text)"))

        def nested():
            out = []
            with c.transaction():
                c.execute(f"INSERT INTO {P}tx VALUES (1, 'outer')")
                try:
                    with c.transaction():  # SAVEPOINT
                        c.execute(f"INSERT INTO {P}tx VALUES (2, 'inner')")
                        c.execute(f"INSERT INTO {P}tx VALUES (1, 'dup')")
                except psycopg.errors.UniqueViolation as e:
                    out.append(["inner rolled back", e.sqlstate])
                c.execute(f"INSERT INTO {P}tx VALUES (3, 'after savepoint')")
                out.append(c.execute(f"SELECT id FROM {P}tx ORDER BY id").fetchall())
            return out
        rec.step("nested_transaction_with_savepoint", nested)
        rec.step("read_after_commit", lambda: run(c, f"SELECT id, v FROM {P}tx ORDER BY id"))

        def aborted():
            out = []
            try:
                with c.transaction():
                    c.execute(f"INSERT INTO {P}tx VALUES (4, 'x')")
                    c.execute("SELECT 1 / 0")
            except psycopg.Error as e:
                out.append(e.sqlstate)
            return out
        rec.step("transaction_error_22012", aborted)
        rec.step("read_after_rollback", lambda: run(c, f"SELECT count(*) FROM {P}tx"))

        def explicit():
            out = []
            c.execute("BEGIN")
            c.execute(f"UPDATE {P}tx SET v = 'changed' WHERE id = 1")
            for sql in ("SELECT * FROM no_such_table_anywhere", "SELECT 1"):
                try:
                    c.execute(sql)
                    out.append("ok")
                except psycopg.Error as e:
                    out.append(e.sqlstate)
            c.execute("ROLLBACK")
            return out
        rec.step("explicit_begin_errors_42P01_25P02", explicit)
        rec.step("read_after_explicit_rollback",
                 lambda: run(c, f"SELECT v FROM {P}tx WHERE id = 1"))
        rec.step("undefined_column_42703", lambda: run(c, f"SELECT nope FROM {P}tx"))
        rec.step("check_violation_23514", lambda: run(
            c, f"ALTER TABLE {P}tx ADD CONSTRAINT {P}tx_pos CHECK (id > 100)"))
        rec.step("serialization_isolation_read", lambda: _isolated_read(c, P))


def _isolated_read(c, P):
    with c.transaction():
        c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        a = c.execute(f"SELECT count(*) FROM {P}tx").fetchall()
        b = c.execute("SHOW transaction_isolation").fetchall()
    return [a, b]


def psy_metadata(rec: Recorder, dsn: str, P: str):
    with psycopg.connect(dsn, autocommit=True) as c:
        rec.step("create", lambda: run(
            c, f"CREATE TYPE {P}mood AS ENUM ('sad', 'ok', 'happy'); "
               f"CREATE TABLE {P}md (id int PRIMARY KEY, m {P}mood, note text)"))

        def enum_info():
            info = EnumInfo.fetch(c, f"{P}mood")
            return None if info is None else {"name": info.name, "labels": info.labels}
        rec.step("enum_type_info_fetch", enum_info)
        rec.step("information_schema_columns", lambda: run(
            c, "SELECT column_name, data_type, udt_name FROM information_schema.columns "
               "WHERE table_name = %s ORDER BY ordinal_position", (f"{P}md",)))
        rec.step("pg_catalog_attributes", lambda: run(
            c, "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull "
               "FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 "
               "ORDER BY a.attnum", (f"{P}md",)))
        rec.step("to_regclass", lambda: run(c, "SELECT to_regclass(%s) IS NOT NULL",
                                            (f"{P}md",)))
        rec.step("insert_enum", lambda: run(c, f"INSERT INTO {P}md VALUES (1, 'happy', 'n')"))
        rec.step("read_enum", lambda: run(c, f"SELECT id, m::text FROM {P}md"))
        rec.step("bad_enum_value_22P02",
                 lambda: run(c, f"INSERT INTO {P}md VALUES (2, 'furious', 'n')"))


def settle():
    """Waits longer than the replicas' apply delay plus two health rounds (the harness sets
    DIFF_SETTLE_MS): connections opened just before age like pooled ones, and what was
    written before has reached the replicas, so a read may be sent there."""
    time.sleep(int(os.environ.get("DIFF_SETTLE_MS", "1500")) / 1000)


def psy_two_connections(rec: Recorder, dsn: str, P: str):
    with psycopg.connect(dsn) as a, psycopg.connect(dsn, autocommit=True) as b:
        rec.step("b_warm_up_read", lambda: run(b, "SELECT 1"))
        settle()
        rec.step("a_create_commit", lambda: (run(
            a, f"CREATE TABLE {P}two (id int PRIMARY KEY, v text)"), a.commit())[0])
        rec.step("b_read_new_table", lambda: run(b, f"SELECT count(*) FROM {P}two"))
        for i in range(3):
            rec.step(f"a_insert_commit_{i}", lambda i=i: (run(
                a, f"INSERT INTO {P}two VALUES (%s, %s)", (i, f"v{i}")), a.commit())[0])
            rec.step(f"b_read_{i}", lambda: run(b, f"SELECT count(*), max(id) FROM {P}two"))
        rec.step("a_update_commit", lambda: (run(
            a, f"UPDATE {P}two SET v = 'new' WHERE id = 0"), a.commit())[0])
        rec.step("b_read_update", lambda: run(b, f"SELECT v FROM {P}two WHERE id = 0"))
        rec.step("a_delete_commit", lambda: (run(a, f"DELETE FROM {P}two"), a.commit())[0])
        rec.step("b_read_delete", lambda: run(b, f"SELECT count(*) FROM {P}two"))


def psy_write_function(rec: Recorder, dsn: str, P: str):
    with psycopg.connect(dsn, autocommit=True) as c:
        rec.step("create", lambda: run(c, f"""
            CREATE TABLE {P}wf (id serial PRIMARY KEY, note text);
            CREATE FUNCTION {P}wf_add(n text) RETURNS bigint LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO {P}wf (note) VALUES (n); RETURN (SELECT count(*) FROM {P}wf); END $$
            """))
        rec.step("call_extended_protocol", lambda: run(c, f"SELECT {P}wf_add(%s)", ("ext",)))
        rec.step("call_prepared", lambda: run(c, f"SELECT {P}wf_add(%s)", ("prep",),
                                              prepare=True))
        cc = psycopg.ClientCursor(c)
        rec.step("call_simple_protocol", lambda: (
            cc.execute(f"SELECT {P}wf_add(%s)", ("simple",)), cc.fetchall())[1])
        rec.step("read_back", lambda: run(c, f"SELECT id, note FROM {P}wf ORDER BY id"))


def psy_write_function_replicated(rec: Recorder, dsn: str, P: str):
    """The function and its table were created by the harness and have reached the replicas
    (tests/differential/setup.sql): only the write inside SELECT is at stake here."""
    settle()  # nothing written lately: a consistency mode may send the call to a replica
    with psycopg.connect(dsn, autocommit=True) as c:
        rec.step("call_extended_protocol", lambda: run(c, f"SELECT {P}wfr_add(%s)", ("ext",)))
        rec.step("call_prepared", lambda: run(c, f"SELECT {P}wfr_add(%s)", ("prep",),
                                              prepare=True))
        cc = psycopg.ClientCursor(c)
        rec.step("call_simple_protocol", lambda: (
            cc.execute(f"SELECT {P}wfr_add(%s)", ("simple",)), cc.fetchall())[1])


SCENARIOS = [psy_create_read, psy_pipeline, psy_prepared, psy_copy, psy_transactions,
             psy_metadata, psy_two_connections, psy_write_function,
             psy_write_function_replicated]


def main(argv):
    dsn, prefix = argv[1], argv[2]
    only = [s for s in os.environ.get("DIFF_ONLY", "").split(",") if s]
    scen = [s for s in SCENARIOS if not only or s.__name__ in only]
    Recorder().run_scenarios(scen, dsn, prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
