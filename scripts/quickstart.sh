#!/usr/bin/env bash
# Quick start, command 1: install what is missing, build, and run the main job: text generation
# with the tiny fixture model (a random OPT made by HF transformers), then the experiments
# (scripts/run_experiments.sh: the simulator's ablation, trade-off and what-if sweeps, an engine
# sweep on this machine's GPU or CPU, and their figures), ending with where the figures are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --plots
bash scripts/build.sh release
./build/release/engine/flexgen generate --model tests/fixtures/tiny-opt --prompt "Hello" --gen-len 16
bash scripts/run_experiments.sh build/release/engine/flexgen
