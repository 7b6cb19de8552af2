// flexgen sweep: every point of a sweep file, on the engine or the simulator, one results row each
// (docs/experiments.md).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "engine/batch/output_file.h"
#include "engine/batch/progress.h"
#include "engine/cli/command.h"
#include "engine/cli/policy_options.h"
#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/core/input_lookup.h"
#include "engine/core/json_fields.h"
#include "engine/core/units_parse.h"
#include "engine/runtime/plan.h"
#include "engine/search/policy_search.h"
#include "engine/sweep/child_process.h"
#include "engine/sweep/provenance.h"
#include "engine/sweep/sweep_file.h"
#include "simulator/predict.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace flexgen::cli {
namespace {

constexpr const char* kUsage =
    "usage: flexgen sweep FILE [options]\n\n"
    "Runs every point of a sweep file (experiments/sweeps/*.json: a cartesian product of parameter\n"
    "lists, docs/experiments.md) on the engine of this machine or on the simulator, and appends one\n"
    "JSON row per point to the sweep's results file (results/sweeps/<name>.jsonl unless the file or\n"
    "--output says otherwise). Points already in the results file are skipped, so an interrupted\n"
    "sweep resumes where it stopped; each row is written whole (one write, then fsync). A point that\n"
    "fails (out of memory, infeasible, a crash of the engine) is recorded with its reason and the\n"
    "sweep goes on. Engine points run as child processes of `flexgen generate`; each engine row also\n"
    "carries the simulator's prediction on the sweep's hardware file, for `flexgen validate`.";

// The hardware of a point with its overrides and tier capacities, or nullopt when it names none.
std::optional<HardwareSpec> point_hardware(const PointParams& p) {
  if (p.hardware.empty()) return std::nullopt;
  HardwareSpec hw = with_hardware_overrides(load_hardware(p.hardware), p.hw_overrides, "hw.");
  if (p.gpu_mem) hw.gpu_memory_bytes = parse_bytes(*p.gpu_mem);
  if (p.cpu_mem) hw.cpu_memory_bytes = parse_bytes(*p.cpu_mem);
  if (p.disk_mem) hw.disk_bytes = parse_bytes(*p.disk_mem);
  return hw;
}

Workload point_workload(const PointParams& p) {
  Workload w;
  w.prompt_len = p.prompt_len;
  w.gen_len = p.gen_len;
  return w;
}

// The point's policy: as given, or the search's best on the point's hardware. `search_row`
// receives what the search predicted.
Policy point_policy(const PointParams& p, const ModelSpec& spec, const std::optional<HardwareSpec>& hw,
                    nlohmann::json& search_row) {
  if (!p.search) return Policy::create(p.policy_config());
  FLEXGEN_REQUIRE(hw.has_value(), "a searched policy needs a hardware file");
  SearchOptions options;
  options.gpu_batch_size = p.gpu_batch_size;
  options.num_gpu_batches = p.num_gpu_batches;
  options.compress_weight = p.compress_weight;
  options.compress_cache = p.compress_cache;
  options.cpu_cache_compute = !p.cpu_cache_compute ? SearchChoice::kSearch
                              : *p.cpu_cache_compute ? SearchChoice::kOn
                                                     : SearchChoice::kOff;
  options.allow_disk = p.allow_disk;
  options.attn_sparsity = p.attn_sparsity;
  options.reprice = [&](const Policy& policy) {
    PolicyConfig c = policy.config();
    c.overlap = p.overlap;
    c.pin_weight = p.pin_weight;
    return simulated_estimate(spec, point_workload(p), Policy::create(c), *hw, p.schedule);
  };
  const SearchResult result = search_policy(spec, point_workload(p), *hw, options);
  FLEXGEN_REQUIRE(!result.candidates.empty(), "the policy search found no policy");
  const SearchCandidate& best = result.candidates.front();
  search_row = {{"predicted_throughput_tok_s", best.estimate.throughput_tok_s},
                {"step_estimate_tok_s", best.step_estimate_tok_s},
                {"lp_throughput_tok_s", best.lp_throughput_tok_s},
                {"lp_solves", result.lp_solves},
                {"elapsed_s", result.elapsed_s}};
  PolicyConfig c = best.policy.config();
  c.overlap = p.overlap;
  c.pin_weight = p.pin_weight;
  return Policy::create(c);
}

Prediction predict_point(const ModelSpec& spec, const PointParams& p, const Policy& policy, const HardwareSpec& hw,
                         const TierBytes& capacities) {
  Workload w = point_workload(p);
  w.num_sequences = policy.block_size();
  const Plan plan = make_plan(spec, w, policy);
  const Schedule schedule = make_schedule(plan, p.schedule);
  SimOptions options;
  options.capacities = capacities;
  return predict_run(plan, schedule, hw, options);
}

// Fills `row` for a simulator point.
void run_simulator_point(const PointParams& p, nlohmann::json& row) {
  const ModelSpec spec = load_model_spec(p.model);
  const std::optional<HardwareSpec> hw = point_hardware(p);
  nlohmann::json search_row;
  const Policy policy = point_policy(p, spec, hw, search_row);
  row["policy"] = policy.to_json();
  row["num_sequences"] = policy.block_size();
  row["hardware"] = hw->name;
  row["device"] = "simulated " + hw->name;
  if (!search_row.is_null()) row["search"] = search_row;
  const Prediction prediction = predict_point(spec, p, policy, *hw, tier_capacities(*hw));
  row.update(prediction_json(prediction));
}

// `flexgen generate` arguments for an engine point.
std::vector<std::string> generate_args(const PointParams& p, const Policy& policy, const std::string& offload_dir) {
  std::vector<std::string> a = {self_executable(), "generate", "--model", p.model, "--prompt-len",
                                std::to_string(p.prompt_len), "--gen-len", std::to_string(p.gen_len),
                                "--backend", p.backend, "--schedule", schedule_kind_name(p.schedule),
                                "--seed", std::to_string(p.seed), "--json", "--task-times"};
  std::istringstream flags(policy.to_string());
  for (std::string w; flags >> w;) a.push_back(w);
  if (p.gpu_mem) a.insert(a.end(), {"--gpu-mem", *p.gpu_mem});
  if (p.cpu_mem) a.insert(a.end(), {"--cpu-mem", *p.cpu_mem});
  if (p.disk_mem) a.insert(a.end(), {"--disk-mem", *p.disk_mem});
  if (!offload_dir.empty()) a.insert(a.end(), {"--offload-dir", offload_dir});
  return a;
}

// Fills `row` for an engine point; returns the failure reason, or "" when it ran.
std::string run_engine_point(const PointParams& p, const Sweep& sweep, nlohmann::json& row) {
  const ModelSpec spec = load_model_spec(p.model);
  const std::optional<HardwareSpec> hw = point_hardware(p);
  nlohmann::json search_row;
  const Policy policy = point_policy(p, spec, hw, search_row);
  row["policy"] = policy.to_json();
  row["num_sequences"] = policy.block_size();
  row["hardware"] = hw ? nlohmann::json(hw->name) : nlohmann::json();
  if (!search_row.is_null()) row["search"] = search_row;
  std::vector<std::string> args = generate_args(p, policy, sweep.offload_dir);
  std::string command = "flexgen";
  for (std::size_t i = 1; i < args.size(); ++i) command += " " + args[i];
  row["command"] = command;
  if (hw) {  // the prediction for validation: the run's own plan, timed on the hardware file
    try {
      row["predicted"] = prediction_json(predict_point(spec, p, policy, *hw, unlimited_capacities()));
    } catch (const Error& e) {
      row["predicted"] = {{"error", e.what()}};
    }
  }
  const ChildResult child = run_child(args, sweep.timeout_s);
  row["wall_s"] = child.wall_s;
  if (!child.exited_ok()) return child.failure();
  nlohmann::json measured;
  try {
    measured = parse_json_text(child.out, "the output of flexgen generate");
  } catch (const Error& e) {
    return e.what();
  }
  FLEXGEN_REQUIRE(measured.is_object() && measured.contains("throughput_tok_s"),
                  "flexgen generate printed no run report");
  measured.erase("sequences");
  measured.erase("policy");
  row.update(measured);
  return "";
}

std::string figure(const nlohmann::json& row) {
  if (row.value("status", "") != "ok") return "failed: " + row.value("reason", std::string("?"));
  std::ostringstream s;
  s << std::fixed << std::setprecision(row["throughput_tok_s"].get<double>() < 10 ? 3 : 1)
    << row["throughput_tok_s"].get<double>() << " tok/s";
  if (row.contains("predicted") && row["predicted"].contains("throughput_tok_s")) {
    s << " (predicted " << row["predicted"]["throughput_tok_s"].get<double>() << ")";
  }
  return s.str();
}

std::string point_name(const SweepPoint& point) {
  const PointParams& p = point.typed;
  std::string name = p.label.empty() ? p.model : p.label + " (" + p.model + ")";
  return name;
}

}  // namespace

