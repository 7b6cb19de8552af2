#include "engine/runtime/schedule.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <map>
#include <tuple>

#include "engine/core/error.h"

namespace flexgen {

const char* schedule_kind_name(ScheduleKind kind) {
  return kind == ScheduleKind::kRowByRow ? "row-by-row" : "zig-zag";
}

const char* task_kind_name(TaskKind kind) {
  switch (kind) {
    case TaskKind::kWeightRead: return "weight_read";
    case TaskKind::kWeightLoad: return "weight_load";
    case TaskKind::kCacheRead: return "cache_read";
    case TaskKind::kCacheLoad: return "cache_load";
    case TaskKind::kActRead: return "act_read";
    case TaskKind::kActLoad: return "act_load";
    case TaskKind::kCompute: return "compute";
    case TaskKind::kValueGather: return "value_gather";
    case TaskKind::kDelegateStore: return "delegate_store";
    case TaskKind::kCpuAttention: return "cpu_attention";
    case TaskKind::kDelegateLoad: return "delegate_load";
    case TaskKind::kComputePost: return "compute_post";
    case TaskKind::kCacheStore: return "cache_store";
    case TaskKind::kCacheWrite: return "cache_write";
    case TaskKind::kActStore: return "act_store";
    case TaskKind::kActWrite: return "act_write";
  }
  return "?";
}

Resource task_resource(TaskKind kind) {
  switch (kind) {
    case TaskKind::kWeightRead:
    case TaskKind::kCacheRead:
    case TaskKind::kActRead: return Resource::kDiskRead;
    case TaskKind::kWeightLoad:
    case TaskKind::kCacheLoad:
    case TaskKind::kActLoad:
    case TaskKind::kValueGather:
    case TaskKind::kDelegateLoad: return Resource::kH2D;
    case TaskKind::kDelegateStore:
    case TaskKind::kCacheStore:
    case TaskKind::kActStore: return Resource::kD2H;
    case TaskKind::kCacheWrite:
    case TaskKind::kActWrite: return Resource::kDiskWrite;
    case TaskKind::kCpuAttention: return Resource::kCpuCompute;
    case TaskKind::kCompute:
    case TaskKind::kComputePost: return Resource::kGpuCompute;
  }
  return Resource::kGpuCompute;
}

LinkBytes Schedule::total_bytes() const {
  LinkBytes total;
  for (const Task& t : tasks) total += t.bytes;
  return total;
}

std::int64_t Schedule::count(TaskKind which) const {
  return std::count_if(tasks.begin(), tasks.end(), [which](const Task& t) { return t.kind == which; });
}

namespace {

constexpr TaskId kNone = -1;

struct Visit {
  std::int32_t token, layer, batch;
  std::int64_t step;        // weight step: changes whenever the layer being computed changes
  bool first_of_step;
  std::int64_t cache_idx;   // index among visits that use the cache slots, or -1
  std::int64_t act_idx;     // index among visits that use the activation slots, or -1
};

// The task ids a visit produced.
struct VisitTasks {
  TaskId cache_read = kNone, cache_load = kNone, act_read = kNone, act_load = kNone;
  TaskId compute = kNone, post = kNone, cpu_attention = kNone;
  TaskId cache_store = kNone, cache_write = kNone, act_store = kNone, act_write = kNone;
  TaskId last_gpu() const { return post != kNone ? post : compute; }
};

class Generator {
 public:
  Generator(const Plan& plan, ScheduleKind kind, LayerRange layers) : plan_(plan), kind_(kind) {
    L_ = static_cast<std::int32_t>(plan.spec.num_layers);
    first_ = layers.first;
    last_ = layers.last < 0 ? L_ + 1 : layers.last;
    FLEXGEN_REQUIRE(first_ >= 0 && first_ <= last_ && last_ <= L_ + 1, "invalid layer range [", layers.first, ", ",
                    layers.last, "] for a model of ", L_, " decoder layers (schedule layers 0 to ", L_ + 1, ")");
    gen_len_ = static_cast<std::int32_t>(plan.workload.gen_len);
    num_batches_ = static_cast<std::int32_t>(plan.policy.num_gpu_batches());
    make_visits();
  }

