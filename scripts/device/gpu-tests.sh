#!/usr/bin/env bash
# On the lent GPU machine: build the release preset with
# CUDA against the carried Debian packages and run the whole test suite, GPU tests included.
# Usage (from the repository root, with .device-deps carried):
#   source .device-deps/env.sh && bash scripts/device/gpu-tests.sh
# .device-deps comes from ../shared/device/prepare.sh libgmock-dev (run once on this machine).
set -euo pipefail
out=${OUT:-/tmp/flexgen-out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
cmake --version | head -1
cmake --preset release -DCMAKE_PREFIX_PATH=/opt/devdeps/usr >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build --preset release -j "$(nproc)" >"$out/build.log" 2>&1 || { grep -E "error|Error" "$out/build.log" | head -30; exit 1; }
set +e
ctest --preset release -j "$(nproc)" >"$out/ctest.log" 2>&1
rc=$?
set -e
grep -E "tests passed|tests failed|Failed|\*\*\*" "$out/ctest.log" | tail -20
./build/release/tests/flexgen_tests --gtest_filter='*Gpu*' 2>&1 | tail -15 | tee "$out/gpu-tests.log"
exit $rc
