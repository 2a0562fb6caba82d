#include "protocols/event_batch_encoder.h"

#include <cstdint>

namespace gw::protocols {
namespace {

// Field numbers from gateway.proto; a test parses our output with the generated code.
constexpr uint8_t kBatchGatewayIdTag = (1 << 3) | 2;  // EventBatch.gateway_id, length-delimited
constexpr uint8_t kBatchEventsTag = (2 << 3) | 2;     // EventBatch.events, length-delimited
constexpr uint8_t kEventHistoricalTag = (7 << 3) | 0;  // Event.historical, varint

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

}  // namespace

EventBatchEncoder::EventBatchEncoder(std::string_view gateway_id) : gateway_id_(gateway_id) {
  take();
}

void EventBatchEncoder::add(std::string_view serialized_event, bool historical) {
  out_.push_back(static_cast<char>(kBatchEventsTag));
  put_varint(out_, serialized_event.size() + (historical ? 2 : 0));
  out_.append(serialized_event);
  if (historical) {
    out_.push_back(static_cast<char>(kEventHistoricalTag));
    out_.push_back(1);
  }
  ++events_;
}

std::string EventBatchEncoder::take() {
  std::string done = std::move(out_);
  out_.clear();
  out_.push_back(static_cast<char>(kBatchGatewayIdTag));
  put_varint(out_, gateway_id_.size());
  out_.append(gateway_id_);
  events_ = 0;
  return done;
}

}  // namespace gw::protocols
