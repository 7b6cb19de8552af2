#include "simulator/pipeline.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "engine/core/error.h"
#include "simulator/run_times.h"
#include "simulator/task_graph.h"

namespace flexgen {

namespace {

constexpr std::int32_t kNone = -1;
constexpr int kWeightSlot = 0, kCacheSlot = 1, kActSlot = 2;

// The previous user two back of a double-buffer slot, per item (visit or weight step): in the
// single-GPU order, and among the items of the same stage.
struct SlotBack {
  std::vector<std::int32_t> global, local;
};

bool is_weight_kind(TaskKind k) { return k == TaskKind::kWeightRead || k == TaskKind::kWeightLoad; }
bool is_gpu_kind(TaskKind k) { return k == TaskKind::kCompute || k == TaskKind::kComputePost; }
bool is_host_resource(Resource r) {
  return r == Resource::kCpuCompute || r == Resource::kDiskRead || r == Resource::kDiskWrite;
}

// Each (token, layer, batch) visit and the tasks it produced, each weight step and its tasks, and
// for every slot kind the visit (or step) two slot-uses back on the same stage.
class PipelineGraph {
 public:
  PipelineGraph(const Plan& plan, const Schedule& schedule, const std::vector<Nanoseconds>& durations,
                const PipelineOptions& options)
      : plan_(plan), schedule_(schedule), durations_(durations), options_(options) {
    L_ = static_cast<std::int32_t>(plan.spec.num_layers);
    layers_ = L_ + 2;
    gen_len_ = static_cast<std::int32_t>(plan.workload.gen_len);
    nb_ = static_cast<std::int32_t>(plan.policy.num_gpu_batches());
    G_ = options.num_stages;
    stage_of_layer_ = pipeline_stages(plan, G_);
    index_visits();
    index_steps();
    index_slot_uses();
  }

  PipelineResult run() {
    PipelineResult result;
    result.num_stages = G_;
    result.stage_of_layer = stage_of_layer_;
    make_lanes(result);
    route_dependencies();
    TaskGraph graph = build_graph(result);
    GraphRun run = run_task_graph(graph);
    result.events = run.events;
    summarize(result, run.spans);
    return result;
  }

 private:
  std::int32_t stage_of(TaskId t) const {
    return stage_of_layer_[static_cast<std::size_t>(schedule_.tasks[static_cast<std::size_t>(t)].layer)];
  }
  std::size_t key(std::int32_t token, std::int32_t layer, std::int32_t batch) const {
    return (static_cast<std::size_t>(token) * static_cast<std::size_t>(layers_) + static_cast<std::size_t>(layer)) *
               static_cast<std::size_t>(nb_) +
           static_cast<std::size_t>(batch);
  }
  TaskKind kind(TaskId t) const { return schedule_.tasks[static_cast<std::size_t>(t)].kind; }
  TaskId last_gpu(std::int32_t v) const {
    const auto& vt = visit_tasks_[static_cast<std::size_t>(v)];
    const TaskId post = vt[static_cast<std::size_t>(TaskKind::kComputePost)];
    return post != kNone ? post : vt[static_cast<std::size_t>(TaskKind::kCompute)];
  }

  void index_visits() {
    const auto& tasks = schedule_.tasks;
    visit_of_key_.assign(
        static_cast<std::size_t>(gen_len_) * static_cast<std::size_t>(layers_) * static_cast<std::size_t>(nb_), kNone);
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      const Task& t = tasks[i];
      const bool weight = is_weight_kind(t.kind);
      FLEXGEN_REQUIRE(t.token >= 0 && t.token < gen_len_ && t.layer >= 0 && t.layer < layers_ &&
                          (weight ? t.batch == -1 : t.batch >= 0 && t.batch < nb_),
                      "pipeline: the schedule does not belong to the plan: task ", i, " (", task_kind_name(t.kind),
                      ") has token ", t.token, ", layer ", t.layer, ", batch ", t.batch);
      if (t.kind != TaskKind::kCompute) continue;
      auto& v = visit_of_key_[(key(t.token, t.layer, t.batch))];
      FLEXGEN_REQUIRE(v == kNone, "pipeline: the schedule computes token ", t.token, ", layer ", t.layer, ", batch ",
                      t.batch, " twice");
      v = static_cast<std::int32_t>(visit_tasks_.size());
      visit_tasks_.emplace_back();
      visit_tasks_.back().fill(kNone);
      visit_compute_.push_back(static_cast<TaskId>(i));
    }
    visit_of_task_.assign(tasks.size(), kNone);
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      const Task& t = tasks[i];
      if (is_weight_kind(t.kind)) continue;
      const std::int32_t v = visit_of_key_[(key(t.token, t.layer, t.batch))];
      FLEXGEN_REQUIRE(v != kNone, "pipeline: task ", i, " (", task_kind_name(t.kind), ") belongs to no computed visit");
      auto& slot = visit_tasks_[static_cast<std::size_t>(v)][static_cast<std::size_t>(t.kind)];
      FLEXGEN_REQUIRE(slot == kNone, "pipeline: visit of task ", i, " has two ", task_kind_name(t.kind), " tasks");
      slot = static_cast<TaskId>(i);
      visit_of_task_[i] = v;
    }
  }

