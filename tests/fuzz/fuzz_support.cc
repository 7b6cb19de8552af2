#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <typeinfo>

#include "engine/core/error.h"
#include "fuzz/fuzz_target.h"

namespace flexgen::fuzz {

std::string run_one(Body body, std::string_view input) {
  try {
    body(input);
  } catch (const Error& e) {
    const std::string message = e.what();
    if (message.empty()) return "flexgen::Error with an empty message";
    if (message.find('\n') != std::string::npos || message.find('\r') != std::string::npos) {
      return "flexgen::Error message is not one line: " + message;
    }
  } catch (const PropertyViolation& e) {
    return e.what();
  } catch (const std::bad_alloc&) {
    return "std::bad_alloc escaped (an allocation sized by the input?)";
  } catch (const std::exception& e) {
    return std::string("an exception other than flexgen::Error escaped: ") + typeid(e).name() + ": " +
           e.what();
  } catch (...) {
    return "an exception of unknown type escaped";
  }
  return "";
}

void run_or_abort(const char* name, Body body, const std::uint8_t* data, std::size_t size) {
  const std::string problem =
      run_one(body, std::string_view(reinterpret_cast<const char*>(data), size));
  if (problem.empty()) return;
  std::fprintf(stderr, "fuzz_%s: finding: %s\n", name, problem.c_str());
  std::abort();
}

std::map<std::string, Body>& registry() {
  static std::map<std::string, Body> targets;
  return targets;
}

MemFile::MemFile(std::string_view contents) {
  fd_ = ::memfd_create("flexgen-fuzz", MFD_CLOEXEC);
  if (fd_ < 0) {
    std::fprintf(stderr, "memfd_create failed: %s\n", std::strerror(errno));
    std::abort();
  }
  std::size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = ::write(fd_, contents.data() + done, contents.size() - done);
    if (n <= 0) {
      std::fprintf(stderr, "write to memfd failed: %s\n", std::strerror(errno));
      std::abort();
    }
    done += static_cast<std::size_t>(n);
  }
  path_ = "/proc/self/fd/" + std::to_string(fd_);
}

MemFile::~MemFile() { ::close(fd_); }

std::filesystem::path tiny_opt_dir() {
  return std::filesystem::path(FLEXGEN_SOURCE_DIR) / "tests" / "fixtures" / "tiny-opt";
}

}  // namespace flexgen::fuzz
