// postgres.js (npm `postgres`) through pgswitch: it prepares every parameterized query as a
// named statement by default and pipelines queries on a connection. Simple queries, prepared
// queries, transactions and savepoints, errors, 100k rows (buffered and through a cursor),
// COPY in/out, a pool of 20 connections, pipelining on one connection, session settings,
// LISTEN/NOTIFY and cancel. Prints a JSON summary; exits 1 if a check failed.
// Connection from PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE; DRIVER_MODE names the tables.
'use strict'
const postgres = require('postgres')
const { pipeline } = require('stream/promises')
const { Readable, Writable } = require('stream')
const { Check, expect, expectEq, expectCode, sleep } = require('./harness')

const mode = (process.env.DRIVER_MODE || 'session').replace(/[^a-z]/g, '')
const t = `pgjs_${mode}`
const base = {
  host: process.env.PGHOST,
  port: Number(process.env.PGPORT),
  user: process.env.PGUSER,
  pass: process.env.PGPASSWORD,
  database: process.env.PGDATABASE,
  connect_timeout: 20,
  idle_timeout: 0,
  onnotice: () => {},
  connection: { application_name: 'pgjs_check' },
}

async function withSql(extra, fn) {
  const sql = postgres({ ...base, max: 1, ...extra })
  try {
    return await fn(sql)
  } finally {
    await sql.end({ timeout: 5 })
  }
}

const checks = new Check('postgres.js', mode)

checks.add('simple_queries', () => withSql({}, async (sql) => {
  expectEq(1, (await sql`SELECT 1 AS x`)[0].x, 'SELECT 1')
  const multi = await sql`SELECT 1 AS a; SELECT 'two' AS b; SELECT 3 AS c`.simple()
  expectEq(3, multi.length, 'results of a multi-statement simple query')
  expectEq('two', multi[1][0].b, 'second result')
  expectEq('pgjs_check', (await sql`SHOW application_name`)[0].application_name, 'application_name startup parameter')
  expectEq(5, (await sql.unsafe('SELECT 5 AS x'))[0].x, 'sql.unsafe')
}))

checks.add('setup_tables', () => withSql({}, async (sql) => {
  await sql.unsafe(`DROP TABLE IF EXISTS ${t}_items, ${t}_copy, ${t}_conc`)
  await sql.unsafe(`CREATE TABLE ${t}_items (id int PRIMARY KEY, val text)`)
  await sql.unsafe(`CREATE TABLE ${t}_copy (id int, val text)`)
  await sql.unsafe(`CREATE TABLE ${t}_conc (worker int, n int, app text, PRIMARY KEY (worker, n))`)
}))

checks.add('prepared_queries', () => withSql({}, async (sql) => {
  const items = sql(`${t}_items`)
  for (let i = 0; i < 30; i++) {
    const [r] = await sql`SELECT ${i}::int * 2 AS d, ${`it's ${i}`}::text AS s, ${sql.json({ i })} AS j, ${Buffer.from([i, 0, 255])}::bytea AS b, ${new Date(1600000000000 + i * 1000)}::timestamptz AS ts`
    expectEq(i * 2, r.d, 'int')
    expectEq(`it's ${i}`, r.s, 'text')
    expectEq(i, r.j.i, 'json')
    expect(Buffer.from([i, 0, 255]).equals(r.b), 'bytea')
    expectEq(1600000000000 + i * 1000, r.ts.getTime(), 'timestamptz')
    await sql`INSERT INTO ${items} (id, val) VALUES (${1000 + i}, ${'p' + i})`
  }
  expectEq(30, (await sql`SELECT count(*)::int AS n FROM ${items} WHERE id >= 1000`)[0].n,
    'rows inserted by the prepared INSERT (read your writes)')
  // The same text without preparing (unnamed statements).
  for (let i = 0; i < 5; i++) {
    expectEq(i + 1, (await sql.unsafe('SELECT $1::int + 1 AS v', [i], { prepare: false }))[0].v, 'unnamed statement')
  }
}))

