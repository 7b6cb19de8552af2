#!/usr/bin/env bash
# Quick start, command 2: install what is missing, build, and run the whole test suite.
# GPU tests skip cleanly on machines without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh release
ctest --preset release -j "$(nproc)"
