// flexgen profile: measures this machine into a HardwareSpec JSON (docs/profiling.md).
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "engine/cli/command.h"
#include "engine/cli/policy_options.h"
#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/core/hardware_spec.h"
#include "engine/core/units_parse.h"
#include "engine/cuda/device_info.h"
#include "engine/cuda/profile_gpu.h"
#include "engine/profile/profiler.h"
#include "engine/profile/spec_from_measurements.h"
#include "engine/profile/task_overhead.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace flexgen::cli {

namespace {

constexpr const char* kUsage =
    "usage: flexgen profile [--output FILE] [--details FILE] [--name NAME] [--offload-dir DIR]\n"
    "                       [--disk-bytes SIZE] [--quick] [--host-only] [--json]\n\n"
    "Measures this machine into a HardwareSpec JSON (the format of experiments/hardware/*.json):\n"
    "host-to-device and device-to-host bandwidth, disk read and write with O_DIRECT, GPU GEMM and\n"
    "attention throughput at prefill and decode shapes, GPU and host memory bandwidth, CPU\n"
    "attention throughput, and the capacities. Progress and a table go to stderr; the spec goes to\n"
    "--output (written atomically) or to stdout.\n\n"
    "Every raw number (pinned and pageable, both directions at once, each GEMM shape, the plain\n"
    "cudaMemcpyAsync loop that checks the h2d figure) goes to a separate measurements file, because\n"
    "the spec's parser accepts only its own keys: --details FILE, by default\n"
    "<output's directory>/measurements/<output's name> when --output is given.\n\n"
    "Without a GPU the command stops before measuring anything, unless --host-only is given: then\n"
    "only the host fields are measured and written (a partial spec that the strict parser rejects\n"
    "until the GPU fields are added).";

std::string utc_date() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[16];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%d", &tm);
  return buffer;
}

std::string temp_name_for(const fs::path& path) {
  return path.string() + ".tmp." + std::to_string(::getpid());
}

// Fails now, before minutes of measuring, when `path` cannot be written: creates and removes the
// temporary file the atomic write will use.
void check_writable(const fs::path& path, const char* flag) {
  FLEXGEN_REQUIRE(!fs::is_directory(path), "cannot write ", flag, " ", path.string(),
                  ": it is a directory");
  const std::string tmp = temp_name_for(path);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    fail("cannot write ", flag, " ", path.string(), ": ", std::strerror(errno));
  }
  std::fclose(f);
  std::remove(tmp.c_str());
}

// Writes `text` to `path` through a temporary file in the same directory and a rename, so that a
// reader never sees half a file.
void write_atomically(const fs::path& path, const std::string& text, const char* flag) {
  const std::string tmp = temp_name_for(path);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      fail("cannot write ", flag, " ", path.string(), ": ", std::strerror(errno));
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    fail("cannot write ", flag, " ", path.string(), ": rename failed: ", std::strerror(err));
  }
}

// The spec's keys in the order of the hand-written files in experiments/hardware/ (name first,
// then capacities, links, compute rates, memory bandwidths) rather than nlohmann's sorted order.
std::string spec_text(const nlohmann::json& spec) {
  static const char* const kOrder[] = {
      "name", "description", "gpu_memory_bytes", "cpu_memory_bytes", "disk_bytes",
      "h2d_bytes_per_s", "d2h_bytes_per_s", "disk_read_bytes_per_s", "disk_write_bytes_per_s",
      "gpu_gemm_prefill_flops_per_s", "gpu_gemm_decode_flops_per_s",
      "gpu_attention_prefill_flops_per_s", "gpu_attention_decode_flops_per_s",
      "cpu_attention_flops_per_s", "gpu_memory_bytes_per_s", "cpu_memory_bytes_per_s"};
  nlohmann::ordered_json ordered;
  for (const char* key : kOrder) {
    if (spec.contains(key)) ordered[key] = spec[key];
  }
  for (const auto& [key, value] : spec.items()) {
    if (!ordered.contains(key)) ordered[key] = value;
  }
  return ordered.dump(2) + "\n";
}

std::string fixed(double value, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << value;
  return s.str();
}

