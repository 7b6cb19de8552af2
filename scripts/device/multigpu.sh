#!/usr/bin/env bash
# Issue 8 (multi-GPU pipeline parallelism) on a machine with several GPUs (e.g. the lent
# nvidia-h100-x4: 4 x H100 80 GB, 64 cores, 512 GiB host memory). Stages, each well under the
# 10-minute limit of one device command; run them in order, several per call where they fit:
#   build    configure the release preset (CUDA; NCCL found under python3's site-packages
#            nvidia/nccl when nvidia-nccl-cu13 is installed, else the host link) and build
#   tests    the pipeline tests: host multi-process ones and the CUDA ones (CudaPipelineCli needs
#            two GPUs or more)
#   opt30b   OPT-30B, fp16, dummy weights, on 1, 2 and 4 GPUs (GPUS), with the simulator's
#            prediction of each run
#   opt175b  OPT-175B, 4-bit weights (--compress-weight), dummy weights, on 1, 2 and 4 GPUs
# Usage: bash scripts/device/multigpu.sh STAGES COMMIT HARDWARE_JSON
#   STAGES:        comma-separated, or "all" (build,tests,opt30b,opt175b: likely too long for one call)
#   HARDWARE_JSON: the machine's spec for the simulator (experiments/hardware/h100-sxm.json, or a
#                  measured one); the prediction of a G-GPU run is `flexgen simulate --num-gpus G`
#                  with the run's flags (one host shared by the stages, as the local launcher runs).
# Environment: PRESET (release), OUT (/tmp/flexgen-out), GPUS ("1 2 4"), PROMPT_LEN (512),
# GEN_LEN (32), OFFLOAD_DIR (/tmp/flexgen-offload-mgpu), RUN_TIMEOUT (540 s per run),
# FLEXGEN_PIPELINE_LINK (unset: NCCL when built with it; "host": pinned host staging), and the
# policies below (OPT30B_*, OPT175B_*). Every run appends one JSONL row to $OUT/multigpu.jsonl:
# device, GPUs present, commit, date, model, every flag, measured and predicted throughput, the
# per-stage peak memory and bytes exchanged, and the exit status (a failed run keeps its error).
#
# Policies (the paper's workload: prompt 512, 32 new tokens). A stage holds 1/G of the layers, so
# the same placement fractions put less on each GPU as G grows; the 1-GPU policy keeps part of the
# weights on the CPU where the model does not fit one 80 GB GPU, the G-GPU policies keep all of a
# stage's weights on its GPU. The KV cache lives on the CPU (it is the large term at these
# batch sizes). Override any of them per G: OPT30B_PERCENT_1="..." etc.
#   OPT-30B fp16  (~60 GB of weights):  gbs 32 x 4 batches; 1 GPU: 70/30 weights GPU/CPU
#   OPT-175B q4   (~95 GB of weights):  gbs 16 x 2 batches; 1 GPU: 60/40 weights GPU/CPU
set -uo pipefail
stages=${1:?stages (build,tests,opt30b,opt175b or all)}
commit=${2:?commit}
hardware=${3:?hardware json (experiments/hardware/h100-sxm.json)}
[ "$stages" = all ] && stages=build,tests,opt30b,opt175b
out=${OUT:-/tmp/flexgen-out}
preset=${PRESET:-release}
bin=build/$preset
gpus_list=${GPUS:-"1 2 4"}
prompt_len=${PROMPT_LEN:-512}
gen_len=${GEN_LEN:-32}
offload=${OFFLOAD_DIR:-/tmp/flexgen-offload-mgpu}
run_timeout=${RUN_TIMEOUT:-540}
export NCCL_NVLS_ENABLE=0  # never NVLink multicast (the launcher sets it for the stages too)
mkdir -p "$out/logs" "$offload"
has() { case ",$stages," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
rc=0

nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader | tee "$out/gpus.txt"
ngpus_present=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
device=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
nvidia-smi topo -m > "$out/topo.txt" 2>&1 || true
free -g | head -2

if has build; then
  t0=$(date +%s)
  cmake --preset "$preset" >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
  grep -E "flexgen:" "$out/configure.log"
  cmake --build --preset "$preset" -j "$(nproc)" --target flexgen flexgen_tests >"$out/build.log" 2>&1 ||
    { grep -E "error" -A3 "$out/build.log" | head -40; exit 1; }
  echo "build: $(( $(date +%s) - t0 )) s"
fi

if has tests; then
  timeout 560 "$bin/tests/flexgen_tests" \
    --gtest_filter="${GTEST_FILTER:-CudaPipelineCli.*:PipelineCli.*:HostPipeline.*:PipelinePartition.*:PipelineChannel.*:PipelineMessage.*:PipelineProtocol.*}" \
    >"$out/logs/tests.log" 2>&1
  trc=$?
  grep -E "^\[  (PASSED|FAILED|SKIPPED)|tests ran" "$out/logs/tests.log" | tail -20
  [ $trc -ne 0 ] && rc=1
fi

# run MODEL TAG G EXTRA_FLAGS...: one engine run and its prediction, one JSONL row.
run() {
  local model=$1 tag=$2 g=$3
  shift 3
  local flags=("$@")
  local name="${tag}_g${g}"
  local t0
  t0=$(date +%s)
  timeout "$run_timeout" "$bin/engine/flexgen" generate --model "$model" --backend cuda --num-gpus "$g" \
    --prompt-len "$prompt_len" --gen-len "$gen_len" --offload-dir "$offload" --json "${flags[@]}" \
    >"$out/logs/$name.engine.json" 2>"$out/logs/$name.engine.err"
  local erc=$?
  local wall=$(( $(date +%s) - t0 ))
  "$bin/engine/flexgen" simulate --model "$model" --hardware "$hardware" --num-gpus "$g" \
    --prompt-len "$prompt_len" --gen-len "$gen_len" --json "${flags[@]}" \
    >"$out/logs/$name.sim.json" 2>"$out/logs/$name.sim.err"
  local src=$?
  python3 - "$out/logs/$name" "$erc" "$src" "$wall" "$model" "$g" "$commit" "$device" "$ngpus_present" \
    "$hardware" "$prompt_len" "$gen_len" "${flags[*]}" >>"$out/multigpu.jsonl" <<'EOF'
import datetime, json, sys
base, erc, src, wall, model, g, commit, device, present, hardware, prompt_len, gen_len, flags = sys.argv[1:]
def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except Exception:
        return None
def tail(path):
    try:
        with open(path) as f:
            lines = [l.strip() for l in f if l.strip()]
        return lines[-1] if lines else ""
    except Exception:
        return ""
e, s = load(base + ".engine.json"), load(base + ".sim.json")
row = {
    "issue": 8, "commit": commit, "date": datetime.datetime.utcnow().isoformat(timespec="seconds") + "Z",
    "device": device, "gpus_present": int(present), "hardware_spec": hardware,
    "model": model, "weights": "dummy", "num_gpus": int(g), "prompt_len": int(prompt_len), "gen_len": int(gen_len),
    "flags": flags, "engine_exit": int(erc), "simulate_exit": int(src), "wall_s": int(wall),
}
if e:
    row.update({
        "policy": e.get("policy"), "schedule": e.get("schedule"), "num_sequences": e.get("num_sequences"),
        "measured_tok_s": e.get("throughput_tok_s"), "measured_decode_tok_s": e.get("decode_throughput_tok_s"),
        "measured_prefill_s": e.get("prefill_s"), "measured_decode_s": e.get("decode_s"),
        "generated_tokens": e.get("generated_tokens"), "peak_memory": e.get("peak_memory"),
        "stages": e.get("pipeline", {}).get("stages"),
    })
else:
    row["engine_error"] = tail(base + ".engine.err")
if s:
    row.update({
        "predicted_tok_s": s.get("throughput_tok_s"), "predicted_decode_tok_s": s.get("decode_throughput_tok_s"),
        "predicted_prefill_s": s.get("prefill_s"), "predicted_decode_s": s.get("decode_s"),
        "predicted_stages": s.get("stages"), "predicted_critical": s.get("critical_lane", s.get("critical_resource")),
    })
else:
    row["simulate_error"] = tail(base + ".sim.err")
print(json.dumps(row))
print(f"{model} x{g}: measured {row.get('measured_tok_s')} tok/s, predicted {row.get('predicted_tok_s')} tok/s",
      file=sys.stderr)
EOF
  ls -A "$offload" | head -3  # must be empty
  [ $erc -ne 0 ] && rc=1
}

policy() {  # policy VAR_PREFIX G DEFAULT_1 DEFAULT_G: the percent flags of G GPUs
  local var="${1}_PERCENT_${2}"
  if [ -n "${!var:-}" ]; then echo "${!var}"; elif [ "$2" = 1 ]; then echo "$3"; else echo "$4"; fi
}

if has opt30b; then
  for g in $gpus_list; do
    [ "$g" -gt "$ngpus_present" ] && { echo "opt-30b x$g: only $ngpus_present GPUs"; continue; }
    pct=$(policy OPT30B "$g" "70 30 0 100 100 0" "100 0 0 100 100 0")
    # shellcheck disable=SC2086
    run opt-30b opt30b_fp16 "$g" --gpu-batch-size "${OPT30B_GBS:-32}" --num-gpu-batches "${OPT30B_NGB:-4}" \
      --percent $pct
  done
fi

if has opt175b; then
  for g in $gpus_list; do
    [ "$g" -gt "$ngpus_present" ] && { echo "opt-175b x$g: only $ngpus_present GPUs"; continue; }
    pct=$(policy OPT175B "$g" "60 40 0 100 100 0" "100 0 0 100 100 0")
    # shellcheck disable=SC2086
    run opt-175b opt175b_q4 "$g" --compress-weight --gpu-batch-size "${OPT175B_GBS:-16}" \
      --num-gpu-batches "${OPT175B_NGB:-2}" --percent $pct
  done
fi

exit $rc
