#!/usr/bin/env bash
# The one test command: installs dependencies, builds pgswitch (Release) and runs every test
# (GoogleTest unit tests and the Python integration tests against real PostgreSQL) via ctest,
# then the session-facing ones again under AddressSanitizer + UBSan, then the libFuzzer targets.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
# Integration entries are RUN_SERIAL, so parallelism only spreads the unit tests.
ctest --test-dir build --output-on-failure --parallel "$(nproc)"
# The workers read and write through io_uring where the kernel allows it (server.io_uring =
# "auto"), so the run above tests that path; these modules run again on the epoll path, the
# one kernels without io_uring (or with it forbidden) get.
PGSWITCH_IO_URING=off ctest --test-dir build --output-on-failure \
  -R '^integration\.test_(foundation|tls|transparency)$'

# The same code under AddressSanitizer + UndefinedBehaviorSanitizer (Debug): the unit tests and
# the integration tests that drive the client session, relay and pools (all but the health
# checker's own and those that mostly orchestrate other programs: the Debian package, Patroni
# and etcd, pgBackRest, several pgswitch instances with or without etcd; the release run covers
# them). A sanitizer report ends pgswitch, which the tests see as a crash.
# (PGSWITCH_SKIP_SANITIZE=1 skips this stage.)
if [[ "${PGSWITCH_SKIP_SANITIZE:-}" != 1 ]]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPGSWITCH_SANITIZE=ON -DPGSWITCH_BENCH=OFF
  cmake --build build-asan -j"$(nproc)" --target pgswitch pgswitch_unit_tests
  ASAN_OPTIONS=detect_leaks=0 ctest --test-dir build-asan --output-on-failure \
    --parallel "$(nproc)" \
    -E '^(boundary\.|integration\.test_(health|package|patroni|grow_from_backup|several_instances|coordination))'
fi

# libFuzzer targets (fuzz/, a clang build in build-fuzz/) for the parsers that take hostile
# input, each run for PGSWITCH_FUZZ_SECONDS (default 30) on a copy of its seed corpus; a crash
# fails the command. (PGSWITCH_SKIP_FUZZ=1 skips this stage.)
bash scripts/fuzz.sh
