#include "engine/model/opt_weights.h"

#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/io/safetensors.h"

namespace flexgen {
namespace {

using nlohmann::json;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr const char* kPrefixes[] = {"model.decoder.", "decoder."};
constexpr const char* kLmHead = "lm_head.weight";
constexpr std::uintmax_t kMaxIndexBytes = 64 * 1024 * 1024;

void check_spec(const ModelSpec& spec) {
  FLEXGEN_REQUIRE(spec.num_layers > 0 && spec.hidden_size > 0 && spec.ffn_dim > 0 &&
                      spec.vocab_size > 0 && spec.max_positions > 0,
                  "model ", spec.name, ": layers, hidden size, ffn dim, vocab size and max positions",
                  " must all be positive");
}

// Where each full tensor name lives: the shard file name (relative to the model directory).
struct Catalog {
  std::filesystem::path source;  // the file that lists the tensors, for error messages
  std::map<std::string, std::string> shard_of;
};

Catalog catalog_from_index(const std::filesystem::path& index_path) {
  const std::string where = index_path.string();
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(index_path, ec);
  FLEXGEN_REQUIRE(!ec, where, ": cannot read: ", ec.message());
  FLEXGEN_REQUIRE(size <= kMaxIndexBytes, where, ": ", size, " bytes, larger than the limit of ",
                  kMaxIndexBytes);
  std::ifstream in(index_path, std::ios::binary);
  FLEXGEN_REQUIRE(in, where, ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  FLEXGEN_REQUIRE(!in.bad(), where, ": read failed");

  json index;
  try {
    index = json::parse(text.str());
  } catch (const json::exception& e) {
    fail(where, ": malformed JSON: ", e.what());
  }
  FLEXGEN_REQUIRE(index.is_object(), where, ": must be a JSON object");
  const auto map = index.find("weight_map");
  FLEXGEN_REQUIRE(map != index.end(), where, ": missing \"weight_map\"");
  FLEXGEN_REQUIRE(map->is_object(), where, ": \"weight_map\" must be an object");

  Catalog catalog{index_path, {}};
  for (const auto& [name, shard_json] : map->items()) {
    FLEXGEN_REQUIRE(shard_json.is_string(), where, ": weight_map entry for tensor ", name,
                    " must be a string");
    const std::string shard = shard_json.get<std::string>();
    const std::filesystem::path shard_path(shard);
    bool inside = !shard.empty() && shard_path.is_relative();
    for (const auto& part : shard_path) inside = inside && part != "..";
    FLEXGEN_REQUIRE(inside, where, ": weight_map puts tensor ", name, " in \"", shard,
                    "\", which is not a file inside the model directory");
    catalog.shard_of.emplace(name, shard);
  }
  return catalog;
}

// Opens each shard at most once.
class ShardSet {
 public:
  ShardSet(std::filesystem::path dir, const Catalog& catalog, OptWeightsLoadReport* report)
      : dir_(std::move(dir)), catalog_(catalog), report_(report) {}

  const SafetensorsFile& open(const std::string& shard, const std::string& for_tensor) {
    auto it = files_.find(shard);
    if (it != files_.end()) return it->second;
    const std::filesystem::path path = dir_ / shard;
    std::error_code ec;
    FLEXGEN_REQUIRE(std::filesystem::exists(path, ec), catalog_.source.string(), ": tensor ",
                    for_tensor, " is in shard ", shard, ", but ", path.string(), " does not exist");
    it = files_.emplace(shard, SafetensorsFile(path)).first;
    if (report_ != nullptr) report_->files_opened.push_back(path);
    return it->second;
  }

 private:
  std::filesystem::path dir_;
  const Catalog& catalog_;
  OptWeightsLoadReport* report_;
  std::map<std::string, SafetensorsFile> files_;
};

// 64-bit FNV-1a of a string.
std::uint64_t fnv1a64(const std::string& text) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

bool is_layer_norm_weight(const std::string& name) {
  const std::string suffix = "layer_norm.weight";
  return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::vector<TensorSlot> opt_tensor_slots(const ModelSpec& spec, OptWeights& weights) {
  assert(spec.num_layers >= 0);
  const std::int64_t h = spec.hidden_size;
  const std::int64_t f = spec.ffn_dim;
  weights.layers.resize(static_cast<std::size_t>(spec.num_layers));

  std::vector<TensorSlot> slots;
  slots.reserve(4 + 16 * weights.layers.size());
  slots.push_back({"embed_tokens.weight", {spec.vocab_size, h}, &weights.embed_tokens});
  slots.push_back({"embed_positions.weight", {spec.position_rows(), h}, &weights.embed_positions});
  slots.push_back({"final_layer_norm.weight", {h}, &weights.final_ln_weight});
  slots.push_back({"final_layer_norm.bias", {h}, &weights.final_ln_bias});
  for (std::size_t i = 0; i < weights.layers.size(); ++i) {
    OptLayerWeights& layer = weights.layers[i];
    const std::string p = "layers." + std::to_string(i) + ".";
    slots.push_back({p + "self_attn.q_proj.weight", {h, h}, &layer.q_weight});
    slots.push_back({p + "self_attn.q_proj.bias", {h}, &layer.q_bias});
    slots.push_back({p + "self_attn.k_proj.weight", {h, h}, &layer.k_weight});
    slots.push_back({p + "self_attn.k_proj.bias", {h}, &layer.k_bias});
    slots.push_back({p + "self_attn.v_proj.weight", {h, h}, &layer.v_weight});
    slots.push_back({p + "self_attn.v_proj.bias", {h}, &layer.v_bias});
    slots.push_back({p + "self_attn.out_proj.weight", {h, h}, &layer.out_weight});
    slots.push_back({p + "self_attn.out_proj.bias", {h}, &layer.out_bias});
    slots.push_back({p + "self_attn_layer_norm.weight", {h}, &layer.attn_ln_weight});
    slots.push_back({p + "self_attn_layer_norm.bias", {h}, &layer.attn_ln_bias});
    slots.push_back({p + "fc1.weight", {f, h}, &layer.fc1_weight});
    slots.push_back({p + "fc1.bias", {f}, &layer.fc1_bias});
    slots.push_back({p + "fc2.weight", {h, f}, &layer.fc2_weight});
    slots.push_back({p + "fc2.bias", {h}, &layer.fc2_bias});
    slots.push_back({p + "final_layer_norm.weight", {h}, &layer.mlp_ln_weight});
    slots.push_back({p + "final_layer_norm.bias", {h}, &layer.mlp_ln_bias});
  }
  return slots;
}

OptWeights load_opt_weights(const ModelSpec& spec, const std::filesystem::path& model_dir,
                            OptWeightsLoadReport* report) {
  check_spec(spec);
  std::error_code ec;
  FLEXGEN_REQUIRE(std::filesystem::is_directory(model_dir, ec), model_dir.string(),
                  ": not a model directory");

  // The catalog: which tensor is in which file. A single file is opened right away (its header is
  // its own catalog); an index is parsed and its shards opened on first use.
  const std::filesystem::path single = model_dir / kSingleFile;
  const std::filesystem::path index = model_dir / kIndexFile;
  Catalog catalog;
  std::optional<SafetensorsFile> single_file;
  if (std::filesystem::exists(single, ec)) {
    single_file.emplace(single);
    if (report != nullptr) report->files_opened.push_back(single);
    catalog.source = single;
    for (const std::string& name : single_file->names()) catalog.shard_of.emplace(name, kSingleFile);
  } else if (std::filesystem::exists(index, ec)) {
    catalog = catalog_from_index(index);
  } else {
    fail(model_dir.string(), ": no ", kSingleFile, " or ", kIndexFile);
  }
  ShardSet shards(model_dir, catalog, report);
  auto open_shard = [&](const std::string& shard, const std::string& tensor) -> const SafetensorsFile& {
    if (single_file) return *single_file;
    return shards.open(shard, tensor);
  };
  const std::string source = catalog.source.string();

  OptWeights weights;
  std::vector<TensorSlot> slots = opt_tensor_slots(spec, weights);

  // Resolve every slot to (full name, file), and check dtype and shape before reading anything.
  struct Plan {
    const TensorSlot* slot;
    std::string full_name;
    const SafetensorsFile* file;
  };
  std::vector<Plan> plans;
  plans.reserve(slots.size());
  std::set<std::string> expected;  // full names the spec accounts for
  for (const TensorSlot& slot : slots) {
    std::vector<std::string> found;
    for (const char* prefix : kPrefixes) {
      if (catalog.shard_of.count(prefix + slot.name) != 0) found.push_back(prefix + slot.name);
    }
    FLEXGEN_REQUIRE(!found.empty(), source, ": missing tensor ", kPrefixes[0], slot.name,
                    " (also looked for ", kPrefixes[1], slot.name, ")");
    FLEXGEN_REQUIRE(found.size() == 1, source, ": both ", found[0], " and ", found[1],
                    " are present; which one is meant?");
    const std::string& full = found.front();
    expected.insert(full);
    const SafetensorsFile& file = open_shard(catalog.shard_of.at(full), full);
    FLEXGEN_REQUIRE(file.contains(full), file.path().string(), ": missing tensor ", full, " (", source,
                    " places it in this file)");
    file.require_float(full);
    const SafetensorsEntry& entry = file.entry(full);
    FLEXGEN_REQUIRE(entry.shape == slot.shape, file.path().string(), ": tensor ", full, ": expected ",
                    shape_to_string(slot.shape), ", got ", shape_to_string(entry.shape));
    plans.push_back({&slot, full, &file});
  }

  // Tensors under the decoder prefix that the spec does not have mean a different architecture.
  for (const auto& [name, shard] : catalog.shard_of) {
    for (const char* prefix : kPrefixes) {
      if (name.rfind(prefix, 0) == 0 && expected.count(name) == 0) {
        fail(source, ": unexpected tensor ", name, " (not part of model ", spec.name, " with ",
             spec.num_layers, " layers)");
      }
    }
  }

  // The LM head is tied to the token embedding: only its shape is checked.
  if (const auto it = catalog.shard_of.find(kLmHead); it != catalog.shard_of.end()) {
    const SafetensorsFile& file = open_shard(it->second, kLmHead);
    FLEXGEN_REQUIRE(file.contains(kLmHead), file.path().string(), ": missing tensor ", kLmHead, " (",
                    source, " places it in this file)");
    const Shape embedding_shape{spec.vocab_size, spec.hidden_size};
    const Shape& got = file.entry(kLmHead).shape;
    FLEXGEN_REQUIRE(got == embedding_shape, file.path().string(), ": tensor ", kLmHead, ": expected ",
                    shape_to_string(embedding_shape), " (the tied embedding), got ", shape_to_string(got));
  }

  for (const Plan& plan : plans) {
    *plan.slot->target = plan.file->read_float(plan.full_name);
    if (report != nullptr) ++report->tensors_read;
  }
  return weights;
}

OptWeights make_dummy_opt_weights(const ModelSpec& spec, std::uint64_t seed) {
  check_spec(spec);
  OptWeights weights;
  constexpr std::uint64_t kFieldMask = (std::uint64_t{1} << 21) - 1;
  constexpr std::int64_t kCentre = 6 * (std::int64_t{1} << 21);
  const double scale = 0.02 * std::sqrt(2.0) / static_cast<double>(std::int64_t{1} << 22);
  for (const TensorSlot& slot : opt_tensor_slots(spec, weights)) {
    std::mt19937_64 engine(splitmix64(seed ^ fnv1a64(slot.name)));
    Tensor tensor(slot.shape);
    const bool ln_weight = is_layer_norm_weight(slot.name);
    float* out = tensor.data();
    const std::int64_t n = tensor.numel();
    for (std::int64_t i = 0; i < n; ++i) {
      std::int64_t s = 0;
      for (int j = 0; j < 2; ++j) {
        const std::uint64_t r = engine();
        for (int k = 0; k < 3; ++k) s += 2 * static_cast<std::int64_t>((r >> (21 * k)) & kFieldMask) + 1;
      }
      const auto noise = static_cast<float>(static_cast<double>(s - kCentre) * scale);
      out[i] = ln_weight ? 1.0f + noise : noise;
    }
    *slot.target = std::move(tensor);
  }
  return weights;
}

}  // namespace flexgen
