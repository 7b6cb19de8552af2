#pragma once
// Reduction of raw profile measurements to a HardwareSpec. Pure functions of their inputs (no
// clock, no device), so they are tested with hand-made numbers.
//
// Field by field:
//   h2d_bytes_per_s / d2h_bytes_per_s   median of the pinned one-direction copies
//   disk_read/write_bytes_per_s         whole-pass rates (total bytes / total time)
//   disk_read/write_latency_s           median time of the small requests less their bytes at the
//                                       whole-pass rate, at least 0 (left 0 when not measured)
//   gpu_gemm_{prefill,decode}_flops_per_s   median over the phase's GEMM shapes of each shape's
//                                       median
//   gpu_attention_{prefill,decode}_flops_per_s   likewise over the attention shapes
//   cpu_attention_flops_per_s           median over the positions of each one's median
//   cpu_cache_attention_flops_per_s     the same kernel over 4-bit cache rows (0 without)
//   cpu_sparse_attention_flops_per_s    the same kernel's top-k attention over fp16 rows (0 without)
//   gpu_memory_bytes_per_s              the larger of the medians of cudaMemcpy device-to-device
//                                       and of the copy kernel
//   cpu_memory_bytes_per_s              median of the memcpy passes
//   gpu_dequant_bytes_per_s             median over the weight dequantization shapes of each one's
//                                       median (left 0 when nothing was measured)
//   gpu_cache_dequant_bytes_per_s       likewise over the cache-row shapes (left 0 without any)
//   gpu_task_overhead_s                 median of the tiny model's decode compute task times
//                                       (left 0 when nothing was measured)
//   gpu_memory_bytes                    cudaMemGetInfo free once a context and a cuBLAS handle
//                                       exist (what a run can allocate)
//   cpu_memory_bytes                    physical memory
//   disk_bytes                          free space of the offload directory's file system
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "engine/core/hardware_spec.h"
#include "engine/profile/measurements.h"

namespace flexgen {

// "NVIDIA H100 80GB HBM3" -> "h100-80gb-hbm3-measured": lower case, a leading "nvidia" dropped,
// every run of other characters than [a-z0-9] made one '-'. "gpu-measured" for an empty name.
std::string default_spec_name(const std::string& device_name);

// The reductions (each throws flexgen::Error naming what is missing when there is nothing to
// reduce).
FlopsPerSecond gemm_flops_per_s(const std::vector<GemmMeasurement>& gemms, Phase phase);
FlopsPerSecond gpu_attention_flops_per_s(const std::vector<GpuAttentionMeasurement>& attention,
                                         Phase phase);
// Over the dense fp16 measurements, or with `compressed` the 4-bit-cache ones, or with `sparse`
// the top-k ones (of either kind of rows, as `compressed` says).
FlopsPerSecond cpu_attention_flops_per_s(const std::vector<CpuAttentionMeasurement>& attention,
                                         bool compressed = false, bool sparse = false);
BytesPerSecond gpu_memory_bytes_per_s(const GpuMemoryMeasurement& memory);
// The fixed time of one small disk request: the median of `seconds` less `bytes` at `rate`, at
// least 0; 0 when `seconds` is empty.
Seconds disk_request_latency_s(const std::vector<double>& seconds, Bytes bytes, BytesPerSecond rate);
// Median over the dequantization shapes of each one's median; median of the task times.
// Median over the shapes whose `what` starts with `kind` ("weight" or "cache") of each one's median;
// 0 when there is none.
BytesPerSecond gpu_dequant_bytes_per_s(const std::vector<DequantMeasurement>& dequant, std::string_view kind);
Seconds gpu_task_overhead_s(const TaskOverheadMeasurement& overhead);
// The profile's h2d figure over the plain cudaMemcpyAsync loop's (the 10% check).
double h2d_check_ratio(const GpuMeasurements& gpu);

// The complete spec, validated. `date` is written into the description (YYYY-MM-DD).
HardwareSpec spec_from_measurements(const HostMeasurements& host, const GpuMeasurements& gpu,
                                    const std::string& name, const std::string& date);

// Without a GPU: the HardwareSpec keys the host parts give (name, description, cpu_memory_bytes,
// disk_bytes, disk_read/write_bytes_per_s, cpu_attention_flops_per_s, cpu_memory_bytes_per_s).
// Not a complete spec: HardwareSpec::from_json rejects it for the missing GPU fields.
nlohmann::json partial_spec_json(const HostMeasurements& host, const std::string& name,
                                 const std::string& date);

// Every raw number, for the details file: {"name", "date", "host": {...}, "gpu": {...}} (no "gpu"
// when `gpu` is null). Each repeated measurement is {"median": m, "samples": [...]}.
nlohmann::json measurements_json(const HostMeasurements& host, const GpuMeasurements* gpu,
                                 const std::string& name, const std::string& date);

}  // namespace flexgen
