#include "engine/cuda/device_link.cuh"

#include <cstring>
#include <vector>

#include "engine/core/error.h"
#include "engine/cuda/cuda_check.cuh"
#include "engine/pipeline/stage_channel.h"

#if defined(FLEXGEN_HAVE_NCCL) && FLEXGEN_HAVE_NCCL
#include <nccl.h>
#endif

namespace flexgen {

#if defined(FLEXGEN_HAVE_NCCL) && FLEXGEN_HAVE_NCCL

namespace {

#define FLEXGEN_NCCL_CHECK(stmt)                                                                            \
  do {                                                                                                      \
    const ncclResult_t flexgen_nccl_rc = (stmt);                                                            \
    if (flexgen_nccl_rc != ncclSuccess) {                                                                   \
      ::flexgen::fail("NCCL: ", #stmt, " failed at ", __FILE__, ":", __LINE__, ": ",                        \
                      ncclGetErrorString(flexgen_nccl_rc), " (", ncclGetLastError(nullptr), ")");            \
    }                                                                                                       \
  } while (0)

class NcclLink final : public DeviceLink {
 public:
  NcclLink(StageChannel& channel, int device) : device_(device) {
    const std::int32_t rank = channel.rank(), size = channel.size();
    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    if (rank == 0) {
      FLEXGEN_NCCL_CHECK(ncclGetUniqueId(&id));
      const auto payload = std::as_bytes(std::span<const ncclUniqueId>(&id, 1));
      const MessageHeader h = make_header(MessageKind::kBootstrap, 0, 0, payload);
      for (std::int32_t s = 1; s < size; ++s) channel.send(s, h, payload);
    } else {
      const Message m = channel.recv(0);
      FLEXGEN_REQUIRE(m.header.kind == MessageKind::kBootstrap && m.payload.size() == sizeof id,
                      "pipeline protocol error: stage ", rank, " expected NCCL's bootstrap from stage 0, got ",
                      describe(m.header));
      std::memcpy(&id, m.payload.data(), sizeof id);
    }
    FLEXGEN_CUDA_CHECK(cudaSetDevice(device_));
    FLEXGEN_NCCL_CHECK(ncclCommInitRank(&comm_, size, id, rank));
    FLEXGEN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    FLEXGEN_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    FLEXGEN_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  }
  ~NcclLink() override {
    if (stream_) cudaStreamSynchronize(stream_);
    if (comm_) ncclCommDestroy(comm_);
    if (ready_) cudaEventDestroy(ready_);
    if (done_) cudaEventDestroy(done_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  NcclLink(const NcclLink&) = delete;
  NcclLink& operator=(const NcclLink&) = delete;

  void send(const void* src, Bytes bytes, std::int32_t to, cudaStream_t after) override {
    FLEXGEN_CUDA_CHECK(cudaEventRecord(ready_, after));
    FLEXGEN_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
    FLEXGEN_NCCL_CHECK(ncclSend(src, static_cast<std::size_t>(bytes), ncclUint8, to, comm_, stream_));
    FLEXGEN_CUDA_CHECK(cudaEventRecord(done_, stream_));
    FLEXGEN_CUDA_CHECK(cudaStreamWaitEvent(after, done_, 0));
    sent_ += bytes;
  }
  void recv(void* dst, Bytes bytes, std::int32_t from, cudaStream_t stream) override {
    FLEXGEN_CUDA_CHECK(cudaEventRecord(ready_, stream));
    FLEXGEN_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
    FLEXGEN_NCCL_CHECK(ncclRecv(dst, static_cast<std::size_t>(bytes), ncclUint8, from, comm_, stream_));
    FLEXGEN_CUDA_CHECK(cudaEventRecord(done_, stream_));
    FLEXGEN_CUDA_CHECK(cudaStreamWaitEvent(stream, done_, 0));
    received_ += bytes;
  }
  Bytes bytes_sent() const override { return sent_; }
  Bytes bytes_received() const override { return received_; }

 private:
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
  Bytes sent_ = 0, received_ = 0;
};

}  // namespace

bool nccl_link_available() { return true; }

std::unique_ptr<DeviceLink> make_nccl_link(StageChannel& channel, int device) {
  return std::make_unique<NcclLink>(channel, device);
}

#else  // without NCCL

bool nccl_link_available() { return false; }

std::unique_ptr<DeviceLink> make_nccl_link(StageChannel&, int) {
  fail("this flexgen was built without NCCL (configure with FLEXGEN_NCCL=ON and NCCL installed); the stages pass "
       "hidden states through host memory instead");
}

#endif

}  // namespace flexgen
