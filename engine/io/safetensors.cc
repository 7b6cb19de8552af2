#include "engine/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/core/json_fields.h"

namespace flexgen {
namespace {

using nlohmann::json;

constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;  // as the reference implementation
constexpr std::uint64_t kChunkBytes = std::uint64_t{8} << 20;  // conversion buffer for F16/BF16

std::string errno_text(int err) { return std::strerror(err); }

// a * b, or false on overflow.
bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

// A non-negative JSON integer, or an Error naming `what`.
std::uint64_t json_u64(const json& value, const std::filesystem::path& path, const std::string& what) {
  if (value.is_number_unsigned()) return value.get<std::uint64_t>();
  if (value.is_number_integer()) {
    const auto v = value.get<std::int64_t>();
    if (v >= 0) return static_cast<std::uint64_t>(v);
  }
  fail(path.string(), ": ", what, " must be a non-negative integer, got ", json_preview(value));
}

std::uint16_t load_u16_le(const unsigned char* p) {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}

std::uint32_t load_u32_le(const unsigned char* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

void store_u16_le(std::uint16_t v, unsigned char* p) {
  p[0] = static_cast<unsigned char>(v & 0xffu);
  p[1] = static_cast<unsigned char>(v >> 8);
}

void store_u32_le(std::uint32_t v, unsigned char* p) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>((v >> (8 * i)) & 0xffu);
}

void store_u64_le(std::uint64_t v, unsigned char* p) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>((v >> (8 * i)) & 0xffu);
}

SafetensorsEntry parse_entry(const std::string& name, const json& value,
                             const std::filesystem::path& path) {
  const std::string where = "tensor " + printable(name);
  FLEXGEN_REQUIRE(value.is_object(), path.string(), ": ", where, ": header entry must be an object");
  SafetensorsEntry entry;

  const auto dtype = value.find("dtype");
  FLEXGEN_REQUIRE(dtype != value.end(), path.string(), ": ", where, ": missing \"dtype\"");
  FLEXGEN_REQUIRE(dtype->is_string(), path.string(), ": ", where, ": \"dtype\" must be a string");
  entry.dtype = dtype->get<std::string>();
  const std::uint64_t element_size = safetensors_dtype_size(entry.dtype);
  FLEXGEN_REQUIRE(element_size != 0, path.string(), ": ", where, ": unknown dtype \"", printable(entry.dtype),
                  "\"");

  const auto shape = value.find("shape");
  FLEXGEN_REQUIRE(shape != value.end(), path.string(), ": ", where, ": missing \"shape\"");
  FLEXGEN_REQUIRE(shape->is_array(), path.string(), ": ", where, ": \"shape\" must be an array");
  std::uint64_t numel = 1;
  for (const json& dim_json : *shape) {
    const std::uint64_t dim = json_u64(dim_json, path, where + ": shape dimension");
    FLEXGEN_REQUIRE(dim <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()),
                    path.string(), ": ", where, ": shape dimension ", dim, " is too large");
    FLEXGEN_REQUIRE(checked_mul(numel, dim, &numel), path.string(), ": ", where, ": shape ",
                    json_preview(*shape), " overflows the element count");
    entry.shape.push_back(static_cast<std::int64_t>(dim));
  }
  std::uint64_t byte_size = 0;
  FLEXGEN_REQUIRE(checked_mul(numel, element_size, &byte_size), path.string(), ": ", where,
                  ": shape ", json_preview(*shape), " overflows the byte count");

