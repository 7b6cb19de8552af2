#pragma once
// The messages of the pipeline's stage protocol (docs/multi-gpu.md) and their framing on a stream
// socket. A message is a fixed 32-byte header and a payload of header.bytes bytes (or none, when the
// payload travels on a device link: MessageHeader::kOnDevice). Every header names what it carries
// with explicit tags (kind, token = the generation step, batch = the gpu batch), so that a receiver
// checks each message against the one the schedule says must come next and a protocol error is a
// clear error, never silently wrong data.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/core/units.h"

namespace flexgen {

enum class MessageKind : std::uint8_t {
  kHidden = 1,     // stage s -> s + 1: the hidden state of (token, batch), [b, T, hidden] in the model dtype
  kTokens = 2,     // last stage -> every other stage: the ids sampled at (token, batch), [b] int32
  kReady = 3,      // stage -> launcher: the stage's runtime is built (weights placed)
  kGo = 4,         // launcher -> stage: start the run
  kReport = 5,     // stage -> launcher: the stage's run report (JSON text)
  kError = 6,      // stage -> launcher: why the stage failed (one line); batch = 1 when caused by a lost peer
  kBootstrap = 7,  // stage 0 -> the others: the device link's bootstrap data (NCCL unique id)
};
const char* message_kind_name(MessageKind kind);

inline constexpr std::uint32_t kMessageMagic = 0x53504746;  // "FGPS" little-endian

struct MessageHeader {
  std::uint32_t magic = kMessageMagic;
  MessageKind kind = MessageKind::kHidden;
  std::uint8_t flags = 0;
  std::uint16_t reserved = 0;
  std::int32_t token = 0;
  std::int32_t batch = 0;
  std::int64_t bytes = 0;       // payload bytes
  std::uint64_t checksum = 0;   // FNV-1a 64 of the inline payload (0 without one)

  static constexpr std::uint8_t kOnDevice = 1;  // the payload travels on the device link, not here
};
static_assert(sizeof(MessageHeader) == 32, "the header is 32 bytes on the wire");

struct Message {
  MessageHeader header;
  std::vector<std::byte> payload;  // empty with kOnDevice
};

// "hidden (token 3, batch 1, 2048 bytes)"
std::string describe(const MessageHeader& header);

// FNV-1a 64 of bytes.
std::uint64_t payload_checksum(std::span<const std::byte> bytes);

// A header for a message with an inline payload (checksum filled in).
MessageHeader make_header(MessageKind kind, std::int32_t token, std::int32_t batch, std::span<const std::byte> payload);

// The largest payload a header may announce (a corrupt length fails cleanly instead of allocating).
inline constexpr Bytes kMaxMessageBytes = Bytes{1} << 40;

// Writes the header and payload to a stream socket, all of it (no SIGPIPE: a closed peer is an
// error). Throws flexgen::Error naming `peer` on failure.
void write_message(int fd, const MessageHeader& header, std::span<const std::byte> payload, const std::string& peer);

// Reads one message. std::nullopt when the peer closed the connection at a message boundary.
// Throws flexgen::Error for a truncated message, a bad magic, an impossible length or a checksum
// mismatch, naming `peer`.
std::optional<Message> read_message(int fd, const std::string& peer);

}  // namespace flexgen
