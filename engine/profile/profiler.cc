#include "engine/profile/profiler.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <system_error>
#include <thread>

#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/compress/quant4.h"
#include "engine/core/parallel.h"
#include "engine/runtime/disk_store.h"
#include "engine/runtime/cpu_attention.h"
#include "engine/tensor/tensor.h"

namespace flexgen {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Fills n 64-bit words with pseudo-random bits, in parallel (deterministic per block).
void fill_random_words(std::uint64_t* words, std::int64_t n, std::uint64_t seed) {
  constexpr std::int64_t kBlock = 1 << 16;
  const std::int64_t blocks = (n + kBlock - 1) / kBlock;
  parallel_for(blocks, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t b = begin; b < end; ++b) {
      std::uint64_t state = splitmix64(seed ^ static_cast<std::uint64_t>(b));
      const std::int64_t last = std::min(n, (b + 1) * kBlock);
      for (std::int64_t i = b * kBlock; i < last; ++i) {
        state = splitmix64(state);
        words[i] = state;
      }
    }
  });
}

// Uniform floats in [-1, 1), in parallel (deterministic per block).
void fill_uniform(float* values, std::int64_t n, std::uint64_t seed) {
  constexpr std::int64_t kBlock = 1 << 16;
  const std::int64_t blocks = (n + kBlock - 1) / kBlock;
  parallel_for(blocks, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t b = begin; b < end; ++b) {
      std::uint64_t state = splitmix64(seed ^ static_cast<std::uint64_t>(b));
      const std::int64_t last = std::min(n, (b + 1) * kBlock);
      for (std::int64_t i = b * kBlock; i < last; ++i) {
        state = splitmix64(state);
        // 24 random bits -> [0, 1) -> [-1, 1)
        values[i] = static_cast<float>(state >> 40) * (2.0f / 16777216.0f) - 1.0f;
      }
    }
  });
}

struct FreeAligned {
  void operator()(void* p) const { std::free(p); }
};

std::unique_ptr<char, FreeAligned> aligned_buffer(Bytes bytes, const char* what) {
  const auto size = static_cast<std::size_t>((bytes + kDiskAlignment - 1) / kDiskAlignment * kDiskAlignment);
  void* p = std::aligned_alloc(static_cast<std::size_t>(kDiskAlignment), size);
  FLEXGEN_REQUIRE(p != nullptr, "profile: cannot allocate ", format_bytes(bytes), " for ", what);
  return std::unique_ptr<char, FreeAligned>(static_cast<char*>(p));
}

// The stamp in the first 16 bytes of every 4 KiB block of a disk transfer.
constexpr std::uint64_t kStampMagic = 0x666c657867656e50ull;  // "flexgenP"

void stamp_blocks(char* buffer, Bytes n, std::int64_t transfer) {
  for (Bytes off = 0; off + 16 <= n; off += kDiskAlignment) {
    const std::uint64_t words[2] = {kStampMagic ^ static_cast<std::uint64_t>(transfer),
                                    static_cast<std::uint64_t>(off)};
    std::memcpy(buffer + off, words, sizeof(words));
  }
}

bool stamps_match(const char* buffer, Bytes n, std::int64_t transfer) {
  for (Bytes off = 0; off + 16 <= n; off += kDiskAlignment) {
    std::uint64_t words[2];
    std::memcpy(words, buffer + off, sizeof(words));
    if (words[0] != (kStampMagic ^ static_cast<std::uint64_t>(transfer)) ||
        words[1] != static_cast<std::uint64_t>(off)) {
      return false;
    }
  }
  return true;
}

}  // namespace

HostProfileOptions HostProfileOptions::full(std::filesystem::path offload_dir) {
  HostProfileOptions o;
  o.offload_dir = std::move(offload_dir);
  o.attention_working_set = std::max<Bytes>(4 * last_level_cache_bytes(), kGiB);
  return o;
}

HostProfileOptions HostProfileOptions::quick(std::filesystem::path offload_dir) {
  HostProfileOptions o;
  o.offload_dir = std::move(offload_dir);
  o.disk_bytes = 256 * kMiB;
  o.memory_buffer_bytes = 256 * kMiB;
  o.memory_passes = 3;
  o.attention_units = 256;
  o.attention_positions = {512, 2048};
  o.attention_passes = 3;
  o.attention_min_pass_s = 0.02;
  o.disk_small_count = 16;
  return o;
}

