#!/usr/bin/env bash
# On the lent GPU machine: profile it into experiments/hardware/h200-measured.json (unless that file
# is already there), run the CUDA tests of the carried test build, then an engine sweep, resuming
# from the committed results. Everything that comes back is written under $OUT.
# Usage (repository root, binaries built here and carried with .device-deps):
#   source .device-deps/env.sh && DEADLINE=420 bash scripts/device/sweep-h200.sh COMMIT [SWEEP.json ...]
# Carried: build/release/engine/flexgen (sweeps and profile), build/test/engine/flexgen and
# build/test/tests/flexgen_tests (the `test` preset: fault points compiled in, so the CUDA fault
# tests run). TESTS=0 skips the tests; GTEST_FILTER narrows them. DEADLINE (seconds) stops the
# sweeps by then (a sweep resumes from its results file next time).
set -uo pipefail
commit=${1:?commit}
shift
out=${OUT:-/tmp/flexgen-out}
mkdir -p "$out"
t_start=$(date +%s)
B=build/release/engine/flexgen
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader | tee "$out/gpu.txt"
nproc; free -g | head -2
spec=experiments/hardware/h200-measured.json
if [ ! -f "$spec" ]; then
  t0=$(date +%s)
  "$B" profile --name h200-measured --output "$spec" --details "$out/h200-measured-measurements.json" \
      --offload-dir /tmp/flexgen-offload 2> "$out/profile.log"
  echo "profile: rc=$? $(( $(date +%s) - t0 )) s"; tail -25 "$out/profile.log"
  cp "$spec" "$out/h200-measured.json"
fi
if [ "${TESTS:-1}" != 0 ]; then
  t0=$(date +%s)
  build/test/tests/flexgen_tests --gtest_filter="${GTEST_FILTER:-Cuda*:*Gpu*:GenerateCli*:TinyOpt*:CpuAttention*}" \
      > "$out/gpu-tests.log" 2>&1
  rc=$?
  grep -E "^\[  FAILED|^\[  PASSED|^\[  SKIPPED \] [0-9]|tests ran" "$out/gpu-tests.log" | head -30
  echo "tests: rc=$rc $(( $(date +%s) - t0 )) s"
fi
for sweep in "$@"; do
  name=$(basename "$sweep" .json)
  [ -f "results/sweeps/$name.jsonl" ] && cp "results/sweeps/$name.jsonl" "$out/$name.jsonl"
  left=$(( ${DEADLINE:-480} - ($(date +%s) - t_start) ))
  if [ "$left" -le 30 ]; then echo "no time left for $name"; continue; fi
  echo "sweep $name: up to $left s"
  timeout --kill-after=10 "$left" "$B" sweep "$sweep" --commit "$commit" --output "$out/$name.jsonl" 2> "$out/$name.log"
  echo "sweep $name: rc=$?"; tail -20 "$out/$name.log"
done
echo "total: $(( $(date +%s) - t_start )) s"
