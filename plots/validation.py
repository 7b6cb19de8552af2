"""Cost-model validation, per lent GPU (ENGINE_TAGS): predicted vs measured throughput of every
engine run of results/sweeps/ablation-<tag>.jsonl, and predicted vs measured busy time per task
kind. The predictions are recomputed with the current cost model by `flexgen validate --json`
(results/validation/ablation-<tag>.json, written by plots/make_all.py)."""
import json
import sys

import matplotlib.pyplot as plt

from common import RESULTS, save

ENGINE_TAGS = ("h200", "h100")


def validation_path(tag):
    return RESULTS.parent / "validation" / f"ablation-{tag}.json"


def main():
    for tag in ENGINE_TAGS:
        plot(tag)
    return 0


def plot(tag):
    path = validation_path(tag)
    if not path.exists():
        return 0
    v = json.loads(path.read_text())
    runs = v["runs"]
    if not runs:
        return 0
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5.5))
    meas = [r["measured_tok_s"] for r in runs]
    pred = [r["predicted_tok_s"] for r in runs]
    lo, hi = min(meas + pred) * 0.7, max(meas + pred) * 1.4
    a.plot([lo, hi], [lo, hi], color="gray", linewidth=1, label="predicted = measured")
    a.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="gray", alpha=0.15, label="±10%")
    a.scatter(meas, pred, color="#4c72b0")
    for r in runs:
        a.annotate(f'{r["label"]} ({100 * r["error"]:+.0f}%)', (r["measured_tok_s"], r["predicted_tok_s"]), fontsize=7,
                   xytext=(4, -3), textcoords="offset points")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlim(lo, hi)
    a.set_ylim(lo, hi)
    a.set_xlabel("measured throughput (token/s, log scale)")
    a.set_ylabel("predicted throughput (token/s, log scale)")
    a.set_title(f"{len(runs)} engine runs: mean absolute error {100 * v['mape']:.1f}%", fontsize=10)
    a.grid(which="both", alpha=0.3)
    a.legend(fontsize=8, loc="upper left")
    kinds = [k for k, t in v["task_kinds"].items() if t["measured_busy_s"] > 0 or t["predicted_busy_s"] > 0]
    y = list(range(len(kinds)))
    b.barh([i - 0.2 for i in y], [v["task_kinds"][k]["measured_busy_s"] for k in kinds], height=0.4,
           color="#4c72b0", label="measured (engine task timings)")
    b.barh([i + 0.2 for i in y], [v["task_kinds"][k]["predicted_busy_s"] for k in kinds], height=0.4,
           color="#dd8452", label="predicted (cost model)")
    b.set_yticks(y)
    b.set_yticklabels(kinds, fontsize=8)
    b.invert_yaxis()
    b.set_xscale("log")
    b.set_xlabel("busy time summed over the runs (s, log scale)")
    b.set_title("per task kind", fontsize=10)
    b.grid(axis="x", which="both", alpha=0.3)
    b.legend(fontsize=8)
    hw = sorted({r["hardware"] for r in runs})
    fig.suptitle(f"Cost model vs measurements (predicted on {', '.join(hw)})", fontsize=10)
    for p in save(fig, f"validation-{tag}"):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
