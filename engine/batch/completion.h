#pragma once
// One output line of `flexgen batch` (docs/batch.md, "Output"): a prompt's generated tokens cut
// where it finishes, and the line's JSON.
//
// Walking the generated tokens in order, a completion ends at the first of:
//  - the end token (finish "end_token"; the token is kept in `tokens`, its text is empty as in
//    `flexgen generate`),
//  - a token after which the decoded text contains one of the prompt's stop strings (finish
//    "stop"; `tokens` ends with that token, `text` ends just before the stop string),
//  - max_new_tokens tokens (finish "length").
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/batch/prompt_file.h"
#include "engine/text/bpe_tokenizer.h"

namespace flexgen {

enum class FinishReason : std::uint8_t { kLength, kStop, kEndToken };
const char* finish_reason_name(FinishReason reason);  // "length", "stop", "end_token"

struct Completion {
  std::vector<std::int32_t> tokens;
  std::optional<std::string> text;  // none without a tokenizer
  FinishReason finish = FinishReason::kLength;
};

// `generated`: the runtime's tokens for the prompt (at least min(max_new_tokens, its length)
// tokens unless it ends with the end token). `tokenizer` may be null (no text, no stop strings).
Completion finish_completion(const std::vector<std::int32_t>& generated, const BatchPrompt& prompt,
                             std::optional<std::int32_t> end_token, const Tokenizer* tokenizer);

// The output line, '\n' included: {"id", "text" (null without a tokenizer), "tokens",
// "finish_reason", "prompt_tokens", "completion_tokens"}, compact, on one line. Text that is not
// valid UTF-8 (a character cut by the end of the completion) has the bad bytes replaced by U+FFFD.
std::string completion_line(const BatchPrompt& prompt, const Completion& completion);

}  // namespace flexgen
