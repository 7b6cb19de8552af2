#include "engine/profile/spec_from_measurements.h"

#include <algorithm>
#include <cctype>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/runtime/cuda_workspace.h"

namespace flexgen {
namespace {

std::string version_string(int version) {
  // CUDA encodes 12.4 as 12040.
  return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

std::string gemm_shapes(const std::vector<GemmMeasurement>& gemms, Phase phase) {
  std::string out;
  for (const GemmMeasurement& g : gemms) {
    if (g.phase != phase) continue;
    if (!out.empty()) out += ", ";
    out += std::to_string(g.m) + "x" + std::to_string(g.n) + "x" + std::to_string(g.k);
  }
  return out;
}

std::string attention_shapes(const std::vector<GpuAttentionMeasurement>& attention, Phase phase) {
  std::string out;
  for (const GpuAttentionMeasurement& a : attention) {
    if (a.phase != phase) continue;
    if (!out.empty()) out += ", ";
    out += std::to_string(a.units) + " units x " + std::to_string(a.queries) + " queries x " +
           std::to_string(a.positions) + " positions";
  }
  return out;
}

std::string host_description(const HostMeasurements& host) {
  std::ostringstream d;
  const DiskMeasurement& disk = host.disk;
  d << "disk_read/write_bytes_per_s: " << (disk.direct_io ? "O_DIRECT" : "BUFFERED (the file system refused O_DIRECT)")
    << " through DiskStore in " << disk.directory << ", " << format_bytes(disk.total_bytes)
    << " written then read back in " << format_bytes(disk.transfer_bytes)
    << " transfers; total bytes over total time of each pass. ";
  if (!disk.small_write_seconds.empty()) {
    d << "disk_read/write_latency_s: " << disk.small_write_seconds.size() << " requests of " << disk.small_bytes
      << " bytes at offsets off the 4 KiB blocks, one at a time, written then read back; the median time"
      << " of one less its bytes at the whole-pass rate. ";
  }
  d << "cpu_memory_bytes_per_s: memcpy of " << format_bytes(host.memory.buffer_bytes) << " on "
    << host.memory.threads << " threads, read + written bytes counted, median of "
    << host.memory.copy_bytes_per_s.size() << " passes after a warm-up pass. ";
  if (!host.cpu_attention.empty()) {
    const CpuAttentionMeasurement& a = host.cpu_attention.front();
    d << "cpu_attention_flops_per_s: cpu_decode_attention_f16 (the CUDA backend's delegated attention, fp16 rows) for " << a.units
      << " decode units of head_dim " << a.head_dim << " on " << a.threads
      << " threads, 4 * positions * head_dim FLOPs per unit as the schedule counts them, median over"
      << " positions";
    for (const CpuAttentionMeasurement& c : host.cpu_attention) {
      if (!c.compressed && c.kept == 0) d << " " << c.positions;
    }
    d << " of each one's median of " << a.flops_per_s.size() << " passes (each pass calls the kernel back to back,"
      << " " << a.calls_per_pass << " calls at the first shape, after a warm-up";
    if (a.copies > 1) {
      d << "; the calls cycle through " << a.copies << " copies of the rows, " << format_bytes(a.copies * a.copy_bytes)
        << " at the first shape, so that each reads its rows from memory as a run does, not from the last-level cache";
    }
    d << "). ";
    for (const CpuAttentionMeasurement& c : host.cpu_attention) {
      if (c.compressed && c.kept == 0) {
        d << "cpu_cache_attention_flops_per_s: the same kernel over 4-bit cache rows (dequantized as it reads"
          << " them) at " << c.positions << " positions, median of " << c.flops_per_s.size() << " passes. ";
      }
      if (!c.compressed && c.kept > 0) {
        d << "cpu_sparse_attention_flops_per_s: the same kernel's top-k attention over fp16 rows, " << c.kept
          << " of " << c.positions - 1 << " cached positions kept, 2 * head_dim * (positions + kept + 1) FLOPs"
          << " per unit as the schedule counts them, median of " << c.flops_per_s.size() << " passes. ";
      }
    }
  }
  d << "cpu_memory_bytes: physical memory (sysconf); disk_bytes: free space of " << disk.directory
    << " (statvfs) at the time of the run.";
  return d.str();
}

nlohmann::json samples_json(const std::vector<double>& samples, const std::string& what) {
  return {{"median", median_of(samples, what)}, {"samples", samples}};
}

}  // namespace

std::string default_spec_name(const std::string& device_name) {
  std::string lower;
  for (char c : device_name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string out;
  bool dash = false;
  for (char c : lower) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (keep) {
      if (dash && !out.empty()) out += '-';
      out += c;
      dash = false;
    } else {
      dash = true;
    }
  }
  if (out.rfind("nvidia-", 0) == 0) {
    out = out.substr(7);
  } else if (out == "nvidia") {
    out.clear();
  }
  return (out.empty() ? std::string("gpu") : out) + "-measured";
}

FlopsPerSecond gemm_flops_per_s(const std::vector<GemmMeasurement>& gemms, Phase phase) {
  std::vector<double> per_shape;
  for (const GemmMeasurement& g : gemms) {
    if (g.phase != phase) continue;
    per_shape.push_back(median_of(g.flops_per_s, str_cat(phase_name(phase), " GEMM ", g.m, "x", g.n, "x", g.k)));
  }
  return median_of(per_shape, str_cat("the ", phase_name(phase), " GEMM shapes"));
}

FlopsPerSecond gpu_attention_flops_per_s(const std::vector<GpuAttentionMeasurement>& attention,
                                         Phase phase) {
  std::vector<double> per_shape;
  for (const GpuAttentionMeasurement& a : attention) {
    if (a.phase != phase) continue;
    per_shape.push_back(median_of(
        a.flops_per_s, str_cat(phase_name(phase), " GPU attention at ", a.positions, " positions")));
  }
  return median_of(per_shape, str_cat("the ", phase_name(phase), " GPU attention shapes"));
}

FlopsPerSecond cpu_attention_flops_per_s(const std::vector<CpuAttentionMeasurement>& attention, bool compressed,
                                         bool sparse) {
  std::vector<double> per_shape;
  for (const CpuAttentionMeasurement& a : attention) {
    if (a.compressed != compressed || (a.kept > 0) != sparse) continue;
    per_shape.push_back(
        median_of(a.flops_per_s, str_cat("CPU attention at ", a.positions, " positions")));
  }
  return median_of(per_shape, "the CPU attention shapes");
}

BytesPerSecond gpu_dequant_bytes_per_s(const std::vector<DequantMeasurement>& dequant, std::string_view kind) {
  std::vector<double> per_shape;
  for (const DequantMeasurement& d : dequant) {
    if (d.what.starts_with(kind)) per_shape.push_back(median_of(d.bytes_per_s, "4-bit dequantization of " + d.what));
  }
  return per_shape.empty() ? 0.0 : median_of(per_shape, "the 4-bit dequantization shapes");
}

Seconds gpu_task_overhead_s(const TaskOverheadMeasurement& overhead) {
  return median_of(overhead.seconds, "the GPU compute tasks of the tiny model");
}

Seconds disk_request_latency_s(const std::vector<double>& seconds, Bytes bytes, BytesPerSecond rate) {
  if (seconds.empty()) return 0.0;
  FLEXGEN_REQUIRE(rate > 0, "profile: no disk rate to take the small requests' bytes off");
  return std::max(0.0, median_of(seconds, "the small disk requests") - static_cast<double>(bytes) / rate);
}

BytesPerSecond gpu_memory_bytes_per_s(const GpuMemoryMeasurement& memory) {
  return std::max(median_of(memory.memcpy_bytes_per_s, "GPU device-to-device cudaMemcpy"),
                  median_of(memory.copy_kernel_bytes_per_s, "the GPU copy kernel"));
}

double h2d_check_ratio(const GpuMeasurements& gpu) {
  const double plain = gpu.plain_loop.h2d_bytes_per_s;
  FLEXGEN_REQUIRE(plain > 0, "profile: no plain cudaMemcpyAsync loop figure for the h2d check");
  return median_of(gpu.transfers.h2d_pinned_bytes_per_s, "pinned h2d copies") / plain;
}

HardwareSpec spec_from_measurements(const HostMeasurements& host, const GpuMeasurements& gpu,
                                    const std::string& name, const std::string& date) {
  HardwareSpec spec;
  spec.name = name;
  // What a run can allocate (older measurement files without the free figure: the total).
  spec.gpu_memory_bytes =
      std::max<Bytes>(0, (gpu.free_memory_bytes > 0 ? gpu.free_memory_bytes : gpu.memory_bytes) - kCudaGpuReserve);
  spec.cpu_memory_bytes = host.memory_bytes;
  spec.disk_bytes = host.disk_free_bytes;
  spec.h2d_bytes_per_s = median_of(gpu.transfers.h2d_pinned_bytes_per_s, "pinned h2d copies");
  spec.d2h_bytes_per_s = median_of(gpu.transfers.d2h_pinned_bytes_per_s, "pinned d2h copies");
  spec.disk_read_bytes_per_s = host.disk.read_bytes_per_s;
  spec.disk_write_bytes_per_s = host.disk.write_bytes_per_s;
  spec.disk_read_latency_s =
      disk_request_latency_s(host.disk.small_read_seconds, host.disk.small_bytes, host.disk.read_bytes_per_s);
  spec.disk_write_latency_s =
      disk_request_latency_s(host.disk.small_write_seconds, host.disk.small_bytes, host.disk.write_bytes_per_s);
  spec.gpu_gemm_prefill_flops_per_s = gemm_flops_per_s(gpu.gemms, Phase::kPrefill);
  spec.gpu_gemm_decode_flops_per_s = gemm_flops_per_s(gpu.gemms, Phase::kDecode);
  spec.gpu_attention_prefill_flops_per_s = gpu_attention_flops_per_s(gpu.attention, Phase::kPrefill);
  spec.gpu_attention_decode_flops_per_s = gpu_attention_flops_per_s(gpu.attention, Phase::kDecode);
  spec.cpu_attention_flops_per_s = cpu_attention_flops_per_s(host.cpu_attention);
  const auto have = [&](bool compressed, bool sparse) {
    return std::any_of(host.cpu_attention.begin(), host.cpu_attention.end(), [&](const CpuAttentionMeasurement& a) {
      return a.compressed == compressed && (a.kept > 0) == sparse;
    });
  };
  spec.cpu_cache_attention_flops_per_s = have(true, false) ? cpu_attention_flops_per_s(host.cpu_attention, true) : 0.0;
  spec.cpu_sparse_attention_flops_per_s =
      have(false, true) ? cpu_attention_flops_per_s(host.cpu_attention, false, true) : 0.0;
  spec.gpu_memory_bytes_per_s = gpu_memory_bytes_per_s(gpu.memory);
  spec.cpu_memory_bytes_per_s = median_of(host.memory.copy_bytes_per_s, "host memcpy passes");
  spec.gpu_dequant_bytes_per_s = gpu_dequant_bytes_per_s(gpu.dequant, "weight");
  spec.gpu_cache_dequant_bytes_per_s = gpu_dequant_bytes_per_s(gpu.dequant, "cache");
  if (!gpu.task_overhead.seconds.empty()) spec.gpu_task_overhead_s = gpu_task_overhead_s(gpu.task_overhead);

  std::ostringstream d;
  d << "Measured by `flexgen profile` on " << date << " (UTC): " << gpu.device_name
    << " (compute capability " << gpu.compute_capability_major << "." << gpu.compute_capability_minor
    << ", " << gpu.multiprocessors << " SMs), driver API " << version_string(gpu.driver_version)
    << ", CUDA runtime " << version_string(gpu.runtime_version) << ", cuBLAS " << gpu.cublas_version
    << "; host with " << host.hardware_threads << " hardware threads and "
    << format_bytes(host.memory_bytes) << " of memory. Raw samples are in the measurements file. ";
  d << "h2d/d2h_bytes_per_s: pinned (cudaMallocHost) cudaMemcpyAsync of "
    << format_bytes(gpu.transfers.transfer_bytes) << ", one direction at a time, median of "
    << gpu.transfers.repeats << " copies timed with CUDA events after warm-up (a plain loop of "
    << gpu.plain_loop.iterations << " copies measured h2d "
    << gpu.plain_loop.h2d_bytes_per_s / 1e9 << " GB/s in the same run). ";
  d << "gpu_gemm_*: cublasGemmEx fp16 in and out, fp32 accumulation, 2mnk FLOPs, median over the"
    << " shapes (m x n x k) of each shape's median; prefill " << gemm_shapes(gpu.gemms, Phase::kPrefill)
    << "; decode " << gemm_shapes(gpu.gemms, Phase::kDecode) << ". ";
  d << "gpu_attention_*: head_dim " << (gpu.attention.empty() ? 0 : gpu.attention.front().head_dim)
    << ", fp16, FLOPs as the schedule counts them (prefill: causal pairs only, 2 * head_dim * S * (S + 1)"
    << " per unit; decode: 4 * positions * head_dim per unit); prefill: cublasGemmStridedBatchedEx Q.K^T,"
    << " a row softmax kernel and P.V, " << attention_shapes(gpu.attention, Phase::kPrefill)
    << "; decode: the engine's decode_attention kernel, " << attention_shapes(gpu.attention, Phase::kDecode)
    << ". ";
  if (!gpu.dequant.empty()) {
    d << "gpu_dequant_bytes_per_s and gpu_cache_dequant_bytes_per_s: the engine's 4-bit dequantization"
      << " kernels, dense fp16 bytes written per second, median over the weight shapes (resp. the cache"
      << "-row shapes) of each shape's median:";
    for (const DequantMeasurement& q : gpu.dequant) d << " " << q.what << ";";
    d << " ";
  }
  if (!gpu.task_overhead.seconds.empty()) {
    d << "gpu_task_overhead_s: median time of the decode compute and compute_post tasks of the engine's"
      << " CUDA runtime (CUDA events) on a tiny model (" << gpu.task_overhead.model << "), "
      << gpu.task_overhead.seconds.size() << " tasks. ";
  }
  d << "gpu_memory_bytes_per_s: the better of cudaMemcpy device to device and a copy kernel over "
    << format_bytes(gpu.memory.buffer_bytes) << " buffers, read + written bytes counted. "
    << "gpu_memory_bytes: cudaMemGetInfo free once a context and a cuBLAS handle exist (of " << format_bytes(gpu.memory_bytes) << " total), less the "
    << format_bytes(kCudaGpuReserve) << " the CUDA backend leaves for the CUDA runtime and cuBLAS. ";
  d << host_description(host);
  spec.description = d.str();
  spec.validate();
  return spec;
}

nlohmann::json partial_spec_json(const HostMeasurements& host, const std::string& name,
                                 const std::string& date) {
  FLEXGEN_REQUIRE(!name.empty(), "profile: the spec name must not be empty");
  const std::string description =
      "PARTIAL, host parts only (no GPU): measured by `flexgen profile --host-only` on " + date +
      " (UTC); host with " + std::to_string(host.hardware_threads) + " hardware threads. " +
      host_description(host);
  return {{"name", name},
          {"description", description},
          {"cpu_memory_bytes", host.memory_bytes},
          {"disk_bytes", host.disk_free_bytes},
          {"disk_read_bytes_per_s", host.disk.read_bytes_per_s},
          {"disk_write_bytes_per_s", host.disk.write_bytes_per_s},
          {"cpu_attention_flops_per_s", cpu_attention_flops_per_s(host.cpu_attention)},
          {"cpu_memory_bytes_per_s", median_of(host.memory.copy_bytes_per_s, "host memcpy passes")},
          {"disk_read_latency_s",
           disk_request_latency_s(host.disk.small_read_seconds, host.disk.small_bytes, host.disk.read_bytes_per_s)},
          {"disk_write_latency_s",
           disk_request_latency_s(host.disk.small_write_seconds, host.disk.small_bytes, host.disk.write_bytes_per_s)}};
}

nlohmann::json measurements_json(const HostMeasurements& host, const GpuMeasurements* gpu,
                                 const std::string& name, const std::string& date) {
  nlohmann::json cpu_attention = nlohmann::json::array();
  for (const CpuAttentionMeasurement& a : host.cpu_attention) {
    cpu_attention.push_back({{"units", a.units},
                             {"head_dim", a.head_dim},
                             {"positions", a.positions},
                             {"threads", a.threads},
                             {"compressed", a.compressed},
                             {"kept", a.kept},
                             {"calls_per_pass", a.calls_per_pass},
                             {"copies", a.copies},
                             {"copy_bytes", a.copy_bytes},
                             {"flops_per_s", samples_json(a.flops_per_s, "CPU attention")}});
  }
  const DiskMeasurement& disk = host.disk;
  nlohmann::json j = {
      {"name", name},
      {"date", date},
      {"host",
       {{"memory_bytes", host.memory_bytes},
        {"disk_free_bytes", host.disk_free_bytes},
        {"hardware_threads", host.hardware_threads},
        {"disk",
         {{"directory", disk.directory},
          {"direct_io", disk.direct_io},
          {"total_bytes", disk.total_bytes},
          {"transfer_bytes", disk.transfer_bytes},
          {"write_bytes_per_s", disk.write_bytes_per_s},
          {"read_bytes_per_s", disk.read_bytes_per_s},
          {"write_transfer_bytes_per_s", samples_json(disk.write_transfer_bytes_per_s, "disk writes")},
          {"read_transfer_bytes_per_s", samples_json(disk.read_transfer_bytes_per_s, "disk reads")},
          {"small_bytes", disk.small_bytes},
          {"small_write_seconds", disk.small_write_seconds},
          {"small_read_seconds", disk.small_read_seconds}}},
        {"memory",
         {{"buffer_bytes", host.memory.buffer_bytes},
          {"threads", host.memory.threads},
          {"copy_bytes_per_s", samples_json(host.memory.copy_bytes_per_s, "host memcpy")}}},
        {"cpu_attention", cpu_attention}}}};
  if (gpu == nullptr) return j;

  const TransferMeasurement& t = gpu->transfers;
  nlohmann::json gemms = nlohmann::json::array();
  for (const GemmMeasurement& g : gpu->gemms) {
    gemms.push_back({{"phase", phase_name(g.phase)},
                     {"m", g.m},
                     {"n", g.n},
                     {"k", g.k},
                     {"flops_per_s", samples_json(g.flops_per_s, "GEMM")}});
  }
  nlohmann::json attention = nlohmann::json::array();
  for (const GpuAttentionMeasurement& a : gpu->attention) {
    attention.push_back({{"phase", phase_name(a.phase)},
                         {"units", a.units},
                         {"queries", a.queries},
                         {"positions", a.positions},
                         {"head_dim", a.head_dim},
                         {"flops_per_s", samples_json(a.flops_per_s, "GPU attention")},
                         {"gemm_flops_per_s", samples_json(a.gemm_flops_per_s, "GPU attention GEMMs")}});
  }
  nlohmann::json dequant = nlohmann::json::array();
  for (const DequantMeasurement& d : gpu->dequant) {
    dequant.push_back({{"what", d.what},
                       {"dense_bytes", d.dense_bytes},
                       {"bytes_per_s", samples_json(d.bytes_per_s, "4-bit dequantization")}});
  }
  const double ratio = h2d_check_ratio(*gpu);
  j["gpu"] = {
      {"device", gpu->device},
      {"name", gpu->device_name},
      {"compute_capability", std::to_string(gpu->compute_capability_major) + "." +
                                 std::to_string(gpu->compute_capability_minor)},
      {"multiprocessors", gpu->multiprocessors},
      {"driver_version", gpu->driver_version},
      {"runtime_version", gpu->runtime_version},
      {"cublas_version", gpu->cublas_version},
      {"memory_bytes", gpu->memory_bytes},
      {"free_memory_bytes", gpu->free_memory_bytes},
      {"transfers",
       {{"transfer_bytes", t.transfer_bytes},
        {"repeats", t.repeats},
        {"h2d_pinned_bytes_per_s", samples_json(t.h2d_pinned_bytes_per_s, "h2d pinned")},
        {"d2h_pinned_bytes_per_s", samples_json(t.d2h_pinned_bytes_per_s, "d2h pinned")},
        {"h2d_pageable_bytes_per_s", samples_json(t.h2d_pageable_bytes_per_s, "h2d pageable")},
        {"d2h_pageable_bytes_per_s", samples_json(t.d2h_pageable_bytes_per_s, "d2h pageable")},
        {"duplex_h2d_pinned_bytes_per_s", samples_json(t.duplex_h2d_pinned_bytes_per_s, "duplex h2d pinned")},
        {"duplex_d2h_pinned_bytes_per_s", samples_json(t.duplex_d2h_pinned_bytes_per_s, "duplex d2h pinned")},
        {"duplex_h2d_pageable_bytes_per_s", samples_json(t.duplex_h2d_pageable_bytes_per_s, "duplex h2d pageable")},
        {"duplex_d2h_pageable_bytes_per_s", samples_json(t.duplex_d2h_pageable_bytes_per_s, "duplex d2h pageable")}}},
      {"h2d_check",
       {{"plain_loop_transfer_bytes", gpu->plain_loop.transfer_bytes},
        {"plain_loop_iterations", gpu->plain_loop.iterations},
        {"plain_loop_h2d_bytes_per_s", gpu->plain_loop.h2d_bytes_per_s},
        {"profile_h2d_bytes_per_s", median_of(t.h2d_pinned_bytes_per_s, "h2d pinned")},
        {"ratio", ratio},
        {"within_10_percent", ratio >= 0.9 && ratio <= 1.1}}},
      {"memory",
       {{"buffer_bytes", gpu->memory.buffer_bytes},
        {"memcpy_bytes_per_s", samples_json(gpu->memory.memcpy_bytes_per_s, "GPU memcpy")},
        {"copy_kernel_bytes_per_s", samples_json(gpu->memory.copy_kernel_bytes_per_s, "GPU copy kernel")}}},
      {"gemms", gemms},
      {"attention", attention},
      {"dequant", dequant}};
  if (!gpu->task_overhead.seconds.empty()) {
    j["gpu"]["task_overhead"] = {{"model", gpu->task_overhead.model},
                                 {"seconds", samples_json(gpu->task_overhead.seconds, "GPU task overhead")}};
  }
  return j;
}

}  // namespace flexgen