  // Weight steps: zig-zag changes step whenever (token, layer) changes; row-by-row at every visit.
  // A step's weight load is the one its computes wait for; its read is the one the load waits for.
  void index_steps() {
    const auto& tasks = schedule_.tasks;
    step_of_task_.assign(tasks.size(), kNone);
    std::int32_t prev_token = -1, prev_layer = -1;
    for (std::size_t v = 0; v < visit_compute_.size(); ++v) {
      const Task& c = tasks[static_cast<std::size_t>(visit_compute_[v])];
      const bool new_step = schedule_.kind == ScheduleKind::kRowByRow || c.token != prev_token || c.layer != prev_layer;
      prev_token = c.token;
      prev_layer = c.layer;
      if (new_step) {
        step_gpu_.emplace_back();
        step_load_.push_back(kNone);
        step_stage_.push_back(stage_of_layer_[static_cast<std::size_t>(c.layer)]);
      }
      const auto step = static_cast<std::int32_t>(step_gpu_.size() - 1);
      step_of_visit_.push_back(step);
      const auto& vt = visit_tasks_[v];
      for (TaskKind k : {TaskKind::kCompute, TaskKind::kComputePost}) {
        const TaskId id = vt[static_cast<std::size_t>(k)];
        if (id != kNone) step_gpu_.back().push_back(id);
      }
      for (TaskId d : c.deps) {
        if (kind(d) != TaskKind::kWeightLoad) continue;
        step_load_.back() = d;
        step_of_task_[static_cast<std::size_t>(d)] = step;
        for (TaskId r : tasks[static_cast<std::size_t>(d)].deps) {
          if (kind(r) == TaskKind::kWeightRead) step_of_task_[static_cast<std::size_t>(r)] = step;
        }
      }
    }
  }

  // For every slot kind, the previous user two back of each visit (weight step) in the single-GPU
  // order ("global") and among the visits (steps) of its own stage ("local").
  void index_slot_uses() {
    const std::size_t visits = visit_compute_.size();
    std::vector<std::pair<std::int32_t, std::int32_t>> cache_uses, act_uses, steps;
    for (std::size_t v = 0; v < visits; ++v) {
      const Task& c = schedule_.tasks[static_cast<std::size_t>(visit_compute_[v])];
      const std::int32_t stage = stage_of_layer_[static_cast<std::size_t>(c.layer)];
      if (c.cache_slot >= 0) cache_uses.emplace_back(static_cast<std::int32_t>(v), stage);
      if (c.act_slot >= 0) act_uses.emplace_back(static_cast<std::int32_t>(v), stage);
    }
    for (std::size_t w = 0; w < step_gpu_.size(); ++w) steps.emplace_back(static_cast<std::int32_t>(w), step_stage_[w]);
    two_back(cache_uses, visits, slot_back_[kCacheSlot]);
    two_back(act_uses, visits, slot_back_[kActSlot]);
    two_back(steps, step_gpu_.size(), slot_back_[kWeightSlot]);
  }

