"""asyncpg sessions of the differential suite: prepared statements, copy_records_to_table /
copy_to_table / copy_from_query / copy_from_table, transactions with savepoints and errors,
type introspection of a new type, a pool whose connections write and read, a writing plpgsql
function called as SELECT. Prints a JSON transcript (tests/differential/recorder.py).

    python3 asyncpg_sessions.py HOST PORT USER PASSWORD DB PREFIX
"""
from __future__ import annotations

import asyncio
import io
import os
import sys

import asyncpg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from recorder import Recorder  # noqa: E402


def rows(records):
    return [list(r.values()) for r in records]


async def apg_prepared(rec: Recorder, connect, P: str):
    c = await connect()
    try:
        await rec.astep("create", lambda: c.execute(
            f"CREATE TABLE {P}pr (id int PRIMARY KEY, v text)"))
        st = {}
        await rec.astep("prepare_insert", lambda: _prep(
            c, f"INSERT INTO {P}pr VALUES ($1, $2)", st, "ins"))
        await rec.astep("prepare_select", lambda: _prep(
            c, f"SELECT id, v FROM {P}pr WHERE id <= $1 ORDER BY id", st, "sel"))
        for i in range(3):
            if "ins" in st:
                await rec.astep(f"insert_{i}", lambda i=i: _exec_prep(st["ins"], i, f"v{i}"))
            if "sel" in st:
                await rec.astep(f"select_{i}", lambda i=i: _fetch_rows(st["sel"], i))
        await rec.astep("fetchval_count", lambda: c.fetchval(f"SELECT count(*) FROM {P}pr"))
        await rec.astep("fetchrow", lambda: _row(c.fetchrow(
            f"SELECT v FROM {P}pr WHERE id = $1", 2)))
        await rec.astep("executemany", lambda: c.executemany(
            f"INSERT INTO {P}pr VALUES ($1, $2)", [(i, f"m{i}") for i in range(10, 15)]))
        await rec.astep("count_after_executemany",
                        lambda: c.fetchval(f"SELECT count(*) FROM {P}pr"))
        await rec.astep("prepare_missing_table_42P01",
                        lambda: _prep(c, f"SELECT * FROM {P}pr_missing"))
        await rec.astep("division_by_zero_22012", lambda: c.fetchval("SELECT 1 / $1::int", 0))
    finally:
        await c.close()


async def _prep(c, sql, keep=None, key=None):
    """Prepares sql; returns the result columns (the statement is kept in keep[key])."""
    st = await c.prepare(sql)
    if keep is not None:
        keep[key] = st
    return [a.name for a in st.get_attributes()]


async def _exec_prep(st, *args):
    await st.fetch(*args)
    return st.get_statusmsg()


async def _fetch_rows(st, arg):
    return rows(await st.fetch(arg))


async def _row(coro):
    r = await coro
    return None if r is None else list(r.values())


async def apg_copy(rec: Recorder, connect, P: str):
    c = await connect()
    try:
        await rec.astep("create", lambda: c.execute(
            f"CREATE TABLE {P}cp (id int PRIMARY KEY, v text, n numeric)"))
        await rec.astep("copy_records_to_table", lambda: c.copy_records_to_table(
            f"{P}cp", records=[(i, f"r{i}", i / 2) for i in range(50)],
            columns=["id", "v", "n"]))
        await rec.astep("count_after_copy_records",
                        lambda: c.fetchval(f"SELECT count(*) FROM {P}cp"))
        src = io.BytesIO(b"".join(f"{i},csv {i},{i}\n".encode() for i in range(100, 120)))
        await rec.astep("copy_to_table_csv", lambda: c.copy_to_table(
            f"{P}cp", source=src, columns=["id", "v", "n"], format="csv"))
        await rec.astep("read_after_copy_to_table", lambda: _rows(c.fetch(
            f"SELECT id, v, n FROM {P}cp WHERE id >= 118 ORDER BY id")))

        async def copy_from_query():
            out = io.BytesIO()
            status = await c.copy_from_query(
                f"SELECT id, v FROM {P}cp WHERE id < $1 ORDER BY id", 5, output=out,
                format="csv")
            return {"status": status, "data": out.getvalue().decode()}
        await rec.astep("copy_from_query", copy_from_query)

        async def copy_from_table():
            out = io.BytesIO()
            status = await c.copy_from_table(f"{P}cp", output=out, columns=["id"])
            return {"status": status, "lines": len(out.getvalue().splitlines())}
        await rec.astep("copy_from_table", copy_from_table)
        await rec.astep("copy_records_bad_22P02", lambda: c.copy_to_table(
            f"{P}cp", source=io.BytesIO(b"x,y,z\n"), columns=["id", "v", "n"], format="csv"))

        async def copy_in_txn():
            async with c.transaction():
                await c.execute(f"DELETE FROM {P}cp WHERE id >= 100")
                await c.copy_records_to_table(f"{P}cp", records=[(999, "txn", 1)])
            return "committed"
        await rec.astep("copy_records_in_transaction", copy_in_txn)
        await rec.astep("read_after_copy_txn", lambda: _row(c.fetchrow(
            f"SELECT count(*), max(id) FROM {P}cp")))
    finally:
        await c.close()


