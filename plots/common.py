"""Shared helpers of the plotting scripts: reading results rows, saving figures.

Every script reads results/ only and writes PNG and SVG under plots/figures/.
"""
import json
import os
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = pathlib.Path(os.environ.get("FLEXGEN_RESULTS", ROOT / "results")) / "sweeps"
FIGURES = pathlib.Path(os.environ.get("FLEXGEN_FIGURES", ROOT / "plots" / "figures"))

# Published numbers (Sheng et al., "FlexGen", ICML 2023; arXiv 2303.06865): generation throughput
# in token/s on one T4 with prompt 512 and generation 32. Table 2 (and the repository's
# benchmark/batch_size_table.md) and Table 4 (ablation).
PAPER_T4 = {
    ("opt-30b", "FlexGen"): 7.32,
    ("opt-175b", "FlexGen"): 0.69,
    ("opt-30b", "FlexGen (4-bit)"): 8.38,
    ("opt-175b", "FlexGen (4-bit)"): 1.12,
}
PAPER_T4_ABLATION = {
    "all optimizations": {"opt-30b": 7.32, "opt-175b": 0.69},
    "no policy search": {"opt-30b": 7.26, "opt-175b": 0.27},
    "no overlap": {"opt-30b": 5.86, "opt-175b": 0.59},
    "no cpu compute": {"opt-30b": 4.03, "opt-175b": 0.62},
    "no disk": {"opt-30b": 7.32, "opt-175b": None},  # None: out of memory
    "deepspeed policy": {"opt-30b": 1.57, "opt-175b": 0.01},
}


def rows(name):
    """The rows of results/sweeps/<name>.jsonl (empty when the file is missing)."""
    path = RESULTS / f"{name}.jsonl"
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def ok(rs):
    return [r for r in rs if r.get("status") == "ok"]


def latest(rs):
    """One row per point id: the last one written (a point re-run after a change)."""
    by_id = {}
    for r in rs:
        by_id[r["id"]] = r
    return list(by_id.values())


def save(fig, name):
    FIGURES.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        p = FIGURES / f"{name}.{ext}"
        fig.savefig(p, dpi=130 if ext == "png" else None, bbox_inches="tight")
        paths.append(p)
    plt.close(fig)
    return paths


def provenance(rs):
    """'commit X, date Y' of a set of rows, for a figure's caption."""
    commits = sorted({r.get("commit", "?") for r in rs})
    dates = sorted({r.get("date", "?")[:10] for r in rs})
    return f"commit {', '.join(commits)}; {', '.join(dates)}"
