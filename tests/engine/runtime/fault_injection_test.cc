// Injected faults (engine/runtime/fault_injection.h), one test per fault at the runtime level and
// at the level of the `flexgen generate` command: each run ends with one clear flexgen::Error (one
// stderr line and exit status 1 for the command), no hang, and an empty offload directory. The
// disk tier's own fault tests (chunks, retries, fallbacks) are in disk_store_test.cc.
#include "engine/runtime/fault_injection.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/runtime.h"
#include "support/faults.h"
#include "support/fixture.h"
#include "support/random_opt.h"
#include "support/run_command.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using fault::Effect;
using fault::Point;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::error_of;
using testing::FaultGuard;
using testing::TempDir;

// ---- the runtime -------------------------------------------------------------------------------
// testing::tiny_opt_spec(): 2 layers, hidden 16, 4 heads, ffn 64, vocab 40, 32 positions, f32.
// Stored bytes of its schedule layers, worked out by hand:
//   layer 0: embed_tokens [40, 16] + embed_positions [34, 16] = 74 * 16 * 4     =  4736 B
//   layers 1, 2: q, k, v, out (16*16 + 16 each) + 2 LayerNorms (2 * 16 each)
//                + fc1 (64*16 + 64) + fc2 (16*64 + 16) = 3280 values * 4         = 13120 B
//   layer 3: embed_tokens [40, 16] + final LayerNorm (2 * 16) = 672 values * 4    =  2688 B
// With every weight on disk, the weight slot (GPU) and staging buffer (CPU) hold the largest
// layer, 13120 B; they are the first GPU and CPU allocations. The first disk region is
// embed_tokens.weight, 2560 B, whose capacity is one 4 KiB block.

const ModelSpec& spec() {
  static const ModelSpec s = testing::tiny_opt_spec();
  return s;
}

const OptWeights& weights() {
  static const OptWeights w = testing::random_opt_weights(spec(), 77, 0.3);
  return w;
}

constexpr std::int64_t kGbs = 2, kBatches = 2;

// Everything on disk: weights, cache and activations.
Plan all_on_disk(bool overlap) {
  PolicyConfig c;
  c.gpu_batch_size = kGbs;
  c.num_gpu_batches = kBatches;
  c.set_percent({0, 0, 0, 0, 0, 0});
  c.overlap = overlap;
  Workload w;
  w.prompt_len = 5;
  w.gen_len = 4;
  w.num_sequences = kGbs * kBatches;
  return make_plan(spec(), w, Policy::create(c));
}

RuntimeOptions options_in(const TempDir& dir) {
  RuntimeOptions o;
  o.budgets[Tier::kGpu] = o.budgets[Tier::kCpu] = o.budgets[Tier::kDisk] = Bytes{1} << 40;
  o.offload_dir = dir.path();
  return o;
}

std::vector<std::vector<std::int32_t>> prompts() {
  return {{2, 5, 9}, {2, 11, 4, 7, 30}, {2}, {2, 33, 8, 1}};
}

std::unique_ptr<Runtime> make(const Plan& plan, const TempDir& dir) {
  return make_runtime(Backend::kHost, plan, WeightsSource{&weights(), 0}, options_in(dir));
}

std::vector<std::vector<std::int32_t>> clean_tokens(bool overlap) {
  TempDir dir;
  const Plan plan = all_on_disk(overlap);  // the runtime refers to its plan: keep it alive
  return make(plan, dir)->generate(prompts(), SamplingConfig{}, std::nullopt).tokens;
}

// Builds the runtime (placing the weights on disk) and runs one block; the message of the
// flexgen::Error either throws, "" when none does.
std::string construct_and_run(const Plan& plan, const TempDir& dir) {
  return error_of([&] {
    const auto runtime = make(plan, dir);
    runtime->generate(prompts(), SamplingConfig{}, std::nullopt);
  });
}

class RuntimeFault : public ::testing::TestWithParam<bool> {  // overlap on / off
 protected:
  void SetUp() override { FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION(); }
  bool overlap() const { return GetParam(); }
  FaultGuard guard_;
  TempDir dir_;
  const Plan plan_ = all_on_disk(GetParam());  // outlives the runtimes of the test
};

TEST_P(RuntimeFault, DiskWriteFailsWhilePlacingWeights) {
  fault::arm(Point::kDiskWrite, Effect::kFail, 0, ENOSPC);
  const std::string msg = construct_and_run(plan_, dir_);
  EXPECT_THAT(msg, StartsWith("disk tier: write of 2560 bytes (region 'embed_tokens.weight', offset 0) to " +
                              dir_.path().string() + "/flexgen-"));
  EXPECT_THAT(msg, HasSubstr("failed: No space left on device"));
  EXPECT_TRUE(dir_.empty());
}