  Schedule run() {
    schedule_.kind = kind_;
    schedule_.overlap = plan_.policy.overlap();
    vt_.assign(visits_.size(), VisitTasks{});
    step_computes_.clear();
    if (visits_.empty()) return schedule_;
    emit_weight_loads(visits_[0].step, visits_[0]);
    emit_loads(0);
    for (std::size_t v = 0; v < visits_.size(); ++v) {
      const Visit& cur = visits_[v];
      if (cur.first_of_step) {
        // The next layer's weights are prefetched at the first batch of this layer.
        for (std::size_t n = v + 1; n < visits_.size(); ++n) {
          if (visits_[n].step != cur.step) {
            emit_weight_loads(visits_[n].step, visits_[n]);
            break;
          }
        }
      }
      // The next visit's loads go before this visit's compute (prefetch) unless they need what this
      // visit produces: its output, or (a pipeline stage of one decoder layer) the cache rows it stores.
      const bool next_loads_early = v + 1 < visits_.size() && producer_emitted(v + 1, v) &&
                                    previous_step(v + 1) != static_cast<std::int64_t>(v);
      if (next_loads_early) emit_loads(v + 1);
      emit_compute(v);
      emit_stores(v);
      if (v + 1 < visits_.size() && !next_loads_early) emit_loads(v + 1);
    }
    return std::move(schedule_);
  }

 private:
  bool decode(const Visit& v) const { return v.token > 0; }
  bool is_decoder(const Visit& v) const { return v.layer >= 1 && v.layer <= L_; }
  std::int64_t tokens_in(const Visit& v) const { return decode(v) ? 1 : plan_.workload.prompt_len; }
  // Cached positions before this step (decode): the prompt and the generated tokens fed so far.
  std::int64_t cached_positions(const Visit& v) const {
    return decode(v) ? plan_.workload.prompt_len + v.token - 1 : 0;
  }
  std::int64_t units(Tier t) const { return plan_.cache.units_on_tier(t); }
  bool delegated(const Visit& v) const {
    return plan_.policy.cpu_cache_compute() && decode(v) && units(Tier::kCpu) > 0;
  }
  bool sparse(const Visit& v) const { return plan_.policy.attn_sparsity() < 1.0 && decode(v); }
  // Positions kept by top-k sparse attention among the cached ones (the new token always counts).
  std::int64_t kept_positions(const Visit& v) const {
    const std::int64_t p = cached_positions(v);
    return std::max<std::int64_t>(1, static_cast<std::int64_t>(
                                         std::floor(plan_.policy.attn_sparsity() * static_cast<double>(p))));
  }
  // Off-GPU units whose cache passes through the GPU cache slot at this visit.
  std::int64_t slot_units(const Visit& v) const {
    return (delegated(v) ? 0 : units(Tier::kCpu)) + units(Tier::kDisk);
  }

  void make_visits() {
    std::int64_t step = -1, cache_idx = 0, act_idx = 0;
    std::int32_t prev_layer = -1, prev_token = -1, prev_batch = -1;
    auto add = [&](std::int32_t i, std::int32_t j, std::int32_t k) {
      const bool new_step = kind_ == ScheduleKind::kRowByRow
                                ? true
                                : (j != prev_layer || i != prev_token);
      if (new_step) ++step;
      Visit v{i, j, k, step, new_step, -1, -1};
      if (j >= 1 && j <= L_) v.cache_idx = cache_idx++;
      if (plan_.activation_home != Tier::kGpu) v.act_idx = act_idx++;
      index_[{i, j, k}] = static_cast<std::int64_t>(visits_.size());
      visits_.push_back(v);
      prev_layer = j;
      prev_token = i;
      prev_batch = k;
    };
    if (kind_ == ScheduleKind::kZigZag) {
      for (std::int32_t i = 0; i < gen_len_; ++i)
        for (std::int32_t j = first_; j <= last_; ++j)
          for (std::int32_t k = 0; k < num_batches_; ++k) add(i, j, k);
    } else {
      for (std::int32_t k = 0; k < num_batches_; ++k)
        for (std::int32_t i = 0; i < gen_len_; ++i)
          for (std::int32_t j = first_; j <= last_; ++j) add(i, j, k);
    }
    (void)prev_batch;
  }