  // uses: (item, stage) in order; out.global / out.local: per item the item two uses back.
  void two_back(const std::vector<std::pair<std::int32_t, std::int32_t>>& uses, std::size_t items,
                SlotBack& out) const {
    out.global.assign(items, kNone);
    out.local.assign(items, kNone);
    std::vector<std::array<std::int32_t, 2>> last(static_cast<std::size_t>(G_), {kNone, kNone});
    for (std::size_t u = 0; u < uses.size(); ++u) {
      const auto [item, stage] = uses[u];
      if (u >= 2) out.global[static_cast<std::size_t>(item)] = uses[u - 2].first;
      auto& h = last[static_cast<std::size_t>(stage)];  // h[0]: two back, h[1]: one back
      out.local[static_cast<std::size_t>(item)] = h[0];
      h[0] = h[1];
      h[1] = item;
    }
  }

  // The visit whose output visit v consumes: the previous layer of the same batch and token, or
  // for an embedding at a decode step the output layer of the previous step.
  std::int32_t producer(std::int32_t v) const {
    const Task& c = schedule_.tasks[static_cast<std::size_t>(visit_compute_[static_cast<std::size_t>(v)])];
    if (c.layer > 0) return visit_of_key_[(key(c.token, c.layer - 1, c.batch))];
    if (c.token > 0) return visit_of_key_[(key(c.token - 1, L_ + 1, c.batch))];
    return kNone;
  }

  bool is_data_dependency(TaskId t, TaskId d) const {
    const TaskKind kt = kind(t), kd = kind(d);
    if (is_weight_kind(kt) || is_weight_kind(kd)) return false;
    if (visit_of_task_[static_cast<std::size_t>(d)] != producer(visit_of_task_[static_cast<std::size_t>(t)]))
      return false;
    return (kt == TaskKind::kCompute && is_gpu_kind(kd)) || (kt == TaskKind::kActLoad && kd == TaskKind::kActStore) ||
           (kt == TaskKind::kActRead && kd == TaskKind::kActWrite);
  }

  [[noreturn]] void unexpected(TaskId t, TaskId d) const {
    fail("pipeline: unexpected dependency across stages: task ", t, " (", task_kind_name(kind(t)), ") on task ", d,
         " (", task_kind_name(kind(d)), ")");
  }

  // Whether t's dependency on d (across stages) is one of the double-buffer rules: d belongs to
  // the previous user two back of a slot t uses.
  bool is_slot_dependency(TaskId t, TaskId d) const {
    if (is_weight_kind(kind(t))) {
      const std::int32_t step = step_of_task_[static_cast<std::size_t>(t)];
      const std::int32_t dv = visit_of_task_[static_cast<std::size_t>(d)];
      const std::int32_t dstep =
          dv != kNone ? step_of_visit_[static_cast<std::size_t>(dv)] : step_of_task_[static_cast<std::size_t>(d)];
      return step != kNone && dstep != kNone && dstep == slot_back_[kWeightSlot].global[static_cast<std::size_t>(step)];
    }
    const std::int32_t v = visit_of_task_[static_cast<std::size_t>(t)];
    const std::int32_t dv = visit_of_task_[static_cast<std::size_t>(d)];
    return dv != kNone && (dv == slot_back_[kCacheSlot].global[static_cast<std::size_t>(v)] ||
                           dv == slot_back_[kActSlot].global[static_cast<std::size_t>(v)]);
  }

