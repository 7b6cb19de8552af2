// The offloading runtime on the CUDA backend (cuda_runtime.h; docs/runtime.md, "CUDA backend").
//
// The same Plan, MemoryPlan and Schedule as the host backend (host_runtime.cc), with:
//   - the GPU tier one cudaMalloc arena, the CPU tier one pinned (cudaHostAlloc) arena, the disk
//     tier the DiskStore; buffers are carved from the arenas in the memory plan's sizes, each
//     aligned (256 bytes on the GPU, 4 KiB on the CPU for O_DIRECT); the alignment padding and the
//     compute workspace are entries of the memory plan, so the budget check covers every byte;
//   - one CUDA stream per GPU resource (compute, host-to-device, device-to-host), driven by the
//     executor's worker of that resource; a task's dependencies on another stream become
//     cudaStreamWaitEvent, on the host a cudaEventSynchronize; no device-wide synchronization in
//     the steady state (the output layer waits for its logits to sample);
//   - with overlap off, every task waits for its own stream to drain before the next starts.
// Everything is fp16 (the plan must be): weights, cache rows, activations; fp32 accumulation.
#include "engine/cuda/cuda_runtime.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <tuple>
#include <mutex>

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "engine/compress/quant4.h"
#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/core/parallel.h"
#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/device_link.cuh"
#include "engine/cuda/op_timer.cuh"
#include "engine/cuda/ops/argmax.cuh"
#include "engine/cuda/ops/cache_rows.cuh"
#include "engine/cuda/ops/decode_attention.cuh"
#include "engine/cuda/ops/embedding.cuh"
#include "engine/cuda/ops/layer_norm.cuh"
#include "engine/cuda/ops/linear.cuh"
#include "engine/cuda/ops/prefill_attention.cuh"
#include "engine/cuda/ops/prefill_attention_gemm.cuh"
#include "engine/cuda/ops/quant4.cuh"
#include "engine/cuda/ops/query_groups.cuh"
#include "engine/cuda/ops/rms_norm.cuh"
#include "engine/cuda/ops/rotary.cuh"
#include "engine/cuda/ops/swiglu.cuh"
#include "engine/cuda/ops/token_embedding.cuh"
#include "engine/cuda/ops/top_k.cuh"
#include "engine/generate/sampler.h"
#include "engine/model/decoder.h"
#include "engine/model/llama_layer.h"
#include "engine/pipeline/stage_protocol.h"
#include "engine/runtime/cpu_attention.h"
#include "engine/runtime/cuda_workspace.h"
#include "engine/runtime/disk_store.h"
#include "engine/runtime/early_stop.h"
#include "engine/runtime/fault_injection.h"
#include "engine/runtime/visit.h"

