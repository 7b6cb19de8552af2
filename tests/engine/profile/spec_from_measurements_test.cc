#include "engine/profile/spec_from_measurements.h"

#include <functional>
#include <limits>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/core/error.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected flexgen::Error";
  return "";
}

// A hand-made measurement set; the expected reductions are worked out next to each number.
HostMeasurements fake_host() {
  HostMeasurements h;
  h.memory_bytes = 137438953472;  // 128 GiB
  h.disk_free_bytes = 60000000000;
  h.hardware_threads = 16;
  h.disk.directory = "/ssd/offload";
  h.disk.direct_io = true;
  h.disk.total_bytes = 2147483648;
  h.disk.transfer_bytes = 67108864;
  h.disk.write_bytes_per_s = 1.5e9;
  h.disk.read_bytes_per_s = 3e9;
  h.disk.write_transfer_bytes_per_s = {1.4e9, 1.6e9};
  h.disk.read_transfer_bytes_per_s = {3e9};
  h.memory.buffer_bytes = 1073741824;
  h.memory.threads = 16;
  h.memory.copy_bytes_per_s = {80e9, 100e9, 90e9, 70e9};  // sorted 70 80 90 100: median 85e9
  // Medians 2e10 (of 1e10, 3e10) and 5e10; their median: 3.5e10.
  h.cpu_attention = {{1024, 128, 512, 16, {1e10, 3e10}}, {1024, 128, 2048, 16, {5e10}}};
  return h;
}

GpuMeasurements fake_gpu() {
  GpuMeasurements g;
  g.device_name = "NVIDIA H100 80GB HBM3";
  g.compute_capability_major = 9;
  g.multiprocessors = 132;
  g.driver_version = 13000;
  g.runtime_version = 13000;
  g.cublas_version = 130000;
  g.memory_bytes = 85520809984;
  g.transfers.transfer_bytes = 268435456;
  g.transfers.repeats = 3;
  g.transfers.h2d_pinned_bytes_per_s = {50e9, 52e9, 51e9};  // median 51e9
  g.transfers.d2h_pinned_bytes_per_s = {40e9, 44e9};        // median 42e9
  g.transfers.h2d_pageable_bytes_per_s = {20e9};
  g.transfers.d2h_pageable_bytes_per_s = {18e9};
  g.transfers.duplex_h2d_pinned_bytes_per_s = {45e9};
  g.transfers.duplex_d2h_pinned_bytes_per_s = {40e9};
  g.transfers.duplex_h2d_pageable_bytes_per_s = {15e9};
  g.transfers.duplex_d2h_pageable_bytes_per_s = {14e9};
  g.plain_loop = {268435456, 10, 50e9};  // profile / loop = 51 / 50 = 1.02
  g.memory.buffer_bytes = 1073741824;
  g.memory.memcpy_bytes_per_s = {2.5e12, 2.7e12, 2.6e12};  // median 2.6e12
  g.memory.copy_kernel_bytes_per_s = {2.9e12};             // larger: 2.9e12
  // Prefill shape medians 200e12, 400e12, 550e12: median 400e12.
  // Decode shape medians 15e12 and 30e12: median 22.5e12.
  g.gemms = {{Phase::kPrefill, 8192, 4096, 4096, {100e12, 300e12, 200e12}},
             {Phase::kDecode, 32, 28672, 7168, {10e12, 20e12}},
             {Phase::kPrefill, 8192, 16384, 4096, {400e12}},
             {Phase::kPrefill, 8192, 4096, 16384, {600e12, 500e12}},
             {Phase::kDecode, 256, 28672, 7168, {30e12}}};
  // Prefill: one shape, 100e12. Decode medians 2e12 and 5e12: 3.5e12.
  g.attention = {{Phase::kPrefill, 1024, 512, 512, 128, {100e12}, {200e12}},
                 {Phase::kDecode, 2048, 1, 512, 128, {1e12, 3e12, 2e12}, {1e12, 3e12, 2e12}},
                 {Phase::kDecode, 2048, 1, 2048, 128, {5e12}, {5e12}}};
  return g;
}

