#include "engine/pipeline/stage_protocol.h"

#include <cstring>

#include "engine/core/error.h"

namespace flexgen {

PipelineStage make_pipeline_stage(const Plan& plan, std::int32_t count, std::int32_t index, StageChannel* channel,
                                  DeviceLink* device_link) {
  PipelineStage s;
  s.count = count;
  s.index = index;
  s.stage_of_layer = pipeline_stages(plan, count);
  FLEXGEN_REQUIRE(index >= 0 && index < count, "invalid pipeline: stage ", index, " of ", count);
  s.layers = stage_layers(s.stage_of_layer, index);
  FLEXGEN_REQUIRE(count == 1 || channel != nullptr, "pipeline: stage ", index, " of ", count, " has no channel");
  FLEXGEN_REQUIRE(channel == nullptr || (channel->size() == count && channel->rank() == index), "pipeline: stage ",
                  index, " of ", count, " was given the channel of stage ", channel ? channel->rank() : -1, " of ",
                  channel ? channel->size() : 0);
  s.channel = channel;
  s.device_link = device_link;
  return s;
}

StageProtocol::StageProtocol(const PipelineStage& stage, std::int64_t gpu_batch_size, std::int64_t num_gpu_batches)
    : stage_(stage), b_(gpu_batch_size), num_batches_(num_gpu_batches) {
  reset();
}

void StageProtocol::reset() { received_through_.assign(static_cast<std::size_t>(num_batches_), -1); }

Message StageProtocol::expect(std::int32_t from, MessageKind kind, std::int32_t token, std::int32_t batch, Bytes bytes,
                              bool on_device) {
  Message m = stage_.channel->recv(from);
  const MessageHeader& h = m.header;
  const bool device = (h.flags & MessageHeader::kOnDevice) != 0;
  if (h.kind != kind || h.token != token || h.batch != batch || h.bytes != bytes || device != on_device) {
    MessageHeader want;
    want.kind = kind;
    want.token = token;
    want.batch = batch;
    want.bytes = bytes;
    want.flags = on_device ? MessageHeader::kOnDevice : 0;
    fail("pipeline protocol error: stage ", stage_.index, " expected ", describe(want), " from stage ", from, ", got ",
         describe(h));
  }
  return m;
}

void StageProtocol::recv_hidden(std::int32_t token, std::int32_t batch, std::span<std::byte> out) {
  Message m = expect(stage_.index - 1, MessageKind::kHidden, token, batch, static_cast<Bytes>(out.size()), false);
  std::memcpy(out.data(), m.payload.data(), out.size());
}

void StageProtocol::send_hidden(std::int32_t token, std::int32_t batch, std::span<const std::byte> data) {
  stage_.channel->send(stage_.index + 1, make_header(MessageKind::kHidden, token, batch, data), data);
}

void StageProtocol::recv_hidden_header(std::int32_t token, std::int32_t batch, Bytes bytes) {
  expect(stage_.index - 1, MessageKind::kHidden, token, batch, bytes, true);
}

void StageProtocol::send_hidden_header(std::int32_t token, std::int32_t batch, Bytes bytes) {
  MessageHeader h;
  h.kind = MessageKind::kHidden;
  h.token = token;
  h.batch = batch;
  h.bytes = bytes;
  h.flags = MessageHeader::kOnDevice;
  stage_.channel->send(stage_.index + 1, h, {});
}

void StageProtocol::send_tokens(std::int32_t token, std::int32_t batch, std::span<const std::int32_t> ids) {
  const auto bytes = std::as_bytes(ids);
  const MessageHeader h = make_header(MessageKind::kTokens, token, batch, bytes);
  for (std::int32_t s = 0; s < stage_.count - 1; ++s) stage_.channel->send(s, h, bytes);
}

void StageProtocol::await_tokens(std::int32_t token, std::int32_t batch,
                                 const std::function<bool(std::int32_t)>& finished,
                                 const std::function<void(const Tokens&)>& apply) {
  const std::int32_t last = stage_.count - 1;
  while (received_through_[static_cast<std::size_t>(batch)] < token && !finished(batch)) {
    Message m = stage_.channel->recv(last);
    const MessageHeader& h = m.header;
    FLEXGEN_REQUIRE(h.kind == MessageKind::kTokens && h.batch >= 0 && h.batch < num_batches_ &&
                        h.bytes == b_ * static_cast<Bytes>(sizeof(std::int32_t)) && !(h.flags & MessageHeader::kOnDevice),
                    "pipeline protocol error: stage ", stage_.index, " expected tokens (", b_ * 4, " bytes) from stage ",
                    last, ", got ", describe(h));
    std::int32_t& through = received_through_[static_cast<std::size_t>(h.batch)];
    FLEXGEN_REQUIRE(h.token == through + 1 && !finished(h.batch), "pipeline protocol error: stage ", stage_.index,
                    " got ", describe(h), " from stage ", last, " after step ", through, " of that batch",
                    finished(h.batch) ? ", which had finished" : "");
    through = h.token;
    Tokens t;
    t.token = h.token;
    t.batch = h.batch;
    t.ids.resize(static_cast<std::size_t>(b_));
    std::memcpy(t.ids.data(), m.payload.data(), m.payload.size());
    apply(t);
  }
}

}  // namespace flexgen
