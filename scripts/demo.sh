#!/usr/bin/env bash
# Demo: a PostgreSQL 15 primary and two streaming replicas (kept under ./.demo/, loopback ports
# 55432-55434) behind pgswitch on 127.0.0.1:6432; runs a short pgbench through it, then stays
# in the foreground until Ctrl-C / SIGTERM, and stops everything it started.
#   scripts/demo.sh          start (reuses .demo/ if it is healthy, recreates it otherwise)
#   scripts/demo.sh stop     stop a demo running in another terminal
# PGSWITCH_BIN=/path/to/pgswitch skips the build and uses that binary.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO=$ROOT/.demo
PORTS=55432,55433,55434
LISTEN_HOST=127.0.0.1
LISTEN_PORT=6432
METRICS_PORT=9930
PY=/usr/bin/python3
PGBIN=/usr/lib/postgresql/15/bin
FIXTURE=$ROOT/tests/integration/pgcluster.py
BIN=${PGSWITCH_BIN:-$ROOT/build/pgswitch}

log() { printf 'demo: %s\n' "$*" >&2; }

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

read_pid() { if [[ -f "$1" ]]; then tr -dc '0-9' <"$1"; fi; }

# Stops the pgswitch this demo started (by the pid it recorded) and the demo's servers.
stop_everything() {
  local pid
  pid=$(read_pid "$DEMO/pgswitch.pid")
  if pid_alive "$pid" && grep -q pgswitch "/proc/$pid/cmdline" 2>/dev/null; then
    log "stopping pgswitch (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do pid_alive "$pid" || break; sleep 0.1; done
    if pid_alive "$pid"; then
      log "pgswitch did not exit within 10 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$DEMO/pgswitch.pid"
  if [[ -d "$DEMO" ]]; then
    log "stopping the PostgreSQL servers"
    "$PY" "$FIXTURE" demo-stop --dir "$DEMO" || true
  fi
}

if [[ "${1:-}" == "stop" ]]; then
  pid=$(read_pid "$DEMO/demo.pid")
  if pid_alive "$pid"; then
    log "asking the running demo (pid $pid) to stop"
    kill -TERM "$pid"
    for _ in $(seq 300); do pid_alive "$pid" || break; sleep 0.1; done
  fi
  stop_everything
  rm -f "$DEMO/demo.pid"
  log "stopped"
  exit 0
elif [[ -n "${1:-}" ]]; then
  echo "usage: $0 [stop]" >&2
  exit 2
fi

other=$(read_pid "$DEMO/demo.pid")
if pid_alive "$other" && [[ "$other" != "$$" ]]; then
  log "a demo is already running (pid $other); run '$0 stop' first"
  exit 1
fi

bash "$ROOT/scripts/install-deps.sh"
if [[ -z "${PGSWITCH_BIN:-}" ]]; then
  cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$ROOT/build" -j"$(nproc)"
fi
[[ -x "$BIN" ]] || { log "no pgswitch binary at $BIN"; exit 1; }

mkdir -p "$DEMO"
echo $$ >"$DEMO/demo.pid"
cleaned=0
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  ((cleaned)) && return
  cleaned=1
  # Ignore SIGPIPE too: if our output went to a pipe (e.g. `| tee`), Ctrl-C killed its reader.
  trap '' INT TERM PIPE
  stop_everything
  rm -f "$DEMO/demo.pid"
  log "demo stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A pgswitch left over from a demo that was killed hard would hold the port.
stop_everything
"$PY" "$FIXTURE" demo-start --dir "$DEMO" --ports "$PORTS"

cat >"$DEMO/pgswitch.toml" <<EOF
# written by scripts/demo.sh
[server]
listen = "$LISTEN_HOST:$LISTEN_PORT"
pool_mode = "transaction"
admin_users = ["admin"]
workers = 2
log_level = "info"
metrics_listen = "$LISTEN_HOST:$METRICS_PORT"

[routing]
consistency = "read_your_writes"

[health]
period_ms = 500
user = "postgres"
password = "postgres"

