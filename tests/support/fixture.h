#pragma once
// The tiny-OPT reference fixture made by HF transformers (scripts/make_fixtures.py).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace flexgen::testing {

inline std::filesystem::path fixture_dir() { return FLEXGEN_FIXTURE_DIR; }
inline std::filesystem::path tiny_opt_dir() { return fixture_dir() / "tiny-opt"; }

// tests/fixtures/tiny-opt-reference.json, parsed.
const nlohmann::json& tiny_opt_reference();

std::vector<std::vector<std::int32_t>> json_to_ids(const nlohmann::json& rows);

}  // namespace flexgen::testing
