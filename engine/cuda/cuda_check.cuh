#pragma once
// Checked CUDA and cuBLAS calls: a failure throws flexgen::Error naming the statement, the file
// and line, the device and the error string.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "engine/core/error.h"

namespace flexgen::cuda_detail {

inline int current_device_or_minus_one() {
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) device = -1;
  return device;
}

[[noreturn]] inline void throw_cuda_error(cudaError_t status, const char* statement, const char* file,
                                          int line) {
  ::flexgen::fail("CUDA error ", cudaGetErrorName(status), " (", cudaGetErrorString(status), ") in `",
                  statement, "` at ", file, ":", line, " on device ", current_device_or_minus_one());
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t status, const char* statement,
                                            const char* file, int line) {
  ::flexgen::fail("cuBLAS error ", cublasGetStatusName(status), " (", cublasGetStatusString(status),
                  ") in `", statement, "` at ", file, ":", line, " on device ",
                  current_device_or_minus_one());
}

}  // namespace flexgen::cuda_detail

#define FLEXGEN_CUDA_CHECK(statement)                                                         \
  do {                                                                                        \
    const cudaError_t flexgen_status_ = (statement);                                          \
    if (flexgen_status_ != cudaSuccess)                                                       \
      ::flexgen::cuda_detail::throw_cuda_error(flexgen_status_, #statement, __FILE__, __LINE__); \
  } while (0)

#define FLEXGEN_CUBLAS_CHECK(statement)                                                         \
  do {                                                                                          \
    const cublasStatus_t flexgen_status_ = (statement);                                         \
    if (flexgen_status_ != CUBLAS_STATUS_SUCCESS)                                               \
      ::flexgen::cuda_detail::throw_cublas_error(flexgen_status_, #statement, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: names the kernel and its shape in the error.
#define FLEXGEN_CUDA_CHECK_LAUNCH(kernel_name, shape_description)                                \
  do {                                                                                           \
    const cudaError_t flexgen_status_ = cudaGetLastError();                                      \
    if (flexgen_status_ != cudaSuccess)                                                          \
      ::flexgen::fail("CUDA launch of ", kernel_name, " (", shape_description, ") failed: ",     \
                      cudaGetErrorString(flexgen_status_), " at ", __FILE__, ":", __LINE__);     \
  } while (0)