  // The visit whose output this visit consumes: the previous layer of the same batch, or for the
  // embedding of a decode step the output layer of the previous step (the sampled token). None
  // (-1) when that visit belongs to another pipeline stage: its output arrives from there.
  std::int64_t producer(std::size_t v) const {
    const Visit& x = visits_[v];
    if (x.layer > first_) return index_.at({x.token, x.layer - 1, x.batch});
    if (x.layer == 0 && x.token > 0 && last_ == L_ + 1) return index_.at({x.token - 1, L_ + 1, x.batch});
    return -1;
  }
  // The visit of the same (layer, batch) at the previous step, whose cache rows this one reads.
  std::int64_t previous_step(std::size_t v) const {
    const Visit& x = visits_[v];
    if (x.token == 0) return -1;
    return index_.at({x.token - 1, x.layer, x.batch});
  }
  bool producer_emitted(std::size_t v, std::size_t current) const {
    const std::int64_t p = producer(v);
    return p < 0 || p < static_cast<std::int64_t>(current);
  }
  // The visit two slot-uses back (same double-buffer slot), or -1.
  std::int64_t two_back(std::size_t v, bool cache) const {
    const std::int64_t idx = cache ? visits_[v].cache_idx : visits_[v].act_idx;
    if (idx < 2) return -1;
    for (std::int64_t u = static_cast<std::int64_t>(v) - 1; u >= 0; --u) {
      const std::int64_t other = cache ? visits_[u].cache_idx : visits_[u].act_idx;
      if (other == idx - 2) return u;
    }
    return -1;
  }

  TaskId add(TaskKind kind, const Visit& v, std::int32_t batch, std::vector<TaskId> deps) {
    Task t;
    t.kind = kind;
    t.token = v.token;
    t.layer = v.layer;
    t.batch = batch;
    t.weight_slot = static_cast<std::int8_t>(v.step % 2);
    t.cache_slot = static_cast<std::int8_t>(v.cache_idx >= 0 ? v.cache_idx % 2 : -1);
    t.act_slot = static_cast<std::int8_t>(v.act_idx >= 0 ? v.act_idx % 2 : -1);
    deps.erase(std::remove(deps.begin(), deps.end(), kNone), deps.end());
    std::sort(deps.begin(), deps.end());
    deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
    t.deps = std::move(deps);
    schedule_.tasks.push_back(std::move(t));
    return static_cast<TaskId>(schedule_.tasks.size() - 1);
  }
  Task& last() { return schedule_.tasks.back(); }

  void emit_weight_loads(std::int64_t step, const Visit& v) {
    const PlannedLayer& layer = plan_.layers[static_cast<std::size_t>(v.layer)];
    const Bytes disk = layer.home_bytes[Tier::kDisk];
    const Bytes load = layer.load_bytes();
    TaskId read = kNone, loaded = kNone;
    if (disk > 0) {
      read = add(TaskKind::kWeightRead, v, -1, {weight_load_of(step - 2)});
      last().bytes.disk_read = disk;
    }
    if (load > 0) {
      std::vector<TaskId> deps = {read};
      auto it = step_computes_.find(step - 2);
      if (it != step_computes_.end()) deps.insert(deps.end(), it->second.begin(), it->second.end());
      loaded = add(TaskKind::kWeightLoad, v, -1, deps);
      last().bytes.h2d = load;
    }
    weight_load_[step] = loaded;
  }
  TaskId weight_load_of(std::int64_t step) const {
    auto it = weight_load_.find(step);
    return it == weight_load_.end() ? kNone : it->second;
  }

  void emit_loads(std::size_t vi) {
    const Visit& v = visits_[vi];
    VisitTasks& t = vt_[vi];
    const Plan& p = plan_;
    // Cache: decode steps of decoder layers load the cached positions of off-GPU units.
    if (is_decoder(v) && decode(v)) {
      const std::int64_t prev = previous_step(vi);
      const std::int64_t back = two_back(vi, /*cache=*/true);
      const std::int64_t positions = cached_positions(v);
      if (units(Tier::kDisk) > 0) {
        t.cache_read = add(TaskKind::kCacheRead, v, v.batch, {back >= 0 ? vt_[back].cache_load : kNone,
                            back >= 0 ? vt_[back].cache_write : kNone,
                            back >= 0 ? vt_[back].last_gpu() : kNone,
                            prev >= 0 ? vt_[prev].cache_write : kNone});
        last().bytes.disk_read = p.cache_bytes(units(Tier::kDisk), positions);
        last().positions = positions;
      }
      const std::int64_t su = slot_units(v);
      if (su > 0) {
        t.cache_load = add(TaskKind::kCacheLoad, v, v.batch, {t.cache_read, back >= 0 ? vt_[back].last_gpu() : kNone,
                            back >= 0 ? vt_[back].cache_store : kNone,
                            prev >= 0 ? vt_[prev].cache_store : kNone,
                            prev >= 0 ? vt_[prev].cpu_attention : kNone});
        // With sparse attention only the keys travel here; the kept value rows follow later.
        last().bytes.h2d = p.cache_bytes(su, positions) / (sparse(v) ? 2 : 1);
        last().positions = positions;
      }
    }
    // Activations: loaded for every layer but the embedding when they live off the GPU (in a
    // pipeline stage, but its first layer: that input arrives from the previous stage).
    if (p.activation_home != Tier::kGpu && v.layer > first_) {
      const std::int64_t prod = producer(vi);
      const std::int64_t back = two_back(vi, /*cache=*/false);
      const Bytes bytes = p.activation_bytes(tokens_in(v));
      if (p.activation_home == Tier::kDisk) {
        t.act_read = add(TaskKind::kActRead, v, v.batch, {vt_[prod].act_write, back >= 0 ? vt_[back].act_load : kNone,
                          back >= 0 ? vt_[back].act_write : kNone});
        last().bytes.disk_read = bytes;
      }
      t.act_load = add(TaskKind::kActLoad, v, v.batch, {t.act_read, vt_[prod].act_store, back >= 0 ? vt_[back].last_gpu() : kNone,
                        back >= 0 ? vt_[back].act_store : kNone});
      last().bytes.h2d = bytes;
    }
  }

