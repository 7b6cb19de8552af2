#include "engine/profile/profiler.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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

class ScratchDir {
 public:
  ScratchDir()
      : dir_(std::filesystem::temp_directory_path() /
             ("flexgen-profile-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++))) {
    std::filesystem::create_directories(dir_);
  }
  ~ScratchDir() { std::filesystem::remove_all(dir_); }
  const std::filesystem::path& path() const { return dir_; }

 private:
  static inline int counter_ = 0;
  std::filesystem::path dir_;
};

// Every sample is a finite number between broad physical bounds.
void expect_all_within(const std::vector<double>& samples, double low, double high) {
  EXPECT_FALSE(samples.empty());
  for (double s : samples) {
    EXPECT_TRUE(std::isfinite(s));
    EXPECT_GT(s, low);
    EXPECT_LT(s, high);
  }
}

TEST(HostProfile, PhysicalMemoryMatchesProcMeminfo) {
  // MemTotal (kB) is the kernel's total RAM, the same quantity as sysconf's physical pages.
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  long long kb = 0;
  while (std::getline(meminfo, line)) {
    if (line.rfind("MemTotal:", 0) == 0) std::istringstream(line.substr(9)) >> kb;
  }
  ASSERT_GT(kb, 0);
  EXPECT_EQ(physical_memory_bytes(), kb * 1024);
}

TEST(HostProfile, FreeDiskBytesAgreesWithFilesystemSpace) {
  ScratchDir dir;
  const auto expected = static_cast<double>(std::filesystem::space(dir.path()).available);
  // Other processes write meanwhile: allow 256 MiB of drift.
  EXPECT_NEAR(static_cast<double>(free_disk_bytes(dir.path())), expected, 256.0 * 1024 * 1024);
  EXPECT_THAT(error_of([&] { free_disk_bytes(dir.path() / "missing" / "deeper"); }),
              HasSubstr("missing"));
}

TEST(HostProfile, DiskWritesThenReadsBackWithPlausibleRates) {
  ScratchDir dir;
  const DiskMeasurement m = measure_disk(dir.path(), 8 * kMiB, 1 * kMiB);
  EXPECT_EQ(m.total_bytes, 8 * kMiB);
  EXPECT_EQ(m.transfer_bytes, 1 * kMiB);
  EXPECT_EQ(m.write_transfer_bytes_per_s.size(), 8u);
  EXPECT_EQ(m.read_transfer_bytes_per_s.size(), 8u);
  EXPECT_EQ(m.directory, dir.path().string());
  expect_all_within({m.write_bytes_per_s, m.read_bytes_per_s}, 1e5, 1e12);
  expect_all_within(m.write_transfer_bytes_per_s, 1e5, 1e12);
  expect_all_within(m.read_transfer_bytes_per_s, 1e5, 1e12);
  // The store's file has no name: nothing is left in the directory.
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(HostProfile, DiskTransferLargerThanTotalIsClamped) {
  ScratchDir dir;
  const DiskMeasurement m = measure_disk(dir.path(), 1 * kMiB, 64 * kMiB);
  EXPECT_EQ(m.transfer_bytes, 1 * kMiB);
  EXPECT_EQ(m.write_transfer_bytes_per_s.size(), 1u);
}

TEST(HostProfile, DiskSmallRequestsAreTimedAndReadBack) {
  ScratchDir dir;
  // 4 MiB holds 4 MiB / ((37 KiB / 4 KiB + 2) * 4 KiB = 44 KiB) = 93 requests of 37 KiB + 96.
  const Bytes small = 37 * kKiB + 96;
  DiskMeasurement m = measure_disk(dir.path(), 4 * kMiB, 1 * kMiB, {}, small, 8);
  EXPECT_EQ(m.small_bytes, small);
  ASSERT_EQ(m.small_write_seconds.size(), 8u);
  ASSERT_EQ(m.small_read_seconds.size(), 8u);
  for (double s : m.small_write_seconds) EXPECT_GT(s, 0.0);
  // As many as fit the test size: 64 KiB holds one 44 KiB stretch.
  m = measure_disk(dir.path(), 64 * kKiB, 64 * kKiB, {}, small, 8);
  EXPECT_EQ(m.small_write_seconds.size(), 1u);
  m = measure_disk(dir.path(), 64 * kKiB, 64 * kKiB);  // none asked
  EXPECT_TRUE(m.small_write_seconds.empty());
  EXPECT_EQ(m.small_bytes, 0);
}

TEST(HostProfile, DiskBadSizesAndDirectories) {
  ScratchDir dir;
  EXPECT_THAT(error_of([&] { measure_disk(dir.path(), 5000, 4096); }), HasSubstr("multiple of 4 KiB"));
  EXPECT_THAT(error_of([&] { measure_disk(dir.path(), 0, 4096); }), HasSubstr("disk test size"));
  EXPECT_THAT(error_of([&] { measure_disk(dir.path(), 8192, 100); }), HasSubstr("transfer size"));
  const auto file = dir.path() / "a-file";
  std::ofstream(file) << "x";
  EXPECT_THAT(error_of([&] { measure_disk(file, 8192, 4096); }), HasSubstr("a-file"));
}

TEST(HostProfile, MemoryBandwidthIsPlausible) {
  const HostMemoryMeasurement m = measure_host_memory(64 * kMiB, 3);
  EXPECT_EQ(m.buffer_bytes, 64 * kMiB);
  EXPECT_GE(m.threads, 1);
  EXPECT_EQ(m.copy_bytes_per_s.size(), 3u);
  expect_all_within(m.copy_bytes_per_s, 1e8, 1e13);
  EXPECT_THAT(error_of([] { measure_host_memory(12, 1); }), HasSubstr("multiple of 8"));
  EXPECT_THAT(error_of([] { measure_host_memory(64, 0); }), HasSubstr("at least one"));
}

TEST(HostProfile, CpuAttentionThroughputIsPlausible) {
  const CpuAttentionMeasurement m = measure_cpu_attention(16, 64, 256, 2);
  EXPECT_EQ(m.units, 16);
  EXPECT_EQ(m.head_dim, 64);
  EXPECT_EQ(m.positions, 256);
  EXPECT_EQ(m.flops_per_s.size(), 2u);
  // A CPU does between a million and ten trillion of these FLOPs a second.
  expect_all_within(m.flops_per_s, 1e6, 1e13);
  EXPECT_THAT(error_of([] { measure_cpu_attention(0, 64, 256, 1); }), HasSubstr("positive units"));
  EXPECT_EQ(m.calls_per_pass, 1);  // no minimum pass time: one call a pass
}

// Top-k: the kept positions recorded; more than the cached positions is refused.
TEST(HostProfile, CpuAttentionTopKKeepsWhatItIsAsked) {
  const CpuAttentionMeasurement m = measure_cpu_attention(16, 64, 257, 2, false, 0.0, 64);
  EXPECT_EQ(m.kept, 64);
  EXPECT_FALSE(m.compressed);
  expect_all_within(m.flops_per_s, 1e6, 1e13);
  EXPECT_THAT(error_of([] { measure_cpu_attention(4, 32, 16, 1, false, 0.0, 16); }), HasSubstr("keeps 16 of 15"));
}

// With a minimum pass time, a pass calls the kernel back to back until it has run that long.
TEST(HostProfile, CpuAttentionPassesLastTheMinimumTime) {
  const CpuAttentionMeasurement m = measure_cpu_attention(4, 32, 16, 3, false, 0.02);
  EXPECT_GT(m.calls_per_pass, 1);  // one call of 4 x 16 x 32 takes far less than 20 ms
  EXPECT_EQ(m.flops_per_s.size(), 3u);
  expect_all_within(m.flops_per_s, 1e5, 1e13);
}

// A working set: the calls cycle through enough copies of the rows to make it (keys and values of
// 16 units x 256 positions x 64 fp16 values are 2 x 512 KiB a copy, 4-bit rows 2 x 144 KiB).
TEST(HostProfile, CpuAttentionCyclesThroughCopiesOfTheRows) {
  const CpuAttentionMeasurement one = measure_cpu_attention(16, 64, 256, 1);
  EXPECT_EQ(one.copies, 1);
  EXPECT_EQ(one.copy_bytes, 2 * 16 * 256 * 64 * 2);
  const CpuAttentionMeasurement fp16 = measure_cpu_attention(16, 64, 256, 2, false, 0.0, 0, 3 * kMiB + 1);
  EXPECT_EQ(fp16.copies, 4);  // ceil((3 MiB + 1) / 1 MiB)
  expect_all_within(fp16.flops_per_s, 1e6, 1e13);
  const CpuAttentionMeasurement q4 = measure_cpu_attention(16, 64, 256, 2, true, 0.0, 0, 3 * kMiB);
  // A 64-value row in 4 bits: 32 bytes of codes, one fp16 minimum and one fp16 scale per group of 64.
  EXPECT_EQ(q4.copy_bytes, 2 * 16 * 256 * (32 + 2 + 2));
  EXPECT_EQ(q4.copies, 11);  // ceil(3 MiB / 288 KiB)
  expect_all_within(q4.flops_per_s, 1e6, 1e13);
}

TEST(HostProfile, ProfileHostFillsEveryField) {
  ScratchDir dir;
  HostProfileOptions options = HostProfileOptions::quick(dir.path() / "offload");
  options.disk_bytes = 4 * kMiB;
  options.memory_buffer_bytes = 16 * kMiB;
  options.memory_passes = 2;
  options.attention_units = 8;
  options.attention_head_dim = 32;
  options.attention_positions = {64, 128};
  options.attention_passes = 2;
  int lines = 0;
  options.progress = [&](const std::string&) { ++lines; };
  const HostMeasurements h = profile_host(options);
  EXPECT_GT(h.memory_bytes, 0);
  EXPECT_GT(h.disk_free_bytes, 0);
  EXPECT_GE(h.hardware_threads, 1);
  EXPECT_EQ(h.disk.total_bytes, 4 * kMiB);
  EXPECT_EQ(h.disk.small_write_seconds.size(), 16u);  // quick: 16 small requests
  EXPECT_EQ(h.disk.small_read_seconds.size(), 16u);
  EXPECT_EQ(h.memory.copy_bytes_per_s.size(), 2u);
  // One fp16 measurement per number of positions, then the 4-bit cache at the first.
  ASSERT_EQ(h.cpu_attention.size(), 4u);
  EXPECT_EQ(h.cpu_attention[1].positions, 128);
  EXPECT_FALSE(h.cpu_attention[1].compressed);
  EXPECT_TRUE(h.cpu_attention[2].compressed);
  EXPECT_EQ(h.cpu_attention[2].positions, h.cpu_attention[0].positions);
  EXPECT_EQ(h.cpu_attention[2].flops_per_s.size(), 2u);
  for (double r : h.cpu_attention[2].flops_per_s) EXPECT_GT(r, 0.0);
  // Then top-k over fp16 rows at the first number of positions, a quarter of the cached ones kept.
  EXPECT_FALSE(h.cpu_attention[3].compressed);
  EXPECT_EQ(h.cpu_attention[3].positions, 64);
  EXPECT_EQ(h.cpu_attention[3].kept, 63 / 4);
  EXPECT_EQ(h.cpu_attention[2].kept, 0);
  for (double r : h.cpu_attention[3].flops_per_s) EXPECT_GT(r, 0.0);
  EXPECT_GE(lines, 4);  // disk write, disk read, memory, attention ...
  EXPECT_TRUE(std::filesystem::is_directory(dir.path() / "offload"));  // created
}

TEST(HostProfile, QuickIsSmallerThanFull) {
  const HostProfileOptions full = HostProfileOptions::full("/x");
  const HostProfileOptions quick = HostProfileOptions::quick("/x");
  EXPECT_EQ(full.disk_bytes, 2 * kGiB);
  EXPECT_EQ(full.disk_transfer_bytes, 64 * kMiB);
  EXPECT_EQ(full.attention_units, 1024);
  EXPECT_LT(quick.disk_bytes, full.disk_bytes);
  EXPECT_LT(quick.memory_buffer_bytes, full.memory_buffer_bytes);
  EXPECT_LT(quick.attention_units, full.attention_units);
}

}  // namespace
}  // namespace flexgen