int run_sweep(const std::vector<std::string>& args) {
  std::string file, output, commit;
  bool dry_run = false, quiet = false, retry_failed = false;
  std::int64_t limit = -1;
  po::options_description desc("Options", 100);
  desc.add_options()
      ("help,h", "show this help")
      ("file", po::value(&file)->required(), "the sweep file (JSON)")
      ("output", po::value(&output), "results file (default: the sweep file's 'output')")
      ("commit", po::value(&commit), "commit recorded in each row (default: git's, with -dirty for local changes)")
      ("limit", po::value(&limit), "run at most this many new points, then stop (resume later)")
      ("retry-failed", po::bool_switch(&retry_failed),
       "run again the points whose rows say failed (a new row is appended; readers take the last row of an id)")
      ("dry-run", po::bool_switch(&dry_run), "list the points and whether each is done, run nothing")
      ("quiet,q", po::bool_switch(&quiet), "no progress lines");
  po::positional_options_description positional;
  positional.add("file", 1);
  po::variables_map vm;
  if (!parse_command_line(args, kUsage, desc, vm, &positional)) return 0;
  FLEXGEN_REQUIRE(limit == -1 || limit >= 0, "--limit must be 0 or more (got ", limit, ")");

  const Sweep sweep = read_sweep_file(file);
  check_sweep_inputs(sweep, file);
  const fs::path out_path = output.empty() ? sweep.output : fs::path(output);
  if (out_path.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(out_path.parent_path(), ec);
    FLEXGEN_REQUIRE(!ec, out_path.parent_path().string(), ": cannot create the results directory: ", ec.message());
  }
  if (commit.empty()) commit = git_commit(fs::current_path());
  if (commit.empty()) commit = "unknown";

  OutputFile results(out_path, "flexgen sweep", "results row");
  // With --retry-failed, a point is done only when its last row succeeded.
  std::set<std::string> failed_ids;
  if (retry_failed) {
    std::istringstream lines(read_text_file(out_path));
    for (std::string line; std::getline(lines, line);) {
      if (line.empty()) continue;
      const nlohmann::json row = nlohmann::json::parse(line, nullptr, false);
      if (!row.is_object() || !row.contains("id") || !row["id"].is_string()) continue;
      const std::string id = row["id"].get<std::string>();
      if (row.value("status", std::string()) == "failed") {
        failed_ids.insert(id);
      } else {
        failed_ids.erase(id);
      }
    }
  }
  std::vector<const SweepPoint*> todo;
  for (const SweepPoint& p : sweep.points) {
    if (!results.done_ids().count(p.id) || failed_ids.count(p.id)) todo.push_back(&p);
  }
  const std::size_t already = sweep.points.size() - todo.size();
  if (dry_run) {
    for (const SweepPoint& p : sweep.points) {
      const bool done = results.done_ids().count(p.id) && !failed_ids.count(p.id);
      std::cout << p.id << "  " << (done ? "done" : "todo") << "  "
                << point_name(p) << "  " << p.params.dump() << "\n";
    }
    std::cout << sweep.points.size() << " points, " << already << " done, " << todo.size() << " to run ("
              << sweep_target_name(sweep.target) << "), results in " << out_path.string() << "\n";
    return 0;
  }
  if (limit >= 0 && static_cast<std::size_t>(limit) < todo.size()) todo.resize(static_cast<std::size_t>(limit));
  if (!quiet && results.partial_bytes_dropped() > 0) {
    std::cerr << "flexgen sweep: dropped an unfinished last line (" << results.partial_bytes_dropped() << " bytes) of "
              << out_path.string() << "\n";
  }
  if (!quiet) {
    std::cerr << "flexgen sweep: " << sweep.name << " (" << sweep_target_name(sweep.target) << "), "
              << sweep.points.size() << " points, " << already << " already in " << out_path.string() << ", "
              << todo.size() << " to run\n";
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::int64_t ok = 0, failed = 0;
  for (std::size_t i = 0; i < todo.size(); ++i) {
    const SweepPoint& point = *todo[i];
    const PointParams& p = point.typed;
    if (!quiet) {
      std::cerr << "[" << (already + i + 1) << "/" << sweep.points.size() << "] " << point_name(point) << " ..."
                << std::flush;
    }
    const auto p0 = std::chrono::steady_clock::now();
    nlohmann::json row = {{"id", point.id},
                          {"sweep", sweep.name},
                          {"target", sweep_target_name(sweep.target)},
                          {"label", p.label},
                          {"commit", commit},
                          {"date", utc_now_iso()},
                          {"model", p.model},
                          {"schedule", schedule_kind_name(p.schedule)},
                          {"prompt_len", p.prompt_len},
                          {"gen_len", p.gen_len},
                          {"params", point.params}};
    std::string reason;
    try {
      if (sweep.target == SweepTarget::kSimulator) {
        row["device"] = "simulated " + p.hardware;
        run_simulator_point(p, row);
      } else {
        reason = run_engine_point(p, sweep, row);
      }
    } catch (const Error& e) {
      reason = e.what();
    } catch (const std::bad_alloc&) {
      reason = "out of host memory";
    }
    row["status"] = reason.empty() ? "ok" : "failed";
    if (!reason.empty()) row["reason"] = reason;
    row["elapsed_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - p0).count();
    results.append_block({row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"});
    (reason.empty() ? ok : failed) += 1;
    if (!quiet) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double left = elapsed / static_cast<double>(i + 1) * static_cast<double>(todo.size() - i - 1);
      std::cerr << " " << figure(row) << " [" << std::fixed << std::setprecision(1)
                << row["elapsed_s"].get<double>() << " s; " << format_duration(left) << " left]\n"
                << std::defaultfloat;
    }
  }
  if (!quiet) {
    std::cerr << "flexgen sweep: " << ok << " ok, " << failed << " failed this run; "
              << (already + todo.size()) << " of " << sweep.points.size() << " points in " << out_path.string()
              << "\n";
  }
  return 0;
}

}  // namespace flexgen::cli