std::string gb_per_s(double bytes_per_s) { return fixed(bytes_per_s / 1e9, 2) + " GB/s"; }
std::string tflops(double flops_per_s) { return fixed(flops_per_s / 1e12, 3) + " TFLOP/s"; }

void table_row(std::ostream& out, const std::string& key, const std::string& value,
               const std::string& note) {
  std::string k = key;
  k.resize(std::max<std::size_t>(k.size(), 36), ' ');
  std::string v = value;
  v.resize(std::max<std::size_t>(v.size(), 18), ' ');
  out << "  " << k << v << note << "\n";
}

double med(const std::vector<double>& samples) { return median_of(samples, "the table"); }

void print_host_rows(std::ostream& out, const HostMeasurements& host) {
  table_row(out, "cpu_memory_bytes", format_bytes(host.memory_bytes), "physical memory");
  table_row(out, "disk_bytes", format_bytes(host.disk_free_bytes), "free in " + host.disk.directory);
  const std::string io = host.disk.direct_io ? "O_DIRECT" : "BUFFERED (O_DIRECT refused)";
  table_row(out, "disk_read_bytes_per_s", gb_per_s(host.disk.read_bytes_per_s), io);
  table_row(out, "disk_write_bytes_per_s", gb_per_s(host.disk.write_bytes_per_s), io);
  if (!host.disk.small_write_seconds.empty()) {
    const std::string small = format_bytes(host.disk.small_bytes) + " requests at unaligned offsets, median ";
    auto latency_row = [&](const char* key, const std::vector<double>& seconds, double rate) {
      table_row(out, key, fixed(1e6 * disk_request_latency_s(seconds, host.disk.small_bytes, rate), 1) + " us",
                small + fixed(1e6 * med(seconds), 1) + " us");
    };
    latency_row("disk_read_latency_s", host.disk.small_read_seconds, host.disk.read_bytes_per_s);
    latency_row("disk_write_latency_s", host.disk.small_write_seconds, host.disk.write_bytes_per_s);
  }
  std::string per_positions;
  for (const CpuAttentionMeasurement& a : host.cpu_attention) {
    if (a.compressed || a.kept > 0) continue;
    per_positions += (per_positions.empty() ? "" : ", ") + std::to_string(a.positions) + ": " +
                     fixed(med(a.flops_per_s) / 1e9, 1);
  }
  table_row(out, "cpu_attention_flops_per_s", tflops(cpu_attention_flops_per_s(host.cpu_attention)),
            "GFLOP/s by positions " + per_positions);
  for (const CpuAttentionMeasurement& a : host.cpu_attention) {
    if (a.compressed && a.kept == 0) {
      table_row(out, "cpu_cache_attention_flops_per_s", tflops(cpu_attention_flops_per_s(host.cpu_attention, true)),
                "the same over 4-bit cache rows, " + std::to_string(a.positions) + " positions");
    }
    if (!a.compressed && a.kept > 0) {
      table_row(out, "cpu_sparse_attention_flops_per_s",
                tflops(cpu_attention_flops_per_s(host.cpu_attention, false, true)),
                "top-k over fp16 rows, " + std::to_string(a.kept) + " of " + std::to_string(a.positions - 1) + " kept");
    }
  }
  table_row(out, "cpu_memory_bytes_per_s", gb_per_s(med(host.memory.copy_bytes_per_s)),
            "memcpy on " + std::to_string(host.memory.threads) + " threads, read + written");
}