TEST(ProfileMedian, OddAndEvenCounts) {
  EXPECT_DOUBLE_EQ(median_of({3, 1, 2}, "x"), 2.0);
  EXPECT_DOUBLE_EQ(median_of({4, 1, 3, 2}, "x"), 2.5);
  EXPECT_DOUBLE_EQ(median_of({7}, "x"), 7.0);
}

TEST(ProfileMedian, EmptyOrNonFiniteIsAnErrorNamingTheMeasurement) {
  EXPECT_THAT(error_of([] { median_of({}, "pinned h2d copies"); }),
              HasSubstr("no samples for pinned h2d copies"));
  EXPECT_THAT(error_of([] { median_of({1.0, std::numeric_limits<double>::infinity()}, "disk"); }),
              HasSubstr("disk"));
  EXPECT_THAT(error_of([] { median_of({std::numeric_limits<double>::quiet_NaN()}, "gemm"); }),
              HasSubstr("not a finite number"));
}

TEST(ProfileSpecName, FromTheDeviceName) {
  EXPECT_EQ(default_spec_name("NVIDIA H100 80GB HBM3"), "h100-80gb-hbm3-measured");
  EXPECT_EQ(default_spec_name("  NVIDIA  A100-SXM4-80GB "), "a100-sxm4-80gb-measured");
  EXPECT_EQ(default_spec_name("Tesla T4"), "tesla-t4-measured");
  EXPECT_EQ(default_spec_name("NVIDIA"), "gpu-measured");
  EXPECT_EQ(default_spec_name(""), "gpu-measured");
  EXPECT_EQ(default_spec_name("NVIDIAX 1"), "nvidiax-1-measured");
}

TEST(ProfileSpec, ReducesHandMadeMeasurementsToTheExpectedFields) {
  const HardwareSpec spec = spec_from_measurements(fake_host(), fake_gpu(), "h100-test", "2025-01-02");
  EXPECT_EQ(spec.name, "h100-test");
  EXPECT_EQ(spec.gpu_memory_bytes, 85520809984 - 512 * 1048576);  // less the CUDA runtime's reserve
  EXPECT_EQ(spec.cpu_memory_bytes, 137438953472);
  EXPECT_EQ(spec.disk_bytes, 60000000000);
  EXPECT_DOUBLE_EQ(spec.h2d_bytes_per_s, 51e9);
  EXPECT_DOUBLE_EQ(spec.d2h_bytes_per_s, 42e9);
  EXPECT_DOUBLE_EQ(spec.disk_read_bytes_per_s, 3e9);
  EXPECT_DOUBLE_EQ(spec.disk_write_bytes_per_s, 1.5e9);
  EXPECT_DOUBLE_EQ(spec.gpu_gemm_prefill_flops_per_s, 400e12);
  EXPECT_DOUBLE_EQ(spec.gpu_gemm_decode_flops_per_s, 22.5e12);
  EXPECT_DOUBLE_EQ(spec.gpu_attention_prefill_flops_per_s, 100e12);
  EXPECT_DOUBLE_EQ(spec.gpu_attention_decode_flops_per_s, 3.5e12);
  EXPECT_DOUBLE_EQ(spec.cpu_attention_flops_per_s, 3.5e10);
  EXPECT_EQ(spec.cpu_cache_attention_flops_per_s, 0.0);  // no 4-bit measurement in fake_host()
  EXPECT_DOUBLE_EQ(spec.gpu_memory_bytes_per_s, 2.9e12);
  EXPECT_DOUBLE_EQ(spec.cpu_memory_bytes_per_s, 85e9);
  for (const char* needle : {"2025-01-02", "NVIDIA H100 80GB HBM3", "driver API 13.0", "O_DIRECT",
                             "/ssd/offload", "8192x4096x4096", "cublasGemmEx", "cpu_decode_attention_f16"}) {
    EXPECT_THAT(spec.description, HasSubstr(needle));
  }
}

