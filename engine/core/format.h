#pragma once
// Human-readable formatting of quantities for one-line error messages and reports.
#include <string>

#include "engine/core/units.h"

namespace flexgen {

// A byte count in binary units with one decimal: "512 B", "4.0 KiB", "1.5 GiB", "-3.0 MiB".
// The unit is the largest one in which the rounded value stays below 1024.
std::string format_bytes(Bytes bytes);

}  // namespace flexgen
