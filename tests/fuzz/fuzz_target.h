#pragma once
// libFuzzer targets for the input parsers, and their replay in the GoogleTest suite.
//
// A target is one file tests/fuzz/<name>_fuzz.cc:
//
//   #include "fuzz/fuzz_target.h"
//   FLEXGEN_FUZZ_TARGET(name) {   // `input`: the bytes to parse (std::string_view)
//     ...parse input; throwing flexgen::Error is fine, anything else is a finding...
//   }
//
// plus its seed corpus tests/fuzz/corpus/<name>/ (and regressions/<name>/ for inputs that once
// failed). CMake picks the file up in both builds: with -DFLEXGEN_BUILD_FUZZERS=ON (Clang) it
// becomes the executable fuzz_<name> (scripts/fuzz.sh runs it); in the test build it registers
// the body, and FuzzReplay.* (fuzz_replay_test.cc) runs every corpus and regression file
// through it, so the regressions are checked by every build.
//
// The contract checked on every input: the body returns, or throws flexgen::Error with a message
// of one non-empty line. Any other exception, a crash, a sanitizer report, a timeout or an
// out-of-memory is a finding. FLEXGEN_FUZZ_CHECK states a property that must hold (for example
// a round trip); a violation is a finding too.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>

namespace flexgen::fuzz {

using Body = void (*)(std::string_view input);

// A property of the code under test does not hold (not a flexgen::Error: a finding).
class PropertyViolation : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// Runs `body` on `input`: "" when the contract holds, else what went wrong.
std::string run_one(Body body, std::string_view input);
// run_one, printing the problem and aborting on a finding (so that libFuzzer reports it).
void run_or_abort(const char* name, Body body, const std::uint8_t* data, std::size_t size);

// The targets compiled into this binary (the test build), by name.
std::map<std::string, Body>& registry();
struct Registration {
  Registration(const char* name, Body body) { registry()[name] = body; }
};

// An anonymous in-memory file (memfd) holding `contents`, for parsers that read a path:
// path() is /proc/self/fd/<n>; the file disappears when the object does.
class MemFile {
 public:
  explicit MemFile(std::string_view contents);
  ~MemFile();
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  int fd_ = -1;
  std::filesystem::path path_;
};

// The repository's tests/fixtures/tiny-opt directory.
std::filesystem::path tiny_opt_dir();

}  // namespace flexgen::fuzz

#define FLEXGEN_FUZZ_CHECK(cond, what)                                                        \
  do {                                                                                        \
    if (!(cond)) throw ::flexgen::fuzz::PropertyViolation(std::string("property violated: ") + \
                                                          (what) + " (" #cond ")");           \
  } while (0)

#ifdef FLEXGEN_FUZZER_BUILD
#define FLEXGEN_FUZZ_TARGET(name)                                                     \
  static void flexgen_fuzz_##name(std::string_view input);                            \
  extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { \
    ::flexgen::fuzz::run_or_abort(#name, flexgen_fuzz_##name, data, size);            \
    return 0;                                                                         \
  }                                                                                   \
  static void flexgen_fuzz_##name(std::string_view input)
#else
#define FLEXGEN_FUZZ_TARGET(name)                                                         \
  static void flexgen_fuzz_##name(std::string_view input);                                \
  static const ::flexgen::fuzz::Registration flexgen_fuzz_registration_##name(#name,      \
                                                                              flexgen_fuzz_##name); \
  static void flexgen_fuzz_##name(std::string_view input)
#endif
