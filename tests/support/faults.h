#pragma once
// Helpers for tests that arm fault points (engine/runtime/fault_injection.h).
#include <gtest/gtest.h>

#include "engine/runtime/fault_injection.h"

namespace flexgen::testing {

// Disarms every fault point when the test ends, passing or not.
struct FaultGuard {
  FaultGuard() { fault::disarm_all(); }
  ~FaultGuard() { fault::disarm_all(); }
  FaultGuard(const FaultGuard&) = delete;
  FaultGuard& operator=(const FaultGuard&) = delete;
};

}  // namespace flexgen::testing

// Skips the calling test in builds without the fault points (the `release` preset); the `test`
// preset (scripts/test.sh, CI) and the `asan` preset have them.
#define FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION()                                         \
  do {                                                                                 \
    if (!::flexgen::fault::kCompiledIn) {                                              \
      GTEST_SKIP() << "built without fault injection (-DFLEXGEN_FAULT_INJECTION=ON)"; \
    }                                                                                  \
  } while (0)
