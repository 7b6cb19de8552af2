#include "support/llama_fixture.h"

#include <fstream>
#include <stdexcept>

namespace flexgen::testing {

std::string tiny_llama_missing() {
  for (const std::filesystem::path& p :
       {tiny_llama_dir() / "config.json", tiny_llama_dir() / "model.safetensors", tiny_llama_dir() / "tokenizer.model",
        fixture_dir() / "tiny-llama-reference.json", fixture_dir() / "tiny-llama-reference-logits.safetensors"}) {
    if (!std::filesystem::exists(p)) {
      return p.string() + " is absent: make it on the GPU machine with `python3 scripts/make_llama_fixtures.py "
                          "--out tests/fixtures` (docs/llama.md)";
    }
  }
  return {};
}

const nlohmann::json& tiny_llama_reference() {
  static const nlohmann::json reference = [] {
    std::ifstream in(fixture_dir() / "tiny-llama-reference.json");
    if (!in) throw std::runtime_error("cannot open tiny-llama-reference.json");
    return nlohmann::json::parse(in);
  }();
  return reference;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  return out;
}

}  // namespace flexgen::testing
