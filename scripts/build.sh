#!/usr/bin/env bash
# Configures and builds with the `release` preset (CUDA backend when nvcc is present).
# Usage: scripts/build.sh [preset]   (release | debug | host)
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-release}
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$(nproc)"
