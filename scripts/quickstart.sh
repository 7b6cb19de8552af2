#!/usr/bin/env bash
# Quick start, command 1: install what is missing, build, and run the main job:
# text generation with the tiny fixture model (a random OPT made by HF transformers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh release
./build/release/engine/flexgen generate --model tests/fixtures/tiny-opt --prompt "Hello" --gen-len 16
