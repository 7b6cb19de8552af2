#!/usr/bin/env python3
"""The 70B-class LLaMA runs of issue 9 on the GPU machine: for each precision (fp16, 4-bit),
`flexgen search` finds the policy for llama-2-70b (dummy weights) on the machine's measured
hardware file under the given tier budgets, `flexgen generate` runs it on the CUDA backend, and
`flexgen simulate` predicts the same run; one JSON row per run goes to --out (device, commit, date,
commands, the searched policy, measured and predicted throughput and latency, peak memory).

Usage (from the repository root, after building):
  python3 scripts/llama70b_runs.py --flexgen build/release/engine/flexgen \
      --hardware experiments/hardware/h200-measured.json --commit abc1234 --out OUT/llama70b.jsonl \
      [--precision fp16,q4] [--prompt-len 128] [--gen-len 8] [--gpu-mem 70GiB] [--run-gpu-mem 76GiB]
      [--cpu-mem 88GiB] [--run-cpu-mem 90GiB] [--disk-mem 40GiB] [--offload-dir /tmp/flexgen-offload-llama] [--timeout 280]

The budgets given to the search (--gpu-mem, --cpu-mem) are below what the run gets (--run-gpu-mem,
--run-cpu-mem): the search adds the cost model's estimate of the CUDA backend's compute workspace
and no pinned I/O buffers or per-buffer alignment; its workspace estimate is smaller
than the backend's real one (it takes the larger of the prefill and decode buffers, the backend holds
all its buffers at once); the difference is the headroom. Both are recorded in the row.
"""
import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time


def gpu_name():
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, check=True).stdout.strip().splitlines()[0]
    except Exception:  # noqa: BLE001
        return "no GPU"


def run(cmd, timeout, log):
    """Runs a command; returns (exit code, stdout, stderr, seconds). Logs both streams."""
    t = time.time()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        code, out, err = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        code, out, err = 124, e.stdout or "", (e.stderr or "") + f"\ntimed out after {timeout} s"
        out = out.decode() if isinstance(out, bytes) else out
        err = err.decode() if isinstance(err, bytes) else err
    wall = time.time() - t
    with open(log, "w") as f:
        f.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n" + out + "\n--- stderr ---\n" + err)
    return code, out, err, wall


