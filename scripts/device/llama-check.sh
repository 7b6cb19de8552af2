#!/usr/bin/env bash
# Issue 9 (LLaMA) on the lent GPU machine (NVIDIA H200 141 GB, 16 cores, 128 GiB host RAM, 64 GiB
# disk). Stages, each well under the 10-minute limit of one device command; run them in order,
# several per call where they fit (build outputs persist while the machine stays warm):
#   build     configure the release preset (CUDA) against the carried packages; build flexgen and
#             the tests (about 5-8 minutes on 16 cores)
#   fixtures  make the tiny-LLaMA HF fixture (scripts/make_llama_fixtures.py, CPU float32, about a
#             minute), copy it to $OUT/fixtures/ for committing, and run the fixture tests on it
#             (host backend and CUDA)
#   tests     the LLaMA tests (host and GPU: kernels, runtime, offloading matrix) and the CUDA
#             tests of the kernels this issue touched (attention over KV views, the runtime)
#   fp16      llama-2-70b, dummy weights, fp16: search, generate with the searched policy, simulate
#   q4        the same with 4-bit weights
# Usage: source .device-deps/env.sh && bash scripts/device/llama-check.sh STAGES COMMIT HARDWARE_JSON
#   STAGES:        comma-separated, or "all" (build,fixtures,tests,fp16,q4: too long for one call)
#   HARDWARE_JSON: the machine's measured spec, e.g. experiments/hardware/h200-measured.json
# Environment: PRESET (release); OUT (/tmp/flexgen-out); GTEST_FILTER overrides the tests stage's
# filter; PROMPT_LEN (128), GEN_LEN (8), GPU_MEM (70GiB: the search's GPU budget), RUN_GPU_MEM
# (76GiB: the run's), CPU_MEM (88GiB; RUN_CPU_MEM 90GiB), DISK_MEM (40GiB), OFFLOAD_DIR (/tmp/flexgen-offload-llama),
# RUN_TIMEOUT (280 s per command).
#
# The 70B budget. llama-2-70b in fp16 is 137.95 GB of weights (128.5 GiB). The GPU budget is that
# of an 80 GB-class GPU: 70 GiB for the search, 76 GiB for the run (the cost model's workspace
# estimate takes the larger of the prefill and decode buffers, the CUDA backend holds all of its
# buffers at once: about 20 GiB at the 4-bit policy's 768 sequences, 5 GiB more than estimated).
# The host budget is 88 GiB of the 128 GiB for the search, 90 GiB for the run (pinned: the backend
# adds its pinned I/O and 4 KiB alignment per buffer; the process about 10 GiB of dummy-weight
# staging), the disk 40 GiB of the 64 GiB (the checkout and build take a few): no tier alone holds
# the model. The workload, prompt 128 and 8 new tokens, keeps each run near 1-2 minutes including
# weight setup: every decode step streams the off-GPU weights (about 80 GiB at PCIe 5 speed, 1.5 s);
# the searched blocks are large (h200.json predicts ~22 s of prefill). In 4 bits (about 36 GB) the
# model fits the GPU budget and the search keeps it there.
set -uo pipefail
stages=${1:?stages (build,fixtures,tests,fp16,q4 or all)}
commit=${2:?commit}
hardware=${3:?hardware json (experiments/hardware/h200-measured.json)}
[ "$stages" = all ] && stages=build,fixtures,tests,fp16,q4
out=${OUT:-/tmp/flexgen-out}
preset=${PRESET:-release}
bin=build/$preset
mkdir -p "$out/logs"
has() { case ",$stages," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
rc=0

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
free -g | head -2
df -h . | tail -1

# libsentencepiece: unpack the carried packages if this machine unpacked .device-deps before they
# were added (env.sh unpacks once).
if ! ls /opt/devdeps/usr/lib/x86_64-linux-gnu/libsentencepiece.so* >/dev/null 2>&1 &&
   ! ls /usr/lib/x86_64-linux-gnu/libsentencepiece.so* >/dev/null 2>&1; then
  for f in .device-deps/debs/*sentencepiece*.deb; do [ -f "$f" ] && dpkg -x "$f" /opt/devdeps; done
fi
ls /opt/devdeps/usr/lib/x86_64-linux-gnu/libsentencepiece.so* /usr/lib/x86_64-linux-gnu/libsentencepiece.so* \
  2>/dev/null | head -2 || echo "warning: no libsentencepiece: the tokenizer tests will fail"

if has build; then
  t0=$(date +%s)
  cmake --preset "$preset" -DCMAKE_PREFIX_PATH=/opt/devdeps/usr >"$out/configure.log" 2>&1 ||
    { tail -30 "$out/configure.log"; exit 1; }
  grep -E "flexgen:" "$out/configure.log"
  cmake --build --preset "$preset" -j "$(nproc)" --target flexgen flexgen_tests >"$out/build.log" 2>&1 ||
    { grep -E "error" -A3 "$out/build.log" | head -40; exit 1; }
  echo "build: $(( $(date +%s) - t0 )) s"
fi

if has fixtures; then
  t0=$(date +%s)
  python3 scripts/make_llama_fixtures.py --out tests/fixtures 2>&1 | tee "$out/logs/make_llama_fixtures.log"
  if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    echo "fixture script failed"; rc=1
  else
    mkdir -p "$out/fixtures"
    cp -r tests/fixtures/tiny-llama tests/fixtures/tiny-llama-reference.json \
      tests/fixtures/tiny-llama-reference-logits.safetensors "$out/fixtures/"
    "./$bin/tests/flexgen_tests" --gtest_filter='TinyLlamaFixture.*:CudaLlamaRuntime.Fixture*' \
      >"$out/logs/fixture-tests.log" 2>&1 || rc=1
    grep -E "^\[  FAILED|^\[  PASSED|^\[  SKIPPED|Failure|Expected|Which is|actual" "$out/logs/fixture-tests.log" | head -40
  fi
  echo "fixtures: $(( $(date +%s) - t0 )) s"
fi

if has tests; then
  t0=$(date +%s)
  filter=${GTEST_FILTER:-'*Llama*:SentencePiece*:ModelTokenizer*:CpuAttention*:CudaDecode*:CudaSparse*:CudaPrefill*:CudaSelect*:CudaRuntime.*:*CudaOffloadMatrix.*w_cpu50disk50*:TinyOpt*:GenerateCli*'}
  "./$bin/tests/flexgen_tests" --gtest_filter="$filter" >"$out/logs/gpu-tests.log" 2>&1 || rc=1
  grep -E "^\[  FAILED|^\[  PASSED|^\[  SKIPPED \] [0-9]|tests ran|Failure|Expected|Which is|actual" \
    "$out/logs/gpu-tests.log" | head -60
  echo "tests: $(( $(date +%s) - t0 )) s"
fi

for precision in fp16 q4; do
  has "$precision" || continue
  python3 scripts/llama70b_runs.py --flexgen "$bin/engine/flexgen" --hardware "$hardware" --commit "$commit" \
    --out "$out/llama70b.jsonl" --log-dir "$out/logs" --precision "$precision" \
    --prompt-len "${PROMPT_LEN:-128}" --gen-len "${GEN_LEN:-8}" --gpu-mem "${GPU_MEM:-70GiB}" \
    --run-gpu-mem "${RUN_GPU_MEM:-76GiB}" --cpu-mem "${CPU_MEM:-88GiB}" --run-cpu-mem "${RUN_CPU_MEM:-90GiB}" --disk-mem "${DISK_MEM:-40GiB}" \
    --offload-dir "${OFFLOAD_DIR:-/tmp/flexgen-offload-llama}" --timeout "${RUN_TIMEOUT:-280}" || rc=1
  rm -rf "${OFFLOAD_DIR:-/tmp/flexgen-offload-llama}"
done
exit $rc
