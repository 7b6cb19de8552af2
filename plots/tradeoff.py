"""Throughput vs latency (the kind of the paper's Figure 1): results/sweeps/tradeoff-t4.jsonl
(simulated T4, OPT-30B and OPT-175B) and, when present, tradeoff-<tag>.jsonl for each lent GPU
(engine, OPT-30B; tags as in validation.ENGINE_TAGS)."""
import sys

import matplotlib.pyplot as plt

from common import PAPER_T4, latest, ok, provenance, rows, save
from validation import ENGINE_TAGS


def frontier(points):
    """The Pareto frontier of (latency, throughput): lower latency, higher throughput."""
    best = []
    for lat, thr in sorted(points):
        if not best or thr > best[-1][1]:
            best.append((lat, thr))
    return best


def engine(tag):
    """Measured and predicted points of the engine's trade-off sweep on one lent GPU."""
    runs = ok(latest(rows(f"tradeoff-{tag}")))
    if not runs:
        return []
    fig, ax = plt.subplots(figsize=(6.5, 5))
    meas = [(r["total_s"], r["throughput_tok_s"]) for r in runs]
    pred = [(r["predicted"]["total_s"], r["predicted"]["throughput_tok_s"]) for r in runs if "predicted" in r
            and "total_s" in r["predicted"]]
    ax.scatter(*zip(*meas), color="#4c72b0", label="measured (CUDA backend)")
    if pred:
        ax.scatter(*zip(*pred), color="#dd8452", marker="x", label="predicted (cost model)")
    for r in runs:
        p = r["policy"]
        ax.annotate(f'{p["gpu_batch_size"]}x{p["num_gpu_batches"]}', (r["total_s"], r["throughput_tok_s"]),
                    fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("latency: time to finish a block (s, log scale)")
    ax.set_ylabel("generation throughput (token/s, log scale)")
    dev = sorted({r.get("device", "?") for r in runs})
    ax.set_title(f"OPT-30B 4-bit on {', '.join(dev)}\n({provenance(runs)})", fontsize=9)
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, f"tradeoff-{tag}")


def main():
    t4 = ok(latest(rows("tradeoff-t4")))
    paths = []
    if t4:
        fig, axes = plt.subplots(1, 2, figsize=(12, 5))
        for ax, model in zip(axes, ["opt-175b", "opt-30b"]):
            for label, color in [("FlexGen", "#dd8452"), ("FlexGen (4-bit)", "#4c72b0")]:
                pts = [(r["total_s"], r["throughput_tok_s"]) for r in t4 if r["model"] == model and r["label"] == label]
                if not pts:
                    continue
                ax.scatter(*zip(*pts), s=12, color=color, alpha=0.35)
                f = frontier(pts)
                ax.plot(*zip(*f), color=color, marker="o", label=f"{label} (simulated, searched placement)")
                paper = PAPER_T4.get((model, label))
                if paper:
                    ax.axhline(paper, color=color, linestyle=":", linewidth=1,
                               label=f"{label}: paper's best, {paper} token/s")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("latency: time to finish a block (s, log scale)")
            ax.set_ylabel("generation throughput (token/s, log scale)")
            ax.set_title(f"{model} on one T4 (simulated), prompt 512, generation 32", fontsize=10)
            ax.grid(which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"Throughput-latency trade-off ({provenance(t4)})", fontsize=10)
        paths += save(fig, "tradeoff-t4")
    for tag in ENGINE_TAGS:
        paths += engine(tag)
    for p in paths:
        print(p)


if __name__ == "__main__":
    sys.exit(main())
