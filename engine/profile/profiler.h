#pragma once
// The host half of `flexgen profile`: disk, host memory and CPU attention, measured on this
// machine. Works in every build (the GPU half is engine/cuda/profile_gpu.h). See docs/profiling.md
// for what is measured and why.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "engine/core/units.h"
#include "engine/profile/measurements.h"

namespace flexgen {

struct HostProfileOptions {
  std::filesystem::path offload_dir;  // the disk measured: a DiskStore file in this directory
  Bytes disk_bytes = 2 * kGiB;        // written then read back
  Bytes disk_transfer_bytes = 64 * kMiB;
  // Small requests (a cache append's size: 37 KiB and a bit, at unaligned offsets), each timed.
  Bytes disk_small_bytes = 37 * kKiB + 96;
  int disk_small_count = 64;
  Bytes memory_buffer_bytes = 1 * kGiB;  // memcpy source and destination, each
  int memory_passes = 5;
  std::int64_t attention_units = 1024;  // 32 sequences x 32 heads
  std::int64_t attention_head_dim = 128;
  std::vector<std::int64_t> attention_positions = {512, 1024, 2048};
  int attention_passes = 5;
  double attention_min_pass_s = 0.05;  // each pass repeats the kernel for at least this long
  // Bytes of cache rows the calls cycle through (copies of the rows, each call the next copy), so
  // that every call reads its rows from memory as a run's does (each layer's cache once per step)
  // rather than from a last-level cache the rows fit in; 0: one copy. full(): the larger of 4x the
  // L3 cache and 1 GiB.
  Bytes attention_working_set = 0;
  ProfileProgress progress;

  // The default run and the --quick one (smaller sizes, fewer passes).
  static HostProfileOptions full(std::filesystem::path offload_dir);
  static HostProfileOptions quick(std::filesystem::path offload_dir);
};

// The last-level (L3) cache in bytes (sysconf), 0 when the system does not say.
Bytes last_level_cache_bytes();
// Physical memory in bytes (sysconf); throws flexgen::Error when the system does not say.
Bytes physical_memory_bytes();
// Free space for unprivileged users on the file system holding `directory` (statvfs); throws
// flexgen::Error naming the directory when it cannot be queried.
Bytes free_disk_bytes(const std::filesystem::path& directory);

// Writes `total` bytes (a multiple of 4 KiB) of random data through a DiskStore in `directory`,
// in `transfer`-byte calls, then reads them back and checks a stamp in every 4 KiB block; then
// times `small_count` writes and reads of `small_bytes` each at unaligned offsets (as many as fit
// `total`; none when 0), checking what reads back. Throws flexgen::Error for a bad size, a
// directory that cannot be used, too little space, or data that does not read back.
DiskMeasurement measure_disk(const std::filesystem::path& directory, Bytes total, Bytes transfer,
                             const ProfileProgress& progress = {}, Bytes small_bytes = 0,
                             int small_count = 0);

// `passes` timed multithreaded memcpy passes between two buffers of `buffer_bytes` after one
// untimed pass (the first touch of the pages).
HostMemoryMeasurement measure_host_memory(Bytes buffer_bytes, int passes);

// `passes` timed passes of decode attention with cpu_decode_attention_f16 (the CUDA backend's
// delegated attention, fp16 rows) over `units` units at `positions` positions, split over the
// parallel_for threads. Random data. A pass calls the kernel back to back for at least
// `min_pass_seconds` (at least once), after a warm-up of two such passes. `compressed`: the rows
// 4-bit (cache_quant_spec, fp16 parameters), as with --compress-cache. `kept` > 0: top-k sparse
// attention keeping that many of the positions - 1 cached ones (--attn-sparsity). `working_set`:
// the calls cycle through as many copies of the rows as make at least that many bytes (one copy
// for 0).
CpuAttentionMeasurement measure_cpu_attention(std::int64_t units, std::int64_t head_dim,
                                              std::int64_t positions, int passes, bool compressed = false,
                                              double min_pass_seconds = 0.0, std::int64_t kept = 0,
                                              Bytes working_set = 0);

// Everything above plus the capacities.
HostMeasurements profile_host(const HostProfileOptions& options);

}  // namespace flexgen