TEST(ProfileSpec, DequantizationAndTaskOverheadAreMediansWhenMeasured) {
  GpuMeasurements gpu = fake_gpu();
  HardwareSpec spec = spec_from_measurements(fake_host(), gpu, "h", "2025-01-02");
  EXPECT_EQ(spec.gpu_dequant_bytes_per_s, 0.0);  // not measured: left out
  EXPECT_EQ(spec.gpu_task_overhead_s, 0.0);
  // Weight shape medians 2e12 and 1e12: the median over them is 1.5e12; the cache rows' 0.5e12.
  gpu.dequant = {{"weight 28672 x 7168", 411041792, {3e12, 2e12, 1e12}},
                 {"weight 36864 x 9216", 679477248, {1e12, 1e12, 0.9e12}},
                 {"cache rows 1048576 x 128", 268435456, {0.5e12, 0.6e12, 0.4e12}}};
  gpu.task_overhead = {"tiny", {40e-6, 10e-6, 30e-6, 20e-6}};  // median 25 us
  spec = spec_from_measurements(fake_host(), gpu, "h", "2025-01-02");
  EXPECT_DOUBLE_EQ(spec.gpu_dequant_bytes_per_s, 1.5e12);
  EXPECT_DOUBLE_EQ(spec.gpu_cache_dequant_bytes_per_s, 0.5e12);
  EXPECT_DOUBLE_EQ(spec.gpu_task_overhead_s, 25e-6);
  EXPECT_THAT(spec.description, HasSubstr("cache rows 1048576 x 128"));
  EXPECT_THAT(spec.description, HasSubstr("gpu_task_overhead_s"));
  // A 4-bit-cache CPU attention measurement: its own field, the fp16 rate unchanged (the median of
  // 2e10 and 3e10, and of 5e10: 3.5e10).
  HostMeasurements host = fake_host();
  host.cpu_attention.push_back({1024, 128, 512, 16, {1e10, 0.8e10, 1.2e10}, true});
  spec = spec_from_measurements(host, gpu, "h", "2025-01-02");
  EXPECT_DOUBLE_EQ(spec.cpu_cache_attention_flops_per_s, 1e10);
  EXPECT_DOUBLE_EQ(spec.cpu_attention_flops_per_s, 3.5e10);
  EXPECT_THAT(spec.description, HasSubstr("cpu_cache_attention_flops_per_s"));
  EXPECT_EQ(spec.cpu_sparse_attention_flops_per_s, 0.0);
  // And a top-k one over fp16 rows: its own field, neither other rate moved.
  host.cpu_attention.push_back({1024, 128, 512, 16, {2e10, 2.5e10, 1.5e10}, false, 127});
  spec = spec_from_measurements(host, gpu, "h", "2025-01-02");
  EXPECT_DOUBLE_EQ(spec.cpu_sparse_attention_flops_per_s, 2e10);
  EXPECT_DOUBLE_EQ(spec.cpu_cache_attention_flops_per_s, 1e10);
  EXPECT_DOUBLE_EQ(spec.cpu_attention_flops_per_s, 3.5e10);
  EXPECT_THAT(spec.description, HasSubstr("127 of 511 cached positions kept"));
  EXPECT_EQ(HardwareSpec::from_json(nlohmann::json::parse(spec.to_json().dump()), "round trip"), spec);
  const nlohmann::json m = measurements_json(fake_host(), &gpu, "h", "2025-01-02");
  EXPECT_EQ(m["gpu"]["dequant"].size(), 3u);
  EXPECT_EQ(m["gpu"]["task_overhead"]["seconds"]["samples"].size(), 4u);
}

