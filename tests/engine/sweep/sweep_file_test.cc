// Sweep files: the expansion of grids into points (worked out by hand), defaults, point ids,
// hardware overrides, and one clear error for each kind of bad input.
#include "engine/sweep/sweep_file.h"

#include <set>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "engine/core/json_fields.h"
#include "engine/core/input_lookup.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;

Sweep parse(const std::string& text) { return parse_sweep(parse_ordered_json_text(text, "s.json"), "s.json"); }
std::string parse_error(const std::string& text) { return error_of([&] { parse(text); }); }

TEST(SweepFile, ACartesianProductHasTheFirstAxisOutermost) {
  const Sweep s = parse(R"({"name": "g", "target": "simulator", "hardware": "t4-paper",
    "base": {"model": "opt-1.3b", "gen_len": 8},
    "grid": [{"gpu_batch_size": [4, 8], "schedule": ["zig-zag", "row-by-row", "zig-zag"],
              "num_gpu_batches": [2]}]})");
  // 2 x 3 x 1 = 6 combinations; the third schedule repeats the first, so 4 distinct points.
  ASSERT_EQ(s.points.size(), 4u);
  const std::int64_t gbs[] = {4, 4, 8, 8};
  const ScheduleKind sched[] = {ScheduleKind::kZigZag, ScheduleKind::kRowByRow, ScheduleKind::kZigZag,
                                ScheduleKind::kRowByRow};
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(s.points[i].typed.gpu_batch_size, gbs[i]) << i;
    EXPECT_EQ(s.points[i].typed.schedule, sched[i]) << i;
    EXPECT_EQ(s.points[i].typed.num_gpu_batches, 2) << i;
    EXPECT_EQ(s.points[i].typed.gen_len, 8);
    EXPECT_EQ(s.points[i].typed.prompt_len, 512);  // default
    EXPECT_EQ(s.points[i].typed.model, "opt-1.3b");
  }
  EXPECT_EQ(s.output, "results/sweeps/g.jsonl");
  EXPECT_EQ(s.target, SweepTarget::kSimulator);
}

TEST(SweepFile, VariantsSetSeveralParametersAndBlocksAreJoined) {
  const Sweep s = parse(R"({"name": "v", "target": "simulator", "hardware": "t4-paper", "output": "o.jsonl",
    "base": {"model": "opt-30b", "overlap": true},
    "grid": [
      {"variant": [{"label": "a", "gpu_batch_size": 48, "num_gpu_batches": 3, "percent": [20, 80, 0, 100, 0, 100],
                    "cpu_cache_compute": true},
                   {"label": "b", "policy": "search", "compress_weight": true}],
       "overlap": [true, false]},
      {"label": ["c"], "hw.h2d_bytes_per_s": [8e9, 16e9]}]})");
  ASSERT_EQ(s.points.size(), 6u);
  const PointParams& a = s.points[0].typed;
  EXPECT_EQ(a.label, "a");
  EXPECT_EQ(a.gpu_batch_size, 48);
  EXPECT_EQ(a.num_gpu_batches, 3);
  ASSERT_TRUE(a.percent.has_value());
  EXPECT_EQ((*a.percent)[1], 80);
  EXPECT_EQ(a.cpu_cache_compute, true);
  EXPECT_TRUE(a.overlap);
  EXPECT_FALSE(s.points[1].typed.overlap);  // the second axis varies fastest
  const PointParams& b = s.points[2].typed;
  EXPECT_TRUE(b.search);
  EXPECT_TRUE(b.compress_weight);
  EXPECT_FALSE(b.gpu_batch_size.has_value());  // searched
  EXPECT_FALSE(b.percent.has_value());
  EXPECT_FALSE(b.cpu_cache_compute.has_value());
  EXPECT_TRUE(s.points[2].params["percent"].is_null());
  const PointParams& c = s.points[5].typed;
  EXPECT_EQ(c.label, "c");
  ASSERT_EQ(c.hw_overrides.size(), 1u);
  EXPECT_EQ(c.hw_overrides[0].first, "h2d_bytes_per_s");
  EXPECT_EQ(c.hw_overrides[0].second.get<double>(), 16e9);
  EXPECT_EQ(c.gpu_batch_size, 1);  // fixed-policy defaults
  EXPECT_EQ(c.percent, (std::array<double, 6>{100, 0, 100, 0, 100, 0}));
}

TEST(SweepFile, ALaterAxisOverridesAnEarlierOne) {
  const Sweep s = parse(R"({"name": "o", "target": "simulator", "hardware": "t4-paper",
    "grid": [{"setup": [{"model": "opt-30b", "gpu_batch_size": 48, "cpu_cache_compute": true, "gen_len": 7}],
              "ablation": [{"label": "as is"}, {"label": "no cpu", "cpu_cache_compute": false}],
              "gen_len": [9]}]})");
  ASSERT_EQ(s.points.size(), 2u);
  EXPECT_EQ(s.points[0].typed.cpu_cache_compute, true);
  EXPECT_EQ(s.points[1].typed.cpu_cache_compute, false);
  EXPECT_EQ(s.points[1].typed.gpu_batch_size, 48);
  EXPECT_EQ(s.points[0].typed.gen_len, 9);
}