// More distinct prepared statements than pgswitch keeps per server connection
// (max_prepared_statements = 200): evicted ones are prepared again when used.
checks.add('many_statements_lru', () => withSql({}, async (sql) => {
  const n = 260
  for (let round = 0; round < 3; round++) {
    for (let k = 0; k < n; k++) {
      const i = round === 1 ? n - 1 - k : (k * 7 + round) % n
      const [r] = await sql.unsafe(`SELECT $1::int + ${i} AS v`, [round], { prepare: true })
      expectEq(round + i, r.v, `statement ${i} round ${round}`)
    }
  }
  // And all of them at once, pipelined.
  const res = await Promise.all(Array.from({ length: n }, (_, i) => sql.unsafe(`SELECT $1::int + ${i} AS v`, [9], { prepare: true })))
  res.forEach((r, i) => expectEq(9 + i, r[0].v, `pipelined statement ${i}`))
}))

// prepare: false (the setting PgBouncer users are told to use): unnamed statements only.
checks.add('prepare_false', () => withSql({ prepare: false, max: 4 }, async (sql) => {
  const res = await Promise.all(Array.from({ length: 100 }, (_, i) => sql`SELECT ${i}::int * 5 AS v`))
  res.forEach((r, i) => expectEq(i * 5, r[0].v, 'unnamed statement result'))
  await sql.begin(async (tx) => {
    await tx`INSERT INTO ${tx(`${t}_items`)} VALUES (${900}, ${'np'})`
    expectEq('np', (await tx`SELECT val FROM ${tx(`${t}_items`)} WHERE id = ${900}`)[0].val, 'read in transaction')
  })
}))

// max: 1 and many queries at once: postgres.js pipelines them (one Sync each) on the connection.
checks.add('pipelining_one_connection', () => withSql({}, async (sql) => {
  const res = await Promise.all(Array.from({ length: 200 }, (_, i) => sql`SELECT ${i}::int AS i, pg_backend_pid() AS pid`))
  res.forEach((r, i) => expectEq(i, r[0].i, 'pipelined result order'))
  // Pipelined with an error in the middle: only that query fails.
  const settled = await Promise.allSettled(Array.from({ length: 30 }, (_, i) =>
    i === 15 ? sql`SELECT 1 / ${0}::int AS x` : sql`SELECT ${i}::int AS i`))
  settled.forEach((s, i) => {
    if (i === 15) expect(s.status === 'rejected' && s.reason.code === '22012', 'division by zero in the middle of a pipeline')
    else expect(s.status === 'fulfilled' && s.value[0].i === i, `pipelined query ${i} after an error`)
  })
}))

checks.add('transactions', () => withSql({}, async (sql) => {
  const items = sql(`${t}_items`)
  await sql.begin(async (tx) => {
    for (let i = 1; i <= 10; i++) await tx`INSERT INTO ${items} (id, val) VALUES (${i}, ${'c' + i})`
  })
  await expectCode('P0001', () => sql.begin(async (tx) => {
    for (let i = 11; i <= 20; i++) await tx`INSERT INTO ${items} (id, val) VALUES (${i}, ${'r' + i})`
    expectEq(20, (await tx`SELECT count(*)::int AS n FROM ${items} WHERE id <= 20`)[0].n, 'own uncommitted rows')
    await tx`DO $$ BEGIN RAISE EXCEPTION 'roll back'; END $$`
  }), 'error inside sql.begin rolls back')
  const n = await sql.begin(async (tx) => (await tx`SELECT count(*)::int AS n FROM ${items} WHERE id <= 20`)[0].n)
  expectEq(10, n, 'after commit of 10 and rollback of 10')
  await sql.begin(async (tx) => {
    await tx`INSERT INTO ${items} VALUES (21, 's')`
    await tx.savepoint(async (sp) => {
      await sp`INSERT INTO ${items} VALUES (22, 's')`
      throw Object.assign(new Error('undo savepoint'), { code: 'SP' })
    }).catch((e) => { if (e.code !== 'SP') throw e })
  })
  expectEq(1, (await sql`SELECT count(*)::int AS n FROM ${items} WHERE id IN (21, 22)`)[0].n, 'savepoint rolled back')
  // Queries pipelined inside a transaction (sql.begin returning an array of queries).
  const [a, b] = await sql.begin((tx) => [tx`SELECT 1::int AS v`, tx`SELECT 2::int AS v`])
  expectEq(3, a[0].v + b[0].v, 'pipelined queries in a transaction')
}))