def last_line(text, code):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1] if lines else f"exit {code}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flexgen", required=True)
    ap.add_argument("--hardware", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="llama-2-70b")
    ap.add_argument("--precision", default="fp16,q4")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=8)
    ap.add_argument("--gpu-mem", default="70GiB")
    ap.add_argument("--run-gpu-mem", default="76GiB")
    ap.add_argument("--cpu-mem", default="88GiB")
    ap.add_argument("--run-cpu-mem", default="90GiB")
    ap.add_argument("--disk-mem", default="40GiB")
    ap.add_argument("--offload-dir", default="/tmp/flexgen-offload-llama")
    ap.add_argument("--timeout", type=int, default=280)
    ap.add_argument("--log-dir", default="")
    args = ap.parse_args()

    log_dir = args.log_dir or os.path.dirname(os.path.abspath(args.out))
    os.makedirs(log_dir, exist_ok=True)
    os.makedirs(args.offload_dir, exist_ok=True)
    device = gpu_name()
    failures = 0
    for precision in [p for p in args.precision.split(",") if p]:
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        q4 = precision == "q4"
        row = {"bench": f"issue9-{args.model}-{precision}", "device": device, "commit": args.commit, "date": date,
               "model": args.model, "dummy_weights": True, "precision": "4-bit weights" if q4 else "fp16",
               "hardware_file": args.hardware, "prompt_len": args.prompt_len, "gen_len": args.gen_len,
               "budgets": {"search_gpu_mem": args.gpu_mem, "run_gpu_mem": args.run_gpu_mem,
                           "search_cpu_mem": args.cpu_mem, "run_cpu_mem": args.run_cpu_mem,
                           "disk_mem": args.disk_mem}}
        # 1. search
        search = [args.flexgen, "search", "--model", args.model, "--hardware", args.hardware,
                  "--prompt-len", str(args.prompt_len), "--gen-len", str(args.gen_len),
                  "--gpu-mem", args.gpu_mem, "--cpu-mem", args.cpu_mem, "--disk-mem", args.disk_mem, "--json"]
        if q4:
            search.append("--compress-weight")
        code, out, err, wall = run(search, args.timeout, os.path.join(log_dir, f"{precision}-search.log"))
        row["search_command"] = " ".join(["flexgen"] + search[1:])
        if code != 0:
            row["error"] = "search: " + last_line(err, code)
            failures += 1
            write(args.out, row)
            continue
        found = json.loads(out)["best"]
        row["policy"] = found["policy"]
        row["search"] = {"predicted_throughput_tok_s": found["throughput_tok_s"], "predicted_prefill_s": found["prefill_s"],
                         "predicted_decode_s": found["decode_s"], "predicted_total_s": found["total_s"],
                         "predicted_peak_bytes": found["peak_bytes"], "shares": found["shares"], "seconds": round(wall, 2)}
        words = shlex.split(found["command"])  # flexgen generate --model ... --gpu-mem N --cpu-mem N ...
        policy_words = words[2:]
        # The run's budgets: the searched capacities plus the headroom for the CUDA backend's real
        # workspace (GPU) and its pinned I/O buffers and 4 KiB alignment of every buffer (CPU).
        policy_words[policy_words.index("--gpu-mem") + 1] = args.run_gpu_mem
        policy_words[policy_words.index("--cpu-mem") + 1] = args.run_cpu_mem
        # 2. generate on the GPU
        generate = [args.flexgen, "generate"] + policy_words + ["--backend", "cuda", "--offload-dir", args.offload_dir,
                                                                 "--task-times", "--json"]
        code, out, err, wall = run(generate, args.timeout, os.path.join(log_dir, f"{precision}-generate.log"))
        row["command"] = " ".join(["flexgen"] + generate[1:])
        row["wall_s_with_setup"] = round(wall, 2)
        if code != 0:
            row["error"] = "generate: " + last_line(err, code)
            failures += 1
        else:
            measured = json.loads(out)
            measured.pop("sequences", None)
            row["measured"] = measured
        # 3. simulate the same run on the hardware file
        simulate = [args.flexgen, "simulate"] + [w for w in policy_words] + ["--hardware", args.hardware, "--json"]
        code, out, err, wall = run(simulate, args.timeout, os.path.join(log_dir, f"{precision}-simulate.log"))
        row["simulate_command"] = " ".join(["flexgen"] + simulate[1:])
        if code != 0:
            row["simulate_error"] = last_line(err, code)
            failures += 1
        else:
            sim = json.loads(out)
            row["simulated"] = {k: sim[k] for k in ("throughput_tok_s", "decode_throughput_tok_s", "prefill_s",
                                                    "decode_s", "total_s", "critical_resource", "peak_memory")
                                if k in sim}
        if "measured" in row and "simulated" in row:
            row["measured_over_simulated"] = round(row["measured"]["throughput_tok_s"] /
                                                   row["simulated"]["throughput_tok_s"], 4)
        write(args.out, row)
        m = row.get("measured", {})
        s = row.get("simulated", {})
        print(f"{precision}: policy {row['policy'] if 'policy' in row else '-'}; measured "
              f"{m.get('throughput_tok_s', float('nan')):.2f} tok/s, simulated {s.get('throughput_tok_s', float('nan')):.2f} "
              f"tok/s, search predicted {row['search']['predicted_throughput_tok_s']:.2f} tok/s "
              f"[{row.get('wall_s_with_setup', 0):.0f} s] {row.get('error', '')}", flush=True)
    return 1 if failures else 0


def write(path, row):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
