#!/usr/bin/env bash
# Installs whatever pgswitch needs on Debian 12 that is not already there. Idempotent:
# a second run installs nothing. Uses apt-get as root, sudo otherwise.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
  dpkg-dev             # dpkg-shlibdeps: the Depends of the .deb CPack builds (packaging/)
  libuv1-dev libpq-dev libssl-dev libxxhash-dev libspdlog-dev libfmt-dev
  liburing-dev         # the io_uring path of the worker loop (proxy/core/ring.h)
  libtomlplusplus-dev libpg-query-dev libgtest-dev libgmock-dev googletest libbenchmark-dev
  libcurl4-openssl-dev nlohmann-json3-dev   # [patroni]: its REST API over libcurl, JSON
  postgresql-15 postgresql-client-15 postgresql-contrib
  python3 python3-psycopg2 python3-psycopg python3-asyncpg
  procps
  openssl              # tests/integration/test_tls.py makes a throwaway CA with the CLI
  clang libclang-rt-14-dev   # scripts/fuzz.sh: libFuzzer targets built with clang 14
  chromium             # the status page test renders it in a headless browser
  libpostgresql-jdbc-java   # pgjdbc for tests/integration/test_drivers.py
  pgbackrest           # tests/integration/test_grow_from_backup.py: a replica restored from a backup
  patroni etcd-server  # tests/integration/patroni_cluster.py: real Patroni on etcd3
)
# The driver tests also need a JDK (javac) and Node.js with npm; any installed version will do
# (NodeSource's nodejs, for one, brings its own npm), so Debian's are added only when missing.
command -v javac >/dev/null 2>&1 || PKGS+=(default-jdk-headless)
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || PKGS+=(npm)
# Extra packages for benchmarks/drivers (optional: `--bench` adds peers for comparison).
if [[ "${1:-}" == "--bench" ]]; then
  PKGS+=(pgbouncer pgpool2)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} > 0)); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The Debian postgresql package creates and starts a default cluster on port 5432; we never
  # use it (tests start their own), so keep it from starting.
  if [[ ! -e /etc/postgresql-common/createcluster.conf ]] || ! grep -q '^create_main_cluster = false' /etc/postgresql-common/createcluster.conf 2>/dev/null; then
    $SUDO mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | $SUDO tee -a /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages of the Node driver tests (node-postgres, postgres.js), pinned by
# tests/drivers/node/package-lock.json, installed there once.
NODE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/drivers/node"
if [[ ! -f "$NODE_DIR/node_modules/.package-lock.json" ]]; then  # written by a complete install
  echo "install-deps: npm ci in $NODE_DIR" >&2
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