  void emit_compute(std::size_t vi) {
    const Visit& v = visits_[vi];
    VisitTasks& t = vt_[vi];
    const Plan& p = plan_;
    const double b = static_cast<double>(p.policy.gpu_batch_size());
    const double h = static_cast<double>(p.spec.hidden_size);
    const double f = static_cast<double>(p.spec.ffn_dim);
    const double hd = static_cast<double>(p.spec.head_dim());
    const double tokens = static_cast<double>(tokens_in(v));
    const std::int64_t prod = producer(vi);
    const std::int64_t prev = previous_step(vi);
    // The slots this visit writes must have been emptied by their previous user's stores (in
    // prefill nothing is loaded into them first, so the loads do not order this).
    const std::int64_t cache_back = two_back(vi, /*cache=*/true);
    const std::int64_t act_back = two_back(vi, /*cache=*/false);
    std::vector<TaskId> deps = {weight_load_of(v.step), t.cache_load, t.act_load,
                                prod >= 0 ? vt_[prod].last_gpu() : kNone,
                                prev >= 0 ? vt_[prev].last_gpu() : kNone,
                                cache_back >= 0 ? vt_[cache_back].cache_store : kNone,
                                act_back >= 0 ? vt_[act_back].act_store : kNone};
    if (!is_decoder(v)) {
      t.compute = add(TaskKind::kCompute, v, v.batch, deps);
      if (v.layer > 0) last().gemm_flops = 2.0 * b * h * static_cast<double>(p.spec.vocab_size);
      step_computes_[v.step].push_back(t.compute);
      return;
    }
    // Attention positions per unit: causal prefill attends to 1..T positions, decode to all cached
    // positions plus the new one.
    const double all_units = static_cast<double>(p.cache.units);
    const double cpu_units = delegated(v) ? static_cast<double>(units(Tier::kCpu)) : 0.0;
    const double gpu_side_units = all_units - cpu_units;
    const double positions = decode(v) ? static_cast<double>(cached_positions(v) + 1) : 0.0;
    const double pair_positions = decode(v) ? positions : tokens * (tokens + 1.0) / 2.0;
    const double kept = sparse(v) ? static_cast<double>(kept_positions(v) + 1) : pair_positions;
    // Query heads per unit: 1 for OPT; with grouped-query attention (LLaMA) each key/value row
    // serves g query heads, so attention FLOPs are g times OPT's per row (the top-k selection is
    // counted so too, although the runtimes score the group's summed query once).
    const double g = static_cast<double>(p.cache.queries_per_unit);
    const bool llama = p.spec.family == ModelFamily::kLlama;
    const double kv = static_cast<double>(p.spec.kv_dim());
    t.compute = add(TaskKind::kCompute, v, v.batch, deps);
    last().gemm_flops = llama ? 2.0 * b * tokens * h * (h + 2.0 * kv) : 2.0 * b * tokens * h * 3.0 * h;
    // Scores here; with dense attention the weighted sum of values too, with sparse attention the
  // weighted sum over the kept positions comes in the post task once their values are in.
  last().attention_flops = g * gpu_side_units * 2.0 * hd * pair_positions * (sparse(v) ? 1.0 : 2.0);
    last().positions = decode(v) ? cached_positions(v) + 1 : tokens_in(v);
    std::vector<TaskId> post_deps = {t.compute};
    if (sparse(v) && slot_units(v) > 0) {
      post_deps.push_back(add(TaskKind::kValueGather, v, v.batch, {t.compute, t.cache_read, prev >= 0 ? vt_[prev].cache_store : kNone}));
      last().bytes.h2d = slot_units(v) * kept_positions(v) * p.cache.row_bytes;
      last().positions = kept_positions(v);
    }
    if (delegated(v)) {
      const Bytes per_unit_vector = p.spec.head_dim() * (p.weight_dtype == Encoding::kF32 ? 4 : 2);
      const std::int64_t queries = p.cache.queries_per_unit;
      const TaskId store = add(TaskKind::kDelegateStore, v, v.batch, {t.compute});
      last().bytes.d2h = (queries + 2) * units(Tier::kCpu) * per_unit_vector;  // queries, new key, new value
      t.cpu_attention = add(TaskKind::kCpuAttention, v, v.batch, {store, prev >= 0 ? vt_[prev].cpu_attention : kNone,
                             prev >= 0 ? vt_[prev].cache_store : kNone});
      last().attention_flops = g * cpu_units * 2.0 * hd * (positions + kept);
      last().positions = cached_positions(v) + 1;
      post_deps.push_back(add(TaskKind::kDelegateLoad, v, v.batch, {t.cpu_attention}));
      last().bytes.h2d = queries * units(Tier::kCpu) * per_unit_vector;  // attention output
    }
    t.post = add(TaskKind::kComputePost, v, v.batch, post_deps);
    // Output projection and the MLP: fc1, fc2 (OPT) or gate, up, down (LLaMA's SwiGLU).
    last().gemm_flops = 2.0 * b * tokens * h * h + (llama ? 6.0 : 4.0) * b * tokens * h * f;
    if (sparse(v)) last().attention_flops = gpu_side_units * 2.0 * hd * kept * g;
    step_computes_[v.step].push_back(t.compute);
    step_computes_[v.step].push_back(t.post);
  }

