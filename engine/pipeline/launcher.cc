#include "engine/pipeline/launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <sstream>

#include "engine/core/error.h"
#include "engine/pipeline/message.h"
#include "engine/pipeline/socket_channel.h"

extern char** environ;

namespace flexgen {

std::string endpoint_to_string(const StageEndpoint& e) {
  std::ostringstream o;
  o << e.rank << "/" << e.size << "/" << e.control_fd << "/";
  for (std::size_t i = 0; i < e.peer_fds.size(); ++i) o << (i ? "," : "") << e.peer_fds[i];
  return o.str();
}

StageEndpoint parse_endpoint(const std::string& text) {
  StageEndpoint e;
  auto bad = [&text]() { fail("pipeline: malformed stage end points '", text, "' (RANK/SIZE/CONTROL/FD,FD,...)"); };
  std::vector<std::string> parts;
  std::string cur;
  for (char c : text) {
    if (c == '/') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  if (parts.size() != 4) bad();
  auto number = [&](const std::string& s) -> long {
    if (s.empty()) bad();
    char* end = nullptr;
    const long v = std::strtol(s.c_str(), &end, 10);
    if (*end != '\0') bad();
    return v;
  };
  e.rank = static_cast<std::int32_t>(number(parts[0]));
  e.size = static_cast<std::int32_t>(number(parts[1]));
  e.control_fd = static_cast<int>(number(parts[2]));
  std::string fd;
  std::istringstream in(parts[3]);
  while (std::getline(in, fd, ',')) e.peer_fds.push_back(static_cast<int>(number(fd)));
  if (e.size < 1 || e.rank < 0 || e.rank >= e.size || static_cast<std::int32_t>(e.peer_fds.size()) != e.size) bad();
  return e;
}

void report_stage_failure(int control_fd, const std::string& what, bool lost_peer) {
  if (control_fd < 0) return;
  try {
    const auto payload = std::as_bytes(std::span<const char>(what.data(), what.size()));
    MessageHeader h = make_header(MessageKind::kError, 0, lost_peer ? 1 : 0, payload);
    write_message(control_fd, h, payload, "the launcher");
  } catch (...) {
    // The launcher is gone: nobody to tell.
  }
}

namespace {

struct StageProcess {
  pid_t pid = -1;
  int control = -1;               // the launcher's end
  std::optional<int> status;      // waitpid status once reaped
  bool killed_by_launcher = false;
  std::string error;              // its kError line
  bool lost_peer = false;
};

std::string self_exe() {
  std::vector<char> buf(4096);
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  FLEXGEN_REQUIRE(n > 0, "pipeline: cannot find this program (/proc/self/exe): ", std::strerror(errno));
  return std::string(buf.data(), static_cast<std::size_t>(n));
}

bool failed(const StageProcess& p) { return p.status && !(WIFEXITED(*p.status) && WEXITSTATUS(*p.status) == 0); }

std::string death(std::int32_t r, int status) {
  if (WIFSIGNALED(status)) {
    return str_cat("stage ", r, " died (killed by signal ", WTERMSIG(status), ": ", strsignal(WTERMSIG(status)), ")");
  }
  return str_cat("stage ", r, " exited with status ", WEXITSTATUS(status), " without saying why");
}

}  // namespace

void run_stage_processes(const StageLaunch& l) {
  const std::int32_t G = l.num_stages;
  FLEXGEN_REQUIRE(G >= 1, "pipeline: ", G, " stages");
  const std::string program = l.program.empty() ? self_exe() : l.program;
  auto mesh = make_socket_mesh(G);
  std::vector<StageProcess> procs(static_cast<std::size_t>(G));
  std::vector<int> stage_control(static_cast<std::size_t>(G), -1);
  auto close_all = [&] {
    for (auto& row : mesh) {
      for (int& fd : row) {
        if (fd >= 0) ::close(fd);
        fd = -1;
      }
    }
    for (int& fd : stage_control) {
      if (fd >= 0) ::close(fd);
      fd = -1;
    }
  };
  for (std::int32_t r = 0; r < G; ++r) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      const int e = errno;
      close_all();
      for (auto& p : procs) {
        if (p.control >= 0) ::close(p.control);
      }
      fail("pipeline: cannot create the control sockets: ", std::strerror(e));
    }
    procs[static_cast<std::size_t>(r)].control = sv[0];
    stage_control[static_cast<std::size_t>(r)] = sv[1];
  }

