#include "engine/runtime/host_runtime.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <numeric>

#include "engine/compress/quant4.h"
#include "engine/core/error.h"
#include "engine/core/parallel.h"
#include "engine/generate/sampler.h"
#include "engine/model/host_ops.h"
#include "engine/model/decoder.h"
#include "engine/model/opt_layer.h"
#include "engine/pipeline/stage_protocol.h"
#include "engine/runtime/disk_store.h"
#include "engine/runtime/early_stop.h"
#include "engine/runtime/fault_injection.h"
#include "engine/runtime/unit_attention.h"
#include "engine/runtime/visit.h"

namespace flexgen {

namespace {

// Bytes on one tier: host memory for the GPU and CPU tiers of the host backend, a file region
// for the disk tier.
struct Buffer {
  Tier tier = Tier::kCpu;
  Bytes size = 0;
  std::byte* host = nullptr;
  DiskRegion region;
};

struct AlignedDelete {
  void operator()(std::byte* p) const { std::free(p); }
};

// Encodes float32 values into a tier's storage format and back. Rows of `cols` values; 4-bit rows
// are quantized per row with groups along the row (the cache's head dimension, or, for weights,
// the output-channel axis of the whole tensor).
void encode_values(const float* x, std::int64_t count, Encoding e, std::byte* out) {
  switch (e) {
    case Encoding::kF32:
      std::memcpy(out, x, static_cast<std::size_t>(count) * 4);
      return;
    case Encoding::kF16: {
      auto* o = reinterpret_cast<std::uint16_t*>(out);
      for (std::int64_t i = 0; i < count; ++i) o[i] = float_to_half(x[i]);
      return;
    }
    case Encoding::kQ4:
      break;
  }
  assert(false && "4-bit values are encoded with a QuantSpec");
}

void decode_values(const std::byte* in, std::int64_t count, Encoding e, float* out) {
  switch (e) {
    case Encoding::kF32:
      std::memcpy(out, in, static_cast<std::size_t>(count) * 4);
      return;
    case Encoding::kF16: {
      const auto* h = reinterpret_cast<const std::uint16_t*>(in);
      for (std::int64_t i = 0; i < count; ++i) out[i] = half_to_float(h[i]);
      return;
    }
    case Encoding::kQ4:
      break;
  }
  assert(false && "4-bit values are decoded with a QuantSpec");
}

// Rounds values to the model's storage dtype in place (a no-op for float32 models), so that data
// crossing a task boundary is the same whichever tier or path it takes.
void round_to(Encoding dtype, std::span<float> x) {
  if (dtype == Encoding::kF16) {
    for (float& v : x) v = half_to_float(float_to_half(v));
  }
}

// The query that scores a unit's positions for top-k selection: the unit's own query (OPT), or
// with grouped-query attention the sum of its `group` query heads' vectors, so that one selection
// (k positions, the value rows the schedule gathers) serves the whole group: q_sum . k equals the
// sum of the group's scores. `scratch` holds the sum.
const float* selection_query(const float* q, std::int64_t group, std::int64_t head_dim, std::vector<float>& scratch) {
  if (group == 1) return q;
  scratch.assign(q, q + head_dim);
  for (std::int64_t i = 1; i < group; ++i) {
    for (std::int64_t c = 0; c < head_dim; ++c) scratch[static_cast<std::size_t>(c)] += q[i * head_dim + c];
  }
  return scratch.data();
}

}  // namespace

class HostRuntime::Impl {
 public:
  Impl(const Plan& plan, const std::map<std::string, const Tensor*>& weights, const RuntimeOptions& options)
      : plan_(plan), spec_(plan_.spec), options_(options), decoded_(plan_.spec) {
    memory_ = plan_memory(plan_);
    stage_ = options_.stage.get();
    if (stage_) {  // a pipeline stage: its layers' weights and cache, its own copy of the rest
      memory_ = stage_memory(plan_, memory_, stage_->stage_of_layer, stage_->index);
      protocol_ = std::make_unique<StageProtocol>(*stage_, plan_.policy.gpu_batch_size(), plan_.policy.num_gpu_batches());
    }
    check_budgets(memory_, options_.budgets);
    schedule_ = make_stage_schedule(plan_);
    scale_type_ = plan_.weight_dtype == Encoding::kF32 ? ScaleType::kFloat32 : ScaleType::kFloat16;
    elem_bytes_ = plan_.weight_dtype == Encoding::kF32 ? 4 : 2;
    if (memory_.total[Tier::kDisk] > 0) {
      FLEXGEN_REQUIRE(!options_.offload_dir.empty(),
                      "the plan puts data on disk: give --offload-dir (a directory with ",
                      memory_.total[Tier::kDisk], " bytes free)");
      disk_ = std::make_unique<DiskStore>(options_.offload_dir, options_.budgets[Tier::kDisk]);
      disk_->reserve(memory_.total[Tier::kDisk]);
    }
    allocate_all();
    place_weights(weights);
  }

  const Schedule& schedule() const { return schedule_; }
  const MemoryPlan& memory_plan() const { return memory_; }

