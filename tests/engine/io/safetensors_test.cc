#include "engine/io/safetensors.h"

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;
using testing::TempDir;
namespace fs = std::filesystem;

std::string bytes(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out.push_back(static_cast<char>(v));
  return out;
}

std::string le64(std::uint64_t v) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}

// A safetensors file assembled by hand: length prefix, header text, data bytes.
std::string st_file(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

void write_file(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  ASSERT_TRUE(out.good());
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Opens a hand-built file with one header and data, returning the error message.
std::string open_error(const TempDir& dir, const std::string& header, const std::string& data) {
  const fs::path path = dir / "bad.safetensors";
  write_file(path, st_file(header, data));
  return error_of([&] { SafetensorsFile file(path); });
}

// ---- reading hand-built files ------------------------------------------------------------------

TEST(SafetensorsRead, HandBuiltFileWithEveryFloatDtype) {
  TempDir dir;
  std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("f32":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("f16":{"dtype":"F16","shape":[4],"data_offsets":[16,24]},)"
      R"("bf16":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]},)"
      R"("scalar":{"dtype":"F32","shape":[],"data_offsets":[28,32]},)"
      R"("empty":{"dtype":"F16","shape":[0,3],"data_offsets":[32,32]},)"
      R"("ids":{"dtype":"I64","shape":[1],"data_offsets":[32,40]}})";
  header.append(8 - header.size() % 8, ' ');  // space padding, as the format allows
  const std::string data =
      // F32 little-endian: 1.0 = 0x3f800000, -2.5 = 0xc0200000, 0.15625 = 0x3e200000,
      // 65536 = 0x47800000
      bytes({0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0, 0x00, 0x00, 0x20, 0x3e, 0x00, 0x00, 0x80, 0x47}) +
      // F16: 1.0 = 0x3c00, -2.0 = 0xc000, 0x3555 = 0.333251953125, 0x0001 = 2^-24
      bytes({0x00, 0x3c, 0x00, 0xc0, 0x55, 0x35, 0x01, 0x00}) +
      // BF16: 1.0 = 0x3f80, -3.140625 = 0xc049
      bytes({0x80, 0x3f, 0x49, 0xc0}) +
      // F32 scalar 0x40490fdb = 3.14159274101257324...
      bytes({0xdb, 0x0f, 0x49, 0x40}) +
      // I64 7
      bytes({0x07, 0, 0, 0, 0, 0, 0, 0});
  const fs::path path = dir / "good.safetensors";
  write_file(path, st_file(header, data));

  const SafetensorsFile file(path);
  EXPECT_EQ(file.names(), (std::vector<std::string>{"bf16", "empty", "f16", "f32", "ids", "scalar"}));
  EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  EXPECT_TRUE(file.contains("f16"));
  EXPECT_FALSE(file.contains("__metadata__"));
  EXPECT_EQ(file.entry("f16").dtype, "F16");
  EXPECT_EQ(file.entry("f16").shape, (Shape{4}));
  EXPECT_EQ(file.entry("f16").begin, 16u);
  EXPECT_EQ(file.entry("f16").end, 24u);

  const Tensor f32 = file.read_float("f32");
  EXPECT_EQ(f32.shape(), (Shape{2, 2}));
  EXPECT_EQ(f32[0], 1.0f);
  EXPECT_EQ(f32[1], -2.5f);
  EXPECT_EQ(f32[2], 0.15625f);
  EXPECT_EQ(f32[3], 65536.0f);

  const Tensor f16 = file.read_float("f16");
  EXPECT_EQ(f16.shape(), (Shape{4}));
  EXPECT_EQ(f16[0], 1.0f);
  EXPECT_EQ(f16[1], -2.0f);
  EXPECT_EQ(f16[2], 0.333251953125f);
  EXPECT_EQ(f16[3], std::ldexp(1.0f, -24));

  const Tensor bf16 = file.read_float("bf16");
  EXPECT_EQ(bf16[0], 1.0f);
  EXPECT_EQ(bf16[1], -3.140625f);

  const Tensor scalar = file.read_float("scalar");
  EXPECT_EQ(scalar.shape(), Shape{});
  ASSERT_EQ(scalar.numel(), 1);
  EXPECT_EQ(scalar[0], 3.14159274101257324f);

  const Tensor empty = file.read_float("empty");
  EXPECT_EQ(empty.shape(), (Shape{0, 3}));
  EXPECT_EQ(empty.numel(), 0);

  EXPECT_EQ(file.entry("ids").dtype, "I64");
  EXPECT_THAT(error_of([&] { file.read_float("ids"); }),
              HasSubstr("good.safetensors: tensor ids has dtype I64, expected F32, F16 or BF16"));
  EXPECT_THAT(error_of([&] { file.read_float("nope"); }), HasSubstr("good.safetensors: no tensor nope"));
  EXPECT_THAT(error_of([&] { file.entry("nope"); }), HasSubstr("no tensor nope"));
}

TEST(SafetensorsRead, MovedFileStillReads) {
  TempDir dir;
  const fs::path path = dir / "m.safetensors";
  write_file(path, st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                           bytes({0x00, 0x00, 0xc0, 0x3f})));  // 1.5
  SafetensorsFile first(path);
  SafetensorsFile second(std::move(first));
  EXPECT_EQ(second.read_float("a")[0], 1.5f);
}

// ---- truncated files and lying headers ---------------------------------------------------------

TEST(SafetensorsRead, FileShorterThanLengthPrefix) {
  TempDir dir;
  write_file(dir / "t.safetensors", bytes({1, 0, 0, 0, 0}));
  EXPECT_THAT(error_of([&] { SafetensorsFile f(dir / "t.safetensors"); }),
              HasSubstr("t.safetensors: file is 5 bytes, too short for the 8-byte header length"));
}

TEST(SafetensorsRead, HeaderLengthBeyondFileSize) {
  TempDir dir;
  write_file(dir / "t.safetensors", le64(1000) + "{}");
  EXPECT_THAT(error_of([&] { SafetensorsFile f(dir / "t.safetensors"); }),
              HasSubstr("t.safetensors: header length 1000 exceeds the file size (10 bytes)"));
  write_file(dir / "u.safetensors", le64(std::numeric_limits<std::uint64_t>::max()) + "{}");
  EXPECT_THAT(error_of([&] { SafetensorsFile f(dir / "u.safetensors"); }),
              HasSubstr("exceeds the file size"));
}

TEST(SafetensorsRead, DataShorterThanOffsetsSay) {
  TempDir dir;
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(12, '\0')),
              HasSubstr("bad.safetensors: tensor w: data_offsets [0, 16] run past the data section (12 bytes)"));
}

