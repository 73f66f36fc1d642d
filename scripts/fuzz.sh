#!/usr/bin/env bash
# The fuzzing stage: builds the libFuzzer targets of fuzz/ with clang (build-fuzz/, ASan +
# UBSan) and runs each for a bounded time on a scratch copy of its seed corpus
# (fuzz/corpus/<name>/, so the repository is not modified). Fails if any target crashes,
# leaks, times out or breaks an invariant; the input is left in build-fuzz/artifacts/<name>/.
# PGSWITCH_FUZZ_SECONDS sets the time per target (default 30); PGSWITCH_SKIP_FUZZ=1 skips;
# PGSWITCH_FUZZ_TARGETS="scram login" runs only those; PGSWITCH_BUILD_JOBS sets -j.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${PGSWITCH_SKIP_FUZZ:-}" == 1 ]]; then
  echo "fuzz: skipped (PGSWITCH_SKIP_FUZZ=1)"
  exit 0
fi
seconds="${PGSWITCH_FUZZ_SECONDS:-30}"
targets="${PGSWITCH_FUZZ_TARGETS:-framing messages login scram classifier config exchange tls}"

CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPGSWITCH_FUZZ=ON -DPGSWITCH_TESTS=OFF -DPGSWITCH_BENCH=OFF
cmake --build build-fuzz -j"${PGSWITCH_BUILD_JOBS:-$(nproc)}" --target pgswitch_fuzzers

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in $targets; do
  mkdir -p "$scratch/$t" "build-fuzz/artifacts/$t" build-fuzz/logs
  cp -r "fuzz/corpus/$t/." "$scratch/$t/"
  log="build-fuzz/logs/$t.log"
  if build-fuzz/fuzz/"${t}"_fuzz -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
       -print_final_stats=1 -artifact_prefix="build-fuzz/artifacts/$t/" "$scratch/$t" \
       >"$log" 2>&1; then
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
    speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1)"
    echo "fuzz: $t ok: ${runs:-?} runs, ${speed:-?} exec/s, ${cov:-cov: ?}"
  else
    echo "fuzz: $t FAILED (log: $log; input: build-fuzz/artifacts/$t/):"
    grep -E 'ERROR|invariant|SUMMARY|Test unit written' "$log" | head -8 || true
    failed+=("$t")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: failed: ${failed[*]}"
  exit 1
fi
