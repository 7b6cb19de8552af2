#include "engine/text/byte_level.h"

#include <array>

namespace flexgen {
namespace {

constexpr bool is_self_mapped(unsigned byte) {
  return (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) ||
         (byte >= 0xAE && byte <= 0xFF);
}

constexpr std::array<char32_t, 256> make_byte_map() {
  std::array<char32_t, 256> map{};
  char32_t next = 0x100;
  for (unsigned byte = 0; byte < 256; ++byte) {
    map[byte] = is_self_mapped(byte) ? static_cast<char32_t>(byte) : next++;
  }
  return map;
}

constexpr std::array<char32_t, 256> kByteToUnicode = make_byte_map();
// All 256 symbols lie below U+0100 + 68.
constexpr std::size_t kInverseSize = 0x100 + 68;

constexpr std::array<std::int16_t, kInverseSize> make_inverse() {
  std::array<std::int16_t, kInverseSize> inverse{};
  for (auto& value : inverse) value = -1;
  for (unsigned byte = 0; byte < 256; ++byte) {
    inverse[kByteToUnicode[byte]] = static_cast<std::int16_t>(byte);
  }
  return inverse;
}

constexpr std::array<std::int16_t, kInverseSize> kUnicodeToByte = make_inverse();
static_assert(kByteToUnicode[0x20] == 0x120 && kByteToUnicode[0xAD] == 0x143);

}  // namespace

char32_t byte_to_unicode(std::uint8_t byte) { return kByteToUnicode[byte]; }

int unicode_to_byte(char32_t cp) { return cp < kInverseSize ? kUnicodeToByte[cp] : -1; }

}  // namespace flexgen