void print_table(std::ostream& out, const HardwareSpec& spec, const HostMeasurements& host,
                 const GpuMeasurements& gpu) {
  const TransferMeasurement& t = gpu.transfers;
  out << "flexgen profile: " << spec.name << " (" << gpu.device_name << ")\n";
  table_row(out, "gpu_memory_bytes", format_bytes(spec.gpu_memory_bytes), "cudaMemGetInfo free with a context");
  table_row(out, "h2d_bytes_per_s", gb_per_s(spec.h2d_bytes_per_s),
            "pinned; pageable " + gb_per_s(med(t.h2d_pageable_bytes_per_s)) + ", both ways " +
                gb_per_s(med(t.duplex_h2d_pinned_bytes_per_s)) + " pinned / " +
                gb_per_s(med(t.duplex_h2d_pageable_bytes_per_s)) + " pageable");
  table_row(out, "d2h_bytes_per_s", gb_per_s(spec.d2h_bytes_per_s),
            "pinned; pageable " + gb_per_s(med(t.d2h_pageable_bytes_per_s)) + ", both ways " +
                gb_per_s(med(t.duplex_d2h_pinned_bytes_per_s)) + " pinned / " +
                gb_per_s(med(t.duplex_d2h_pageable_bytes_per_s)) + " pageable");
  table_row(out, "gpu_gemm_prefill_flops_per_s", tflops(spec.gpu_gemm_prefill_flops_per_s),
            "median over shapes");
  table_row(out, "gpu_gemm_decode_flops_per_s", tflops(spec.gpu_gemm_decode_flops_per_s),
            "median over shapes");
  table_row(out, "gpu_attention_prefill_flops_per_s", tflops(spec.gpu_attention_prefill_flops_per_s),
            "causal FLOPs as the schedule counts");
  table_row(out, "gpu_attention_decode_flops_per_s", tflops(spec.gpu_attention_decode_flops_per_s),
            "median over positions");
  table_row(out, "gpu_memory_bytes_per_s", gb_per_s(spec.gpu_memory_bytes_per_s),
            "cudaMemcpy " + gb_per_s(med(gpu.memory.memcpy_bytes_per_s)) + ", kernel " +
                gb_per_s(med(gpu.memory.copy_kernel_bytes_per_s)));
  if (spec.gpu_dequant_bytes_per_s > 0) {
    table_row(out, "gpu_dequant_bytes_per_s", gb_per_s(spec.gpu_dequant_bytes_per_s),
              "4-bit weights to fp16, dense bytes written, median over shapes");
  }
  if (spec.gpu_cache_dequant_bytes_per_s > 0) {
    table_row(out, "gpu_cache_dequant_bytes_per_s", gb_per_s(spec.gpu_cache_dequant_bytes_per_s),
              "4-bit cache rows to fp16, dense bytes written");
  }
  if (spec.gpu_task_overhead_s > 0) {
    table_row(out, "gpu_task_overhead_s", fixed(spec.gpu_task_overhead_s * 1e6, 1) + " us",
              "a tiny model's decode compute tasks, median");
  }
  print_host_rows(out, host);
  for (const GemmMeasurement& g : gpu.gemms) {
    table_row(out, str_cat("  gemm ", phase_name(g.phase), " ", g.m, "x", g.n, "x", g.k),
              tflops(med(g.flops_per_s)), "");
  }
  const double ratio = h2d_check_ratio(gpu);
  out << "  h2d check: a plain pinned cudaMemcpyAsync loop measured "
      << gb_per_s(gpu.plain_loop.h2d_bytes_per_s) << "; profile / loop = " << fixed(ratio, 3)
      << (ratio >= 0.9 && ratio <= 1.1 ? " (within 10%)" : " (WARNING: not within 10%)") << "\n";
}

}  // namespace