async def apg_copy_replicated(rec: Recorder, connect, P: str):
    """copy_records_to_table into a table created by the harness and replayed by the replicas
    (tests/differential/setup.sql): asyncpg prepares its introspection query with
    Parse/Describe/Flush and then sends COPY ... FROM STDIN, which must reach the primary."""
    c = await connect()
    try:
        await _settle()
        for i in range(3):
            await rec.astep(f"copy_records_{i}", lambda i=i: c.copy_records_to_table(
                f"{P}cpr", records=[(i, "a"), (i, "b")], columns=["id", "v"]))
        await rec.astep("statement_after_copy", lambda: c.fetchval("SELECT $1::int + 1", 41))
    finally:
        await c.close()


async def _rows(coro):
    return rows(await coro)


async def apg_transactions(rec: Recorder, connect, P: str):
    c = await connect()
    try:
        await rec.astep("create", lambda: c.execute(
            f"CREATE TABLE {P}tx (id int PRIMARY KEY, v text)"))

        async def nested():
            out = []
            async with c.transaction():
                await c.execute(f"INSERT INTO {P}tx VALUES (1, 'outer')")
                try:
                    async with c.transaction():  # SAVEPOINT
                        await c.execute(f"INSERT INTO {P}tx VALUES (2, 'inner')")
                        await c.execute(f"INSERT INTO {P}tx VALUES (1, 'dup')")
                except asyncpg.UniqueViolationError as e:
                    out.append(e.sqlstate)
                await c.execute(f"INSERT INTO {P}tx VALUES (3, 'after')")
                out.append(rows(await c.fetch(f"SELECT id FROM {P}tx ORDER BY id")))
            return out
        await rec.astep("nested_transaction_with_savepoint", nested)
        await rec.astep("read_after_commit", lambda: _rows(c.fetch(
            f"SELECT id, v FROM {P}tx ORDER BY id")))

        async def failing():
            try:
                async with c.transaction():
                    await c.execute(f"INSERT INTO {P}tx VALUES (4, 'x')")
                    await c.execute(f"INSERT INTO {P}tx VALUES (NULL, 'x')")
            except asyncpg.PostgresError as e:
                return e.sqlstate
            return "no error"
        await rec.astep("transaction_error_23502", failing)
        await rec.astep("read_after_rollback", lambda: c.fetchval(f"SELECT count(*) FROM {P}tx"))

        async def read_only():
            async with c.transaction(readonly=True):
                n = await c.fetchval(f"SELECT count(*) FROM {P}tx")
                try:
                    await c.execute(f"DELETE FROM {P}tx")
                except asyncpg.PostgresError as e:
                    return [n, e.sqlstate]
            return [n, "no error"]
        await rec.astep("read_only_transaction_25006", read_only)

        async def repeatable_read():
            async with c.transaction(isolation="repeatable_read"):
                return [await c.fetchval(f"SELECT count(*) FROM {P}tx"),
                        await c.fetchval("SHOW transaction_isolation")]
        await rec.astep("repeatable_read_transaction", repeatable_read)
    finally:
        await c.close()


async def apg_types(rec: Recorder, connect, P: str):
    c = await connect()
    try:
        await rec.astep("create_type_and_table", lambda: c.execute(
            f"CREATE TYPE {P}pair AS (a int, b text); "
            f"CREATE TYPE {P}color AS ENUM ('red', 'green'); "
            f"CREATE TABLE {P}ty (id int PRIMARY KEY, p {P}pair, c {P}color)"))
        # asyncpg introspects unknown type OIDs (a catalog query of its own) before decoding.
        await rec.astep("insert_composite", lambda: c.execute(
            f"INSERT INTO {P}ty VALUES (1, ROW(7, 'seven'), 'green')"))
        await rec.astep("read_composite_and_enum", lambda: _rows(c.fetch(
            f"SELECT id, p, c FROM {P}ty ORDER BY id")))
        await rec.astep("param_of_new_type", lambda: c.fetchval(
            f"SELECT $1::{P}color::text", "red"))

        async def set_codec():
            await c.set_type_codec(f"{P}color", encoder=str, decoder=lambda s: s.upper(),
                                   schema="public", format="text")
            return await c.fetchval(f"SELECT c FROM {P}ty WHERE id = 1")
        await rec.astep("set_type_codec", set_codec)
    finally:
        await c.close()


