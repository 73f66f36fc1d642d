// node-postgres sessions of the differential suite: a Pool whose clients write on one and read
// on another, CREATE TABLE then read, parameterized and named statements, transactions with
// savepoints and errors, a writing plpgsql function called as SELECT. Prints a JSON transcript,
// one line per step ({"scenario", "step", "result"}), like tests/differential/recorder.py.
//   NODE_PATH=tests/drivers/node/node_modules node diff_node_pg.js HOST PORT USER PASSWORD DB PREFIX
'use strict'
const pg = require('pg')

const [host, port, user, password, database, P] = process.argv.slice(2)
const base = { host, port: Number(port), user, password, database, connectionTimeoutMillis: 20000,
  application_name: 'diff_node_pg' }
let scenario = '?'

function emit(step, result) {
  process.stdout.write(JSON.stringify({ scenario, step, result }) + '\n')
}

function plain(v) {
  if (v === null || v === undefined) return null
  if (Buffer.isBuffer(v)) return '\\x' + v.toString('hex')
  if (v instanceof Date) return v.toISOString()
  if (Array.isArray(v)) return v.map(plain)
  if (typeof v === 'object') {
    const o = {}
    for (const k of Object.keys(v).sort()) o[k] = plain(v[k])
    return o
  }
  return v
}

function errorResult(e) {
  if (e && e.code && /^[0-9A-Z]{5}$/.test(e.code)) return { error: e.code, message: e.message }
  return { exception: (e && e.constructor && e.constructor.name) || String(e), message: String(e && e.message) }
}

async function step(name, fn) {
  try {
    const r = await fn()
    emit(name, plain(r))
    return r
  } catch (e) {
    emit(name, errorResult(e))
    return undefined
  }
}

// A query's observable result: command tag parts and rows (as arrays).
async function q(c, text, values, name) {
  const r = await c.query({ text, values, name, rowMode: 'array' })
  const one = (x) => ({ command: x.command, rowCount: x.rowCount,
    fields: x.fields.map((f) => f.name), rows: x.rows })
  return Array.isArray(r) ? r.map(one) : one(r)
}

// Waits longer than the replicas' apply delay plus two health rounds (the harness sets
// DIFF_SETTLE_MS; 0 in the direct run).
function settle() {
  const ms = process.env.DIFF_SETTLE_MS === undefined ? 1500 : Number(process.env.DIFF_SETTLE_MS)
  return new Promise((resolve) => setTimeout(resolve, ms))
}

async function withClient(fn) {
  const c = new pg.Client(base)
  await c.connect()
  try {
    return await fn(c)
  } finally {
    await c.end()
  }
}