  void emit_stores(std::size_t vi) {
    const Visit& v = visits_[vi];
    VisitTasks& t = vt_[vi];
    const Plan& p = plan_;
    const bool is_last_step = v.token == gen_len_ - 1;
    // New cache rows of off-GPU units go home, except at the last step (never fed back) and for
    // delegated units, which the CPU attention task appends in place.
    if (is_decoder(v) && !is_last_step) {
      const std::int64_t stored_units = slot_units(v);
      const std::int64_t rows = tokens_in(v);
      const std::int64_t back = two_back(vi, /*cache=*/true);
      if (stored_units > 0) {
        t.cache_store = add(TaskKind::kCacheStore, v, v.batch, {t.last_gpu(), back >= 0 ? vt_[back].cache_write : kNone});
        last().bytes.d2h = p.cache_bytes(stored_units, rows);
        last().positions = rows;
      }
      if (units(Tier::kDisk) > 0) {
        t.cache_write = add(TaskKind::kCacheWrite, v, v.batch, {t.cache_store});
        last().bytes.disk_write = p.cache_bytes(units(Tier::kDisk), rows);
        last().positions = rows;
      }
    }
    // The hidden state goes home after every layer but the output layer (in a pipeline stage, but
    // its last layer: that output goes to the next stage).
    if (p.activation_home != Tier::kGpu && v.layer < last_) {
      const std::int64_t back = two_back(vi, /*cache=*/false);
      const Bytes bytes = p.activation_bytes(tokens_in(v));
      t.act_store = add(TaskKind::kActStore, v, v.batch, {t.last_gpu(), back >= 0 ? vt_[back].act_write : kNone});
      last().bytes.d2h = bytes;
      if (p.activation_home == Tier::kDisk) {
        t.act_write = add(TaskKind::kActWrite, v, v.batch, {t.act_store});
        last().bytes.disk_write = bytes;
      }
    }
  }

  const Plan& plan_;
  ScheduleKind kind_;
  std::int32_t L_ = 0, gen_len_ = 0, num_batches_ = 0;
  std::int32_t first_ = 0, last_ = 0;  // the layer range of the visits
  std::vector<Visit> visits_;
  std::map<std::tuple<std::int32_t, std::int32_t, std::int32_t>, std::int64_t> index_;
  std::vector<VisitTasks> vt_;
  std::map<std::int64_t, TaskId> weight_load_;
  std::map<std::int64_t, std::vector<TaskId>> step_computes_;
  Schedule schedule_;
};

}  // namespace

Schedule make_schedule(const Plan& plan, ScheduleKind kind) { return Generator(plan, kind, LayerRange{}).run(); }

Schedule make_schedule(const Plan& plan, ScheduleKind kind, LayerRange layers) {
  return Generator(plan, kind, layers).run();
}

}  // namespace flexgen
