// The safetensors reader (engine/io/safetensors.h): header length, JSON header, entries, and the
// data of every float tensor.
#include <string>

#include "engine/core/error.h"
#include "engine/io/safetensors.h"
#include "fuzz/fuzz_target.h"

FLEXGEN_FUZZ_TARGET(safetensors) {
  using namespace flexgen;
  const fuzz::MemFile file(input);
  const SafetensorsFile st(file.path());
  for (const std::string& name : st.names()) {
    const SafetensorsEntry& e = st.entry(name);
    FLEXGEN_FUZZ_CHECK(e.begin <= e.end && e.end <= input.size(), "a tensor's bytes lie in the file");
    if (e.dtype != "F32" && e.dtype != "F16" && e.dtype != "BF16") {
      bool refused = false;
      try {
        st.require_float(name);
      } catch (const Error&) {
        refused = true;
      }
      FLEXGEN_FUZZ_CHECK(refused, "require_float refuses a non-float dtype");
      continue;
    }
    const Tensor t = st.read_float(name);
    FLEXGEN_FUZZ_CHECK(t.shape() == e.shape, "the tensor has its entry's shape");
    FLEXGEN_FUZZ_CHECK(static_cast<std::uint64_t>(t.numel()) * safetensors_dtype_size(e.dtype) == e.end - e.begin,
                       "the tensor's bytes match its data_offsets");
  }
}