const scenarios = {
  async node_create_read() {
    await withClient(async (c) => {
      await step('create', () => q(c, `CREATE TABLE ${P}cr (id int PRIMARY KEY, v text)`))
      await step('read_empty', () => q(c, `SELECT id, v FROM ${P}cr ORDER BY id`))
      await step('insert_param', () => q(c, `INSERT INTO ${P}cr VALUES ($1, $2), ($3, $4)`, [1, 'one', 2, 'two']))
      await step('read_back_simple', () => q(c, `SELECT id, v FROM ${P}cr ORDER BY id`))
      await step('read_back_param', () => q(c, `SELECT v FROM ${P}cr WHERE id = $1`, [2]))
      for (let i = 0; i < 3; i++) {
        await step(`insert_named_${i}`, () => q(c, `INSERT INTO ${P}cr VALUES ($1, $2)`, [10 + i, `n${i}`], 'diff_ins'))
        await step(`count_named_${i}`, () => q(c, `SELECT count(*)::int FROM ${P}cr`, [], 'diff_cnt'))
      }
      await step('multi_statement', () => q(c, `UPDATE ${P}cr SET v = 'u' WHERE id = 1; SELECT v FROM ${P}cr WHERE id = 1`))
      await step('read_after_multi', () => q(c, `SELECT id, v FROM ${P}cr WHERE id <= 2 ORDER BY id`))
      await step('undefined_table_42P01', () => q(c, `SELECT * FROM ${P}nope`))
      await step('syntax_error_42601', () => q(c, 'SELEKT 1'))
    })
  },

  async node_pool_two_clients() {
    const pool = new pg.Pool({ ...base, max: 4 })
    pool.on('error', () => {})
    try {
      const a = await pool.connect()
      const b = await pool.connect()
      try {
        await step('b_warm_up_read', () => q(b, 'SELECT 1'))
        // Pooled connections are old: older than the replicas' apply delay plus a health round
        // (the harness sets DIFF_SETTLE_MS).
        await settle()
        await step('a_create', () => q(a, `CREATE TABLE ${P}pool (id int PRIMARY KEY, v text)`))
        await step('b_read_new_table', () => q(b, `SELECT count(*)::int FROM ${P}pool`))
        for (let i = 0; i < 3; i++) {
          await step(`a_insert_${i}`, () => q(a, `INSERT INTO ${P}pool VALUES ($1, $2)`, [i, `v${i}`]))
          await step(`b_read_${i}`, () => q(b, `SELECT count(*)::int, max(id) FROM ${P}pool`))
        }
        await step('a_transaction', async () => {
          await a.query('BEGIN')
          await a.query(`UPDATE ${P}pool SET v = 'tx'`)
          await a.query(`INSERT INTO ${P}pool VALUES (100, 'tx')`)
          return q(a, 'COMMIT')
        })
        await step('b_read_after_commit', () => q(b, `SELECT v, count(*)::int FROM ${P}pool GROUP BY v`))
      } finally {
        a.release()
        b.release()
      }
      // pool.query takes any idle client: the redirect-after-POST pattern.
      for (let i = 0; i < 3; i++) {
        await step(`pool_insert_${i}`, () => pool.query(`INSERT INTO ${P}pool VALUES ($1, 'p')`, [200 + i]).then((r) => r.command + ' ' + r.rowCount))
        await step(`pool_read_${i}`, () => q(pool, `SELECT count(*)::int FROM ${P}pool WHERE v = 'p'`))
      }
    } finally {
      await pool.end()
    }
  },

  async node_transactions() {
    await withClient(async (c) => {
      await step('create', () => q(c, `CREATE TABLE ${P}tx (id int PRIMARY KEY, v text)`))
      await step('begin', () => q(c, 'BEGIN'))
      await step('insert_1', () => q(c, `INSERT INTO ${P}tx VALUES ($1, $2)`, [1, 'a']))
      await step('savepoint', () => q(c, 'SAVEPOINT s1'))
      await step('duplicate_23505', () => q(c, `INSERT INTO ${P}tx VALUES ($1, $2)`, [1, 'dup']))
      await step('aborted_25P02', () => q(c, 'SELECT 1'))
      await step('rollback_to', () => q(c, 'ROLLBACK TO SAVEPOINT s1'))
      await step('insert_2', () => q(c, `INSERT INTO ${P}tx VALUES ($1, $2)`, [2, 'b']))
      await step('commit', () => q(c, 'COMMIT'))
      await step('read_after_commit', () => q(c, `SELECT id, v FROM ${P}tx ORDER BY id`))
      await step('failed_transaction_22012', async () => {
        await c.query('BEGIN')
        await c.query(`INSERT INTO ${P}tx VALUES (3, 'c')`)
        try {
          await c.query('SELECT 1 / 0')
        } catch (e) {
          const commit = await q(c, 'COMMIT')
          return [e.code, commit]
        }
        return 'no error'
      })
      await step('read_after_rolled_back', () => q(c, `SELECT count(*)::int FROM ${P}tx`))
      await step('read_only_transaction_25006', async () => {
        await c.query('BEGIN READ ONLY')
        const n = await q(c, `SELECT count(*)::int FROM ${P}tx`)
        try {
          await c.query(`DELETE FROM ${P}tx`)
        } catch (e) {
          await c.query('ROLLBACK')
          return [n, e.code]
        }
        await c.query('ROLLBACK')
        return [n, 'no error']
      })
    })
  },

  async node_write_function() {
    await withClient(async (c) => {
      await step('create', () => q(c, `CREATE TABLE ${P}wf (id serial PRIMARY KEY, note text);
        CREATE FUNCTION ${P}wf_add(n text) RETURNS bigint LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO ${P}wf (note) VALUES (n); RETURN (SELECT count(*) FROM ${P}wf); END $$`))
      await step('call_simple', () => q(c, `SELECT ${P}wf_add('a')`))
      await step('call_param', () => q(c, `SELECT ${P}wf_add($1)`, ['b']))
      await step('read_back', () => q(c, `SELECT id, note FROM ${P}wf ORDER BY id`))
    })
  },

  async node_write_function_replicated() {
    // Function and table created by the harness and replayed by the replicas
    // (tests/differential/setup.sql): only the write inside SELECT is at stake. Nothing
    // written lately (DIFF_SETTLE_MS): a consistency mode may send the call to a replica.
    await settle()
    await withClient(async (c) => {
      await step('call_simple', () => q(c, `SELECT ${P}wfr_add('a')`))
      await step('call_param', () => q(c, `SELECT ${P}wfr_add($1)`, ['b']))
      await step('call_named', () => q(c, `SELECT ${P}wfr_add($1)`, ['c'], 'diff_wfr'))
    })
  },
}

async function main() {
  const only = (process.env.DIFF_ONLY || '').split(',').filter(Boolean)
  for (const [name, fn] of Object.entries(scenarios)) {
    if (only.length && !only.includes(name)) continue
    scenario = name
    try {
      await fn()
    } catch (e) {
      process.stderr.write(`${name}: ${e && e.stack ? e.stack : e}\n`)
      emit('scenario_aborted', errorResult(e))
    }
  }
  process.stdout.write('{"done": true}\n')
  process.exit(0)
}

main()