  const auto offsets = value.find("data_offsets");
  FLEXGEN_REQUIRE(offsets != value.end(), path.string(), ": ", where, ": missing \"data_offsets\"");
  FLEXGEN_REQUIRE(offsets->is_array() && offsets->size() == 2, path.string(), ": ", where,
                  ": \"data_offsets\" must be an array of two integers");
  entry.begin = json_u64((*offsets)[0], path, where + ": data_offsets[0]");
  entry.end = json_u64((*offsets)[1], path, where + ": data_offsets[1]");
  FLEXGEN_REQUIRE(entry.begin <= entry.end, path.string(), ": ", where, ": data_offsets [",
                  entry.begin, ", ", entry.end, "] end before begin");
  FLEXGEN_REQUIRE(entry.end - entry.begin == byte_size, path.string(), ": ", where,
                  ": data_offsets [", entry.begin, ", ", entry.end, "] hold ", entry.end - entry.begin,
                  " bytes but dtype ", entry.dtype, " shape ", shape_to_string(entry.shape), " needs ",
                  byte_size);
  return entry;
}

// Closes a descriptor and removes a file unless released; used by the writer.
class TmpFileGuard {
 public:
  explicit TmpFileGuard(std::filesystem::path path) : path_(std::move(path)) {}
  ~TmpFileGuard() {
    if (fd_ >= 0) ::close(fd_);
    if (armed_) {
      std::error_code ignored;
      std::filesystem::remove(path_, ignored);
    }
  }
  TmpFileGuard(const TmpFileGuard&) = delete;
  TmpFileGuard& operator=(const TmpFileGuard&) = delete;

  int fd_ = -1;
  bool armed_ = true;

 private:
  std::filesystem::path path_;
};

void write_all(int fd, const void* data, std::size_t size, const std::filesystem::path& tmp) {
  const auto* p = static_cast<const unsigned char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(tmp.string(), ": write failed: ", errno_text(errno));
    }
    FLEXGEN_REQUIRE(n > 0, tmp.string(), ": write made no progress");
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

}  // namespace

