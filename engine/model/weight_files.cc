#include "engine/model/weight_files.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"

namespace flexgen {
namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr std::uintmax_t kMaxIndexBytes = 64 * 1024 * 1024;

std::map<std::string, std::string> read_index(const std::filesystem::path& index_path) {
  const std::string where = index_path.string();
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(index_path, ec);
  FLEXGEN_REQUIRE(!ec, where, ": cannot read: ", ec.message());
  FLEXGEN_REQUIRE(size <= kMaxIndexBytes, where, ": ", size, " bytes, larger than the limit of ", kMaxIndexBytes);
  std::ifstream in(index_path, std::ios::binary);
  FLEXGEN_REQUIRE(in, where, ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  FLEXGEN_REQUIRE(!in.bad(), where, ": read failed");
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    fail(where, ": malformed JSON: ", e.what());
  }
  FLEXGEN_REQUIRE(index.is_object(), where, ": must be a JSON object");
  const auto map = index.find("weight_map");
  FLEXGEN_REQUIRE(map != index.end(), where, ": missing \"weight_map\"");
  FLEXGEN_REQUIRE(map->is_object(), where, ": \"weight_map\" must be an object");
  std::map<std::string, std::string> out;
  for (const auto& [name, shard_json] : map->items()) {
    FLEXGEN_REQUIRE(shard_json.is_string(), where, ": weight_map entry for tensor ", name, " must be a string");
    const std::string shard = shard_json.get<std::string>();
    const std::filesystem::path shard_path(shard);
    bool inside = !shard.empty() && shard_path.is_relative();
    for (const auto& part : shard_path) inside = inside && part != "..";
    FLEXGEN_REQUIRE(inside, where, ": weight_map puts tensor ", name, " in \"", shard,
                    "\", which is not a file inside the model directory");
    out.emplace(name, shard);
  }
  return out;
}

}  // namespace

WeightFiles::WeightFiles(const std::filesystem::path& model_dir, OptWeightsLoadReport* report)
    : dir_(model_dir), report_(report) {
  std::error_code ec;
  FLEXGEN_REQUIRE(std::filesystem::is_directory(model_dir, ec), model_dir.string(), ": not a model directory");
  const std::filesystem::path single = model_dir / kSingleFile;
  const std::filesystem::path index = model_dir / kIndexFile;
  if (std::filesystem::exists(single, ec)) {
    single_.emplace(single);
    if (report_ != nullptr) report_->files_opened.push_back(single);
    source_ = single.string();
    for (const std::string& name : single_->names()) shard_of_.emplace(name, kSingleFile);
  } else if (std::filesystem::exists(index, ec)) {
    source_ = index.string();
    shard_of_ = read_index(index);
  } else {
    fail(model_dir.string(), ": no ", kSingleFile, " or ", kIndexFile);
  }
}

const SafetensorsFile& WeightFiles::file_for(const std::string& name) {
  const std::string& shard = shard_of_.at(name);
  const SafetensorsFile* file = nullptr;
  if (single_) {
    file = &*single_;
  } else {
    auto it = shards_.find(shard);
    if (it == shards_.end()) {
      const std::filesystem::path path = dir_ / shard;
      std::error_code ec;
      FLEXGEN_REQUIRE(std::filesystem::exists(path, ec), source_, ": tensor ", name, " is in shard ", shard, ", but ",
                      path.string(), " does not exist");
      it = shards_.emplace(shard, SafetensorsFile(path)).first;
      if (report_ != nullptr) report_->files_opened.push_back(path);
    }
    file = &it->second;
  }
  FLEXGEN_REQUIRE(file->contains(name), file->path().string(), ": missing tensor ", name, " (", source_,
                  " places it in this file)");
  return *file;
}

}  // namespace flexgen
