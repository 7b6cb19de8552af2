#pragma once
// Small helpers shared by the tests: catching flexgen::Error messages, scratch directories.
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

namespace flexgen::testing {

// Runs `action` and returns the message of the flexgen::Error it throws. When it throws none,
// records a non-fatal gtest failure and returns "" (so a HasSubstr check on the result fails too).
// Any other exception propagates.
std::string error_of(const std::function<void()>& action);

// A fresh, empty directory, unique per process and per construction, created on construction and
// removed with its contents on destruction (owner permissions on it are restored first).
class TempDir {
 public:
  explicit TempDir(const std::filesystem::path& parent = std::filesystem::temp_directory_path());
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  // True when the directory holds no entries.
  bool empty() const { return std::filesystem::is_empty(path_); }
  // Writes `contents` (binary, truncating) to the file `name` in the directory; returns its path.
  std::filesystem::path write(const std::string& name, std::string_view contents) const;

 private:
  std::filesystem::path path_;
};

}  // namespace flexgen::testing
