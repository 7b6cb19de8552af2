#pragma once
// Human-readable formatting of quantities for one-line error messages and reports.
#include <cstddef>
#include <string>
#include <string_view>

#include "engine/core/units.h"

namespace flexgen {

// A byte count in binary units with one decimal: "512 B", "4.0 KiB", "1.5 GiB", "-3.0 MiB".
// The unit is the largest one in which the rounded value stays below 1024.
std::string format_bytes(Bytes bytes);

// Text from an input (a token, a line of a file, a name) made safe for a one-line message: control
// characters are escaped (\n, \r, \t, \xNN for the others and DEL), and text longer than
// `max_bytes` is cut at a UTF-8 character boundary and ends in "...".
std::string printable(std::string_view text, std::size_t max_bytes = 80);

}  // namespace flexgen
