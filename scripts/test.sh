#!/usr/bin/env bash
# Quick start, command 2: install what is missing, build, and run the whole test suite.
# GPU tests skip cleanly on machines without a GPU. Builds the `test` preset (release with the
# test-only fault points, build/test), then runs the fuzzing pass (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh test
ctest --preset test -j "$(nproc)"
# A short fuzzing pass over the input parsers (docs/robustness.md); FLEXGEN_FUZZ_SECONDS=0 skips it.
if [ "${FLEXGEN_FUZZ_SECONDS:-40}" != 0 ]; then
  bash scripts/fuzz.sh
fi
