#include "engine/text/tokenizer.h"

#include "engine/core/error.h"
#include "engine/core/json_fields.h"
#include "engine/text/bpe_tokenizer.h"
#include "engine/text/sentencepiece_tokenizer.h"

namespace flexgen {

ModelTokenizer load_model_tokenizer(const std::filesystem::path& model_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  ModelTokenizer out;
  if (fs::exists(model_dir / "vocab.json", ec) && fs::exists(model_dir / "merges.txt", ec)) {
    out.tokenizer = std::make_shared<BpeTokenizer>(BpeTokenizer::from_dir(model_dir));
    return out;
  }
  if (fs::exists(model_dir / "tokenizer.model", ec)) {
    if (!sentencepiece_available()) {
      out.unavailable = (model_dir / "tokenizer.model").string() +
                        ": this build has no SentencePiece (install libsentencepiece-dev and reconfigure)";
      return out;
    }
    // HF's LlamaTokenizer prepends BOS unless tokenizer_config.json says add_bos_token: false.
    bool add_bos = true;
    const fs::path config = model_dir / "tokenizer_config.json";
    if (fs::exists(config, ec)) {
      const nlohmann::json j = read_json_file(config);
      if (j.is_object()) {
        const auto it = j.find("add_bos_token");
        if (it != j.end() && !it->is_null()) {
          FLEXGEN_REQUIRE(it->is_boolean(), config.string(), ": field 'add_bos_token': expected true or false (got ",
                          json_preview(*it), ")");
          add_bos = it->get<bool>();
        }
      }
    }
    out.tokenizer = std::make_shared<SentencePieceTokenizer>(
        SentencePieceTokenizer::from_file(model_dir / "tokenizer.model", add_bos));
    return out;
  }
  if (fs::exists(model_dir / "tokenizer.json", ec)) {
    out.unavailable = model_dir.string() +
                      ": only tokenizer.json (Llama 3 style) is present; flexgen reads vocab.json + merges.txt "
                      "or a SentencePiece tokenizer.model (give token ids: --prompt-len, or a batch file of ids)";
    return out;
  }
  out.unavailable = model_dir.string() + ": no tokenizer files (vocab.json + merges.txt, or tokenizer.model)";
  return out;
}

}  // namespace flexgen