  // The double-buffer rules of the schedule generator (engine/runtime/schedule.cc): which tasks of
  // a slot's previous user two back each task that fills or empties the slot waits for. Applied
  // where a GPU holding only this stage's layers has a different previous user than the single
  // GPU: that user's tasks of these kinds on the task's own stage.
  void add_slot_rules(TaskId t, std::vector<std::int64_t>& out) const {
    const TaskKind kt = kind(t);
    const std::int32_t stage = stage_of(t);
    if (is_weight_kind(kt)) {
      const std::int32_t step = step_of_task_[static_cast<std::size_t>(t)];
      if (step == kNone) return;
      const SlotBack& b = slot_back_[kWeightSlot];
      const std::int32_t g = b.global[static_cast<std::size_t>(step)], m = b.local[static_cast<std::size_t>(step)];
      if (g == kNone || step_stage_[static_cast<std::size_t>(g)] == stage || m == kNone) return;
      if (kt == TaskKind::kWeightLoad) {
        for (TaskId x : step_gpu_[static_cast<std::size_t>(m)]) out.push_back(x);  // every GPU task of that step
      } else if (step_load_[static_cast<std::size_t>(m)] != kNone) {
        out.push_back(step_load_[static_cast<std::size_t>(m)]);  // read waits for that load
      }
      return;
    }
    const std::int32_t v = visit_of_task_[static_cast<std::size_t>(t)];
    auto apply = [&](int slot, std::initializer_list<TaskKind> kinds) {
      const SlotBack& b = slot_back_[slot];
      const std::int32_t g = b.global[static_cast<std::size_t>(v)], m = b.local[static_cast<std::size_t>(v)];
      if (g == kNone || m == kNone || visit_stage(g) == stage) return;
      for (TaskKind k : kinds) {
        const TaskId x =
            is_gpu_kind(k) ? last_gpu(m) : visit_tasks_[static_cast<std::size_t>(m)][static_cast<std::size_t>(k)];
        if (x != kNone) out.push_back(x);
      }
    };
    switch (kt) {
      case TaskKind::kCacheRead:
        apply(kCacheSlot, {TaskKind::kCacheLoad, TaskKind::kCacheWrite, TaskKind::kComputePost});
        break;
      case TaskKind::kCacheLoad: apply(kCacheSlot, {TaskKind::kComputePost, TaskKind::kCacheStore}); break;
      case TaskKind::kCacheStore: apply(kCacheSlot, {TaskKind::kCacheWrite}); break;
      case TaskKind::kActRead: apply(kActSlot, {TaskKind::kActLoad, TaskKind::kActWrite}); break;
      case TaskKind::kActLoad: apply(kActSlot, {TaskKind::kComputePost, TaskKind::kActStore}); break;
      case TaskKind::kActStore: apply(kActSlot, {TaskKind::kActWrite}); break;
      case TaskKind::kCompute:  // (visits that use no such slot have no previous user)
        apply(kCacheSlot, {TaskKind::kCacheStore});
        apply(kActSlot, {TaskKind::kActStore});
        break;
      default: break;
    }
  }

  std::int32_t visit_stage(std::int32_t v) const { return stage_of(visit_compute_[static_cast<std::size_t>(v)]); }

