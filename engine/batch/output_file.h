#pragma once
// The output file of `flexgen batch`: whole lines appended durably, and resuming from what a
// previous run left (docs/batch.md, "Resuming").
//
// Opening reads the file as it is: a last line without its '\n' (a write cut short by a crash)
// is dropped by truncating the file before it; every complete line must be a JSON object with an
// id, and those ids are what a resumed run skips. The file is locked (flock) while open, so two
// runs cannot append to it at once.
//
// append_block writes each line with one write() call (a short write is continued) and then
// fsyncs, with SIGINT, SIGTERM, SIGHUP and SIGQUIT held off for the duration: Ctrl-C during a
// block's lines takes effect after the last of them, so an interrupted run leaves whole blocks
// (a SIGKILL or a power cut can still cut a line, which the next open drops).
#include <cstdint>
#include <filesystem>
#include <string>
#include <unordered_set>
#include <vector>

namespace flexgen {

class OutputFile {
 public:
  // Opens or creates `path` for appending. Throws flexgen::Error "<path>: ..." when it cannot be
  // opened or locked, or when a complete line is not a JSON object with a string or integer id.
  // `command` and `line_kind` name the writer and its lines in those messages ("flexgen sweep",
  // "results row").
  explicit OutputFile(const std::filesystem::path& path, const std::string& command = "flexgen batch",
                      const std::string& line_kind = "completion line");
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  // Ids (prompt_id_key) of the complete lines found on opening.
  const std::unordered_set<std::string>& done_ids() const { return done_; }
  std::int64_t lines_found() const { return lines_found_; }
  std::int64_t partial_bytes_dropped() const { return dropped_; }

  // Appends the lines (each ends with its only '\n') and fsyncs. Throws flexgen::Error naming the
  // file on a write or fsync failure (disk full, I/O error).
  void append_block(const std::vector<std::string>& lines);

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::unordered_set<std::string> done_;
  std::int64_t lines_found_ = 0;
  std::int64_t dropped_ = 0;
};

}  // namespace flexgen
