#pragma once
// The input of `flexgen batch`: a JSONL file, one prompt per line (docs/batch.md).
//
//   {"id": "q1", "prompt": "Hello", "max_new_tokens": 16, "stop": ["\n"], "temperature": 0.7, ...}
//   {"id": 7, "prompt": [2, 31414, 232]}
//
// Keys: id (string or integer, unique in the file; required), prompt (text, tokenized as
// `flexgen generate` does: the model's start token, then the text's tokens; or a non-empty array
// of token ids, used as given; required), max_new_tokens (integer >= 1), stop (a string or an
// array of non-empty strings; needs a tokenizer), do_sample (bool), temperature, top_k, top_p,
// seed (as the command's flags). Absent optional keys take the command's values. Unknown keys are
// errors. Blank lines are skipped.
//
// Every line that cannot run is reported with its line number: not JSON, not an object, missing
// or malformed id or prompt, a duplicate id (the later line is the bad one), bad values, and a
// prompt that does not fit the model's context (prompt tokens + max_new_tokens > max positions).
#include <cstdint>
#include <filesystem>
#include <istream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/model_spec.h"
#include "engine/core/workload.h"
#include "engine/text/bpe_tokenizer.h"

namespace flexgen {

// What a line leaves out: the command's --gen-len and sampling flags.
struct PromptDefaults {
  std::int64_t max_new_tokens = 32;
  SamplingConfig sampling;
};

struct BatchPrompt {
  nlohmann::json id;                 // as given (a string or an integer); echoed in the output
  std::string key;                   // prompt_id_key(id): what ids are compared by
  std::int64_t line = 0;             // 1-based line number in the input file
  std::vector<std::int32_t> tokens;  // the prompt as token ids
  std::int64_t max_new_tokens = 0;
  std::vector<std::string> stop;     // stop strings
  // The prompt's settings; greedy prompts all carry SamplingConfig{} (their other settings do
  // not change the tokens), so that they group together.
  SamplingConfig sampling;
};

struct BadLine {
  std::int64_t line = 0;
  std::string message;  // "<file>:<line>: what is wrong"
};

struct PromptFile {
  std::vector<BatchPrompt> prompts;  // the good lines, in file order
  std::vector<BadLine> bad;          // in file order
  std::int64_t lines = 0;            // non-blank lines read
};

// The text an id is compared by: a string id itself, an integer id its decimal digits (so 7 and
// "7" are the same id). Throws flexgen::Error for any other JSON value.
std::string prompt_id_key(const nlohmann::json& id);

// Parses prompt lines. `origin` names the input in messages (the path). `tokenizer` may be null
// (dummy weights): text prompts and stop strings are then bad lines.
PromptFile parse_prompt_lines(std::istream& in, const std::string& origin, const ModelSpec& spec,
                              const Tokenizer* tokenizer, const PromptDefaults& defaults);

// Reads the file; throws flexgen::Error "<path>: cannot read file" when it cannot be opened.
PromptFile read_prompt_file(const std::filesystem::path& path, const ModelSpec& spec,
                            const Tokenizer* tokenizer, const PromptDefaults& defaults);

// The prompts `flexgen batch` runs of a file read from `origin`: its good lines. Throws
// flexgen::Error when the file has bad lines and `skip_bad` is false ("N bad line(s) in <origin>
// (listed above); fix them, or pass --skip-bad ..."; the command lists them first), and when no
// prompt is left ("<origin>: no prompts to run (N non-blank lines, M bad)").
const std::vector<BatchPrompt>& prompts_to_run(const PromptFile& file, const std::string& origin, bool skip_bad);

}  // namespace flexgen
