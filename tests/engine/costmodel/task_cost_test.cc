// Golden values of the cost model: small cases worked out by hand from the numbers of
// experiments/hardware/t4-paper.json, written here as literals and arithmetic.
#include "engine/costmodel/task_cost.h"

#include <gtest/gtest.h>

#include "engine/costmodel/estimate.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/schedule.h"

namespace flexgen {
namespace {

// The numbers of t4-paper.json the goldens use (the test fails if the file changes):
constexpr double kH2d = 13840532111.36;        // 12.89 GiB/s
constexpr double kD2h = 5175435591.68;         // 4.82 GiB/s
constexpr double kDiskRead = 507879882.752;    // 0.473 GiB/s
constexpr double kDiskWrite = 801011400.704;   // 0.746 GiB/s
constexpr double kGemmPrefill = 21.24e12, kGemmDecode = 4.3e12;
constexpr double kAttnPrefill = 9.97e12, kAttnDecode = 0.079e12;
constexpr double kCpuFlops = 0.0123e12;
constexpr double kGpuMem = 320e9, kCpuMem = 100e9;

const HardwareSpec& t4() {
  static const HardwareSpec hw = HardwareSpec::from_file(std::string(FLEXGEN_SOURCE_DIR) +
                                                         "/experiments/hardware/t4-paper.json");
  return hw;
}

TEST(CostModelGolden, HardwareFileHasTheNumbersUsedHere) {
  const HardwareSpec& hw = t4();
  EXPECT_EQ(hw.h2d_bytes_per_s, kH2d);
  EXPECT_EQ(hw.d2h_bytes_per_s, kD2h);
  EXPECT_EQ(hw.disk_read_bytes_per_s, kDiskRead);
  EXPECT_EQ(hw.disk_write_bytes_per_s, kDiskWrite);
  EXPECT_EQ(hw.gpu_gemm_prefill_flops_per_s, kGemmPrefill);
  EXPECT_EQ(hw.gpu_gemm_decode_flops_per_s, kGemmDecode);
  EXPECT_EQ(hw.gpu_attention_prefill_flops_per_s, kAttnPrefill);
  EXPECT_EQ(hw.gpu_attention_decode_flops_per_s, kAttnDecode);
  EXPECT_EQ(hw.cpu_attention_flops_per_s, kCpuFlops);
  EXPECT_EQ(hw.gpu_memory_bytes_per_s, kGpuMem);
  EXPECT_EQ(hw.cpu_memory_bytes_per_s, kCpuMem);
}

// One decoder layer, fp16: hidden h = 1024, 16 heads (head_dim 64), ffn f = 4096, vocab 2048,
// 2048 positions. Workload: prompt s = 128, 4 tokens; gpu batch b = 4, 2 gpu batches.
// Units (sequence, head) per batch: 4 * 16 = 64. A cache row (one unit, one position, key or
// value) is 64 values = 128 bytes.
ModelSpec spec() {
  ModelSpec m;
  m.name = "golden";
  m.num_layers = 1;
  m.hidden_size = 1024;
  m.num_heads = 16;
  m.ffn_dim = 4096;
  m.vocab_size = 2048;
  m.max_positions = 2048;
  m.dtype = DType::kF16;
  return m;
}

Plan make(std::array<double, 6> percent, bool delegate = false, bool overlap = true, bool compress_weight = false,
          bool compress_cache = false) {
  PolicyConfig c;
  c.gpu_batch_size = 4;
  c.num_gpu_batches = 2;
  c.set_percent(percent);
  c.cpu_cache_compute = delegate;
  c.overlap = overlap;
  c.compress_weight = compress_weight;
  c.compress_cache = compress_cache;
  Workload w;
  w.prompt_len = 128;
  w.gen_len = 4;
  w.num_sequences = 8;
  return make_plan(spec(), w, Policy::create(c));
}

const Task& find(const Schedule& s, TaskKind kind, int token, int layer, int batch) {
  for (const Task& t : s.tasks) {
    if (t.kind == kind && t.token == token && t.layer == layer && t.batch == batch) return t;
  }
  ADD_FAILURE() << "no task " << task_kind_name(kind) << " " << token << " " << layer << " " << batch;
  static const Task none;
  return none;
}

// GPU work of one gpu batch, by hand.
//   decoder `compute` (q, k, v projections and scores + weighted sum over the GPU units)
//     prefill gemm: 2 b s h 3h = 2*4*128*1024*3072 = 3221225472 FLOP / 21.24e12
//             (weights (3*1024*1024 + 3*1024) * 2 B = 6297600 B / 320e9 = 19.7 us: compute-bound)
//     prefill attention: 64 units * 2*64 * (128*129/2 = 8256 pairs) * 2 = 135266304 FLOP / 9.97e12
//     decode gemm: 2*4*1*1024*3072 = 25165824 FLOP / 4.3e12 = 5.85 us < 6297600 B / 320e9: memory
//     decode attention at p cached positions: 64 * 2*64 * (p + 1) * 2 = 16384 (p + 1) FLOP / 0.079e12
//             (bytes = FLOPs for an fp16 cache, / 320e9 is less)
//   decoder `compute_post` (out projection and MLP)
//     prefill: 2 b s h h + 4 b s h f = 1073741824 + 8589934592 = 9663676416 FLOP / 21.24e12
//     decode: 8388608 + 67108864 = 75497472 FLOP / 4.3e12 = 17.6 us < weights (1049600 + 4198400
//             + 4195328 = 9443328 values) * 2 = 18886656 B / 320e9 = 59.0 us: memory
//   output `compute` (LM head on the last position): 2 b h V = 16777216 FLOP, / 21.24e12 or
//     / 4.3e12, both less than 2048*1024*2 = 4194304 B / 320e9 = 13.1 us: memory in both phases
constexpr double kPrefillCompute = 3221225472.0 / kGemmPrefill + 135266304.0 / kAttnPrefill;
constexpr double kPrefillPost = 9663676416.0 / kGemmPrefill;
constexpr double kOutput = 4194304.0 / kGpuMem;
constexpr double decode_compute(double p) { return 6297600.0 / kGpuMem + 16384.0 * (p + 1) / kAttnDecode; }
constexpr double kDecodePost = 18886656.0 / kGpuMem;

TEST(CostModelGolden, ComputeTasksOneLayerAllOnGpu) {
  const Plan p = make({100, 0, 100, 0, 100, 0});
  const Schedule s = make_schedule(p, ScheduleKind::kZigZag);
  const HardwareSpec& hw = t4();
  EXPECT_DOUBLE_EQ(task_cost(find(s, TaskKind::kCompute, 0, 1, 0), p, hw).seconds, kPrefillCompute);
  EXPECT_DOUBLE_EQ(task_cost(find(s, TaskKind::kComputePost, 0, 1, 1), p, hw).seconds, kPrefillPost);
  EXPECT_DOUBLE_EQ(task_cost(find(s, TaskKind::kCompute, 0, 2, 0), p, hw).seconds, kOutput);
  EXPECT_DOUBLE_EQ(task_cost(find(s, TaskKind::kCompute, 2, 1, 0), p, hw).seconds, decode_compute(129));
  const TaskCost post = task_cost(find(s, TaskKind::kComputePost, 3, 1, 1), p, hw);
  EXPECT_DOUBLE_EQ(post.seconds, kDecodePost);
  EXPECT_DOUBLE_EQ(post.gemm, kDecodePost);
  EXPECT_EQ(post.resource, Resource::kGpuCompute);
  EXPECT_EQ(task_cost(find(s, TaskKind::kCompute, 1, 2, 1), p, hw).seconds, kOutput);
}

TEST(CostModelGolden, WholeRunOneLayerAllOnGpu) {
  const Plan p = make({100, 0, 100, 0, 100, 0});
  const Estimate e = estimate_schedule(p, make_schedule(p, ScheduleKind::kZigZag), t4());
  // Only the GPU works; a zig-zag step is both batches. The embedding costs nothing.
  const double prefill = 2 * (kPrefillCompute + kPrefillPost) + 2 * kOutput;
  // Decode steps 1..3 attend to 128, 129, 130 cached positions (+ the new one).
  double decode = 0;
  for (double cached : {128.0, 129.0, 130.0}) decode += 2 * (decode_compute(cached) + kDecodePost) + 2 * kOutput;
  EXPECT_NEAR(e.prefill_s, prefill, 1e-15);
  EXPECT_NEAR(e.decode_s, decode, 1e-15);
  EXPECT_DOUBLE_EQ(e.throughput_tok_s, 8.0 * 4 / (prefill + decode));
  EXPECT_DOUBLE_EQ(e.decode_throughput_tok_s, 8.0 * 3 / decode);
  EXPECT_DOUBLE_EQ(e.busy[static_cast<int>(Resource::kGpuCompute)], prefill + decode);
  EXPECT_EQ(e.busy[static_cast<int>(Resource::kH2D)], 0.0);
}

// Weights of each schedule layer, fp16:
//   embedding: tokens 2048*1024 + positions 2050*1024 = 4196352 values = 8392704 B
//   decoder: 4 (1024*1024 + 1024) + 2*1024 + (4096*1024 + 4096) + (1024*4096 + 1024) + 2*1024
//            = 12596224 values = 25192448 B
//   output: final LayerNorm 2*1024 + LM head 2048*1024 = 2099200 values = 4198400 B
constexpr double kEmbeddingWeights = 8392704.0, kDecoderWeights = 25192448.0, kOutputWeights = 4198400.0;

TEST(CostModelGolden, AllWeightsOnCpu) {
  const Plan p = make({0, 100, 100, 0, 100, 0});
  const Schedule s = make_schedule(p, ScheduleKind::kZigZag);
  const TaskCost load = task_cost(find(s, TaskKind::kWeightLoad, 0, 1, -1), p, t4());
  EXPECT_EQ(load.resource, Resource::kH2D);
  EXPECT_DOUBLE_EQ(load.seconds, kDecoderWeights / kH2d);  // 1.820 ms
  EXPECT_DOUBLE_EQ(load.link, load.seconds);

  const Estimate e = estimate_schedule(p, s, t4());
  // Every step: max(weight load of the layer, GPU work of both batches). The decoder's load
  // (1.82 ms) beats its prefill compute (2 * 0.620 ms); the embedding's load beats its 0 GPU work,
  // the output's load (0.303 ms) beats 2 * 13.1 us.
  const double prefill = kEmbeddingWeights / kH2d + kDecoderWeights / kH2d + kOutputWeights / kH2d;
  EXPECT_GT(kDecoderWeights / kH2d, 2 * (kPrefillCompute + kPrefillPost));
  EXPECT_NEAR(e.prefill_s, prefill, 1e-15);
  EXPECT_NEAR(e.decode_s, 3 * prefill, 1e-15);

  // Overlap off: the executor runs the list in order, so a step is the sum.
  const Plan q = make({0, 100, 100, 0, 100, 0}, false, /*overlap=*/false);
  const Estimate serial = estimate_schedule(q, make_schedule(q, ScheduleKind::kZigZag), t4());
  EXPECT_NEAR(serial.prefill_s, prefill + 2 * (kPrefillCompute + kPrefillPost) + 2 * kOutput, 1e-15);

  // Row-by-row: each batch loads the weights again; a step is one batch's layer.
  const Estimate rows = estimate_schedule(p, make_schedule(p, ScheduleKind::kRowByRow), t4());
  EXPECT_NEAR(rows.prefill_s, 2 * prefill, 1e-15);
  EXPECT_NEAR(rows.decode_s, 6 * prefill, 1e-15);
}

// 4-bit weights on the CPU: the bytes moved are the packed bytes. A [1024, 1024] weight in groups
// of 64 output channels: 16 * 1024 = 16384 groups; 1048576 / 2 = 524288 code bytes + 16384 * 2
// (min, scale) * 2 B = 65536 -> 589824 B. fc1 [4096, 1024] and fc2 [1024, 4096]: 65536 groups,
// 2097152 + 262144 = 2359296 B each. Vectors stay fp16: 4*1024 + 2*1024 + 4096 + 1024 + 2*1024 =
// 13312 values = 26624 B. Decoder layer: 4 * 589824 + 2 * 2359296 + 26624 = 7104512 B.
TEST(CostModelGolden, CompressedWeightsCountPackedBytesAndDecompression) {
  const Plan p = make({0, 100, 100, 0, 100, 0}, false, true, /*compress_weight=*/true);
  const Schedule s = make_schedule(p, ScheduleKind::kZigZag);
  const Task& load = find(s, TaskKind::kWeightLoad, 0, 1, -1);
  EXPECT_EQ(load.bytes.h2d, 7104512);
  EXPECT_DOUBLE_EQ(task_cost(load, p, t4()).seconds, 7104512.0 / kH2d);
  // Decode `compute` reads q, k, v packed (589824 B each), writes them dense (2097152 B each) and
  // reads them dense again, plus three dense biases (2048 B each): 3 * (589824 + 2 * 2097152) +
  // 3 * 2048 = 14358528 B / 320e9 = 44.9 us, more than its 5.85 us of FLOPs.
  const Task& compute = find(s, TaskKind::kCompute, 1, 1, 0);
  const TaskCostModel model(p, t4());
  EXPECT_DOUBLE_EQ(model.gemm_bytes(compute), 14358528.0);
  EXPECT_DOUBLE_EQ(model.cost(compute).gemm, 14358528.0 / kGpuMem);
}

// The KV cache on disk. Per batch, decode step i reads p = 128 + i - 1 cached positions of key and
// value of 64 units: 2 * 64 * p * 128 B = 16384 p B from disk, then the same over h2d; it stores
// the new row (16384 B) over d2h and on to disk. Prefill stores 128 rows: 2097152 B.
TEST(CostModelGolden, CacheOnDisk) {
  const Plan p = make({100, 0, 0, 0, 100, 0});
  const Schedule s = make_schedule(p, ScheduleKind::kZigZag);
  const HardwareSpec& hw = t4();
  EXPECT_DOUBLE_EQ(task_cost(find(s, TaskKind::kCacheRead, 2, 1, 1), p, hw).seconds, 16384.0 * 129 / kDiskRead);
  EXPECT_DOUBLE_EQ(task_cost(find(s, TaskKind::kCacheLoad, 2, 1, 1), p, hw).seconds, 16384.0 * 129 / kH2d);
  EXPECT_DOUBLE_EQ(task_cost(find(s, TaskKind::kCacheStore, 0, 1, 0), p, hw).seconds, 2097152.0 / kD2h);
  EXPECT_DOUBLE_EQ(task_cost(find(s, TaskKind::kCacheWrite, 0, 1, 0), p, hw).seconds, 2097152.0 / kDiskWrite);
  EXPECT_DOUBLE_EQ(task_cost(find(s, TaskKind::kCacheWrite, 1, 1, 0), p, hw).seconds, 16384.0 / kDiskWrite);

  const Estimate e = estimate_schedule(p, s, hw);
  // Prefill, decoder step: disk write 2 * 2097152 B at 0.746 GiB/s (5.24 ms) beats the rest.
  const double prefill = 2 * kPrefillCompute + 2 * kPrefillPost;
  const double prefill_decoder = 2 * 2097152.0 / kDiskWrite;
  EXPECT_GT(prefill_decoder, prefill);
  EXPECT_NEAR(e.prefill_s, prefill_decoder + 2 * kOutput, 1e-15);
  // Decode, decoder step: the disk read of both batches (8.3 ms at p = 128) beats the rest; the
  // last step (i = 3) stores nothing.
  double decode = 0;
  for (double cached : {128.0, 129.0, 130.0}) decode += 2 * 16384.0 * cached / kDiskRead + 2 * kOutput;
  EXPECT_NEAR(e.decode_s, decode, 1e-15);
}

// The disk's per-request latency (disk_read/write_latency_s, 0 in t4-paper.json) is paid per
// request of a disk task on top of its bytes: 2 for a cache read or write (keys, then values), one
// per disk-homed tensor for a weight read (an OPT decoder layer has 16: q, k, v, out projections,
// fc1, fc2, their biases and two LayerNorms' weight and bias), 1 for a hidden state.
TEST(CostModelGolden, DiskRequestLatency) {
  HardwareSpec hw = t4();
  hw.disk_read_latency_s = 0.2e-3;
  hw.disk_write_latency_s = 1e-3;
  const Plan p = make({100, 0, 0, 0, 100, 0});
  const Schedule s = make_schedule(p, ScheduleKind::kZigZag);
  const TaskCost write = task_cost(find(s, TaskKind::kCacheWrite, 1, 1, 0), p, hw);
  EXPECT_DOUBLE_EQ(write.link, 16384.0 / kDiskWrite);
  EXPECT_DOUBLE_EQ(write.latency, 2e-3);
  EXPECT_DOUBLE_EQ(write.seconds, 16384.0 / kDiskWrite + 2e-3);
  EXPECT_DOUBLE_EQ(task_cost(find(s, TaskKind::kCacheRead, 2, 1, 1), p, hw).seconds,
                   16384.0 * 129 / kDiskRead + 0.4e-3);
  // Links other than the disk pay none.
  EXPECT_DOUBLE_EQ(task_cost(find(s, TaskKind::kCacheLoad, 2, 1, 1), p, hw).seconds, 16384.0 * 129 / kH2d);

  const Plan w = make({0, 0, 100, 0, 100, 0});  // weights on disk
  const Schedule ws = make_schedule(w, ScheduleKind::kZigZag);
  const TaskCost read = task_cost(find(ws, TaskKind::kWeightRead, 0, 1, -1), w, hw);
  EXPECT_DOUBLE_EQ(read.seconds, kDecoderWeights / kDiskRead + 16 * 0.2e-3);

  const Plan a = make({100, 0, 100, 0, 0, 0});  // hidden states on disk
  const Schedule as = make_schedule(a, ScheduleKind::kZigZag);
  EXPECT_DOUBLE_EQ(task_cost(find(as, TaskKind::kActWrite, 1, 1, 0), a, hw).latency, 1e-3);
  EXPECT_DOUBLE_EQ(task_cost(find(as, TaskKind::kActRead, 1, 1, 0), a, hw).latency, 0.2e-3);
}

// CPU delegation with the cache on the CPU: decode attention over the 64 CPU units of a batch runs
// on the CPU: 64 * 2*64 * ((p + 1) + (p + 1)) FLOP = 16384 (p + 1) FLOP; at 0.0123e12 FLOP/s that
// is slower than reading its 16384 (p + 1) B at 100e9 B/s. The GPU sends the query and the new key
// and value (3 * 64 * 128 B) and gets the output back (64 * 128 B); the GPU's own attention is 0.
TEST(CostModelGolden, CpuDelegation) {
  const Plan p = make({100, 0, 0, 100, 100, 0}, /*delegate=*/true);
  const Schedule s = make_schedule(p, ScheduleKind::kZigZag);
  const HardwareSpec& hw = t4();
  const TaskCost cpu = task_cost(find(s, TaskKind::kCpuAttention, 1, 1, 0), p, hw);
  EXPECT_EQ(cpu.resource, Resource::kCpuCompute);
  EXPECT_DOUBLE_EQ(cpu.seconds, 16384.0 * 129 / kCpuFlops);
  EXPECT_DOUBLE_EQ(task_cost(find(s, TaskKind::kDelegateStore, 1, 1, 0), p, hw).seconds, 3 * 64 * 128.0 / kD2h);
  EXPECT_DOUBLE_EQ(task_cost(find(s, TaskKind::kDelegateLoad, 1, 1, 0), p, hw).seconds, 64 * 128.0 / kH2d);
  EXPECT_DOUBLE_EQ(task_cost(find(s, TaskKind::kCompute, 1, 1, 0), p, hw).seconds, 6297600.0 / kGpuMem);

  // Decode decoder step: the CPU's attention of both batches (0.34 s at p = 128) dominates.
  const Estimate e = estimate_schedule(p, s, hw);
  double decode = 0;
  for (double cached : {128.0, 129.0, 130.0}) decode += 2 * 16384.0 * (cached + 1) / kCpuFlops + 2 * kOutput;
  EXPECT_NEAR(e.decode_s, decode, 1e-12);
}

// A 4-bit cache on the CPU with delegation: the CPU attention's FLOPs (16384 (p + 1) at p = 128, as
// above) at cpu_cache_attention_flops_per_s when the file has it (here 0.004e12, slower than
// fp16's 0.0123e12 and than the bytes at 100e9 B/s), else at cpu_attention_flops_per_s.
TEST(CostModelGolden, CpuDelegationOverA4BitCache) {
  const Plan p = make({100, 0, 0, 100, 100, 0}, /*delegate=*/true, true, false, /*compress_cache=*/true);
  const Schedule s = make_schedule(p, ScheduleKind::kZigZag);
  HardwareSpec hw = t4();
  EXPECT_DOUBLE_EQ(task_cost(find(s, TaskKind::kCpuAttention, 1, 1, 0), p, hw).attention, 16384.0 * 129 / kCpuFlops);
  hw.cpu_cache_attention_flops_per_s = 0.004e12;
  EXPECT_DOUBLE_EQ(task_cost(find(s, TaskKind::kCpuAttention, 1, 1, 0), p, hw).attention, 16384.0 * 129 / 0.004e12);
  // fp16 rows keep the fp16 rate.
  const Plan f = make({100, 0, 0, 100, 100, 0}, /*delegate=*/true);
  EXPECT_DOUBLE_EQ(task_cost(find(make_schedule(f, ScheduleKind::kZigZag), TaskKind::kCpuAttention, 1, 1, 0), f, hw)
                       .attention,
                   16384.0 * 129 / kCpuFlops);
}

// Top-k (attn_sparsity 0.25) over the CPU's cache with delegation: at p = 128 the kernel scores
// the 129 positions and sums k + 1 = floor(0.25 * 128) + 1 = 33 of them: 64 units * 2 * 64 *
// (129 + 33) FLOPs, at cpu_sparse_attention_flops_per_s when the file has it (here 0.006e12),
// else at cpu_attention_flops_per_s; a 4-bit cache keeps cpu_cache_attention_flops_per_s.
TEST(CostModelGolden, CpuDelegationWithTopK) {
  auto sparse_plan = [](bool compress_cache) {
    PolicyConfig c = make({100, 0, 0, 100, 100, 0}, /*delegate=*/true, true, false, compress_cache).policy.config();
    c.attn_sparsity = 0.25;
    Workload w;
    w.prompt_len = 128;
    w.gen_len = 4;
    w.num_sequences = 8;
    return make_plan(spec(), w, Policy::create(c));
  };
  const double flops = 64.0 * 2 * 64 * (129 + 33);
  const Plan p = sparse_plan(false);
  const Schedule s = make_schedule(p, ScheduleKind::kZigZag);
  const Task& t = find(s, TaskKind::kCpuAttention, 1, 1, 0);
  ASSERT_DOUBLE_EQ(t.attention_flops, flops);
  HardwareSpec hw = t4();
  EXPECT_DOUBLE_EQ(task_cost(t, p, hw).attention, flops / kCpuFlops);
  hw.cpu_sparse_attention_flops_per_s = 0.006e12;
  hw.cpu_cache_attention_flops_per_s = 0.004e12;
  EXPECT_DOUBLE_EQ(task_cost(t, p, hw).attention, flops / 0.006e12);
  const Plan q = sparse_plan(true);
  const Schedule sq = make_schedule(q, ScheduleKind::kZigZag);
  const Task& tq = find(sq, TaskKind::kCpuAttention, 1, 1, 0);
  EXPECT_DOUBLE_EQ(task_cost(tq, q, hw).attention, tq.attention_flops / 0.004e12);
}

// The measured refinements (flexgen profile): a 4-bit dequantization rate D and a fixed time O per
// GPU compute task. 4-bit weights all on the GPU: the decode `compute` of gpu batch 0 dequantizes
// the whole layer's 4-bit weights once for the block — q, k, v, out [1024, 1024] and fc1, fc2
// [4096, 1024]: 4 * 1048576 + 2 * 4194304 = 12582912 values = 25165824 dense bytes / D — and its
// products read q, k, v dense: 3 * 2097152 + 3 * 2048 (biases) = 6297600 B / 320e9 (memory-bound,
// as the fp16 case). Batch 1's `compute` dequantizes nothing (zig-zag); under row-by-row each
// batch does. Link tasks get no overhead.
TEST(CostModelGolden, MeasuredDequantizationAndTaskOverhead) {
  HardwareSpec hw = t4();
  hw.gpu_dequant_bytes_per_s = 100e9;
  hw.gpu_task_overhead_s = 20e-6;
  const Plan p = make({100, 0, 100, 0, 100, 0}, false, true, /*compress_weight=*/true);
  const Schedule s = make_schedule(p, ScheduleKind::kZigZag);
  const TaskCostModel zigzag(p, hw, ScheduleKind::kZigZag);
  const TaskCost first = zigzag.cost(find(s, TaskKind::kCompute, 2, 1, 0));
  EXPECT_DOUBLE_EQ(first.weight_dequant, 25165824.0 / 100e9);
  EXPECT_DOUBLE_EQ(first.gemm, 6297600.0 / kGpuMem);
  EXPECT_DOUBLE_EQ(first.overhead, 20e-6);
  EXPECT_DOUBLE_EQ(first.seconds, 25165824.0 / 100e9 + 6297600.0 / kGpuMem + 16384.0 * 130 / kAttnDecode + 20e-6);
  const TaskCost second = zigzag.cost(find(s, TaskKind::kCompute, 2, 1, 1));
  EXPECT_EQ(second.weight_dequant, 0.0);
  EXPECT_DOUBLE_EQ(second.seconds, decode_compute(129) + 20e-6);
  // compute_post reads out, fc1, fc2 dense (the dequantization was charged to compute).
  EXPECT_DOUBLE_EQ(zigzag.cost(find(s, TaskKind::kComputePost, 2, 1, 0)).seconds, kDecodePost + 20e-6);
  const TaskCostModel rows(p, hw, ScheduleKind::kRowByRow);
  EXPECT_DOUBLE_EQ(rows.cost(find(s, TaskKind::kCompute, 2, 1, 1)).weight_dequant, 25165824.0 / 100e9);

  // A 4-bit cache: attention reads the rows dense (1 B per FLOP, as fp16) after dequantizing them:
  // 16384 (p + 1) FLOP -> 16384 (p + 1) dense bytes / D.
  PolicyConfig c = p.policy.config();
  c.compress_weight = false;
  c.compress_cache = true;
  const Plan q = make_plan(p.spec, p.workload, Policy::create(c));
  const Schedule qs = make_schedule(q, ScheduleKind::kZigZag);
  const TaskCost attn = TaskCostModel(q, hw).cost(find(qs, TaskKind::kCompute, 2, 1, 1));
  EXPECT_DOUBLE_EQ(attn.cache_dequant, 16384.0 * 130 / 100e9);
  // With a rate of its own for cache rows, that rate.
  hw.gpu_cache_dequant_bytes_per_s = 40e9;
  EXPECT_DOUBLE_EQ(TaskCostModel(q, hw).cost(find(qs, TaskKind::kCompute, 2, 1, 1)).cache_dequant, 16384.0 * 130 / 40e9);
  hw.gpu_cache_dequant_bytes_per_s = 0;
  EXPECT_DOUBLE_EQ(attn.attention, 16384.0 * 130 / kAttnDecode);
  EXPECT_EQ(attn.weight_dequant, 0.0);

  // Weights on the CPU: the load is a link task, with no overhead.
  const Plan w = make({0, 100, 100, 0, 100, 0}, false, true, true);
  const Schedule ws = make_schedule(w, ScheduleKind::kZigZag);
  const TaskCost load = TaskCostModel(w, hw).cost(find(ws, TaskKind::kWeightLoad, 0, 1, -1));
  EXPECT_EQ(load.overhead, 0.0);
  EXPECT_DOUBLE_EQ(load.seconds, 7104512.0 / kH2d);
}

}  // namespace
}  // namespace flexgen
