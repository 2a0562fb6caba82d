#include "protocols/event_batch_encoder.h"

#include <catch2/catch.hpp>

#include "campus/gateway/v1/gateway.pb.h"

using namespace gw::protocols;
namespace v1 = campus::gateway::v1;

namespace {
std::string meter_event(uint64_t seq, double value) {
  v1::Event e;
  e.set_seq(seq);
  e.set_device_id("meter-" + std::to_string(seq));
  e.set_event_class(v1::TELEMETRY);
  e.set_gateway_time_us(1700000000000000 + int64_t(seq));
  auto* m = e.mutable_meter()->add_values();
  m->set_name("energy_total");
  m->set_value(value);
  m->set_quality(v1::GOOD);
  return e.SerializeAsString();
}
}  // namespace

TEST_CASE("encoded batches parse with the generated code, historical flags included") {
  EventBatchEncoder enc("lib-gw-01");
  enc.add(meter_event(7, 1.5), false);
  enc.add(meter_event(8, 2.5), true);
  // A large event needs a multi-byte length prefix.
  v1::Event big;
  big.set_seq(9);
  big.set_device_id(std::string(300, 'x'));
  enc.add(big.SerializeAsString(), true);
  CHECK(enc.events() == 3);

  v1::EventBatch batch;
  REQUIRE(batch.ParseFromString(enc.take()));
  CHECK(batch.gateway_id() == "lib-gw-01");
  REQUIRE(batch.events_size() == 3);
  CHECK(batch.events(0).seq() == 7);
  CHECK_FALSE(batch.events(0).historical());
  CHECK(batch.events(0).meter().values(0).value() == 1.5);
  CHECK(batch.events(1).seq() == 8);
  CHECK(batch.events(1).historical());
  CHECK(batch.events(2).device_id().size() == 300);
  CHECK(batch.events(2).historical());

  // take() leaves an empty batch for the same gateway behind.
  CHECK(enc.events() == 0);
  v1::EventBatch empty;
  REQUIRE(empty.ParseFromString(enc.take()));
  CHECK(empty.gateway_id() == "lib-gw-01");
  CHECK(empty.events_size() == 0);
}
