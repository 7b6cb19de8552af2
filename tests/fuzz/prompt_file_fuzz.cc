// The prompt file of `flexgen batch` (engine/batch/prompt_file.h, docs/batch.md "Input"), read as
// the command reads it: from a file with the tiny fixture (its tokenizer: text prompts are
// tokenized) and, for dummy weights, with opt-125m and no tokenizer (text prompts and stop strings
// are bad lines) under sampled defaults (--do-sample --temperature 0.7). Then what the command
// does next with it: refusing bad lines with and without --skip-bad, and grouping the good
// prompts into blocks.
//
// Properties, from the reader's documentation:
//  - every non-blank line is either a prompt or a bad line, both in file order; a bad line's
//    message is one line, "<file>:<line>: what is wrong";
//  - an accepted prompt's id is a string or an integer, echoed as given, and unique by its key;
//    its tokens are ids of the vocabulary (the start token and the text's tokens for a text
//    prompt, the array as given otherwise); 1 <= max_new_tokens, prompt + max_new_tokens fit the
//    context; stop strings are non-empty and need a tokenizer; a greedy prompt carries
//    SamplingConfig{}, a sampled one valid settings;
//  - lines are independent but for ids: a line read alone gives the same prompt or the same error,
//    except that a later line with an id already seen is a duplicate;
//  - an accepted prompt written back as a line (its token ids and every setting spelled out) reads
//    back as the same prompt, and its output line carries an id that a resumed run reads back as
//    the same key;
//  - the blocks hold every prompt once, each block within its size and the model's context.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/batch/blocks.h"
#include "engine/batch/completion.h"
#include "engine/batch/prompt_file.h"
#include "engine/core/error.h"
#include "engine/core/json_fields.h"
#include "engine/core/model_spec.h"
#include "engine/text/bpe_tokenizer.h"
#include "fuzz/fuzz_target.h"

