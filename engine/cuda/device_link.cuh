#pragma once
// A device link between the stages of a pipeline on the CUDA backend (docs/multi-gpu.md): the
// hidden states go GPU to GPU, over NCCL (ncclSend / ncclRecv on the link's own stream), while
// their headers still go through the stage channel, so that the protocol checks every transfer.
// Without NCCL (or with FLEXGEN_PIPELINE_LINK=host) the CUDA runtime stages hidden states through
// pinned host memory over the channel instead, and no DeviceLink exists.
//
// The NCCL communicator is bootstrapped through the channel: stage 0 makes the ncclUniqueId and
// sends it to every other stage in a kBootstrap message, before any other message. Stage
// processes run with NCCL_NVLS_ENABLE=0 (launcher.h): no NVLink multicast.
#include <cstdint>
#include <memory>

#include <cuda_runtime.h>

#include "engine/core/units.h"

namespace flexgen {

class StageChannel;

class DeviceLink {
 public:
  virtual ~DeviceLink() = default;
  // Sends `bytes` at device address `src` to stage `to` once the work queued on `after` is done;
  // `after` then waits for the send to complete (so `src` may be overwritten by later work on it).
  virtual void send(const void* src, Bytes bytes, std::int32_t to, cudaStream_t after) = 0;
  // Receives `bytes` from stage `from` into device address `dst`, once the work queued on
  // `stream` is done; later work on `stream` waits for the data.
  virtual void recv(void* dst, Bytes bytes, std::int32_t from, cudaStream_t stream) = 0;
  // Bytes sent and received over the link so far.
  virtual Bytes bytes_sent() const = 0;
  virtual Bytes bytes_received() const = 0;
};

// Whether this build has NCCL (FLEXGEN_HAVE_NCCL).
bool nccl_link_available();

// The NCCL link of this stage (channel.rank() of channel.size()) on `device`; every stage calls it
// at the same point (its runtime's construction). Throws flexgen::Error without NCCL or when NCCL
// fails (naming the NCCL error).
std::unique_ptr<DeviceLink> make_nccl_link(StageChannel& channel, int device);

}  // namespace flexgen
