#!/usr/bin/env bash
# On the lent GPU machine: build the release preset (flexgen and the tests) and run the CUDA
# tests (kernels, runtime, fixture, CLI), then the given benchmark ids of issue 4.
# Usage: source .device-deps/env.sh && bash scripts/device/cuda-runtime-check.sh COMMIT [IDS]
# PRESET=test builds the `test` preset (fault points compiled in, so the CUDA fault tests run);
# GTEST_FILTER narrows the tests; PROFILE=1 profiles the host-to-device link first.
set -uo pipefail
commit=${1:?commit}
ids=${2:-}
out=${OUT:-/tmp/flexgen-out}
mkdir -p "$out/logs"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
t0=$(date +%s)
preset=${PRESET:-release}
cmake --preset "$preset" -DCMAKE_PREFIX_PATH=/opt/devdeps/usr >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build --preset "$preset" -j "$(nproc)" --target flexgen flexgen_tests >"$out/build.log" 2>&1 || { grep -E "error" -A3 "$out/build.log" | head -40; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
t0=$(date +%s)
"./build/$preset/tests/flexgen_tests" --gtest_filter="${GTEST_FILTER:-Cuda*:*Gpu*:GenerateCli*:TinyOpt*:CpuAttention*}" >"$out/gpu-tests.log" 2>&1
rc=$?
grep -E "^\[  FAILED|^\[  PASSED|^\[  SKIPPED \] [0-9]|tests ran|device memory taken|Failure|Expected|Which is|actual" "$out/gpu-tests.log" | head -60
echo "tests: rc=$rc $(( $(date +%s) - t0 )) s"
if [ -n "$ids" ]; then
  python3 scripts/bench_engine.py --bench experiments/benchmarks/issue4-h100.json --flexgen "build/$preset/engine/flexgen" \
    --out "$out/h100-issue4.jsonl" --commit "$commit" --only "$ids" --log-dir "$out/logs" ${PROFILE:+--profile}
fi
exit $rc
