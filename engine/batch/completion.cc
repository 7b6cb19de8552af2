#include "engine/batch/completion.h"

#include <algorithm>

namespace flexgen {

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength: return "length";
    case FinishReason::kStop: return "stop";
    case FinishReason::kEndToken: return "end_token";
  }
  return "?";
}

Completion finish_completion(const std::vector<std::int32_t>& generated, const BatchPrompt& prompt,
                             std::optional<std::int32_t> end_token, const Tokenizer* tokenizer) {
  Completion c;
  std::string text;
  std::size_t longest_stop = 0;
  for (const std::string& s : prompt.stop) longest_stop = std::max(longest_stop, s.size());
  const auto limit = std::min(generated.size(), static_cast<std::size_t>(prompt.max_new_tokens));
  for (std::size_t i = 0; i < limit; ++i) {
    const std::int32_t token = generated[i];
    c.tokens.push_back(token);
    if (end_token && token == *end_token) {
      c.finish = FinishReason::kEndToken;
      break;
    }
    if (!tokenizer) continue;
    // Decoding is byte-level: the text of a prefix is the concatenation of its tokens' bytes.
    const std::size_t before = text.size();
    // Ids past the tokenizer's vocabulary (models pad their embedding table) have no text.
    if (token >= 0 && token < tokenizer->vocab_size()) text += tokenizer->decode({token});
    // A stop string that ends in this token's bytes; the earliest such match wins.
    std::size_t cut = std::string::npos;
    const std::size_t from = before + 1 > longest_stop ? before + 1 - longest_stop : 0;
    for (const std::string& s : prompt.stop) {
      const std::size_t at = text.find(s, from);
      if (at != std::string::npos) cut = std::min(cut, at);
    }
    if (cut != std::string::npos) {
      text.resize(cut);
      c.finish = FinishReason::kStop;
      break;
    }
  }
  if (tokenizer) c.text = text;
  return c;
}

std::string completion_line(const BatchPrompt& prompt, const Completion& completion) {
  const nlohmann::json line = {
      {"id", prompt.id},
      {"text", completion.text ? nlohmann::json(*completion.text) : nlohmann::json(nullptr)},
      {"tokens", completion.tokens},
      {"finish_reason", finish_reason_name(completion.finish)},
      {"prompt_tokens", prompt.tokens.size()},
      {"completion_tokens", completion.tokens.size()},
  };
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace flexgen
