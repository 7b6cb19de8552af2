#!/usr/bin/env bash
# The README's main job after the build: the simulator experiments (the paper's ablation on the
# simulated T4, the throughput-latency trade-off, what-if hardware), an engine sweep on whatever
# this machine has (the CUDA backend with OPT-6.7B on a GPU, else the host backend with OPT-125M),
# the cost model against those engine runs, and the figures. Writes under build/experiments/
# (results/ and plots/figures/ hold the committed runs; docs/reproducing.md regenerates those).
# Usage: bash scripts/run_experiments.sh [flexgen binary]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build/release/engine/flexgen}
work=build/experiments
mkdir -p "$work/results/sweeps" "$work/figures"
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
for sweep in ablation-t4 tradeoff-t4 whatif-t4; do
  echo "== simulator: experiments/sweeps/$sweep.json"
  "$B" sweep "experiments/sweeps/$sweep.json" --output "$work/results/sweeps/$sweep.jsonl"
done
if nvidia-smi >/dev/null 2>&1 && "$B" generate --model opt-125m --gen-len 1 --prompt-len 8 --backend cuda >/dev/null 2>&1; then
  engine=engine-gpu
else
  engine=engine-host
fi
echo "== engine: experiments/sweeps/$engine.json"
"$B" sweep "experiments/sweeps/$engine.json" --output "$work/results/sweeps/$engine.jsonl"
if [ "$engine" = engine-gpu ]; then
  echo "== the cost model against these runs, on a quick profile of this machine"
  "$B" profile --quick --output "$work/this-machine.json"
  "$B" validate --hardware "$work/this-machine.json" "$work/results/sweeps/$engine.jsonl"
fi
echo "== figures"
FLEXGEN_RESULTS="$work/results" FLEXGEN_FIGURES="$work/figures" "$PY" plots/make_all.py
echo
echo "results: $work/results/sweeps/ (one JSON row per run)"
echo "figures: $work/figures/ (PNG and SVG); the committed ones are in plots/figures/"
