#pragma once
// The raw numbers `flexgen profile` measures, before they are reduced to a HardwareSpec
// (spec_from_measurements.h). Plain data: every repeated measurement keeps all of its samples, so
// the details file can show the spread and the reduction (medians) can be tested with hand-made
// numbers. Rates are per second in the unit their name says; FLOPs are counted the way the
// schedule counts them (engine/runtime/schedule.cc), so that flops / rate is a predicted time.
//
// This header is included by CUDA translation units: standard headers only.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/core/units.h"

namespace flexgen {

// Progress lines for the user ("disk: writing 2.0 GiB ..."); may be empty.
using ProfileProgress = std::function<void(const std::string&)>;

// The median of `samples` (the mean of the two middle values for an even count). Throws
// flexgen::Error naming `what` when there are no samples or one is not a finite number.
double median_of(const std::vector<double>& samples, const std::string& what);

// ---- host -----------------------------------------------------------------------------------

struct DiskMeasurement {
  std::string directory;      // the offload directory measured
  bool direct_io = false;     // false: the file system refused O_DIRECT (page cache in the way)
  Bytes total_bytes = 0;      // bytes written, then read back
  Bytes transfer_bytes = 0;   // bytes per DiskStore::write_sync / read_sync call
  // Whole passes: total_bytes over the wall time of all transfers of the pass.
  BytesPerSecond write_bytes_per_s = 0;
  BytesPerSecond read_bytes_per_s = 0;
  // Each transfer on its own (for the spread; the spec uses the whole-pass figures).
  std::vector<double> write_transfer_bytes_per_s;
  std::vector<double> read_transfer_bytes_per_s;
  // Small requests as a cache append makes them: `small_bytes` (not a multiple of 4 KiB) at
  // offsets that are not block-aligned, one after another, the seconds of each (O_DIRECT: a
  // write reads and rewrites its partial edge blocks). Empty when not measured.
  Bytes small_bytes = 0;
  std::vector<double> small_write_seconds;
  std::vector<double> small_read_seconds;
};

struct HostMemoryMeasurement {
  Bytes buffer_bytes = 0;  // each of source and destination
  int threads = 0;
  // One sample per pass of a multithreaded memcpy: 2 * buffer_bytes (read + written) over its time.
  std::vector<double> copy_bytes_per_s;
};

// CPU attention for one decode shape: `units` (sequence, head) pairs, one query each, attending to
// `positions` cached positions (the new token's included) with cpu_decode_attention_f16, the CUDA
// backend's delegated attention over fp16 rows.
struct CpuAttentionMeasurement {
  std::int64_t units = 0;
  std::int64_t head_dim = 0;
  std::int64_t positions = 0;
  int threads = 0;
  // units * 4 * positions * head_dim per call (scores and weighted sum), times the calls of a
  // pass, over the pass's time. A pass repeats the kernel back to back (as a run calls it) for at
  // least a minimum time, after a warm-up of a few such passes.
  std::vector<double> flops_per_s;
  bool compressed = false;  // 4-bit cache rows (dequantized on the fly) instead of fp16
  // Top-k sparse attention: the cached positions kept (0: dense). FLOPs per call are then as the
  // schedule counts them, units * 2 * head_dim * (positions + kept + 1).
  std::int64_t kept = 0;
  int calls_per_pass = 1;   // kernel calls per timed pass
  int copies = 1;           // copies of the rows the calls cycle through (each call the next)
  Bytes copy_bytes = 0;     // keys and values of one copy
};

struct HostMeasurements {
  Bytes memory_bytes = 0;     // physical memory (sysconf)
  Bytes disk_free_bytes = 0;  // free space of the offload directory's file system (statvfs)
  int hardware_threads = 0;
  DiskMeasurement disk;
  HostMemoryMeasurement memory;
  std::vector<CpuAttentionMeasurement> cpu_attention;  // one per number of positions
};

// ---- GPU ------------------------------------------------------------------------------------

struct TransferMeasurement {
  Bytes transfer_bytes = 0;  // per copy
  int repeats = 0;           // timed copies per figure, after warm-up
  // One direction at a time. Pinned copies are timed with CUDA events on the stream; pageable ones
  // with the host clock around the copy and a stream synchronisation (their cost includes the
  // driver's staging on the host).
  std::vector<double> h2d_pinned_bytes_per_s;
  std::vector<double> d2h_pinned_bytes_per_s;
  std::vector<double> h2d_pageable_bytes_per_s;
  std::vector<double> d2h_pageable_bytes_per_s;
  // Both directions at once (one copy each way, started together on two streams); each sample is
  // that direction's bytes over its own time.
  std::vector<double> duplex_h2d_pinned_bytes_per_s;
  std::vector<double> duplex_d2h_pinned_bytes_per_s;
  std::vector<double> duplex_h2d_pageable_bytes_per_s;
  std::vector<double> duplex_d2h_pageable_bytes_per_s;
};

// The reference for the h2d figure: a plain loop of pinned cudaMemcpyAsync host-to-device copies
// on one stream, timed by the host clock from the first call to the final synchronisation.
struct PlainCopyLoopMeasurement {
  Bytes transfer_bytes = 0;
  int iterations = 0;
  BytesPerSecond h2d_bytes_per_s = 0;
};

struct GpuMemoryMeasurement {
  Bytes buffer_bytes = 0;  // each of source and destination
  // 2 * buffer_bytes (read + written) over the time of one device-to-device copy.
  std::vector<double> memcpy_bytes_per_s;       // cudaMemcpyAsync device to device
  std::vector<double> copy_kernel_bytes_per_s;  // a 16-byte-per-thread grid-stride copy kernel
};

enum class Phase { kPrefill, kDecode };
const char* phase_name(Phase phase);  // "prefill" / "decode"

// Y[m, n] = X[m, k] W[n, k]^T with cublasGemmEx: fp16 inputs and output, fp32 accumulation.
struct GemmMeasurement {
  Phase phase = Phase::kPrefill;
  std::int64_t m = 0;  // tokens
  std::int64_t n = 0;  // output features
  std::int64_t k = 0;  // input features
  std::vector<double> flops_per_s;  // 2 m n k per call over its time
};

// Attention of `units` (sequence, head) pairs of `queries` queries over `positions` keys in fp16.
// Prefill (queries == positions, causal mask): batched cublasGemmStridedBatchedEx (scores = Q K^T,
// a row softmax kernel, out = P V) with fp32 accumulation. Decode (one query): the engine's own
// decode_attention kernel over a position-major cache.
struct GpuAttentionMeasurement {
  Phase phase = Phase::kPrefill;
  std::int64_t units = 0;
  std::int64_t queries = 0;
  std::int64_t positions = 0;
  std::int64_t head_dim = 0;
  // FLOPs as the schedule counts them over the time of the three kernels:
  //   decode  units * 4 * positions * head_dim
  //   prefill units * 2 * head_dim * positions * (positions + 1)   (causal pairs only)
  std::vector<double> flops_per_s;
  // The two GEMMs' own FLOPs (4 * units * queries * positions * head_dim) over the same time.
  std::vector<double> gemm_flops_per_s;
};

// 4-bit dequantization with the engine's kernels (cuda::dequantize for a weight grouped along
// its output channels, cuda::dequantize_rows for KV-cache rows): dense fp16 bytes written per
// second.
struct DequantMeasurement {
  std::string what;  // "weight 28672 x 7168", "cache rows 1048576 x 128"
  Bytes dense_bytes = 0;
  std::vector<double> bytes_per_s;
};

// The fixed time of one GPU compute task of the engine: the CUDA runtime generating with a tiny
// model (negligible GEMMs and attention), each decode `compute` and `compute_post` task's measured
// time (CUDA events, --task-times).
struct TaskOverheadMeasurement {
  std::string model;              // "hidden 128, 2 heads, 8 layers, batch 1, prompt 16, 16 tokens"
  std::vector<double> seconds;    // one per task
};

struct GpuMeasurements {
  int device = 0;
  std::string device_name;          // "NVIDIA H100 80GB HBM3"
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  int multiprocessors = 0;
  int driver_version = 0;           // cudaDriverGetVersion, e.g. 13000
  int runtime_version = 0;          // cudaRuntimeGetVersion
  int cublas_version = 0;
  Bytes memory_bytes = 0;           // total, from cudaMemGetInfo
  Bytes free_memory_bytes = 0;      // free once this process's context and cuBLAS handle exist
  TransferMeasurement transfers;
  PlainCopyLoopMeasurement plain_loop;
  GpuMemoryMeasurement memory;
  std::vector<GemmMeasurement> gemms;
  std::vector<GpuAttentionMeasurement> attention;
  std::vector<DequantMeasurement> dequant;
  TaskOverheadMeasurement task_overhead;  // filled by measure_task_overhead (task_overhead.h)
};

}  // namespace flexgen
