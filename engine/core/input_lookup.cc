#include "engine/core/input_lookup.h"

#include <vector>

#include "engine/core/error.h"

namespace fs = std::filesystem;

namespace flexgen {
namespace {

fs::path source_dir() {
#ifdef FLEXGEN_SOURCE_DIR
  return fs::path(FLEXGEN_SOURCE_DIR);
#else
  return fs::path();
#endif
}

}  // namespace

fs::path resolve_hardware_path(const std::string& argument) {
  FLEXGEN_REQUIRE(!argument.empty(), "--hardware: expected a hardware file or name (got an empty string)");
  const fs::path given(argument);
  std::vector<fs::path> tried = {given};
  if (given.is_relative() && !source_dir().empty()) tried.push_back(source_dir() / given);
  if (!given.has_parent_path() && given.extension() != ".json") {
    const fs::path file = fs::path("experiments") / "hardware" / (argument + ".json");
    tried.push_back(file);
    if (!source_dir().empty()) tried.push_back(source_dir() / file);
  }
  for (const fs::path& p : tried) {
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return p;
  }
  std::string where;
  for (const fs::path& p : tried) where += (where.empty() ? "" : ", ") + p.string();
  fail("--hardware '", argument, "': no such hardware file (looked for ", where, ")");
}

HardwareSpec load_hardware(const std::string& argument) {
  return HardwareSpec::from_file(resolve_hardware_path(argument));
}

ModelSpec load_model_spec(const std::string& argument) {
  const fs::path path(argument);
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    FLEXGEN_REQUIRE(fs::is_regular_file(path / "config.json", ec), argument, ": no config.json in this directory");
    return ModelSpec::from_config_json(path / "config.json");
  }
  if (fs::is_regular_file(path, ec)) return ModelSpec::from_config_json(path);
  return ModelSpec::from_name(argument);
}

}  // namespace flexgen