// Small disk requests: the median time less the bytes at the whole-pass rate. 40960 bytes at
// 1.5e9 B/s (write) take 27.306... us, at 3e9 (read) 13.653... us; medians 1000 us and 200 us.
TEST(ProfileSpec, DiskLatencyIsTheSmallRequestsMedianLessTheirBytes) {
  HostMeasurements host = fake_host();
  HardwareSpec spec = spec_from_measurements(host, fake_gpu(), "h", "2025-01-02");
  EXPECT_EQ(spec.disk_write_latency_s, 0.0);  // not measured: left out
  EXPECT_EQ(spec.disk_read_latency_s, 0.0);
  host.disk.small_bytes = 40960;
  host.disk.small_write_seconds = {1200e-6, 900e-6, 1000e-6};
  host.disk.small_read_seconds = {300e-6, 100e-6, 200e-6, 200e-6};
  spec = spec_from_measurements(host, fake_gpu(), "h", "2025-01-02");
  EXPECT_NEAR(spec.disk_write_latency_s, 1000e-6 - 40960.0 / 1.5e9, 1e-12);
  EXPECT_NEAR(spec.disk_write_latency_s, 972.693e-6, 1e-9);
  EXPECT_NEAR(spec.disk_read_latency_s, 186.347e-6, 1e-9);
  EXPECT_THAT(spec.description, HasSubstr("disk_read/write_latency_s: 3 requests of 40960 bytes"));
  EXPECT_EQ(HardwareSpec::from_json(nlohmann::json::parse(spec.to_json().dump()), "round trip"), spec);
  // Requests faster than their bytes at the streaming rate: no negative latency.
  EXPECT_EQ(disk_request_latency_s({10e-6}, 40960, 1.5e9), 0.0);
  EXPECT_EQ(disk_request_latency_s({}, 40960, 1.5e9), 0.0);
  const nlohmann::json m = measurements_json(host, nullptr, "h", "2025-01-02");
  EXPECT_EQ(m["host"]["disk"]["small_write_seconds"].size(), 3u);
  EXPECT_EQ(m["host"]["disk"]["small_bytes"], 40960);
}

TEST(ProfileSpec, WrittenJsonParsesWithTheStrictParser) {
  const HardwareSpec spec = spec_from_measurements(fake_host(), fake_gpu(), "h100-test", "2025-01-02");
  const nlohmann::json text = nlohmann::json::parse(spec.to_json().dump(2));
  const HardwareSpec back = HardwareSpec::from_json(text, "profile");
  EXPECT_EQ(back, spec);
  EXPECT_DOUBLE_EQ(text["h2d_bytes_per_s"].get<double>(), 51e9);
}

TEST(ProfileSpec, MemcpyWinsWhenFasterThanTheKernel) {
  GpuMeasurements gpu = fake_gpu();
  gpu.memory.copy_kernel_bytes_per_s = {2.0e12, 2.2e12};  // median 2.1e12 < memcpy's 2.6e12
  EXPECT_DOUBLE_EQ(gpu_memory_bytes_per_s(gpu.memory), 2.6e12);
}

TEST(ProfileSpec, MissingMeasurementsAreNamed) {
  GpuMeasurements gpu = fake_gpu();
  gpu.gemms.pop_back();
  gpu.gemms.erase(gpu.gemms.begin() + 1);  // no decode GEMM left
  EXPECT_THAT(error_of([&] { spec_from_measurements(fake_host(), gpu, "x", "d"); }),
              HasSubstr("decode GEMM"));
  GpuMeasurements no_attention = fake_gpu();
  no_attention.attention.erase(no_attention.attention.begin());
  EXPECT_THAT(error_of([&] { spec_from_measurements(fake_host(), no_attention, "x", "d"); }),
              HasSubstr("prefill GPU attention"));
  GpuMeasurements no_memory = fake_gpu();
  no_memory.memory_bytes = 0;
  EXPECT_THAT(error_of([&] { spec_from_measurements(fake_host(), no_memory, "x", "d"); }),
              HasSubstr("gpu_memory_bytes"));
  HostMeasurements slow_disk = fake_host();
  slow_disk.disk.read_bytes_per_s = 0;
  EXPECT_THAT(error_of([&] { spec_from_measurements(slow_disk, fake_gpu(), "x", "d"); }),
              HasSubstr("disk_read_bytes_per_s"));
  EXPECT_THAT(error_of([&] { spec_from_measurements(fake_host(), fake_gpu(), "", "d"); }),
              HasSubstr("name"));
}

