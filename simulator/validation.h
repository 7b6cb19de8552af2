#pragma once
// The cost model against measured engine runs (`flexgen validate`, docs/experiments.md): each
// engine row of a sweep's results is predicted again with the current cost model (its own plan
// and schedule, timed on a hardware file) and compared with what the engine measured, run by run
// and task kind by task kind.
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/hardware_spec.h"
#include "simulator/predict.h"

namespace flexgen {

struct ValidatedRun {
  std::string id, label, model, origin;  // origin: "<file>:<line>"
  std::string hardware;                  // the spec it was predicted on
  double measured_tok_s = 0;
  double predicted_tok_s = 0;
  double error = 0;                      // (predicted - measured) / measured
  double measured_prefill_s = 0, predicted_prefill_s = 0;
  double measured_decode_s = 0, predicted_decode_s = 0;
  KindTimes measured, predicted;         // busy seconds per task kind (measured: the engine's --task-times)
  bool has_task_times = false;
  int worst_kind = -1;                   // the kind with the largest |predicted - measured| busy time
  std::string critical_decode;           // the predicted critical resource of decode
};

struct ValidationReport {
  std::vector<ValidatedRun> runs;  // in file order
  std::int64_t skipped = 0;        // rows that are not successful engine runs
  double mape = 0;                 // mean |error| over runs
  std::optional<std::size_t> worst;  // index of the largest |error|
  KindTimes measured_total, predicted_total;  // over runs with task times
};

// Validates the rows of results files (JSONL). `hardware` replaces each row's own hardware file
// (its params.hardware and hw.* overrides) when given. Rows that are not engine runs with status
// "ok" are skipped; an engine row without the fields it needs, or naming a model or hardware file
// that cannot be read, throws flexgen::Error "<file>:<line>: ...".
ValidationReport validate_results(const std::vector<std::string>& files, const std::optional<HardwareSpec>& hardware);

nlohmann::json validation_json(const ValidationReport& report);
std::string validation_text(const ValidationReport& report, std::size_t worst_count);

}  // namespace flexgen