TEST(SafetensorsRead, EndBeforeBegin) {
  TempDir dir;
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[16,8]}})", std::string(16, '\0')),
              HasSubstr("tensor w: data_offsets [16, 8] end before begin"));
}

TEST(SafetensorsRead, SizeDisagreesWithShape) {
  TempDir dir;
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", std::string(16, '\0')),
              HasSubstr("tensor w: data_offsets [0, 16] hold 16 bytes but dtype F32 shape [3] needs 12"));
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,16]}})", std::string(16, '\0')),
              HasSubstr("needs 8"));
}

TEST(SafetensorsRead, OverlappingTensors) {
  TempDir dir;
  EXPECT_THAT(open_error(dir,
                         R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                         R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                         std::string(24, '\0')),
              HasSubstr("tensors a and b overlap"));
}

TEST(SafetensorsRead, MalformedJson) {
  TempDir dir;
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":"F32",)", ""), HasSubstr("bad.safetensors: malformed JSON header"));
  EXPECT_THAT(open_error(dir, "", ""), HasSubstr("malformed JSON header"));
  EXPECT_THAT(open_error(dir, "[1, 2]", ""), HasSubstr("bad.safetensors: JSON header must be an object"));
}

TEST(SafetensorsRead, MissingOrIllTypedFields) {
  TempDir dir;
  const std::string d16(16, '\0');
  EXPECT_THAT(open_error(dir, R"({"w":5})", d16), HasSubstr("tensor w: header entry must be an object"));
  EXPECT_THAT(open_error(dir, R"({"w":{"shape":[4],"data_offsets":[0,16]}})", d16),
              HasSubstr("tensor w: missing \"dtype\""));
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":4,"shape":[4],"data_offsets":[0,16]}})", d16),
              HasSubstr("tensor w: \"dtype\" must be a string"));
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":"F32","data_offsets":[0,16]}})", d16),
              HasSubstr("tensor w: missing \"shape\""));
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":"F32","shape":4,"data_offsets":[0,16]}})", d16),
              HasSubstr("tensor w: \"shape\" must be an array"));
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":"F32","shape":[4]}})", d16),
              HasSubstr("tensor w: missing \"data_offsets\""));
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,8,16]}})", d16),
              HasSubstr("tensor w: \"data_offsets\" must be an array of two integers"));
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,"16"]}})", d16),
              HasSubstr("tensor w: data_offsets[1] must be a non-negative integer, got \"16\""));
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[-4,16]}})", d16),
              HasSubstr("tensor w: data_offsets[0] must be a non-negative integer, got -4"));
  EXPECT_THAT(open_error(dir, R"({"__metadata__":{"format":1}})", ""),
              HasSubstr("__metadata__ value for \"format\" must be a string"));
  EXPECT_THAT(open_error(dir, R"({"__metadata__":[]})", ""), HasSubstr("__metadata__ must be an object"));
}

