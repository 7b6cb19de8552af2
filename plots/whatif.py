"""What-if hardware (results/sweeps/whatif-t4.jsonl): throughput with the searched policy as one
hardware field of the paper's T4 machine varies."""
import sys

import matplotlib.pyplot as plt

from common import latest, provenance, rows, save

PANELS = [
    ("hw.h2d_bytes_per_s", "host-to-device bandwidth (GB/s)", 1e9),
    ("hw.gpu_memory_bytes", "GPU memory (GiB)", 2**30),
    ("hw.disk_read_bytes_per_s", "disk read bandwidth (GB/s)", 1e9),
    ("hw.cpu_memory_bytes", "host memory (GiB)", 2**30),
]
SIZES = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


def value(v):
    if isinstance(v, str):
        for unit, scale in SIZES.items():
            if v.endswith(unit):
                return float(v[: -len(unit)]) * scale
        return float(v)
    return float(v)


def main():
    rs = latest(rows("whatif-t4"))
    if not rs:
        return 0
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, (key, xlabel, scale) in zip(axes.flat, PANELS):
        for model, color in [("opt-30b", "#4c72b0"), ("opt-175b", "#dd8452")]:
            pts = sorted((value(r["params"][key]) / scale, r.get("throughput_tok_s"))
                         for r in rs if r["model"] == model and key in r["params"])
            good = [(x, y) for x, y in pts if y]
            bad = [x for x, y in pts if not y]
            if good:
                ax.plot(*zip(*good), marker="o", color=color, label=model)
            for x in bad:
                ax.plot([x], [ax.get_ylim()[0] if good else 1], marker="x", color=color, linestyle="none")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel + ", log scale")
        ax.set_ylabel("throughput (token/s, log scale)")
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=8, title="x: does not fit", title_fontsize=7)
    fig.suptitle("What-if on the simulator: the paper's T4 machine with one field changed, searched policy, "
                 f"prompt 512, generation 32\n({provenance(rs)})", fontsize=10)
    for p in save(fig, "whatif-t4"):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