namespace flexgen::fuzz {
namespace {

struct Setup {
  ModelSpec spec;
  const BpeTokenizer* tokenizer;
  PromptDefaults defaults;
};

const BpeTokenizer& tiny_tokenizer() {
  static const BpeTokenizer t = BpeTokenizer::from_dir(tiny_opt_dir());
  return t;
}

const Setup& tiny_setup() {  // a real model: `flexgen batch --model tests/fixtures/tiny-opt`
  static const Setup s{ModelSpec::from_config_json(tiny_opt_dir() / "config.json"), &tiny_tokenizer(), {}};
  return s;
}

const Setup& dummy_setup() {  // `flexgen batch --model opt-125m --do-sample --temperature 0.7`
  static const Setup s = [] {
    Setup d{ModelSpec::from_name("opt-125m"), nullptr, {}};
    d.defaults.sampling.do_sample = true;
    d.defaults.sampling.temperature = 0.7f;
    return d;
  }();
  return s;
}

// The lines as std::getline gives them: split at '\n', no empty piece after a final '\n'.
std::vector<std::string_view> lines_of(std::string_view input) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  while (start < input.size()) {
    const std::size_t end = std::min(input.find('\n', start), input.size());
    lines.push_back(input.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

bool blank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

// "<origin>:<line>: " and what follows it.
std::string what_of(const BadLine& bad, const std::string& origin) {
  const std::string prefix = origin + ":" + std::to_string(bad.line) + ": ";
  FLEXGEN_FUZZ_CHECK(bad.message.rfind(prefix, 0) == 0, "a bad line's message starts with <file>:<line>: ");
  FLEXGEN_FUZZ_CHECK(bad.message.size() > prefix.size(), "a bad line's message says what is wrong");
  FLEXGEN_FUZZ_CHECK(bad.message.find_first_of("\r\n") == std::string::npos, "a bad line's message is one line");
  return bad.message.substr(prefix.size());
}

PromptFile parse_text(const std::string& text, const std::string& origin, const Setup& s) {
  std::istringstream in(text);
  return parse_prompt_lines(in, origin, s.spec, s.tokenizer, s.defaults);
}

bool same_prompt(const BatchPrompt& a, const BatchPrompt& b) {
  return a.id == b.id && a.key == b.key && a.tokens == b.tokens && a.max_new_tokens == b.max_new_tokens &&
         a.stop == b.stop && a.sampling == b.sampling;
}

// The prompt as one line with its token ids and every setting spelled out.
std::string line_of(const BatchPrompt& p) {
  nlohmann::json j = {{"id", p.id}, {"prompt", p.tokens}, {"max_new_tokens", p.max_new_tokens},
                      {"do_sample", p.sampling.do_sample}};
  if (!p.stop.empty()) j["stop"] = p.stop;
  if (p.sampling.do_sample) {
    j["temperature"] = static_cast<double>(p.sampling.temperature);
    j["top_k"] = p.sampling.top_k;
    j["top_p"] = static_cast<double>(p.sampling.top_p);
    j["seed"] = p.sampling.seed;
  }
  return j.dump();  // throws (a finding) for strings that are not UTF-8
}

void check_prompt(const BatchPrompt& p, std::string_view raw, const Setup& s) {
  const ModelSpec& spec = s.spec;
  FLEXGEN_FUZZ_CHECK(p.id.is_string() || json_as_int64(p.id).has_value(), "an id is a string or an integer");
  FLEXGEN_FUZZ_CHECK(p.key == prompt_id_key(p.id), "the key is the id's key");
  FLEXGEN_FUZZ_CHECK(!p.tokens.empty(), "a prompt has tokens");
  for (std::int32_t t : p.tokens) FLEXGEN_FUZZ_CHECK(t >= 0 && t < spec.vocab_size, "tokens are in the vocabulary");
  const auto n = static_cast<std::int64_t>(p.tokens.size());
  FLEXGEN_FUZZ_CHECK(p.max_new_tokens >= 1, "max_new_tokens >= 1");
  FLEXGEN_FUZZ_CHECK(n < spec.max_positions && p.max_new_tokens <= spec.max_positions - n,
                     "prompt + max_new_tokens fit the context");
  for (const std::string& stop : p.stop) FLEXGEN_FUZZ_CHECK(!stop.empty(), "stop strings are not empty");
  FLEXGEN_FUZZ_CHECK(p.stop.empty() || s.tokenizer != nullptr, "stop strings need a tokenizer");
  if (p.sampling.do_sample) {
    p.sampling.validate();  // an Error here is a finding (as_property): the line was accepted
  } else {
    FLEXGEN_FUZZ_CHECK(p.sampling == SamplingConfig{}, "a greedy prompt carries SamplingConfig{}");
  }

  // As given: the id echoed, the prompt tokenized (text) or taken as it is (ids).
  const nlohmann::json o = nlohmann::json::parse(raw.begin(), raw.end());
  FLEXGEN_FUZZ_CHECK(o.is_object() && o.contains("id") && o["id"] == p.id, "the id is echoed as given");
  const nlohmann::json& prompt = o["prompt"];
  if (prompt.is_string()) {
    FLEXGEN_FUZZ_CHECK(s.tokenizer != nullptr, "a text prompt needs a tokenizer");
    std::vector<std::int32_t> expected = {static_cast<std::int32_t>(spec.bos_token_id)};
    for (std::int32_t t : s.tokenizer->encode(prompt.get<std::string>())) expected.push_back(t);
    FLEXGEN_FUZZ_CHECK(p.tokens == expected, "a text prompt is the start token, then the text's tokens");
  } else {
    FLEXGEN_FUZZ_CHECK(prompt.is_array() && prompt.size() == p.tokens.size(), "token ids are used as given");
    for (std::size_t i = 0; i < p.tokens.size(); ++i) {
      FLEXGEN_FUZZ_CHECK(json_as_int64(prompt[i]) == p.tokens[i], "token ids are used as given");
    }
  }
  FLEXGEN_FUZZ_CHECK(p.max_new_tokens == (o.contains("max_new_tokens") ? json_as_int64(o["max_new_tokens"])
                                                                      : s.defaults.max_new_tokens),
                     "max_new_tokens as given, else the command's");

  // Written back and read again: the same prompt.
  const PromptFile again = parse_text(line_of(p) + "\n", "again", s);
  FLEXGEN_FUZZ_CHECK(again.bad.empty() && again.prompts.size() == 1, "a prompt written back is a good line");
  FLEXGEN_FUZZ_CHECK(same_prompt(again.prompts[0], p), "a prompt written back reads back the same");

  // Its output line: one line, whose id a resumed run reads back as the same key.
  const std::string out = completion_line(p, Completion{});
  FLEXGEN_FUZZ_CHECK(!out.empty() && out.find('\n') == out.size() - 1, "an output line is one line");
  const nlohmann::json done = parse_json_text(out, "output");
  FLEXGEN_FUZZ_CHECK(done.is_object() && done.contains("id") && prompt_id_key(done["id"]) == p.key,
                     "the output line's id is the prompt's key");
}

// The blocks `flexgen batch` runs: every prompt once, each block within its size and the context.
void check_blocks(const std::vector<BatchPrompt>& prompts, std::int64_t block_size, const ModelSpec& spec) {
  const BlockPlan plan = group_into_blocks(prompts, block_size, spec.max_positions);
  std::vector<int> seen(prompts.size(), 0);
  for (const PromptBlock& b : plan.blocks) {
    FLEXGEN_FUZZ_CHECK(!b.members.empty() && static_cast<std::int64_t>(b.members.size()) <= block_size,
                       "a block holds 1 to block_size prompts");
    std::int64_t longest = 0, most_new = 0;
    for (std::size_t i : b.members) {
      FLEXGEN_FUZZ_CHECK(i < prompts.size(), "block members are prompts");
      ++seen[i];
      longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(prompts[i].tokens.size()));
      most_new = std::max(most_new, prompts[i].max_new_tokens);
      FLEXGEN_FUZZ_CHECK(prompts[i].sampling == b.sampling, "a block has one sampling class");
    }
    FLEXGEN_FUZZ_CHECK(b.prompt_len == longest && b.gen_len == most_new, "a block's shape is its longest member's");
    FLEXGEN_FUZZ_CHECK(b.prompt_len + b.gen_len <= spec.max_positions, "a block fits the context");
    FLEXGEN_FUZZ_CHECK(b.prompt_len <= plan.max_prompt_len && b.prompt_len + b.gen_len <= plan.max_total_len,
                       "the plan covers every block");
    const auto inputs = block_inputs(b, prompts, block_size);
    FLEXGEN_FUZZ_CHECK(static_cast<std::int64_t>(inputs.size()) == block_size, "a block runs block_size prompts");
    for (std::size_t k = 0; k < b.members.size(); ++k) {
      FLEXGEN_FUZZ_CHECK(inputs[k] == prompts[b.members[k]].tokens, "a block runs its members' tokens");
    }
  }
  FLEXGEN_FUZZ_CHECK(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }),
                     "every prompt is in exactly one block");
}

void check_file(const PromptFile& file, const std::string& origin, std::string_view input, const Setup& s) {
  const std::vector<std::string_view> lines = lines_of(input);
  std::vector<std::int64_t> non_blank;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (!blank(lines[i])) non_blank.push_back(static_cast<std::int64_t>(i) + 1);
  }
  FLEXGEN_FUZZ_CHECK(file.lines == static_cast<std::int64_t>(non_blank.size()), "lines counts the non-blank lines");
  FLEXGEN_FUZZ_CHECK(file.prompts.size() + file.bad.size() == non_blank.size(),
                     "every non-blank line is a prompt or a bad line");
  std::vector<std::int64_t> got;
  for (const BatchPrompt& p : file.prompts) got.push_back(p.line);
  FLEXGEN_FUZZ_CHECK(std::is_sorted(got.begin(), got.end()), "prompts are in file order");
  for (const BadLine& b : file.bad) got.push_back(b.line);
  FLEXGEN_FUZZ_CHECK(std::is_sorted(got.begin() + static_cast<std::ptrdiff_t>(file.prompts.size()), got.end()),
                     "bad lines are in file order");
  std::sort(got.begin(), got.end());
  FLEXGEN_FUZZ_CHECK(got == non_blank, "the prompts and bad lines are the non-blank lines, once each");

