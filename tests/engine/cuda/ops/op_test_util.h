#pragma once
// Helpers for the CUDA op tests: fp16-exact random data, error norms, and a KV cache split into
// two position-major parts (the GPU home and the cache slot) with a reference view of each unit's
// rows.
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "engine/cuda/ops/host_calls.h"
#include "engine/tensor/tensor.h"

namespace flexgen::testing {

// The nearest fp16 value, as a float.
inline float to_half_value(float v) { return half_to_float(float_to_half(v)); }

// n values drawn from N(mean, stddev), rounded to fp16.
inline std::vector<float> random_halves(std::size_t n, std::mt19937& rng, float stddev,
                                        float mean = 0.0f) {
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = to_half_value(dist(rng));
  return v;
}

// ||out - ref|| / ||ref|| in double (NaN if any output is NaN).
inline double relative_error(std::span<const float> out, std::span<const float> ref) {
  double num = 0.0;
  double den = 0.0;
  for (std::size_t i = 0; i < out.size() && i < ref.size(); ++i) {
    const double d = static_cast<double>(out[i]) - static_cast<double>(ref[i]);
    num += d * d;
    den += static_cast<double>(ref[i]) * static_cast<double>(ref[i]);
  }
  return std::sqrt(num) / std::sqrt(den > 0.0 ? den : 1.0);
}

inline std::int64_t count_nan(std::span<const float> v) {
  std::int64_t n = 0;
  for (float x : v) n += std::isnan(x) ? 1 : 0;
  return n;
}

// A batch's KV cache, units [0, gpu_units) in a "home" buffer [capacity, gpu_units, head_dim] and
// the other units in a "slot" buffer [capacity, slot_units, head_dim] starting at slot unit
// slot_first (slot_units >= slot_first + the off-GPU units, so the slot part has its own stride and
// offset). Every row is random fp16.
struct SplitCache {
  std::int64_t units = 0;
  std::int64_t head_dim = 0;
  std::int64_t capacity = 0;
  std::int64_t gpu_units = 0;
  std::int64_t slot_units = 0;
  std::int64_t slot_first = 0;
  std::vector<float> home_k, home_v, slot_k, slot_v;

  SplitCache(std::int64_t units_, std::int64_t head_dim_, std::int64_t capacity_,
             std::int64_t gpu_units_, std::int64_t slot_first_, std::int64_t slot_spare,
             std::mt19937& rng, float stddev = 1.0f)
      : units(units_), head_dim(head_dim_), capacity(capacity_), gpu_units(gpu_units_),
        slot_units(slot_first_ + (units_ - gpu_units_) + slot_spare), slot_first(slot_first_) {
    const auto home_n = static_cast<std::size_t>(capacity * gpu_units * head_dim);
    const auto slot_n = static_cast<std::size_t>(capacity * slot_units * head_dim);
    home_k = random_halves(home_n, rng, stddev);
    home_v = random_halves(home_n, rng, stddev);
    slot_k = random_halves(slot_n, rng, stddev);
    slot_v = random_halves(slot_n, rng, stddev);
  }

  // The row of unit u at position p.
  const float* key(std::int64_t u, std::int64_t p) const { return row(home_k, slot_k, u, p); }
  const float* value(std::int64_t u, std::int64_t p) const { return row(home_v, slot_v, u, p); }

  // Positions [0, n) of unit u, contiguous ([n, head_dim]).
  std::vector<float> keys(std::int64_t u, std::int64_t n) const { return gather(home_k, slot_k, u, n); }
  std::vector<float> values(std::int64_t u, std::int64_t n) const {
    return gather(home_v, slot_v, u, n);
  }

  // The view: the home part (if any units) and the slot part restricted to units
  // [gpu_units, slot_end) (slot_end = units by default; less leaves the rest uncovered).
  std::vector<cuda::on_host::HostKvPart> parts(bool with_values = true,
                                               std::int64_t slot_end = -1) const {
    std::vector<cuda::on_host::HostKvPart> p;
    if (gpu_units > 0) {
      p.push_back({home_k, with_values ? std::span<const float>(home_v) : std::span<const float>(),
                   0, 0, gpu_units, gpu_units * head_dim});
    }
    if (gpu_units < units) {
      p.push_back({slot_k, with_values ? std::span<const float>(slot_v) : std::span<const float>(),
                   slot_first * head_dim, gpu_units, slot_end < 0 ? units : slot_end,
                   slot_units * head_dim});
    }
    return p;
  }

 private:
  const float* row(const std::vector<float>& home, const std::vector<float>& slot, std::int64_t u,
                   std::int64_t p) const {
    if (u < gpu_units) return home.data() + (p * gpu_units + u) * head_dim;
    return slot.data() + (p * slot_units + slot_first + (u - gpu_units)) * head_dim;
  }
  std::vector<float> gather(const std::vector<float>& home, const std::vector<float>& slot,
                            std::int64_t u, std::int64_t n) const {
    std::vector<float> out(static_cast<std::size_t>(n * head_dim));
    for (std::int64_t p = 0; p < n; ++p) {
      const float* r = row(home, slot, u, p);
      std::copy(r, r + head_dim, out.begin() + p * head_dim);
    }
    return out;
  }
};

}  // namespace flexgen::testing
