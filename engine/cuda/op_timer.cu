#include "engine/cuda/op_timer.cuh"

#include <array>

#include "engine/cuda/cuda_check.cuh"

namespace flexgen::cuda {

const char* OpTimer::op_name(Op op) {
  static constexpr std::array<const char*, kNumOps> kNames = {
      "embedding", "attn_layer_norm", "qkv_proj", "cache_append", "cache_dequant",
      "attention", "out_proj",        "mlp_layer_norm", "fc1",      "fc2",
      "final_layer_norm", "lm_head",  "sampling",  "weight_dequant"};
  return kNames[static_cast<std::size_t>(op)];
}

OpTimer::~OpTimer() {
  for (auto& [b, e] : events_) {
    cudaEventDestroy(b);  // never throws from a destructor
    cudaEventDestroy(e);
  }
}

void OpTimer::start(bool enabled) {
  enabled_ = enabled;
  marks_.clear();
}

std::size_t OpTimer::begin(Op op, bool decode, cudaStream_t stream) {
  const std::size_t i = marks_.size();
  if (i == events_.size()) {
    cudaEvent_t b = nullptr;
    cudaEvent_t e = nullptr;
    FLEXGEN_CUDA_CHECK(cudaEventCreate(&b));
    const cudaError_t st = cudaEventCreate(&e);
    if (st != cudaSuccess) cudaEventDestroy(b);
    FLEXGEN_CUDA_CHECK(st);
    events_.emplace_back(b, e);
  }
  marks_.push_back(Mark{op, decode, false});
  FLEXGEN_CUDA_CHECK(cudaEventRecord(events_[i].first, stream));
  return i;
}

void OpTimer::end(std::size_t mark, cudaStream_t stream) {
  FLEXGEN_CUDA_CHECK(cudaEventRecord(events_[mark].second, stream));
  marks_[mark].ended = true;
}

std::vector<OpTiming> OpTimer::collect() const {
  std::array<std::array<double, kNumOps>, 2> busy{};
  std::array<std::array<std::int64_t, kNumOps>, 2> calls{};
  for (std::size_t i = 0; i < marks_.size(); ++i) {
    const Mark& m = marks_[i];
    if (!m.ended) continue;
    float ms = 0.0f;
    FLEXGEN_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[i].first, events_[i].second));
    busy[m.decode ? 1 : 0][static_cast<std::size_t>(m.op)] += static_cast<double>(ms) * 1e-3;
    ++calls[m.decode ? 1 : 0][static_cast<std::size_t>(m.op)];
  }
  std::vector<OpTiming> out;
  for (int phase = 0; phase < 2; ++phase) {
    for (int op = 0; op < kNumOps; ++op) {
      const auto p = static_cast<std::size_t>(phase);
      const auto o = static_cast<std::size_t>(op);
      if (calls[p][o] == 0) continue;
      out.push_back(OpTiming{op_name(static_cast<Op>(op)), phase == 1, calls[p][o], busy[p][o]});
    }
  }
  return out;
}

}  // namespace flexgen::cuda