std::uint64_t safetensors_dtype_size(const std::string& dtype) {
  static const std::map<std::string, std::uint64_t> kSizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"U16", 2}, {"I16", 2},
      {"F16", 2},  {"BF16", 2}, {"U32", 4}, {"I32", 4},     {"F32", 4},     {"U64", 8}, {"I64", 8},
      {"F64", 8}};
  const auto it = kSizes.find(dtype);
  return it == kSizes.end() ? 0 : it->second;
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : path_(path) {
  const std::string where = path.string();
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  FLEXGEN_REQUIRE(fd_ >= 0, where, ": cannot open: ", errno_text(errno));
  try {
    struct stat st {};
    FLEXGEN_REQUIRE(::fstat(fd_, &st) == 0, where, ": cannot stat: ", errno_text(errno));
    FLEXGEN_REQUIRE(S_ISREG(st.st_mode), where, ": not a regular file");
    file_size_ = static_cast<std::uint64_t>(st.st_size);
    FLEXGEN_REQUIRE(file_size_ >= 8, where, ": file is ", file_size_,
                    " bytes, too short for the 8-byte header length");

    unsigned char length_bytes[8];
    read_exact(0, length_bytes, 8, "");
    std::uint64_t header_size = 0;
    for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | length_bytes[i];
    FLEXGEN_REQUIRE(header_size <= file_size_ - 8, where, ": header length ", header_size,
                    " exceeds the file size (", file_size_, " bytes)");
    FLEXGEN_REQUIRE(header_size <= kMaxHeaderBytes, where, ": header length ", header_size,
                    " exceeds the limit of ", kMaxHeaderBytes, " bytes");
    data_start_ = 8 + header_size;
    const std::uint64_t data_size = file_size_ - data_start_;

    std::string header_text(static_cast<std::size_t>(header_size), '\0');
    read_exact(8, header_text.data(), header_size, "");
    json header;
    try {
      header = json::parse(header_text);
    } catch (const json::exception& e) {
      fail(where, ": malformed JSON header: ", e.what());
    }
    FLEXGEN_REQUIRE(header.is_object(), where, ": JSON header must be an object");

    for (const auto& [name, value] : header.items()) {
      if (name == "__metadata__") {
        FLEXGEN_REQUIRE(value.is_object(), where, ": __metadata__ must be an object of strings");
        for (const auto& [key, text] : value.items()) {
          FLEXGEN_REQUIRE(text.is_string(), where, ": __metadata__ value for \"", printable(key),
                          "\" must be a string");
          metadata_[key] = text.get<std::string>();
        }
        continue;
      }
      SafetensorsEntry entry = parse_entry(name, value, path);
      FLEXGEN_REQUIRE(entry.end <= data_size, where, ": tensor ", printable(name), ": data_offsets [",
                      entry.begin, ", ", entry.end, "] run past the data section (", data_size,
                      " bytes)");
      entries_.emplace(name, std::move(entry));
    }

    // No two tensors may share bytes.
    std::vector<std::pair<std::uint64_t, const std::string*>> by_begin;
    for (const auto& [name, entry] : entries_) {
      if (entry.end > entry.begin) by_begin.emplace_back(entry.begin, &name);
    }
    std::sort(by_begin.begin(), by_begin.end());
    for (std::size_t i = 1; i < by_begin.size(); ++i) {
      const SafetensorsEntry& prev = entries_.at(*by_begin[i - 1].second);
      FLEXGEN_REQUIRE(prev.end <= by_begin[i].first, where, ": tensors ", printable(*by_begin[i - 1].second),
                      " and ", printable(*by_begin[i].second), " overlap in the data section");
    }
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      file_size_(other.file_size_),
      data_start_(other.data_start_),
      entries_(std::move(other.entries_)),
      metadata_(std::move(other.metadata_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    file_size_ = other.file_size_;
    data_start_ = other.data_start_;
    entries_ = std::move(other.entries_);
    metadata_ = std::move(other.metadata_);
  }
  return *this;
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  const auto it = entries_.find(name);
  FLEXGEN_REQUIRE(it != entries_.end(), path_.string(), ": no tensor ", printable(name));
  return it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) out.push_back(name);
  return out;
}

void SafetensorsFile::require_float(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  FLEXGEN_REQUIRE(e.dtype == "F32" || e.dtype == "F16" || e.dtype == "BF16", path_.string(),
                  ": tensor ", printable(name), " has dtype ", printable(e.dtype), ", expected F32, F16 or BF16");
}

void SafetensorsFile::read_exact(std::uint64_t offset, void* out, std::uint64_t size,
                                 const std::string& name) const {
  assert(fd_ >= 0);
  auto* p = static_cast<unsigned char*>(out);
  const std::uint64_t total = size;
  const std::string what = name.empty() ? std::string() : " tensor " + printable(name) + ":";
  while (size > 0) {
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(size, std::uint64_t{1} << 30));
    const ssize_t n = ::pread(fd_, p, want, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(path_.string(), ":", what, " read failed at byte ", offset, ": ", errno_text(errno));
    }
    FLEXGEN_REQUIRE(n > 0, path_.string(), ":", what, " short read: file ended after ", total - size,
                    " of ", total, " bytes (was it truncated while open?)");
    p += n;
    offset += static_cast<std::uint64_t>(n);
    size -= static_cast<std::uint64_t>(n);
  }
}

Tensor SafetensorsFile::read_float(const std::string& name) const {
  require_float(name);
  const SafetensorsEntry& e = entries_.at(name);
  Tensor out(e.shape);
  const std::uint64_t offset = data_start_ + e.begin;
  const std::uint64_t bytes = e.end - e.begin;
  float* dst = out.data();

  if (e.dtype == "F32" && std::endian::native == std::endian::little) {
    read_exact(offset, dst, bytes, name);
    return out;
  }
  const std::uint64_t element_size = safetensors_dtype_size(e.dtype);
  const std::uint64_t chunk_elements = kChunkBytes / element_size;
  std::vector<unsigned char> buffer(static_cast<std::size_t>(std::min(bytes, chunk_elements * element_size)));
  const auto numel = static_cast<std::uint64_t>(out.numel());
  for (std::uint64_t first = 0; first < numel; first += chunk_elements) {
    const std::uint64_t count = std::min(chunk_elements, numel - first);
    read_exact(offset + first * element_size, buffer.data(), count * element_size, name);
    const unsigned char* src = buffer.data();
    float* chunk_out = dst + first;
    if (e.dtype == "F16") {
      for (std::uint64_t i = 0; i < count; ++i) chunk_out[i] = half_to_float(load_u16_le(src + 2 * i));
    } else if (e.dtype == "BF16") {
      for (std::uint64_t i = 0; i < count; ++i) chunk_out[i] = bfloat16_to_float(load_u16_le(src + 2 * i));
    } else {
      for (std::uint64_t i = 0; i < count; ++i) chunk_out[i] = std::bit_cast<float>(load_u32_le(src + 4 * i));
    }
  }
  return out;
}

