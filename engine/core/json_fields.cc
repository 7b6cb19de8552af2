#include "engine/core/json_fields.h"

#include <algorithm>
#include <cstddef>
#include <fstream>
#include <iterator>
#include <limits>
#include <set>
#include <vector>

#include "engine/core/error.h"

namespace flexgen {
namespace {

// Replaces control characters so that a message stays on one line.
std::string one_line(std::string text) {
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return text;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      const std::size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      row[j] = std::min({above + 1, row[j - 1] + 1, substitute});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

namespace {

// parse_json_text for either key order (nlohmann::json sorts keys, ordered_json keeps them).
template <typename Json>
Json parse_json_text_as(std::string_view text, const std::string& origin) {
  // nlohmann keeps the last of repeated keys silently; a callback records the first repeat instead.
  std::vector<std::set<std::string>> open_objects;
  std::optional<std::string> duplicate;
  const typename Json::parser_callback_t callback =
      [&](int /*depth*/, typename Json::parse_event_t event, Json& parsed) {
        using Event = typename Json::parse_event_t;
        if (event == Event::object_start) {
          open_objects.emplace_back();
        } else if (event == Event::object_end) {
          if (!open_objects.empty()) open_objects.pop_back();
        } else if (event == Event::key && !open_objects.empty() && parsed.is_string()) {
          const auto& key = parsed.template get_ref<const std::string&>();
          if (!open_objects.back().insert(key).second && !duplicate) duplicate = key;
        }
        return true;
      };
  Json result;
  try {
    result = Json::parse(text.begin(), text.end(), callback);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for huge numbers
    std::string message = e.what();
    if (const auto close = message.find("] ");
        message.rfind("[json.exception", 0) == 0 && close != std::string::npos) {
      message.erase(0, close + 2);
    }
    fail(origin, ": malformed JSON: ", one_line(message));
  }
  if (duplicate) fail(origin, ": duplicate key '", one_line(*duplicate), "'");
  return result;
}

}  // namespace

nlohmann::json parse_json_text(std::string_view text, const std::string& origin) {
  return parse_json_text_as<nlohmann::json>(text, origin);
}

nlohmann::ordered_json parse_ordered_json_text(std::string_view text, const std::string& origin) {
  return parse_json_text_as<nlohmann::ordered_json>(text, origin);
}

std::string read_text_file(const std::filesystem::path& path) {
  const std::string origin = path.string();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail(origin, ": no such file");
  if (std::filesystem::is_directory(path, ec)) fail(origin, ": is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(origin, ": cannot open file");
  std::string contents{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) fail(origin, ": cannot read file");
  return contents;
}

nlohmann::json read_json_file(const std::filesystem::path& path) {
  return parse_json_text(read_text_file(path), path.string());
}

std::optional<std::string_view> closest_key(std::string_view key,
                                            std::initializer_list<std::string_view> known) {
  std::optional<std::string_view> best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  for (const std::string_view candidate : known) {
    const std::size_t distance = edit_distance(key, candidate);
    const bool close = distance <= std::max<std::size_t>(2, key.size() / 3);
    const bool contains = key.size() >= 3 && (candidate.find(key) != std::string_view::npos ||
                                              key.find(candidate) != std::string_view::npos);
    if ((close || contains) && distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

void reject_unknown_keys(const nlohmann::json& object,
                         std::initializer_list<std::string_view> known, const std::string& origin) {
  for (const auto& item : object.items()) {
    const std::string& key = item.key();
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    if (const auto suggestion = closest_key(key, known)) {
      fail(origin, ": unknown key '", one_line(key), "'; did you mean '", *suggestion, "'?");
    }
    fail(origin, ": unknown key '", one_line(key), "'");
  }
}

const nlohmann::json& require_key(const nlohmann::json& object, std::string_view key,
                                  const std::string& origin) {
  const auto it = object.find(key);
  if (it == object.end()) fail(origin, ": missing key '", key, "'");
  return *it;
}

std::string json_preview(const nlohmann::json& value) {
  constexpr std::size_t kMaxChars = 40;
  std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() > kMaxChars) text = text.substr(0, kMaxChars - 3) + "...";
  return one_line(text);
}

std::optional<std::int64_t> json_as_int64(const nlohmann::json& value) {
  if (value.is_number_unsigned()) {
    const auto u = value.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return {};
    return static_cast<std::int64_t>(u);
  }
  if (value.is_number_integer()) return value.get<std::int64_t>();
  return {};
}

}  // namespace flexgen