async def apg_pool(rec: Recorder, connect, P: str, pool_factory):
    pool = await pool_factory()
    try:
        a = await pool.acquire()
        b = await pool.acquire()
        try:
            await rec.astep("b_warm_up_read", lambda: b.fetchval("SELECT 1"))
            # Pooled connections are old: older than the replicas' apply delay plus a health
            # round.
            await _settle()
            await rec.astep("a_create", lambda: a.execute(
                f"CREATE TABLE {P}pool (id int PRIMARY KEY)"))
            await rec.astep("b_read_new_table",
                            lambda: b.fetchval(f"SELECT count(*) FROM {P}pool"))
            for i in range(3):
                await rec.astep(f"a_insert_{i}", lambda i=i: a.execute(
                    f"INSERT INTO {P}pool VALUES ($1)", i))
                await rec.astep(f"b_read_{i}", lambda: _row(b.fetchrow(
                    f"SELECT count(*), max(id) FROM {P}pool")))

            async def a_txn():
                async with a.transaction():
                    await a.execute(f"UPDATE {P}pool SET id = id + 100")
                return "committed"
            await rec.astep("a_transaction", a_txn)
            await rec.astep("b_read_after_txn",
                            lambda: b.fetchval(f"SELECT min(id) FROM {P}pool"))
        finally:
            await pool.release(a)
            await pool.release(b)
        # pool.execute / pool.fetchval take whichever connection is free.
        await rec.astep("pool_execute", lambda: pool.execute(f"DELETE FROM {P}pool"))
        await rec.astep("pool_fetchval", lambda: pool.fetchval(f"SELECT count(*) FROM {P}pool"))
    finally:
        await pool.close()


async def apg_write_function(rec: Recorder, connect, P: str):
    c = await connect()
    try:
        await rec.astep("create", lambda: c.execute(f"""
            CREATE TABLE {P}wf (id serial PRIMARY KEY, note text);
            CREATE FUNCTION {P}wf_add(n text) RETURNS bigint LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO {P}wf (note) VALUES (n); RETURN (SELECT count(*) FROM {P}wf); END $$
            """))
        await rec.astep("call_fetchval", lambda: c.fetchval(f"SELECT {P}wf_add($1)", "a"))
        await rec.astep("call_execute_simple", lambda: c.execute(f"SELECT {P}wf_add('b')"))
        await rec.astep("read_back", lambda: _rows(c.fetch(
            f"SELECT id, note FROM {P}wf ORDER BY id")))
    finally:
        await c.close()


async def apg_write_function_replicated(rec: Recorder, connect, P: str):
    """The function and its table were created by the harness and have reached the replicas
    (tests/differential/setup.sql): only the write inside SELECT is at stake here."""
    c = await connect()
    try:
        await _settle()
        await rec.astep("call_fetchval", lambda: c.fetchval(f"SELECT {P}wfr_add($1)", "a"))
        await rec.astep("call_execute_simple", lambda: c.execute(
            f"SELECT {P}wfr_add('b')"))
        await rec.astep("call_prepared", lambda: _prep_call(c, f"SELECT {P}wfr_add($1)"))
    finally:
        await c.close()


async def _settle():
    """Waits until the replicas have replayed what this program wrote before (the harness sets
    DIFF_SETTLE_MS: their apply delay plus two health rounds), so that a consistency mode
    may send the next read to a replica: otherwise the scenario would test nothing there."""
    await asyncio.sleep(int(os.environ.get("DIFF_SETTLE_MS", "1500")) / 1000)


async def _prep_call(c, sql):
    st = await c.prepare(sql)
    return await st.fetchval("c")


SCENARIOS = ["apg_prepared", "apg_copy", "apg_copy_replicated", "apg_transactions", "apg_types",
             "apg_pool", "apg_write_function", "apg_write_function_replicated"]


async def amain(host, port, user, password, db, P):
    kw = dict(host=host, port=int(port), user=user, password=password, database=db,
              timeout=20, command_timeout=60)

    def connect():
        return asyncpg.connect(**kw)

    def pool_factory():
        return asyncpg.create_pool(min_size=2, max_size=2, **kw)

    rec = Recorder()
    only = [s for s in os.environ.get("DIFF_ONLY", "").split(",") if s]
    for name in SCENARIOS:
        if only and name not in only:
            continue
        rec.scenario(name)
        fn = globals()[name]
        try:
            if name == "apg_pool":
                await fn(rec, connect, P, pool_factory)
            else:
                await fn(rec, connect, P)
        except Exception as e:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            from recorder import error_result
            rec.emit("scenario_aborted", error_result(e))
    print('{"done": true}', flush=True)


if __name__ == "__main__":
    asyncio.run(amain(*sys.argv[1:7]))
