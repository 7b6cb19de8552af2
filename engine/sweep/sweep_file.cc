#include "engine/sweep/sweep_file.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <string_view>

#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/core/input_lookup.h"
#include "engine/core/json_fields.h"
#include "engine/core/units_parse.h"

namespace flexgen {
namespace {

using OJson = nlohmann::ordered_json;

constexpr std::string_view kTopKeys[] = {"name", "description", "target", "hardware", "output", "timeout_s",
                                         "offload_dir", "base", "grid"};
// Every parameter but the hardware overrides ("hw.<field>").
constexpr std::string_view kParamKeys[] = {
    "label",          "model",           "prompt_len",     "gen_len",      "schedule",
    "policy",         "gpu_batch_size",  "num_gpu_batches", "percent",     "overlap",
    "pin_weight",     "cpu_cache_compute", "compress_weight", "compress_cache", "attn_sparsity",
    "allow_disk",     "hardware",        "gpu_mem",        "cpu_mem",      "disk_mem",
    "backend",        "seed"};
constexpr std::string_view kHwPrefix = "hw.";

bool is_param_key(std::string_view key) {
  return key.rfind(kHwPrefix, 0) == 0 ||
         std::find(std::begin(kParamKeys), std::end(kParamKeys), key) != std::end(kParamKeys);
}

// "unknown key 'x'" with a hint, for a key that is neither in `known` nor a parameter.
[[noreturn]] void unknown_key(std::string_view key, std::initializer_list<std::string_view> known,
                              const std::string& where) {
  if (const auto hint = closest_key(key, known)) {
    fail(where, ": unknown key '", printable(std::string(key)), "'; did you mean '", *hint, "'?");
  }
  fail(where, ": unknown key '", printable(std::string(key)), "'");
}

[[noreturn]] void unknown_param(std::string_view key, const std::string& where) {
  unknown_key(key,
              {"label", "model", "prompt_len", "gen_len", "schedule", "policy", "gpu_batch_size", "num_gpu_batches",
               "percent", "overlap", "pin_weight", "cpu_cache_compute", "compress_weight", "compress_cache",
               "attn_sparsity", "allow_disk", "hardware", "gpu_mem", "cpu_mem", "disk_mem", "backend", "seed"},
              where);
}

// Ordered JSON to the sorted kind (values only; order inside a point does not matter).
nlohmann::json sorted(const OJson& j) { return nlohmann::json::parse(j.dump()); }

std::string describe_point(std::size_t index, const nlohmann::json& params) {
  std::string d = "point " + std::to_string(index + 1);
  const auto it = params.find("label");
  if (it != params.end() && it->is_string() && !it->get_ref<const std::string&>().empty()) {
    d += " ('" + printable(it->get<std::string>()) + "')";
  }
  return d;
}

// ---- parameter checks: each returns the value in canonical form or throws -----------------
std::int64_t positive_int(const nlohmann::json& v, std::string_view key, const std::string& where,
                          std::int64_t max = std::int64_t{1} << 40) {
  const auto i = json_as_int64(v);
  FLEXGEN_REQUIRE(i && *i >= 1 && *i <= max, where, ": '", key, "' must be a whole number from 1 to ", max,
                  " (got ", json_preview(v), ")");
  return *i;
}

bool boolean(const nlohmann::json& v, std::string_view key, const std::string& where) {
  FLEXGEN_REQUIRE(v.is_boolean(), where, ": '", key, "' must be true or false (got ", json_preview(v), ")");
  return v.get<bool>();
}

std::string text(const nlohmann::json& v, std::string_view key, const std::string& where) {
  FLEXGEN_REQUIRE(v.is_string(), where, ": '", key, "' must be a string (got ", json_preview(v), ")");
  return v.get<std::string>();
}

double number(const nlohmann::json& v, std::string_view key, const std::string& where) {
  FLEXGEN_REQUIRE(v.is_number() && std::isfinite(v.get<double>()), where, ": '", key, "' must be a number (got ",
                  json_preview(v), ")");
  return v.get<double>();
}

std::string size_text(const nlohmann::json& v, std::string_view key, const std::string& where) {
  std::string s;
  if (v.is_string()) {
    s = v.get<std::string>();
  } else {
    const auto i = json_as_int64(v);
    FLEXGEN_REQUIRE(i.has_value(), where, ": '", key, "' must be a size such as \"24GiB\" (got ", json_preview(v),
                    ")");
    s = std::to_string(*i);
  }
  try {
    const Bytes b = parse_bytes(s);
    FLEXGEN_REQUIRE(b > 0, where, ": '", key, "' must be positive (got ", json_preview(v), ")");
  } catch (const Error& e) {
    fail(where, ": '", key, "': ", e.what());
  }
  return s;
}

// The numeric fields of a hardware spec (what hw.<field> may name).
const std::set<std::string>& hardware_fields() {
  static const std::set<std::string> fields = [] {
    const std::vector<std::string> all = HardwareSpec::numeric_fields();
    return std::set<std::string>(all.begin(), all.end());
  }();
  return fields;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Checks one hardware override's field and value; returns the value as given.
nlohmann::json hardware_override(std::string_view field, const nlohmann::json& v, const std::string& where) {
  const std::string name = std::string(field);
  if (!hardware_fields().count(name)) {
    fail(where, ": 'hw.", printable(name), "' is not a numeric field of a hardware spec");
  }
  if (v.is_string()) {
    FLEXGEN_REQUIRE(ends_with(name, "_bytes"), where, ": 'hw.", name, "' must be a number (got ", json_preview(v),
                    ")");
    size_text(v, "hw." + name, where);
    return v;
  }
  const double d = number(v, "hw." + name, where);
  // The optional refinements take 0 (the term left out); every other field must be positive.
  const bool optional = HardwareSpec::optional_field(name);
  FLEXGEN_REQUIRE(d > 0 || (optional && d == 0), where, ": 'hw.", name, "' must be positive (got ", json_preview(v), ")");
  return v;
}

// Merges one axis value into a point: the axis's parameter, or every parameter of a variant object.
// A later axis of a block overrides what an earlier one set (an ablation axis after a policy axis).
void merge_axis_value(nlohmann::json& into, const std::string& axis, const nlohmann::json& value,
                      const std::string& where) {
  if (is_param_key(axis)) {
    into[axis] = value;
    return;
  }
  FLEXGEN_REQUIRE(value.is_object(), where, ": axis '", printable(axis),
                  "' is not a parameter, so its values must be objects of parameters (got ", json_preview(value), ")");
  for (const auto& item : value.items()) {
    if (!is_param_key(item.key())) unknown_param(item.key(), where + ", axis '" + printable(axis) + "'");
    into[item.key()] = item.value();
  }
}

// Fills defaults and checks every parameter; returns the resolved point.
nlohmann::json resolve_point(nlohmann::json p, SweepTarget target, const std::string& file_hardware,
                             const std::string& where) {
  for (const auto& item : p.items()) {
    if (!is_param_key(item.key())) unknown_param(item.key(), where);
  }
  auto take = [&](const char* key, nlohmann::json def) {
    if (!p.contains(key)) p[key] = std::move(def);
    return p[key];
  };
  nlohmann::json out = nlohmann::json::object();
  out["label"] = text(take("label", ""), "label", where);
  FLEXGEN_REQUIRE(p.contains("model"), where, ": missing parameter 'model'");
  out["model"] = text(p["model"], "model", where);
  FLEXGEN_REQUIRE(!out["model"].get_ref<const std::string&>().empty(), where, ": 'model' is empty");
  out["prompt_len"] = positive_int(take("prompt_len", 512), "prompt_len", where, 1 << 24);
  out["gen_len"] = positive_int(take("gen_len", 32), "gen_len", where, 1 << 24);
  const std::string schedule = text(take("schedule", "zig-zag"), "schedule", where);
  FLEXGEN_REQUIRE(schedule == "zig-zag" || schedule == "row-by-row", where,
                  ": 'schedule' must be \"zig-zag\" or \"row-by-row\" (got ", json_preview(p["schedule"]), ")");
  out["schedule"] = schedule;
  const std::string policy = text(take("policy", "fixed"), "policy", where);
  FLEXGEN_REQUIRE(policy == "fixed" || policy == "search", where, ": 'policy' must be \"fixed\" or \"search\" (got ",
                  json_preview(p["policy"]), ")");
  out["policy"] = policy;
  const bool search = policy == "search";

  for (const char* key : {"gpu_batch_size", "num_gpu_batches"}) {
    const nlohmann::json v = take(key, search ? nlohmann::json() : nlohmann::json(1));
    FLEXGEN_REQUIRE(search || !v.is_null(), where, ": '", key, "' is null, which only a searched policy allows");
    out[key] = v.is_null() ? v : nlohmann::json(positive_int(v, key, where, std::int64_t{1} << 24));
  }
  const nlohmann::json cc = take("cpu_cache_compute", search ? nlohmann::json() : nlohmann::json(false));
  FLEXGEN_REQUIRE(search || !cc.is_null(), where, ": 'cpu_cache_compute' is null, which only a searched policy allows");
  out["cpu_cache_compute"] = cc.is_null() ? cc : nlohmann::json(boolean(cc, "cpu_cache_compute", where));
  if (search) {
    FLEXGEN_REQUIRE(!p.contains("percent") || p["percent"].is_null(), where,
                    ": 'percent' is chosen by the search; remove it or use policy \"fixed\"");
    out["percent"] = nlohmann::json();
  } else {
    const nlohmann::json pc = take("percent", nlohmann::json::array({100, 0, 100, 0, 100, 0}));
    FLEXGEN_REQUIRE(pc.is_array() && pc.size() == 6, where, ": 'percent' must be six numbers (got ",
                    json_preview(pc), ")");
    nlohmann::json six = nlohmann::json::array();
    for (const auto& x : pc) six.push_back(number(x, "percent", where));
    out["percent"] = six;
  }
  for (const char* key : {"overlap", "pin_weight"}) out[key] = boolean(take(key, true), key, where);
  for (const char* key : {"compress_weight", "compress_cache"}) out[key] = boolean(take(key, false), key, where);
  out["attn_sparsity"] = number(take("attn_sparsity", 1.0), "attn_sparsity", where);
  out["allow_disk"] = boolean(take("allow_disk", true), "allow_disk", where);
  FLEXGEN_REQUIRE(search || out["allow_disk"].get<bool>(), where,
                  ": 'allow_disk' applies to a searched policy; a fixed one places data with 'percent'");

  const nlohmann::json hw = take("hardware", file_hardware);
  out["hardware"] = text(hw, "hardware", where);
  FLEXGEN_REQUIRE(target == SweepTarget::kEngine || !out["hardware"].get_ref<const std::string&>().empty(), where,
                  ": a simulator sweep needs 'hardware' (in the file or the point)");
  for (const auto& item : p.items()) {
    if (item.key().rfind(kHwPrefix, 0) != 0) continue;
    out[item.key()] = hardware_override(std::string_view(item.key()).substr(kHwPrefix.size()), item.value(), where);
  }
  const bool has_overrides = std::any_of(out.items().begin(), out.items().end(),
                                         [](const auto& it) { return it.key().rfind(kHwPrefix, 0) == 0; });
  FLEXGEN_REQUIRE(!has_overrides || !out["hardware"].get_ref<const std::string&>().empty(), where,
                  ": 'hw.*' overrides need a 'hardware' file to override");
  for (const char* key : {"gpu_mem", "cpu_mem", "disk_mem"}) {
    const nlohmann::json v = take(key, nlohmann::json());
    out[key] = v.is_null() ? v : nlohmann::json(size_text(v, key, where));
  }
  if (target == SweepTarget::kEngine) {
    const std::string backend = text(take("backend", "auto"), "backend", where);
    FLEXGEN_REQUIRE(backend == "auto" || backend == "cuda" || backend == "host", where,
                    ": 'backend' must be \"auto\", \"cuda\" or \"host\" (got ", json_preview(p["backend"]), ")");
    out["backend"] = backend;
    const nlohmann::json seed = take("seed", 0);
    const auto s = json_as_int64(seed);
    FLEXGEN_REQUIRE(s && *s >= 0, where, ": 'seed' must be a whole number >= 0 (got ", json_preview(seed), ")");
    out["seed"] = *s;
  } else {
    FLEXGEN_REQUIRE(!p.contains("backend") && !p.contains("seed"), where, ": '",
                    p.contains("backend") ? "backend" : "seed", "' applies to engine sweeps only");
  }
  // A fixed policy must be possible; a searched one's switches must be valid on their own.
  const PointParams typed = point_params(out);
  try {
    PolicyConfig config = typed.policy_config();
    if (search) {
      config.gpu_batch_size = typed.gpu_batch_size.value_or(1);
      config.num_gpu_batches = typed.num_gpu_batches.value_or(1);
    }
    (void)Policy::create(config);
  } catch (const Error& e) {
    fail(where, ": ", e.what());
  }
  return out;
}

}  // namespace

const char* sweep_target_name(SweepTarget target) {
  return target == SweepTarget::kEngine ? "engine" : "simulator";
}

PolicyConfig PointParams::policy_config() const {
  PolicyConfig c;
  c.gpu_batch_size = gpu_batch_size.value_or(1);
  c.num_gpu_batches = num_gpu_batches.value_or(1);
  if (percent) c.set_percent(*percent);
  c.overlap = overlap;
  c.pin_weight = pin_weight;
  c.cpu_cache_compute = cpu_cache_compute.value_or(false);
  c.compress_weight = compress_weight;
  c.compress_cache = compress_cache;
  c.attn_sparsity = attn_sparsity;
  return c;
}

PointParams point_params(const nlohmann::json& j) {
  PointParams p;
  p.label = j.at("label").get<std::string>();
  p.model = j.at("model").get<std::string>();
  p.prompt_len = j.at("prompt_len").get<std::int64_t>();
  p.gen_len = j.at("gen_len").get<std::int64_t>();
  p.schedule = j.at("schedule").get<std::string>() == "row-by-row" ? ScheduleKind::kRowByRow : ScheduleKind::kZigZag;
  p.search = j.at("policy").get<std::string>() == "search";
  if (!j.at("gpu_batch_size").is_null()) p.gpu_batch_size = j["gpu_batch_size"].get<std::int64_t>();
  if (!j.at("num_gpu_batches").is_null()) p.num_gpu_batches = j["num_gpu_batches"].get<std::int64_t>();
  if (!j.at("percent").is_null()) {
    std::array<double, 6> a{};
    for (std::size_t i = 0; i < 6; ++i) a[i] = j["percent"][i].get<double>();
    p.percent = a;
  }
  p.overlap = j.at("overlap").get<bool>();
  p.pin_weight = j.at("pin_weight").get<bool>();
  if (!j.at("cpu_cache_compute").is_null()) p.cpu_cache_compute = j["cpu_cache_compute"].get<bool>();
  p.compress_weight = j.at("compress_weight").get<bool>();
  p.compress_cache = j.at("compress_cache").get<bool>();
  p.attn_sparsity = j.at("attn_sparsity").get<double>();
  p.allow_disk = j.at("allow_disk").get<bool>();
  p.hardware = j.at("hardware").get<std::string>();
  for (const auto& item : j.items()) {
    if (item.key().rfind(kHwPrefix, 0) == 0) {
      p.hw_overrides.emplace_back(item.key().substr(kHwPrefix.size()), item.value());
    }
  }
  if (!j.at("gpu_mem").is_null()) p.gpu_mem = j["gpu_mem"].get<std::string>();
  if (!j.at("cpu_mem").is_null()) p.cpu_mem = j["cpu_mem"].get<std::string>();
  if (!j.at("disk_mem").is_null()) p.disk_mem = j["disk_mem"].get<std::string>();
  if (j.contains("backend")) p.backend = j["backend"].get<std::string>();
  if (j.contains("seed")) p.seed = j["seed"].get<std::uint64_t>();
  return p;
}

std::string sweep_point_id(SweepTarget target, const nlohmann::json& params) {
  nlohmann::json key = params;
  key.erase("label");
  const std::string text = std::string(sweep_target_name(target)) + "\n" + key.dump();
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

Sweep parse_sweep(const nlohmann::ordered_json& file, const std::string& origin) {
  FLEXGEN_REQUIRE(file.is_object(), origin, ": a sweep file is a JSON object (got ", json_preview(sorted(file)), ")");
  for (const auto& item : file.items()) {
    if (std::find(std::begin(kTopKeys), std::end(kTopKeys), item.key()) == std::end(kTopKeys)) {
      unknown_key(item.key(),
                  {"name", "description", "target", "hardware", "output", "timeout_s", "offload_dir", "base", "grid"},
                  origin);
    }
  }
  Sweep sweep;
  FLEXGEN_REQUIRE(file.contains("name"), origin, ": missing key 'name'");
  sweep.name = text(sorted(file["name"]), "name", origin);
  FLEXGEN_REQUIRE(!sweep.name.empty() && sweep.name.size() <= 200 &&
                      std::all_of(sweep.name.begin(), sweep.name.end(),
                                  [](char c) {
                                    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                                           c == '.';
                                  }),
                  origin, ": 'name' must be 1 to 200 letters, digits, '-', '_' or '.' (got ",
                  json_preview(sorted(file["name"])), ")");
  if (file.contains("description")) sweep.description = text(sorted(file["description"]), "description", origin);
  FLEXGEN_REQUIRE(file.contains("target"), origin, ": missing key 'target'");
  const std::string target = text(sorted(file["target"]), "target", origin);
  FLEXGEN_REQUIRE(target == "engine" || target == "simulator", origin,
                  ": 'target' must be \"engine\" or \"simulator\" (got ", json_preview(sorted(file["target"])), ")");
  sweep.target = target == "engine" ? SweepTarget::kEngine : SweepTarget::kSimulator;
  if (file.contains("hardware")) sweep.hardware = text(sorted(file["hardware"]), "hardware", origin);
  sweep.output = file.contains("output") ? std::filesystem::path(text(sorted(file["output"]), "output", origin))
                                         : std::filesystem::path("results/sweeps/" + sweep.name + ".jsonl");
  FLEXGEN_REQUIRE(!sweep.output.empty(), origin, ": 'output' is empty");
  if (file.contains("timeout_s")) {
    sweep.timeout_s = number(sorted(file["timeout_s"]), "timeout_s", origin);
    FLEXGEN_REQUIRE(sweep.timeout_s > 0 && sweep.timeout_s <= 7 * 86400, origin,
                    ": 'timeout_s' must be a positive number of seconds up to a week");
    FLEXGEN_REQUIRE(sweep.target == SweepTarget::kEngine, origin, ": 'timeout_s' applies to engine sweeps only");
  }
  if (file.contains("offload_dir")) {
    sweep.offload_dir = text(sorted(file["offload_dir"]), "offload_dir", origin);
    FLEXGEN_REQUIRE(!sweep.offload_dir.empty(), origin, ": 'offload_dir' is empty");
    FLEXGEN_REQUIRE(sweep.target == SweepTarget::kEngine, origin, ": 'offload_dir' applies to engine sweeps only");
  }
  nlohmann::json base = nlohmann::json::object();
  if (file.contains("base")) {
    FLEXGEN_REQUIRE(file["base"].is_object(), origin, ": 'base' must be an object of parameters");
    base = sorted(file["base"]);
    for (const auto& item : base.items()) {
      if (!is_param_key(item.key())) unknown_param(item.key(), origin + ", base");
    }
  }
  FLEXGEN_REQUIRE(file.contains("grid"), origin, ": missing key 'grid' (a list of blocks of axes)");
  const OJson& grid = file["grid"];
  FLEXGEN_REQUIRE(grid.is_array() && !grid.empty(), origin, ": 'grid' must be a non-empty list of blocks");

  constexpr std::size_t kMaxPoints = 100000;
  std::set<std::string> seen;
  for (std::size_t b = 0; b < grid.size(); ++b) {
    const std::string where = origin + ", grid block " + std::to_string(b + 1);
    const OJson& block = grid[b];
    FLEXGEN_REQUIRE(block.is_object(), where, ": a block must be an object of axes (name: [values])");
    std::vector<std::pair<std::string, const OJson*>> axes;
    std::size_t count = 1;
    for (const auto& item : block.items()) {
      FLEXGEN_REQUIRE(item.value().is_array() && !item.value().empty(), where, ": axis '", printable(item.key()),
                      "' must be a non-empty list of values");
      axes.emplace_back(item.key(), &item.value());
      count *= item.value().size();
      FLEXGEN_REQUIRE(count <= kMaxPoints, where, ": more than ", kMaxPoints, " points");
    }
    // Odometer over the axes, the last axis fastest.
    std::vector<std::size_t> at(axes.size(), 0);
    for (std::size_t n = 0; n < count; ++n) {
      nlohmann::json point = base;
      for (std::size_t a = 0; a < axes.size(); ++a) {
        merge_axis_value(point, axes[a].first, sorted((*axes[a].second)[at[a]]), where);
      }
      const std::string point_where = where + ", " + describe_point(sweep.points.size(), point);
      SweepPoint sp;
      sp.params = resolve_point(std::move(point), sweep.target, sweep.hardware, point_where);
      sp.id = sweep_point_id(sweep.target, sp.params);
      sp.typed = point_params(sp.params);
      if (seen.insert(sp.id).second) {
        sweep.points.push_back(std::move(sp));
        FLEXGEN_REQUIRE(sweep.points.size() <= kMaxPoints, origin, ": more than ", kMaxPoints, " points");
      }
      for (std::size_t a = axes.size(); a-- > 0;) {
        if (++at[a] < axes[a].second->size()) break;
        at[a] = 0;
      }
    }
  }
  return sweep;
}

Sweep read_sweep_file(const std::filesystem::path& path) {
  const std::string origin = path.string();
  return parse_sweep(parse_ordered_json_text(read_text_file(path), origin), origin);
}

HardwareSpec with_hardware_overrides(const HardwareSpec& base,
                                     const std::vector<std::pair<std::string, nlohmann::json>>& overrides,
                                     const std::string& origin) {
  if (overrides.empty()) return base;
  nlohmann::json j = base.to_json();
  for (const auto& [key, value] : overrides) {
    const std::string where = origin + printable(key);
    FLEXGEN_REQUIRE(hardware_fields().count(key), where, ": not a numeric field of a hardware spec");
    if (value.is_string()) {
      const std::string& s = value.get_ref<const std::string&>();
      if (ends_with(key, "_bytes")) {
        try {
          j[key] = parse_bytes(s);
        } catch (const Error& e) {
          fail(where, ": ", e.what());
        }
      } else {
        std::size_t used = 0;
        double v = 0;
        try {
          v = std::stod(s, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        FLEXGEN_REQUIRE(used == s.size() && !s.empty(), where, ": '", printable(s), "' is not a number");
        j[key] = v;
      }
    } else {
      FLEXGEN_REQUIRE(value.is_number(), where, ": must be a number (got ", json_preview(value), ")");
      j[key] = value;
    }
  }
  j["name"] = base.name + " (overridden)";
  return HardwareSpec::from_json(j, base.name + " with overrides");
}

void check_sweep_inputs(const Sweep& sweep, const std::string& origin) {
  std::set<std::string> models;
  std::map<std::string, HardwareSpec> hardware;
  for (std::size_t i = 0; i < sweep.points.size(); ++i) {
    const PointParams& p = sweep.points[i].typed;
    const std::string where = origin + ", " + describe_point(i, sweep.points[i].params);
    try {
      if (models.insert(p.model).second) (void)load_model_spec(p.model);
      if (!p.hardware.empty()) {
        auto it = hardware.find(p.hardware);
        if (it == hardware.end()) it = hardware.emplace(p.hardware, load_hardware(p.hardware)).first;
        (void)with_hardware_overrides(it->second, p.hw_overrides, "hw.");
      }
    } catch (const Error& e) {
      fail(where, ": ", e.what());
    }
  }
}

}  // namespace flexgen
