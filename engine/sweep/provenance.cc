#include "engine/sweep/provenance.h"

#include <cstdio>
#include <ctime>
#include <fstream>
#include <thread>

#include "engine/sweep/child_process.h"

namespace flexgen {

std::string utc_now_iso() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string git_commit(const std::filesystem::path& dir) {
  const std::string d = dir.string();
  const ChildResult head = run_child({"git", "-C", d, "rev-parse", "--short=7", "HEAD"}, 10);
  if (!head.exited_ok()) return "";
  std::string commit = head.out;
  while (!commit.empty() && (commit.back() == '\n' || commit.back() == '\r')) commit.pop_back();
  if (commit.empty()) return "";
  // Changes under results/ and plots/figures/ (the rows a sweep is writing, the figures drawn from
  // them) do not change what produces the rows: only the rest of the tree makes a commit "-dirty".
  const ChildResult status = run_child({"git", "-C", d, "status", "--porcelain", "--untracked-files=no", "--",
                                        ":(top,exclude)results", ":(top,exclude)plots/figures"},
                                       30);
  if (status.exited_ok() && !status.out.empty()) commit += "-dirty";
  return commit;
}

std::string host_cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, name;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) name = line.substr(line.find_first_not_of(" \t", colon + 1));
      break;
    }
  }
  const unsigned threads = std::thread::hardware_concurrency();
  if (name.empty()) name = "host CPU";
  return threads > 0 ? name + " (" + std::to_string(threads) + " threads)" : name;
}

}  // namespace flexgen