  // Every task's dependencies in the pipeline: ids >= 0 are schedule tasks, -(x + 1) transfer x.
  void route_dependencies() {
    const auto& tasks = schedule_.tasks;
    dep_begin_.assign(1, 0);
    dep_ids_.clear();
    transfer_of_visit_.assign(visit_compute_.size(), kNone);
    std::vector<std::int64_t> deps;
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      const auto t = static_cast<TaskId>(i);
      const std::int32_t stage = stage_of(t);
      deps.clear();
      for (TaskId d : tasks[i].deps) {
        if (stage_of(d) == stage) {
          deps.push_back(d);
          continue;
        }
        const bool data = is_data_dependency(t, d);
        if (data) deps.push_back(-(transfer_into(visit_of_task_[i], d) + 1));
        // A double-buffer dependency across stages is dropped here; add_slot_rules puts the one
        // of t's own stage in its place.
        if (!data && !is_slot_dependency(t, d)) unexpected(t, d);
      }
      add_slot_rules(t, deps);
      std::sort(deps.begin(), deps.end());
      deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
      dep_ids_.insert(dep_ids_.end(), deps.begin(), deps.end());
      dep_begin_.push_back(static_cast<std::int64_t>(dep_ids_.size()));
    }
    for (auto& producers : transfer_deps_) {
      std::sort(producers.begin(), producers.end());
      producers.erase(std::unique(producers.begin(), producers.end()), producers.end());
    }
  }

  // The transfer into consumer visit v (made on first use), now also waiting for producer task d.
  std::int32_t transfer_into(std::int32_t v, TaskId d) {
    std::int32_t& x = transfer_of_visit_[static_cast<std::size_t>(v)];
    if (x == kNone) {
      const Task& c = schedule_.tasks[static_cast<std::size_t>(visit_compute_[static_cast<std::size_t>(v)])];
      PipelineTransfer tr;
      tr.token = c.token;
      tr.batch = c.batch;
      tr.layer = c.layer;
      tr.to_stage = stage_of_layer_[static_cast<std::size_t>(c.layer)];
      tr.from_stage = stage_of(d);
      tr.bytes = c.layer == 0 ? plan_.policy.gpu_batch_size() * static_cast<Bytes>(sizeof(std::int32_t))
                              : plan_.activation_bytes(c.token == 0 ? plan_.workload.prompt_len : 1);
      x = static_cast<std::int32_t>(transfers_.size());
      transfers_.push_back(tr);
      transfer_deps_.emplace_back();
    }
    transfer_deps_[static_cast<std::size_t>(x)].push_back(d);
    return x;
  }

  void make_lanes(PipelineResult& result) {
    const bool overlap = schedule_.overlap;
    lane_of_.assign(static_cast<std::size_t>(G_), {});
    std::array<std::int32_t, kNumResources> host_lane;
    host_lane.fill(kNone);
    auto add = [&result](std::string name, std::int32_t stage) {
      result.lanes.push_back(PipelineLane{std::move(name), stage, 0, 0, 0, 0});
      return static_cast<std::int32_t>(result.lanes.size() - 1);
    };
    for (std::int32_t s = 0; s < G_; ++s) {
      auto& lanes = lane_of_[static_cast<std::size_t>(s)];
      if (!overlap) {
        lanes.fill(add(str_cat("gpu", s, " serial"), s));
        continue;
      }
      for (int r = 0; r < kNumResources; ++r) {
        const auto res = static_cast<Resource>(r);
        auto& l = lanes[static_cast<std::size_t>(r)];
        if (options_.shared_host && is_host_resource(res)) {
          auto& h = host_lane[static_cast<std::size_t>(r)];
          if (h == kNone) h = add(str_cat("host ", resource_name(res)), -1);
          l = h;
        } else {
          l = add(str_cat("gpu", s, " ", resource_name(res)), s);
        }
      }
    }
    link_lane_.clear();
    if (G_ > 1) {
      for (std::int32_t s = 0; s < G_; ++s) link_lane_.push_back(add(str_cat("link ", s, "->", (s + 1) % G_), -1));
    }
  }

  Nanoseconds link_duration(Bytes bytes) const {
    // Multiply first: whole numbers of bytes over whole bytes per ns stay exact.
    const double ns = static_cast<double>(bytes) * 1e9 / options_.link_bytes_per_s;
    return options_.link_latency_ns + static_cast<Nanoseconds>(std::ceil(ns));
  }

  TaskGraph build_graph(PipelineResult& result) {
    const auto& tasks = schedule_.tasks;
    TaskGraph g;
    g.num_lanes = static_cast<std::int32_t>(result.lanes.size());
    g.reserve(tasks.size() + transfers_.size(), dep_ids_.size());
    new_task_.assign(tasks.size(), kNone);
    new_transfer_.assign(transfers_.size(), kNone);
    result.task_lane.resize(tasks.size());
    result.transfers = transfers_;
    result.transfer_lane.resize(transfers_.size());
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      const auto begin = static_cast<std::size_t>(dep_begin_[i]), end = static_cast<std::size_t>(dep_begin_[i + 1]);
      // A transfer enters the list just before its first consumer: its producers come earlier.
      for (std::size_t e = begin; e < end; ++e) {
        if (dep_ids_[e] >= 0) continue;
        const auto x = static_cast<std::size_t>(-dep_ids_[e] - 1);
        if (new_transfer_[x] != kNone) continue;
        const PipelineTransfer& tr = transfers_[x];
        const std::int32_t lane = link_lane_[static_cast<std::size_t>(tr.from_stage)];
        result.transfer_lane[x] = lane;
        new_transfer_[x] = g.add_task(lane, link_duration(tr.bytes));
        for (TaskId d : transfer_deps_[x]) g.add_dep(new_task_[static_cast<std::size_t>(d)]);
      }
      const std::int32_t lane = lane_of_[static_cast<std::size_t>(stage_of(static_cast<TaskId>(i)))]
                                        [static_cast<std::size_t>(tasks[i].resource())];
      result.task_lane[i] = lane;
      new_task_[i] = g.add_task(lane, durations_[i]);
      for (std::size_t e = begin; e < end; ++e) {
        const std::int64_t d = dep_ids_[e];
        g.add_dep(d >= 0 ? new_task_[static_cast<std::size_t>(d)] : new_transfer_[static_cast<std::size_t>(-d - 1)]);
      }
    }
    if (schedule_.overlap && options_.shared_pcie_fraction) {
      for (std::int32_t s = 0; s < G_; ++s) {
        const auto& lanes = lane_of_[static_cast<std::size_t>(s)];
        g.shared_pairs.emplace_back(lanes[static_cast<std::size_t>(Resource::kH2D)],
                                    lanes[static_cast<std::size_t>(Resource::kD2H)]);
      }
      g.shared_rate = *options_.shared_pcie_fraction;
    }
    return g;
  }

  void summarize(PipelineResult& result, const std::vector<TaskSpan>& spans) {
    const auto& tasks = schedule_.tasks;
    Nanoseconds makespan = 0, prefill_end = 0;
    auto account = [&](std::int32_t lane, const TaskSpan& s, std::int32_t token) {
      PipelineLane& l = result.lanes[static_cast<std::size_t>(lane)];
      l.busy += s.length();
      (token == 0 ? l.prefill_busy : l.decode_busy) += s.length();
      makespan = std::max(makespan, s.end);
      if (token == 0) prefill_end = std::max(prefill_end, s.end);
    };
    result.tasks.resize(tasks.size());
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      result.tasks[i] = spans[static_cast<std::size_t>(new_task_[i])];
      account(result.task_lane[i], result.tasks[i], tasks[i].token);
    }
    result.transfer_spans.resize(transfers_.size());
    for (std::size_t x = 0; x < transfers_.size(); ++x) {
      result.transfer_spans[x] = spans[static_cast<std::size_t>(new_transfer_[x])];
      account(result.transfer_lane[x], result.transfer_spans[x], transfers_[x].token);
    }
    const RunTimes times = run_times(plan_, makespan, prefill_end);
    result.makespan = times.makespan;
    result.prefill_ns = times.prefill_ns;
    result.decode_ns = times.decode_ns;
    result.generated_tokens = times.generated_tokens;
    result.throughput_tok_s = times.throughput_tok_s;
    result.decode_throughput_tok_s = times.decode_throughput_tok_s;
    for (std::size_t l = 0; l < result.lanes.size(); ++l) {
      PipelineLane& lane = result.lanes[l];
      lane.utilization = makespan > 0 ? static_cast<double>(lane.busy) / static_cast<double>(makespan) : 0.0;
      const PipelineLane& p = result.lanes[static_cast<std::size_t>(result.prefill_critical_lane)];
      const PipelineLane& d = result.lanes[static_cast<std::size_t>(result.decode_critical_lane)];
      if (lane.prefill_busy > p.prefill_busy) result.prefill_critical_lane = static_cast<std::int32_t>(l);
      if (lane.decode_busy > d.decode_busy) result.decode_critical_lane = static_cast<std::int32_t>(l);
    }
  }

  const Plan& plan_;
  const Schedule& schedule_;
  const std::vector<Nanoseconds>& durations_;
  const PipelineOptions& options_;
  std::int32_t L_ = 0, layers_ = 0, gen_len_ = 0, nb_ = 0, G_ = 1;
  std::vector<std::int32_t> stage_of_layer_;
  // Visits, in list order of their compute tasks.
  std::vector<std::int32_t> visit_of_key_;
  std::vector<TaskId> visit_compute_;
  std::vector<std::array<TaskId, kNumTaskKinds>> visit_tasks_;
  std::vector<std::int32_t> visit_of_task_;  // kNone for weight tasks
  // Weight steps.
  std::vector<std::vector<TaskId>> step_gpu_;
  std::vector<TaskId> step_load_;
  std::vector<std::int32_t> step_stage_, step_of_task_, step_of_visit_;
  SlotBack slot_back_[3];  // kWeightSlot (per step), kCacheSlot, kActSlot (per visit)
  // Routed dependencies and transfers.
  std::vector<std::int64_t> dep_begin_, dep_ids_;
  std::vector<PipelineTransfer> transfers_;
  std::vector<std::vector<TaskId>> transfer_deps_;
  std::vector<std::int32_t> transfer_of_visit_;
  // Lanes and the new task list.
  std::vector<std::array<std::int32_t, kNumResources>> lane_of_;
  std::vector<std::int32_t> link_lane_;
  std::vector<std::int32_t> new_task_, new_transfer_;
};

