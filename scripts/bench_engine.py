#!/usr/bin/env python3
"""Runs the engine benchmarks of a benchmark file (experiments/benchmarks/*.json) with the flexgen
binary and appends one JSON row per run to a results file, each row carrying the device, the
commit, the date, the command and every figure the run reported (docs/benchmarks.md).

Usage: scripts/bench_engine.py --bench experiments/benchmarks/issue4-h100.json \
           --flexgen build/release/engine/flexgen --out results/engine/h100-issue4.jsonl \
           --commit abc1234 [--only P1,P2] [--hardware measured.json]
With --profile, `flexgen profile --quick` runs first and its pinned host-to-device bandwidth gives
each run's I/O bound (weight bytes per decode step / bandwidth)."""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time


def gpu_name():
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, check=True).stdout.strip().splitlines()[0]
    except Exception:
        return "no GPU"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--flexgen", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--only", default="")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--log-dir", default="")
    args = ap.parse_args()
    bench = json.load(open(args.bench))
    only = set(x for x in args.only.split(",") if x)
    device = gpu_name()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    h2d = None
    if args.profile:
        hw_path = os.path.join(args.log_dir or ".", "profile-hw.json")
        t = time.time()
        r = subprocess.run([args.flexgen, "profile", "--quick", "--output", hw_path], capture_output=True, text=True)
        if r.returncode != 0:
            print("profile failed:", r.stderr.strip().splitlines()[-1:], file=sys.stderr)
        else:
            h2d = json.load(open(hw_path))["h2d_bytes_per_s"]
            print(f"profile: h2d {h2d / 1e9:.2f} GB/s ({time.time() - t:.0f} s)", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    failures = 0
    for run in bench["runs"]:
        if only and run["id"] not in only:
            continue
        cmd = [args.flexgen, "generate", "--model", run["model"]] + bench["common"] + run["args"]
        t = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.time() - t
        row = {"bench": run["id"], "device": device, "commit": args.commit, "date": date,
               "command": " ".join(["flexgen"] + cmd[1:]), "model": run["model"], "wall_s_with_setup": round(wall, 2)}
        if args.log_dir:
            with open(os.path.join(args.log_dir, f"{run['id']}.stderr.txt"), "w") as f:
                f.write(r.stderr)
        if r.returncode != 0:
            row["error"] = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
            failures += 1
        else:
            out = json.loads(r.stdout)
            out.pop("sequences", None)
            row.update(out)
            if "flexgen_tok_s" in run:
                row["flexgen_tok_s"] = run["flexgen_tok_s"]
                row["speedup_vs_flexgen"] = round(out["throughput_tok_s"] / run["flexgen_tok_s"], 3)
            for key in ("target_tok_s", "target_bound_fraction"):
                if key in run:
                    row[key] = run[key]
            gen_len = out["gen_len"]
            h2d_bytes = out["moved"]["h2d_bytes"]
            if h2d and h2d_bytes > 0:
                per_step = h2d_bytes / gen_len
                bound = out["num_sequences"] / (per_step / h2d)
                row["h2d_bytes_per_s_profiled"] = h2d
                row["h2d_bytes_per_step"] = per_step
                row["io_bound_decode_tok_s"] = round(bound, 3)
                row["decode_fraction_of_io_bound"] = round(out["decode_throughput_tok_s"] / bound, 4)
        with open(args.out, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        summary = row.get("error") or (f"{row['throughput_tok_s']:.1f} tok/s (decode {row['decode_throughput_tok_s']:.1f}, "
                                       f"prefill {row['prefill_s']:.2f} s), peak gpu "
                                       f"{row['peak_memory']['gpu_bytes'] / 2**30:.1f} GiB"
                                       + (f", {row['decode_fraction_of_io_bound'] * 100:.1f}% of the I/O bound"
                                          if "decode_fraction_of_io_bound" in row else ""))
        print(f"{run['id']}: {summary} [{wall:.0f} s]", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