  // Points run_ and run_schedule_ at the plan (a default or equal shape) or at the plan and
  // schedule of the smaller shape, made once per distinct shape.
  void use_shape(const BlockShape& shape) {
    const Workload& full = plan_.workload;
    const std::int64_t prompt_len = shape.prompt_len == 0 ? full.prompt_len : shape.prompt_len;
    const std::int64_t gen_len = shape.gen_len == 0 ? full.gen_len : shape.gen_len;
    FLEXGEN_REQUIRE(prompt_len >= 1 && gen_len >= 1, "block shape: prompt_len ", prompt_len, " and gen_len ",
                    gen_len, " must be at least 1");
    FLEXGEN_REQUIRE(prompt_len <= full.prompt_len && prompt_len + gen_len <= full.prompt_len + full.gen_len,
                    "block shape: prompt_len ", prompt_len, " + gen_len ", gen_len,
                    " does not fit the runtime's plan (prompt_len ", full.prompt_len, ", prompt_len + gen_len ",
                    full.prompt_len + full.gen_len, "); plan the runtime for the largest block");
    if (prompt_len == full.prompt_len && gen_len == full.gen_len) {
      run_ = &plan_;
      run_schedule_ = &schedule_;
      return;
    }
    if (!shaped_plan_ || shaped_plan_->workload.prompt_len != prompt_len || shaped_plan_->workload.gen_len != gen_len) {
      Workload w = full;
      w.prompt_len = prompt_len;
      w.gen_len = gen_len;
      shaped_plan_ = make_plan(spec_, w, plan_.policy);
      shaped_schedule_ = make_stage_schedule(*shaped_plan_);
      // Placement depends on the policy alone, so the buffers of the plan serve this run.
      assert(shaped_plan_->cache.units == plan_.cache.units && shaped_plan_->cache.row_bytes == plan_.cache.row_bytes);
      assert(shaped_plan_->cache.capacity <= plan_.cache.capacity);
    }
    run_ = &*shaped_plan_;
    run_schedule_ = &shaped_schedule_;
  }

  RunReport generate(const std::vector<std::vector<std::int32_t>>& prompts, const SamplingConfig& sampling,
                     std::optional<std::int32_t> stop_token, const BlockShape& shape) {
    use_shape(shape);
    const std::int64_t b = plan_.policy.gpu_batch_size();
    const std::int64_t prompt_len = run_->workload.prompt_len;
    std::vector<PaddedBatch> padded =
        left_pad_block(prompts, b, plan_.policy.num_gpu_batches(), prompt_len, spec_.pad_token_id);
    batches_.assign(static_cast<std::size_t>(plan_.policy.num_gpu_batches()), BatchRun{});
    for (std::int64_t k = 0; k < plan_.policy.num_gpu_batches(); ++k) {
      BatchRun& br = batches_[static_cast<std::size_t>(k)];
      br.prompt_ids = std::move(padded[static_cast<std::size_t>(k)].ids);
      br.state.pad_len = std::move(padded[static_cast<std::size_t>(k)].pad_len);
      br.generated.resize(static_cast<std::size_t>(b));
      br.next.resize(static_cast<std::size_t>(b));
    }
    sampler_ = std::make_unique<Sampler>(sampling);
    early_ = std::make_unique<EarlyStop>(plan_.policy.num_gpu_batches(), stop_token);
    skipped_ = 0;
    decoded_step_ = -1;
    for (auto& c : moved_) c = 0;

    const Schedule& schedule = *run_schedule_;
    if (protocol_) protocol_->reset();
    const auto timings = Executor::execute(schedule, plan_.policy.overlap(),
                                           [this](const Task& t, TaskId) { run_task(t); });
    // A pipeline stage but the last: the tokens of the last step (no compute here consumes them).
    if (protocol_ && !stage_->is_last()) {
      for (std::int64_t k = 0; k < plan_.policy.num_gpu_batches(); ++k) {
        receive_tokens(static_cast<std::int32_t>(k), static_cast<std::int32_t>(run_->workload.gen_len - 1));
      }
    }

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
    double prefill_end = 0, end = 0;
    for (std::size_t i = 0; i < timings.size(); ++i) {
      end = std::max(end, timings[i].end_s);
      if (schedule.tasks[i].token == 0) prefill_end = std::max(prefill_end, timings[i].end_s);
    }
    report.total_s = end;
    report.prefill_s = prefill_end;
    report.decode_s = end - prefill_end;
    std::int64_t decode_tokens = 0;
    for (std::int64_t k = 0; k < plan_.policy.num_gpu_batches(); ++k) {
      const std::int64_t steps = early_->steps_run(k, run_->workload.gen_len);
      report.generated_tokens += b * steps;
      decode_tokens += b * (steps - 1);
    }
    report.tasks_skipped = skipped_.load();
    report.throughput_tok_s = end > 0 ? static_cast<double>(report.generated_tokens) / end : 0;
    report.decode_throughput_tok_s = report.decode_s > 0 ? static_cast<double>(decode_tokens) / report.decode_s : 0;
    report.peak = allocated_;
    report.planned = memory_.total;
    report.moved = {moved_[0].load(), moved_[1].load(), moved_[2].load(), moved_[3].load()};
    if (options_.keep_task_timings) report.task_timings = timings;
    return report;
  }

 private:
  // ---- allocation ----------------------------------------------------------------------------
  Buffer allocate(Tier tier, Bytes bytes, const std::string& label) {
    Buffer buf;
    buf.tier = tier;
    buf.size = bytes;
    if (bytes == 0) return buf;
    if (tier == Tier::kDisk) {
      buf.region = disk_->allocate(bytes, label);
    } else {
      const std::size_t rounded = static_cast<std::size_t>((bytes + 4095) / 4096 * 4096);
      const fault::Point point = tier == Tier::kGpu ? fault::Point::kAllocGpu : fault::Point::kAllocCpu;
      void* p = fault::strike(point) == fault::Effect::kFail ? nullptr : std::aligned_alloc(4096, rounded);
      if (!p) fail("out of host memory allocating ", bytes, " bytes for ", label, " on the ", tier_name(tier), " tier");
      owned_.emplace_back(static_cast<std::byte*>(p));
      buf.host = static_cast<std::byte*>(p);
      std::memset(buf.host, 0, rounded);
    }
    allocated_[tier] += bytes;
    return buf;
  }

