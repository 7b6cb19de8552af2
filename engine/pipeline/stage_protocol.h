#pragma once
// The stage protocol (docs/multi-gpu.md), used by both runtimes at their stage boundaries:
//
// - hidden (token i, batch k): stage s -> s + 1, right after stage s ran its last layer on batch k
//   at step i; [b, T, hidden] values in the model dtype (T = prompt length at step 0, else 1),
//   inline, or announced here and carried by the device link (NCCL). Stage s + 1 receives it at
//   the start of its first layer's compute of (i, k).
// - tokens (token i, batch k): the last stage -> every other stage, right after it sampled step i
//   of batch k; b int32 ids. Stage 0 feeds them to its embedding at step i + 1; every stage applies
//   them to its copy of the generated sequences and of the early finish (so all stages skip the
//   same work once a batch has produced its stop token, and all end with the same tokens).
//
// Each stage sends in its schedule's order and receives in the same order as the sender sends, so
// every message is checked against the one expected (kind, token, batch, bytes): a mismatch is a
// protocol error. Since channel sends never wait (stage_channel.h), and device-link transfers only
// flow forward (s -> s + 1, in the same order on both sides), the protocol cannot deadlock.
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "engine/pipeline/stage.h"

namespace flexgen {

class StageProtocol {
 public:
  StageProtocol(const PipelineStage& stage, std::int64_t gpu_batch_size, std::int64_t num_gpu_batches);

  // Forget the tokens received so far (a new block).
  void reset();

  // Stage s > 0: the hidden state of (token, batch) from stage s - 1, `out.size()` bytes, into out.
  void recv_hidden(std::int32_t token, std::int32_t batch, std::span<std::byte> out);
  // Stage s < G - 1: the hidden state of (token, batch) to stage s + 1.
  void send_hidden(std::int32_t token, std::int32_t batch, std::span<const std::byte> data);
  // With a device link: only the header goes through the channel (it announces `bytes`), the
  // caller moves the payload on the device link in the same order.
  void recv_hidden_header(std::int32_t token, std::int32_t batch, Bytes bytes);
  void send_hidden_header(std::int32_t token, std::int32_t batch, Bytes bytes);

  // The last stage: the ids sampled at (token, batch) to every other stage.
  void send_tokens(std::int32_t token, std::int32_t batch, std::span<const std::int32_t> ids);

  struct Tokens {
    std::int32_t token = 0, batch = 0;
    std::vector<std::int32_t> ids;
  };
  // Every stage but the last: receives token messages from the last stage, applying each (apply),
  // until those of (token, batch) are in or `finished(batch)` says the batch stopped early (then
  // the last stage sends no more for it). Checks that each batch's steps arrive in order.
  void await_tokens(std::int32_t token, std::int32_t batch, const std::function<bool(std::int32_t)>& finished,
                    const std::function<void(const Tokens&)>& apply);
  // The steps of `batch` received so far (-1: none).
  std::int32_t tokens_through(std::int32_t batch) const {
    return received_through_[static_cast<std::size_t>(batch)];
  }

 private:
  Message expect(std::int32_t from, MessageKind kind, std::int32_t token, std::int32_t batch, Bytes bytes,
                 bool on_device);

  const PipelineStage& stage_;
  std::int64_t b_, num_batches_;
  std::vector<std::int32_t> received_through_;
};

}  // namespace flexgen