checks.add('errors_then_connection_works', () => withSql({}, async (sql) => {
  const items = sql(`${t}_items`)
  for (let round = 0; round < 3; round++) {
    await expectCode('23505', () => sql`INSERT INTO ${items} VALUES (${1}, ${'dup'})`, `unique violation (prepared) ${round}`)
    await sql`INSERT INTO ${items} VALUES (${500 + round}, ${'ok'})`
  }
  await expectCode('23505', () => sql.unsafe(`INSERT INTO ${t}_items VALUES (1, 'dup')`), 'unique violation (no parameters)')
  expectEq(1, (await sql`SELECT 1 AS x`)[0].x, 'works after the error')
  await expectCode('42601', () => sql.unsafe('SELEC 1'), 'syntax error')
  await expectCode('42P01', () => sql`SELECT * FROM no_such_table_xyz WHERE 1 = ${1}`, 'Parse error of a prepared statement')
  await expectCode('42P01', () => sql`SELECT * FROM no_such_table_xyz WHERE 1 = ${1}`, 'the same, again')
  expectEq(2, (await sql`SELECT ${2}::int AS x`)[0].x, 'works after the Parse errors')
}))

checks.add('many_rows', () => withSql({}, async (sql) => {
  const rows = await sql`SELECT i, md5(i::text) AS h FROM generate_series(1, ${100000}::int) i`
  expectEq(100000, rows.length, 'rows (buffered)')
  expectEq(5000050000, rows.reduce((s, r) => s + r.i, 0), 'sum')
  // A cursor: Execute with a row limit, 1000 rows per round trip, through a portal.
  let n = 0, sum = 0
  for await (const batch of sql`SELECT i FROM generate_series(1, ${100000}::int) i`.cursor(1000)) {
    for (const r of batch) { n++; sum += r.i }
  }
  expectEq(100000, n, 'rows through a cursor')
  expectEq(5000050000, sum, 'sum through a cursor')
  // Leave a cursor early (Close of the portal + Sync).
  let seen = 0
  for await (const batch of sql`SELECT i FROM generate_series(1, ${100000}::int) i`.cursor(100)) {
    seen += batch.length
    if (seen >= 300) break
  }
  expectEq(300, seen, 'rows before leaving the cursor')
  let streamed = 0
  await sql`SELECT i FROM generate_series(1, 100000) i`.forEach(() => { streamed++ })
  expectEq(100000, streamed, 'rows through forEach')
  expectEq(1, (await sql`SELECT 1 AS x`)[0].x, 'works after cursors')
}))

checks.add('large_values', () => withSql({}, async (sql) => {
  const big = Buffer.alloc(3 * 1024 * 1024)
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 255
  const [r] = await sql`SELECT ${big}::bytea AS b, length(${'z'.repeat(2 * 1024 * 1024)}::text) AS n`
  expect(big.equals(r.b), '3 MiB bytea round trip')
  expectEq(2 * 1024 * 1024, r.n, '2 MiB text parameter')
}))

checks.add('copy', () => withSql({}, async (sql) => {
  const lines = []
  for (let i = 0; i < 20000; i++) lines.push(`${i}\trow ${i}\n`)
  const w = await sql.unsafe(`COPY ${t}_copy (id, val) FROM STDIN`).writable()
  await pipeline(Readable.from(lines), w)
  expectEq(20000, (await sql`SELECT count(*)::int AS n FROM ${sql(`${t}_copy`)}`)[0].n, 'rows copied in (read your writes)')
  const r = await sql`COPY (SELECT i, 'v' || i FROM generate_series(1, 30000) i) TO STDOUT`.readable()
  let newlines = 0
  await pipeline(r, new Writable({
    write(chunk, _enc, cb) { for (const byte of chunk) if (byte === 10) newlines++; cb() },
  }))
  expectEq(30000, newlines, 'lines copied out')
  expectEq(1, (await sql`SELECT 1 AS x`)[0].x, 'works after COPY')
}))

