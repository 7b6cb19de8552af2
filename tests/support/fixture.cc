#include "support/fixture.h"

#include <fstream>
#include <stdexcept>

namespace flexgen::testing {

const nlohmann::json& tiny_opt_reference() {
  static const nlohmann::json reference = [] {
    std::ifstream in(fixture_dir() / "tiny-opt-reference.json");
    if (!in) throw std::runtime_error("cannot open tiny-opt-reference.json");
    return nlohmann::json::parse(in);
  }();
  return reference;
}

std::vector<std::vector<std::int32_t>> json_to_ids(const nlohmann::json& rows) {
  std::vector<std::vector<std::int32_t>> out;
  for (const auto& row : rows) out.push_back(row.get<std::vector<std::int32_t>>());
  return out;
}

}  // namespace flexgen::testing
