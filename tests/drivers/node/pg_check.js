// node-postgres (npm `pg`) through pgswitch: simple and parameterized queries, named prepared
// statements, transactions, errors, 100k rows (buffered and paged through a portal), a pool of
// 20 clients, session settings and cancel. Prints a JSON summary; exits 1 if a check failed.
// Connection from PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE; DRIVER_MODE names the tables.
'use strict'
const pg = require('pg')
const { Check, expect, expectEq, expectCode, sleep } = require('./harness')

const mode = (process.env.DRIVER_MODE || 'session').replace(/[^a-z]/g, '')
const t = `nodepg_${mode}`
const base = {
  host: process.env.PGHOST,
  port: Number(process.env.PGPORT),
  user: process.env.PGUSER,
  password: process.env.PGPASSWORD,
  database: process.env.PGDATABASE,
  connectionTimeoutMillis: 20000,
  application_name: 'nodepg_check',
}

async function withClient(extra, fn) {
  const c = new pg.Client({ ...base, ...extra })
  await c.connect()
  try {
    return await fn(c)
  } finally {
    await c.end()
  }
}

// Reads of rows that other connections wrote run inside a transaction: pgswitch runs those on
// the primary in transaction mode, where an autocommit read may go to a lagging replica.
async function onPrimary(c, text, values) {
  await c.query('BEGIN')
  try {
    return await c.query(text, values)
  } finally {
    await c.query('COMMIT')
  }
}

const checks = new Check('node-postgres', mode)

checks.add('simple_queries', () => withClient({}, async (c) => {
  expectEq(1, (await c.query('SELECT 1 AS x')).rows[0].x, 'SELECT 1')
  const multi = await c.query("SELECT 1 AS a; SELECT 'two' AS b; SELECT 3 AS c")
  expectEq(3, multi.length, 'results of a multi-statement query')
  expectEq('two', multi[1].rows[0].b, 'second result')
  expectEq('nodepg_check', (await c.query('SHOW application_name')).rows[0].application_name,
    'application_name startup parameter')
}))

checks.add('setup_tables', () => withClient({}, async (c) => {
  await c.query(`DROP TABLE IF EXISTS ${t}_items, ${t}_conc`)
  await c.query(`CREATE TABLE ${t}_items (id int PRIMARY KEY, val text)`)
  await c.query(`CREATE TABLE ${t}_conc (worker int, n int, app text, PRIMARY KEY (worker, n))`)
}))

checks.add('parameterized_unnamed', () => withClient({}, async (c) => {
  for (let i = 0; i < 20; i++) {
    const r = await c.query('SELECT $1::int * 2 AS d, $2::text AS s, $3::jsonb AS j, $4::bytea AS b',
      [i, `it's ${i}`, JSON.stringify({ i }), Buffer.from([i, 0, 255])])
    expectEq(i * 2, r.rows[0].d, 'int')
    expectEq(`it's ${i}`, r.rows[0].s, 'text')
    expectEq(i, r.rows[0].j.i, 'jsonb')
    expect(Buffer.from([i, 0, 255]).equals(r.rows[0].b), 'bytea')
  }
}))

checks.add('named_prepared_statements', () => withClient({}, async (c) => {
  for (let i = 0; i < 30; i++) {
    const a = await c.query({ name: 'add_one', text: 'SELECT $1::int + 1 AS v', values: [i] })
    expectEq(i + 1, a.rows[0].v, 'add_one')
    const b = await c.query({ name: 'count_upto', text: 'SELECT count(*)::int AS n FROM generate_series(1, $1) g', values: [i] })
    expectEq(i, b.rows[0].n, 'count_upto')
    await c.query({ name: 'ins', text: `INSERT INTO ${t}_items (id, val) VALUES ($1, $2)`, values: [1000 + i, `p${i}`] })
  }
  const n = await c.query(`SELECT count(*)::int AS n FROM ${t}_items WHERE id >= 1000`)
  expectEq(30, n.rows[0].n, 'rows inserted by the named INSERT (read your writes)')
}))