void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, const Tensor*>>& tensors, bool as_f16,
                       const std::map<std::string, std::string>& metadata) {
  const std::string where = path.string();
  const std::uint64_t element_size = as_f16 ? 2 : 4;

  json header = json::object();
  if (!metadata.empty()) {
    json meta = json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header["__metadata__"] = std::move(meta);
  }
  std::set<std::string> seen;
  std::uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    FLEXGEN_REQUIRE(!name.empty(), where, ": empty tensor name");
    FLEXGEN_REQUIRE(name != "__metadata__", where, ": tensor name __metadata__ is reserved");
    FLEXGEN_REQUIRE(tensor != nullptr, where, ": tensor ", name, " is null");
    FLEXGEN_REQUIRE(seen.insert(name).second, where, ": duplicate tensor name ", name);
    const std::uint64_t bytes = static_cast<std::uint64_t>(tensor->numel()) * element_size;
    header[name] = {{"dtype", as_f16 ? "F16" : "F32"},
                    {"shape", tensor->shape()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::filesystem::path tmp = path;
  tmp += ".tmp";
  TmpFileGuard guard(tmp);
  guard.fd_ = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (guard.fd_ < 0) {
    guard.armed_ = false;  // nothing was created (or it is not ours to remove)
    fail(tmp.string(), ": cannot create: ", errno_text(errno));
  }

  unsigned char length_bytes[8];
  store_u64_le(header_text.size(), length_bytes);
  write_all(guard.fd_, length_bytes, sizeof length_bytes, tmp);
  write_all(guard.fd_, header_text.data(), header_text.size(), tmp);

  const std::uint64_t chunk_elements = std::min(kChunkBytes, std::max<std::uint64_t>(offset, 1)) / element_size + 1;
  std::vector<unsigned char> buffer(static_cast<std::size_t>(chunk_elements * element_size));
  for (const auto& [name, tensor] : tensors) {
    const float* src = tensor->data();
    const auto numel = static_cast<std::uint64_t>(tensor->numel());
    for (std::uint64_t first = 0; first < numel; first += chunk_elements) {
      const std::uint64_t count = std::min(chunk_elements, numel - first);
      unsigned char* dst = buffer.data();
      for (std::uint64_t i = 0; i < count; ++i) {
        if (as_f16) {
          store_u16_le(float_to_half(src[first + i]), dst + 2 * i);
        } else {
          store_u32_le(std::bit_cast<std::uint32_t>(src[first + i]), dst + 4 * i);
        }
      }
      write_all(guard.fd_, dst, static_cast<std::size_t>(count * element_size), tmp);
    }
  }

  FLEXGEN_REQUIRE(::fsync(guard.fd_) == 0, tmp.string(), ": fsync failed: ", errno_text(errno));
  const int fd = std::exchange(guard.fd_, -1);
  FLEXGEN_REQUIRE(::close(fd) == 0, tmp.string(), ": close failed: ", errno_text(errno));
  FLEXGEN_REQUIRE(::rename(tmp.c_str(), path.c_str()) == 0, where, ": cannot rename ", tmp.string(),
                  " into place: ", errno_text(errno));
  guard.armed_ = false;
}

}  // namespace flexgen
