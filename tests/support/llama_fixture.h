#pragma once
// The tiny-LLaMA reference fixture made by HF transformers (scripts/make_llama_fixtures.py), which
// the GPU machine produces; the tests skip while it is absent.
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "support/fixture.h"

namespace flexgen::testing {

inline std::filesystem::path tiny_llama_dir() { return fixture_dir() / "tiny-llama"; }

// Empty when the fixture is complete; else the message a test skips with.
std::string tiny_llama_missing();

// tests/fixtures/tiny-llama-reference.json, parsed (call only when tiny_llama_missing() is empty).
const nlohmann::json& tiny_llama_reference();

// Bytes from a lower-case hex string ("48656c" -> "Hel").
std::string from_hex(const std::string& hex);

}  // namespace flexgen::testing