  // The environment of the stages, made before fork (the child only calls async-signal-safe functions).
  const char* fault_stage = std::getenv("FLEXGEN_FAULT_STAGE");
  std::vector<std::vector<std::string>> envs(static_cast<std::size_t>(G)), argvs(static_cast<std::size_t>(G));
  for (std::int32_t r = 0; r < G; ++r) {
    auto& env = envs[static_cast<std::size_t>(r)];
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string kv = *e;
      if (kv.rfind("NCCL_NVLS_ENABLE=", 0) == 0) continue;
      if (fault_stage != nullptr && kv.rfind("FLEXGEN_FAULT=", 0) == 0 && std::to_string(r) != fault_stage) continue;
      env.push_back(kv);
    }
    env.push_back("NCCL_NVLS_ENABLE=0");
    auto& argv = argvs[static_cast<std::size_t>(r)];
    argv.push_back(program);
    argv.insert(argv.end(), l.args.begin(), l.args.end());
    argv.push_back(l.endpoint_option);
    StageEndpoint ep;
    ep.rank = r;
    ep.size = G;
    ep.control_fd = stage_control[static_cast<std::size_t>(r)];
    ep.peer_fds = mesh[static_cast<std::size_t>(r)];
    argv.push_back(endpoint_to_string(ep));
  }
  auto pointers = [](std::vector<std::string>& v) {
    std::vector<char*> p;
    for (auto& s : v) p.push_back(s.data());
    p.push_back(nullptr);
    return p;
  };

  std::string fork_error;
  for (std::int32_t r = 0; r < G; ++r) {
    const auto i = static_cast<std::size_t>(r);
    std::vector<char*> argv = pointers(argvs[i]), envp = pointers(envs[i]);
    std::vector<int> keep = mesh[i];
    keep.push_back(stage_control[i]);
    // What the child says when exec fails (made here: the child only calls write and _exit).
    const std::string why = str_cat("cannot run ", program);
    const auto why_bytes = std::as_bytes(std::span<const char>(why.data(), why.size()));
    const MessageHeader why_header = make_header(MessageKind::kError, 0, 0, why_bytes);
    std::vector<char> exec_failed(sizeof why_header + why.size());
    std::memcpy(exec_failed.data(), &why_header, sizeof why_header);
    std::memcpy(exec_failed.data() + sizeof why_header, why.data(), why.size());
    const int control = stage_control[i];
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      fork_error = str_cat("pipeline: cannot start stage ", r, ": ", std::strerror(errno));
      break;
    }
    if (pid == 0) {
      for (int fd : keep) {
        if (fd >= 0) ::fcntl(fd, F_SETFD, 0);  // inherited across exec
      }
      ::execve(program.c_str(), argv.data(), envp.data());
      if (::write(control, exec_failed.data(), exec_failed.size()) < 0) _exit(127);
      _exit(127);
    }
    procs[i].pid = pid;
  }
  close_all();  // the stages hold their ends now

  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> failure_at;
  if (!fork_error.empty()) failure_at = Clock::now() - std::chrono::hours(1);  // kill what started, now
  for (;;) {
    // Messages from the stages.
    std::vector<pollfd> fds;
    std::vector<std::size_t> owner;
    for (std::size_t i = 0; i < procs.size(); ++i) {
      if (procs[i].control < 0) continue;
      fds.push_back({procs[i].control, POLLIN, 0});
      owner.push_back(i);
    }
    if (!fds.empty()) ::poll(fds.data(), fds.size(), 50);
    for (std::size_t n = 0; n < fds.size(); ++n) {
      if (fds[n].revents == 0) continue;
      StageProcess& p = procs[owner[n]];
      std::optional<Message> m;
      try {
        m = read_message(p.control, "a stage");
      } catch (const Error&) {
        m.reset();
      }
      if (!m) {
        ::close(p.control);
        p.control = -1;
        continue;
      }
      if (m->header.kind == MessageKind::kError && p.error.empty()) {
        p.error.assign(reinterpret_cast<const char*>(m->payload.data()), m->payload.size());
        p.lost_peer = m->header.batch != 0;
      }
    }
    // Stages that ended.
    bool all_reaped = true;
    for (StageProcess& p : procs) {
      if (p.pid < 0 || p.status) continue;
      int status = 0;
      const pid_t w = ::waitpid(p.pid, &status, WNOHANG);
      if (w == p.pid) {
        p.status = status;
        if (failed(p) && !failure_at) failure_at = Clock::now();
      } else {
        all_reaped = false;
      }
    }
    if (failure_at && Clock::now() - *failure_at > std::chrono::duration<double>(l.grace_s)) {
      for (StageProcess& p : procs) {
        if (p.pid < 0 || p.status || p.killed_by_launcher) continue;
        ::kill(p.pid, SIGKILL);
        p.killed_by_launcher = true;
      }
    }
    if (all_reaped) {
      bool open = false;
      for (const StageProcess& p : procs) open = open || p.control >= 0;
      if (!open) break;
      // The stages are gone: what they wrote is in the sockets; read it to the end.
      for (StageProcess& p : procs) {
        while (p.control >= 0) {
          std::optional<Message> m;
          try {
            m = read_message(p.control, "a stage");
          } catch (const Error&) {
          }
          if (!m) {
            ::close(p.control);
            p.control = -1;
          } else if (m->header.kind == MessageKind::kError && p.error.empty()) {
            p.error.assign(reinterpret_cast<const char*>(m->payload.data()), m->payload.size());
            p.lost_peer = m->header.batch != 0;
          }
        }
      }
      break;
    }
  }

  if (!fork_error.empty()) fail(fork_error);
  // One line: a stage's own error first, then a stage that died without one, then a lost peer.
  for (std::size_t i = 0; i < procs.size(); ++i) {
    if (failed(procs[i]) && !procs[i].error.empty() && !procs[i].lost_peer) fail("stage ", i, ": ", procs[i].error);
  }
  for (std::size_t i = 0; i < procs.size(); ++i) {
    const StageProcess& p = procs[i];
    if (failed(p) && p.error.empty() && !p.killed_by_launcher) fail(death(static_cast<std::int32_t>(i), *p.status));
  }
  for (std::size_t i = 0; i < procs.size(); ++i) {
    if (failed(procs[i]) && !procs[i].error.empty()) fail("stage ", i, ": ", procs[i].error);
  }
  for (std::size_t i = 0; i < procs.size(); ++i) {
    if (failed(procs[i])) fail(death(static_cast<std::int32_t>(i), *procs[i].status));
  }
}

}  // namespace flexgen