Bytes last_level_cache_bytes() {
#ifdef _SC_LEVEL3_CACHE_SIZE
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l3 > 0) return static_cast<Bytes>(l3);
#endif
  return 0;
}

Bytes physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  FLEXGEN_REQUIRE(pages > 0 && page > 0, "profile: the system does not report its physical memory");
  return static_cast<Bytes>(pages) * static_cast<Bytes>(page);
}

Bytes free_disk_bytes(const std::filesystem::path& directory) {
  struct statvfs st {};
  if (statvfs(directory.c_str(), &st) != 0) {
    fail("profile: cannot query the free space of ", directory.string(), ": ",
         std::generic_category().message(errno));
  }
  return static_cast<Bytes>(st.f_bavail) * static_cast<Bytes>(st.f_frsize);
}

DiskMeasurement measure_disk(const std::filesystem::path& directory, Bytes total, Bytes transfer,
                             const ProfileProgress& progress, Bytes small_bytes, int small_count) {
  FLEXGEN_REQUIRE(total > 0 && total % kDiskAlignment == 0,
                  "profile: the disk test size must be a positive multiple of 4 KiB (got ", total,
                  " bytes)");
  FLEXGEN_REQUIRE(transfer > 0 && transfer % kDiskAlignment == 0,
                  "profile: the disk transfer size must be a positive multiple of 4 KiB (got ",
                  transfer, " bytes)");
  transfer = std::min(transfer, total);

  DiskMeasurement m;
  m.directory = directory.string();
  m.total_bytes = total;
  m.transfer_bytes = transfer;

  DiskStore store(directory, total);
  m.direct_io = store.direct_io();
  store.reserve(total);
  const DiskRegion region = store.allocate(total, "profile");

  auto write_buffer = aligned_buffer(transfer, "the disk test's write buffer");
  auto read_buffer = aligned_buffer(transfer, "the disk test's read buffer");
  fill_random_words(reinterpret_cast<std::uint64_t*>(write_buffer.get()), transfer / 8, 0x5eed0001);
  std::memset(read_buffer.get(), 0, static_cast<std::size_t>(transfer));

  const std::int64_t transfers = (total + transfer - 1) / transfer;
  if (progress) {
    progress(str_cat("disk: writing ", format_bytes(total), " in ", format_bytes(transfer),
                     " transfers to ", directory.string(), m.direct_io ? " (O_DIRECT)" : " (buffered: O_DIRECT refused)"));
  }
  double write_seconds = 0;
  for (std::int64_t i = 0; i < transfers; ++i) {
    const Bytes offset = i * transfer;
    const Bytes n = std::min(transfer, total - offset);
    stamp_blocks(write_buffer.get(), n, i);
    const auto start = Clock::now();
    store.write_sync(region, write_buffer.get(), n, offset);
    const double s = std::max(seconds_since(start), 1e-9);
    write_seconds += s;
    m.write_transfer_bytes_per_s.push_back(static_cast<double>(n) / s);
  }
  if (progress) progress(str_cat("disk: reading ", format_bytes(total), " back"));
  double read_seconds = 0;
  for (std::int64_t i = 0; i < transfers; ++i) {
    const Bytes offset = i * transfer;
    const Bytes n = std::min(transfer, total - offset);
    const auto start = Clock::now();
    store.read_sync(region, read_buffer.get(), n, offset);
    const double s = std::max(seconds_since(start), 1e-9);
    read_seconds += s;
    m.read_transfer_bytes_per_s.push_back(static_cast<double>(n) / s);
    FLEXGEN_REQUIRE(stamps_match(read_buffer.get(), n, i), "profile: the disk test read back ",
                    "different data than it wrote at offset ", offset, " of ", store.file_name());
  }
  m.write_bytes_per_s = static_cast<double>(total) / write_seconds;
  m.read_bytes_per_s = static_cast<double>(total) / read_seconds;

  // Small requests, as the cache appends of a run make them: a size that is not a multiple of
  // 4 KiB at offsets that are not block-aligned, one request at a time (the runtime waits for
  // each), every request in a fresh stretch of the file; then read back in the same pieces.
  if (small_count > 0 && small_bytes > 0) {
    const Bytes n = std::min(small_bytes, transfer);  // the buffers hold `transfer` bytes
    const Bytes stride = (n / kDiskAlignment + 2) * kDiskAlignment;
    const std::int64_t count = std::min<std::int64_t>(small_count, total / stride);
    auto offset_of = [&](std::int64_t i) { return i * stride + 512 + 8 * (i % 7); };
    m.small_bytes = n;
    if (progress && count > 0) {
      progress(str_cat("disk: ", count, " small requests of ", format_bytes(n),
                       " at unaligned offsets, written then read"));
    }
    std::memset(read_buffer.get(), 0, static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < count; ++i) {
      const auto start = Clock::now();
      store.write_sync(region, write_buffer.get(), n, offset_of(i));
      m.small_write_seconds.push_back(seconds_since(start));
    }
    for (std::int64_t i = 0; i < count; ++i) {
      const auto start = Clock::now();
      store.read_sync(region, read_buffer.get(), n, offset_of(i));
      m.small_read_seconds.push_back(seconds_since(start));
      FLEXGEN_REQUIRE(std::memcmp(read_buffer.get(), write_buffer.get(), static_cast<std::size_t>(n)) == 0,
                      "profile: the disk test's small request read back different data than it wrote at offset ",
                      offset_of(i), " of ", store.file_name());
    }
  }
  store.release(region);
  return m;
}