TEST(SafetensorsRead, BadShapeDimensions) {
  TempDir dir;
  const std::string d16(16, '\0');
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", d16),
              HasSubstr("tensor w: shape dimension must be a non-negative integer, got -4"));
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,16]}})", d16),
              HasSubstr("shape dimension must be a non-negative integer, got 2.5"));
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,16]}})", d16),
              HasSubstr("shape dimension 18446744073709551615 is too large"));
}

TEST(SafetensorsRead, UnknownDtype) {
  TempDir dir;
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":"F17","shape":[4],"data_offsets":[0,16]}})", std::string(16, '\0')),
              HasSubstr("tensor w: unknown dtype \"F17\""));
}

TEST(SafetensorsRead, ElementAndByteCountOverflow) {
  TempDir dir;
  // 2^32 * 2^32 elements overflow u64.
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})",
                         std::string(16, '\0')),
              HasSubstr("tensor w: shape [4294967296,4294967296] overflows the element count"));
  // 2^62 elements fit, 2^62 * 4 bytes do not.
  EXPECT_THAT(open_error(dir, R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,16]}})",
                         std::string(16, '\0')),
              HasSubstr("overflows the byte count"));
}

TEST(SafetensorsRead, NotAFile) {
  TempDir dir;
  EXPECT_THAT(error_of([&] { SafetensorsFile f(dir / "absent.safetensors"); }),
              HasSubstr("absent.safetensors: cannot open"));
  EXPECT_THAT(error_of([&] { SafetensorsFile f(dir.path()); }), HasSubstr("not a regular file"));
}

TEST(SafetensorsRead, FileTruncatedAfterOpeningIsAShortRead) {
  TempDir dir;
  const fs::path path = dir / "t.safetensors";
  write_file(path, st_file(R"({"w":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})", std::string(8, '\0')));
  const SafetensorsFile file(path);
  fs::resize_file(path, fs::file_size(path) - 4);
  EXPECT_THAT(error_of([&] { file.read_float("w"); }), HasSubstr("tensor w: short read"));
}

// ---- writer (after the reader has been tested on hand-built files) ----------------------------

TEST(SafetensorsWrite, F32RoundTripAndByteLayout) {
  TempDir dir;
  const Tensor a({2, 3}, std::vector<float>{1.0f, -2.5f, 0.1f, 1e-30f, 3e38f, -0.0f});
  const Tensor b(Shape{}, std::vector<float>{7.0f});
  const fs::path path = dir / "out.safetensors";
  write_safetensors(path, {{"a", &a}, {"b", &b}}, false, {{"format", "pt"}});

  const std::string raw = read_file(path);
  ASSERT_GE(raw.size(), 8u);
  std::uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<unsigned char>(raw[static_cast<std::size_t>(i)]);
  EXPECT_EQ(header_size % 8, 0u);
  EXPECT_EQ(raw.size(), 8 + header_size + 28);  // 6 + 1 floats
  // "a" comes first in the data section: 1.0f = 0x3f800000, -2.5f = 0xc0200000 little-endian.
  EXPECT_EQ(raw.substr(8 + header_size, 8), bytes({0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0}));

  const SafetensorsFile file(path);
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.entry("a").dtype, "F32");
  EXPECT_EQ(file.entry("a").begin, 0u);
  EXPECT_EQ(file.entry("a").end, 24u);
  EXPECT_EQ(file.entry("b").begin, 24u);
  const Tensor a2 = file.read_float("a");
  EXPECT_EQ(a2.shape(), a.shape());
  for (std::int64_t i = 0; i < a.numel(); ++i) EXPECT_EQ(a2[i], a[i]) << i;
  EXPECT_TRUE(std::signbit(a2[5]));
  EXPECT_EQ(file.read_float("b").shape(), Shape{});
  EXPECT_EQ(file.read_float("b")[0], 7.0f);
}

