#include "tools/central/event_tally.h"

#include <catch2/catch.hpp>
#include <string>

#include "tools/central/event_format.h"

namespace gw::central {
namespace {

namespace v1 = campus::gateway::v1;

v1::Event make_event(uint64_t seq, const std::string& device, v1::EventClass c,
                     bool historical = false) {
  v1::Event e;
  e.set_seq(seq);
  e.set_device_id(device);
  e.set_event_class(c);
  e.set_historical(historical);
  return e;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST_CASE("a redelivered seq counts as received and duplicate, not as distinct") {
  EventTally t;
  t.record("gw1", make_event(1, "m1", v1::TELEMETRY));
  CHECK_FALSE(t.record("gw1", make_event(1, "m1", v1::TELEMETRY)));
  const std::string r = t.report_json();
  CHECK(contains(r, "\"received\":2,\"distinct\":1,\"duplicates\":1,\"gaps\":0"));
  CHECK(contains(r, "\"telemetry\":1"));
}

TEST_CASE("gaps and missing ranges cover seqs never seen between first and last") {
  EventTally t;
  for (uint64_t seq : {1, 2, 5, 9}) t.record("gw1", make_event(seq, "m1", v1::TELEMETRY));
  const std::string r = t.report_json();
  CHECK(contains(r, "\"gaps\":5,\"first_seq\":1,\"last_seq\":9"));
  CHECK(contains(r, "\"missing_ranges\":[[3,4],[6,8]]"));
}

TEST_CASE("out of order is judged per device and class, duplicates excluded") {
  EventTally t;
  t.record("gw1", make_event(10, "m1", v1::TELEMETRY));
  t.record("gw1", make_event(5, "gate", v1::ACCESS));     // other stream: in order
  t.record("gw1", make_event(7, "m1", v1::TELEMETRY));    // out of order
  t.record("gw1", make_event(10, "m1", v1::TELEMETRY));   // duplicate: not counted again
  t.record("gw1", make_event(6, "m1", v1::ALARM, true));  // other class: in order
  const std::string r = t.report_json();
  CHECK(contains(r, "\"out_of_order\":1"));
  CHECK(contains(r, "\"historical\":1"));
  CHECK(contains(r, "\"by_class\":{\"access\":1,\"alarm\":1,\"status\":0,\"telemetry\":2}"));
}

TEST_CASE("an expected gateway is listed before it sends anything") {
  EventTally t;
  t.expect_gateway("gw9");
  CHECK(contains(t.report_json(),
                 "\"gw9\":{\"received\":0,\"distinct\":0,\"duplicates\":0,\"gaps\":0,"
                 "\"first_seq\":null,\"last_seq\":null,\"missing_ranges\":[]"));
}

TEST_CASE("garbage, empty batches and unknown fields are decode errors") {
  v1::EventBatch batch;
  CHECK_FALSE(decode_event_batch("not a protobuf \xff\xff", &batch));
  CHECK_FALSE(decode_event_batch("", &batch));         // parses, but holds no events
  std::string unknown = "\x0a\x02gw\x12\x02\x08\x01";  // gateway_id, one event with seq 1
  CHECK(decode_event_batch(unknown, &batch));
  unknown += std::string("\xf8\x07\x01", 3);  // field 127, varint 1: not in the schema
  CHECK_FALSE(decode_event_batch(unknown, &batch));
}

TEST_CASE("topics are classified from their end") {
  CHECK(classify_topic("campus/n/lib/gw1/events/access").kind == TopicKind::kEvents);
  CHECK(classify_topic("campus/n/lib/gw1/events/access").gateway_id == "gw1");
  CHECK(classify_topic("a/b/n/lib/gw2/state").gateway_id == "gw2");
  CHECK(classify_topic("campus/n/lib/gw1/health").kind == TopicKind::kHealth);
  CHECK(classify_topic("campus/n/lib/gw1/events").kind == TopicKind::kOther);
}

TEST_CASE("raw card ids are redacted unless asked for; hashed ones are shown") {
  v1::Event e = make_event(3, "reader", v1::ACCESS);
  e.mutable_access()->set_credential("12345678");
  CHECK(contains(event_json_line("gw1", "t", e, false), "\"credential\":\"[redacted]\""));
  CHECK(contains(event_json_line("gw1", "t", e, true), "\"credential\":\"12345678\""));
  CHECK(contains(event_text_line("gw1", e, false), "card=[redacted]"));
  e.mutable_access()->set_credential("h:abcd");
  CHECK(contains(event_text_line("gw1", e, false), "card=h:abcd"));
}

TEST_CASE("event JSON uses proto field names and prints defaults") {
  v1::Event e = make_event(12, "meter-b1-01", v1::TELEMETRY);
  auto* v = e.mutable_meter()->add_values();
  v->set_name("energy_total");
  v->set_value(1234.56);
  v->set_unit("kWh");
  const std::string line = event_json_line("gw1", "campus/x/y/gw1/events/telemetry", e, false);
  CHECK(contains(line, "{\"gateway_id\":\"gw1\",\"topic\":\"campus/x/y/gw1/events/telemetry\","));
  CHECK(contains(line, "\"device_id\":\"meter-b1-01\""));
  CHECK(contains(line, "\"historical\":false"));
  CHECK(event_text_line("gw1", e, false) ==
        "gw1 seq=12 meter-b1-01 telemetry energy_total=1234.56 kWh");
}

}  // namespace
}  // namespace gw::central
