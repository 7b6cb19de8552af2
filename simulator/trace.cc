#include "simulator/trace.h"

#include <charconv>
#include <fstream>
#include <ostream>

#include "engine/core/error.h"
#include "simulator/simulator.h"

namespace flexgen {

TraceProcess trace_process(const std::string& process_name, const Schedule& schedule,
                           const std::vector<TaskSpan>& spans) {
  FLEXGEN_REQUIRE(spans.size() == schedule.tasks.size(), "trace: ", spans.size(), " task spans for a schedule of ",
                  schedule.tasks.size(), " tasks");
  TraceProcess p;
  p.name = process_name;
  for (int r = 0; r < kNumResources; ++r) p.tracks.emplace_back(resource_name(static_cast<Resource>(r)));
  p.slices.reserve(spans.size());
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const Task& t = schedule.tasks[i];
    const LinkBytes& b = t.bytes;
    p.slices.push_back(TraceSlice{static_cast<std::int32_t>(t.resource()), spans[i].start, spans[i].end,
                                  task_kind_name(t.kind), static_cast<std::int64_t>(i), t.token, t.layer, t.batch,
                                  b.h2d + b.d2h + b.disk_read + b.disk_write, t.gemm_flops, t.attention_flops});
  }
  return p;
}

TraceProcess trace_process(const std::string& process_name, const Schedule& schedule, const SimResult& result) {
  TraceProcess p = trace_process(process_name, schedule, result.tasks);
  for (const MemoryStep& step : result.memory_timeline) {
    TraceCounter c{"memory", step.time, {}};
    for (Tier tier : kAllTiers) c.values.emplace_back(tier_name(tier), static_cast<double>(step.in_use[tier]));
    p.counters.push_back(std::move(c));
  }
  return p;
}

namespace {

void write_string(std::ostream& out, std::string_view s) {
  out << '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out << '\\' << ch;
    } else if (c < 0x20) {
      static const char* hex = "0123456789abcdef";
      out << "\\u00" << hex[c >> 4] << hex[c & 15];
    } else {
      out << ch;
    }
  }
  out << '"';
}

// Nanoseconds as microseconds with three decimals (exact).
void write_us(std::ostream& out, Nanoseconds ns) {
  if (ns < 0) {
    out << '-';
    ns = -ns;
  }
  char frac[4] = {static_cast<char>('0' + ns % 1000 / 100), static_cast<char>('0' + ns % 100 / 10),
                  static_cast<char>('0' + ns % 10), 0};
  out << ns / 1000 << '.' << frac;
}

void write_number(std::ostream& out, double v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  out.write(buf, res.ptr - buf);
}

}  // namespace

void write_chrome_trace(std::ostream& out, const std::vector<TraceProcess>& processes) {
  out << "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n";
  bool first = true;
  auto next = [&] {
    if (!first) out << ",\n";
    first = false;
  };
  for (std::size_t pi = 0; pi < processes.size(); ++pi) {
    const TraceProcess& p = processes[pi];
    const std::size_t pid = pi + 1;
    next();
    out << "{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":" << pid << ",\"tid\":0,\"args\":{\"name\":";
    write_string(out, p.name);
    out << "}}";
    next();
    out << "{\"ph\":\"M\",\"name\":\"process_sort_index\",\"pid\":" << pid
        << ",\"tid\":0,\"args\":{\"sort_index\":" << pid << "}}";
    for (std::size_t ti = 0; ti < p.tracks.size(); ++ti) {
      next();
      out << "{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":" << pid << ",\"tid\":" << ti + 1
          << ",\"args\":{\"name\":";
      write_string(out, p.tracks[ti]);
      out << "}}";
      next();
      out << "{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":" << pid << ",\"tid\":" << ti + 1
          << ",\"args\":{\"sort_index\":" << ti + 1 << "}}";
    }
    for (const TraceSlice& s : p.slices) {
      next();
      out << "{\"ph\":\"X\",\"pid\":" << pid << ",\"tid\":" << s.track + 1 << ",\"name\":";
      write_string(out, s.name);
      out << ",\"ts\":";
      write_us(out, s.start);
      out << ",\"dur\":";
      write_us(out, s.end - s.start);
      out << ",\"args\":{\"id\":" << s.id << ",\"kind\":";
      write_string(out, s.name);
      out << ",\"token\":" << s.token << ",\"layer\":" << s.layer << ",\"batch\":" << s.batch
          << ",\"bytes\":" << s.bytes << ",\"gemm_flops\":";
      write_number(out, s.gemm_flops);
      out << ",\"attention_flops\":";
      write_number(out, s.attention_flops);
      out << "}}";
    }
    for (const TraceCounter& c : p.counters) {
      next();
      out << "{\"ph\":\"C\",\"pid\":" << pid << ",\"tid\":0,\"name\":";
      write_string(out, c.name);
      out << ",\"ts\":";
      write_us(out, c.time);
      out << ",\"args\":{";
      for (std::size_t v = 0; v < c.values.size(); ++v) {
        if (v > 0) out << ',';
        write_string(out, c.values[v].first);
        out << ':';
        write_number(out, c.values[v].second);
      }
      out << "}}";
    }
  }
  out << "\n]}\n";
}

void write_chrome_trace(const std::filesystem::path& path, const std::vector<TraceProcess>& processes) {
  std::ofstream out(path, std::ios::binary);
  FLEXGEN_REQUIRE(out.is_open(), "cannot write trace file ", path.string());
  write_chrome_trace(out, processes);
  out.flush();
  FLEXGEN_REQUIRE(out.good(), "error writing trace file ", path.string());
}

}  // namespace flexgen