void check_stage_budgets(const PipelineOptions& o, const std::vector<MemoryPlan>& stages) {
  TierBytes per_stage = o.capacities;
  if (o.shared_host) per_stage[Tier::kCpu] = per_stage[Tier::kDisk] = kUnlimitedBytes;
  for (std::size_t s = 0; s < stages.size(); ++s) {
    try {
      check_budgets(stages[s], per_stage);
    } catch (const Error& e) {
      fail("pipeline stage ", s, ": ", e.what());
    }
  }
  if (!o.shared_host) return;
  MemoryPlan host;
  for (const MemoryPlan& m : stages) {
    host.total[Tier::kCpu] += m.total[Tier::kCpu];
    host.total[Tier::kDisk] += m.total[Tier::kDisk];
  }
  try {
    check_budgets(host, o.capacities);
  } catch (const Error& e) {
    fail("pipeline host (all ", stages.size(), " stages): ", e.what());
  }
}

}  // namespace

PipelineResult simulate_pipeline(const Plan& plan, const Schedule& schedule, const DurationModel& model,
                                 const PipelineOptions& options) {
  return simulate_pipeline(plan, schedule, task_durations(schedule, model), options);
}

PipelineResult simulate_pipeline(const Plan& plan, const Schedule& schedule, const std::vector<Nanoseconds>& durations,
                                 const PipelineOptions& options) {
  FLEXGEN_REQUIRE(durations.size() == schedule.tasks.size(), "simulate_pipeline: ", durations.size(),
                  " durations for a schedule of ", schedule.tasks.size(), " tasks");
  const std::vector<std::int32_t> stages = pipeline_stages(plan, options.num_stages);
  if (options.num_stages > 1) {
    FLEXGEN_REQUIRE(std::isfinite(options.link_bytes_per_s) && options.link_bytes_per_s > 0,
                    "invalid pipeline: the inter-GPU link bandwidth must be positive (got ", options.link_bytes_per_s,
                    " bytes/s)");
  }
  FLEXGEN_REQUIRE(options.link_latency_ns >= 0, "invalid pipeline: negative link latency (", options.link_latency_ns,
                  " ns)");
  if (options.shared_pcie_fraction) {
    const double f = *options.shared_pcie_fraction;
    FLEXGEN_REQUIRE(std::isfinite(f) && f > 0 && f <= 1, "invalid shared PCIe fraction ", f, ": must be in (0, 1]");
  }
  const MemoryPlan whole = plan_memory(plan);
  std::vector<MemoryPlan> memory;
  for (std::int32_t s = 0; s < options.num_stages; ++s) memory.push_back(stage_memory(plan, whole, stages, s));
  check_stage_budgets(options, memory);
  PipelineResult result = PipelineGraph(plan, schedule, durations, options).run();
  result.stage_memory = std::move(memory);
  return result;
}

