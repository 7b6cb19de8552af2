#pragma once
// Test-only fault injection: named points in the runtime (and in the output file of `flexgen
// batch`) where a test makes an operation fail (or come back short) on purpose, to check that
// every failure ends the run with one clear flexgen::Error, no hang, no offload file left behind
// and no output line lost.
//
// Compiled in only when the build defines FLEXGEN_FAULT_INJECTION=1 (CMake option
// -DFLEXGEN_FAULT_INJECTION=ON; the `test` and `asan` presets set it, `release` does not). In
// other builds strike() is a constexpr function returning Effect::kNone, so every check at a
// point folds away: zero cost. arm() then throws, and tests skip (see tests/support/faults.h).
//
// A point counts its calls from the moment it is armed; the armed effect strikes call number
// `after` (0: the next call) once, or, for Effect::kStall, that call and every later one. Points
// are independent (several may be armed at once); all state is atomic, so points may be hit from
// any thread (the disk tier's I/O threads). The `flexgen` command arms points from the
// FLEXGEN_FAULT environment variable (arm_from_environment), so that tests can run it end to end.
//
// Adding a point: an enumerator before kCount, its name in point_name() (fault_injection.cc),
// the effects it supports in supports(), and `fault::strike(Point::kX)` where the operation
// happens; then a test in tests/engine/runtime/fault_injection_test.cc.
#include <cstdint>
#include <string>
#include <string_view>

namespace flexgen::fault {

enum class Point : std::uint8_t {
  kDiskWrite,         // a pwrite of the disk tier: kFail (errno), kShort (half), kStall (0 bytes)
  kDiskRead,          // a pread of the disk tier: kFail (errno), kShort (half the bytes)
  kDiskOpenTmpfile,   // opening the offload file with O_TMPFILE: kFail (errno)
  kDiskEnableDirect,  // switching the offload file to O_DIRECT: kFail (buffered I/O follows)
  kDiskPreallocate,   // fallocate of the planned disk bytes: kFail (errno)
  kDiskAllocate,      // a region of the disk tier (growing the offload file): kFail (errno)
  kAllocGpu,          // a buffer of the GPU tier (host memory on the host backend): kFail
  kAllocCpu,          // a buffer of the CPU tier: kFail
  kCudaCopy,          // a copy between tiers on the CUDA backend (cudaMemcpy*Async): kFail
  kOutputWrite,       // a write() of a line of `flexgen batch`'s output file: kFail (errno), kShort (half)
  kStageCompute,      // a compute task of a pipeline stage's runtime: kFail kills the process at once
                      // (SIGKILL to itself: a stage that dies; with FLEXGEN_FAULT_STAGE, launcher.h)
  kCount
};

enum class Effect : std::uint8_t {
  kNone,   // the operation runs normally
  kFail,   // the operation fails; errno is set to the armed error
  kShort,  // a transfer moves only part of its bytes (the caller must retry the rest)
  kStall,  // a transfer moves no bytes, at the armed call and every later one (a full disk)
};

// "disk_write", "alloc_cpu" ...; "fail", "short", "stall".
const char* point_name(Point point);
const char* effect_name(Effect effect);
// Whether `point` can produce `effect` (kFail everywhere; kShort and kStall on transfers).
bool supports(Point point, Effect effect);

#if defined(FLEXGEN_FAULT_INJECTION) && FLEXGEN_FAULT_INJECTION
inline constexpr bool kCompiledIn = true;
// Called at a point each time its operation runs: the effect that strikes this call (kNone
// almost always). Sets errno to the armed error when it returns kFail or kStall.
Effect strike(Point point);
#else
inline constexpr bool kCompiledIn = false;
constexpr Effect strike(Point) { return Effect::kNone; }
#endif

// Arms `point` (replacing what was armed there): `effect` strikes call number `after` of the
// point from now on. Throws flexgen::Error for an effect the point does not support, a negative
// `after`, and in builds without fault injection.
void arm(Point point, Effect effect, std::int64_t after = 0, int error = 0);
void disarm(Point point);
void disarm_all();
// Calls of `point` since it was last armed (0 when never armed, or without fault injection).
std::int64_t calls(Point point);

// Arms the faults of a spec: comma-separated "POINT:EFFECT[:AFTER[:ERRNO]]", e.g.
// "disk_write:fail:2:ENOSPC,alloc_cpu:fail". ERRNO is a name (ENOSPC, EIO, ENOMEM, EACCES,
// EINVAL, EOPNOTSUPP, EROFS, EDQUOT, EFBIG) or a positive number; the default is EIO. Throws
// flexgen::Error "FLEXGEN_FAULT: ..." naming what is wrong.
void arm_from_spec(std::string_view spec);
// arm_from_spec(getenv("FLEXGEN_FAULT")) when the variable is set and not empty. Throws
// flexgen::Error when it is set in a build without fault injection, so that a test never passes
// by running without the fault it asked for.
void arm_from_environment();

}  // namespace flexgen::fault
