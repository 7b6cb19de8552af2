#!/usr/bin/env bash
# One call on the lent GPU machine with binaries built here and carried (see docs/reproducing.md):
# profile the machine into experiments/hardware/h200-measured.json (unless it is there, or REPROFILE=1), run P1 of
# issue 4 a few times (one with --op-times), the CUDA tests of the `test` build (fault points
# compiled in), then engine sweeps with the time left, resuming from the committed results.
# Usage (repository root; carry .device-deps, build/release/engine/flexgen, build/test/engine/flexgen,
# build/test/tests/flexgen_tests):
#   source .device-deps/env.sh && DEADLINE=560 bash scripts/device/session-h200.sh COMMIT [SWEEP.json ...]
# R and T override the binaries (e.g. builds configured with -DFLEXGEN_MPI=OFF -DFLEXGEN_NCCL=OFF,
# since the GPU machine has neither library). P1=0 skips the P1 runs, TESTS=0 the tests; GTEST_FILTER narrows them. Files come back in $OUT
# (at most 8): session.log, profile.tar (the measured spec and its measurements), p1-runs.jsonl
# (P1 defaults to on for an H100 only), gpu-tests.log, and <sweep>.jsonl and <sweep>.log per sweep;
# FIXTURES=1 first makes the tiny-LLaMA HF fixture (fixtures.tar); LLAMA70B=1 runs issue 9's
# 70B-class runs after the tests, LLAMA70B=after after the sweeps (llama70b.tar; LLAMA_PRECISION=fp16,q4 and LLAMA_TIMEOUT=240 per
# command); SWEEP_ARGS go to every `flexgen sweep` (e.g. --retry-failed); REPROFILE=1 profiles the
# machine again even where its spec is committed (the sweeps then predict on the new one).
set -uo pipefail
commit=${1:?commit}
shift
out=${OUT:-/tmp/flexgen-out}
mkdir -p "$out"
start=$(date +%s)
deadline=${DEADLINE:-560}
R=${R:-build/release/engine/flexgen}
T=${T:-build/test/tests/flexgen_tests}
log=$out/session.log
say() { echo "$*" | tee -a "$log"; }
elapsed() { echo $(( $(date +%s) - start )); }
say "== session commit $commit: $(nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | head -1); $(nproc) cores; $(free -g | awk '/Mem/ {print $2}') GiB"

# The machine's tag: the sweeps and the profiled spec are named after the GPU that runs them (a call
# may get an H100 where an H200 was asked for, or the other way round): h200 in a sweep's file name
# and hardware field becomes this tag.
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case "$gpu" in *H100*) tag=h100 ;; *H200*) tag=h200 ;; *) tag=gpu ;; esac
say "tag: $tag"
spec=experiments/hardware/$tag-measured.json
if [ ! -f "$spec" ] || [ "${REPROFILE:-0}" != 0 ]; then
  "$R" profile --name "$tag-measured" --output "$spec" --details "$tag-measured-measurements.json" \
      --offload-dir /tmp/flexgen-offload >>"$log" 2>&1
  say "profile: rc=$? at $(elapsed) s"
  # One file back (the call returns at most 8): the spec and its measurements.
  tar cf "$out/profile.tar" "$spec" "$tag-measured-measurements.json" 2>>"$log"
fi

if [ "${FIXTURES:-0}" != 0 ]; then
  # The tiny-LLaMA HF fixture (scripts/make_llama_fixtures.py), made before the tests that read it;
  # it comes back as one tar file.
  python3 scripts/make_llama_fixtures.py --out tests/fixtures >>"$log" 2>&1
  say "llama fixtures: rc=$? at $(elapsed) s"
  tar cf "$out/fixtures.tar" tests/fixtures/tiny-llama tests/fixtures/tiny-llama-reference* 2>>"$log"
fi

# P1 runs by default on an H100 only (issue 4's target is set there; the H200's are committed).
p1_default=0
[ "$tag" = h100 ] && p1_default=1
if [ "${P1:-$p1_default}" != 0 ]; then
  p1=(generate --model opt-6.7b --prompt-len 512 --gen-len 32 --backend cuda --json --task-times
      --percent 100 0 100 0 100 0 --gpu-batch-size 32 --num-gpu-batches 1)
  for label in run1 run2 run3 op-times; do
    extra=()
    [ "$label" = op-times ] && extra=(--op-times)
    t0=$(date +%s)
    "$R" "${p1[@]}" "${extra[@]}" >"$out/p1-one.json" 2>"$out/p1-one.err"
    rc=$?
    python3 - "$out/p1-one.json" "$label" "$rc" "$(( $(date +%s) - t0 ))" "$commit" "$out/p1-one.err" \
        "flexgen ${p1[*]} ${extra[*]}" >>"$out/p1-runs.jsonl" <<'PY'
