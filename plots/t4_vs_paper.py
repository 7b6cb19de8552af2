"""Prints the simulated-T4 rows next to the paper's published numbers, as the markdown tables of
docs/experiments.md ("The simulated T4 against the paper"). Reads results/sweeps/ablation-t4.jsonl
and tradeoff-t4.jsonl."""
import sys

from common import PAPER_T4, PAPER_T4_ABLATION, latest, ok, rows

ABLATION_ROWS = [  # (our label, the paper's row)
    ("paper policy", "all optimizations"),
    ("all optimizations (searched)", "all optimizations"),
    ("no policy search", "no policy search"),
    ("no overlap", "no overlap"),
    ("no cpu compute", "no cpu compute"),
    ("no disk (searched)", "no disk"),
    ("deepspeed policy", "deepspeed policy"),
    ("row-by-row", None),
    ("sparse 0.2", None),
    ("4-bit weights+cache (searched)", None),
]


def fmt(x):
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 10 else f"{x:.2f}"


def main():
    rs = latest(rows("ablation-t4"))
    by = {(r["label"], r["model"]): r for r in rs}
    print("| point | OPT-30B paper | OPT-30B simulated | ratio | OPT-175B paper | OPT-175B simulated | ratio |")
    print("|---|---|---|---|---|---|---|")
    for label, paper_row in ABLATION_ROWS:
        cells = [label]
        for model in ("opt-30b", "opt-175b"):
            paper = PAPER_T4_ABLATION.get(paper_row, {}).get(model) if paper_row else None
            r = by.get((label, model))
            sim = r.get("throughput_tok_s") if r and r["status"] == "ok" else None
            sim_text = fmt(sim) if r and r["status"] == "ok" else ("does not fit" if r else "-")
            if paper_row == "no disk" and model == "opt-175b":
                paper_text = "OOM"
            else:
                paper_text = fmt(paper)
            ratio = f"{sim / paper:.2f}" if sim and paper else "-"
            cells += [paper_text, sim_text, ratio]
        print("| " + " | ".join(cells) + " |")
    print()
    t = ok(latest(rows("tradeoff-t4")))
    print("| model | system | paper's best token/s | simulated best token/s (policy) | its latency s |")
    print("|---|---|---|---|---|")
    for model in ("opt-30b", "opt-175b"):
        for label in ("FlexGen", "FlexGen (4-bit)"):
            pts = [r for r in t if r["model"] == model and r["label"] == label]
            if not pts:
                continue
            best = max(pts, key=lambda r: r["throughput_tok_s"])
            p = best["policy"]
            pol = f'{p["gpu_batch_size"]} x {p["num_gpu_batches"]}, --percent {" ".join(f"{x:g}" for x in p["percent"])}'
            print(f"| {model} | {label} | {fmt(PAPER_T4.get((model, label)))} | {fmt(best['throughput_tok_s'])} ({pol}) | "
                  f"{best['total_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