// 20 connections, 20 transactions at a time with prepared statements, through pgswitch's
// small server pool in transaction mode.
checks.add('concurrency_pool', async () => {
  const sql = postgres({ ...base, max: 20 })
  const conc = sql(`${t}_conc`)
  try {
    const rounds = 5
    for (let round = 0; round < rounds; round++) {
      await Promise.all(Array.from({ length: 20 }, (_, w) => sql.begin(async (tx) => {
        await tx`SET LOCAL application_name = 'pgjs_local'`
        await tx`INSERT INTO ${conc} (worker, n, app) VALUES (${w}, ${round}, current_setting('application_name'))`
        const [r] = await tx`SELECT count(*)::int AS n FROM ${conc} WHERE worker = ${w}`
        expectEq(round + 1, r.n, `worker ${w} sees its rows`)
      })))
    }
    const [r] = await sql.begin((tx) => tx`SELECT count(*)::int AS n, count(*) FILTER (WHERE app = 'pgjs_local')::int AS l FROM ${conc}`)
    expectEq(20 * rounds, r.n, 'rows from all workers')
    expectEq(20 * rounds, r.l, 'SET LOCAL inside each transaction')
    const apps = await Promise.all(Array.from({ length: 40 }, () => sql`SELECT current_setting('application_name') AS a`))
    apps.forEach((a) => expectEq('pgjs_check', a[0].a, 'SET LOCAL ended with its transaction'))
    const res = await Promise.all(Array.from({ length: 400 }, (_, i) => sql`SELECT ${i}::int * 3 AS v`))
    res.forEach((x, i) => expectEq(i * 3, x[0].v, 'parallel prepared query'))
  } finally {
    await sql.end({ timeout: 5 })
  }
})

checks.add('settings_follow_client', async () => {
  let stop = false
  const noise = Array.from({ length: 3 }, (_, i) => withSql({ connection: { application_name: `noise${i}` } }, async (sql) => {
    await sql`SET TIME ZONE 'UTC'`
    while (!stop) {
      const [r] = await sql`SELECT current_setting('TimeZone') AS tz, current_setting('application_name') AS app`
      expectEq('UTC', r.tz, 'noise TimeZone')
      expectEq(`noise${i}`, r.app, 'noise application_name')
    }
  }))
  try {
    await withSql({}, async (sql) => {
      await sql`SET application_name = 'pgjs_settings'`
      await sql`SET TIME ZONE 'America/New_York'`
      for (let i = 0; i < 50; i++) {
        const [r] = await sql`SELECT current_setting('application_name') AS app, current_setting('TimeZone') AS tz, ('2020-01-01 00:00:00+00'::timestamptz)::text AS ts, ${i}::int AS i`
        expectEq('pgjs_settings', r.app, `application_name, round ${i}`)
        expectEq('America/New_York', r.tz, `TimeZone, round ${i}`)
        expectEq('2019-12-31 19:00:00-05', r.ts, `timestamptz text, round ${i}`)
      }
    })
    // Startup parameters given as connection options are applied on every server.
    await withSql({ connection: { application_name: 'pgjs_startup', TimeZone: 'Asia/Tokyo' } }, async (sql) => {
      for (let i = 0; i < 20; i++) {
        const [r] = await sql`SELECT current_setting('application_name') AS app, current_setting('TimeZone') AS tz`
        expectEq('pgjs_startup', r.app, 'startup application_name')
        expectEq('Asia/Tokyo', r.tz, 'startup TimeZone')
      }
    })
  } finally {
    stop = true
    await Promise.all(noise)
  }
})

checks.add('listen_notify', () => withSql({}, async (sql) => {
  const got = []
  const { unlisten } = await sql.listen(`${t}_chan`, (payload) => got.push(payload))
  for (let i = 0; i < 3; i++) await sql.notify(`${t}_chan`, `msg${i}`)
  const deadline = Date.now() + 5000
  while (got.length < 3 && Date.now() < deadline) await sleep(50)
  expectEq('msg0,msg1,msg2', got.join(','), 'notifications received')
  await unlisten()
}))

checks.add('cancel', () => withSql({}, async (sql) => {
  for (const [what, q] of [['prepared', () => sql`SELECT pg_sleep(${10})`], ['simple', () => sql`SELECT pg_sleep(10)`.simple()]]) {
    const query = q()
    const t0 = Date.now()
    const timer = setTimeout(() => query.cancel(), 500)
    await expectCode('57014', () => query, `cancelled pg_sleep(10), ${what}`)
    clearTimeout(timer)
    const ms = Date.now() - t0
    expect(ms < 5000, `${what}: cancel took ${ms} ms`)
    expectEq(1, (await sql`SELECT 1 AS x`)[0].x, 'works after cancel')
  }
  // Cancel inside a transaction: the transaction fails, the connection does not.
  await expectCode('57014', () => sql.begin(async (tx) => {
    const query = tx`SELECT pg_sleep(10)`
    setTimeout(() => query.cancel(), 500)
    await query
  }), 'cancel inside a transaction')
  expectEq(1, (await sql`SELECT 1 AS x`)[0].x, 'works after a cancelled transaction')
}))

checks.run()