import datetime, hashlib, json, sys
path, label, rc, wall, commit, err, command = sys.argv[1:]
try:
    j = json.load(open(path))
except Exception as e:
    j = {"error": str(e), "stderr": open(err).read()[-2000:]}
tokens = [s.get("output_tokens") for s in j.pop("sequences", [])]
j.update({"bench": "P1", "label": label, "rc": int(rc), "wall_s_with_setup": int(wall), "commit": commit,
          "command": command, "flexgen_tok_s": 932, "target_tok_s": 1400,
          "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
          "tokens_hash": hashlib.sha1(json.dumps(tokens).encode()).hexdigest()})
print(json.dumps(j, sort_keys=True))
PY
    rm -f "$out/p1-one.json" "$out/p1-one.err"
  done
  python3 - "$out/p1-runs.jsonl" <<'PY' | tee -a "$log"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    print("P1 %-9s rc=%s %8.1f tok/s  prefill %.3f s  decode %.3f s  setup+run %s s  tokens %s" % (
        r["label"], r["rc"], r.get("throughput_tok_s", 0), r.get("prefill_s", 0), r.get("decode_s", 0),
        r["wall_s_with_setup"], r["tokens_hash"][:8]))
print("P1 tokens identical in every run:", len({r["tokens_hash"] for r in rows}) == 1)
PY
  say "P1 done at $(elapsed) s"
fi

if [ "${TESTS:-1}" != 0 ]; then
  left=$(( deadline - 150 - $(elapsed) ))
  [ "$left" -gt 240 ] && left=240
  timeout "$left" "$T" --gtest_filter="${GTEST_FILTER:-Cuda*:*Gpu*:GenerateCli*:TinyOpt*:CpuAttention*}" \
      >"$out/gpu-tests.log" 2>&1
  rc=$?
  grep -E "^\[  FAILED|^\[  PASSED|^\[  SKIPPED \] [0-9]|tests ran" "$out/gpu-tests.log" | head -30 | tee -a "$log"
  say "tests: rc=$rc at $(elapsed) s"
fi

llama70b() {
  # Issue 9's 70B-class runs (fp16, then 4-bit), searched on this machine's spec; the rows and the
  # logs of every command come back as one tar file.
  mkdir -p llama70b
  local left=$(( deadline - 20 - $(elapsed) ))
  PYTHONUNBUFFERED=1 timeout "$left" python3 scripts/llama70b_runs.py --flexgen "$R" --hardware "$spec" \
      --commit "$commit" --out llama70b/llama70b.jsonl --timeout "${LLAMA_TIMEOUT:-240}" \
      --precision "${LLAMA_PRECISION:-fp16,q4}" >>"$log" 2>&1
  say "llama70b: rc=$? at $(elapsed) s"
  # A run cut off by the time limit may still be freeing its memory: nothing may hold the GPU when
  # the sweeps start.
  pkill -9 -f "$R generate" 2>/dev/null
  sleep 3
  tar cf "$out/llama70b.tar" llama70b 2>>"$log"
  rm -rf /tmp/flexgen-offload-llama
}

# The sweeps run until `deadline` less `reserve` seconds (kept for the 70B runs when they come after).
sweeps() {
  local reserve=$1
  shift
  for sweep in "$@"; do
    local name
    name=$(basename "$sweep" .json)
    if [ "$tag" != h200 ]; then
      name=${name//h200/$tag}
      sed "s/h200/$tag/g" "$sweep" > "experiments/sweeps/$name.json"
      sweep=experiments/sweeps/$name.json
    fi
    [ -f "results/sweeps/$name.jsonl" ] && cp "results/sweeps/$name.jsonl" "$out/$name.jsonl"
    local left=$(( deadline - reserve - $(elapsed) ))
    if [ "$left" -le 40 ]; then say "no time left for $name"; continue; fi
    say "sweep $name: up to $left s"
    timeout --kill-after=10 "$left" "$R" sweep "$sweep" --commit "$commit" --output "$out/$name.jsonl" ${SWEEP_ARGS:-} \
        2> "$out/$name.log"
    say "sweep $name: rc=$? at $(elapsed) s"
    tail -16 "$out/$name.log" | tee -a "$log"
  done
}

# LLAMA70B=1 runs the 70B runs before the sweeps; LLAMA70B=after runs them after the sweeps, which
# then stop LLAMA_RESERVE seconds (default 300) before the deadline.
case "${LLAMA70B:-0}" in
  0) sweeps 0 "$@" ;;
  after) sweeps "${LLAMA_RESERVE:-300}" "$@"; llama70b ;;
  *) llama70b; sweeps 0 "$@" ;;
esac
say "total: $(elapsed) s"
