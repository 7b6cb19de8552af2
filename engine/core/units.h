#pragma once
// Units in type aliases: every quantity says what it counts.
#include <cstdint>

namespace flexgen {

using Bytes = std::int64_t;          // a byte count
using Flops = double;                // floating-point operations
using BytesPerSecond = double;       // a link's bandwidth
using FlopsPerSecond = double;       // a unit's achieved rate
using Seconds = double;              // wall-clock time in the cost model and reports
using Nanoseconds = std::int64_t;    // integer event time in the simulator

inline constexpr Bytes kKiB = 1024;
inline constexpr Bytes kMiB = 1024 * kKiB;
inline constexpr Bytes kGiB = 1024 * kMiB;

}  // namespace flexgen
