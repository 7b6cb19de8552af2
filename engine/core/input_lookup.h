#pragma once
// Finding the inputs a command names: a model (a table name or a directory with config.json) and
// a hardware file (a path, or a name under experiments/hardware/ of the source tree).
#include <filesystem>
#include <string>

#include "engine/core/hardware_spec.h"
#include "engine/core/model_spec.h"

namespace flexgen {

// The hardware file the cost-model commands use when none is given.
inline constexpr const char* kDefaultHardwareFile = "experiments/hardware/t4-paper.json";

// Resolves a --hardware argument, trying in order: the path as given (relative to the working
// directory), the path relative to the source tree, and for a bare name such as "t4-paper",
// experiments/hardware/<name>.json in the working directory and in the source tree. Throws
// flexgen::Error naming every place it looked.
std::filesystem::path resolve_hardware_path(const std::string& argument);
HardwareSpec load_hardware(const std::string& argument);

// A --model argument: a directory holding config.json, a config.json file, or a name from the
// built-in table ("opt-30b", "facebook/opt-30b"). Throws flexgen::Error for a directory without
// config.json or an unknown name.
ModelSpec load_model_spec(const std::string& argument);

}  // namespace flexgen