  void allocate_all() {
    const std::int64_t L = spec_.num_layers;
    const std::int64_t batches = plan_.policy.num_gpu_batches();
    const CachePlan& c = plan_.cache;
    // Weights at home, two GPU slots, two CPU staging buffers.
    weights_.resize(plan_.layers.size());
    for (std::size_t j = 0; j < plan_.layers.size(); ++j) {
      if (!holds(static_cast<std::int64_t>(j))) continue;  // another pipeline stage's layer
      Bytes slot_off = 0, staging_off = 0;
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
        weights_[j].push_back(st);
      }
    }
    for (int s = 0; s < 2; ++s) {
      weight_slot_[s] = allocate(Tier::kGpu, weight_slot_bytes(plan_), "weight slot");
      weight_staging_[s] = allocate(Tier::kCpu, weight_staging_bytes(plan_), "weight staging");
    }
    // Cache homes: [capacity, units on the tier, row] for key and for value.
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
    // Activations.
    const Bytes hidden = plan_.activation_bytes(plan_.workload.prompt_len);
    for (std::int64_t k = 0; k < batches; ++k) act_home_.push_back(allocate(plan_.activation_home, hidden, "activations"));
    if (plan_.activation_home != Tier::kGpu) {
      for (int s = 0; s < 2; ++s) act_slot_[s] = allocate(Tier::kGpu, hidden, "activation slot");
    }
    if (plan_.activation_home == Tier::kDisk) {
      for (int s = 0; s < 2; ++s) act_staging_[s] = allocate(Tier::kCpu, hidden, "activation staging");
    }
    if (plan_.policy.cpu_cache_compute()) {
      // Query and output hold queries_per_unit head vectors per unit (memory_plan.cc).
      const Bytes vec = c.units_on_tier(Tier::kCpu) * spec_.head_dim() * elem_bytes_;
      for (int i = 0; i < 4; ++i) {
        delegation_[i] = allocate(Tier::kCpu, i == 0 || i == 3 ? vec * c.queries_per_unit : vec, "delegation");
      }
    }
    for (Tier t : kAllTiers) {
      // The runtime must allocate exactly what the memory plan promised.
      assert(allocated_[t] == memory_.total[t]);
      (void)t;
    }
  }

  // ---- weights ---------------------------------------------------------------------------
  struct StoredTensor {
    const PlannedTensor* plan = nullptr;
    Buffer home;
    Bytes slot_offset = 0;     // where the tensor sits in a GPU weight slot (off-GPU tensors)
    Bytes staging_offset = 0;  // where it sits in a CPU staging buffer (disk tensors)
  };

  void encode_tensor(const PlannedTensor& t, const Tensor& x, std::byte* out) const {
    if (t.encoding == Encoding::kQ4) {
      quantize(x.span(), t.shape, weight_quant_spec(scale_type_), std::span<std::byte>(out, static_cast<std::size_t>(t.bytes)));
    } else {
      encode_values(x.data(), x.numel(), t.encoding, out);
    }
  }

  void decode_tensor(const PlannedTensor& t, const std::byte* in, Tensor& out) const {
    if (out.shape() != t.shape) out = Tensor(t.shape);
    if (t.encoding == Encoding::kQ4) {
      dequantize(std::span<const std::byte>(in, static_cast<std::size_t>(t.bytes)), t.shape,
                 weight_quant_spec(scale_type_), out.span());
    } else {
      decode_values(in, out.numel(), t.encoding, out.data());
    }
  }

  // The source tensors of the model by the plan's names (engine/model/decoder.h).
  void place_weights(const std::map<std::string, const Tensor*>& named) {
    std::vector<std::byte> scratch;
    for (auto& layer : weights_) {
      for (StoredTensor& st : layer) {
        const PlannedTensor& t = *st.plan;
        const auto found = named.find(t.name);
        FLEXGEN_REQUIRE(found != named.end(), "weights: the model has no tensor ", t.name);
        const Tensor* src = found->second;
        FLEXGEN_REQUIRE(src->shape() == t.shape, "weights: ", t.name, " has shape ", shape_to_string(src->shape()),
                        ", the plan expects ", shape_to_string(t.shape));
        if (t.home == Tier::kDisk) {
          scratch.resize(static_cast<std::size_t>(t.bytes));
          encode_tensor(t, *src, scratch.data());
          disk_->write_sync(st.home.region, scratch.data(), t.bytes);
        } else {
          encode_tensor(t, *src, st.home.host);
        }
      }
    }
  }

  // ---- transfers, counted per link -----------------------------------------------------------
  enum Link { kH2D = 0, kD2H = 1, kDiskRead = 2, kDiskWrite = 3 };

  // Copies n bytes between two tiers; GPU<->disk always passes through CPU staging.
  void copy(const Buffer& dst, Bytes dst_off, const Buffer& src, Bytes src_off, Bytes n) {
    if (n == 0) return;
    assert(dst_off + n <= dst.size && src_off + n <= src.size);
    if (src.tier == Tier::kDisk) {
      assert(dst.tier == Tier::kCpu);
      disk_->read_sync(src.region, dst.host + dst_off, n, src_off);
      moved_[kDiskRead] += n;
    } else if (dst.tier == Tier::kDisk) {
      assert(src.tier == Tier::kCpu);
      disk_->write_sync(dst.region, src.host + src_off, n, dst_off);
      moved_[kDiskWrite] += n;
    } else {
      std::memcpy(dst.host + dst_off, src.host + src_off, static_cast<std::size_t>(n));
      if (src.tier == Tier::kCpu && dst.tier == Tier::kGpu) moved_[kH2D] += n;
      if (src.tier == Tier::kGpu && dst.tier == Tier::kCpu) moved_[kD2H] += n;
    }
  }

  // ---- per-batch state ---------------------------------------------------------------------
  struct BatchRun {
    std::vector<std::int32_t> prompt_ids;  // [b, prompt_len], left-padded
    BatchState state;
    std::vector<std::int32_t> next;        // the tokens fed at the next step
    std::vector<std::vector<std::int32_t>> generated;
  };