// More distinct named statements than pgswitch keeps per server connection
// (max_prepared_statements = 200): evicted ones are prepared again when used.
checks.add('many_named_statements_lru', () => withClient({}, async (c) => {
  const n = 260
  for (let round = 0; round < 3; round++) {
    for (let k = 0; k < n; k++) {
      const i = round === 1 ? n - 1 - k : (k * 7 + round) % n
      const r = await c.query({ name: `lru_${i}`, text: `SELECT $1::int + ${i} AS v`, values: [round] })
      expectEq(round + i, r.rows[0].v, `statement ${i} round ${round}`)
    }
  }
}))

checks.add('notices', () => withClient({}, async (c) => {
  const got = []
  c.on('notice', (m) => got.push(m.message))
  await c.query("DO $$ BEGIN RAISE NOTICE 'hello %', 1; END $$")
  await c.query({ name: 'notice_fn', text: "SELECT set_config('client_min_messages', 'notice', true), $1::int AS v", values: [1] })
  expectEq('hello 1', got[0], 'notice delivered')
}))

checks.add('transactions', () => withClient({}, async (c) => {
  await c.query('BEGIN')
  for (let i = 1; i <= 10; i++) {
    await c.query({ name: 'tx_ins', text: `INSERT INTO ${t}_items (id, val) VALUES ($1, $2)`, values: [i, `c${i}`] })
  }
  await c.query('COMMIT')
  await c.query('BEGIN')
  for (let i = 11; i <= 20; i++) {
    await c.query({ name: 'tx_ins', text: `INSERT INTO ${t}_items (id, val) VALUES ($1, $2)`, values: [i, `r${i}`] })
  }
  expectEq(20, (await c.query(`SELECT count(*)::int AS n FROM ${t}_items WHERE id <= 20`)).rows[0].n,
    'own uncommitted rows inside the transaction')
  await c.query('ROLLBACK')
  expectEq(10, (await onPrimary(c, `SELECT count(*)::int AS n FROM ${t}_items WHERE id <= 20`)).rows[0].n,
    'after commit of 10 and rollback of 10')
  await c.query('BEGIN')
  await c.query(`INSERT INTO ${t}_items VALUES (21, 's')`)
  await c.query('SAVEPOINT sp')
  await c.query(`INSERT INTO ${t}_items VALUES (22, 's')`)
  await c.query('ROLLBACK TO SAVEPOINT sp')
  await c.query('COMMIT')
  expectEq(1, (await c.query(`SELECT count(*)::int AS n FROM ${t}_items WHERE id IN (21, 22)`)).rows[0].n,
    'savepoint (autocommit read of own write)')
}))

checks.add('errors_then_connection_works', () => withClient({}, async (c) => {
  await expectCode('23505', () => c.query(`INSERT INTO ${t}_items VALUES (1, 'dup')`), 'unique violation (simple)')
  expectEq(1, (await c.query('SELECT 1 AS x')).rows[0].x, 'works after the error')
  await expectCode('23505', () => c.query(`INSERT INTO ${t}_items VALUES ($1, $2)`, [1, 'dup']), 'unique violation (extended)')
  await expectCode('42601', () => c.query('SELEC 1'), 'syntax error')
  for (let round = 0; round < 3; round++) {
    await expectCode('23505', () => c.query({ name: 'err_ins', text: `INSERT INTO ${t}_items VALUES ($1, $2)`, values: [1, 'dup'] }),
      `unique violation (named statement), round ${round}`)
    await c.query({ name: 'err_ins', text: `INSERT INTO ${t}_items VALUES ($1, $2)`, values: [500 + round, 'ok'] })
  }
  // A named statement whose Parse fails is not kept: the same name with valid SQL then works.
  await expectCode('42P01', () => c.query({ name: 'bad_parse', text: 'SELECT * FROM no_such_table_xyz WHERE 1 = $1', values: [1] }),
    'Parse error of a named statement')
  await c.query('BEGIN')
  await c.query(`INSERT INTO ${t}_items VALUES (600, 'x')`)
  await expectCode('23505', () => c.query(`INSERT INTO ${t}_items VALUES (1, 'd')`), 'unique violation in a transaction')
  await expectCode('25P02', () => c.query('SELECT 1'), 'aborted transaction')
  await c.query('ROLLBACK')
  expectEq(0, (await onPrimary(c, `SELECT count(*)::int AS n FROM ${t}_items WHERE id = 600`)).rows[0].n, 'rolled back insert')
  expectEq(3, (await c.query('SELECT 3 AS x')).rows[0].x, 'works after the rollback')
}))