TEST(SweepFile, PointIdsIgnoreTheLabelAndChangeWithEveryParameter) {
  const Sweep s = parse(R"({"name": "i", "target": "simulator", "hardware": "t4-paper",
    "base": {"model": "opt-1.3b"},
    "grid": [{"label": ["x", "y"]}, {"gen_len": [33]}, {"attn_sparsity": [0.5]}, {"hw.disk_bytes": ["1TB"]}]})");
  // "x" and "y" are the same point; the others differ from it in one parameter each.
  ASSERT_EQ(s.points.size(), 4u);
  std::set<std::string> ids;
  for (const SweepPoint& p : s.points) {
    EXPECT_EQ(p.id.size(), 16u);
    EXPECT_EQ(p.id.find_first_not_of("0123456789abcdef"), std::string::npos);
    ids.insert(p.id);
  }
  EXPECT_EQ(ids.size(), 4u);
  // The target is part of the id.
  EXPECT_NE(sweep_point_id(SweepTarget::kEngine, s.points[0].params), s.points[0].id);
  // The id is a function of the parameters alone: the same in another file.
  const Sweep t = parse(R"({"name": "other", "target": "simulator", "hardware": "t4-paper",
    "grid": [{"model": ["opt-1.3b"], "label": ["z"]}]})");
  EXPECT_EQ(t.points[0].id, s.points[0].id);
}

TEST(SweepFile, EngineSweepsTakeBackendSeedAndTimeout) {
  const Sweep s = parse(R"({"name": "e", "target": "engine", "timeout_s": 60,
    "grid": [{"model": ["opt-125m"], "backend": ["host"], "seed": [3]}]})");
  ASSERT_EQ(s.points.size(), 1u);
  EXPECT_EQ(s.points[0].typed.backend, "host");
  EXPECT_EQ(s.points[0].typed.seed, 3u);
  EXPECT_EQ(s.points[0].typed.hardware, "");  // no prediction without a hardware file
  EXPECT_EQ(s.timeout_s, 60);
}

