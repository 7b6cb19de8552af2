#include "simulator/validation.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "engine/core/error.h"
#include "engine/core/input_lookup.h"
#include "engine/core/json_fields.h"
#include "engine/runtime/plan.h"
#include "engine/sweep/sweep_file.h"

namespace flexgen {
namespace {

ValidatedRun validate_row(const nlohmann::json& row, const std::string& origin,
                          const std::optional<HardwareSpec>& hardware) {
  ValidatedRun v;
  v.origin = origin;
  try {
    v.id = row.at("id").is_string() ? row["id"].get<std::string>() : row["id"].dump();
    v.label = row.value("label", std::string());
    const nlohmann::json& params = row.at("params");
    const PointParams p = point_params(params);
    v.model = p.model;
    HardwareSpec hw;
    if (hardware) {
      hw = *hardware;
    } else {
      FLEXGEN_REQUIRE(!p.hardware.empty(), "the run names no hardware file; give --hardware");
      hw = with_hardware_overrides(load_hardware(p.hardware), p.hw_overrides, "hw.");
    }
    v.hardware = hw.name;
    const Policy policy = Policy::from_json(row.at("policy"), "policy");
    const ModelSpec spec = load_model_spec(p.model);
    Workload w;
    w.prompt_len = p.prompt_len;
    w.gen_len = p.gen_len;
    w.num_sequences = policy.block_size();
    const Plan plan = make_plan(spec, w, policy);
    const Schedule schedule = make_schedule(plan, p.schedule);
    const Prediction pred = predict_run(plan, schedule, hw);
    v.measured_tok_s = row.at("throughput_tok_s").get<double>();
    FLEXGEN_REQUIRE(v.measured_tok_s > 0, "measured throughput is not positive");
    v.predicted_tok_s = pred.result.throughput_tok_s;
    v.error = (v.predicted_tok_s - v.measured_tok_s) / v.measured_tok_s;
    v.measured_prefill_s = row.at("prefill_s").get<double>();
    v.measured_decode_s = row.at("decode_s").get<double>();
    v.predicted_prefill_s = to_seconds(pred.result.prefill_ns);
    v.predicted_decode_s = to_seconds(pred.result.decode_ns);
    v.predicted = pred.kinds;
    v.critical_decode = resource_name(pred.result.decode.critical);
    if (row.contains("task_times")) {
      v.measured = kind_times_from_json(row["task_times"], "task_times");
      v.has_task_times = true;
      double worst = -1;
      for (int k = 0; k < kNumTaskKinds; ++k) {
        const auto i = static_cast<std::size_t>(k);
        const double d = std::abs(v.predicted.busy_s[i] - v.measured.busy_s[i]);
        if ((v.predicted.tasks[i] > 0 || v.measured.tasks[i] > 0) && d > worst) {
          worst = d;
          v.worst_kind = k;
        }
      }
    }
  } catch (const Error& e) {
    fail(origin, ": ", e.what());
  } catch (const nlohmann::json::exception&) {
    fail(origin, ": not an engine results row (a field is missing or has the wrong type)");
  }
  return v;
}

std::string percent(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.1f%%", 100 * x);
  return buf;
}

std::string run_name(const ValidatedRun& r) { return r.label.empty() ? r.id : r.label; }

}  // namespace

ValidationReport validate_results(const std::vector<std::string>& files, const std::optional<HardwareSpec>& hardware) {
  ValidationReport report;
  for (const std::string& file : files) {
    std::istringstream lines(read_text_file(file));
    std::string line;
    std::int64_t n = 0;
    while (std::getline(lines, line)) {
      ++n;
      if (line.empty()) continue;
      const std::string origin = file + ":" + std::to_string(n);
      const nlohmann::json row = parse_json_text(line, origin);
      if (!row.is_object() || row.value("target", std::string()) != "engine" ||
          row.value("status", std::string()) != "ok") {
        ++report.skipped;
        continue;
      }
      report.runs.push_back(validate_row(row, origin, hardware));
    }
  }
  double sum = 0;
  for (std::size_t i = 0; i < report.runs.size(); ++i) {
    const ValidatedRun& r = report.runs[i];
    sum += std::abs(r.error);
    if (!report.worst || std::abs(r.error) > std::abs(report.runs[*report.worst].error)) report.worst = i;
    if (!r.has_task_times) continue;
    for (std::size_t k = 0; k < static_cast<std::size_t>(kNumTaskKinds); ++k) {
      report.measured_total.busy_s[k] += r.measured.busy_s[k];
      report.measured_total.tasks[k] += r.measured.tasks[k];
      report.predicted_total.busy_s[k] += r.predicted.busy_s[k];
      report.predicted_total.tasks[k] += r.predicted.tasks[k];
    }
  }
  if (!report.runs.empty()) report.mape = sum / static_cast<double>(report.runs.size());
  return report;
}

nlohmann::json validation_json(const ValidationReport& report) {
  nlohmann::json runs = nlohmann::json::array();
  for (const ValidatedRun& r : report.runs) {
    nlohmann::json j = {{"id", r.id},
                        {"label", r.label},
                        {"model", r.model},
                        {"origin", r.origin},
                        {"hardware", r.hardware},
                        {"measured_tok_s", r.measured_tok_s},
                        {"predicted_tok_s", r.predicted_tok_s},
                        {"error", r.error},
                        {"measured_prefill_s", r.measured_prefill_s},
                        {"predicted_prefill_s", r.predicted_prefill_s},
                        {"measured_decode_s", r.measured_decode_s},
                        {"predicted_decode_s", r.predicted_decode_s},
                        {"predicted_critical_decode", r.critical_decode},
                        {"predicted_task_times", kind_times_json(r.predicted)}};
    if (r.has_task_times) {
      j["measured_task_times"] = kind_times_json(r.measured);
      j["worst_task_kind"] = r.worst_kind >= 0 ? nlohmann::json(task_kind_name(static_cast<TaskKind>(r.worst_kind)))
                                               : nlohmann::json();
    }
    runs.push_back(j);
  }
  nlohmann::json kinds = nlohmann::json::object();
  for (int k = 0; k < kNumTaskKinds; ++k) {
    const auto i = static_cast<std::size_t>(k);
    if (report.measured_total.tasks[i] == 0 && report.predicted_total.tasks[i] == 0) continue;
    kinds[task_kind_name(static_cast<TaskKind>(k))] = {{"measured_busy_s", report.measured_total.busy_s[i]},
                                                       {"predicted_busy_s", report.predicted_total.busy_s[i]}};
  }
  return {{"runs", runs},
          {"count", report.runs.size()},
          {"skipped_rows", report.skipped},
          {"mape", report.mape},
          {"worst", report.worst ? nlohmann::json(report.runs[*report.worst].id) : nlohmann::json()},
          {"task_kinds", kinds}};
}

std::string validation_text(const ValidationReport& report, std::size_t worst_count) {
  std::ostringstream out;
  char buf[256];
  if (report.runs.empty()) {
    out << "no successful engine runs to validate (" << report.skipped << " other rows skipped)\n";
    return out.str();
  }
  std::snprintf(buf, sizeof buf, "%-28s %10s %10s %8s %9s %9s  %s\n", "run", "measured", "predicted", "error",
                "prefill", "decode", "largest task-kind gap (pred - meas)");
  out << buf;
  std::snprintf(buf, sizeof buf, "%-28s %10s %10s %8s %9s %9s\n", "", "tok/s", "tok/s", "", "error", "error");
  out << buf;
  for (const ValidatedRun& r : report.runs) {
    std::string gap = "-";
    if (r.has_task_times && r.worst_kind >= 0) {
      const auto k = static_cast<std::size_t>(r.worst_kind);
      char g[96];
      std::snprintf(g, sizeof g, "%s %+.3f s", task_kind_name(static_cast<TaskKind>(r.worst_kind)),
                    r.predicted.busy_s[k] - r.measured.busy_s[k]);
      gap = g;
    }
    const auto rel = [](double p, double m) { return m > 0 ? percent((p - m) / m) : std::string("-"); };
    std::snprintf(buf, sizeof buf, "%-28.28s %10.2f %10.2f %8s %9s %9s  %s\n", run_name(r).c_str(), r.measured_tok_s,
                  r.predicted_tok_s, percent(r.error).c_str(),
                  rel(r.predicted_prefill_s, r.measured_prefill_s).c_str(),
                  rel(r.predicted_decode_s, r.measured_decode_s).c_str(), gap.c_str());
    out << buf;
  }
  std::snprintf(buf, sizeof buf, "\nmean absolute percentage error %.1f%% over %zu runs", 100 * report.mape,
                report.runs.size());
  out << buf << " (" << report.skipped << " other rows skipped)\n";
  std::vector<std::size_t> order(report.runs.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return std::abs(report.runs[a].error) > std::abs(report.runs[b].error);
  });
  out << "worst:";
  for (std::size_t i = 0; i < std::min(worst_count, order.size()); ++i) {
    const ValidatedRun& r = report.runs[order[i]];
    out << (i ? ", " : " ") << run_name(r) << " " << percent(r.error) << " (decode bound by " << r.critical_decode
        << ")";
  }
  out << "\n";
  bool any = false;
  for (int k = 0; k < kNumTaskKinds; ++k) {
    const auto i = static_cast<std::size_t>(k);
    if (report.measured_total.tasks[i] == 0 && report.predicted_total.tasks[i] == 0) continue;
    if (!any) {
      std::snprintf(buf, sizeof buf, "\n%-16s %14s %14s %8s\n", "task kind", "measured busy", "predicted busy",
                    "ratio");
      out << buf;
      any = true;
    }
    const double m = report.measured_total.busy_s[i], p = report.predicted_total.busy_s[i];
    std::snprintf(buf, sizeof buf, "%-16s %12.3f s %12.3f s %8s\n", task_kind_name(static_cast<TaskKind>(k)), m, p,
                  m > 0 ? (std::to_string(p / m).substr(0, 5)).c_str() : "-");
    out << buf;
  }
  return out.str();
}

}  // namespace flexgen