int run_profile(const std::vector<std::string>& args) {
  std::string output, details, name;
  std::string offload_dir = (fs::temp_directory_path() / "flexgen-offload").string();
  std::string disk_bytes_text;
  int device = 0;
  bool quick = false, host_only = false, json = false;

  po::options_description desc("Options");
  desc.add_options()("help,h", "show this help")
      ("output,o", po::value(&output), "write the HardwareSpec JSON here (default: stdout)")
      ("details", po::value(&details),
       "write every raw measurement here (default with --output: <dir>/measurements/<name>)")
      ("name", po::value(&name),
       "the spec's name (default: the GPU's name in lower case, e.g. h100-80gb-hbm3-measured)")
      ("offload-dir", po::value(&offload_dir)->default_value(offload_dir),
       "directory whose disk is measured (as generate's --offload-dir)")
      ("disk-bytes", po::value(&disk_bytes_text),
       "bytes written and read back by the disk test (default 2GiB, 256MiB with --quick)")
      ("device", po::value(&device)->default_value(device), "the GPU to measure")
      ("quick", po::bool_switch(&quick), "smaller sizes and fewer repeats (about 15 s)")
      ("host-only", po::bool_switch(&host_only),
       "without a GPU: measure the host parts and write a partial spec")
      ("json", po::bool_switch(&json),
       "print {\"hardware\": spec, \"measurements\": ...} on stdout");
  po::variables_map vm;
  if (!parse_command_line(args, kUsage, desc, vm)) return 0;

  // Every check that can fail without measuring comes first.
  Bytes disk_bytes = quick ? 256 * kMiB : 2 * kGiB;
  if (!disk_bytes_text.empty()) {
    try {
      disk_bytes = parse_bytes(disk_bytes_text);
    } catch (const Error& e) {
      fail("--disk-bytes: ", e.what());
    }
    FLEXGEN_REQUIRE(disk_bytes >= kMiB, "--disk-bytes must be at least 1 MiB (got ",
                    disk_bytes_text, ")");
    disk_bytes = disk_bytes / (4 * kKiB) * (4 * kKiB);  // whole O_DIRECT blocks
  }
  FLEXGEN_REQUIRE(device >= 0, "--device must not be negative (got ", device, ")");
  const bool gpu = !host_only;
  if (gpu && !gpu_profiling_available()) {
    fail("no GPU: the GPU parts of the profile need the CUDA backend and a device (",
         cuda_backend_built() ? "none is visible" : "this build has no CUDA backend",
         "); --host-only measures the host parts alone");
  }
  if (details.empty() && !output.empty()) {
    const fs::path out_path(output);
    details = (out_path.parent_path() / "measurements" / out_path.filename()).string();
  }
  if (!output.empty()) check_writable(output, "--output");
  if (!details.empty()) {
    const fs::path parent = fs::path(details).parent_path();
    std::error_code ec;
    if (!parent.empty()) fs::create_directories(parent, ec);
    check_writable(details, "--details");
  }

  auto progress = [](const std::string& line) { std::cerr << "flexgen profile: " << line << "\n"; };
  HostProfileOptions host_options =
      quick ? HostProfileOptions::quick(offload_dir) : HostProfileOptions::full(offload_dir);
  host_options.disk_bytes = disk_bytes;
  host_options.progress = progress;
  const HostMeasurements host = profile_host(host_options);
  const std::string date = utc_date();

  nlohmann::json spec_json;
  nlohmann::json measurements;
  if (gpu) {
    GpuProfileOptions gpu_options = quick ? GpuProfileOptions::quick() : GpuProfileOptions::full();
    gpu_options.device = device;
    gpu_options.progress = progress;
    GpuMeasurements gpu_m = profile_gpu(gpu_options);
    progress("GPU task overhead: the engine's CUDA runtime on a tiny model");
    gpu_m.task_overhead = measure_task_overhead(device);
    if (name.empty()) name = default_spec_name(gpu_m.device_name);
    const HardwareSpec spec = spec_from_measurements(host, gpu_m, name, date);
    spec_json = spec.to_json();
    // What is written must read back as the same spec.
    FLEXGEN_REQUIRE(HardwareSpec::from_json(spec_json, "profile output") == spec,
                    "profile: the spec does not read back as written");
    measurements = measurements_json(host, &gpu_m, name, date);
    print_table(std::cerr, spec, host, gpu_m);
  } else {
    if (name.empty()) name = "host-partial";
    spec_json = partial_spec_json(host, name, date);
    measurements = measurements_json(host, nullptr, name, date);
    std::cerr << "flexgen profile: " << name << " (host parts only: a PARTIAL spec)\n";
    print_host_rows(std::cerr, host);
  }

  const std::string text = spec_text(spec_json);
  if (!output.empty()) {
    write_atomically(output, text, "--output");
    std::cerr << "flexgen profile: wrote " << output << "\n";
  }
  if (!details.empty()) {
    write_atomically(details, measurements.dump(2) + "\n", "--details");
    std::cerr << "flexgen profile: wrote " << details << "\n";
  }
  if (json) {
    std::cout << nlohmann::json{{"hardware", spec_json}, {"measurements", measurements}}.dump(2) << "\n";
  } else if (output.empty()) {
    std::cout << text;
  }
  return 0;
}

}  // namespace flexgen::cli
