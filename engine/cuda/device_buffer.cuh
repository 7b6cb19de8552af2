#pragma once
// DeviceBuffer<T>: an owning, move-only array in GPU memory (cudaMalloc / cudaFree), with blocking
// copies to and from the host. Meant for tests, benchmarks and one-off scratch buffers; the
// runtime's tiers allocate their own memory. Host-includable (no device code).
#include <cstddef>
#include <utility>

#include <cuda_runtime.h>

#include "engine/cuda/cuda_check.cuh"

namespace flexgen::cuda {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t count) : count_(count) {
    if (count_ > 0) {
      void* p = nullptr;
      FLEXGEN_CUDA_CHECK(cudaMalloc(&p, count_ * sizeof(T)));
      data_ = static_cast<T*>(p);
    }
  }
  ~DeviceBuffer() { release(); }

  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), count_(std::exchange(other.count_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      count_ = std::exchange(other.count_, 0);
    }
    return *this;
  }

  T* get() { return data_; }
  const T* get() const { return data_; }
  std::size_t size() const { return count_; }
  std::size_t bytes() const { return count_ * sizeof(T); }

  // Blocking copies of `bytes` bytes (at most bytes()) from / to host memory.
  void upload(const void* src, std::size_t bytes) {
    if (bytes > 0) FLEXGEN_CUDA_CHECK(cudaMemcpy(data_, src, bytes, cudaMemcpyHostToDevice));
  }
  void download(void* dst, std::size_t bytes) const {
    if (bytes > 0) FLEXGEN_CUDA_CHECK(cudaMemcpy(dst, data_, bytes, cudaMemcpyDeviceToHost));
  }
  // Sets every byte (blocking), e.g. 0xff to poison an output with NaNs before a kernel runs.
  void fill_bytes(unsigned char value) {
    if (count_ > 0) FLEXGEN_CUDA_CHECK(cudaMemset(data_, value, bytes()));
  }

 private:
  void release() noexcept {
    if (data_ != nullptr) cudaFree(data_);  // never throws from a destructor
    data_ = nullptr;
    count_ = 0;
  }

  T* data_ = nullptr;
  std::size_t count_ = 0;
};

}  // namespace flexgen::cuda
