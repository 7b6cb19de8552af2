// Finding a hardware file by path or name, a model by name or directory; and every hardware file
// of the repository parses, validates and says where its numbers come from.
#include "engine/core/input_lookup.h"

#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "support/fixture.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

const fs::path kSource = FLEXGEN_SOURCE_DIR;

TEST(InputLookup, HardwareByPathOrName) {
  EXPECT_EQ(load_hardware("t4-paper").name, "t4-paper");
  EXPECT_EQ(load_hardware(kDefaultHardwareFile).name, "t4-paper");
  EXPECT_EQ(load_hardware((kSource / "experiments/hardware/h100-sxm.json").string()).name, "h100-sxm");
  EXPECT_TRUE(fs::equivalent(resolve_hardware_path("a100-80gb"), kSource / "experiments/hardware/a100-80gb.json"));
  try {
    load_hardware("no-such-gpu");
    FAIL() << "expected flexgen::Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("--hardware 'no-such-gpu': no such hardware file"));
    EXPECT_THAT(e.what(), HasSubstr("experiments/hardware/no-such-gpu.json"));
  }
  EXPECT_THROW(load_hardware(""), Error);
}

TEST(InputLookup, ModelByNameDirectoryOrConfig) {
  EXPECT_EQ(load_model_spec("opt-30b").hidden_size, 7168);
  EXPECT_EQ(load_model_spec("facebook/opt-1.3b").num_layers, 24);
  const fs::path dir = testing::tiny_opt_dir();
  EXPECT_EQ(load_model_spec(dir.string()).hidden_size, 64);
  EXPECT_EQ(load_model_spec((dir / "config.json").string()).num_layers, 3);
  try {
    load_model_spec(testing::fixture_dir().string());
    FAIL() << "expected flexgen::Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("no config.json in this directory"));
  }
  EXPECT_THROW(load_model_spec("opt-9000b"), Error);
}

TEST(HardwareFiles, EveryFileParsesAndNamesItsSources) {
  int count = 0;
  for (const auto& entry : fs::directory_iterator(kSource / "experiments/hardware")) {
    if (entry.path().extension() != ".json") continue;
    ++count;
    const HardwareSpec hw = HardwareSpec::from_file(entry.path());
    EXPECT_NO_THROW(hw.validate()) << entry.path();
    EXPECT_EQ(hw.name, entry.path().stem().string());
    EXPECT_GE(hw.description.size(), 200u) << hw.name << ": the description must give the sources";
    // Achieved rates are estimates or measurements, not datasheet peaks, and must say so.
    EXPECT_THAT(hw.description, ::testing::AnyOf(HasSubstr("estimate"), HasSubstr("fitted"), HasSubstr("PLACEHOLDER"),
                                                 HasSubstr("Measured by `flexgen profile`")))
        << hw.name;
    // Sanity of magnitudes: achieved rates below the physical ones they derive from.
    EXPECT_LT(hw.gpu_gemm_decode_flops_per_s, hw.gpu_gemm_prefill_flops_per_s * 1.0001) << hw.name;
    EXPECT_LT(hw.gpu_attention_decode_flops_per_s, hw.gpu_attention_prefill_flops_per_s) << hw.name;
    EXPECT_LT(hw.h2d_bytes_per_s, hw.gpu_memory_bytes_per_s) << hw.name;
  }
  EXPECT_GE(count, 7);
  for (const char* name : {"a100-40gb", "a100-80gb", "h200", "l4", "rtx4090", "h100-sxm", "t4-paper"}) {
    EXPECT_TRUE(fs::exists(kSource / "experiments/hardware" / (std::string(name) + ".json"))) << name;
  }
}

}  // namespace
}  // namespace flexgen