HostMemoryMeasurement measure_host_memory(Bytes buffer_bytes, int passes) {
  FLEXGEN_REQUIRE(buffer_bytes >= 8 && buffer_bytes % 8 == 0,
                  "profile: the host memory buffer must be a positive multiple of 8 bytes (got ",
                  buffer_bytes, ")");
  FLEXGEN_REQUIRE(passes >= 1, "profile: at least one memory pass is needed (got ", passes, ")");
  HostMemoryMeasurement m;
  m.buffer_bytes = buffer_bytes;
  m.threads = parallel_threads();
  auto source = aligned_buffer(buffer_bytes, "the host memory test");
  auto destination = aligned_buffer(buffer_bytes, "the host memory test");
  fill_random_words(reinterpret_cast<std::uint64_t*>(source.get()), buffer_bytes / 8, 0x5eed0002);

  // Each thread copies one contiguous slice (64-byte aligned cuts).
  const std::int64_t slices = m.threads;
  const Bytes slice = (buffer_bytes / slices + 63) / 64 * 64;
  auto copy_pass = [&] {
    parallel_for(slices, 1, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) {
        const Bytes from = std::min(buffer_bytes, i * slice);
        const Bytes to = std::min(buffer_bytes, from + slice);
        std::memcpy(destination.get() + from, source.get() + from, static_cast<std::size_t>(to - from));
      }
    });
  };
  copy_pass();  // first touch of the destination's pages
  for (int p = 0; p < passes; ++p) {
    const auto start = Clock::now();
    copy_pass();
    m.copy_bytes_per_s.push_back(2.0 * static_cast<double>(buffer_bytes) / seconds_since(start));
  }
  FLEXGEN_REQUIRE(std::memcmp(source.get(), destination.get(), static_cast<std::size_t>(buffer_bytes)) == 0,
                  "profile: the host memory test's copy differs from its source");
  return m;
}

