// EventBatchEncoder builds a serialized campus.gateway.v1.EventBatch from events that are
// already serialized (as the buffer stores them), without parsing them again. It relies on two
// rules of the protobuf wire format: a repeated message field is its elements written one after
// another, and for a scalar field the last value on the wire wins — so `historical` is set by
// appending that one field to the stored event bytes. Pure, no I/O.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace gw::protocols {

class EventBatchEncoder {
 public:
  explicit EventBatchEncoder(std::string_view gateway_id);

  void add(std::string_view serialized_event, bool historical);
  std::size_t events() const { return events_; }
  std::size_t bytes() const { return out_.size(); }
  // Returns the payload and starts a new, empty batch for the same gateway.
  std::string take();

 private:
  std::string gateway_id_;
  std::string out_;
  std::size_t events_ = 0;
};

}  // namespace gw::protocols
