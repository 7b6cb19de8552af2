#pragma once
// CublasHandle: an owning cuBLAS handle (cublasCreate / cublasDestroy). The ops set the stream on
// it before each call, so one handle serves every stream of one host thread. Host-includable.
#include <cublas_v2.h>

#include "engine/cuda/cuda_check.cuh"

namespace flexgen::cuda {

class CublasHandle {
 public:
  CublasHandle() { FLEXGEN_CUBLAS_CHECK(cublasCreate(&handle_)); }
  ~CublasHandle() {
    if (handle_ != nullptr) cublasDestroy(handle_);
  }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;

  cublasHandle_t get() const { return handle_; }

 private:
  cublasHandle_t handle_ = nullptr;
};

}  // namespace flexgen::cuda
