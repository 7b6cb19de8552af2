#pragma once
// Helpers for reading JSON input strictly: files parsed with duplicate keys rejected, unknown keys
// rejected with a "did you mean" hint, and values previewed in one line for error messages.
// Every error is a flexgen::Error whose one-line message starts with the origin (usually a path).
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace flexgen {

// Parses JSON text. Malformed text or a key repeated within one object throws
// "<origin>: malformed JSON: ..." / "<origin>: duplicate key 'k'".
nlohmann::json parse_json_text(std::string_view text, const std::string& origin);
// The same, keeping each object's keys in the order written (for lists whose order matters).
nlohmann::ordered_json parse_ordered_json_text(std::string_view text, const std::string& origin);

// A whole file as text; a missing, unreadable or directory path throws "<path>: ...".
std::string read_text_file(const std::filesystem::path& path);

// Reads and parses a file; a missing or unreadable file throws "<path>: cannot read file".
nlohmann::json read_json_file(const std::filesystem::path& path);

// The known key closest to `key` (edit distance, or one contains the other), if any is close.
std::optional<std::string_view> closest_key(std::string_view key,
                                            std::initializer_list<std::string_view> known);

// Throws "<origin>: unknown key 'k'; did you mean 'x'?" for the first key of `object` that is not
// in `known`. `object` must be a JSON object.
void reject_unknown_keys(const nlohmann::json& object,
                         std::initializer_list<std::string_view> known, const std::string& origin);

// The value at `key`; throws "<origin>: missing key 'key'" when absent. `object` must be an object.
const nlohmann::json& require_key(const nlohmann::json& object, std::string_view key,
                                  const std::string& origin);

// One-line rendering of a value for messages, cut to about 40 characters: 12, "abc", [1,2] ...
std::string json_preview(const nlohmann::json& value);

// A JSON integer that fits std::int64_t (not a float such as 2.0 or 1e3), if it is one.
std::optional<std::int64_t> json_as_int64(const nlohmann::json& value);

}  // namespace flexgen
