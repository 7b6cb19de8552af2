#pragma once
// Chrome / Perfetto trace files (the JSON "traceEvents" format; open in ui.perfetto.dev or
// chrome://tracing). One process per run (e.g. "simulated" and "measured" side by side), one
// track (tid) per resource or lane, named by "thread_name" metadata; one complete event ("ph":
// "X") per task with ts and dur in microseconds (three decimals: exact nanoseconds) and args
// {id, kind, token, layer, batch, bytes, gemm_flops, attention_flops}; optional counter events
// ("ph": "C") for memory per tier.
//
// The same writer serves the simulator and the engine: trace_process() takes a Schedule, the
// start and end of every task in nanoseconds and a process name, so a measured run
// (measured_spans(RunReport::task_timings)) and a simulated one line up task by task.
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/core/units.h"
#include "engine/runtime/schedule.h"
#include "simulator/task_span.h"

namespace flexgen {

struct SimResult;

struct TraceSlice {
  std::int32_t track = 0;  // index into TraceProcess::tracks
  Nanoseconds start = 0, end = 0;
  std::string_view name;  // static text: a task kind name, "transfer" ...
  std::int64_t id = 0;    // task id
  std::int32_t token = 0, layer = 0, batch = 0;
  Bytes bytes = 0;
  Flops gemm_flops = 0, attention_flops = 0;
};

struct TraceCounter {
  std::string name;  // e.g. "memory"
  Nanoseconds time = 0;
  std::vector<std::pair<std::string, double>> values;  // series name -> value
};

struct TraceProcess {
  std::string name;
  std::vector<std::string> tracks;  // track names; tid = index + 1
  std::vector<TraceSlice> slices;
  std::vector<TraceCounter> counters;
};

// A schedule's tasks on one track per resource (all six, in Resource order). `spans` holds one
// entry per task. Throws flexgen::Error when the sizes differ.
TraceProcess trace_process(const std::string& process_name, const Schedule& schedule,
                           const std::vector<TaskSpan>& spans);
// A simulated run: trace_process of its spans plus a "memory" counter per tier over time.
TraceProcess trace_process(const std::string& process_name, const Schedule& schedule, const SimResult& result);

// Writes {"traceEvents": [...], "displayTimeUnit": "ns"}; process i gets pid i + 1.
void write_chrome_trace(std::ostream& out, const std::vector<TraceProcess>& processes);
// The same to a file; throws flexgen::Error naming the path when it cannot be written.
void write_chrome_trace(const std::filesystem::path& path, const std::vector<TraceProcess>& processes);

}  // namespace flexgen
