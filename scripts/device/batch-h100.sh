#!/usr/bin/env bash
# On the lent GPU machine: issue 10's run. OPT-30B (dummy weights, CUDA backend, 4-bit weights
# and cache, weights on the CPU, blocks of 64 x 2) over 2,000 prompts of 32..1,024 tokens with 16
# new tokens each, grouped by length (MODE=grouped) or padded to the longest (MODE=padded).
# Usage: source .device-deps/env.sh && MODE=grouped bash scripts/device/batch-h100.sh COMMIT
set -uo pipefail
commit=${1:?commit}
mode=${MODE:-grouped}
out=${OUT:-/tmp/flexgen-out}
mkdir -p "$out"
cmake --preset release -DCMAKE_PREFIX_PATH=/opt/devdeps/usr >/dev/null 2>&1
cmake --build --preset release -j "$(nproc)" --target flexgen >"$out/build.log" 2>&1 || { grep error -A3 "$out/build.log" | head; exit 1; }
python3 scripts/make_batch_prompts.py 2000 32 1024 --seed 1 --gen-len 16 > "$out/prompts.jsonl"
extra=()
[ "$mode" = padded ] && extra=(--pad-to-longest)
args=(--model opt-30b --backend cuda --percent 0 100 100 0 100 0 --compress-weight --compress-cache
      --gpu-batch-size 64 --num-gpu-batches 2 "${extra[@]}")
t0=$(date +%s)
build/release/engine/flexgen batch --input "$out/prompts.jsonl" --output "$out/$mode.jsonl" "${args[@]}" --json \
  > "$out/$mode-summary.json" 2> "$out/$mode-stderr.txt"
rc=$?
tail -4 "$out/$mode-stderr.txt"
python3 - "$out/$mode-summary.json" "$commit" "$mode" "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" \
  "flexgen batch --input prompts.jsonl --output $mode.jsonl ${args[*]} --json" "$(( $(date +%s) - t0 ))" <<'PY' > "$out/$mode-row.json"
import datetime, json, sys
path, commit, mode, device, command, wall = sys.argv[1:]
try:
    row = json.load(open(path))
except Exception as e:
    row = {"error": str(e)}
row.update({"bench": "issue10-batch-" + mode, "commit": commit, "device": device, "command": command,
            "prompts_file": "scripts/make_batch_prompts.py 2000 32 1024 --seed 1 --gen-len 16",
            "wall_s_with_setup": int(wall),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})
print(json.dumps(row, sort_keys=True))
PY
cat "$out/$mode-row.json" | cut -c1-600
exit $rc