checks.add('many_rows', () => withClient({}, async (c) => {
  const r = await c.query({ text: 'SELECT i, md5(i::text) AS h FROM generate_series(1, $1::int) i', values: [100000], rowMode: 'array' })
  expectEq(100000, r.rows.length, 'rows (extended, buffered)')
  let sum = 0
  for (const row of r.rows) sum += row[0]
  expectEq(5000050000, sum, 'sum')
  const s = await c.query("SELECT i, repeat('x', 50) FROM generate_series(1, 100000) i")
  expectEq(100000, s.rows.length, 'rows (simple query)')
  // Paged through the unnamed portal: Execute with a row limit + Flush, no Sync until the end.
  const paged = await new Promise((resolve, reject) => {
    let n = 0, total = 0
    const q = new pg.Query({ text: 'SELECT i FROM generate_series(1, $1::int) i', values: [100000], rows: 1000, rowMode: 'array' })
    q.on('row', (row) => { n++; total += row[0] })
    q.on('error', reject)
    q.on('end', () => resolve({ n, total }))
    c.query(q)
  })
  expectEq(100000, paged.n, 'rows paged 1000 at a time')
  expectEq(5000050000, paged.total, 'sum of paged rows')
  expectEq(1, (await c.query('SELECT 1 AS x')).rows[0].x, 'works after paging')
}))

checks.add('large_values', () => withClient({}, async (c) => {
  const big = Buffer.alloc(3 * 1024 * 1024)
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 255
  const r = await c.query({ name: 'big', text: 'SELECT $1::bytea AS b, length($2::text) AS n', values: [big, 'z'.repeat(2 * 1024 * 1024)] })
  expect(big.equals(r.rows[0].b), '3 MiB bytea round trip')
  expectEq(2 * 1024 * 1024, r.rows[0].n, '2 MiB text parameter')
}))

// A pool of 20 clients runs 20 transactions at a time (each with named statements), through
// pgswitch's small server pool in transaction mode.
checks.add('concurrency_pool', async () => {
  const pool = new pg.Pool({ ...base, max: 20 })
  pool.on('error', () => {})
  try {
    const rounds = 5
    for (let round = 0; round < rounds; round++) {
      await Promise.all(Array.from({ length: 20 }, async (_, w) => {
        const c = await pool.connect()
        try {
          await c.query('BEGIN')
          await c.query('SET LOCAL application_name = \'nodepg_local\'')
          await c.query({ name: 'conc_ins', text: `INSERT INTO ${t}_conc (worker, n, app) VALUES ($1, $2, current_setting('application_name'))`, values: [w, round] })
          const r = await c.query({ name: 'conc_cnt', text: `SELECT count(*)::int AS n FROM ${t}_conc WHERE worker = $1`, values: [w] })
          expectEq(round + 1, r.rows[0].n, `worker ${w} sees its rows`)
          await c.query('COMMIT')
          const app = await c.query('SHOW application_name')
          expectEq('nodepg_check', app.rows[0].application_name, 'SET LOCAL ended with the transaction')
        } catch (e) {
          await c.query('ROLLBACK').catch(() => {})
          throw e
        } finally {
          c.release()
        }
      }))
    }
    const c = await pool.connect()
    try {
      expectEq(20 * rounds, (await onPrimary(c, `SELECT count(*)::int AS n FROM ${t}_conc`)).rows[0].n, 'rows from all workers')
      expectEq(20 * rounds, (await onPrimary(c, `SELECT count(*)::int AS n FROM ${t}_conc WHERE app = 'nodepg_local'`)).rows[0].n, 'SET LOCAL inside each transaction')
    } finally {
      c.release()
    }
    // Plain pool.query in parallel: autocommit reads and named statements over many clients.
    const res = await Promise.all(Array.from({ length: 200 }, (_, i) =>
      pool.query({ name: 'pool_sel', text: 'SELECT $1::int * 3 AS v', values: [i] })))
    res.forEach((r, i) => expectEq(i * 3, r.rows[0].v, 'pool.query result'))
  } finally {
    await pool.end()
  }
})

