"""Throughput vs latency (the kind of the paper's Figure 1): results/sweeps/tradeoff-t4.jsonl
(simulated T4, OPT-30B and OPT-175B) and, when present, tradeoff-h200.jsonl (engine, OPT-30B)."""
import sys

import matplotlib.pyplot as plt

from common import PAPER_T4, latest, ok, provenance, rows, save


def frontier(points):
    """The Pareto frontier of (latency, throughput): lower latency, higher throughput."""
    best = []
    for lat, thr in sorted(points):
        if not best or thr > best[-1][1]:
            best.append((lat, thr))
    return best


def main():
    t4 = ok(latest(rows("tradeoff-t4")))
    h200 = ok(latest(rows("tradeoff-h200")))
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
    if h200:
        fig, ax = plt.subplots(figsize=(6.5, 5))
        meas = [(r["total_s"], r["throughput_tok_s"]) for r in h200]
        pred = [(r["predicted"]["total_s"], r["predicted"]["throughput_tok_s"]) for r in h200 if "predicted" in r
                and "total_s" in r["predicted"]]
        ax.scatter(*zip(*meas), color="#4c72b0", label="measured (CUDA backend)")
        if pred:
            ax.scatter(*zip(*pred), color="#dd8452", marker="x", label="predicted (cost model)")
        for r in h200:
            p = r["policy"]
            ax.annotate(f'{p["gpu_batch_size"]}x{p["num_gpu_batches"]}', (r["total_s"], r["throughput_tok_s"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("latency: time to finish a block (s, log scale)")
        ax.set_ylabel("generation throughput (token/s, log scale)")
        dev = sorted({r.get("device", "?") for r in h200})
        ax.set_title(f"OPT-30B 4-bit on {', '.join(dev)}\n({provenance(h200)})", fontsize=9)
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=8)
        paths += save(fig, "tradeoff-h200")
    for p in paths:
        print(p)


if __name__ == "__main__":
    sys.exit(main())
