#include "engine/pipeline/socket_channel.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "engine/core/error.h"

namespace flexgen {

SocketChannel::SocketChannel(std::int32_t rank, std::vector<int> fds) : rank_(rank) {
  FLEXGEN_REQUIRE(rank >= 0 && rank < static_cast<std::int32_t>(fds.size()), "pipeline: stage ", rank,
                  " of a channel of ", fds.size(), " stages");
  for (std::size_t s = 0; s < fds.size(); ++s) {
    auto p = std::make_unique<Peer>();
    p->fd = fds[s];
    p->name = str_cat("stage ", s);
    peers_.push_back(std::move(p));
  }
  for (auto& p : peers_) {
    if (p->fd < 0) continue;
    p->writer = std::thread([this, q = p.get()] { write_loop(*q); });
    p->reader = std::thread([this, q = p.get()] { read_loop(*q); });
  }
}

SocketChannel::~SocketChannel() { close(/*wait_for_peers=*/false); }

SocketChannel::Peer& SocketChannel::peer(std::int32_t s, const char* what) {
  FLEXGEN_REQUIRE(s >= 0 && s < size() && s != rank_ && peers_[static_cast<std::size_t>(s)]->fd >= 0,
                  "pipeline: stage ", rank_, " cannot ", what, " stage ", s);
  return *peers_[static_cast<std::size_t>(s)];
}

void SocketChannel::send(std::int32_t to, const MessageHeader& header, std::span<const std::byte> payload) {
  Peer& p = peer(to, "send to");
  Message m;
  m.header = header;
  if (!(header.flags & MessageHeader::kOnDevice)) {
    FLEXGEN_REQUIRE(static_cast<std::int64_t>(payload.size()) == header.bytes, "pipeline: ", describe(header),
                    " with a payload of ", payload.size(), " bytes");
    m.payload.assign(payload.begin(), payload.end());
  }
  std::lock_guard lock(p.mutex);
  FLEXGEN_REQUIRE(p.error.empty(), "pipeline: cannot send ", describe(header), " to ", p.name, ": ", p.error);
  FLEXGEN_REQUIRE(!p.closing, "pipeline: send to ", p.name, " after the channel was closed");
  p.sent += static_cast<Bytes>(sizeof(MessageHeader) + m.payload.size());
  p.outbox.push_back(std::move(m));
  p.changed.notify_all();
}

Message SocketChannel::recv(std::int32_t from) {
  Peer& p = peer(from, "receive from");
  std::unique_lock lock(p.mutex);
  p.changed.wait(lock, [&] { return !p.inbox.empty() || p.eof || !p.error.empty(); });
  if (!p.inbox.empty()) {
    Message m = std::move(p.inbox.front());
    p.inbox.pop_front();
    p.received += static_cast<Bytes>(sizeof(MessageHeader) + m.payload.size());
    return m;
  }
  if (!p.error.empty()) fail(p.error);
  fail("pipeline: ", p.name, " closed its connection (it failed or exited) before sending what stage ", rank_,
       " waits for");
}

void SocketChannel::write_loop(Peer& p) {
  for (;;) {
    Message m;
    {
      std::unique_lock lock(p.mutex);
      p.changed.wait(lock, [&] { return !p.outbox.empty() || p.closing || !p.error.empty(); });
      if (!p.error.empty()) return;
      if (p.outbox.empty()) break;  // closing and drained
      m = std::move(p.outbox.front());
      p.outbox.pop_front();
    }
    try {
      write_message(p.fd, m.header, m.payload, p.name);
    } catch (const Error& e) {
      std::lock_guard lock(p.mutex);
      if (p.error.empty()) p.error = e.what();
      p.changed.notify_all();
      return;
    }
  }
  ::shutdown(p.fd, SHUT_WR);
}

void SocketChannel::read_loop(Peer& p) {
  for (;;) {
    std::optional<Message> m;
    try {
      m = read_message(p.fd, p.name);
    } catch (const Error& e) {
      std::lock_guard lock(p.mutex);
      if (p.error.empty()) p.error = e.what();
      p.changed.notify_all();
      return;
    }
    std::lock_guard lock(p.mutex);
    if (!m) {
      p.eof = true;
      p.changed.notify_all();
      return;
    }
    p.inbox.push_back(std::move(*m));
    p.changed.notify_all();
  }
}

void SocketChannel::finish() { close(/*wait_for_peers=*/true); }

void SocketChannel::close(bool wait_for_peers) {
  {
    std::lock_guard lock(state_);
    if (finished_) return;
    finished_ = true;
  }
  for (auto& p : peers_) {
    if (p->fd < 0) continue;
    std::lock_guard lock(p->mutex);
    p->closing = true;
    p->changed.notify_all();
  }
  for (auto& p : peers_) {
    if (p->writer.joinable()) p->writer.join();
  }
  for (auto& p : peers_) {
    if (!wait_for_peers && p->fd >= 0) ::shutdown(p->fd, SHUT_RDWR);
    if (p->reader.joinable()) p->reader.join();
    if (p->fd >= 0) ::close(p->fd);
    p->fd = -1;
  }
}

void SocketChannel::abort() {
  for (auto& p : peers_) {
    if (p->fd < 0) continue;
    std::lock_guard lock(p->mutex);
    p->outbox.clear();
    if (p->error.empty()) p->error = "pipeline: the channel was aborted";
    p->changed.notify_all();
    ::shutdown(p->fd, SHUT_RDWR);
  }
  finish();
}

bool SocketChannel::peer_lost() const {
  for (const auto& p : peers_) {
    std::lock_guard lock(p->mutex);
    if (p->eof || (!p->error.empty() && p->error != "pipeline: the channel was aborted")) return true;
  }
  return false;
}

Bytes SocketChannel::bytes_sent() const {
  Bytes n = 0;
  for (const auto& p : peers_) {
    std::lock_guard lock(p->mutex);
    n += p->sent;
  }
  return n;
}

Bytes SocketChannel::bytes_received() const {
  Bytes n = 0;
  for (const auto& p : peers_) {
    std::lock_guard lock(p->mutex);
    n += p->received;
  }
  return n;
}

std::vector<std::vector<int>> make_socket_mesh(std::int32_t n) {
  std::vector<std::vector<int>> fds(static_cast<std::size_t>(n), std::vector<int>(static_cast<std::size_t>(n), -1));
  for (std::int32_t a = 0; a < n; ++a) {
    for (std::int32_t b = a + 1; b < n; ++b) {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        const int e = errno;
        for (auto& row : fds) {
          for (int fd : row) {
            if (fd >= 0) ::close(fd);
          }
        }
        fail("pipeline: cannot create the sockets between stages: ", std::strerror(e));
      }
      fds[static_cast<std::size_t>(a)][static_cast<std::size_t>(b)] = sv[0];
      fds[static_cast<std::size_t>(b)][static_cast<std::size_t>(a)] = sv[1];
    }
  }
  return fds;
}

}  // namespace flexgen