TEST_P(RuntimeFault, DiskWriteFailsDuringTheRun) {
  const auto runtime = make(plan_, dir_);
  fault::arm(Point::kDiskWrite, Effect::kFail, 3, EIO);  // a cache or activation write
  const std::string msg = error_of([&] { runtime->generate(prompts(), SamplingConfig{}, std::nullopt); });
  EXPECT_THAT(msg, StartsWith("disk tier: write of "));
  EXPECT_THAT(msg, HasSubstr("failed: Input/output error"));
  EXPECT_TRUE(dir_.empty());
}

TEST_P(RuntimeFault, DiskWriteThatComesBackShortIsRetried) {
  fault::arm(Point::kDiskWrite, Effect::kShort, 2);  // during placement
  const auto runtime = make(plan_, dir_);
  // At least one write per weight tensor: 2 in layer 0, 16 in each decoder layer, 3 in the last.
  EXPECT_GE(fault::calls(Point::kDiskWrite), 2 + 2 * 16 + 3);
  fault::arm(Point::kDiskWrite, Effect::kShort, 5);  // during the run
  const RunReport report = runtime->generate(prompts(), SamplingConfig{}, std::nullopt);
  EXPECT_EQ(report.tokens, clean_tokens(overlap()));
  EXPECT_TRUE(dir_.empty());
}

TEST_P(RuntimeFault, DiskWriteThatMakesNoProgressIsNoSpace) {
  fault::arm(Point::kDiskWrite, Effect::kStall, 4);
  const std::string msg = construct_and_run(plan_, dir_);
  EXPECT_THAT(msg, StartsWith("disk tier: write of "));
  EXPECT_THAT(msg, HasSubstr("failed: No space left on device (the write made no progress)"));
  EXPECT_TRUE(dir_.empty());
}

TEST_P(RuntimeFault, DiskReadFailsDuringTheRun) {
  const auto runtime = make(plan_, dir_);
  fault::arm(Point::kDiskRead, Effect::kFail, 0, EIO);
  const std::string msg = error_of([&] { runtime->generate(prompts(), SamplingConfig{}, std::nullopt); });
  EXPECT_THAT(msg, StartsWith("disk tier: read of "));
  EXPECT_THAT(msg, HasSubstr("failed: Input/output error"));
  EXPECT_TRUE(dir_.empty());
}

TEST_P(RuntimeFault, DiskReadThatComesBackShortIsRetried) {
  const auto runtime = make(plan_, dir_);
  fault::arm(Point::kDiskRead, Effect::kShort, 1);
  const RunReport report = runtime->generate(prompts(), SamplingConfig{}, std::nullopt);
  EXPECT_EQ(report.tokens, clean_tokens(overlap()));
  EXPECT_TRUE(dir_.empty());
}

TEST_P(RuntimeFault, GpuTierAllocationFails) {
  fault::arm(Point::kAllocGpu, Effect::kFail);
  EXPECT_EQ(construct_and_run(plan_, dir_),
            "out of host memory allocating 13120 bytes for weight slot on the gpu tier");
  EXPECT_TRUE(dir_.empty());
}

TEST_P(RuntimeFault, CpuTierAllocationFails) {
  fault::arm(Point::kAllocCpu, Effect::kFail);
  EXPECT_EQ(construct_and_run(plan_, dir_),
            "out of host memory allocating 13120 bytes for weight staging on the cpu tier");
  EXPECT_TRUE(dir_.empty());
}

TEST_P(RuntimeFault, DiskTierAllocationFails) {
  fault::arm(Point::kDiskAllocate, Effect::kFail, 0, ENOSPC);
  const std::string msg = construct_and_run(plan_, dir_);
  EXPECT_THAT(msg, StartsWith("disk tier: cannot allocate 4.0 KiB for region 'embed_tokens.weight' in offload file " +
                              dir_.path().string() + "/flexgen-"));
  EXPECT_THAT(msg, HasSubstr(": No space left on device"));
  EXPECT_TRUE(dir_.empty());
}

TEST_P(RuntimeFault, PreallocationOfTheDiskTierFails) {
  fault::arm(Point::kDiskPreallocate, Effect::kFail, 0, ENOSPC);
  const std::string msg = construct_and_run(plan_, dir_);
  EXPECT_THAT(msg, StartsWith("disk tier: cannot preallocate "));
  EXPECT_THAT(msg, HasSubstr(" in offload dir " + dir_.path().string() + ": No space left on device"));
  EXPECT_TRUE(dir_.empty());
}

