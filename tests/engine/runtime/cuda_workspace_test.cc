// The CUDA backend's workspace sizes (runtime/cuda_workspace.h) against values worked out by hand
// from the model shapes; the cost model's GPU workspace is their total plus the padding allowance.
#include "engine/runtime/cuda_workspace.h"

#include <gtest/gtest.h>

#include "engine/core/model_spec.h"
#include "engine/core/policy.h"
#include "engine/costmodel/memory_model.h"
#include "engine/runtime/plan.h"

namespace flexgen {
namespace {

Plan plan_of(const std::string& model, std::int64_t gbs, std::int64_t prompt, std::int64_t gen, bool q4w = false,
             bool q4c = false, double sparsity = 1.0) {
  PolicyConfig c;
  c.gpu_batch_size = gbs;
  c.num_gpu_batches = 1;
  c.set_percent({100, 0, 100, 0, 100, 0});
  c.compress_weight = q4w;
  c.compress_cache = q4c;
  c.attn_sparsity = sparsity;
  Workload w;
  w.prompt_len = prompt;
  w.gen_len = gen;
  w.num_sequences = gbs;
  return make_plan(ModelSpec::from_name(model), w, Policy::create(c));
}

// opt-1.3b (h 2048, 32 heads of 64, ffn 8192, vocab 50272, fp16), gpu batch 8, prompt 512, gen 32:
//   ln, q, k, v, attention, residual  6 x 8*512*2048*2         = 6 x 16777216 = 100663296
//   mlp                               8*512*8192*2             = 67108864
//   logits                            8*50272*2                = 804352
//   last hidden                       8*2048*2                 = 32768
//   token ids                         8*512*4                  = 16384
//   pad lengths                       8*4 = 32                 -> 256 aligned
//   decode splits                     (8*32)*64*(64+2)*4       = 4325376
//   prefill scores: one unit 512*512*2 + 6*8 = 524336; 256 MiB / 524336 = 511 units, capped at
//                   the 256 query units: 256*524288 + 256*48   = 134230016
//   cuBLAS                            32 MiB                   = 33554432
//   next tokens                       8*4 = 32                 -> 256 aligned
//   total                                                      = 340736000
TEST(CudaWorkspace, Opt13bByHand) {
  const CudaWorkspaceSizes w = cuda_workspace_sizes(plan_of("opt-1.3b", 8, 512, 32));
  EXPECT_EQ(w.ln, 16777216);
  EXPECT_EQ(w.k, 16777216);
  EXPECT_EQ(w.mlp, 67108864);
  EXPECT_EQ(w.up, 0);
  EXPECT_EQ(w.logits, 804352);
  EXPECT_EQ(w.splits, 4325376);
  EXPECT_EQ(w.prefill, 134230016);
  EXPECT_EQ(w.weights_dq, 0);
  EXPECT_EQ(w.cache_dq, 0);
  EXPECT_EQ(w.kept, 0);
  EXPECT_EQ(w.total(), 340736000);
  // The cost model prices exactly this, for prefill and decode alike.
  const Plan plan = plan_of("opt-1.3b", 8, 512, 32);
  const GpuWorkspace g = gpu_workspace(plan.spec, plan.workload, plan.policy);
  EXPECT_EQ(g.prefill, 340736000.0 + static_cast<double>(kCudaPaddingAllowance));
  EXPECT_EQ(g.decode, g.prefill);
}

// With 4-bit weights the largest layer's dense weights: the embedding layer (tokens 50272 x 2048
// and positions 2050 x 2048, fp16: 205914112 + 8396800 = 214310912) beats a decoder layer
// (4 x 2048^2 + 2 x 8192*2048 halves = 100663296). With a 4-bit cache one (layer, batch)'s dense
// cache: key and value, capacity 512 + 32 - 1 = 543, 8*32 units of 64: 2*543*256*64*2 = 35586048.
// Top-k at 0.25: floor(0.25 * 543) = 135 ids per unit: 256*135*4 = 138240.
TEST(CudaWorkspace, CompressionAndSparsityByHand) {
  const CudaWorkspaceSizes w = cuda_workspace_sizes(plan_of("opt-1.3b", 8, 512, 32, true, true, 0.25));
  EXPECT_EQ(w.weights_dq, 214310912);
  EXPECT_EQ(w.cache_dq, 35586048);
  EXPECT_EQ(w.kept, 138240);
  EXPECT_GT(w.new_rows, 0);
  EXPECT_LT(w.new_rows, 2 * 8 * 512 * 32 * 64 * 2);  // compressed rows: under the dense size
}

// llama-2-70b (h 8192, 64 heads of 128, 8 kv heads: kv 1024, ffn 28672, vocab 32000), gpu batch 4,
// prompt 128, gen 8:
//   ln, q, attention, residual  4 x 4*128*8192*2  = 4 x 8388608 = 33554432
//   k, v                        2 x 4*128*1024*2  = 2 x 1048576 = 2097152
//   mlp (gate), up              2 x 4*128*28672*2 = 2 x 29360128 = 58720256
//   logits 4*32000*2 = 256000; last hidden 4*8192*2 = 65536; token ids 4*128*4 = 2048;
//   pad lengths 16 -> 256; next tokens 16 -> 256
//   decode splits               (4*64)*64*130*4   = 8519680
//   prefill scores: one unit 128*128*2 + 48 = 32816: all 256 query units fit 256 MiB:
//                               256*32768 + 256*48 = 8400896
//   cuBLAS                                        = 33554432
//   total                                         = 145170944
TEST(CudaWorkspace, Llama70bGroupedQueryByHand) {
  const CudaWorkspaceSizes w = cuda_workspace_sizes(plan_of("llama-2-70b", 4, 128, 8));
  EXPECT_EQ(w.k, 1048576);
  EXPECT_EQ(w.up, 29360128);
  EXPECT_EQ(w.splits, 8519680);
  EXPECT_EQ(w.prefill, 8400896);
  EXPECT_EQ(w.total(), 145170944);
}

// Prompts shorter than kCudaGemmPrefillMinTokens take the CUDA-core prefill kernel: no score buffer.
TEST(CudaWorkspace, ShortPromptsNeedNoScoreBuffer) {
  EXPECT_EQ(cuda_workspace_sizes(plan_of("opt-1.3b", 8, kCudaGemmPrefillMinTokens - 1, 4)).prefill, 0);
  EXPECT_GT(cuda_workspace_sizes(plan_of("opt-1.3b", 8, kCudaGemmPrefillMinTokens, 4)).prefill, 0);
}

}  // namespace
}  // namespace flexgen
