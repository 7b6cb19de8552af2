#include "support/test_util.h"

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <stdexcept>
#include <system_error>

#include <gtest/gtest.h>

#include "engine/core/error.h"

namespace flexgen::testing {

namespace fs = std::filesystem;

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a flexgen::Error, but none was thrown";
  return "";
}

TempDir::TempDir(const fs::path& parent) {
  static std::atomic<int> counter{0};
  path_ = parent / ("flexgen-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  fs::remove_all(path_);
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ignored;
  fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ignored);
  fs::remove_all(path_, ignored);
}

fs::path TempDir::write(const std::string& name, std::string_view contents) const {
  const fs::path file = path_ / name;
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  if (!out) throw std::runtime_error("TempDir: cannot write " + file.string());
  return file;
}

}  // namespace flexgen::testing