TEST_P(RuntimeFault, OffloadFileCannotBeCreated) {
  fault::arm(Point::kDiskOpenTmpfile, Effect::kFail, 0, EACCES);
  EXPECT_EQ(construct_and_run(plan_, dir_),
            "disk tier: cannot create an offload file in " + dir_.path().string() + ": Permission denied");
  EXPECT_TRUE(dir_.empty());
}

INSTANTIATE_TEST_SUITE_P(Overlap, RuntimeFault, ::testing::Bool(),
                         [](const auto& param_info) { return param_info.param ? "Overlap" : "Serial"; });

// ---- the arming grammar ------------------------------------------------------------------------

TEST(FaultSpec, BadSpecsAreRefusedWithTheirReason) {
  FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION();
  FaultGuard guard;
  EXPECT_THAT(error_of([] { fault::arm_from_spec("disk_wirte:fail"); }),
              HasSubstr("FLEXGEN_FAULT: unknown point 'disk_wirte' (known: disk_write, disk_read,"));
  EXPECT_THAT(error_of([] { fault::arm_from_spec("disk_write:explode"); }),
              HasSubstr("unknown effect 'explode' in 'disk_write:explode' (fail, short or stall)"));
  EXPECT_THAT(error_of([] { fault::arm_from_spec("disk_write"); }),
              HasSubstr("'disk_write' is not POINT:EFFECT[:AFTER[:ERRNO]]"));
  EXPECT_THAT(error_of([] { fault::arm_from_spec("disk_write:fail:-1"); }),
              HasSubstr("'-1' in 'disk_write:fail:-1' is not a call number"));
  EXPECT_THAT(error_of([] { fault::arm_from_spec("disk_write:fail:0:ENOPE"); }),
              HasSubstr("unknown errno 'ENOPE'"));
  EXPECT_THAT(error_of([] { fault::arm_from_spec("alloc_cpu:short"); }),
              HasSubstr("point alloc_cpu cannot short (it supports fail)"));
  EXPECT_THAT(error_of([] { fault::arm_from_spec("disk_read:stall"); }),
              HasSubstr("point disk_read cannot stall (it supports fail, short)"));
}

TEST(FaultSpec, ArmedPointsStrikeTheRightCallWithTheRightErrno) {
  FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION();
  FaultGuard guard;
  fault::arm_from_spec("disk_write:fail:2:ENOSPC,alloc_gpu:fail,disk_read:short:1");
  EXPECT_EQ(fault::strike(Point::kDiskWrite), Effect::kNone);
  EXPECT_EQ(fault::strike(Point::kDiskWrite), Effect::kNone);
  errno = 0;
  EXPECT_EQ(fault::strike(Point::kDiskWrite), Effect::kFail);
  EXPECT_EQ(errno, ENOSPC);
  EXPECT_EQ(fault::strike(Point::kDiskWrite), Effect::kNone) << "a failure strikes once";
  EXPECT_EQ(fault::calls(Point::kDiskWrite), 4);
  EXPECT_EQ(fault::strike(Point::kAllocGpu), Effect::kFail);
  EXPECT_EQ(fault::strike(Point::kAllocCpu), Effect::kNone);
  EXPECT_EQ(fault::strike(Point::kDiskRead), Effect::kNone);
  EXPECT_EQ(fault::strike(Point::kDiskRead), Effect::kShort);
  fault::arm_from_spec("disk_write:stall:1:5");  // errno as a number
  EXPECT_EQ(fault::strike(Point::kDiskWrite), Effect::kNone);
  for (int i = 0; i < 3; ++i) {
    errno = 0;
    EXPECT_EQ(fault::strike(Point::kDiskWrite), Effect::kStall) << "a stall strikes every later call";
    EXPECT_EQ(errno, 5);
  }
  fault::disarm_all();
  EXPECT_EQ(fault::strike(Point::kDiskWrite), Effect::kNone);
  EXPECT_EQ(fault::strike(Point::kAllocGpu), Effect::kNone);
}

TEST(FaultSpec, BuildsWithoutFaultInjectionRefuseToArm) {
  if (fault::kCompiledIn) GTEST_SKIP() << "this build has fault injection";
  EXPECT_THAT(error_of([] { fault::arm(Point::kDiskWrite, Effect::kFail); }),
              HasSubstr("fault injection is not compiled into this build"));
  EXPECT_EQ(fault::strike(Point::kDiskWrite), Effect::kNone);
}

// ---- the command ---------------------------------------------------------------------------------

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