namespace flexgen {

namespace {

// The workspace sizes and their constants are shared with the cost model (runtime/cuda_workspace.h).
constexpr Bytes kGpuAlign = kCudaGpuAlign;
constexpr Bytes kCpuAlign = 4096;
constexpr Bytes kCublasWorkspace = kCudaCublasWorkspace;
constexpr std::int64_t kGemmPrefillMinTokens = kCudaGemmPrefillMinTokens;

Bytes round_up(Bytes n, Bytes a) { return (n + a - 1) / a * a; }

using Clock = std::chrono::steady_clock;

// Bytes on one tier: device memory (GPU tier), pinned host memory (CPU tier) or a file region.
struct Buffer {
  Tier tier = Tier::kCpu;
  Bytes size = 0;
  std::byte* ptr = nullptr;
  DiskRegion region;
};

// The roles of a decoder layer's tensors, found by name. LLaMA (no biases) uses kQw, kKw, kVw, kOw,
// kAttnLnW (input_layernorm), kMlpLnW (post_attention_layernorm), kFc1w (gate_proj), kUpW
// (up_proj) and kFc2w (down_proj).
enum W : int {
  kQw, kQb, kKw, kKb, kVw, kVb, kOw, kOb, kAttnLnW, kAttnLnB, kFc1w, kFc1b, kFc2w, kFc2b, kMlpLnW, kMlpLnB,
  kUpW, kNumDecoderRoles
};
// Embedding layer and output layer roles share the same indices space below (LLaMA: kFinalLnW is
// model.norm, kLmHead its untied LM head).
enum E : int { kEmbedTokens = 0, kEmbedPositions = 1, kFinalLnW = 2, kFinalLnB = 3, kLmHead = 4, kNumOuterRoles = 5 };

int role_of(const std::string& name, bool decoder) {
  static const std::pair<const char*, int> kDecoder[] = {
      {"self_attn.q_proj.weight", kQw},       {"self_attn.q_proj.bias", kQb},
      {"self_attn.k_proj.weight", kKw},       {"self_attn.k_proj.bias", kKb},
      {"self_attn.v_proj.weight", kVw},       {"self_attn.v_proj.bias", kVb},
      {"self_attn.out_proj.weight", kOw},     {"self_attn.out_proj.bias", kOb},
      {"self_attn_layer_norm.weight", kAttnLnW}, {"self_attn_layer_norm.bias", kAttnLnB},
      {"fc1.weight", kFc1w},                  {"fc1.bias", kFc1b},
      {"fc2.weight", kFc2w},                  {"fc2.bias", kFc2b},
      {"final_layer_norm.weight", kMlpLnW},   {"final_layer_norm.bias", kMlpLnB},
      // LLaMA
      {"self_attn.o_proj.weight", kOw},       {"input_layernorm.weight", kAttnLnW},
      {"post_attention_layernorm.weight", kMlpLnW}, {"mlp.gate_proj.weight", kFc1w},
      {"mlp.up_proj.weight", kUpW},           {"mlp.down_proj.weight", kFc2w}};
  static const std::pair<const char*, int> kOuter[] = {{"embed_tokens.weight", kEmbedTokens},
                                                       {"embed_positions.weight", kEmbedPositions},
                                                       {"final_layer_norm.weight", kFinalLnW},
                                                       {"final_layer_norm.bias", kFinalLnB},
                                                       {"norm.weight", kFinalLnW},
                                                       {"lm_head.weight", kLmHead}};
  if (decoder) {
    const auto dot = name.find('.', name.find('.') + 1);  // after "layers.N."
    const std::string rest = name.substr(dot + 1);
    for (const auto& [suffix, role] : kDecoder) {
      if (rest == suffix) return role;
    }
  } else {
    for (const auto& [n, role] : kOuter) {
      if (name == n) return role;
    }
  }
  fail("CUDA backend: unexpected tensor '", name, "' in the plan");
}

// The name a decoder tensor has in layer 0 (dummy weights repeat layer 0's values).
std::string layer0_name(const std::string& name) {
  if (name.rfind("layers.", 0) != 0) return name;
  return "layers.0" + name.substr(name.find('.', 7));
}

std::int64_t numel(const Shape& s) { return shape_numel(s); }

}  // namespace

class CudaRuntime final : public Runtime {
 public:
  CudaRuntime(const Plan& plan, const WeightsSource& source, const RuntimeOptions& options)
      : plan_(plan), spec_(plan_.spec), options_(options) {
    FLEXGEN_REQUIRE(plan_.weight_dtype == Encoding::kF16, "the CUDA backend stores and computes in fp16; the plan "
                    "is for ", encoding_name(plan_.weight_dtype), " weights (make it from a spec with dtype f16)");
    FLEXGEN_REQUIRE(spec_.head_dim() >= 1 && spec_.head_dim() <= cuda::kMaxAttentionHeadDim,
                    "the CUDA backend's attention takes head_dim 1..", cuda::kMaxAttentionHeadDim, "; ", spec_.name,
                    " has ", spec_.head_dim());
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
      cudaGetLastError();
      fail("the CUDA backend needs a CUDA device and none is visible; use --backend host");
    }
    stage_ = options_.stage.get();
    // A pipeline stage runs on device rank % devices (one process per GPU; several stages share a
    // device when there are fewer devices than stages).
    if (stage_) FLEXGEN_CUDA_CHECK(cudaSetDevice(stage_->index % devices));
    FLEXGEN_CUDA_CHECK(cudaGetDevice(&device_));
    memory_ = plan_memory(plan_);
    if (stage_) memory_ = stage_memory(plan_, memory_, stage_->stage_of_layer, stage_->index);
    add_workspace_and_padding();
    check_budgets(memory_, options_.budgets);
    schedule_ = make_stage_schedule(plan_);
    if (spec_.family == ModelFamily::kLlama) rope_ = cuda::make_rope_table(rope_inv_freq(spec_));
    q4w_ = weight_quant_spec(ScaleType::kFloat16);
    q4c_ = cache_quant_spec(ScaleType::kFloat16);
    if (memory_.total[Tier::kDisk] > 0) {
      FLEXGEN_REQUIRE(!options_.offload_dir.empty(), "the plan puts data on disk: give --offload-dir (a directory with ",
                      memory_.total[Tier::kDisk], " bytes free)");
      disk_ = std::make_unique<DiskStore>(options_.offload_dir, options_.budgets[Tier::kDisk]);
      disk_->reserve(memory_.total[Tier::kDisk]);
    }
    FLEXGEN_CUDA_CHECK(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking));
    FLEXGEN_CUDA_CHECK(cudaStreamCreateWithFlags(&h2d_, cudaStreamNonBlocking));
    FLEXGEN_CUDA_CHECK(cudaStreamCreateWithFlags(&d2h_, cudaStreamNonBlocking));
    int least = 0, greatest = 0;
    FLEXGEN_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    FLEXGEN_CUDA_CHECK(cudaStreamCreateWithPriority(&h2d_small_, cudaStreamNonBlocking, greatest));
    FLEXGEN_CUDA_CHECK(cudaStreamCreateWithPriority(&d2h_small_, cudaStreamNonBlocking, greatest));
    FLEXGEN_CUBLAS_CHECK(cublasCreate(&cublas_));
    std::size_t free0 = 0, total = 0;
    FLEXGEN_CUDA_CHECK(cudaMemGetInfo(&free0, &total));
    free_before_ = static_cast<Bytes>(free0);
    FLEXGEN_REQUIRE(memory_.total[Tier::kGpu] + kCudaGpuReserve <= static_cast<Bytes>(free0),
                    "plan does not fit: the GPU tier needs ", format_bytes(memory_.total[Tier::kGpu]), " and ",
                    format_bytes(kCudaGpuReserve), " stay free for the CUDA runtime, but the device has ",
                    format_bytes(static_cast<Bytes>(free0)), " free; lower --gpu-mem or move data off the GPU (--percent)");
    arena_[0].reserve(Tier::kGpu, memory_.total[Tier::kGpu]);
    arena_[1].reserve(Tier::kCpu, memory_.total[Tier::kCpu]);
    allocate_all();
    FLEXGEN_CUBLAS_CHECK(cublasSetWorkspace(cublas_, ws_.cublas, static_cast<std::size_t>(kCublasWorkspace)));
    linear_ = std::make_unique<cuda::LinearContext>(cublas_, ws_.cublas, static_cast<std::size_t>(kCublasWorkspace));
    place_weights(source);
    warm_up();
    if (stage_ && stage_->count > 1) {
      protocol_ = std::make_unique<StageProtocol>(*stage_, plan_.policy.gpu_batch_size(), plan_.policy.num_gpu_batches());
      void* staging = nullptr;
      FLEXGEN_CUDA_CHECK(cudaMallocHost(&staging, static_cast<std::size_t>(plan_.activation_bytes(plan_.workload.prompt_len))));
      hidden_host_ = static_cast<std::byte*>(staging);
      // Hidden states over NCCL when built with it, unless FLEXGEN_PIPELINE_LINK=host asks for the
      // host path (pinned staging over the channel).
      const char* link = std::getenv("FLEXGEN_PIPELINE_LINK");
      const bool host_link = link != nullptr && std::string(link) == "host";
      // NCCL takes one rank per device: with more stages than devices, the host path.
      int devices = 0;
      FLEXGEN_CUDA_CHECK(cudaGetDeviceCount(&devices));
      if (nccl_link_available() && !host_link && stage_->count <= devices) {
        link_ = make_nccl_link(*stage_->channel, device_);
      }
    }
  }

  ~CudaRuntime() override {
    cudaDeviceSynchronize();
    link_.reset();
    if (hidden_host_) cudaFreeHost(hidden_host_);
    destroy_events();
    if (cublas_) cublasDestroy(cublas_);
    for (cudaStream_t s : {compute_, h2d_, d2h_, h2d_small_, d2h_small_}) {
      if (s) cudaStreamDestroy(s);
    }
  }

  const Schedule& schedule() const override { return schedule_; }
  const MemoryPlan& memory_plan() const override { return memory_; }
  Backend backend() const override { return Backend::kCuda; }

  RunReport generate(const std::vector<std::vector<std::int32_t>>& prompts, const SamplingConfig& sampling,
                     std::optional<std::int32_t> stop_token, const BlockShape& shape) override {
    // The run's plan and schedule: the plan's own, or a smaller shape on the same buffers.
    std::optional<Plan> shaped;
    const Schedule* schedule = &schedule_;
    Schedule shaped_schedule;
    run_ = &plan_;
    if ((shape.prompt_len != 0 && shape.prompt_len != plan_.workload.prompt_len) ||
        (shape.gen_len != 0 && shape.gen_len != plan_.workload.gen_len)) {
      Workload w = plan_.workload;
      w.prompt_len = shape.prompt_len != 0 ? shape.prompt_len : w.prompt_len;
      w.gen_len = shape.gen_len != 0 ? shape.gen_len : w.gen_len;
      FLEXGEN_REQUIRE(w.prompt_len >= 1 && w.gen_len >= 1 && w.prompt_len <= plan_.workload.prompt_len &&
                          w.prompt_len + w.gen_len <= plan_.workload.prompt_len + plan_.workload.gen_len,
                      "a block of prompt length ", w.prompt_len, " and ", w.gen_len,
                      " new tokens does not fit the runtime's plan (prompt length ", plan_.workload.prompt_len,
                      ", ", plan_.workload.gen_len, " new tokens)");
      shaped.emplace(make_plan(spec_, w, plan_.policy));
      shaped_schedule = make_stage_schedule(*shaped);
      run_ = &*shaped;
      schedule = &shaped_schedule;
    }
    const std::int64_t block = plan_.policy.block_size();
    const std::int64_t b = plan_.policy.gpu_batch_size();
    const std::int64_t prompt_len = run_->workload.prompt_len;
    std::vector<PaddedBatch> padded =
        left_pad_block(prompts, b, plan_.policy.num_gpu_batches(), prompt_len, spec_.pad_token_id);
    batches_.assign(static_cast<std::size_t>(plan_.policy.num_gpu_batches()), BatchRun{});
    std::vector<std::int32_t> pads(static_cast<std::size_t>(block));
    for (std::int64_t k = 0; k < plan_.policy.num_gpu_batches(); ++k) {
      BatchRun& br = batches_[static_cast<std::size_t>(k)];
      br.prompt_ids = std::move(padded[static_cast<std::size_t>(k)].ids);
      br.pad_len = std::move(padded[static_cast<std::size_t>(k)].pad_len);
      br.generated.resize(static_cast<std::size_t>(b));
      br.next.resize(static_cast<std::size_t>(b));
      for (std::int64_t s = 0; s < b; ++s) {
        pads[static_cast<std::size_t>(k * b + s)] = static_cast<std::int32_t>(br.pad_len[static_cast<std::size_t>(s)]);
      }
    }
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      for (std::int32_t id : prompts[i]) {
        FLEXGEN_REQUIRE(id >= 0 && id < spec_.vocab_size, "prompt ", i, ": token id ", id,
                        " is outside the vocabulary (", spec_.vocab_size, ")");
      }
    }
    const std::int64_t last_pos = prompt_len + run_->workload.gen_len - 1;
    FLEXGEN_REQUIRE(last_pos - 1 + 2 < embed_position_rows(), "prompt length ", prompt_len, " plus ",
                    run_->workload.gen_len, " new tokens exceeds the model's ", spec_.max_positions, " positions");
    FLEXGEN_CUDA_CHECK(cudaMemcpy(ws_.pad_len, pads.data(), pads.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice));
    sampler_ = std::make_unique<Sampler>(sampling);
    sampling_ = sampling;
    early_ = std::make_unique<EarlyStop>(plan_.policy.num_gpu_batches(), stop_token);
    skipped_ = 0;
    dequantized_key_ = -1;
    for (auto& c : moved_) c = 0;

    // Events: the end of every stream task (and its start when timings are kept).
    const bool timings = options_.keep_task_timings;
    prepare_events(*schedule, timings);
    host_times_.assign(schedule->tasks.size(), TaskTiming{});
    cur_schedule_ = schedule;
    mark_visit_ends(*schedule);
    cudaEvent_t t0;
    FLEXGEN_CUDA_CHECK(cudaEventCreate(&t0));
    FLEXGEN_CUDA_CHECK(cudaDeviceSynchronize());
    FLEXGEN_CUDA_CHECK(cudaEventRecord(t0, compute_));
    FLEXGEN_CUDA_CHECK(cudaEventSynchronize(t0));
    start_ = Clock::now();
    op_timer_.start(options_.keep_op_timings);

    try {
      Executor::execute(*schedule, plan_.policy.overlap(), [this](const Task& t, TaskId id) { run_task(t, id); });
      FLEXGEN_CUDA_CHECK(cudaDeviceSynchronize());
      // A pipeline stage but the last: the tokens of the last step (no compute here consumes them).
      if (protocol_ && !stage_->is_last()) {
        for (std::int64_t k = 0; k < plan_.policy.num_gpu_batches(); ++k) {
          receive_tokens(static_cast<std::int32_t>(k), static_cast<std::int32_t>(run_->workload.gen_len - 1));
        }
      }
    } catch (...) {
      cudaDeviceSynchronize();
      cudaEventDestroy(t0);
      op_timer_.start(false);
      throw;
    }
    const double wall = seconds_since_start();

    RunReport report;
    for (std::int64_t k = 0; k < plan_.policy.num_gpu_batches(); ++k) {
      for (auto& seq : batches_[static_cast<std::size_t>(k)].generated) {
        if (stop_token) {
          auto it = std::find(seq.begin(), seq.end(), *stop_token);
          if (it != seq.end()) seq.erase(it + 1, seq.end());
        }
        report.tokens.push_back(seq);
      }
    }
    std::vector<TaskTiming> task_times(schedule->tasks.size());
    double prefill_end = 0;
    for (std::size_t i = 0; i < schedule->tasks.size(); ++i) {
      const Task& t = schedule->tasks[i];
      if (on_stream(t.kind)) {
        float ms = 0;
        FLEXGEN_CUDA_CHECK(cudaEventElapsedTime(&ms, t0, end_[i]));
        task_times[i].end_s = ms / 1e3;
        if (timings) {
          FLEXGEN_CUDA_CHECK(cudaEventElapsedTime(&ms, t0, begin_[i]));
          task_times[i].start_s = ms / 1e3;
        }
      } else {
        task_times[i] = host_times_[i];
      }
      if (t.token == 0) prefill_end = std::max(prefill_end, task_times[i].end_s);
    }
    cudaEventDestroy(t0);
    report.total_s = wall;
    report.prefill_s = std::min(prefill_end, wall);
    report.decode_s = wall - report.prefill_s;
    std::int64_t decode_tokens = 0;
    for (std::int64_t k = 0; k < plan_.policy.num_gpu_batches(); ++k) {
      const std::int64_t steps = early_->steps_run(k, run_->workload.gen_len);
      report.generated_tokens += b * steps;
      decode_tokens += b * (steps - 1);
    }
    report.tasks_skipped = skipped_.load();
    report.throughput_tok_s = wall > 0 ? static_cast<double>(report.generated_tokens) / wall : 0;
    report.decode_throughput_tok_s = report.decode_s > 0 ? static_cast<double>(decode_tokens) / report.decode_s : 0;
    report.peak = allocated_;
    report.planned = memory_.total;
    report.moved = {moved_[0].load(), moved_[1].load(), moved_[2].load(), moved_[3].load()};
    std::size_t free_now = 0, total = 0;
    FLEXGEN_CUDA_CHECK(cudaMemGetInfo(&free_now, &total));
    report.gpu_device_bytes = free_before_ - static_cast<Bytes>(free_now);
    if (timings) report.task_timings = std::move(task_times);
    if (options_.keep_op_timings) report.op_timings = op_timer_.collect();
    op_timer_.start(false);
    run_ = &plan_;
    cur_schedule_ = nullptr;
    return report;
  }

 private:
  // Runs each kernel and GEMM shape of the plan's visits once on scratch data before any run, so
  // that the one-time costs fall outside generate()'s clock: lazy loading of kernel code
  // (CUDA_MODULE_LOADING=LAZY, CUDA's default), cuBLAS's and cuBLASLt's first call of a shape, the
  // fused GEMMs' algorithm choice. It runs the compute of decoder layer 1 of batch 0 at token 0
  // (prefill) and token 1 (decode), the embedding at both shapes and the output layer's kernels.
  // Everything it writes is written again before a run reads it: the workspace, batch 0's hidden
  // state (the embedding writes it first), cache rows at positions a run writes before reading
  // them (in the GPU home and slot; no store task runs). The token ids and pad lengths are zeroed
  // first, since the kernels index memory with them; other inputs (weight slots not yet loaded,
  // the cache) hold whatever the allocation held, which no kernel uses as an index.
  void warm_up() {
    const std::int64_t b = plan_.policy.gpu_batch_size();
    FLEXGEN_CUDA_CHECK(cudaMemsetAsync(ws_.ids, 0, static_cast<std::size_t>(b * plan_.workload.prompt_len * 4), compute_));
    FLEXGEN_CUDA_CHECK(cudaMemsetAsync(ws_.pad_len, 0, static_cast<std::size_t>(plan_.policy.block_size() * 4), compute_));
    const bool positions_fit = plan_.workload.prompt_len + plan_.workload.gen_len < embed_position_rows();
    bool output_done = false;
    // The first decoder layer this runtime holds (a pipeline stage's may be any).
    const std::int32_t first = stage_ ? std::max<std::int32_t>(1, stage_->layers.first) : 1;
    for (const Task& t : schedule_.tasks) {
      if (t.batch != 0 || t.token > 1) continue;
      if (t.kind == TaskKind::kCompute && t.layer == 0 && positions_fit) {
        prepare_weights(t);
        embedding_kernels(t, gpu_hidden(t));
      } else if (t.kind == TaskKind::kCompute && t.layer == first && first <= spec_.num_layers) {
        compute(t);
      } else if (t.kind == TaskKind::kComputePost && t.layer == first && first <= spec_.num_layers) {
        compute_post(t);
      } else if (t.kind == TaskKind::kCompute && t.layer == spec_.num_layers + 1 && !output_done) {
        prepare_weights(t);
        output_layer_kernels(t, gpu_hidden(t));
        cuda::argmax_rows(ws_.logits, b, spec_.vocab_size, ws_.next, compute_);
        output_done = true;
      }
    }
    FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(compute_));
    dequantized_key_ = -1;
  }

  // ---- memory ---------------------------------------------------------------------------------
  // One allocation per tier, carved in order.
  struct Arena {
    Tier tier = Tier::kGpu;
    std::byte* base = nullptr;
    Bytes size = 0, used = 0;
    void reserve(Tier t, Bytes bytes) {
      tier = t;
      size = bytes;
      if (bytes == 0) return;
      void* p = nullptr;
      const bool injected = fault::strike(t == Tier::kGpu ? fault::Point::kAllocGpu : fault::Point::kAllocCpu) ==
                            fault::Effect::kFail;
      if (t == Tier::kGpu) {
        const cudaError_t st = injected ? cudaErrorMemoryAllocation : cudaMalloc(&p, static_cast<std::size_t>(bytes));
        if (st != cudaSuccess) {
          cudaGetLastError();
          fail("out of GPU memory allocating the GPU tier (", format_bytes(bytes), "): ", cudaGetErrorString(st),
               "; lower --gpu-mem's share (--percent) or the batch size");
        }
      } else {
        const cudaError_t st = injected ? cudaErrorMemoryAllocation
                                        : cudaHostAlloc(&p, static_cast<std::size_t>(bytes),
                                                        cudaHostAllocPortable | cudaHostAllocMapped);
        if (st != cudaSuccess) {
          cudaGetLastError();
          fail("could not pin ", format_bytes(bytes), " of host memory for the CPU tier: ", cudaGetErrorString(st),
               "; lower --cpu-mem's share (--percent) or move data to disk");
        }
      }
      base = static_cast<std::byte*>(p);
    }
    ~Arena() {
      if (base == nullptr) return;
      if (tier == Tier::kGpu) {
        cudaFree(base);
      } else {
        cudaFreeHost(base);
      }
    }
    std::byte* take(Bytes bytes) {
      const Bytes step = round_up(bytes, tier == Tier::kGpu ? kGpuAlign : kCpuAlign);
      assert(used + step <= size);
      std::byte* p = base + used;
      used += step;
      return p;
    }
  };

  // Compute workspace on the GPU (runtime/cuda_workspace.h: sizes for the plan's largest visit),
  // plus the arenas' alignment padding, as entries of the memory plan.
  CudaWorkspaceSizes workspace_sizes() const { return cuda_workspace_sizes(plan_); }

  // Pinned host buffers of the sampler: logits [b, vocab] fp16, the next tokens [b], and the token
  // ids of each gpu batch [batches, b, prompt_len] (one buffer per batch: the copy of one batch's
  // ids may still be queued when the next batch's are written).
  Bytes pinned_io_bytes() const {
    const Bytes b = plan_.policy.gpu_batch_size();
    return round_up(b * spec_.vocab_size * 2, kCpuAlign) + round_up(b * 4, kCpuAlign) +
           round_up(plan_.policy.num_gpu_batches() * b * plan_.workload.prompt_len * 4, kCpuAlign);
  }

  void add_workspace_and_padding() {
    for (const CudaWorkspaceSizes::Part& part : workspace_sizes().parts()) {
      memory_.buffers.push_back({BufferRole::kWorkspace, Tier::kGpu, part.bytes, part.label});
      memory_.total[Tier::kGpu] += part.bytes;
    }
    // Logits and token ids on their way to and from the sampler (pinned).
    const Bytes host_io = pinned_io_bytes();
    memory_.buffers.push_back({BufferRole::kWorkspace, Tier::kCpu, host_io, "pinned logits and token ids"});
    memory_.total[Tier::kCpu] += host_io;
    TierBytes padding;
    for (const BufferRequest& r : memory_.buffers) {
      if (r.tier == Tier::kDisk) continue;
      padding[r.tier] += round_up(r.bytes, r.tier == Tier::kGpu ? kGpuAlign : kCpuAlign) - r.bytes;
    }
    for (Tier t : {Tier::kGpu, Tier::kCpu}) {
      if (padding[t] == 0) continue;
      memory_.buffers.push_back({BufferRole::kWorkspace, t, padding[t], "alignment padding"});
      memory_.total[t] += padding[t];
    }
  }

  Buffer allocate(Tier tier, Bytes bytes, const std::string& label) {
    Buffer buf;
    buf.tier = tier;
    buf.size = bytes;
    if (bytes == 0) return buf;
    if (tier == Tier::kDisk) {
      buf.region = disk_->allocate(bytes, label);
      allocated_[tier] += bytes;
    } else {
      Arena& a = arena_[tier == Tier::kGpu ? 0 : 1];
      buf.ptr = a.take(bytes);
      allocated_[tier] += round_up(bytes, tier == Tier::kGpu ? kGpuAlign : kCpuAlign);
    }
    return buf;
  }
  void allocate_all() {
    const std::int64_t L = spec_.num_layers;
    const std::int64_t batches = plan_.policy.num_gpu_batches();
    const CachePlan& c = plan_.cache;
    weights_.resize(plan_.layers.size());
    for (std::size_t j = 0; j < plan_.layers.size(); ++j) {
      const bool decoder = plan_.is_decoder_layer(static_cast<std::int64_t>(j));
      weights_[j].roles.assign(decoder ? static_cast<std::size_t>(kNumDecoderRoles) : static_cast<std::size_t>(kNumOuterRoles), -1);
      if (!holds(static_cast<std::int64_t>(j))) continue;  // another pipeline stage's layer
      Bytes slot_off = 0, staging_off = 0, dq_off = 0;
      for (const PlannedTensor& t : plan_.layers[j].tensors) {
        StoredTensor st;
        st.plan = &t;
        st.home = allocate(t.home, t.bytes, t.name);
        if (t.home != Tier::kGpu) {
          st.slot_offset = slot_off;
          slot_off += t.bytes;
        }
        if (t.home == Tier::kDisk) {
          st.staging_offset = staging_off;
          staging_off += t.bytes;
        }
        if (t.encoding == Encoding::kQ4) {
          st.dq_offset = dq_off;
          dq_off += round_up(numel(t.shape) * 2, kGpuAlign);
        }
        weights_[j].roles[static_cast<std::size_t>(role_of(t.name, decoder))] =
            static_cast<int>(weights_[j].tensors.size());
        weights_[j].tensors.push_back(st);
      }
    }
    for (int s = 0; s < 2; ++s) {
      weight_slot_[s] = allocate(Tier::kGpu, weight_slot_bytes(plan_), "weight slot");
      weight_staging_[s] = allocate(Tier::kCpu, weight_staging_bytes(plan_), "weight staging");
    }
    cache_.resize(static_cast<std::size_t>(L * batches));
    for (std::int64_t j = 1; j <= L; ++j) {
      if (!holds(j)) continue;
      for (std::int64_t k = 0; k < batches; ++k) {
        CacheHome& home = cache_home(j, k);
        for (Tier tier : kAllTiers) {
          for (int kv = 0; kv < 2; ++kv) {
            home.part[static_cast<int>(tier)][kv] =
                allocate(tier, c.units_on_tier(tier) * c.capacity * c.row_bytes, "cache");
          }
        }
      }
    }
    slot_units_ = cache_slot_units(plan_);
    for (int s = 0; s < 2; ++s) {
      for (int kv = 0; kv < 2; ++kv) {
        cache_slot_[s][kv] = allocate(Tier::kGpu, slot_units_ * c.capacity * c.row_bytes, "cache slot");
        cache_staging_[s][kv] =
            allocate(Tier::kCpu, c.units_on_tier(Tier::kDisk) * c.capacity * c.row_bytes, "cache staging");
      }
    }
    const Bytes hidden = plan_.activation_bytes(plan_.workload.prompt_len);
    for (std::int64_t k = 0; k < batches; ++k) act_home_.push_back(allocate(plan_.activation_home, hidden, "activations"));
    if (plan_.activation_home != Tier::kGpu) {
      for (int s = 0; s < 2; ++s) act_slot_[s] = allocate(Tier::kGpu, hidden, "activation slot");
    }
    if (plan_.activation_home == Tier::kDisk) {
      for (int s = 0; s < 2; ++s) act_staging_[s] = allocate(Tier::kCpu, hidden, "activation staging");
    }
    if (plan_.policy.cpu_cache_compute()) {
      // Query and output: queries_per_unit head vectors per unit (memory_plan.cc's sizes).
      const Bytes vec = c.units_on_tier(Tier::kCpu) * spec_.head_dim() * 2;
      for (int i = 0; i < 4; ++i) {
        delegation_[i] = allocate(Tier::kCpu, i == 0 || i == 3 ? vec * c.queries_per_unit : vec, "delegation");
      }
    }
    // Workspace, in the order of add_workspace_and_padding (sizes only matter).
    const CudaWorkspaceSizes w = workspace_sizes();
    auto half_ws = [&](Bytes n) { return reinterpret_cast<__half*>(allocate(Tier::kGpu, n, "workspace").ptr); };
    ws_.ln = half_ws(w.ln);
    ws_.q = half_ws(w.q);
    ws_.k = half_ws(w.k);
    ws_.v = half_ws(w.v);
    ws_.attn = half_ws(w.attn);
    ws_.tmp = half_ws(w.tmp);
    ws_.mlp = half_ws(w.mlp);
    ws_.new_rows = allocate(Tier::kGpu, w.new_rows, "workspace").ptr;
    ws_.cache_dq = half_ws(w.cache_dq);
    ws_.weights_dq = allocate(Tier::kGpu, w.weights_dq, "workspace").ptr;
    ws_.logits = half_ws(w.logits);
    ws_.last = half_ws(w.last);
    ws_.ids = reinterpret_cast<std::int32_t*>(allocate(Tier::kGpu, w.ids, "workspace").ptr);
    ws_.pad_len = reinterpret_cast<std::int32_t*>(allocate(Tier::kGpu, w.pad_len, "workspace").ptr);
    ws_.splits = reinterpret_cast<float*>(allocate(Tier::kGpu, w.splits, "workspace").ptr);
    ws_.splits_bytes = static_cast<std::size_t>(w.splits);
    ws_.prefill = allocate(Tier::kGpu, w.prefill, "workspace").ptr;
    ws_.prefill_bytes = static_cast<std::size_t>(w.prefill);
    ws_.kept = reinterpret_cast<std::int32_t*>(allocate(Tier::kGpu, w.kept, "workspace").ptr);
    ws_.cublas = allocate(Tier::kGpu, w.cublas, "workspace").ptr;
    ws_.up = half_ws(w.up);
    const Bytes b = plan_.policy.gpu_batch_size();
    std::byte* io = allocate(Tier::kCpu, pinned_io_bytes(), "pinned io").ptr;
    logits_host_ = reinterpret_cast<std::uint16_t*>(io);
    next_host_ = reinterpret_cast<std::int32_t*>(io + round_up(b * spec_.vocab_size * 2, kCpuAlign));
    ids_host_ = reinterpret_cast<std::int32_t*>(io + round_up(b * spec_.vocab_size * 2, kCpuAlign) + round_up(b * 4, kCpuAlign));
    ws_.next = reinterpret_cast<std::int32_t*>(allocate(Tier::kGpu, w.next, "workspace").ptr);
    // Every byte the memory plan promised, no more (the padding entries match the arenas' rounding).
    for (Tier t : {Tier::kGpu, Tier::kCpu}) {
      Arena& a = arena_[t == Tier::kGpu ? 0 : 1];
      FLEXGEN_REQUIRE(a.used == a.size, "CUDA backend: carved ", a.used, " bytes of the ", tier_name(t),
                      " arena but planned ", a.size);
      allocated_[t] = a.used;
    }
    allocated_[Tier::kDisk] = memory_.total[Tier::kDisk];
  }

  // ---- weights ---------------------------------------------------------------------------------
  struct StoredTensor {
    const PlannedTensor* plan = nullptr;
    Buffer home;
    Bytes slot_offset = 0;
    Bytes staging_offset = 0;
    Bytes dq_offset = 0;  // where its fp16 values go in the dequantized-weights workspace (4-bit)
  };
  struct StoredLayer {
    std::vector<StoredTensor> tensors;
    std::vector<int> roles;  // role -> index in tensors
  };

  std::int64_t embed_position_rows() const { return spec_.max_positions + 2; }

  // The attention scale 1/sqrt(head_dim). The query projection's bias is stored multiplied by it,
  // so that the projection is one fused GEMM: q = scale * x Wq^T + (scale * bq).
  float query_scale() const { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(spec_.head_dim()))); }
  static bool is_query_bias(const std::string& name) { return name.ends_with(".self_attn.q_proj.bias"); }

  // Encodes a float32 tensor into its stored format (fp16 or 4-bit) in host memory `out` (the
  // query bias pre-scaled, see query_scale).
  void encode_tensor(const PlannedTensor& t, std::span<const float> x, std::byte* out) const {
    std::vector<float> scaled;
    if (is_query_bias(t.name)) {
      scaled.assign(x.begin(), x.end());
      for (float& v : scaled) v *= query_scale();
      x = scaled;
    }
    if (t.encoding == Encoding::kQ4) {
      quantize(x, t.shape, q4w_, std::span<std::byte>(out, static_cast<std::size_t>(t.bytes)));
      return;
    }
    auto* o = reinterpret_cast<std::uint16_t*>(out);
    parallel_for(static_cast<std::int64_t>(x.size()), 1 << 16, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) o[i] = float_to_half(x[static_cast<std::size_t>(i)]);
    });
  }

  void place_weights(const WeightsSource& source) {
    std::map<std::string, const Tensor*> named;
    OptWeights dummy;
    LlamaWeights llama_dummy;
    const bool llama = spec_.family == ModelFamily::kLlama;
    const bool real = llama ? source.llama_weights != nullptr : source.weights != nullptr;
    if (real) {
      named = llama ? named_tensors(spec_, *source.llama_weights) : named_tensors(spec_, *source.weights);
    } else {
      // Dummy weights: layer 0's values (make_dummy_opt_weights' / make_dummy_llama_weights'
      // distribution) in every layer, encoded once per tensor name.
      ModelSpec one = spec_;
      one.num_layers = 1;
      if (llama) {
        llama_dummy = make_dummy_llama_weights(one, source.dummy_seed);
        named = named_tensors(one, llama_dummy);
      } else {
        dummy = make_dummy_opt_weights(one, source.dummy_seed);
        for (const TensorSlot& slot : opt_tensor_slots(one, dummy)) named[slot.name] = slot.target;
      }
    }
    std::map<std::string, std::vector<std::byte>> encoded;  // dummy: by layer-0 name and encoding
    std::vector<std::byte> scratch;
    for (auto& layer : weights_) {
      for (StoredTensor& st : layer.tensors) {
        const PlannedTensor& t = *st.plan;
        const std::string key = real ? t.name : layer0_name(t.name);
        const auto it = named.find(key);
        FLEXGEN_REQUIRE(it != named.end(), "weights: no tensor ", t.name);
        const Tensor* src = it->second;
        FLEXGEN_REQUIRE(src->shape() == t.shape, "weights: ", t.name, " has shape ", shape_to_string(src->shape()),
                        ", the plan expects ", shape_to_string(t.shape));
        const std::byte* bytes = nullptr;
        if (!real) {
          const std::string ekey = key + (t.encoding == Encoding::kQ4 ? "#q4" : "#f16");
          auto& e = encoded[ekey];
          if (e.empty()) {
            e.resize(static_cast<std::size_t>(t.bytes));
            encode_tensor(t, src->span(), e.data());
          }
          bytes = e.data();
        } else if (t.home == Tier::kCpu) {
          encode_tensor(t, src->span(), st.home.ptr);
          continue;
        } else {
          scratch.resize(static_cast<std::size_t>(t.bytes));
          encode_tensor(t, src->span(), scratch.data());
          bytes = scratch.data();
        }
        switch (t.home) {
          case Tier::kGpu:
            FLEXGEN_CUDA_CHECK(cudaMemcpy(st.home.ptr, bytes, static_cast<std::size_t>(t.bytes), cudaMemcpyHostToDevice));
            break;
          case Tier::kCpu:
            parallel_for(t.bytes, 1 << 24, [&](std::int64_t b, std::int64_t e) {
              std::memcpy(st.home.ptr + b, bytes + b, static_cast<std::size_t>(e - b));
            });
            break;
          case Tier::kDisk:
            disk_->write_sync(st.home.region, bytes, t.bytes);
            break;
        }
      }
    }
  }

  // Device pointer of a tensor of the task's layer as the GPU sees it (home, or weight slot),
  // fp16: 4-bit tensors were dequantized into the workspace by prepare_weights.
  const __half* weight(const Task& t, int role) const {
    const StoredLayer& layer = weights_[static_cast<std::size_t>(t.layer)];
    const int index = layer.roles[static_cast<std::size_t>(role)];
    assert(index >= 0);
    const StoredTensor& st = layer.tensors[static_cast<std::size_t>(index)];
    if (st.plan->encoding == Encoding::kQ4) return reinterpret_cast<const __half*>(ws_.weights_dq + st.dq_offset);
    return reinterpret_cast<const __half*>(stored_bytes(t, st));
  }
  const std::byte* stored_bytes(const Task& t, const StoredTensor& st) const {
    return st.plan->home == Tier::kGpu ? st.home.ptr : weight_slot_[t.weight_slot].ptr + st.slot_offset;
  }

  bool has_q4_weights(const Task& t) const {
    const StoredLayer& layer = weights_[static_cast<std::size_t>(t.layer)];
    return std::any_of(layer.tensors.begin(), layer.tensors.end(),
                       [](const StoredTensor& st) { return st.plan->encoding == Encoding::kQ4; });
  }

  // Dequantizes the task's layer's 4-bit tensors into the workspace, once per weight step (the
  // batches of a zig-zag block share it).
  void prepare_weights(const Task& t) {
    const StoredLayer& layer = weights_[static_cast<std::size_t>(t.layer)];
    if (!has_q4_weights(t)) return;
    const std::int64_t key = (static_cast<std::int64_t>(t.token) * (spec_.num_layers + 2) + t.layer) * 1000003 +
                             (options_.schedule == ScheduleKind::kRowByRow ? t.batch : 0);
    if (key == dequantized_key_) return;
    for (const StoredTensor& st : layer.tensors) {
      if (st.plan->encoding != Encoding::kQ4) continue;
      cuda::dequantize(stored_bytes(t, st), st.plan->shape, q4w_,
                       reinterpret_cast<__half*>(ws_.weights_dq + st.dq_offset), compute_);
    }
    dequantized_key_ = key;
  }

  // ---- transfers ---------------------------------------------------------------------------
  enum Link { kH2D = 0, kD2H = 1, kDiskRead = 2, kDiskWrite = 3 };

  // Copies `rows` rows of `width` bytes between strided buffers (pitches in bytes) on a stream, or
  // through the disk store (disk <-> pinned CPU, contiguous only).
  void copy2d(const Buffer& dst, Bytes dst_off, Bytes dst_pitch, const Buffer& src, Bytes src_off, Bytes src_pitch,
              Bytes width, std::int64_t rows, cudaStream_t stream) {
    if (width == 0 || rows == 0) return;
    const Bytes n = width * rows;
    if (src.tier == Tier::kDisk || dst.tier == Tier::kDisk) {
      assert(dst_pitch == width && src_pitch == width);
      if (src.tier == Tier::kDisk) {
        disk_->read_sync(src.region, dst.ptr + dst_off, n, src_off);
        moved_[kDiskRead] += n;
      } else {
        disk_->write_sync(dst.region, src.ptr + src_off, n, dst_off);
        moved_[kDiskWrite] += n;
      }
      return;
    }
    if (fault::strike(fault::Point::kCudaCopy) == fault::Effect::kFail) {
      fail("CUDA error cudaErrorUnknown (injected fault) copying ", n, " bytes from the ", tier_name(src.tier),
           " tier to the ", tier_name(dst.tier), " tier");
    }
    const cudaMemcpyKind kind = src.tier == Tier::kCpu && dst.tier == Tier::kGpu   ? cudaMemcpyHostToDevice
                                : src.tier == Tier::kGpu && dst.tier == Tier::kCpu ? cudaMemcpyDeviceToHost
                                : src.tier == Tier::kGpu                          ? cudaMemcpyDeviceToDevice
                                                                                  : cudaMemcpyHostToHost;
    if (dst_pitch == width && src_pitch == width) {
      FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(dst.ptr + dst_off, src.ptr + src_off, static_cast<std::size_t>(n), kind, stream));
    } else {
      FLEXGEN_CUDA_CHECK(cudaMemcpy2DAsync(dst.ptr + dst_off, static_cast<std::size_t>(dst_pitch), src.ptr + src_off,
                                           static_cast<std::size_t>(src_pitch), static_cast<std::size_t>(width),
                                           static_cast<std::size_t>(rows), kind, stream));
    }
    if (kind == cudaMemcpyHostToDevice) moved_[kH2D] += n;
    if (kind == cudaMemcpyDeviceToHost) moved_[kD2H] += n;
  }
  void copy(const Buffer& dst, Bytes dst_off, const Buffer& src, Bytes src_off, Bytes n, cudaStream_t stream) {
    copy2d(dst, dst_off, n, src, src_off, n, n, 1, stream);
  }
  // Rows [first, first + count) of `units` consecutive units between two position-major
  // [capacity, units_in_buffer, row] buffers.
  void copy_rows(const Buffer& dst, std::int64_t dst_units, std::int64_t dst_unit0, const Buffer& src,
                 std::int64_t src_units, std::int64_t src_unit0, std::int64_t units, std::int64_t first,
                 std::int64_t count, cudaStream_t stream) {
    if (units == 0 || count == 0) return;
    const Bytes row = plan_.cache.row_bytes;
    if (dst_units == units && src_units == units) {
      copy(dst, first * units * row, src, first * units * row, count * units * row, stream);
      return;
    }
    copy2d(dst, (first * dst_units + dst_unit0) * row, dst_units * row, src, (first * src_units + src_unit0) * row,
           src_units * row, units * row, count, stream);
  }

  // ---- per-batch state -------------------------------------------------------------------------
  struct BatchRun {
    std::vector<std::int32_t> prompt_ids;
    std::vector<std::int64_t> pad_len;
    std::vector<std::int32_t> next;
    std::vector<std::vector<std::int32_t>> generated;
  };
  struct CacheHome {
    Buffer part[3][2];  // [tier][key, value]
  };
  CacheHome& cache_home(std::int64_t layer, std::int64_t batch) {
    return cache_[static_cast<std::size_t>((layer - 1) * plan_.policy.num_gpu_batches() + batch)];
  }

  // ---- events and task dispatch ------------------------------------------------------------
  static bool on_stream(TaskKind kind) {
    const Resource r = task_resource(kind);
    return r == Resource::kGpuCompute || r == Resource::kH2D || r == Resource::kD2H;
  }
  // The small transfers on the critical path of a visit (delegated attention in and out, the
  // gathered value rows) get their own high-priority streams, so that they do not queue behind
  // the next layer's weight load on the same link: the link is one resource in the schedule, but
  // the copy engines interleave the two streams.
  cudaStream_t stream_of(TaskKind kind) const {
    if (kind == TaskKind::kDelegateLoad || kind == TaskKind::kValueGather) return h2d_small_;
    if (kind == TaskKind::kDelegateStore) return d2h_small_;
    switch (task_resource(kind)) {
      case Resource::kGpuCompute: return compute_;
      case Resource::kH2D: return h2d_;
      case Resource::kD2H: return d2h_;
      default: return nullptr;
    }
  }

  void prepare_events(const Schedule& schedule, bool timings) {
    const std::size_t n = schedule.tasks.size();
    const unsigned flags = cudaEventDefault;
    while (end_.size() < n) {
      cudaEvent_t e;
      FLEXGEN_CUDA_CHECK(cudaEventCreateWithFlags(&e, flags));
      end_.push_back(e);
    }
    if (timings) {
      while (begin_.size() < n) {
        cudaEvent_t e;
        FLEXGEN_CUDA_CHECK(cudaEventCreateWithFlags(&e, flags));
        begin_.push_back(e);
      }
    }
  }
  void destroy_events() {
    for (cudaEvent_t e : end_) cudaEventDestroy(e);
    for (cudaEvent_t e : begin_) cudaEventDestroy(e);
    end_.clear();
    begin_.clear();
  }

  double seconds_since_start() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

  void run_task(const Task& t, TaskId id) {
    FLEXGEN_CUDA_CHECK(cudaSetDevice(device_));
    const cudaStream_t stream = stream_of(t.kind);
    for (TaskId d : t.deps) {
      const Task& dep = cur_schedule_->tasks[static_cast<std::size_t>(d)];
      if (!on_stream(dep.kind)) continue;  // host tasks are done when the executor starts this one
      if (stream != nullptr) {
        if (stream_of(dep.kind) != stream) FLEXGEN_CUDA_CHECK(cudaStreamWaitEvent(stream, end_[static_cast<std::size_t>(d)], 0));
      } else {
        FLEXGEN_CUDA_CHECK(cudaEventSynchronize(end_[static_cast<std::size_t>(d)]));
      }
    }
    const auto i = static_cast<std::size_t>(id);
    if (stream == nullptr) host_times_[i].start_s = seconds_since_start();
    if (stream != nullptr && !begin_.empty()) FLEXGEN_CUDA_CHECK(cudaEventRecord(begin_[i], stream));
    // A pipeline stage but the last: the tokens of the previous step before its first compute of
    // a step (stage 0's embedding feeds them; every stage applies them to its early finish).
    if (protocol_ && !stage_->is_last() && t.kind == TaskKind::kCompute && t.layer == stage_->layers.first &&
        t.token > 0) {
      receive_tokens(t.batch, t.token - 1);
    }
    if (early_->skip(t)) {
      ++skipped_;  // no work; its events are still recorded, so waits on it and timings hold
    } else {
      if (protocol_ && t.kind == TaskKind::kCompute && stage_->receives_hidden(t.layer)) receive_hidden(t);
      dispatch(t);
      if (protocol_ && stage_->sends_hidden(t.layer) && visit_end_[i]) send_hidden(t);
    }
    if (stream != nullptr) {
      FLEXGEN_CUDA_CHECK(cudaEventRecord(end_[i], stream));
      if (!plan_.policy.overlap()) FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(stream));
    } else {
      host_times_[i].end_s = seconds_since_start();
    }
  }

  void dispatch(const Task& t) {
    const Bytes act = plan_.activation_bytes(tokens_in(t));
    const auto k = static_cast<std::size_t>(t.batch);
    switch (t.kind) {
      case TaskKind::kWeightRead: return weight_read(t);
      case TaskKind::kWeightLoad: return weight_load(t);
      case TaskKind::kCacheRead: return cache_read(t);
      case TaskKind::kCacheLoad: return cache_load(t);
      case TaskKind::kActRead: return copy(act_staging_[t.act_slot], 0, act_home_[k], 0, act, nullptr);
      case TaskKind::kActLoad:
        return copy(act_slot_[t.act_slot], 0,
                    plan_.activation_home == Tier::kDisk ? act_staging_[t.act_slot] : act_home_[k], 0, act, h2d_);
      case TaskKind::kCompute: return compute(t);
      case TaskKind::kValueGather: return value_gather(t);
      case TaskKind::kDelegateStore: return delegate_store(t);
      case TaskKind::kCpuAttention: return cpu_attention(t);
      case TaskKind::kDelegateLoad: return delegate_load(t);
      case TaskKind::kComputePost: return compute_post(t);
      case TaskKind::kCacheStore: return cache_store(t);
      case TaskKind::kCacheWrite: return cache_write(t);
      case TaskKind::kActStore:
        return copy(plan_.activation_home == Tier::kDisk ? act_staging_[t.act_slot] : act_home_[k], 0,
                    act_slot_[t.act_slot], 0, act, d2h_);
      case TaskKind::kActWrite: return copy(act_home_[k], 0, act_staging_[t.act_slot], 0, act, nullptr);
    }
  }

  std::int64_t tokens_in(const Task& t) const { return visit_tokens(*run_, t); }
  std::int64_t past_len(const Task& t) const { return visit_past(*run_, t); }
  bool delegated(const Task& t) const { return visit_delegated(plan_, t); }
  bool sparse(const Task& t) const { return visit_sparse(plan_, t); }
  std::int64_t kept_positions(const Task& t) const { return visit_kept_positions(*run_, t); }

  void weight_read(const Task& t) {
    for (const StoredTensor& st : weights_[static_cast<std::size_t>(t.layer)].tensors) {
      if (st.plan->home == Tier::kDisk) copy(weight_staging_[t.weight_slot], st.staging_offset, st.home, 0, st.plan->bytes, nullptr);
    }
  }

  void weight_load(const Task& t) {
    for (const StoredTensor& st : weights_[static_cast<std::size_t>(t.layer)].tensors) {
      if (st.plan->home == Tier::kCpu) {
        copy(weight_slot_[t.weight_slot], st.slot_offset, st.home, 0, st.plan->bytes, h2d_);
      } else if (st.plan->home == Tier::kDisk) {
        copy(weight_slot_[t.weight_slot], st.slot_offset, weight_staging_[t.weight_slot], st.staging_offset,
             st.plan->bytes, h2d_);
      }
    }
  }

  void cache_read(const Task& t) {
    const std::int64_t d = plan_.cache.units_on_tier(Tier::kDisk);
    CacheHome& home = cache_home(t.layer, t.batch);
    for (int kv = 0; kv < 2; ++kv) {
      copy_rows(cache_staging_[t.cache_slot][kv], d, 0, home.part[2][kv], d, 0, d, 0, past_len(t), nullptr);
    }
  }

  void cache_load(const Task& t) {
    const CachePlan& c = plan_.cache;
    const std::int64_t ncpu = c.units_on_tier(Tier::kCpu), d = c.units_on_tier(Tier::kDisk);
    CacheHome& home = cache_home(t.layer, t.batch);
    const int kvs = sparse(t) ? 1 : 2;
    for (int kv = 0; kv < kvs; ++kv) {
      if (!delegated(t)) {
        copy_rows(cache_slot_[t.cache_slot][kv], slot_units_, 0, home.part[1][kv], ncpu, 0, ncpu, 0, past_len(t), h2d_);
      }
      copy_rows(cache_slot_[t.cache_slot][kv], slot_units_, ncpu, cache_staging_[t.cache_slot][kv], d, 0, d, 0,
                past_len(t), h2d_);
    }
  }

  void cache_store(const Task& t) {
    const CachePlan& c = plan_.cache;
    const std::int64_t ncpu = c.units_on_tier(Tier::kCpu), d = c.units_on_tier(Tier::kDisk);
    CacheHome& home = cache_home(t.layer, t.batch);
    for (int kv = 0; kv < 2; ++kv) {
      if (!delegated(t)) {
        copy_rows(home.part[1][kv], ncpu, 0, cache_slot_[t.cache_slot][kv], slot_units_, 0, ncpu, past_len(t),
                  tokens_in(t), d2h_);
      }
      copy_rows(cache_staging_[t.cache_slot][kv], d, 0, cache_slot_[t.cache_slot][kv], slot_units_, ncpu, d,
                past_len(t), tokens_in(t), d2h_);
    }
  }

  void cache_write(const Task& t) {
    const std::int64_t d = plan_.cache.units_on_tier(Tier::kDisk);
    CacheHome& home = cache_home(t.layer, t.batch);
    for (int kv = 0; kv < 2; ++kv) {
      copy_rows(home.part[2][kv], d, 0, cache_staging_[t.cache_slot][kv], d, 0, d, past_len(t), tokens_in(t), nullptr);
    }
  }

  // ---- pipeline stages -----------------------------------------------------------------------
  bool holds(std::int64_t layer) const { return stage_ == nullptr || stage_->holds(layer); }
  Schedule make_stage_schedule(const Plan& plan) const {
    return stage_ ? make_schedule(plan, options_.schedule, stage_->layers) : make_schedule(plan, options_.schedule);
  }
  // Per task of the schedule: whether it is the last compute task of its visit (compute, or the
  // compute-post after delegated or sparse attention), after which the hidden state is complete.
  void mark_visit_ends(const Schedule& schedule) {
    visit_end_.assign(schedule.tasks.size(), 0);
    std::map<std::tuple<std::int32_t, std::int32_t, std::int32_t>, std::size_t> last;
    for (std::size_t i = 0; i < schedule.tasks.size(); ++i) {
      const Task& t = schedule.tasks[i];
      if (t.kind == TaskKind::kCompute || t.kind == TaskKind::kComputePost) last[{t.token, t.layer, t.batch}] = i;
    }
    for (const auto& [key, i] : last) visit_end_[i] = 1;
  }
  // The tokens the last stage sampled up to step `token` of `batch` (or until the batch finished).
  void receive_tokens(std::int32_t batch, std::int32_t token) {
    protocol_->await_tokens(
        token, batch,
        [this](std::int32_t k) {
          return early_->steps_run(k, std::numeric_limits<std::int64_t>::max()) !=
                 std::numeric_limits<std::int64_t>::max();
        },
        [this](const StageProtocol::Tokens& m) {
          BatchRun& br = batches_[static_cast<std::size_t>(m.batch)];
          for (std::size_t s = 0; s < m.ids.size(); ++s) {
            br.next[s] = m.ids[s];
            br.generated[s].push_back(m.ids[s]);
          }
          early_->observe(m.batch, m.token, br.generated);
        });
  }
  // The hidden state entering this stage's first layer, from the previous stage: over the device
  // link (NCCL), or through pinned host memory.
  void receive_hidden(const Task& t) {
    const Bytes bytes = plan_.activation_bytes(tokens_in(t));
    if (link_) {
      protocol_->recv_hidden_header(t.token, t.batch, bytes);
      link_->recv(gpu_hidden(t), bytes, stage_->index - 1, compute_);
      return;
    }
    protocol_->recv_hidden(t.token, t.batch, std::span<std::byte>(hidden_host_, static_cast<std::size_t>(bytes)));
    FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(gpu_hidden(t), hidden_host_, static_cast<std::size_t>(bytes),
                                       cudaMemcpyHostToDevice, compute_));
    FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(compute_));  // the staging buffer serves the next one
  }
  // The hidden state leaving this stage's last layer, to the next stage.
  void send_hidden(const Task& t) {
    const Bytes bytes = plan_.activation_bytes(tokens_in(t));
    if (link_) {
      protocol_->send_hidden_header(t.token, t.batch, bytes);
      link_->send(gpu_hidden(t), bytes, stage_->index + 1, compute_);
      return;
    }
    FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(hidden_host_, gpu_hidden(t), static_cast<std::size_t>(bytes),
                                       cudaMemcpyDeviceToHost, compute_));
    FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(compute_));
    protocol_->send_hidden(t.token, t.batch, std::span<const std::byte>(hidden_host_, static_cast<std::size_t>(bytes)));
  }

  // ---- compute -------------------------------------------------------------------------------
  __half* gpu_hidden(const Task& t) const {
    const Buffer& b = plan_.activation_home == Tier::kGpu ? act_home_[static_cast<std::size_t>(t.batch)]
                                                           : act_slot_[t.act_slot];
    return reinterpret_cast<__half*>(b.ptr);
  }
  const std::int32_t* pad_dev(const Task& t) const { return ws_.pad_len + t.batch * plan_.policy.gpu_batch_size(); }

  // The cache parts of the task's (layer, batch) as fp16 rows for the attention kernels: the GPU
  // home (units [0, g)) and the slot (off-GPU units, without the delegated ones). With a 4-bit
  // cache, the dequantized copies in the workspace (dequantize_cache fills them).
  cuda::KvView cache_view(const Task& t, bool values) {
    const CachePlan& c = plan_.cache;
    const std::int64_t g = c.units_on_tier(Tier::kGpu), ncpu = c.units_on_tier(Tier::kCpu), hd = spec_.head_dim();
    CacheHome& home = cache_home(t.layer, t.batch);
    cuda::KvView view;
    view.group = static_cast<int>(c.queries_per_unit);  // grouped-query attention (kv_view.cuh)
    const bool q4 = plan_.policy.compress_cache();
    const Bytes dq_half = c.capacity * (g + slot_units_) * hd;  // elements of one (key or value) dequantized copy
    auto add = [&](const std::byte* k, const std::byte* v, std::int64_t ub, std::int64_t ue, std::int64_t stride_units,
                   std::int64_t dq_unit0) {
      if (ue <= ub) return;
      cuda::KvPart& p = view.parts[view.num_parts++];
      if (q4) {
        p.keys = ws_.cache_dq + dq_unit0;
        p.values = values ? ws_.cache_dq + dq_half + dq_unit0 : nullptr;
      } else {
        p.keys = reinterpret_cast<const __half*>(k);
        p.values = values ? reinterpret_cast<const __half*>(v) : nullptr;
      }
      p.unit_begin = ub;
      p.unit_end = ue;
      p.position_stride = stride_units * hd;
    };
    // Dequantized layout: GPU part [cap, g, hd] then slot part [cap, slot_units, hd].
    add(home.part[0][0].ptr, home.part[0][1].ptr, 0, g, g, 0);
    const std::int64_t first_slot_unit = delegated(t) ? g + ncpu : g;
    const Bytes skip = (first_slot_unit - g) * c.row_bytes;
    const std::byte* sk = cache_slot_[t.cache_slot][0].ptr ? cache_slot_[t.cache_slot][0].ptr + skip : nullptr;
    const std::byte* sv = cache_slot_[t.cache_slot][1].ptr ? cache_slot_[t.cache_slot][1].ptr + skip : nullptr;
    add(sk, sv, first_slot_unit, c.units, slot_units_, c.capacity * g * hd + (first_slot_unit - g) * hd);
    return view;
  }

  // 4-bit cache: dequantizes positions [0, positions) of the GPU part and the slot (keys, values
  // or both) into the workspace copies cache_view points at.
  void dequantize_cache(const Task& t, std::int64_t positions, bool keys, bool values) {
    if (!plan_.policy.compress_cache()) return;
    const CachePlan& c = plan_.cache;
    const std::int64_t g = c.units_on_tier(Tier::kGpu), hd = spec_.head_dim();
    const Bytes dq_half = c.capacity * (g + slot_units_) * hd;
    CacheHome& home = cache_home(t.layer, t.batch);
    for (int kv = 0; kv < 2; ++kv) {
      if ((kv == 0 && !keys) || (kv == 1 && !values)) continue;
      __half* out = ws_.cache_dq + kv * dq_half;
      if (g > 0) cuda::dequantize_rows(home.part[0][kv].ptr, positions * g, hd, q4c_, out, compute_);
      if (slot_units_ > 0) {
        cuda::dequantize_rows(cache_slot_[t.cache_slot][kv].ptr, positions * slot_units_, hd, q4c_,
                              out + c.capacity * g * hd, compute_);
      }
    }
  }

  // Runs f (the calls of one op on the compute stream) between two timing events when op timings
  // are kept (RuntimeOptions::keep_op_timings); otherwise just runs it.
  template <typename F>
  void timed(cuda::OpTimer::Op op, const Task& t, F&& f) {
    if (!op_timer_.enabled()) {
      f();
      return;
    }
    const std::size_t mark = op_timer_.begin(op, t.token > 0, compute_);
    f();
    op_timer_.end(mark, compute_);
  }

  // Decode with every unit's cache in the GPU home and fp16 rows: the key and value projections
  // write the new rows straight into the cache at position P ([units, head_dim] there is the
  // projection's [batch, hidden] layout), so no copy follows. Only where the rows start on a
  // 256-byte boundary, as the workspace does: the GEMM's algorithm (chosen by alignment) and so its
  // rounding are then those of every other placement.
  bool new_rows_in_place(const Task& t) const {
    const CachePlan& c = plan_.cache;
    return tokens_in(t) == 1 && !plan_.policy.compress_cache() && c.units_on_tier(Tier::kGpu) == c.units &&
           (past_len(t) * c.units * c.row_bytes) % kGpuAlign == 0;
  }

  void compute(const Task& t) {
    using Op = cuda::OpTimer;
    const std::int64_t b = plan_.policy.gpu_batch_size(), T = tokens_in(t), P = past_len(t);
    const std::int64_t h = spec_.hidden_size, nh = spec_.num_heads, hd = spec_.head_dim();
    // LLaMA: RMSNorm, rotary q and k, grouped-query attention over nkv cache heads per sequence.
    const bool llama = spec_.family == ModelFamily::kLlama;
    const std::int64_t nkv = spec_.kv_heads(), group = plan_.cache.queries_per_unit;
    __half* hidden = gpu_hidden(t);
    if (has_q4_weights(t)) timed(Op::kWeightDequant, t, [&] { prepare_weights(t); });
    if (t.layer == 0) {  // input embedding
      BatchRun& br = batches_[static_cast<std::size_t>(t.batch)];
      const std::vector<std::int32_t>& ids = t.token == 0 ? br.prompt_ids : br.next;
      std::int32_t* staged = ids_host_ + t.batch * b * plan_.workload.prompt_len;
      std::copy(ids.begin(), ids.end(), staged);
      timed(Op::kEmbedding, t, [&] {
        FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(ws_.ids, staged, ids.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice,
                                           compute_));
        embedding_kernels(t, hidden);
      });
      return;
    }
    if (t.layer == spec_.num_layers + 1) {  // final LayerNorm, LM head, next tokens
      BatchRun& br = batches_[static_cast<std::size_t>(t.batch)];
      output_layer_kernels(t, hidden);
      const std::int64_t vocab = spec_.vocab_size;
      if (!sampling_.do_sample) {  // greedy on the GPU: only the token ids come back
        timed(Op::kSampling, t, [&] {
          cuda::argmax_rows(ws_.logits, b, vocab, ws_.next, compute_);
          FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(next_host_, ws_.next, static_cast<std::size_t>(b * 4),
                                             cudaMemcpyDeviceToHost, compute_));
        });
        FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(compute_));
        for (std::int64_t s = 0; s < b; ++s) {
          const std::int32_t token = next_host_[s];
          FLEXGEN_REQUIRE(token >= 0, "the logits of sequence ", t.batch * b + s, " at step ", t.token,
                          " hold a NaN (fp16 overflow in the model?)");
          br.next[static_cast<std::size_t>(s)] = token;
          br.generated[static_cast<std::size_t>(s)].push_back(token);
        }
        early_->observe(t.batch, t.token, br.generated);
        if (protocol_) protocol_->send_tokens(t.token, t.batch, br.next);
        return;
      }
      timed(Op::kSampling, t, [&] {
        FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(logits_host_, ws_.logits, static_cast<std::size_t>(b * vocab * 2),
                                           cudaMemcpyDeviceToHost, compute_));
      });
      FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(compute_));
      std::vector<float> row(static_cast<std::size_t>(vocab));
      for (std::int64_t s = 0; s < b; ++s) {
        for (std::int64_t i = 0; i < vocab; ++i) row[static_cast<std::size_t>(i)] = half_to_float(logits_host_[s * vocab + i]);
        const std::int32_t token = sampler_->next(row, t.batch * b + s);
        br.next[static_cast<std::size_t>(s)] = token;
        br.generated[static_cast<std::size_t>(s)].push_back(token);
      }
      early_->observe(t.batch, t.token, br.generated);
      if (protocol_) protocol_->send_tokens(t.token, t.batch, br.next);
      return;
    }
    // Decoder layer, first half.
    const std::int64_t rows = b * T;
    timed(Op::kAttnLayerNorm, t, [&] {
      if (llama) {
        cuda::rms_norm(hidden, weight(t, kAttnLnW), rows, h, static_cast<float>(spec_.layer_norm_eps), ws_.ln,
                       compute_);
      } else {
        cuda::layer_norm(hidden, weight(t, kAttnLnW), weight(t, kAttnLnB), rows, h,
                         static_cast<float>(spec_.layer_norm_eps), ws_.ln, compute_);
      }
    });
    const CachePlan& c = plan_.cache;
    const std::int64_t g = c.units_on_tier(Tier::kGpu), ncpu = c.units_on_tier(Tier::kCpu);
    const Bytes R = c.row_bytes;
    CacheHome& home = cache_home(t.layer, t.batch);
    const bool in_place = new_rows_in_place(t);
    __half* new_k = in_place ? reinterpret_cast<__half*>(home.part[0][0].ptr + P * g * R) : ws_.k;
    __half* new_v = in_place ? reinterpret_cast<__half*>(home.part[0][1].ptr + P * g * R) : ws_.v;
    timed(Op::kQkvProj, t, [&] {
      cuda::LinearEpilogue scaled;  // the stored query bias is pre-scaled (query_scale)
      scaled.alpha = query_scale();
      if (llama) {
        const std::int64_t kv = spec_.kv_dim();
        cuda::linear(*linear_, ws_.ln, rows, h, weight(t, kQw), nullptr, h, ws_.q, scaled, compute_);
        cuda::linear(*linear_, ws_.ln, rows, h, weight(t, kKw), nullptr, kv, new_k, {}, compute_);
        cuda::linear(*linear_, ws_.ln, rows, h, weight(t, kVw), nullptr, kv, new_v, {}, compute_);
        // Rotated before the keys enter the cache (scaling q first is the same rotation).
        cuda::apply_rotary(ws_.q, b, T, static_cast<int>(nh), static_cast<int>(hd), rope_, pad_dev(t), P, compute_);
        cuda::apply_rotary(new_k, b, T, static_cast<int>(nkv), static_cast<int>(hd), rope_, pad_dev(t), P, compute_);
      } else {
        cuda::linear(*linear_, ws_.ln, rows, h, weight(t, kQw), weight(t, kQb), h, ws_.q, scaled, compute_);
        cuda::linear(*linear_, ws_.ln, rows, h, weight(t, kKw), weight(t, kKb), h, new_k, {}, compute_);
        cuda::linear(*linear_, ws_.ln, rows, h, weight(t, kVw), weight(t, kVb), h, new_v, {}, compute_);
      }
    });
    // New cache rows (4-bit: quantized first) into the GPU home and the slot.
    const bool deleg = delegated(t);
    if (!in_place) {
      timed(Op::kCacheAppend, t, [&] {
        for (int kv = 0; kv < 2; ++kv) {
          const std::byte* src = reinterpret_cast<const std::byte*>(kv == 0 ? ws_.k : ws_.v);
          if (plan_.policy.compress_cache()) {
            std::byte* q = ws_.new_rows + kv * (plan_.workload.prompt_len * b * nkv * R);
            cuda::quantize_rows(kv == 0 ? ws_.k : ws_.v, rows * nkv, hd, q4c_, q, compute_);
            src = q;
          }
          cuda::append_cache_rows(src, T, static_cast<int>(nkv), R, home.part[0][kv].ptr, g, 0, g, P, compute_);
          const std::int64_t first = deleg ? g + ncpu : g;
          if (c.units > first) {
            cuda::append_cache_rows(src, T, static_cast<int>(nkv), R, cache_slot_[t.cache_slot][kv].ptr + (first - g) * R,
                                    slot_units_, first, c.units, P, compute_);
          }
        }
      });
    }
    const int nhi = static_cast<int>(nh), hdi = static_cast<int>(hd);
    if (T > 1) {
      if (plan_.policy.compress_cache()) timed(Op::kCacheDequant, t, [&] { dequantize_cache(t, P + T, true, true); });
      const cuda::KvView view = cache_view(t, true);
      timed(Op::kAttention, t, [&] {
        if (T >= kGemmPrefillMinTokens) {
          cuda::prefill_attention_gemm(cublas_, ws_.q, view, pad_dev(t), b, nhi, hdi, T, P, ws_.attn, ws_.prefill,
                                       ws_.prefill_bytes, compute_);
        } else {
          cuda::prefill_attention(ws_.q, view, pad_dev(t), b, nhi, hdi, T, P, ws_.attn, compute_);
        }
      });
    } else if (sparse(t)) {
      if (plan_.policy.compress_cache()) timed(Op::kCacheDequant, t, [&] { dequantize_cache(t, P, true, false); });
      cuda::KvView view = cache_view(t, false);
      timed(Op::kAttention, t, [&] {
        if (group > 1) {
          // One selection per key/value unit, scored with its query group's sum (in ws_.tmp, free
          // until compute_post), as the host runtime.
          cuda::sum_query_groups(ws_.q, b * nkv, static_cast<int>(group), hdi, ws_.tmp, compute_);
          view.group = 1;
          cuda::select_top_k(ws_.tmp, view, pad_dev(t), b, static_cast<int>(nkv), hdi, P,
                             static_cast<int>(kept_positions(t)), ws_.kept, compute_);
        } else {
          cuda::select_top_k(ws_.q, view, pad_dev(t), b, nhi, hdi, P, static_cast<int>(kept_positions(t)), ws_.kept,
                             compute_);
        }
      });
    } else {
      if (plan_.policy.compress_cache()) timed(Op::kCacheDequant, t, [&] { dequantize_cache(t, P + 1, true, true); });
      const cuda::KvView view = cache_view(t, true);
      timed(Op::kAttention, t, [&] {
        cuda::decode_attention(ws_.q, view, pad_dev(t), b, nhi, hdi, P, ws_.attn, ws_.splits, ws_.splits_bytes, 0,
                               compute_);
      });
    }
  }

  // The input embedding of the ids in ws_.ids into hidden: OPT adds the learned positions, LLaMA
  // takes the token rows only (positions enter through the rotary embeddings) and has no position
  // table to read.
  void embedding_kernels(const Task& t, __half* hidden) {
    const std::int64_t b = plan_.policy.gpu_batch_size(), T = tokens_in(t), h = spec_.hidden_size;
    if (spec_.family == ModelFamily::kLlama) {
      cuda::token_embedding(ws_.ids, b * T, weight(t, kEmbedTokens), spec_.vocab_size, h, hidden, compute_);
    } else {
      cuda::embedding(ws_.ids, pad_dev(t), b, T, past_len(t), weight(t, kEmbedTokens), spec_.vocab_size,
                      weight(t, kEmbedPositions), embed_position_rows(), h, hidden, compute_);
    }
  }

  // The output layer's kernels up to the logits: the last position's hidden state, the final
  // LayerNorm and the LM head (tied to the token embedding).
  void output_layer_kernels(const Task& t, const __half* hidden) {
    using Op = cuda::OpTimer;
    const std::int64_t b = plan_.policy.gpu_batch_size(), T = tokens_in(t), h = spec_.hidden_size;
    timed(Op::kFinalLayerNorm, t, [&] {
      const __half* last = hidden;
      if (T > 1) {
        FLEXGEN_CUDA_CHECK(cudaMemcpy2DAsync(ws_.last, static_cast<std::size_t>(h * 2), hidden + (T - 1) * h,
                                             static_cast<std::size_t>(T * h * 2), static_cast<std::size_t>(h * 2),
                                             static_cast<std::size_t>(b), cudaMemcpyDeviceToDevice, compute_));
        last = ws_.last;
      }
      if (spec_.family == ModelFamily::kLlama) {
        cuda::rms_norm(last, weight(t, kFinalLnW), b, h, static_cast<float>(spec_.layer_norm_eps), ws_.ln, compute_);
      } else {
        cuda::layer_norm(last, weight(t, kFinalLnW), weight(t, kFinalLnB), b, h,
                         static_cast<float>(spec_.layer_norm_eps), ws_.ln, compute_);
      }
    });
    timed(Op::kLmHead, t, [&] {
      const bool untied = spec_.family == ModelFamily::kLlama && !spec_.tie_word_embeddings;
      const __half* lm_head = untied ? weight(t, kLmHead) : weight(t, kEmbedTokens);
      cuda::linear(*linear_, ws_.ln, b, h, lm_head, nullptr, spec_.vocab_size, ws_.logits, {}, compute_);
    });
  }

  void value_gather(const Task& t) {
    const CachePlan& c = plan_.cache;
    const std::int64_t g = c.units_on_tier(Tier::kGpu), ncpu = c.units_on_tier(Tier::kCpu), d = c.units_on_tier(Tier::kDisk);
    CacheHome& home = cache_home(t.layer, t.batch);
    const int k = static_cast<int>(kept_positions(t));
    std::byte* slot = cache_slot_[t.cache_slot][1].ptr;
    if (!delegated(t) && ncpu > 0) {
      cuda::gather_kept_rows(home.part[1][1].ptr, ncpu, 0, slot, slot_units_, 0, ncpu, ws_.kept, g, k, c.row_bytes,
                             h2d_small_);
      moved_[kH2D] += ncpu * k * c.row_bytes;
    }
    if (d > 0) {
      cuda::gather_kept_rows(cache_staging_[t.cache_slot][1].ptr, d, 0, slot, slot_units_, ncpu, d, ws_.kept, g + ncpu, k,
                             c.row_bytes, h2d_small_);
      moved_[kH2D] += d * k * c.row_bytes;
    }
  }

  void delegate_store(const Task&) {
    const std::int64_t g = plan_.cache.units_on_tier(Tier::kGpu), ncpu = plan_.cache.units_on_tier(Tier::kCpu);
    const std::int64_t hd = spec_.head_dim();
    const __half* src[3] = {ws_.q, ws_.k, ws_.v};
    for (int i = 0; i < 3; ++i) {
      // A unit's queries are its group's consecutive heads (one head for OPT).
      const std::int64_t n = (i == 0 ? plan_.cache.queries_per_unit : 1) * hd;
      FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(delegation_[i].ptr, src[i] + g * n, static_cast<std::size_t>(ncpu * n * 2),
                                         cudaMemcpyDeviceToHost, d2h_small_));
      moved_[kD2H] += ncpu * n * 2;
    }
  }

  void cpu_attention(const Task& t) {
    BatchRun& br = batches_[static_cast<std::size_t>(t.batch)];
    const CachePlan& c = plan_.cache;
    const std::int64_t g = c.units_on_tier(Tier::kGpu), ncpu = c.units_on_tier(Tier::kCpu);
    const std::int64_t hd = spec_.head_dim();
    CacheHome& home = cache_home(t.layer, t.batch);
    CpuAttentionBatch a;
    a.units = ncpu;
    a.unit0 = g;
    a.num_heads = spec_.kv_heads();  // units per sequence
    a.group = c.queries_per_unit;
    a.head_dim = hd;
    a.past = past_len(t);
    a.pad_len = br.pad_len;
    a.query = reinterpret_cast<const std::uint16_t*>(delegation_[0].ptr);
    a.new_key = reinterpret_cast<const std::uint16_t*>(delegation_[1].ptr);
    a.new_value = reinterpret_cast<const std::uint16_t*>(delegation_[2].ptr);
    a.keys = home.part[1][0].ptr;
    a.values = home.part[1][1].ptr;
    a.row_bytes = c.row_bytes;
    a.compressed = plan_.policy.compress_cache();
    a.kept = sparse(t) ? kept_positions(t) : 0;
    a.out = reinterpret_cast<std::uint16_t*>(delegation_[3].ptr);
    cpu_decode_attention_f16(a);
  }

  void delegate_load(const Task&) {
    const std::int64_t g = plan_.cache.units_on_tier(Tier::kGpu), ncpu = plan_.cache.units_on_tier(Tier::kCpu);
    const std::int64_t n = plan_.cache.queries_per_unit * spec_.head_dim();  // output values per unit
    const Bytes bytes = ncpu * n * 2;
    // Read by the SMs from mapped pinned memory: a copy-engine transfer would wait behind the next
    // layer's weight load, and the visit's second half waits for this one.
    cuda::sm_copy(ws_.attn + g * n, delegation_[3].ptr, static_cast<std::size_t>(bytes), h2d_small_);
    moved_[kH2D] += bytes;
  }

  void compute_post(const Task& t) {
    using Op = cuda::OpTimer;
    const std::int64_t b = plan_.policy.gpu_batch_size(), T = tokens_in(t), P = past_len(t);
    const std::int64_t h = spec_.hidden_size, f = spec_.ffn_dim;
    if (sparse(t)) {
      if (plan_.policy.compress_cache()) timed(Op::kCacheDequant, t, [&] { dequantize_cache(t, P + 1, false, true); });
      const cuda::KvView view = cache_view(t, true);
      timed(Op::kAttention, t, [&] {
        cuda::sparse_decode_attention(ws_.q, view, pad_dev(t), b, static_cast<int>(spec_.num_heads),
                                      static_cast<int>(spec_.head_dim()), P, ws_.kept,
                                      static_cast<int>(kept_positions(t)), ws_.attn, ws_.splits, ws_.splits_bytes, 0,
                                      compute_);
      });
    }
    __half* hidden = gpu_hidden(t);
    const std::int64_t rows = b * T;
    // Bias and residual (and ReLU for fc1) in the GEMMs' epilogues (cuda::linear's fused path).
    if (spec_.family == ModelFamily::kLlama) {  // o_proj, RMSNorm, SwiGLU MLP; no biases
      timed(Op::kOutProj, t, [&] {
        cuda::LinearEpilogue add_hidden;
        add_hidden.residual = hidden;
        cuda::linear(*linear_, ws_.attn, rows, h, weight(t, kOw), nullptr, h, ws_.tmp, add_hidden, compute_);
      });
      timed(Op::kMlpLayerNorm, t, [&] {
        cuda::rms_norm(ws_.tmp, weight(t, kMlpLnW), rows, h, static_cast<float>(spec_.layer_norm_eps), ws_.ln,
                       compute_);
      });
      timed(Op::kFc1, t, [&] {  // gate and up, then silu(gate) * up
        cuda::linear(*linear_, ws_.ln, rows, h, weight(t, kFc1w), nullptr, f, ws_.mlp, {}, compute_);
        cuda::linear(*linear_, ws_.ln, rows, h, weight(t, kUpW), nullptr, f, ws_.up, {}, compute_);
        cuda::silu_mul(ws_.mlp, ws_.up, rows * f, ws_.mlp, compute_);
      });
      timed(Op::kFc2, t, [&] {
        cuda::LinearEpilogue add_residual;
        add_residual.residual = ws_.tmp;
        cuda::linear(*linear_, ws_.mlp, rows, f, weight(t, kFc2w), nullptr, h, hidden, add_residual, compute_);
      });
      return;
    }
    timed(Op::kOutProj, t, [&] {
      cuda::LinearEpilogue add_hidden;
      add_hidden.residual = hidden;
      cuda::linear(*linear_, ws_.attn, rows, h, weight(t, kOw), weight(t, kOb), h, ws_.tmp, add_hidden, compute_);
    });
    timed(Op::kMlpLayerNorm, t, [&] {
      cuda::layer_norm(ws_.tmp, weight(t, kMlpLnW), weight(t, kMlpLnB), rows, h,
                       static_cast<float>(spec_.layer_norm_eps), ws_.ln, compute_);
    });
    timed(Op::kFc1, t, [&] {
      cuda::LinearEpilogue relu;
      relu.relu = true;
      cuda::linear(*linear_, ws_.ln, rows, h, weight(t, kFc1w), weight(t, kFc1b), f, ws_.mlp, relu, compute_);
    });
    timed(Op::kFc2, t, [&] {
      cuda::LinearEpilogue add_tmp;
      add_tmp.residual = ws_.tmp;
      cuda::linear(*linear_, ws_.mlp, rows, f, weight(t, kFc2w), weight(t, kFc2b), h, hidden, add_tmp, compute_);
    });
  }

  // ---- state ---------------------------------------------------------------------------------
  Plan plan_;
  const ModelSpec& spec_;
  RuntimeOptions options_;
  MemoryPlan memory_;
  Schedule schedule_;
  QuantSpec q4w_, q4c_;
  cuda::RopeTable rope_;  // LLaMA: the rotary frequencies
  int device_ = 0;
  Bytes free_before_ = 0;

  std::unique_ptr<DiskStore> disk_;
  Arena arena_[2];  // GPU, CPU
  TierBytes allocated_;
  std::atomic<Bytes> moved_[4] = {0, 0, 0, 0};
  cudaStream_t compute_ = nullptr, h2d_ = nullptr, d2h_ = nullptr, h2d_small_ = nullptr, d2h_small_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  std::unique_ptr<cuda::LinearContext> linear_;  // fused-epilogue GEMMs (cuBLASLt), on the compute stream
  cuda::OpTimer op_timer_;

  std::vector<StoredLayer> weights_;
  Buffer weight_slot_[2], weight_staging_[2];
  std::vector<CacheHome> cache_;
  std::int64_t slot_units_ = 0;
  Buffer cache_slot_[2][2], cache_staging_[2][2];
  std::vector<Buffer> act_home_;
  Buffer act_slot_[2], act_staging_[2];
  Buffer delegation_[4];
  struct Workspace {
    __half *ln = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *attn = nullptr, *tmp = nullptr, *mlp = nullptr;
    std::byte* new_rows = nullptr;
    __half* cache_dq = nullptr;
    std::byte* weights_dq = nullptr;
    __half *logits = nullptr, *last = nullptr;
    std::int32_t *ids = nullptr, *pad_len = nullptr, *kept = nullptr, *next = nullptr;
    float* splits = nullptr;
    std::size_t splits_bytes = 0;
    std::byte* prefill = nullptr;
    std::size_t prefill_bytes = 0;
    std::byte* cublas = nullptr;
    __half* up = nullptr;  // LLaMA: the up projection
  } ws_;
  std::uint16_t* logits_host_ = nullptr;
  std::int32_t* ids_host_ = nullptr;
  // Pipeline stage (options_.stage; null: the whole model).
  const PipelineStage* stage_ = nullptr;
  std::unique_ptr<StageProtocol> protocol_;
  std::unique_ptr<DeviceLink> link_;
  std::byte* hidden_host_ = nullptr;  // pinned staging of hidden states without a device link
  std::vector<char> visit_end_;       // per task of the running schedule (mark_visit_ends)
  std::int32_t* next_host_ = nullptr;

  const Plan* run_ = &plan_;
  const Schedule* cur_schedule_ = nullptr;
  std::vector<BatchRun> batches_;
  std::unique_ptr<Sampler> sampler_;
  SamplingConfig sampling_;
  std::unique_ptr<EarlyStop> early_;
  std::atomic<std::int64_t> skipped_{0};
  std::int64_t dequantized_key_ = -1;
  std::vector<cudaEvent_t> end_, begin_;
  std::vector<TaskTiming> host_times_;
  Clock::time_point start_;
};

std::unique_ptr<Runtime> make_cuda_runtime(const Plan& plan, const WeightsSource& weights, const RuntimeOptions& options) {
  return std::make_unique<CudaRuntime>(plan, weights, options);
}

}  // namespace flexgen
