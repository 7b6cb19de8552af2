#include "engine/core/format.h"

#include <array>
#include <cmath>
#include <cstdio>

namespace flexgen {

std::string format_bytes(Bytes bytes) {
  const bool negative = bytes < 0;
  // Magnitude as double; exact for every count below 2^53 and close enough beyond.
  const double magnitude = std::fabs(static_cast<double>(bytes));
  const std::string sign = negative ? "-" : "";
  if (magnitude < 1024.0) return sign + std::to_string(static_cast<long long>(magnitude)) + " B";

  static constexpr std::array<const char*, 6> kUnits = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = magnitude / 1024.0;
  std::size_t unit = 0;
  // Move up while the value, rounded to one decimal, would print as 1024.0 or more.
  while (unit + 1 < kUnits.size() && std::round(value * 10.0) >= 1024.0 * 10.0) {
    value /= 1024.0;
    ++unit;
  }
  std::array<char, 32> text{};
  std::snprintf(text.data(), text.size(), "%.1f %s", value, kUnits[unit]);
  return sign + text.data();
}


std::string printable(std::string_view text, std::size_t max_bytes) {
  bool cut = false;
  if (text.size() > max_bytes) {
    std::size_t end = max_bytes;
    // Back up over UTF-8 continuation bytes (10xxxxxx) so that no character is split.
    while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
    text = text.substr(0, end);
    cut = true;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() + (cut ? 3 : 0));
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (byte < 0x20 || byte == 0x7f) {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += c;
    }
  }
  if (cut) out += "...";
  return out;
}

}  // namespace flexgen