  std::set<std::string> keys;
  for (const BatchPrompt& p : file.prompts) FLEXGEN_FUZZ_CHECK(keys.insert(p.key).second, "ids are unique");

  // Line by line: each line read alone.
  std::size_t next_prompt = 0, next_bad = 0;
  for (const std::int64_t line : non_blank) {
    const std::string_view raw = lines[static_cast<std::size_t>(line - 1)];
    const PromptFile alone = parse_text(std::string(raw), origin, s);
    FLEXGEN_FUZZ_CHECK(alone.lines == 1 && alone.prompts.size() + alone.bad.size() == 1, "one line is one line");
    if (next_prompt < file.prompts.size() && file.prompts[next_prompt].line == line) {
      const BatchPrompt& p = file.prompts[next_prompt++];
      FLEXGEN_FUZZ_CHECK(alone.prompts.size() == 1 && same_prompt(alone.prompts[0], p),
                         "a good line is good alone, the same prompt");
      check_prompt(p, raw, s);
      continue;
    }
    FLEXGEN_FUZZ_CHECK(next_bad < file.bad.size() && file.bad[next_bad].line == line, "lines are accounted for");
    const std::string what = what_of(file.bad[next_bad++], origin);
    const bool duplicate = what.rfind("duplicate id ", 0) == 0;
    if (duplicate) {
      const auto at = what.rfind("(first on line ");
      FLEXGEN_FUZZ_CHECK(at != std::string::npos, "a duplicate names the first line");
      const std::int64_t first = std::stoll(what.substr(at + 15));
      FLEXGEN_FUZZ_CHECK(first < line && std::binary_search(non_blank.begin(), non_blank.end(), first),
                         "a duplicate's first line is an earlier line");
    } else {
      FLEXGEN_FUZZ_CHECK(alone.bad.size() == 1 && what_of(alone.bad[0], origin) == what,
                         "a bad line is bad alone, for the same reason");
    }
  }
}

