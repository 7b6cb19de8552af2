#pragma once
// StageChannel over connected stream sockets, one per peer stage (UNIX socket pairs made by the
// launcher before it starts the stage processes, or TCP connections). Each peer has a writer thread
// with an unbounded queue (sends never wait for the receiver) and a reader thread that reads ahead
// into an inbox (so a peer's writes never wait for this stage either).
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/pipeline/stage_channel.h"

namespace flexgen {

class SocketChannel final : public StageChannel {
 public:
  // fds[p]: the connected socket to stage p (-1 for this stage); the channel owns them.
  SocketChannel(std::int32_t rank, std::vector<int> fds);
  // Every queued message is delivered, then the connections are closed at once (without waiting
  // for the peers, unlike finish(): so that the channels of one process can end in any order).
  ~SocketChannel() override;
  SocketChannel(const SocketChannel&) = delete;
  SocketChannel& operator=(const SocketChannel&) = delete;

  std::int32_t rank() const override { return rank_; }
  std::int32_t size() const override { return static_cast<std::int32_t>(peers_.size()); }
  void send(std::int32_t to, const MessageHeader& header, std::span<const std::byte> payload) override;
  Message recv(std::int32_t from) override;
  Bytes bytes_sent() const override;
  Bytes bytes_received() const override;

  // Delivers what is queued, tells every peer that nothing more comes (shutdown of the write side)
  // and waits until every peer has said the same. Idempotent.
  void finish();
  // Drops everything at once (the error path): pending sends are discarded, both directions of
  // every connection shut down, so that peers see the connection end now. Idempotent.
  void abort();
  // Whether a peer has gone (closed its connection or broke it) before this channel finished: an
  // error of this stage is then likely that peer's failure seen from here.
  bool peer_lost() const;

 private:
  struct Peer {
    int fd = -1;
    std::string name;  // "stage 2"
    std::mutex mutex;
    std::condition_variable changed;
    std::deque<Message> outbox, inbox;
    bool closing = false;   // no more sends: the writer ends after the outbox
    bool eof = false;       // the peer closed its side
    std::string error;      // the reader or writer failed: why
    Bytes sent = 0, received = 0;
    std::thread writer, reader;
  };
  void close(bool wait_for_peers);
  void write_loop(Peer& p);
  void read_loop(Peer& p);
  Peer& peer(std::int32_t s, const char* what);

  std::int32_t rank_;
  std::vector<std::unique_ptr<Peer>> peers_;
  std::mutex state_;
  bool finished_ = false;
};

// Connected UNIX stream socket pairs for a full mesh of n stages: result[a][b] is stage a's end of
// its connection to stage b (-1 on the diagonal). Close-on-exec set. Throws flexgen::Error.
std::vector<std::vector<int>> make_socket_mesh(std::int32_t n);

}  // namespace flexgen