  struct CacheHome {
    Buffer part[3][2];  // [tier][key, value]
  };
  CacheHome& cache_home(std::int64_t layer, std::int64_t batch) {
    return cache_[static_cast<std::size_t>((layer - 1) * plan_.policy.num_gpu_batches() + batch)];
  }

  // ---- pipeline stages ---------------------------------------------------------------------
  bool holds(std::int64_t layer) const { return stage_ == nullptr || stage_->holds(layer); }
  Schedule make_stage_schedule(const Plan& plan) const {
    return stage_ ? make_schedule(plan, options_.schedule, stage_->layers) : make_schedule(plan, options_.schedule);
  }
  // A stage but the last: the tokens the last stage sampled up to step `token` of `batch` (or until
  // the batch finished), applied to this stage's sequences and early finish as the last stage did.
  void receive_tokens(std::int32_t batch, std::int32_t token) {
    protocol_->await_tokens(
        token, batch,
        [this](std::int32_t k) { return early_->steps_run(k, std::numeric_limits<std::int64_t>::max()) !=
                                        std::numeric_limits<std::int64_t>::max(); },
        [this](const StageProtocol::Tokens& m) {
          BatchRun& br = batches_[static_cast<std::size_t>(m.batch)];
          for (std::size_t s = 0; s < m.ids.size(); ++s) {
            br.next[s] = m.ids[s];
            br.generated[s].push_back(m.ids[s]);
          }
          early_->observe(m.batch, m.token, br.generated);
        });
  }
  std::span<std::byte> hidden_bytes(const Task& t) {
    return {gpu_hidden(t).host, static_cast<std::size_t>(act_bytes(t))};
  }

  // ---- tasks -------------------------------------------------------------------------------
  void run_task(const Task& t) {
    // The first compute of a decode step needs the previous step's tokens (stage 0's embedding
    // feeds them; every stage needs them to skip what the last stage will skip).
    if (protocol_ && !stage_->is_last() && t.kind == TaskKind::kCompute && t.layer == stage_->layers.first &&
        t.token > 0) {
      receive_tokens(t.batch, t.token - 1);
    }
    if (stage_ && t.kind == TaskKind::kCompute && fault::strike(fault::Point::kStageCompute) == fault::Effect::kFail) {
      ::raise(SIGKILL);  // test builds only: a stage process that dies in the middle of the run
    }
    if (early_->skip(t)) {
      ++skipped_;
      return;
    }
    switch (t.kind) {
      case TaskKind::kWeightRead: return weight_read(t);
      case TaskKind::kWeightLoad: return weight_load(t);
      case TaskKind::kCacheRead: return cache_read(t);
      case TaskKind::kCacheLoad: return cache_load(t);
      case TaskKind::kActRead: return copy(act_staging_[t.act_slot], 0, act_home_[static_cast<std::size_t>(t.batch)], 0, act_bytes(t));
      case TaskKind::kActLoad: return copy(act_slot_[t.act_slot], 0, plan_.activation_home == Tier::kDisk ? act_staging_[t.act_slot] : act_home_[static_cast<std::size_t>(t.batch)], 0, act_bytes(t));
      case TaskKind::kCompute: return compute(t);
      case TaskKind::kValueGather: return value_gather(t);
      case TaskKind::kDelegateStore: return delegate_store(t);
      case TaskKind::kCpuAttention: return cpu_attention(t);
      case TaskKind::kDelegateLoad: return delegate_load(t);
      case TaskKind::kComputePost: return compute_post(t);
      case TaskKind::kCacheStore: return cache_store(t);
      case TaskKind::kCacheWrite: return cache_write(t);
      case TaskKind::kActStore: return copy(plan_.activation_home == Tier::kDisk ? act_staging_[t.act_slot] : act_home_[static_cast<std::size_t>(t.batch)], 0, act_slot_[t.act_slot], 0, act_bytes(t));
      case TaskKind::kActWrite: return copy(act_home_[static_cast<std::size_t>(t.batch)], 0, act_staging_[t.act_slot], 0, act_bytes(t));
    }
  }

  std::int64_t tokens_in(const Task& t) const { return visit_tokens(*run_, t); }
  std::int64_t past_len(const Task& t) const { return visit_past(*run_, t); }
  Bytes act_bytes(const Task& t) const { return plan_.activation_bytes(tokens_in(t)); }
  bool delegated(const Task& t) const { return visit_delegated(plan_, t); }
  bool sparse(const Task& t) const { return visit_sparse(plan_, t); }
  std::int64_t kept_positions(const Task& t) const { return visit_kept_positions(*run_, t); }

  void weight_read(const Task& t) {
    for (const StoredTensor& st : weights_[static_cast<std::size_t>(t.layer)]) {
      if (st.plan->home == Tier::kDisk) {
        copy(weight_staging_[t.weight_slot], st.staging_offset, st.home, 0, st.plan->bytes);
      }
    }
  }

  void weight_load(const Task& t) {
    for (const StoredTensor& st : weights_[static_cast<std::size_t>(t.layer)]) {
      if (st.plan->home == Tier::kCpu) {
        copy(weight_slot_[t.weight_slot], st.slot_offset, st.home, 0, st.plan->bytes);
      } else if (st.plan->home == Tier::kDisk) {
        copy(weight_slot_[t.weight_slot], st.slot_offset, weight_staging_[t.weight_slot], st.staging_offset, st.plan->bytes);
      }
    }
  }

  // Decodes the weights of the task's layer from where the GPU sees them (home or slot) into
  // float32 tensors, once per weight step.
  const HostDecoder& layer_weights(const Task& t) {
    const std::int64_t step_key = (static_cast<std::int64_t>(t.token) * (spec_.num_layers + 2) + t.layer) * 1000003 +
                                  (options_.schedule == ScheduleKind::kRowByRow ? t.batch : 0);
    if (decoded_step_ == step_key) return decoded_;
    for (const StoredTensor& st : weights_[static_cast<std::size_t>(t.layer)]) {
      const std::byte* src = st.plan->home == Tier::kGpu ? st.home.host
                                                           : weight_slot_[t.weight_slot].host + st.slot_offset;
      decode_tensor(*st.plan, src, decoded_.target(st.plan->name));
    }
    decoded_step_ = step_key;
    return decoded_;
  }

