#include "engine/batch/prompt_file.h"

#include <fstream>
#include <unordered_map>

#include "engine/core/error.h"
#include "engine/core/json_fields.h"

namespace flexgen {
namespace {

bool blank(const std::string& line) {
  for (char c : line) {
    if (c != ' ' && c != '\t' && c != '\r') return false;
  }
  return true;
}

double number_in(const nlohmann::json& v, const char* key, const std::string& origin) {
  FLEXGEN_REQUIRE(v.is_number(), origin, ": ", key, " must be a number (got ", json_preview(v), ")");
  return v.get<double>();
}

std::int64_t integer_in(const nlohmann::json& v, const char* key, const std::string& origin) {
  const auto i = json_as_int64(v);
  FLEXGEN_REQUIRE(i.has_value() || !v.is_number_unsigned(), origin, ": ", key, " is too large (got ", json_preview(v),
                  ")");
  FLEXGEN_REQUIRE(i.has_value(), origin, ": ", key, " must be an integer (got ", json_preview(v), ")");
  return *i;
}

// The bounds of temperature and top_p: their float values are normal numbers.
constexpr double kSmallestSetting = 1e-30, kLargestTemperature = 1e30;

SamplingConfig sampling_of(const nlohmann::json& o, const PromptDefaults& defaults, const std::string& origin) {
  SamplingConfig s = defaults.sampling;
  if (o.contains("do_sample")) {
    FLEXGEN_REQUIRE(o["do_sample"].is_boolean(), origin, ": do_sample must be true or false (got ",
                    json_preview(o["do_sample"]), ")");
    s.do_sample = o["do_sample"].get<bool>();
  }
  if (o.contains("temperature")) {
    const double t = number_in(o["temperature"], "temperature", origin);
    FLEXGEN_REQUIRE(t >= kSmallestSetting && t <= kLargestTemperature, origin,
                    ": temperature must be positive, from 1e-30 to 1e30 (got ", json_preview(o["temperature"]), ")");
    s.temperature = static_cast<float>(t);
  }
  if (o.contains("top_k")) {
    const std::int64_t k = integer_in(o["top_k"], "top_k", origin);
    FLEXGEN_REQUIRE(k >= 0 && k <= 1'000'000'000, origin, ": top_k must be 0 (off) or from 1 to 1000000000 (got ", k,
                    ")");
    s.top_k = static_cast<int>(k);
  }
  if (o.contains("top_p")) {
    const double p = number_in(o["top_p"], "top_p", origin);
    FLEXGEN_REQUIRE(p >= kSmallestSetting && p <= 1, origin, ": top_p must be in (0, 1], at least 1e-30 (got ",
                    json_preview(o["top_p"]), ")");
    s.top_p = static_cast<float>(p);
  }
  if (o.contains("seed")) {  // any 64-bit unsigned integer, as --seed
    const nlohmann::json& seed = o["seed"];
    FLEXGEN_REQUIRE(!seed.is_number_integer() || seed.is_number_unsigned(), origin,
                    ": seed must not be negative (got ", json_preview(seed), ")");
    FLEXGEN_REQUIRE(seed.is_number_unsigned(), origin, ": seed must be an integer (got ", json_preview(seed), ")");
    s.seed = seed.get<std::uint64_t>();
  }
  if (!s.do_sample) return SamplingConfig{};
  try {
    s.validate();
  } catch (const Error& e) {
    fail(origin, ": ", e.what());
  }
  return s;
}

// One line into a prompt (all but the duplicate-id check); throws flexgen::Error "<origin>: ...".
// `first_line` maps the ids seen so far (on good or bad lines) to their first line.
BatchPrompt parse_line(const std::string& text, std::int64_t line, const std::string& origin, const ModelSpec& spec,
                       const Tokenizer* tokenizer, const PromptDefaults& defaults,
                       std::unordered_map<std::string, std::int64_t>& first_line) {
  const nlohmann::json o = parse_json_text(text, origin);
  FLEXGEN_REQUIRE(o.is_object(), origin, ": expected a JSON object (got ", json_preview(o), ")");
  reject_unknown_keys(o, {"id", "prompt", "max_new_tokens", "stop", "do_sample", "temperature", "top_k", "top_p",
                          "seed"},
                      origin);
  BatchPrompt p;
  FLEXGEN_REQUIRE(o.contains("id"), origin, ": missing id");
  p.id = o["id"];
  FLEXGEN_REQUIRE(p.id.is_string() || json_as_int64(p.id).has_value() || !p.id.is_number_unsigned(), origin, ": id ",
                  json_preview(p.id), " is too large for an integer id (at most 9223372036854775807); give it as a string");
  FLEXGEN_REQUIRE(p.id.is_string() || json_as_int64(p.id).has_value(), origin,
                  ": id must be a string or an integer (got ", json_preview(p.id), ")");
  p.key = prompt_id_key(p.id);
  p.line = line;
  const auto [it, inserted] = first_line.emplace(p.key, line);
  FLEXGEN_REQUIRE(inserted, origin, ": duplicate id ", json_preview(p.id), " (first on line ", it->second, ")");

  FLEXGEN_REQUIRE(o.contains("prompt"), origin, ": missing prompt");
  const nlohmann::json& prompt = o["prompt"];
  if (prompt.is_string()) {
    FLEXGEN_REQUIRE(tokenizer != nullptr, origin,
                    ": a text prompt needs a tokenizer (vocab.json and merges.txt, or tokenizer.model, in the model directory); give "
                    "token ids instead");
    if (tokenizer->add_bos()) p.tokens.push_back(static_cast<std::int32_t>(spec.bos_token_id));
    try {
      for (std::int32_t id : tokenizer->encode(prompt.get<std::string>())) p.tokens.push_back(id);
    } catch (const Error& e) {
      fail(origin, ": prompt: ", e.what());
    }
  } else if (prompt.is_array()) {
    FLEXGEN_REQUIRE(!prompt.empty(), origin, ": prompt is an empty array of token ids");
    for (std::size_t i = 0; i < prompt.size(); ++i) {
      const auto id = json_as_int64(prompt[i]);
      FLEXGEN_REQUIRE(id.has_value() && *id >= 0 && *id < spec.vocab_size, origin, ": prompt token ", i, " (",
                      json_preview(prompt[i]), ") is not a token id in [0, ", spec.vocab_size, ")");
      p.tokens.push_back(static_cast<std::int32_t>(*id));
    }
  } else {
    fail(origin, ": prompt must be a string or an array of token ids (got ", json_preview(prompt), ")");
  }

  p.max_new_tokens = defaults.max_new_tokens;
  if (o.contains("max_new_tokens")) {
    p.max_new_tokens = integer_in(o["max_new_tokens"], "max_new_tokens", origin);
    FLEXGEN_REQUIRE(p.max_new_tokens >= 1, origin, ": max_new_tokens must be at least 1 (got ", p.max_new_tokens,
                    ")");
  }
  if (o.contains("stop")) {
    const nlohmann::json& stop = o["stop"];
    const nlohmann::json list = stop.is_string() ? nlohmann::json::array({stop}) : stop;
    FLEXGEN_REQUIRE(list.is_array(), origin, ": stop must be a string or an array of strings (got ",
                    json_preview(stop), ")");
    for (const nlohmann::json& s : list) {
      FLEXGEN_REQUIRE(s.is_string() && !s.get_ref<const std::string&>().empty(), origin,
                      ": stop strings must be non-empty strings (got ", json_preview(s), ")");
      p.stop.push_back(s.get<std::string>());
    }
    FLEXGEN_REQUIRE(p.stop.empty() || tokenizer != nullptr, origin,
                    ": stop strings need a tokenizer (vocab.json and merges.txt, or tokenizer.model, in the model directory)");
  }
  p.sampling = sampling_of(o, defaults, origin);

  const auto n = static_cast<std::int64_t>(p.tokens.size());
  FLEXGEN_REQUIRE(n < spec.max_positions, origin, ": prompt of ", n, " tokens is longer than the model's context (",
                  spec.max_positions, " positions, the generated tokens included)");
  // n < max_positions here: the difference cannot overflow (n + max_new_tokens could).
  FLEXGEN_REQUIRE(p.max_new_tokens <= spec.max_positions - n, origin, ": prompt of ", n,
                  " tokens + max_new_tokens ", p.max_new_tokens, " exceed the model's context of ",
                  spec.max_positions, " positions");
  return p;
}

}  // namespace

std::string prompt_id_key(const nlohmann::json& id) {
  if (id.is_string()) return id.get<std::string>();
  const auto i = json_as_int64(id);
  FLEXGEN_REQUIRE(i.has_value(), "id must be a string or an integer (got ", json_preview(id), ")");
  return std::to_string(*i);
}

PromptFile parse_prompt_lines(std::istream& in, const std::string& origin, const ModelSpec& spec,
                              const Tokenizer* tokenizer, const PromptDefaults& defaults) {
  PromptFile file;
  std::unordered_map<std::string, std::int64_t> first_line;  // id key -> the first line with it
  std::string text;
  std::int64_t line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (blank(text)) continue;
    ++file.lines;
    const std::string where = origin + ":" + std::to_string(line);
    try {
      file.prompts.push_back(parse_line(text, line, where, spec, tokenizer, defaults, first_line));
    } catch (const Error& e) {
      file.bad.push_back({line, e.what()});
    }
  }
  return file;
}

PromptFile read_prompt_file(const std::filesystem::path& path, const ModelSpec& spec, const Tokenizer* tokenizer,
                            const PromptDefaults& defaults) {
  std::error_code ec;
  FLEXGEN_REQUIRE(!std::filesystem::is_directory(path, ec), path.string(), ": is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  FLEXGEN_REQUIRE(in.good(), path.string(), ": cannot read file");
  return parse_prompt_lines(in, path.string(), spec, tokenizer, defaults);
}

const std::vector<BatchPrompt>& prompts_to_run(const PromptFile& file, const std::string& origin, bool skip_bad) {
  FLEXGEN_REQUIRE(skip_bad || file.bad.empty(), file.bad.size(), " bad line(s) in ", origin,
                  " (listed above); fix them, or pass --skip-bad to run the other lines");
  FLEXGEN_REQUIRE(!file.prompts.empty(), origin, ": no prompts to run (", file.lines, " non-blank lines, ",
                  file.bad.size(), " bad)");
  return file.prompts;
}

}  // namespace flexgen