CpuAttentionMeasurement measure_cpu_attention(std::int64_t units, std::int64_t head_dim,
                                              std::int64_t positions, int passes, bool compressed,
                                              double min_pass_seconds, std::int64_t kept, Bytes working_set) {
  FLEXGEN_REQUIRE(units >= 1 && head_dim >= 1 && positions >= 1 && passes >= 1,
                  "profile: CPU attention needs positive units, head_dim, positions and passes (got ",
                  units, ", ", head_dim, ", ", positions, ", ", passes, ")");
  FLEXGEN_REQUIRE(kept >= 0 && kept <= positions - 1, "profile: CPU attention keeps ", kept, " of ", positions - 1,
                  " cached positions");
  CpuAttentionMeasurement m;
  m.units = units;
  m.head_dim = head_dim;
  m.positions = positions;
  m.threads = parallel_threads();
  m.compressed = compressed;
  m.kept = kept;

  // The CUDA backend's delegated attention (cpu_delegation: cpu_decode_attention_f16) over fp16
  // rows in the home layout [positions, units, head_dim], the last position being the new token.
  const std::int64_t elements = units * positions * head_dim;
  std::unique_ptr<float[]> random(new float[static_cast<std::size_t>(elements)]);
  std::unique_ptr<std::uint16_t[]> keys(new std::uint16_t[static_cast<std::size_t>(elements)]);
  std::unique_ptr<std::uint16_t[]> values(new std::uint16_t[static_cast<std::size_t>(elements)]);
  const std::int64_t one = units * head_dim;
  std::unique_ptr<std::uint16_t[]> queries(new std::uint16_t[static_cast<std::size_t>(one)]);
  std::unique_ptr<std::uint16_t[]> new_key(new std::uint16_t[static_cast<std::size_t>(one)]);
  std::unique_ptr<std::uint16_t[]> new_value(new std::uint16_t[static_cast<std::size_t>(one)]);
  std::unique_ptr<std::uint16_t[]> out(new std::uint16_t[static_cast<std::size_t>(one)]);
  auto fill_half = [&](std::uint16_t* dst, std::int64_t n, std::uint64_t seed, float scale) {
    fill_uniform(random.get(), n, seed);
    parallel_for(n, 1 << 16, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) dst[i] = float_to_half(scale * random[static_cast<std::size_t>(i)]);
    });
  };
  fill_half(keys.get(), elements, 0x5eed0003, 1.0f);
  fill_half(values.get(), elements, 0x5eed0004, 1.0f);
  // Queries come scaled by head_dim^-0.5, as the runtime passes them.
  fill_half(queries.get(), one, 0x5eed0005, 1.0f / std::sqrt(static_cast<float>(head_dim)));
  fill_half(new_key.get(), one, 0x5eed0006, 1.0f);
  fill_half(new_value.get(), one, 0x5eed0007, 1.0f);
  const std::int64_t pad = 0;
  CpuAttentionBatch batch;
  batch.units = units;
  batch.num_heads = units;  // one sequence of `units` heads
  batch.head_dim = head_dim;
  batch.past = positions - 1;
  batch.pad_len = std::span<const std::int64_t>(&pad, 1);
  batch.query = queries.get();
  batch.new_key = new_key.get();
  batch.new_value = new_value.get();
  batch.keys = reinterpret_cast<std::byte*>(keys.get());
  batch.values = reinterpret_cast<std::byte*>(values.get());
  batch.row_bytes = head_dim * 2;
  batch.out = out.get();
  batch.kept = kept;
  // 4-bit rows: every row (head_dim values) quantized on its own, as the runtime stores them.
  std::unique_ptr<std::byte[]> q4_keys, q4_values;
  if (compressed) {
    const Bytes row = quantized_bytes(Shape{1, head_dim}, cache_quant_spec(ScaleType::kFloat16));
    const std::int64_t rows = units * positions;
    q4_keys.reset(new std::byte[static_cast<std::size_t>(rows * row)]);
    q4_values.reset(new std::byte[static_cast<std::size_t>(rows * row)]);
    auto pack = [&](const std::uint16_t* src, std::byte* dst) {
      parallel_for(rows, 1024, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t r = b; r < e; ++r) quantize_cache_row_f16(src + r * head_dim, head_dim, dst + r * row, row);
      });
    };
    pack(keys.get(), q4_keys.get());
    pack(values.get(), q4_values.get());
    batch.keys = q4_keys.get();
    batch.values = q4_values.get();
    batch.row_bytes = row;
    batch.compressed = true;
  }
  // Copies of the rows for the calls to cycle through: a run reads each layer's cache once per
  // step, from memory; one copy that fits the last-level cache would be read from there.
  const Bytes side = units * positions * batch.row_bytes;  // keys (or values) of one copy
  m.copy_bytes = 2 * side;
  m.copies = static_cast<int>(std::clamp<Bytes>((working_set + m.copy_bytes - 1) / m.copy_bytes, 1, 1024));
  // Each further copy is one buffer: its keys, then its values.
  auto copy_side = [&](std::byte* to, const std::byte* from) {
    parallel_for(side, 1 << 24, [&](std::int64_t b, std::int64_t e) {
      std::memcpy(to + b, from + b, static_cast<std::size_t>(e - b));
    });
  };
  std::vector<std::unique_ptr<std::byte[]>> copies;
  std::vector<std::pair<std::byte*, std::byte*>> rows = {{batch.keys, batch.values}};
  for (int c = 1; c < m.copies; ++c) {
    std::byte* to = copies.emplace_back(new std::byte[static_cast<std::size_t>(2 * side)]).get();
    copy_side(to, batch.keys);
    copy_side(to + side, batch.values);
    rows.emplace_back(to, to + side);
  }
  std::size_t next_copy = 0;

  // As the schedule counts them: every position scored and summed, or (top-k) every cached
  // position and the new one scored, the kept ones and the new one summed.
  const double flops = static_cast<double>(units) * 2.0 * static_cast<double>(head_dim) *
                       static_cast<double>(kept > 0 ? positions + kept + 1 : 2 * positions);
  // A run calls the kernel back to back, with the cores busy; one short call on idle cores meets
  // them waking up (thread hand-off, clock ramp). So a pass repeats the kernel for at least
  // min_pass_seconds, after a warm-up of two such passes.
  auto timed_pass = [&](int calls) {
    const auto start = Clock::now();
    for (int c = 0; c < calls; ++c) {
      batch.keys = rows[next_copy].first;
      batch.values = rows[next_copy].second;
      next_copy = (next_copy + 1) % rows.size();
      cpu_decode_attention_f16(batch);
    }
    return std::max(seconds_since(start), 1e-9);
  };
  const double first_call = timed_pass(1);
  m.calls_per_pass = static_cast<int>(std::clamp(std::ceil(min_pass_seconds / first_call), 1.0, 1e6));
  timed_pass(2 * m.calls_per_pass);  // warm-up
  for (int p = 0; p < passes; ++p) {
    m.flops_per_s.push_back(flops * static_cast<double>(m.calls_per_pass) / timed_pass(m.calls_per_pass));
  }
  for (std::int64_t i = 0; i < one; ++i) {
    const float v = half_to_float(out[static_cast<std::size_t>(i)]);
    FLEXGEN_REQUIRE(std::isfinite(v) && std::fabs(v) <= 1.01f,
                    "profile: CPU attention produced ", v, ", outside the values' range");
  }
  return m;
}

