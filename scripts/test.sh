#!/usr/bin/env bash
# The one test command: installs dependencies, builds pgswitch (Release) and runs every test
# (GoogleTest unit tests and the Python integration tests against real PostgreSQL) via ctest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
# Integration entries are RUN_SERIAL, so parallelism only spreads the unit tests.
ctest --test-dir build --output-on-failure --parallel "$(nproc)"
