// Chrome/Perfetto trace files: parsed back with nlohmann::json and checked field by field.
#include "simulator/trace.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "engine/core/error.h"
#include "simulator/simulator.h"
#include "tests/simulator/sim_fixtures.h"

namespace flexgen {
namespace {

using simtest::PlanArgs;
using ::testing::HasSubstr;

nlohmann::json write_and_parse(const std::vector<TraceProcess>& processes) {
  std::ostringstream out;
  write_chrome_trace(out, processes);
  return nlohmann::json::parse(out.str());
}

TEST(Trace, SimulatedAndMeasuredRunsShareOneFileWithOneTrackPerResource) {
  PlanArgs a;
  a.percent = {0, 100, 0, 100, 0, 100};
  a.ngb = 2;
  const Plan plan = simtest::tiny_plan(a);
  const Schedule s = make_schedule(plan, ScheduleKind::kZigZag);
  const SimResult sim = simulate(plan, s, simtest::LinearModel(3, 1000, 500, 700));
  // A "measured" run: task i from i us to i us + 0.25 us.
  std::vector<TaskTiming> measured(s.tasks.size());
  for (std::size_t i = 0; i < measured.size(); ++i) {
    measured[i] = {static_cast<double>(i) * 1e-6, static_cast<double>(i) * 1e-6 + 0.25e-6};
  }
  const nlohmann::json j = write_and_parse(
      {trace_process("simulated \"t4\"", s, sim), trace_process("measured", s, measured_spans(measured))});
  ASSERT_TRUE(j.contains("traceEvents"));
  const auto& events = j["traceEvents"];
  std::map<int, std::string> process;
  std::map<std::pair<int, int>, std::string> thread;
  std::map<int, std::vector<nlohmann::json>> slices;
  int counters = 0;
  for (const auto& e : events) {
    const std::string ph = e["ph"];
    if (ph == "M" && e["name"] == "process_name") process[e["pid"]] = e["args"]["name"];
    if (ph == "M" && e["name"] == "thread_name") thread[{e["pid"], e["tid"]}] = e["args"]["name"];
    if (ph == "X") slices[e["pid"]].push_back(e);
    if (ph == "C") ++counters;
  }
  EXPECT_EQ(process[1], "simulated \"t4\"");
  EXPECT_EQ(process[2], "measured");
  const std::vector<std::string> names = {"gpu_compute", "cpu_compute", "h2d", "d2h", "disk_read", "disk_write"};
  for (int pid : {1, 2}) {
    for (int r = 0; r < 6; ++r) EXPECT_EQ((thread[{pid, r + 1}]), names[static_cast<std::size_t>(r)]);
    ASSERT_EQ(slices[pid].size(), s.tasks.size());
  }
  EXPECT_EQ(thread.size(), 12u);
  EXPECT_EQ(counters, 2);  // memory at 0 and at the end, simulated process only
  for (std::size_t i = 0; i < s.tasks.size(); ++i) {
    const Task& t = s.tasks[i];
    const nlohmann::json& e = slices[1][i];
    EXPECT_EQ(e["tid"], static_cast<int>(t.resource()) + 1);
    EXPECT_EQ(e["name"], task_kind_name(t.kind));
    EXPECT_EQ(e["args"]["id"], i);
    EXPECT_EQ(e["args"]["kind"], task_kind_name(t.kind));
    EXPECT_EQ(e["args"]["token"], t.token);
    EXPECT_EQ(e["args"]["layer"], t.layer);
    EXPECT_EQ(e["args"]["batch"], t.batch);
    EXPECT_EQ(e["args"]["bytes"], simtest::task_bytes(t));
    // Microseconds with exact nanoseconds.
    EXPECT_DOUBLE_EQ(e["ts"].get<double>(), static_cast<double>(sim.tasks[i].start) / 1000.0);
    EXPECT_DOUBLE_EQ(e["dur"].get<double>(), static_cast<double>(sim.tasks[i].length()) / 1000.0);
    const nlohmann::json& m = slices[2][i];
    EXPECT_DOUBLE_EQ(m["ts"].get<double>(), static_cast<double>(i));
    EXPECT_DOUBLE_EQ(m["dur"].get<double>(), 0.25);
  }
}

TEST(Trace, TimestampsKeepEveryNanosecond) {
  Schedule s;
  Task t;
  t.kind = TaskKind::kCacheLoad;
  s.tasks = {t};
  std::ostringstream out;
  write_chrome_trace(out, {trace_process("p", s, std::vector<TaskSpan>{{1234567, 1234568}})});
  EXPECT_THAT(out.str(), HasSubstr("\"ts\":1234.567,\"dur\":0.001"));
  EXPECT_EQ(nlohmann::json::parse(out.str())["traceEvents"].back()["tid"], 3);  // h2d
}

TEST(Trace, BadInputsAreRefused) {
  Schedule s;
  s.tasks.resize(2);
  try {
    trace_process("p", s, std::vector<TaskSpan>(3));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("3 task spans for a schedule of 2 tasks"));
  }
  const std::filesystem::path bad = std::filesystem::temp_directory_path() / "no-such-dir-flexgen" / "t.json";
  try {
    write_chrome_trace(bad, {});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot write trace file"));
    EXPECT_THAT(e.what(), HasSubstr("no-such-dir-flexgen"));
  }
}

TEST(Trace, WritesAFile) {
  const std::filesystem::path path = std::filesystem::temp_directory_path() / "flexgen_trace_test.json";
  Schedule s;
  s.tasks.resize(1);
  write_chrome_trace(path, {trace_process("p", s, std::vector<TaskSpan>{{0, 10}})});
  std::ifstream in(path);
  const nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j["traceEvents"].back()["ph"], "X");
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace flexgen