[[backend]]
name = "pg1"
host = "127.0.0.1"
port = ${PORTS%%,*}

[[backend]]
name = "pg2"
host = "127.0.0.1"
port = $(cut -d, -f2 <<<"$PORTS")

[[backend]]
name = "pg3"
host = "127.0.0.1"
port = $(cut -d, -f3 <<<"$PORTS")

[[user]]
name = "app"
password = "app"
auth = "scram-sha-256"

[[user]]
name = "md5user"
password = "md5pass"
auth = "md5"

[[user]]
name = "trustuser"
password = ""
auth = "trust"

[[user]]
name = "admin"
password = "admin"
auth = "scram-sha-256"

[[user]]
name = "postgres"
password = "postgres"
auth = "scram-sha-256"
EOF

# setsid: Ctrl-C reaches only this script, whose trap then stops pgswitch with SIGTERM.
setsid "$BIN" --config "$DEMO/pgswitch.toml" >>"$DEMO/pgswitch.log" 2>&1 </dev/null &
SW_PID=$!
echo "$SW_PID" >"$DEMO/pgswitch.pid"
log "pgswitch started (pid $SW_PID, log $DEMO/pgswitch.log)"
up=0
for _ in $(seq 100); do
  pid_alive "$SW_PID" || break
  if (exec 3<>"/dev/tcp/$LISTEN_HOST/$LISTEN_PORT") 2>/dev/null; then up=1; break; fi
  sleep 0.1
done
if ((!up)); then
  log "pgswitch is not accepting on $LISTEN_HOST:$LISTEN_PORT; last log lines:"
  tail -n 30 "$DEMO/pgswitch.log" >&2 || true
  exit 1
fi

export PGPASSWORD=app
PGB=("$PGBIN/pgbench" -h "$LISTEN_HOST" -p "$LISTEN_PORT" -U app)
export PGCONNECT_TIMEOUT=10
# Bounded in time: a stuck proxy must not hang the demo forever.
log "pgbench -i -s 2 through pgswitch"
timeout 120 "${PGB[@]}" -i -s 2 -q appdb
log "pgbench -c 4 -j 2 -T 10 through pgswitch (TPC-B-like: writes go to the primary)"
timeout 60 "${PGB[@]}" -c 4 -j 2 -T 10 appdb | tee "$DEMO/pgbench.out"
log "pgbench -S -c 4 -j 2 -T 5 through pgswitch (read-only: spread over the replicas)"
timeout 60 "${PGB[@]}" -S -c 4 -j 2 -T 5 appdb | tee -a "$DEMO/pgbench.out" | grep -E "^(tps|number of failed)"
unset PGPASSWORD
log "SHOW BACKENDS on the admin console (psql ... dbname=pgswitch user=admin):"
PGPASSWORD=admin timeout 20 "$PGBIN/psql" -X -h "$LISTEN_HOST" -p "$LISTEN_PORT" -U admin \
  -d pgswitch -c "SHOW BACKENDS" || log "console not reachable"

cat <<EOF

pgswitch is running on $LISTEN_HOST:$LISTEN_PORT in front of:
  primary  127.0.0.1:${PORTS%%,*}
  replicas 127.0.0.1:$(cut -d, -f2 <<<"$PORTS"), 127.0.0.1:$(cut -d, -f3 <<<"$PORTS")
Connect with:
  psql "host=$LISTEN_HOST port=$LISTEN_PORT dbname=appdb user=app password=app"
Admin console:
  psql "host=$LISTEN_HOST port=$LISTEN_PORT dbname=pgswitch user=admin password=admin"
Status page and metrics: http://$LISTEN_HOST:$METRICS_PORT/  and  /metrics
Log: $DEMO/pgswitch.log      Stop: Ctrl-C here, or '$0 stop' from another terminal.
EOF

# wait returns early when a signal arrives; the trap then runs cleanup.
set +e
wait "$SW_PID"
rc=$?
set -e
log "pgswitch exited by itself (status $rc); last log lines:"
tail -n 20 "$DEMO/pgswitch.log" >&2 || true
exit 1
