#!/usr/bin/env bash
# The fuzzing pass of CI (docs/robustness.md): builds the libFuzzer targets of tests/fuzz with
# clang-14 under AddressSanitizer + UndefinedBehaviorSanitizer in build/fuzz, then runs each for a
# bounded time on its seed corpus (tests/fuzz/corpus/<target>) and regression inputs
# (tests/fuzz/regressions/<target>). New corpus units go to build/fuzz/corpus/<target>, never into
# the repository. A finding (crash, sanitizer report, an exception other than flexgen::Error,
# timeout, out-of-memory) fails the script; its input is kept in build/fuzz/findings/<target>/:
# fix the parser, then commit the input under tests/fuzz/regressions/<target>/.
#
# Usage: scripts/fuzz.sh [seconds per target] [target ...]
#   seconds: default $FLEXGEN_FUZZ_SECONDS or 40; targets: default every tests/fuzz/*_fuzz.cc.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-${FLEXGEN_FUZZ_SECONDS:-40}}
shift || true
bash scripts/install-deps.sh --fuzz

build=build/fuzz
cmake -S . -B "$build" -G Ninja \
  -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
  -DFLEXGEN_ENABLE_CUDA=OFF -DFLEXGEN_BUILD_TESTS=OFF -DFLEXGEN_BUILD_BENCHMARKS=OFF \
  -DFLEXGEN_BUILD_FUZZERS=ON -DFLEXGEN_SANITIZE=address,undefined >/dev/null
start=$(date +%s)
cmake --build "$build" --target flexgen_fuzzers -j "$(nproc)"
echo "fuzz: built the targets in $(( $(date +%s) - start )) s" >&2

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/*_fuzz.cc; do
    name=$(basename "$f" _fuzz.cc)
    targets+=("$name")
  done
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
failed=()
printf '%-14s %6s %8s %10s %9s %s\n' target seeds corpus executions exec/s result
for t in "${targets[@]}"; do
  work="$build/corpus/$t"
  findings="$build/findings/$t"
  log="$build/logs/$t.log"
  rm -rf "$work" "$findings"
  mkdir -p "$work" "$findings" "$(dirname "$log")"
  dirs=("$work" "tests/fuzz/corpus/$t")
  [ -d "tests/fuzz/regressions/$t" ] && dirs+=("tests/fuzz/regressions/$t")
  extra=()
  [ -f "tests/fuzz/dict/$t.dict" ] && extra+=("-dict=tests/fuzz/dict/$t.dict")
  result=ok
  if ! "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$findings/" "${extra[@]}" "${dirs[@]}" >"$log" 2>&1; then
    result="FINDING (see $log, input in $findings/)"
    failed+=("$t")
  fi
  seeds=$(find "${dirs[@]:1}" -type f | wc -l)
  corpus=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  execs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$log")
  rate=$(awk '/stat::average_exec_per_sec:/ {print $2}' "$log")
  printf '%-14s %6s %8s %10s %9s %s\n' "$t" "$seeds" "${corpus:--}" "${execs:--}" "${rate:--}" "$result"
done
if [ ${#failed[@]} -ne 0 ]; then
  for t in "${failed[@]}"; do
    echo "---- fuzz_$t:" >&2
    grep -E 'finding:|ERROR|runtime error|SUMMARY|Test unit written' "$build/logs/$t.log" | head -20 >&2 || true
  done
  echo "fuzz: findings in ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: no findings (${#targets[@]} targets, $seconds s each)" >&2
