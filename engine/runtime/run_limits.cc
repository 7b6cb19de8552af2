#include "engine/runtime/run_limits.h"

#include <limits>
#include <string>

#include "engine/core/error.h"
#include "engine/core/format.h"

namespace flexgen {

namespace {

constexpr std::int64_t kOverflow = std::numeric_limits<std::int64_t>::max();

// a * b, or a value above every limit when the product overflows.
std::int64_t product(std::int64_t a, std::int64_t b) {
  std::int64_t out = 0;
  return __builtin_mul_overflow(a, b, &out) ? kOverflow : out;
}

std::int64_t sum(std::int64_t a, std::int64_t b) {
  std::int64_t out = 0;
  return __builtin_add_overflow(a, b, &out) ? kOverflow : out;
}

std::string shown(std::int64_t value) { return value == kOverflow ? std::string("more than 2^63") : str_cat(value); }

}  // namespace

void check_run_limits(const ModelSpec& spec, const Workload& workload, const Policy& policy) {
  const std::int64_t b = policy.gpu_batch_size();
  const std::int64_t batches = policy.num_gpu_batches();
  const std::int64_t prompt = workload.prompt_len;

  const std::int64_t rows = product(b, prompt);
  FLEXGEN_REQUIRE(rows <= kMaxKernelRows, "invalid run: gpu batch size ", b, " x prompt length ", prompt, " = ",
                  shown(rows), " tokens per gpu batch, more than the kernels' 32-bit row index allows (",
                  kMaxKernelRows, "); use a smaller --gpu-batch-size and more --num-gpu-batches");
  const std::int64_t units = product(b, spec.num_heads);
  FLEXGEN_REQUIRE(units <= kMaxKernelRows, "invalid run: gpu batch size ", b, " x ", spec.num_heads, " heads = ",
                  shown(units), " attention units per gpu batch, more than the kernels' 32-bit block index allows (",
                  kMaxKernelRows, "); use a smaller --gpu-batch-size and more --num-gpu-batches");
  FLEXGEN_REQUIRE(prompt <= kMaxPrefillTokens, "invalid run: prompt length ", prompt,
                  " is more than the prefill attention kernel's launch allows (", kMaxPrefillTokens, " tokens)");

  const std::int64_t visits = product(product(workload.gen_len, spec.num_layers + 2), sum(product(16, batches), 2));
  FLEXGEN_REQUIRE(visits <= kMaxScheduleTasks, "invalid run: ", workload.gen_len, " tokens x ", spec.num_layers + 2,
                  " schedule layers x ", batches, " gpu batches need up to ", shown(visits),
                  " schedule tasks, more than its 32-bit task ids allow (", kMaxScheduleTasks,
                  "); use fewer --num-gpu-batches or a shorter --gen-len");

  // Bytes: float32 as the widest element; the whole cache of every (layer, batch) and both slots.
  const std::int64_t elem = 4;
  const std::int64_t positions = workload.prompt_len + workload.gen_len;  // <= max_positions
  const std::int64_t cache = product(product(product(2 * spec.num_layers, sum(batches, 2)), units),
                                     product(positions, product(spec.head_dim(), elem)));
  const std::int64_t activations = product(product(rows, spec.hidden_size), product(elem, sum(batches, 4)));
  const std::int64_t weights = product(spec.total_params(), elem);
  const std::int64_t total = sum(sum(cache, activations), product(weights, 2));
  FLEXGEN_REQUIRE(total < kMaxRunBytes, "invalid run: gpu batch size ", b, " x ", batches, " gpu batches x ",
                  positions, " positions of ", spec.name, " need ",
                  total == kOverflow ? std::string("more than 8 EiB") : "about " + format_bytes(total),
                  " of weights, cache and activations, beyond 64-bit byte counts (", format_bytes(kMaxRunBytes),
                  "); use a smaller batch or fewer gpu batches");
}

}  // namespace flexgen