TEST(SafetensorsWrite, F16RoundsToNearest) {
  TempDir dir;
  const Tensor t({5}, std::vector<float>{1.0f, -2.0f, 1.0f / 3.0f, 65504.0f, 1e6f});
  const fs::path path = dir / "h.safetensors";
  write_safetensors(path, {{"t", &t}}, true);
  const std::string raw = read_file(path);
  const std::size_t data_start = raw.size() - 10;
  // 0x3c00, 0xc000, 0x3555, 0x7bff, 0x7c00 (inf), little-endian.
  EXPECT_EQ(raw.substr(data_start), bytes({0x00, 0x3c, 0x00, 0xc0, 0x55, 0x35, 0xff, 0x7b, 0x00, 0x7c}));
  const SafetensorsFile file(path);
  EXPECT_EQ(file.entry("t").dtype, "F16");
  const Tensor r = file.read_float("t");
  EXPECT_EQ(r[0], 1.0f);
  EXPECT_EQ(r[1], -2.0f);
  EXPECT_EQ(r[2], 0.333251953125f);
  EXPECT_EQ(r[3], 65504.0f);
  EXPECT_TRUE(std::isinf(r[4]));
}

TEST(SafetensorsWrite, LeavesNoTmpFileAndReplacesAtomically) {
  TempDir dir;
  const fs::path path = dir / "w.safetensors";
  const Tensor one({2}, 1.0f);
  const Tensor two({3}, 2.0f);
  write_safetensors(path, {{"x", &one}});
  write_safetensors(path, {{"y", &two}});
  std::vector<std::string> listing;
  for (const auto& e : fs::directory_iterator(dir.path())) listing.push_back(e.path().filename().string());
  EXPECT_EQ(listing, std::vector<std::string>{"w.safetensors"});
  const SafetensorsFile file(path);
  EXPECT_EQ(file.names(), std::vector<std::string>{"y"});
  EXPECT_EQ(file.read_float("y")[2], 2.0f);
}

TEST(SafetensorsWrite, FailureRemovesTmpFile) {
  TempDir dir;
  const Tensor t({2}, 1.0f);
  // The target is a directory: the tmp file is written, the rename fails, the tmp file goes.
  const fs::path target = dir / "is_a_dir";
  fs::create_directory(target);
  fs::create_directory(target / "child");
  EXPECT_THAT(error_of([&] { write_safetensors(target, {{"t", &t}}); }), HasSubstr("cannot rename"));
  EXPECT_FALSE(fs::exists(dir / "is_a_dir.tmp"));
  // A directory that does not exist.
  EXPECT_THAT(error_of([&] { write_safetensors(dir / "no" / "x.safetensors", {{"t", &t}}); }),
              HasSubstr("x.safetensors.tmp: cannot create"));
}

TEST(SafetensorsWrite, RejectsBadNames) {
  TempDir dir;
  const Tensor t({2}, 1.0f);
  const fs::path path = dir / "n.safetensors";
  EXPECT_THAT(error_of([&] { write_safetensors(path, {{"t", &t}, {"t", &t}}); }),
              HasSubstr("duplicate tensor name t"));
  EXPECT_THAT(error_of([&] { write_safetensors(path, {{"__metadata__", &t}}); }), HasSubstr("reserved"));
  EXPECT_THAT(error_of([&] { write_safetensors(path, {{"", &t}}); }), HasSubstr("empty tensor name"));
  EXPECT_THAT(error_of([&] { write_safetensors(path, {{"t", nullptr}}); }), HasSubstr("tensor t is null"));
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(SafetensorsRead, TensorNamesInMessagesStayOnOneLine) {
  TempDir dir;
  const std::string msg =
      open_error(dir, R"({"a\nb": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", std::string(8, '\0'));
  EXPECT_THAT(msg, HasSubstr("tensor a\\nb: data_offsets [0, 16] run past the data section (8 bytes)"));
  EXPECT_EQ(msg.find('\n'), std::string::npos);
  EXPECT_THAT(open_error(dir, R"({"w": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}})", "abcd"),
              HasSubstr("malformed JSON header"));
}

}  // namespace
}  // namespace flexgen