HostMeasurements profile_host(const HostProfileOptions& options) {
  HostMeasurements h;
  h.memory_bytes = physical_memory_bytes();
  h.hardware_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::error_code ec;
  std::filesystem::create_directories(options.offload_dir, ec);
  FLEXGEN_REQUIRE(!ec && std::filesystem::is_directory(options.offload_dir),
                  "profile: cannot use the offload directory ", options.offload_dir.string(),
                  ec ? ": " + ec.message() : std::string(": not a directory"));
  h.disk_free_bytes = free_disk_bytes(options.offload_dir);
  h.disk = measure_disk(options.offload_dir, options.disk_bytes, options.disk_transfer_bytes,
                        options.progress, options.disk_small_bytes, options.disk_small_count);
  if (options.progress) {
    options.progress(str_cat("host memory: memcpy of ", format_bytes(options.memory_buffer_bytes),
                             " on ", parallel_threads(), " threads"));
  }
  h.memory = measure_host_memory(options.memory_buffer_bytes, options.memory_passes);
  for (std::int64_t positions : options.attention_positions) {
    if (options.progress) {
      options.progress(str_cat("CPU attention: ", options.attention_units, " units x ", positions,
                               " positions x head_dim ", options.attention_head_dim));
    }
    h.cpu_attention.push_back(measure_cpu_attention(options.attention_units,
                                                    options.attention_head_dim, positions,
                                                    options.attention_passes, false,
                                                    options.attention_min_pass_s, 0, options.attention_working_set));
  }
  // The same kernel over a 4-bit cache (CPU delegation with --compress-cache), at the first
  // number of positions.
  if (!options.attention_positions.empty()) {
    const std::int64_t positions = options.attention_positions.front();
    if (options.progress) {
      options.progress(str_cat("CPU attention, 4-bit cache: ", options.attention_units, " units x ", positions,
                               " positions x head_dim ", options.attention_head_dim));
    }
    h.cpu_attention.push_back(measure_cpu_attention(options.attention_units, options.attention_head_dim, positions,
                                                    options.attention_passes, true,
                                                    options.attention_min_pass_s, 0, options.attention_working_set));
    // And top-k sparse attention over fp16 rows (--attn-sparsity 0.25), which scores every key but
    // sums a quarter of the values: its own code path, not the dense kernel's rate.
    const std::int64_t kept = (positions - 1) / 4;
    if (kept >= 1) {
      if (options.progress) {
        options.progress(str_cat("CPU attention, top-k: ", options.attention_units, " units x ", positions,
                                 " positions x head_dim ", options.attention_head_dim, ", ", kept, " kept"));
      }
      h.cpu_attention.push_back(measure_cpu_attention(options.attention_units, options.attention_head_dim, positions,
                                                      options.attention_passes, false,
                                                      options.attention_min_pass_s, kept, options.attention_working_set));
    }
  }
  return h;
}

}  // namespace flexgen
