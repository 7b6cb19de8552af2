// The framing of messages on a socket, the eager socket channel between stages (threads here; the
// CLI tests run it between processes) and the protocol's checks of what arrives.
#include "engine/pipeline/socket_channel.h"

#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <thread>

#include "engine/core/error.h"
#include "engine/pipeline/stage_protocol.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

std::vector<std::byte> bytes_of(std::initializer_list<int> v) {
  std::vector<std::byte> out;
  for (int x : v) out.push_back(static_cast<std::byte>(x));
  return out;
}

struct SocketPair {
  int fd[2] = {-1, -1};
  SocketPair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0); }
  ~SocketPair() {
    for (int f : fd) {
      if (f >= 0) ::close(f);
    }
  }
};

TEST(PipelineMessage, HeaderLayoutAndChecksumByHand) {
  // FNV-1a 64 of "a" (0x61): (offset ^ 0x61) * prime, the published test vector.
  EXPECT_EQ(payload_checksum(bytes_of({0x61})), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(payload_checksum({}), 0xcbf29ce484222325ull);
  const auto p = bytes_of({1, 2, 3});
  const MessageHeader h = make_header(MessageKind::kHidden, 3, 1, p);
  EXPECT_EQ(h.bytes, 3);
  EXPECT_EQ(describe(h), "hidden (token 3, batch 1, 3 bytes)");
  // On the wire: magic "FGPS", kind, flags, reserved, token, batch, bytes, checksum, little-endian.
  unsigned char raw[32];
  std::memcpy(raw, &h, 32);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(raw), 4), "FGPS");
  EXPECT_EQ(raw[4], 1);
  EXPECT_EQ(raw[8], 3);
  EXPECT_EQ(raw[12], 1);
  EXPECT_EQ(raw[16], 3);
}

TEST(PipelineMessage, RoundTripAndCleanEnd) {
  SocketPair sp;
  const auto p = bytes_of({9, 8, 7, 6});
  write_message(sp.fd[0], make_header(MessageKind::kTokens, 2, 0, p), p, "peer");
  ::shutdown(sp.fd[0], SHUT_WR);
  auto m = read_message(sp.fd[1], "peer");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->header.kind, MessageKind::kTokens);
  EXPECT_EQ(m->payload, p);
  EXPECT_FALSE(read_message(sp.fd[1], "peer").has_value());  // EOF at a boundary
}

TEST(PipelineMessage, CorruptOrTruncatedMessagesAreErrors) {
  {
    SocketPair sp;
    const auto p = bytes_of({1, 2, 3, 4});
    MessageHeader h = make_header(MessageKind::kHidden, 0, 0, p);
    h.checksum ^= 1;
    write_message(sp.fd[0], h, p, "peer");
    EXPECT_THAT(error_of([&] { read_message(sp.fd[1], "stage 0"); }),
                HasSubstr("the payload of hidden (token 0, batch 0, 4 bytes) from stage 0 fails its checksum"));
  }
  {
    SocketPair sp;
    MessageHeader h;
    h.magic = 0x12345678;
    write_message(sp.fd[0], h, {}, "peer");
    EXPECT_THAT(error_of([&] { read_message(sp.fd[1], "stage 1"); }), HasSubstr("magic"));
  }
  {
    SocketPair sp;
    MessageHeader h;
    h.bytes = -5;
    write_message(sp.fd[0], h, {}, "peer");
    EXPECT_THAT(error_of([&] { read_message(sp.fd[1], "stage 1"); }), HasSubstr("impossible payload of -5 bytes"));
  }
  {
    SocketPair sp;
    const auto p = bytes_of({1, 2, 3, 4});
    const MessageHeader h = make_header(MessageKind::kHidden, 0, 0, p);
    ASSERT_EQ(::write(sp.fd[0], &h, sizeof h), static_cast<ssize_t>(sizeof h));
    ASSERT_EQ(::write(sp.fd[0], p.data(), 2), 2);
    ::shutdown(sp.fd[0], SHUT_WR);
    EXPECT_THAT(error_of([&] { read_message(sp.fd[1], "stage 2"); }),
                HasSubstr("stage 2 closed the connection in the middle of a message (payload: 2 of 4 bytes)"));
  }
}

