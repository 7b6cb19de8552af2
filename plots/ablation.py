"""Ablation figures: the simulated T4 (results/sweeps/ablation-t4.jsonl) against the paper's
Table 4, and the engine runs on each lent GPU (results/sweeps/ablation-h200.jsonl, ablation-h100.jsonl),
measured vs predicted."""
import sys

import json
import matplotlib.pyplot as plt

from common import PAPER_T4_ABLATION, latest, ok, provenance, rows, save
from validation import ENGINE_TAGS, validation_path

PAPER_LABEL = {  # our point label -> the paper's ablation row
    "paper policy": "all optimizations",
    "no policy search": "no policy search",
    "no overlap": "no overlap",
    "no cpu compute": "no cpu compute",
    "no disk (searched)": "no disk",
    "deepspeed policy": "deepspeed policy",
}


def t4():
    rs = latest(rows("ablation-t4"))
    if not rs:
        return []
    models = ["opt-30b", "opt-175b"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    for ax, model in zip(axes, models):
        mine = [r for r in rs if r["model"] == model]
        labels = [r["label"] for r in mine]
        y = range(len(mine))
        vals = [r.get("throughput_tok_s", 0) if r["status"] == "ok" else 0 for r in mine]
        ax.barh([i for i, v in zip(y, vals) if v > 0], [v for v in vals if v > 0], color="#4c72b0", label="simulated (this cost model, t4-paper)")
        xmin = min(v for v in vals if v > 0) / 3
        for i, r in enumerate(mine):
            if r["status"] != "ok":
                ax.text(xmin, i, " infeasible (out of memory)", va="center", fontsize=8, color="#c44e52")
            paper = PAPER_T4_ABLATION.get(PAPER_LABEL.get(r["label"], ""), {}).get(model)
            if paper:
                ax.plot([paper], [i], marker="D", color="#dd8452", linestyle="none",
                        label="paper, Table 4" if i == 0 or "paper, Table 4" not in
                        [h.get_label() for h in ax.get_lines()] else None)
        ax.set_yticks(list(y))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("generation throughput (token/s, log scale)")
        ax.set_title(f"{model} on one T4 (simulated), prompt 512, generation 32")
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Ablation on the simulated T4 ({provenance(rs)})", fontsize=10)
    return save(fig, "ablation-t4")


def engine(tag):
    """The engine runs of results/sweeps/ablation-<tag>.jsonl, measured vs predicted."""
    rs = latest(rows(f"ablation-{tag}"))
    if not rs:
        return []
    done = ok(rs)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rs) + 1.8))
    labels = [r["label"] for r in rs]
    y = list(range(len(rs)))
    meas = [r.get("throughput_tok_s", 0) if r["status"] == "ok" else 0 for r in rs]
    # Predictions of the current cost model (results/validation/ablation-h200.json, written by
    # make_all.py --flexgen) where there are any; else those recorded at the sweep's commit.
    validation = {}
    vpath = validation_path(tag)
    if vpath.exists():
        validation = {v["id"]: v for v in json.load(open(vpath)).get("runs", [])}
    current = bool(validation)
    pred = [validation[r["id"]]["predicted_tok_s"] if r["id"] in validation else
            r.get("predicted", {}).get("throughput_tok_s", 0) for r in rs]
    ax.barh([i - 0.2 for i in y], meas, height=0.4, color="#4c72b0", label="measured (CUDA backend)")
    ax.barh([i + 0.2 for i in y], pred, height=0.4, color="#dd8452",
            label=(f"predicted (current cost model, {tag}-measured)" if current else
                   f"predicted (cost model at the sweep's commit, {tag}-measured)"))
    xmin = min([v for v in meas + pred if v > 0] or [1]) / 3
    ax.set_xlim(left=xmin)
    for i, r in enumerate(rs):
        if r["status"] != "ok":
            why = r.get("reason", "").split("error: ")[-1]
            ax.text(xmin * 1.05, i - 0.2, "failed: " + why[:70], va="center", fontsize=6.5, color="#c44e52")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("generation throughput (token/s, log scale)")
    dev = sorted({r.get("device", "?") for r in done})
    ax.set_title(f"OPT-30B ablation on {', '.join(dev)}, prompt 512, generation 32\n({provenance(rs)})",
                 fontsize=9)
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return save(fig, f"ablation-{tag}")


def main():
    for p in t4() + [q for tag in ENGINE_TAGS for q in engine(tag)]:
        print(p)


if __name__ == "__main__":
    sys.exit(main())
