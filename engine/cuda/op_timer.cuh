#pragma once
// OpTimer: GPU time per op kind and phase from CUDA events recorded around each op on a stream
// (RuntimeOptions::keep_op_timings, `flexgen generate --op-times`). Disabled, it records nothing
// and costs one branch per op. Host-includable. Not thread-safe: one timer per stream-driving
// thread (the runtime's compute worker).
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include <cuda_runtime.h>

#include "engine/runtime/host_runtime.h"

namespace flexgen::cuda {

class OpTimer {
 public:
  // The op kinds of the CUDA runtime's compute tasks (names in op_name).
  enum Op : int {
    kEmbedding,
    kAttnLayerNorm,
    kQkvProj,
    kCacheAppend,     // new key/value rows into the cache (copies, 4-bit quantization)
    kCacheDequant,    // 4-bit cache rows to fp16 scratch
    kAttention,       // prefill, decode, top-k selection, sparse decode
    kOutProj,
    kMlpLayerNorm,
    kFc1,
    kFc2,
    kFinalLayerNorm,
    kLmHead,
    kSampling,        // argmax or the logits' copy to the host (not the host's wait)
    kWeightDequant,   // 4-bit weights to fp16 scratch
    kNumOps
  };
  static const char* op_name(Op op);

  OpTimer() = default;
  ~OpTimer();
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

  // Starts a run: forgets earlier marks; records from now on only when `enabled`.
  void start(bool enabled);
  bool enabled() const { return enabled_; }

  // Records the begin / end event of one op call on `stream`; begin returns the mark for end.
  std::size_t begin(Op op, bool decode, cudaStream_t stream);
  void end(std::size_t mark, cudaStream_t stream);

  // After the stream's work is done: calls and summed seconds per (op, phase) with calls, in
  // prefill then decode order, ops in enum order. Marks whose end was never recorded (a run that
  // failed) are left out.
  std::vector<OpTiming> collect() const;

 private:
  struct Mark {
    Op op = kEmbedding;
    bool decode = false;
    bool ended = false;
  };
  std::vector<std::pair<cudaEvent_t, cudaEvent_t>> events_;  // reused across runs; grows
  std::vector<Mark> marks_;
  bool enabled_ = false;
};

}  // namespace flexgen::cuda
