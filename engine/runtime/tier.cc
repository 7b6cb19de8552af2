#include "engine/runtime/tier.h"

namespace flexgen {

const char* tier_name(Tier tier) {
  switch (tier) {
    case Tier::kGpu: return "gpu";
    case Tier::kCpu: return "cpu";
    case Tier::kDisk: return "disk";
  }
  return "?";
}

const char* resource_name(Resource r) {
  switch (r) {
    case Resource::kGpuCompute: return "gpu_compute";
    case Resource::kCpuCompute: return "cpu_compute";
    case Resource::kH2D: return "h2d";
    case Resource::kD2H: return "d2h";
    case Resource::kDiskRead: return "disk_read";
    case Resource::kDiskWrite: return "disk_write";
  }
  return "?";
}

}  // namespace flexgen
