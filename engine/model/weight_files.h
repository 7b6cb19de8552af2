#pragma once
// The safetensors files of an HF model directory as one catalog of tensor names: model.safetensors
// (preferred when both exist, as in HF transformers), or model.safetensors.index.json
// ({"metadata": ..., "weight_map": {"tensor name": "shard file name"}}) plus its shards, each
// opened at most once, on first use. Used by the LLaMA loader (llama_weights.h); the OPT loader
// (opt_weights.cc) keeps its own copy of the same rules.
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "engine/io/safetensors.h"
#include "engine/model/opt_weights.h"

namespace flexgen {

class WeightFiles {
 public:
  // Throws flexgen::Error "<dir>: not a model directory", "<dir>: no model.safetensors or
  // model.safetensors.index.json", or naming the index for malformed JSON or a shard path outside
  // the directory. `report` (may be null) collects the files opened.
  WeightFiles(const std::filesystem::path& model_dir, OptWeightsLoadReport* report);

  // The file that lists the tensors (model.safetensors or the index), for messages.
  const std::string& source() const { return source_; }
  // Every tensor name -> the file (relative to the directory) that holds it.
  const std::map<std::string, std::string>& catalog() const { return shard_of_; }
  bool has(const std::string& name) const { return shard_of_.count(name) != 0; }
  // The opened file holding `name` (which must be in the catalog); throws flexgen::Error naming
  // the index and the tensor when the shard is missing or does not contain it.
  const SafetensorsFile& file_for(const std::string& name);

 private:
  std::filesystem::path dir_;
  std::string source_;
  std::map<std::string, std::string> shard_of_;
  std::optional<SafetensorsFile> single_;
  std::map<std::string, SafetensorsFile> shards_;
  OptWeightsLoadReport* report_;
};

}  // namespace flexgen
