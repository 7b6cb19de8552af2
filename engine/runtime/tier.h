#pragma once
// The three memory tiers of the offloading hierarchy and the six resources tasks run on.
#include <array>
#include <cstdint>

#include "engine/core/units.h"

namespace flexgen {

enum class Tier : std::uint8_t { kGpu, kCpu, kDisk };
inline constexpr std::array<Tier, 3> kAllTiers = {Tier::kGpu, Tier::kCpu, Tier::kDisk};
const char* tier_name(Tier tier);  // "gpu", "cpu", "disk"

// Bytes per tier, indexed by Tier.
struct TierBytes {
  std::array<Bytes, 3> bytes{};
  Bytes& operator[](Tier t) { return bytes[static_cast<std::size_t>(t)]; }
  Bytes operator[](Tier t) const { return bytes[static_cast<std::size_t>(t)]; }
  TierBytes& operator+=(const TierBytes& o) {
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] += o.bytes[i];
    return *this;
  }
};

// A resource is a unit that runs one task at a time, in schedule order.
enum class Resource : std::uint8_t {
  kGpuCompute,
  kCpuCompute,
  kH2D,        // CPU -> GPU link
  kD2H,        // GPU -> CPU link
  kDiskRead,   // disk -> CPU
  kDiskWrite,  // CPU -> disk
};
inline constexpr int kNumResources = 6;
const char* resource_name(Resource r);  // "gpu_compute", "cpu_compute", "h2d", "d2h", "disk_read", "disk_write"

// Bytes moved over each link.
struct LinkBytes {
  Bytes h2d = 0, d2h = 0, disk_read = 0, disk_write = 0;
  LinkBytes& operator+=(const LinkBytes& o) {
    h2d += o.h2d;
    d2h += o.d2h;
    disk_read += o.disk_read;
    disk_write += o.disk_write;
    return *this;
  }
  bool operator==(const LinkBytes&) const = default;
};

}  // namespace flexgen
