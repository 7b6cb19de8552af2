#include "engine/batch/output_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstring>

#include "engine/batch/prompt_file.h"
#include "engine/core/error.h"
#include "engine/core/json_fields.h"
#include "engine/runtime/fault_injection.h"

namespace flexgen {
namespace {

// Holds off the terminating signals a user sends (Ctrl-C and friends) while alive.
class SignalHold {
 public:
  SignalHold() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&set, s);
    pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~SignalHold() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  SignalHold(const SignalHold&) = delete;
  SignalHold& operator=(const SignalHold&) = delete;

 private:
  sigset_t old_;
};

std::string errno_text() { return std::strerror(errno); }

// write(), or the fault armed at fault::Point::kOutputWrite (test builds only).
ssize_t write_some(int fd, const char* data, std::size_t n) {
  switch (fault::strike(fault::Point::kOutputWrite)) {
    case fault::Effect::kFail: return -1;  // errno set by strike
    case fault::Effect::kShort: n = (n + 1) / 2; break;
    case fault::Effect::kStall:
    case fault::Effect::kNone: break;
  }
  return ::write(fd, data, n);
}

}  // namespace

OutputFile::OutputFile(const std::filesystem::path& path, const std::string& command, const std::string& line_kind)
    : path_(path) {
  const std::string name = path.string();
  fd_ = ::open(name.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  FLEXGEN_REQUIRE(fd_ >= 0, name, ": cannot open the output file: ", errno_text());
  try {
    struct stat st {};
    FLEXGEN_REQUIRE(::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode), name, ": the output must be a regular file");
    FLEXGEN_REQUIRE(::flock(fd_, LOCK_EX | LOCK_NB) == 0, name,
                    ": the output file is in use (another ", command, " run is writing it)");
    std::string data(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t got = 0;
    while (got < data.size()) {
      const ssize_t n = ::pread(fd_, data.data() + got, data.size() - got, static_cast<off_t>(got));
      FLEXGEN_REQUIRE(n >= 0 || errno == EINTR, name, ": cannot read the output file: ", errno_text());
      if (n == 0) break;
      if (n > 0) got += static_cast<std::size_t>(n);
    }
    data.resize(got);
    const std::size_t last_newline = data.rfind('\n');
    const std::size_t complete = last_newline == std::string::npos ? 0 : last_newline + 1;
    if (complete < data.size()) {  // a line cut short: drop it
      dropped_ = static_cast<std::int64_t>(data.size() - complete);
      FLEXGEN_REQUIRE(::ftruncate(fd_, static_cast<off_t>(complete)) == 0 && ::fsync(fd_) == 0, name,
                      ": cannot drop the unfinished last line: ", errno_text());
      data.resize(complete);
    }
    std::size_t start = 0;
    std::int64_t line = 0;
    while (start < data.size()) {
      const std::size_t end = data.find('\n', start);
      ++line;
      const std::string origin = name + ":" + std::to_string(line);
      const std::string_view text(data.data() + start, end - start);
      start = end + 1;
      const nlohmann::json o = parse_json_text(text, origin);
      FLEXGEN_REQUIRE(o.is_object() && o.contains("id") && (o["id"].is_string() || json_as_int64(o["id"])), origin,
                      ": not a ", line_kind, " (expected an object with an id); is this the right output file?");
      done_.insert(prompt_id_key(o["id"]));
      ++lines_found_;
    }
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

OutputFile::~OutputFile() {
  if (fd_ >= 0) ::close(fd_);  // also releases the lock
}

void OutputFile::append_block(const std::vector<std::string>& lines) {
  const SignalHold hold;
  for (const std::string& line : lines) {
    assert(!line.empty() && line.back() == '\n' && line.find('\n') == line.size() - 1);
    std::size_t done = 0;
    while (done < line.size()) {
      const ssize_t n = write_some(fd_, line.data() + done, line.size() - done);
      if (n < 0 && errno == EINTR) continue;
      FLEXGEN_REQUIRE(n > 0, path_.string(), ": cannot write the output file: ", errno_text());
      done += static_cast<std::size_t>(n);
    }
  }
  FLEXGEN_REQUIRE(::fsync(fd_) == 0, path_.string(), ": cannot sync the output file: ", errno_text());
}

}  // namespace flexgen