TEST(SweepFile, BadFilesAreOneClearLine) {
  const std::string ok_head = R"({"name": "b", "target": "simulator", "hardware": "t4-paper", )";
  struct Case {
    std::string text, message;
  };
  const Case cases[] = {
      {R"({"name": "b", "target": "simulator", "grids": []})", "unknown key 'grids'; did you mean 'grid'?"},
      {R"({"target": "simulator", "grid": [{}]})", "missing key 'name'"},
      {R"({"name": "a b", "target": "simulator", "grid": [{}]})", "'name' must be 1 to 200 letters"},
      {R"({"name": "b", "target": "gpu", "grid": [{}]})", "'target' must be \"engine\" or \"simulator\""},
      {ok_head + R"("grid": []})", "'grid' must be a non-empty list of blocks"},
      {ok_head + R"("grid": [{"model": "opt-1.3b"}]})", "axis 'model' must be a non-empty list of values"},
      {ok_head + R"("grid": [{"modle": ["opt-1.3b"]}]})", "axis 'modle' is not a parameter"},
      {ok_head + R"("grid": [{"v": [{"modle": "opt-1.3b"}]}]})", "unknown key 'modle'; did you mean 'model'?"},
      {ok_head + R"("grid": [{"gen_len": [8]}]})", "grid block 1, point 1: missing parameter 'model'"},
      {ok_head + R"("base": {"model": "opt-1.3b"}, "grid": [{"gen_len": [0]}]})",
       "'gen_len' must be a whole number from 1"},
      {ok_head + R"("base": {"model": "opt-1.3b"}, "grid": [{"gen_len": [8.5]}]})",
       "'gen_len' must be a whole number from 1"},
      {ok_head + R"("base": {"model": "opt-1.3b"}, "grid": [{"overlap": ["yes"]}]})",
       "'overlap' must be true or false"},
      {ok_head + R"("base": {"model": "opt-1.3b"}, "grid": [{"schedule": ["zigzag"]}]})",
       "'schedule' must be \"zig-zag\" or \"row-by-row\""},
      {ok_head + R"("base": {"model": "opt-1.3b"}, "grid": [{"percent": [[60, 60, 100, 0, 100, 0]]}]})",
       "invalid policy"},
      {ok_head + R"("base": {"model": "opt-1.3b"}, "grid": [{"percent": [[100, 0]]}]})", "'percent' must be six numbers"},
      {ok_head + R"("base": {"model": "opt-1.3b", "policy": "search"}, "grid": [{"percent": [[100,0,100,0,100,0]]}]})",
       "'percent' is chosen by the search"},
      {ok_head + R"("base": {"model": "opt-1.3b"}, "grid": [{"hw.h2d": [1e9]}]})",
       "'hw.h2d' is not a numeric field of a hardware spec"},
      {ok_head + R"("base": {"model": "opt-1.3b"}, "grid": [{"hw.h2d_bytes_per_s": ["fast"]}]})",
       "'hw.h2d_bytes_per_s' must be a number"},
      {ok_head + R"("base": {"model": "opt-1.3b"}, "grid": [{"hw.gpu_memory_bytes": ["12XB"]}]})",
       "invalid byte count"},
      {ok_head + R"("base": {"model": "opt-1.3b"}, "grid": [{"gpu_mem": [-5]}]})", "'gpu_mem'"},
      {ok_head + R"("base": {"model": "opt-1.3b"}, "grid": [{"backend": ["cuda"]}]})",
       "'backend' applies to engine sweeps only"},
      {ok_head + R"("base": {"model": "opt-1.3b"}, "grid": [{"allow_disk": [false]}]})",
       "'allow_disk' applies to a searched policy"},
      {R"({"name": "b", "target": "simulator", "grid": [{"model": ["opt-1.3b"]}]})",
       "a simulator sweep needs 'hardware'"},
      {R"({"name": "b", "target": "simulator", "timeout_s": 5, "hardware": "t4-paper", "grid": [{"model": ["x"]}]})",
       "'timeout_s' applies to engine sweeps only"},
      {R"({"name": "b", "target": "engine", "grid": [{"model": ["opt-1.3b"], "hw.disk_bytes": [1e12]}]})",
       "'hw.*' overrides need a 'hardware' file"},
      {R"([1, 2])", "a sweep file is a JSON object"},
  };
  for (const Case& c : cases) {
    const std::string e = parse_error(c.text);
    EXPECT_THAT(e, HasSubstr(c.message)) << c.text;
    EXPECT_EQ(e.rfind("s.json", 0), 0u) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  // Duplicate keys and malformed JSON come from the JSON reader, also as one line.
  EXPECT_THAT(error_of([] { parse_ordered_json_text(R"({"name": "a", "name": "b"})", "s.json"); }),
              HasSubstr("duplicate key 'name'"));
}

TEST(SweepFile, NamedInputsAreCheckedBeforeTheFirstPoint) {
  const Sweep unknown_model = parse(R"({"name": "m", "target": "simulator", "hardware": "t4-paper",
    "grid": [{"model": ["opt-1.3b", "opt-2b"]}]})");
  EXPECT_THAT(error_of([&] { check_sweep_inputs(unknown_model, "s.json"); }),
              HasSubstr("s.json, point 2: unknown model 'opt-2b'"));
  const Sweep unknown_hw = parse(R"({"name": "h", "target": "simulator", "hardware": "no-such-machine",
    "grid": [{"model": ["opt-1.3b"]}]})");
  EXPECT_THAT(error_of([&] { check_sweep_inputs(unknown_hw, "s.json"); }), HasSubstr("no-such-machine"));
  const Sweep ok = parse(R"({"name": "k", "target": "simulator", "hardware": "t4-paper",
    "grid": [{"model": ["opt-1.3b"], "hw.gpu_memory_bytes": ["24GiB"]}]})");
  EXPECT_NO_THROW(check_sweep_inputs(ok, "s.json"));
}

TEST(SweepFile, HardwareOverridesReplaceFieldsAndKeepTheRest) {
  const HardwareSpec t4 = load_hardware("t4-paper");
  const HardwareSpec h = with_hardware_overrides(
      t4, {{"h2d_bytes_per_s", nlohmann::json(25e9)}, {"gpu_memory_bytes", nlohmann::json("24GiB")},
           {"disk_read_bytes_per_s", nlohmann::json("1.5e9")}},
      "hw.");
  EXPECT_EQ(h.h2d_bytes_per_s, 25e9);
  EXPECT_EQ(h.gpu_memory_bytes, Bytes{24} << 30);
  EXPECT_EQ(h.disk_read_bytes_per_s, 1.5e9);
  EXPECT_EQ(h.d2h_bytes_per_s, t4.d2h_bytes_per_s);
  EXPECT_EQ(h.cpu_memory_bytes, t4.cpu_memory_bytes);
  EXPECT_EQ(h.name, "t4-paper (overridden)");
  EXPECT_EQ(with_hardware_overrides(t4, {}, "hw."), t4);
  EXPECT_THAT(error_of([&] { with_hardware_overrides(t4, {{"h2d_bytes_per_s", nlohmann::json(-1)}}, "hw."); }),
              HasSubstr("h2d_bytes_per_s"));
  EXPECT_THAT(error_of([&] { with_hardware_overrides(t4, {{"name", nlohmann::json("x")}}, "--set "); }),
              HasSubstr("--set name: not a numeric field"));
}

}  // namespace
}  // namespace flexgen