  // Hidden state of the task's batch as the GPU sees it: its home buffer when that is the GPU,
  // else the activation slot.
  const Buffer& gpu_hidden(const Task& t) const {
    return plan_.activation_home == Tier::kGpu ? act_home_[static_cast<std::size_t>(t.batch)] : act_slot_[t.act_slot];
  }
  Tensor read_hidden(const Task& t) const {
    const std::int64_t b = plan_.policy.gpu_batch_size();
    Tensor h({b, tokens_in(t), spec_.hidden_size});
    decode_values(gpu_hidden(t).host, h.numel(), plan_.weight_dtype, h.data());
    return h;
  }
  void write_hidden(const Task& t, const Tensor& h) {
    encode_values(h.data(), h.numel(), plan_.weight_dtype, gpu_hidden(t).host);
  }

  // ---- cache rows ------------------------------------------------------------------------
  // Where the rows of one unit live as the GPU sees them at a visit, or, for delegated units,
  // as the CPU sees them.
  struct RowRef {
    std::byte* base = nullptr;  // row (position 0) of this unit
    Bytes stride = 0;           // bytes between positions
  };
  RowRef unit_rows(const Task& t, std::int64_t unit, int kv, bool cpu_view) {
    const CachePlan& c = plan_.cache;
    const std::int64_t g = c.units_on_tier(Tier::kGpu), ncpu = c.units_on_tier(Tier::kCpu);
    CacheHome& home = cache_home(t.layer, t.batch);
    if (unit < g) {
      return {home.part[0][kv].host + unit * c.row_bytes, g * c.row_bytes};
    }
    if (unit < g + ncpu && cpu_view) {
      return {home.part[1][kv].host + (unit - g) * c.row_bytes, ncpu * c.row_bytes};
    }
    // Off-GPU units seen through the GPU cache slot: CPU units first, then disk units.
    return {cache_slot_[t.cache_slot][kv].host + (unit - g) * c.row_bytes, slot_units_ * c.row_bytes};
  }

  void encode_row(const float* x, std::byte* out) const {
    const std::int64_t hd = spec_.head_dim();
    if (plan_.policy.compress_cache()) {
      quantize(std::span<const float>(x, static_cast<std::size_t>(hd)), Shape{1, hd}, cache_quant_spec(scale_type_),
               std::span<std::byte>(out, static_cast<std::size_t>(plan_.cache.row_bytes)));
    } else {
      encode_values(x, hd, plan_.weight_dtype, out);
    }
  }
  void decode_row(const std::byte* in, float* out) const {
    const std::int64_t hd = spec_.head_dim();
    if (plan_.policy.compress_cache()) {
      dequantize(std::span<const std::byte>(in, static_cast<std::size_t>(plan_.cache.row_bytes)), Shape{1, hd},
                 cache_quant_spec(scale_type_), std::span<float>(out, static_cast<std::size_t>(hd)));
    } else {
      decode_values(in, hd, plan_.weight_dtype, out);
    }
  }

  // Copies rows [first, first + count) of `units` consecutive units between two
  // position-major [capacity, units_in_buffer, row] buffers.
  void copy_rows(const Buffer& dst, std::int64_t dst_units, std::int64_t dst_unit0, const Buffer& src,
                 std::int64_t src_units, std::int64_t src_unit0, std::int64_t units, std::int64_t first,
                 std::int64_t count) {
    if (units == 0 || count == 0) return;
    const Bytes row = plan_.cache.row_bytes;
    if (dst_units == units && src_units == units) {  // one contiguous range
      copy(dst, first * units * row, src, first * units * row, count * units * row);
      return;
    }
    for (std::int64_t p = first; p < first + count; ++p) {
      copy(dst, (p * dst_units + dst_unit0) * row, src, (p * src_units + src_unit0) * row, units * row);
    }
  }

  void cache_read(const Task& t) {
    const std::int64_t d = plan_.cache.units_on_tier(Tier::kDisk);
    CacheHome& home = cache_home(t.layer, t.batch);
    for (int kv = 0; kv < 2; ++kv) {
      copy_rows(cache_staging_[t.cache_slot][kv], d, 0, home.part[2][kv], d, 0, d, 0, past_len(t));
    }
  }

  void cache_load(const Task& t) {
    const CachePlan& c = plan_.cache;
    const std::int64_t ncpu = c.units_on_tier(Tier::kCpu), d = c.units_on_tier(Tier::kDisk);
    CacheHome& home = cache_home(t.layer, t.batch);
    const int kvs = sparse(t) ? 1 : 2;  // sparse: keys only, kept values are gathered later
    for (int kv = 0; kv < kvs; ++kv) {
      if (!delegated(t)) {
        copy_rows(cache_slot_[t.cache_slot][kv], slot_units_, 0, home.part[1][kv], ncpu, 0, ncpu, 0, past_len(t));
      }
      copy_rows(cache_slot_[t.cache_slot][kv], slot_units_, ncpu, cache_staging_[t.cache_slot][kv], d, 0, d, 0,
                past_len(t));
    }
  }

  void cache_store(const Task& t) {
    const CachePlan& c = plan_.cache;
    const std::int64_t ncpu = c.units_on_tier(Tier::kCpu), d = c.units_on_tier(Tier::kDisk);
    CacheHome& home = cache_home(t.layer, t.batch);
    for (int kv = 0; kv < 2; ++kv) {
      if (!delegated(t)) {
        copy_rows(home.part[1][kv], ncpu, 0, cache_slot_[t.cache_slot][kv], slot_units_, 0, ncpu, past_len(t),
                  tokens_in(t));
      }
      copy_rows(cache_staging_[t.cache_slot][kv], d, 0, cache_slot_[t.cache_slot][kv], slot_units_, ncpu, d,
                past_len(t), tokens_in(t));
    }
  }