TEST(ProfileSpec, H2dCheckRatio) {
  EXPECT_DOUBLE_EQ(h2d_check_ratio(fake_gpu()), 51.0 / 50.0);
  GpuMeasurements gpu = fake_gpu();
  gpu.plain_loop.h2d_bytes_per_s = 0;
  EXPECT_THAT(error_of([&] { h2d_check_ratio(gpu); }), HasSubstr("plain cudaMemcpyAsync loop"));
}

TEST(ProfileSpec, PartialSpecHasTheHostFieldsAndIsNotAFullSpec) {
  const nlohmann::json j = partial_spec_json(fake_host(), "host-partial", "2025-01-02");
  EXPECT_EQ(j["name"], "host-partial");
  EXPECT_EQ(j["cpu_memory_bytes"].get<Bytes>(), 137438953472);
  EXPECT_EQ(j["disk_bytes"].get<Bytes>(), 60000000000);
  EXPECT_DOUBLE_EQ(j["disk_read_bytes_per_s"].get<double>(), 3e9);
  EXPECT_DOUBLE_EQ(j["disk_write_bytes_per_s"].get<double>(), 1.5e9);
  EXPECT_DOUBLE_EQ(j["cpu_attention_flops_per_s"].get<double>(), 3.5e10);
  EXPECT_DOUBLE_EQ(j["cpu_memory_bytes_per_s"].get<double>(), 85e9);
  EXPECT_FALSE(j.contains("h2d_bytes_per_s"));
  EXPECT_THAT(j["description"].get<std::string>(), HasSubstr("PARTIAL"));
  EXPECT_THAT(error_of([&] { HardwareSpec::from_json(j, "partial.json"); }),
              HasSubstr("gpu_memory_bytes"));
}

TEST(ProfileSpec, MeasurementsJsonKeepsEveryRawNumber) {
  const GpuMeasurements gpu = fake_gpu();
  const nlohmann::json j = measurements_json(fake_host(), &gpu, "h100-test", "2025-01-02");
  EXPECT_EQ(j["name"], "h100-test");
  EXPECT_EQ(j["date"], "2025-01-02");
  EXPECT_DOUBLE_EQ(j["gpu"]["transfers"]["h2d_pageable_bytes_per_s"]["median"].get<double>(), 20e9);
  EXPECT_DOUBLE_EQ(j["gpu"]["transfers"]["duplex_d2h_pageable_bytes_per_s"]["median"].get<double>(), 14e9);
  EXPECT_EQ(j["gpu"]["transfers"]["h2d_pinned_bytes_per_s"]["samples"].size(), 3u);
  EXPECT_DOUBLE_EQ(j["gpu"]["h2d_check"]["plain_loop_h2d_bytes_per_s"].get<double>(), 50e9);
  EXPECT_DOUBLE_EQ(j["gpu"]["h2d_check"]["ratio"].get<double>(), 1.02);
  EXPECT_TRUE(j["gpu"]["h2d_check"]["within_10_percent"].get<bool>());
  EXPECT_EQ(j["gpu"]["gemms"].size(), 5u);
  EXPECT_EQ(j["gpu"]["gemms"][1]["phase"], "decode");
  EXPECT_DOUBLE_EQ(j["gpu"]["gemms"][1]["flops_per_s"]["median"].get<double>(), 15e12);
  EXPECT_DOUBLE_EQ(j["gpu"]["attention"][0]["gemm_flops_per_s"]["median"].get<double>(), 200e12);
  EXPECT_DOUBLE_EQ(j["host"]["memory"]["copy_bytes_per_s"]["median"].get<double>(), 85e9);
  EXPECT_EQ(j["host"]["disk"]["direct_io"], true);
  EXPECT_EQ(j["host"]["cpu_attention"][1]["positions"], 2048);

  GpuMeasurements slow = fake_gpu();
  slow.plain_loop.h2d_bytes_per_s = 60e9;  // 51 / 60 = 0.85
  EXPECT_FALSE(measurements_json(fake_host(), &slow, "x", "d")["gpu"]["h2d_check"]["within_10_percent"].get<bool>());
  EXPECT_FALSE(measurements_json(fake_host(), nullptr, "x", "d").contains("gpu"));
}

}  // namespace
}  // namespace flexgen
