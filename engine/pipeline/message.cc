#include "engine/pipeline/message.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "engine/core/error.h"

namespace flexgen {

const char* message_kind_name(MessageKind kind) {
  switch (kind) {
    case MessageKind::kHidden: return "hidden";
    case MessageKind::kTokens: return "tokens";
    case MessageKind::kReady: return "ready";
    case MessageKind::kGo: return "go";
    case MessageKind::kReport: return "report";
    case MessageKind::kError: return "error";
    case MessageKind::kBootstrap: return "bootstrap";
  }
  return "unknown";
}

std::string describe(const MessageHeader& h) {
  return str_cat(message_kind_name(h.kind), " (token ", h.token, ", batch ", h.batch, ", ", h.bytes, " bytes",
                 (h.flags & MessageHeader::kOnDevice) ? " on the device link" : "", ")");
}

std::uint64_t payload_checksum(std::span<const std::byte> bytes) {
  std::uint64_t h = 14695981039346656037ull;  // the FNV-1a 64 offset basis
  for (std::byte b : bytes) {
    h ^= static_cast<std::uint64_t>(b);
    h *= 1099511628211ull;
  }
  return h;
}

MessageHeader make_header(MessageKind kind, std::int32_t token, std::int32_t batch, std::span<const std::byte> payload) {
  MessageHeader h;
  h.kind = kind;
  h.token = token;
  h.batch = batch;
  h.bytes = static_cast<std::int64_t>(payload.size());
  h.checksum = payload.empty() ? 0 : payload_checksum(payload);
  return h;
}

namespace {

void write_all(int fd, const std::byte* p, std::size_t n, const std::string& peer) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("pipeline: sending to ", peer, " failed: ", std::strerror(errno),
           errno == EPIPE || errno == ECONNRESET ? " (it has exited)" : "");
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

// Reads exactly n bytes; false at EOF before the first byte (when allow_eof), throws otherwise.
bool read_all(int fd, std::byte* p, std::size_t n, const std::string& peer, bool allow_eof, const char* what) {
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::recv(fd, p + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      fail("pipeline: receiving from ", peer, " failed: ", std::strerror(errno));
    }
    if (r == 0) {
      if (got == 0 && allow_eof) return false;
      fail("pipeline: ", peer, " closed the connection in the middle of a message (", what, ": ", got, " of ", n,
           " bytes)");
    }
    got += static_cast<std::size_t>(r);
  }
  return true;
}

}  // namespace

void write_message(int fd, const MessageHeader& header, std::span<const std::byte> payload, const std::string& peer) {
  write_all(fd, reinterpret_cast<const std::byte*>(&header), sizeof header, peer);
  if (!(header.flags & MessageHeader::kOnDevice)) write_all(fd, payload.data(), payload.size(), peer);
}

std::optional<Message> read_message(int fd, const std::string& peer) {
  Message m;
  if (!read_all(fd, reinterpret_cast<std::byte*>(&m.header), sizeof m.header, peer, true, "header")) return std::nullopt;
  const MessageHeader& h = m.header;
  FLEXGEN_REQUIRE(h.magic == kMessageMagic, "pipeline: a message from ", peer,
                  " does not start with the protocol's magic number (a corrupt stream)");
  FLEXGEN_REQUIRE(h.bytes >= 0 && h.bytes <= kMaxMessageBytes, "pipeline: a message from ", peer,
                  " announces an impossible payload of ", h.bytes, " bytes");
  if (h.flags & MessageHeader::kOnDevice) return m;
  m.payload.resize(static_cast<std::size_t>(h.bytes));
  read_all(fd, m.payload.data(), m.payload.size(), peer, false, "payload");
  FLEXGEN_REQUIRE(h.checksum == (m.payload.empty() ? 0 : payload_checksum(m.payload)), "pipeline: the payload of ",
                  describe(h), " from ", peer, " fails its checksum");
  return m;
}

}  // namespace flexgen
