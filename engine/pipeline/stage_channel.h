#pragma once
// How the stages of a pipeline exchange host-side messages: the sampled tokens, and the hidden
// states unless a device link (NCCL, device_link.h) carries them. One implementation over stream
// sockets (socket_channel.h): UNIX socket pairs between the processes of one host, or TCP
// connections between hosts (set up through MPI, mpi_launch.h).
#include <cstdint>
#include <span>

#include "engine/pipeline/message.h"

namespace flexgen {

class StageChannel {
 public:
  virtual ~StageChannel() = default;
  virtual std::int32_t rank() const = 0;  // this stage
  virtual std::int32_t size() const = 0;  // stages

  // Queues the message for stage `to` and returns: a send never waits for the receiver (eager), so
  // no order of sends and receives between stages can deadlock on the channel. Throws
  // flexgen::Error when `to` is gone.
  virtual void send(std::int32_t to, const MessageHeader& header, std::span<const std::byte> payload) = 0;

  // The next message from stage `from`, in the order `from` sent them; waits for it. Throws
  // flexgen::Error when `from` has gone (its process ended or closed the connection) before
  // sending another, or sent a corrupt message.
  virtual Message recv(std::int32_t from) = 0;

  // Bytes sent to (queued for) / received from (taken by recv) the other stages so far: headers
  // and inline payloads.
  virtual Bytes bytes_sent() const = 0;
  virtual Bytes bytes_received() const = 0;
};

}  // namespace flexgen