// `flexgen generate` on the tiny fixture with everything on disk in `dir`, FLEXGEN_FAULT=spec,
// stopped after 120 s (exit status 124) if it hangs.
testing::CommandResult generate_with_fault(const std::string& spec, const TempDir& dir, bool overlap = true) {
  return testing::run_flexgen_env(
      "FLEXGEN_FAULT=" + testing::shell_quote(spec),
      "generate --model " + testing::shell_quote(testing::tiny_opt_dir().string()) +
          " --prompt Hello --gen-len 8 --percent 0 0 0 0 0 0 --gpu-batch-size 2 --num-gpu-batches 2 --overlap " +
          (overlap ? "true" : "false") + " --backend host --offload-dir " + testing::shell_quote(dir.path().string()),
      120);
}

// One stderr line "flexgen generate: error: <what>", exit status 1, nothing on stdout, and an
// empty offload directory.
void expect_one_clean_error(const testing::CommandResult& r, const TempDir& dir, const std::string& what) {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_THAT(r.err, StartsWith("flexgen generate: error: ")) << r.err;
  EXPECT_THAT(r.err, HasSubstr(what)) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(dir.empty());
}

class CommandFault : public ::testing::Test {
 protected:
  void SetUp() override { FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION(); }
  TempDir dir_;
};

TEST_F(CommandFault, WithoutAFaultTheRunSucceeds) {
  const auto r = generate_with_fault("", dir_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("Hello"));
  EXPECT_TRUE(dir_.empty());
}

TEST_F(CommandFault, DiskWriteFails) {
  expect_one_clean_error(generate_with_fault("disk_write:fail:0:ENOSPC", dir_), dir_,
                         "disk tier: write of ");
  expect_one_clean_error(generate_with_fault("disk_write:fail:40:ENOSPC", dir_, /*overlap=*/false), dir_,
                         "failed: No space left on device");
}

TEST_F(CommandFault, DiskWriteComesBackShort) {
  // Retried: the same text as without the fault.
  const auto clean = generate_with_fault("", dir_);
  const auto r = generate_with_fault("disk_write:short:30", dir_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, clean.out);
  EXPECT_TRUE(dir_.empty());
}

TEST_F(CommandFault, DiskWriteStalls) {
  expect_one_clean_error(generate_with_fault("disk_write:stall:30", dir_), dir_,
                         "failed: No space left on device (the write made no progress)");
}

TEST_F(CommandFault, DiskReadFails) {
  expect_one_clean_error(generate_with_fault("disk_read:fail:3:EIO", dir_), dir_, "failed: Input/output error");
  expect_one_clean_error(generate_with_fault("disk_read:fail:3:EIO", dir_, /*overlap=*/false), dir_,
                         "failed: Input/output error");
}

TEST_F(CommandFault, GpuTierAllocationFails) {
  expect_one_clean_error(generate_with_fault("alloc_gpu:fail", dir_), dir_,
                         "out of host memory allocating ");
  expect_one_clean_error(generate_with_fault("alloc_gpu:fail:3", dir_), dir_, " on the gpu tier");
}

TEST_F(CommandFault, CpuTierAllocationFails) {
  expect_one_clean_error(generate_with_fault("alloc_cpu:fail:1", dir_), dir_,
                         "out of host memory allocating ");
  expect_one_clean_error(generate_with_fault("alloc_cpu:fail:1", dir_), dir_, " on the cpu tier");
}

TEST_F(CommandFault, DiskTierAllocationFails) {
  expect_one_clean_error(generate_with_fault("disk_allocate:fail:5:ENOSPC", dir_), dir_,
                         "disk tier: cannot allocate ");
}

TEST_F(CommandFault, DiskPreallocationFails) {
  expect_one_clean_error(generate_with_fault("disk_preallocate:fail:0:ENOSPC", dir_), dir_,
                         "disk tier: cannot preallocate ");
}

TEST_F(CommandFault, ABadFaultSpecIsAUsageError) {
  expect_one_clean_error(generate_with_fault("disk_wirte:fail", dir_), dir_,
                         "FLEXGEN_FAULT: unknown point 'disk_wirte'");
}

TEST(CommandFaultOff, FaultSpecInABuildWithoutFaultInjectionIsRefused) {
  if (fault::kCompiledIn) GTEST_SKIP() << "this build has fault injection";
  TempDir dir;
  expect_one_clean_error(generate_with_fault("disk_write:fail", dir), dir,
                         "FLEXGEN_FAULT is set, but this build has no fault injection");
}

}  // namespace
}  // namespace flexgen
