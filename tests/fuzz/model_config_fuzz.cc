// The HF config.json reader (ModelSpec::from_config_json) and the counts of the spec it returns.
#include "engine/core/model_spec.h"
#include "fuzz/fuzz_target.h"

FLEXGEN_FUZZ_TARGET(model_config) {
  using namespace flexgen;
  const fuzz::MemFile file(input);
  const ModelSpec spec = ModelSpec::from_config_json(file.path());
  spec.validate();  // what the reader returns is a valid spec
  FLEXGEN_FUZZ_CHECK(spec.total_params() > 0 && spec.total_bytes() > 0, "a valid spec has parameters");
  FLEXGEN_FUZZ_CHECK(spec.layer_params() > 0 && spec.cache_bytes_per_token_per_layer() > 0,
                     "a valid spec has layers and a cache");
  FLEXGEN_FUZZ_CHECK(spec.head_dim() * spec.num_heads == spec.hidden_size, "heads divide the hidden size");
}