// Three stages on threads, every stage sends 200 messages to every other before receiving any: the
// sends never wait for the receiver, and each peer's messages arrive in its order.
TEST(PipelineChannel, EagerSendsAndPerPeerOrder) {
  constexpr int kStages = 3, kMessages = 200;
  auto mesh = make_socket_mesh(kStages);
  std::vector<std::string> errors(kStages);
  std::vector<std::thread> threads;
  for (int s = 0; s < kStages; ++s) {
    threads.emplace_back([&, s] {
      try {
        SocketChannel ch(s, mesh[static_cast<std::size_t>(s)]);
        std::vector<std::byte> big(100000, static_cast<std::byte>(s));
        for (int i = 0; i < kMessages; ++i) {
          for (int to = 0; to < kStages; ++to) {
            if (to == s) continue;
            big[0] = static_cast<std::byte>(i);
            ch.send(to, make_header(MessageKind::kHidden, i, s, big), big);
          }
        }
        for (int from = 0; from < kStages; ++from) {
          if (from == s) continue;
          for (int i = 0; i < kMessages; ++i) {
            const Message m = ch.recv(from);
            if (m.header.token != i || m.header.batch != from || m.payload[1] != static_cast<std::byte>(from) ||
                m.payload[0] != static_cast<std::byte>(i)) {
              errors[static_cast<std::size_t>(s)] = "out of order";
            }
          }
        }
        ch.finish();  // every send written (the counts are of bytes written and read)
        EXPECT_EQ(ch.bytes_sent(), 2 * kMessages * (100000 + 32));
        EXPECT_EQ(ch.bytes_received(), 2 * kMessages * (100000 + 32));
      } catch (const Error& e) {
        errors[static_cast<std::size_t>(s)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int s = 0; s < kStages; ++s) EXPECT_EQ(errors[static_cast<std::size_t>(s)], "") << "stage " << s;
}

TEST(PipelineChannel, APeerThatLeavesIsAnErrorAfterItsLastMessage) {
  auto mesh = make_socket_mesh(2);
  auto a = std::make_unique<SocketChannel>(0, mesh[0]);
  SocketChannel b(1, mesh[1]);
  const auto p = bytes_of({5});
  a->send(1, make_header(MessageKind::kTokens, 0, 0, p), p);
  a->abort();  // stage 0 fails: what it queued may be lost, the connection ends
  a.reset();
  // Whatever arrived is delivered; then the end of the connection is an error naming the peer.
  std::string err;
  for (int i = 0; i < 2; ++i) {  // the queued message may or may not have gone out before the abort
    err = error_of([&] { b.recv(0); });
    if (err != "no error") break;
  }
  EXPECT_THAT(err, HasSubstr("stage 0 closed its connection (it failed or exited)"));
  EXPECT_THAT(error_of([&] { b.send(1, make_header(MessageKind::kTokens, 0, 0, p), p); }),
              HasSubstr("stage 1 cannot send to stage 1"));
}

Plan plan_with(std::int64_t layers) {
  ModelSpec spec;
  spec.name = "t";
  spec.num_layers = layers;
  spec.hidden_size = 16;
  spec.num_heads = 4;
  spec.ffn_dim = 64;
  spec.vocab_size = 40;
  spec.max_positions = 32;
  spec.dtype = DType::kF32;
  PolicyConfig c;
  c.gpu_batch_size = 2;
  c.num_gpu_batches = 2;
  Workload w;
  w.prompt_len = 4;
  w.gen_len = 3;
  w.num_sequences = 4;
  return make_plan(spec, w, Policy::create(c));
}

// The protocol checks every message against the one the schedule expects.
TEST(PipelineProtocol, UnexpectedMessagesAreProtocolErrors) {
  const Plan plan = plan_with(3);
  auto mesh = make_socket_mesh(3);
  SocketChannel c0(0, mesh[0]), c1(1, mesh[1]), c2(2, mesh[2]);
  const PipelineStage s0 = make_pipeline_stage(plan, 3, 0, &c0);
  const PipelineStage s1 = make_pipeline_stage(plan, 3, 1, &c1);
  const PipelineStage s2 = make_pipeline_stage(plan, 3, 2, &c2);
  StageProtocol p0(s0, 2, 2), p1(s1, 2, 2), p2(s2, 2, 2);
  std::vector<std::byte> h(8, std::byte{1}), out(8);
  // In order: fine.
  p0.send_hidden(0, 0, h);
  p1.recv_hidden(0, 0, out);
  EXPECT_EQ(out, h);
  // The wrong batch.
  p0.send_hidden(0, 1, h);
  EXPECT_THAT(error_of([&] { p1.recv_hidden(1, 0, out); }),
              HasSubstr("pipeline protocol error: stage 1 expected hidden (token 1, batch 0, 8 bytes) from stage 0, "
                        "got hidden (token 0, batch 1, 8 bytes)"));
  // The wrong size.
  p1.send_hidden(0, 0, std::span<const std::byte>(h).first(4));
  EXPECT_THAT(error_of([&] { p2.recv_hidden(0, 0, out); }), HasSubstr("got hidden (token 0, batch 0, 4 bytes)"));
  // Tokens: in order per batch, to every stage but the last.
  const std::vector<std::int32_t> ids = {7, 9};
  p2.send_tokens(0, 1, ids);
  p2.send_tokens(0, 0, ids);
  std::vector<std::pair<int, int>> seen;
  auto never = [](std::int32_t) { return false; };
  auto record = [&](const StageProtocol::Tokens& t) {
    seen.emplace_back(t.token, t.batch);
    EXPECT_EQ(t.ids, ids);
  };
  p0.await_tokens(0, 0, never, record);  // takes batch 1's on the way
  EXPECT_EQ(seen, (std::vector<std::pair<int, int>>{{0, 1}, {0, 0}}));
  EXPECT_EQ(p0.tokens_through(0), 0);
  EXPECT_EQ(p0.tokens_through(1), 0);
  p2.send_tokens(2, 0, ids);  // skips step 1
  EXPECT_THAT(error_of([&] { p0.await_tokens(1, 0, never, record); }),
              HasSubstr("got tokens (token 2, batch 0, 8 bytes) from stage 2 after step 0 of that batch"));
  // A finished batch needs nothing more.
  seen.clear();
  p1.await_tokens(0, 1, never, record);
  p1.await_tokens(0, 0, never, record);
  p1.await_tokens(5, 1, [](std::int32_t k) { return k == 1; }, record);
  EXPECT_EQ(seen.size(), 2u);
}

}  // namespace
}  // namespace flexgen
