// Shared by the Node driver programs: named checks run in order, each timed, failures
// collected; a JSON summary on stdout and a non-zero exit code if any check failed.
'use strict'

class Check {
  constructor(driver, mode) {
    this.driver = driver
    this.mode = mode
    this.checks = []
  }

  add(name, fn) {
    // DRIVER_ONLY=name,name: run only those checks (and setup_tables), for debugging.
    const only = (process.env.DRIVER_ONLY || '').split(',').filter(Boolean)
    if (only.length && name !== 'setup_tables' && !only.includes(name)) return
    this.checks.push({ name, fn })
  }

  async run() {
    const results = []
    // A hung check must not hang the run: the test harness also has a timeout, but this gives
    // a readable report.
    const perCheckMs = Number(process.env.DRIVER_CHECK_TIMEOUT_MS || 60000)
    for (const { name, fn } of this.checks) {
      const t0 = Date.now()
      let error = null
      let timer
      try {
        await Promise.race([
          fn(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`check timed out after ${perCheckMs} ms`)), perCheckMs)
          }),
        ])
      } catch (e) {
        error = describe(e)
        process.stderr.write(`${name}: ${e && e.stack ? e.stack : e}\n`)
      } finally {
        clearTimeout(timer)
      }
      const ms = Date.now() - t0
      process.stderr.write(`${name.padEnd(32)} ${error ? 'FAIL' : 'ok'} (${ms} ms)${error ? ': ' + error : ''}\n`)
      results.push(error ? { name, ok: false, ms, error } : { name, ok: true, ms })
    }
    const ok = results.every((r) => r.ok)
    process.stdout.write(JSON.stringify({ driver: this.driver, mode: this.mode, ok, checks: results }) + '\n')
    // Exit even if a failed check left a socket open.
    process.exit(ok ? 0 : 1)
  }
}

function describe(e) {
  if (!e) return String(e)
  let s = e.message || String(e)
  if (e.code) s += ` [code ${e.code}]`
  return s
}

function expect(cond, what) {
  if (!cond) throw new Error(`expectation failed: ${what}`)
}

function expectEq(want, got, what) {
  if (want !== got) throw new Error(`${what}: want ${JSON.stringify(want)}, got ${JSON.stringify(got)}`)
}

async function expectCode(code, fn, what) {
  try {
    await fn()
  } catch (e) {
    if (e.code !== code) throw new Error(`${what}: want SQLSTATE ${code}, got ${e.code}: ${e.message}`)
    return e
  }
  throw new Error(`${what}: no error, want SQLSTATE ${code}`)
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

module.exports = { Check, expect, expectEq, expectCode, sleep }