  void cache_write(const Task& t) {
    const std::int64_t d = plan_.cache.units_on_tier(Tier::kDisk);
    CacheHome& home = cache_home(t.layer, t.batch);
    for (int kv = 0; kv < 2; ++kv) {
      copy_rows(home.part[2][kv], d, 0, cache_staging_[t.cache_slot][kv], d, 0, d, past_len(t), tokens_in(t));
    }
  }

  // ---- compute ------------------------------------------------------------------------------
  // What the GPU keeps between the two compute tasks of a visit (one visit at a time: the GPU
  // runs its tasks in order).
  struct VisitState {
    Tensor hidden;     // [b, T, h] input of the layer (the residual)
    Tensor q, k, v;    // [b, T, h], rounded to the model dtype
    Tensor attn;       // [b, T, h] attention output
    std::vector<std::vector<std::int64_t>> kept;  // per unit: positions kept by sparse attention
  };

  void compute(const Task& t) {
    BatchRun& br = batches_[static_cast<std::size_t>(t.batch)];
    br.state.past_len = past_len(t);
    const HostDecoder& w = layer_weights(t);
    const std::int64_t b = plan_.policy.gpu_batch_size();
    if (t.layer == 0) {  // input embedding
      std::vector<std::int32_t> ids = t.token == 0 ? br.prompt_ids : br.next;
      write_hidden(t, w.embed(ids, br.state));
      return;
    }
    if (t.layer == spec_.num_layers + 1) {  // final normalisation, LM head, next tokens
      const Tensor logits = w.final_last(read_hidden(t));
      const std::int64_t vocab = spec_.vocab_size;
      for (std::int64_t s = 0; s < b; ++s) {
        const std::int32_t token = sampler_->next(
            std::span<const float>(logits.data() + s * vocab, static_cast<std::size_t>(vocab)), t.batch * b + s);
        br.next[static_cast<std::size_t>(s)] = token;
        br.generated[static_cast<std::size_t>(s)].push_back(token);
      }
      early_->observe(t.batch, t.token, br.generated);
      if (protocol_ && stage_->count > 1) protocol_->send_tokens(t.token, t.batch, br.next);
      return;
    }
    // Decoder layer, first half: LayerNorm, projections, new cache rows, attention over the units
    // the GPU holds (dense) or their top-k selection (sparse).
    VisitState& vs = visit_;
    if (stage_ && stage_->receives_hidden(t.layer)) protocol_->recv_hidden(t.token, t.batch, hidden_bytes(t));
    vs.hidden = read_hidden(t);
    w.attention_projections(t.layer - 1, vs.hidden, br.state, vs.q, vs.k, vs.v);
    round_to(plan_.weight_dtype, vs.q.span());
    vs.attn = Tensor(vs.q.shape());
    const std::int64_t T = tokens_in(t), P = past_len(t);
    const std::int64_t nkv = spec_.kv_heads(), hd = spec_.head_dim(), group = plan_.cache.queries_per_unit;
    const std::int64_t units = plan_.cache.units;
    const std::int64_t g = plan_.cache.units_on_tier(Tier::kGpu), ncpu = plan_.cache.units_on_tier(Tier::kCpu);
    vs.kept.assign(static_cast<std::size_t>(units), {});
    const bool deleg = delegated(t);
    for (std::int64_t u = 0; u < units; ++u) {
      if (deleg && u >= g && u < g + ncpu) continue;  // the CPU appends and attends these
      append_rows(t, u, vs, /*cpu_view=*/false);
    }
    // Units are independent: each writes only its own output columns and selection.
    parallel_for(units, 1, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t u = begin; u < end; ++u) {
        if (deleg && u >= g && u < g + ncpu) continue;
        // Unit u is (sequence s, key/value head u % nkv); its query heads are the `group`
        // consecutive heads from (u % nkv) * group (one for OPT).
        const std::int64_t s = u / nkv, head = (u % nkv) * group;
        UnitRows rows = read_rows(t, u, P + T, /*cpu_view=*/false, /*values=*/!sparse(t));
        const float* q = vs.q.data() + (s * T) * spec_.hidden_size + head * hd;
        float* out = vs.attn.data() + (s * T) * spec_.hidden_size + head * hd;
        const std::int64_t pad = br.state.pad_len[static_cast<std::size_t>(s)];
        if (sparse(t)) {
          std::vector<float> summed;
          vs.kept[static_cast<std::size_t>(u)] =
              select_top_k(selection_query(q, group, hd, summed), rows.keys.data(), hd, P, pad, kept_positions(t));
        } else {
          for (std::int64_t i = 0; i < group; ++i) {
            unit_attention(q + i * hd, spec_.hidden_size, rows.keys.data(), rows.values.data(), hd, T, P, pad,
                           out + i * hd, spec_.hidden_size);
          }
        }
      }
    });
  }

  // Writes this visit's new key and value rows of one unit into its storage (encoded).
  void append_rows(const Task& t, std::int64_t u, const VisitState& vs, bool cpu_view) {
    const std::int64_t T = tokens_in(t), P = past_len(t);
    const std::int64_t nkv = spec_.kv_heads(), hd = spec_.head_dim(), h = spec_.kv_dim();
    const std::int64_t s = u / nkv, head = u % nkv;
    for (int kv = 0; kv < 2; ++kv) {
      const RowRef ref = unit_rows(t, u, kv, cpu_view);
      const Tensor& src = kv == 0 ? vs.k : vs.v;
      for (std::int64_t tt = 0; tt < T; ++tt) {
        encode_row(src.data() + (s * T + tt) * h + head * hd, ref.base + (P + tt) * ref.stride);
      }
    }
  }

  struct UnitRows {
    std::vector<float> keys, values;  // [positions, head_dim]
  };
  UnitRows read_rows(const Task& t, std::int64_t u, std::int64_t positions, bool cpu_view, bool values) {
    const std::int64_t hd = spec_.head_dim();
    UnitRows r;
    r.keys.resize(static_cast<std::size_t>(positions * hd));
    const RowRef kref = unit_rows(t, u, 0, cpu_view);
    for (std::int64_t p = 0; p < positions; ++p) decode_row(kref.base + p * kref.stride, r.keys.data() + p * hd);
    if (values) {
      r.values.resize(static_cast<std::size_t>(positions * hd));
      const RowRef vref = unit_rows(t, u, 1, cpu_view);
      for (std::int64_t p = 0; p < positions; ++p) decode_row(vref.base + p * vref.stride, r.values.data() + p * hd);
    }
    return r;
  }

  void value_gather(const Task& t) {
    const CachePlan& c = plan_.cache;
    const std::int64_t g = c.units_on_tier(Tier::kGpu), ncpu = c.units_on_tier(Tier::kCpu);
    CacheHome& home = cache_home(t.layer, t.batch);
    const Bytes row = c.row_bytes;
    const Buffer& slot = cache_slot_[t.cache_slot][1];
    for (std::int64_t u = g; u < c.units; ++u) {
      const bool on_cpu = u < g + ncpu;
      if (on_cpu && delegated(t)) continue;
      for (std::int64_t p : visit_.kept[static_cast<std::size_t>(u)]) {
        const Bytes dst = (p * slot_units_ + (u - g)) * row;
        if (on_cpu) {
          copy(slot, dst, home.part[1][1], (p * ncpu + (u - g)) * row, row);
        } else {
          const std::int64_t d = c.units_on_tier(Tier::kDisk);
          copy(slot, dst, cache_staging_[t.cache_slot][1], (p * d + (u - g - ncpu)) * row, row);
        }
      }
    }
  }

  void delegate_store(const Task&) {
    // Query, new key and new value of the CPU units, in the model dtype, into CPU buffers.
    const std::int64_t g = plan_.cache.units_on_tier(Tier::kGpu), ncpu = plan_.cache.units_on_tier(Tier::kCpu);
    // A unit's queries are its group's consecutive head vectors; its key and value one each.
    const std::int64_t nkv = spec_.kv_heads(), hd = spec_.head_dim(), group = plan_.cache.queries_per_unit;
    const Tensor* src[3] = {&visit_.q, &visit_.k, &visit_.v};
    for (int i = 0; i < 3; ++i) {
      const std::int64_t n = (i == 0 ? group : 1) * hd;  // values per unit
      const std::int64_t row = i == 0 ? spec_.hidden_size : spec_.kv_dim();
      std::vector<std::byte> tmp(static_cast<std::size_t>(n * elem_bytes_));
      Buffer gpu_vec{Tier::kGpu, n * elem_bytes_, tmp.data(), {}};
      for (std::int64_t u = g; u < g + ncpu; ++u) {
        encode_values(src[i]->data() + (u / nkv) * row + (u % nkv) * n, n, plan_.weight_dtype, tmp.data());
        copy(delegation_[i], (u - g) * n * elem_bytes_, gpu_vec, 0, n * elem_bytes_);
      }
    }
  }

  void cpu_attention(const Task& t) {
    BatchRun& br = batches_[static_cast<std::size_t>(t.batch)];
    const std::int64_t g = plan_.cache.units_on_tier(Tier::kGpu), ncpu = plan_.cache.units_on_tier(Tier::kCpu);
    const std::int64_t nkv = spec_.kv_heads(), hd = spec_.head_dim(), group = plan_.cache.queries_per_unit;
    const std::int64_t P = past_len(t);
    // Unpack the queries and new rows the GPU sent, append the rows at home, attend.
    VisitState cpu;
    cpu.q = Tensor({ncpu, group * hd});
    cpu.k = Tensor({ncpu, hd});
    cpu.v = Tensor({ncpu, hd});
    decode_values(delegation_[0].host, ncpu * group * hd, plan_.weight_dtype, cpu.q.data());
    decode_values(delegation_[1].host, ncpu * hd, plan_.weight_dtype, cpu.k.data());
    decode_values(delegation_[2].host, ncpu * hd, plan_.weight_dtype, cpu.v.data());
    CacheHome& home = cache_home(t.layer, t.batch);
    for (std::int64_t i = 0; i < ncpu; ++i) {
      for (int kv = 0; kv < 2; ++kv) {
        const Buffer& part = home.part[1][kv];
        encode_row((kv == 0 ? cpu.k : cpu.v).data() + i * hd, part.host + (P * ncpu + i) * plan_.cache.row_bytes);
      }
    }
    std::vector<float> out(static_cast<std::size_t>(ncpu * group * hd));
    // Multithreaded over units (the pool runs inline if the GPU worker holds it at the moment).
    parallel_for(ncpu, 1, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) {
        const std::int64_t u = g + i;
        const std::int64_t pad = br.state.pad_len[static_cast<std::size_t>(u / nkv)];
        UnitRows rows = read_rows(t, u, P + 1, /*cpu_view=*/true, /*values=*/true);
        const float* q = cpu.q.data() + i * group * hd;
        float* o = out.data() + i * group * hd;
        if (sparse(t)) {
          std::vector<float> summed;
          const auto kept =
              select_top_k(selection_query(q, group, hd, summed), rows.keys.data(), hd, P, pad, kept_positions(t));
          for (std::int64_t j = 0; j < group; ++j) {
            sparse_unit_attention(q + j * hd, rows.keys.data(), rows.values.data(), hd, P, pad, kept, o + j * hd);
          }
        } else {
          for (std::int64_t j = 0; j < group; ++j) {
            unit_attention(q + j * hd, hd, rows.keys.data(), rows.values.data(), hd, 1, P, pad, o + j * hd, hd);
          }
        }
      }
    });
    encode_values(out.data(), ncpu * group * hd, plan_.weight_dtype, delegation_[3].host);
  }

  void delegate_load(const Task&) {
    const std::int64_t g = plan_.cache.units_on_tier(Tier::kGpu), ncpu = plan_.cache.units_on_tier(Tier::kCpu);
    const std::int64_t nkv = spec_.kv_heads(), h = spec_.hidden_size;
    const std::int64_t n = plan_.cache.queries_per_unit * spec_.head_dim();  // output values per unit
    std::vector<std::byte> tmp(static_cast<std::size_t>(ncpu * n * elem_bytes_));
    Buffer gpu_vec{Tier::kGpu, ncpu * n * elem_bytes_, tmp.data(), {}};
    copy(gpu_vec, 0, delegation_[3], 0, ncpu * n * elem_bytes_);
    std::vector<float> out(static_cast<std::size_t>(ncpu * n));
    decode_values(tmp.data(), ncpu * n, plan_.weight_dtype, out.data());
    for (std::int64_t i = 0; i < ncpu; ++i) {
      const std::int64_t u = g + i;
      std::copy_n(out.data() + i * n, n, visit_.attn.data() + (u / nkv) * h + (u % nkv) * n);
    }
  }

  void compute_post(const Task& t) {
    BatchRun& br = batches_[static_cast<std::size_t>(t.batch)];
    VisitState& vs = visit_;
    const std::int64_t P = past_len(t), nkv = spec_.kv_heads(), hd = spec_.head_dim();
    const std::int64_t group = plan_.cache.queries_per_unit;
    if (sparse(t)) {  // the weighted sum over the kept positions, now that their values are in
      const std::int64_t g = plan_.cache.units_on_tier(Tier::kGpu), ncpu = plan_.cache.units_on_tier(Tier::kCpu);
      parallel_for(plan_.cache.units, 1, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t u = begin; u < end; ++u) {
          if (delegated(t) && u >= g && u < g + ncpu) continue;
          const std::int64_t s = u / nkv, head = (u % nkv) * group;
          UnitRows rows = read_rows(t, u, P + 1, /*cpu_view=*/false, /*values=*/true);
          for (std::int64_t i = 0; i < group; ++i) {
            const float* q = vs.q.data() + s * spec_.hidden_size + (head + i) * hd;
            sparse_unit_attention(q, rows.keys.data(), rows.values.data(), hd, P,
                                  br.state.pad_len[static_cast<std::size_t>(s)],
                                  vs.kept[static_cast<std::size_t>(u)],
                                  vs.attn.data() + s * spec_.hidden_size + (head + i) * hd);
          }
        }
      });
    }
    round_to(plan_.weight_dtype, vs.attn.span());
    layer_weights(t).attention_output_and_mlp(t.layer - 1, vs.attn, vs.hidden);
    write_hidden(t, vs.hidden);
    if (stage_ && stage_->sends_hidden(t.layer)) protocol_->send_hidden(t.token, t.batch, hidden_bytes(t));
  }

  const Plan plan_;  // a copy: the caller's plan may be a temporary
  const ModelSpec& spec_;
  RuntimeOptions options_;
  const PipelineStage* stage_ = nullptr;  // options_.stage: null for the whole model
  std::unique_ptr<StageProtocol> protocol_;
  MemoryPlan memory_;
  Schedule schedule_;
  // The run in progress: the plan and its schedule, or those of a smaller BlockShape (same policy,
  // so the same weight placement, cache units and row sizes; the cache uses a prefix of each
  // position-major buffer).
  const Plan* run_ = nullptr;
  const Schedule* run_schedule_ = nullptr;
  std::optional<Plan> shaped_plan_;
  Schedule shaped_schedule_;
  ScaleType scale_type_ = ScaleType::kFloat32;
  Bytes elem_bytes_ = 4;

  std::unique_ptr<DiskStore> disk_;
  std::vector<std::unique_ptr<std::byte, AlignedDelete>> owned_;
  TierBytes allocated_;
  std::atomic<Bytes> moved_[4] = {0, 0, 0, 0};

  std::vector<std::vector<StoredTensor>> weights_;
  Buffer weight_slot_[2], weight_staging_[2];
  std::vector<CacheHome> cache_;
  std::int64_t slot_units_ = 0;
  Buffer cache_slot_[2][2], cache_staging_[2][2];
  std::vector<Buffer> act_home_;
  Buffer act_slot_[2], act_staging_[2];
  Buffer delegation_[4];

  std::vector<BatchRun> batches_;
  std::unique_ptr<Sampler> sampler_;
  std::unique_ptr<EarlyStop> early_;
  std::atomic<std::int64_t> skipped_{0};
  HostDecoder decoded_;
  std::int64_t decoded_step_ = -1;
  VisitState visit_;
};

HostRuntime::HostRuntime(const Plan& plan, const OptWeights& weights, const RuntimeOptions& options)
    : impl_(std::make_unique<Impl>(plan, named_tensors(plan.spec, weights), options)) {}
HostRuntime::HostRuntime(const Plan& plan, const LlamaWeights& weights, const RuntimeOptions& options)
    : impl_(std::make_unique<Impl>(plan, named_tensors(plan.spec, weights), options)) {}
HostRuntime::~HostRuntime() = default;
RunReport HostRuntime::generate(const std::vector<std::vector<std::int32_t>>& prompts, const SamplingConfig& sampling,
                                std::optional<std::int32_t> stop_token, const BlockShape& shape) {
  return impl_->generate(prompts, sampling, stop_token, shape);
}
const Schedule& HostRuntime::schedule() const { return impl_->schedule(); }
const MemoryPlan& HostRuntime::memory_plan() const { return impl_->memory_plan(); }

}  // namespace flexgen
