#pragma once
// A reader and writer for HF safetensors files: 8-byte little-endian header length N, N bytes of
// JSON mapping tensor names to {dtype, shape, data_offsets} (plus an optional "__metadata__"
// object of strings), then the raw little-endian data, offsets relative to the data section.
//
// Every field is checked against the file's real size before any byte of data is read; a lying
// header is a flexgen::Error "<path>: <what is wrong>", never a crash. Checked: header length
// (at most 100 MB, as in the reference implementation, and within the file), JSON syntax, every
// field's type, non-negative integer dims, known dtype, numel * dtype size without overflow,
// begin <= end <= data section size, end - begin == numel * dtype size, and no two tensors'
// byte ranges overlapping. Gaps between tensors are tolerated.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor/tensor.h"

namespace flexgen {

struct SafetensorsEntry {
  std::string dtype;  // "F32", "F16", "BF16", "I64", ...
  Shape shape;
  std::uint64_t begin = 0;  // byte offsets into the data section
  std::uint64_t end = 0;
};

// Bytes per element of a safetensors dtype string; 0 for an unknown one.
std::uint64_t safetensors_dtype_size(const std::string& dtype);

// One open safetensors file. The header is parsed once in the constructor and the file stays
// open (one descriptor) until destruction, so reading many tensors opens the file once.
// read_float uses positioned reads and may be called from several threads at once.
class SafetensorsFile {
 public:
  // Opens and validates the header; throws flexgen::Error "<path>: <what is wrong>".
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;  // throws if missing
  std::vector<std::string> names() const;                          // sorted
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Throws "<path>: tensor X has dtype I64, expected F32, F16 or BF16" unless read_float can
  // read the tensor (and "<path>: no tensor X" if it is missing).
  void require_float(const std::string& name) const;

  // Reads one tensor widened to float32 (F32, F16, BF16); throws for other dtypes.
  Tensor read_float(const std::string& name) const;

 private:
  void read_exact(std::uint64_t offset, void* out, std::uint64_t size, const std::string& name) const;

  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t file_size_ = 0;
  std::uint64_t data_start_ = 0;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes float32 tensors as a safetensors file (F32, or F16 when `as_f16`, rounding to nearest
// even), atomically: the data goes to "<path>.tmp", is flushed to disk and renamed over `path`,
// so the file appears complete or not at all; on any failure the tmp file is removed and
// flexgen::Error is thrown. Tensor data is laid out in the given order; the header is padded
// with spaces to a multiple of 8 bytes. Names must be unique, non-empty and not "__metadata__".
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, const Tensor*>>& tensors,
                       bool as_f16 = false, const std::map<std::string, std::string>& metadata = {});

}  // namespace flexgen
