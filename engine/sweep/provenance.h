#pragma once
// What every results row carries besides its figures: the commit of the code, the date, and the
// device that ran it (DESIGN.md: results rows carry commit, date, device or hardware spec).
#include <filesystem>
#include <string>

namespace flexgen {

// UTC now as "2026-12-05T07:21:00Z".
std::string utc_now_iso();

// The commit checked out in `dir` ("7e648a1", with "-dirty" when tracked files outside results/ and
// plots/figures/ differ from it), or "" when `dir` is not in a git work tree or git is missing.
std::string git_commit(const std::filesystem::path& dir);

// The host processor: "<model name> (<n> threads)" from /proc/cpuinfo, or "host CPU" when unknown.
std::string host_cpu_name();

}  // namespace flexgen