// Runs a check of what the reader accepted: a flexgen::Error from it (the tokenizer, a re-read,
// the blocks) is a finding, not a refusal of the input.
template <typename F>
void as_property(const char* what, F&& check) {
  try {
    check();
  } catch (const Error& e) {
    throw PropertyViolation(std::string("property violated: ") + what + " threw flexgen::Error: " + e.what());
  }
}

void read_as_the_command_does(std::string_view input, const Setup& s, bool from_file) {
  std::string origin = "prompts.jsonl";
  std::optional<MemFile> file_on_disk;
  PromptFile file;
  if (from_file) {
    file_on_disk.emplace(input);
    origin = file_on_disk->path().string();
    file = read_prompt_file(file_on_disk->path(), s.spec, s.tokenizer, s.defaults);
  } else {
    file = parse_text(std::string(input), origin, s);
  }
  as_property("checking the lines", [&] { check_file(file, origin, input, s); });

  // --skip-bad runs the good lines, if any; without it a bad line refuses the run.
  for (const bool skip_bad : {true, false}) {
    const std::vector<BatchPrompt>* run = nullptr;
    try {
      run = &prompts_to_run(file, origin, skip_bad);
    } catch (const Error& e) {
      const std::string message = e.what();
      FLEXGEN_FUZZ_CHECK(file.prompts.empty() || (!skip_bad && !file.bad.empty()),
                         "a file is refused only when it should be");
      FLEXGEN_FUZZ_CHECK(!message.empty() && message.find_first_of("\r\n") == std::string::npos,
                         "the refusal is one line");
      continue;
    }
    FLEXGEN_FUZZ_CHECK(run == &file.prompts && !run->empty() && (skip_bad || file.bad.empty()),
                       "the command runs the good lines");
    as_property("grouping into blocks",
                [&] { check_blocks(*run, 1 + static_cast<std::int64_t>(input.size() % 5), s.spec); });
  }
}

}  // namespace
}  // namespace flexgen::fuzz

FLEXGEN_FUZZ_TARGET(prompt_file) {
  flexgen::fuzz::read_as_the_command_does(input, flexgen::fuzz::tiny_setup(), /*from_file=*/true);
  flexgen::fuzz::read_as_the_command_does(input, flexgen::fuzz::dummy_setup(), /*from_file=*/false);
}
