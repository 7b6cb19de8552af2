#pragma once
// Parsing byte counts written by people: command-line flags (--gpu-mem 16GiB) and what-if
// overrides.
#include <string_view>

#include "engine/core/units.h"

namespace flexgen {

// Parses a non-negative whole number of bytes: a plain integer ("1073741824"), a decimal or
// scientific number ("32e9", "1.5e12"), optionally followed by a unit, with or without a space:
// B, decimal kB MB GB TB PB EB (powers of 1000) or binary KiB MiB GiB TiB PiB EiB (powers of 1024).
// Units are matched case-insensitively ("16gib" = "16GiB"). The value is computed exactly and must
// be a whole number of bytes ("1.5KiB" = 1536 is fine, "0.1KiB" is not) that fits in Bytes.
// Throws flexgen::Error "invalid byte count '<text>': <reason>" otherwise.
Bytes parse_bytes(std::string_view text);

}  // namespace flexgen