checks.add('settings_follow_client', async () => {
  let stop = false
  const noise = Array.from({ length: 3 }, (_, i) => withClient({ application_name: `noise${i}` }, async (c) => {
    await c.query("SET TIME ZONE 'UTC'")
    while (!stop) {
      const r = await c.query({ name: 'noise', text: "SELECT current_setting('TimeZone') AS tz, current_setting('application_name') AS app" })
      expectEq('UTC', r.rows[0].tz, 'noise TimeZone')
      expectEq(`noise${i}`, r.rows[0].app, 'noise application_name')
    }
  }))
  try {
    await withClient({}, async (c) => {
      await c.query("SET application_name = 'nodepg_settings'")
      await c.query("SET TIME ZONE 'America/New_York'")
      for (let i = 0; i < 50; i++) {
        const r = await c.query({
          name: 'settings',
          text: "SELECT current_setting('application_name') AS app, current_setting('TimeZone') AS tz, ('2020-01-01 00:00:00+00'::timestamptz)::text AS ts",
        })
        expectEq('nodepg_settings', r.rows[0].app, `application_name, round ${i}`)
        expectEq('America/New_York', r.rows[0].tz, `TimeZone, round ${i}`)
        expectEq('2019-12-31 19:00:00-05', r.rows[0].ts, `timestamptz text, round ${i}`)
      }
    })
  } finally {
    stop = true
    await Promise.all(noise)
  }
})

// Startup parameters that PostgreSQL does not report (statement_timeout, search_path via
// options) are applied on every server the client lands on.
checks.add('startup_parameters', () => withClient({ statement_timeout: 700, options: '-c search_path=nodepg_nowhere,public' }, async (c) => {
  for (let i = 0; i < 10; i++) {
    const r = await c.query({ name: 'startup', text: "SELECT current_setting('statement_timeout') AS st, current_setting('search_path') AS sp, array_to_string(current_schemas(false), ',') AS cs" })
    expectEq('700ms', r.rows[0].st, `statement_timeout, round ${i}`)
    expectEq('nodepg_nowhere,public', r.rows[0].sp, `search_path, round ${i}`)
    expectEq('public', r.rows[0].cs, `schemas in the search_path that exist, round ${i}`)
  }
  const t0 = Date.now()
  await expectCode('57014', () => c.query('SELECT pg_sleep(5)'), 'statement_timeout')
  expect(Date.now() - t0 < 4000, 'statement_timeout fired late')
  expectEq(1, (await c.query('SELECT 1 AS x')).rows[0].x, 'works after the timeout')
}))

checks.add('cancel', () => withClient({}, async (c) => {
  for (const named of [false, true]) {
    const cfg = named ? { name: 'sleep', text: 'SELECT pg_sleep($1)', values: [10] } : { text: 'SELECT pg_sleep(10)' }
    const q = new pg.Query(cfg)
    const done = new Promise((resolve) => { q.on('error', (e) => resolve(e)); q.on('end', () => resolve(null)) })
    const t0 = Date.now()
    c.query(q)
    await sleep(500)
    new pg.Client(base).cancel(c, q)
    const err = await done
    const ms = Date.now() - t0
    expect(err !== null, 'pg_sleep(10) was not cancelled')
    expectEq('57014', err.code, 'cancel SQLSTATE')
    expect(ms < 5000, `cancel took ${ms} ms`)
    expectEq(1, (await c.query('SELECT 1 AS x')).rows[0].x, 'works after cancel')
  }
}))

checks.run()