TraceProcess trace_process(const std::string& process_name, const Schedule& schedule, const PipelineResult& result) {
  FLEXGEN_REQUIRE(result.tasks.size() == schedule.tasks.size(), "trace: a pipeline result of ", result.tasks.size(),
                  " tasks for a schedule of ", schedule.tasks.size(), " tasks");
  TraceProcess p;
  p.name = process_name;
  for (const PipelineLane& l : result.lanes) p.tracks.push_back(l.name);
  p.slices.reserve(schedule.tasks.size() + result.transfers.size());
  for (std::size_t i = 0; i < schedule.tasks.size(); ++i) {
    const Task& t = schedule.tasks[i];
    const LinkBytes& b = t.bytes;
    p.slices.push_back(TraceSlice{result.task_lane[i], result.tasks[i].start, result.tasks[i].end,
                                  task_kind_name(t.kind), static_cast<std::int64_t>(i), t.token, t.layer, t.batch,
                                  b.h2d + b.d2h + b.disk_read + b.disk_write, t.gemm_flops, t.attention_flops});
  }
  for (std::size_t x = 0; x < result.transfers.size(); ++x) {
    const PipelineTransfer& tr = result.transfers[x];
    p.slices.push_back(TraceSlice{result.transfer_lane[x], result.transfer_spans[x].start, result.transfer_spans[x].end,
                                  "transfer", static_cast<std::int64_t>(x), tr.token, tr.layer, tr.batch, tr.bytes, 0,
                                  0});
  }
  return p;
}

}  // namespace flexgen
