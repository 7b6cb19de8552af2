#include "engine/core/units_parse.h"

#include <array>
#include <cctype>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "engine/core/error.h"

namespace flexgen {
namespace {

__extension__ typedef unsigned __int128 Wide;  // holds (19 significant digits) x 2^60 exactly

struct Unit {
  std::string_view name;  // lower case
  std::uint64_t multiplier;
};

constexpr std::uint64_t kKilo = 1000;
constexpr std::uint64_t kKibi = 1024;
constexpr std::array<Unit, 14> kUnits = {{
    {"", 1},
    {"b", 1},
    {"kb", kKilo},
    {"mb", kKilo* kKilo},
    {"gb", kKilo* kKilo* kKilo},
    {"tb", kKilo* kKilo* kKilo* kKilo},
    {"pb", kKilo* kKilo* kKilo* kKilo* kKilo},
    {"eb", kKilo* kKilo* kKilo* kKilo* kKilo* kKilo},
    {"kib", kKibi},
    {"mib", kKibi* kKibi},
    {"gib", kKibi* kKibi* kKibi},
    {"tib", kKibi* kKibi* kKibi* kKibi},
    {"pib", kKibi* kKibi* kKibi* kKibi* kKibi},
    {"eib", kKibi* kKibi* kKibi* kKibi* kKibi* kKibi},
}};

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_space(char c) { return c == ' ' || c == '\t'; }

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

Bytes parse_bytes(std::string_view text) {
  const auto error = [&](auto&&... reason) {
    fail("invalid byte count '", text, "': ", reason...);
  };
  constexpr std::string_view kExpected = "expected a number of bytes such as 24GiB, 32e9 or 1024";

  std::size_t pos = 0;
  const auto skip_space = [&] {
    while (pos < text.size() && is_space(text[pos])) ++pos;
  };
  skip_space();
  if (pos < text.size() && text[pos] == '-') error("must not be negative");

  // Mantissa: digits, optionally a point and more digits; the value is digits x 10^exponent.
  std::string digits;
  std::int64_t exponent = 0;
  bool any_digit = false;
  while (pos < text.size() && is_digit(text[pos])) {
    digits += text[pos++];
    any_digit = true;
  }
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    while (pos < text.size() && is_digit(text[pos])) {
      digits += text[pos++];
      --exponent;
      any_digit = true;
    }
  }
  if (!any_digit) error(kExpected);

  // Optional exponent: e or E, an optional sign, digits. Without digits the e starts a unit (EB).
  std::size_t exponent_digits = pos + 1;
  if (exponent_digits < text.size() &&
      (text[exponent_digits] == '+' || text[exponent_digits] == '-')) {
    ++exponent_digits;
  }
  if (pos < text.size() && (text[pos] == 'e' || text[pos] == 'E') &&
      exponent_digits < text.size() && is_digit(text[exponent_digits])) {
    std::size_t p = exponent_digits;
    while (p < text.size() && is_digit(text[p])) ++p;
    int written = 0;
    const char* first = text.data() + (text[pos + 1] == '+' ? pos + 2 : pos + 1);
    const auto [end, ec] = std::from_chars(first, text.data() + p, written);
    if (ec != std::errc() || end != text.data() + p) error("exponent out of range");
    exponent += written;
    pos = p;
  }

  skip_space();
  const std::string unit_name = lower(text.substr(pos));
  const Unit* unit = nullptr;
  for (const Unit& candidate : kUnits) {
    if (candidate.name == unit_name) unit = &candidate;
  }
  if (unit == nullptr) {
    error("unknown unit '", text.substr(pos),
          "' (use B, kB, MB, GB, TB, PB, EB, KiB, MiB, GiB, TiB, PiB or EiB)");
  }

  // Exact arithmetic: strip leading zeros and trailing zeros (moving them into the exponent).
  const std::size_t first_nonzero = digits.find_first_not_of('0');
  if (first_nonzero == std::string::npos) return 0;
  digits.erase(0, first_nonzero);
  while (digits.back() == '0') {
    digits.pop_back();
    ++exponent;
  }
  constexpr Bytes kMax = std::numeric_limits<Bytes>::max();
  if (digits.size() > 19) error("too many significant digits");
  Wide value = 0;
  for (const char c : digits) value = value * 10 + static_cast<Wide>(c - '0');
  value *= unit->multiplier;  // < 10^19 * 2^60 < 2^124

  if (exponent >= 0) {
    for (std::int64_t i = 0; i < exponent; ++i) {
      if (value > static_cast<Wide>(kMax)) break;
      value *= 10;
    }
  } else {
    // Dividing by 10^-exponent must leave no remainder. 10^38 < 2^127 still fits; beyond that the
    // value (< 2^124 < 10^38) cannot be a multiple.
    if (exponent < -38) error("not a whole number of bytes");
    Wide divisor = 1;
    for (std::int64_t i = 0; i < -exponent; ++i) divisor *= 10;
    if (value % divisor != 0) error("not a whole number of bytes");
    value /= divisor;
  }
  if (value > static_cast<Wide>(kMax)) error("too large (at most ", kMax, " bytes)");
  return static_cast<Bytes>(value);
}

}  // namespace flexgen
