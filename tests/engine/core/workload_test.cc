#include "engine/core/workload.h"

#include <functional>
#include <limits>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::error_of;

TEST(Workload, DefaultsAreValid) {
  const Workload workload;
  EXPECT_EQ(workload.prompt_len, 512);
  EXPECT_EQ(workload.gen_len, 32);
  EXPECT_NO_THROW(workload.validate());
  Workload edge;
  edge.prompt_len = 1;
  edge.gen_len = 1;
  edge.num_sequences = 1;
  edge.stop_token = 0;
  edge.sampling.do_sample = true;
  edge.sampling.temperature = 1e-3f;
  edge.sampling.top_k = 0;
  edge.sampling.top_p = 1.0f;
  EXPECT_NO_THROW(edge.validate());
}

TEST(Workload, InvalidValuesNameTheProblem) {
  struct Case {
    const char* what;
    std::function<void(Workload&)> edit;
    const char* expected;
  };
  const Case cases[] = {
      {"prompt", [](Workload& w) { w.prompt_len = 0; },
       "invalid workload: --prompt-len must be at least 1 (got 0)"},
      {"gen", [](Workload& w) { w.gen_len = -2; },
       "invalid workload: --gen-len must be at least 1 (got -2)"},
      {"sequences", [](Workload& w) { w.num_sequences = 0; },
       "invalid workload: --num-sequences must be at least 1 (got 0)"},
      {"stop token", [](Workload& w) { w.stop_token = -1; },
       "invalid workload: --stop-token must not be negative (got -1)"},
      {"temperature zero", [](Workload& w) { w.sampling.temperature = 0.0f; },
       "invalid sampling: --temperature must be positive (got 0)"},
      {"temperature negative", [](Workload& w) { w.sampling.temperature = -1.0f; },
       "invalid sampling: --temperature must be positive (got -1)"},
      {"temperature nan",
       [](Workload& w) { w.sampling.temperature = std::numeric_limits<float>::quiet_NaN(); },
       "invalid sampling: --temperature must be positive"},
      {"top k", [](Workload& w) { w.sampling.top_k = -1; },
       "invalid sampling: --top-k must be 0 (off) or positive (got -1)"},
      {"top p zero", [](Workload& w) { w.sampling.top_p = 0.0f; },
       "invalid sampling: --top-p must be in (0, 1] (got 0)"},
      {"top p above 1", [](Workload& w) { w.sampling.top_p = 1.5f; },
       "invalid sampling: --top-p must be in (0, 1] (got 1.5)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Workload workload;
    c.edit(workload);
    EXPECT_THAT(error_of([&] { workload.validate(); }), HasSubstr(c.expected));
  }
  SamplingConfig sampling;
  sampling.top_p = -0.5f;
  EXPECT_THAT(error_of([&] { sampling.validate(); }), HasSubstr("--top-p"));
}

TEST(Workload, JsonMatchesHandWrittenRow) {
  Workload workload;
  workload.prompt_len = 512;
  workload.gen_len = 32;
  workload.num_sequences = 144;
  workload.sampling.do_sample = true;
  workload.sampling.temperature = 0.75f;
  workload.sampling.top_k = 40;
  workload.sampling.top_p = 0.5f;
  workload.sampling.seed = 18446744073709551615u;
  const nlohmann::json expected = nlohmann::json::parse(R"({
    "prompt_len": 512, "gen_len": 32, "num_sequences": 144, "stop_token": null,
    "sampling": {"do_sample": true, "temperature": 0.75, "top_k": 40, "top_p": 0.5,
                 "seed": 18446744073709551615}
  })");
  EXPECT_EQ(workload.to_json(), expected);
  EXPECT_EQ(Workload::from_json(expected), workload);
  workload.stop_token = 2;
  EXPECT_EQ(workload.to_json().at("stop_token"), 2);
  EXPECT_EQ(Workload::from_json(nlohmann::json::parse(workload.to_json().dump())), workload);
}

TEST(Workload, FromJsonErrors) {
  const auto base = [] {
    return nlohmann::json::parse(R"({
      "prompt_len": 8, "gen_len": 4, "num_sequences": 2, "stop_token": null,
      "sampling": {"do_sample": false, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": 0}
    })");
  };
  struct Case {
    const char* what;
    std::function<void(nlohmann::json&)> edit;
    const char* expected;
  };
  const Case cases[] = {
      {"unknown", [](nlohmann::json& j) { j["promt_len"] = 8; },
       "wl: unknown key 'promt_len'; did you mean 'prompt_len'?"},
      {"missing", [](nlohmann::json& j) { j.erase("gen_len"); }, "wl: missing key 'gen_len'"},
      {"type", [](nlohmann::json& j) { j["prompt_len"] = 8.5; },
       "wl: field 'prompt_len': expected an integer (got 8.5)"},
      {"invalid", [](nlohmann::json& j) { j["prompt_len"] = 0; },
       "wl: invalid workload: --prompt-len must be at least 1 (got 0)"},
      {"sampling invalid", [](nlohmann::json& j) { j["sampling"]["top_p"] = 0; },
       "wl: invalid sampling: --top-p must be in (0, 1] (got 0)"},
      {"sampling key", [](nlohmann::json& j) { j["sampling"]["topk"] = 3; },
       "wl: sampling: unknown key 'topk'; did you mean 'top_k'?"},
      {"sampling missing", [](nlohmann::json& j) { j["sampling"].erase("seed"); },
       "wl: sampling: missing key 'seed'"},
      {"sampling type", [](nlohmann::json& j) { j["sampling"]["temperature"] = "hot"; },
       "wl: sampling: field 'temperature': expected a number (got \"hot\")"},
      {"sampling bool", [](nlohmann::json& j) { j["sampling"]["do_sample"] = 0; },
       "wl: sampling: field 'do_sample': expected true or false (got 0)"},
      {"seed negative", [](nlohmann::json& j) { j["sampling"]["seed"] = -1; },
       "wl: sampling: field 'seed': expected a non-negative integer (got -1)"},
      {"temperature range", [](nlohmann::json& j) { j["sampling"]["temperature"] = 1e300; },
       "wl: sampling: field 'temperature': out of range"},
      {"top_k range", [](nlohmann::json& j) { j["sampling"]["top_k"] = 1e10; },
       "wl: sampling: field 'top_k': expected an integer"},
      {"top_k big", [](nlohmann::json& j) { j["sampling"]["top_k"] = 10000000000; },
       "wl: sampling: field 'top_k': out of range (got 10000000000)"},
      {"sampling object", [](nlohmann::json& j) { j["sampling"] = 3; },
       "wl: field 'sampling': expected an object (got 3)"},
      {"not object", [](nlohmann::json& j) { j = "x"; }, "wl: expected a JSON object"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    nlohmann::json json = base();
    c.edit(json);
    EXPECT_THAT(error_of([&] { Workload::from_json(json, "wl"); }), HasSubstr(c.expected));
  }
}

}  // namespace
}  // namespace flexgen
