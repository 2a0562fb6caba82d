// The UHPPOTE codec against packets taken from uhppoted's own tests (uhppoted/uhppote-core
// messages/*_test.go): requests must match byte for byte, replies must decode to the values
// those tests assert. Then the edges uhppoted handles: empty records, overwritten records,
// v6.62 listener events, and bytes that are not what they claim to be.
#include "protocols/uhppote.h"

#include <catch2/catch.hpp>
#include <vector>

namespace u = gw::protocols::uhppote;

namespace {

constexpr uint32_t kSerial = 423187757;  // 0x1939552D, the controller in uhppoted's tests

// Built at static initialisation: a wrong length shows as a zero-padded packet, which the
// decoding checks below would then fail on.
u::Packet packet(std::initializer_list<uint8_t> bytes) {
  u::Packet p{};
  std::size_t i = 0;
  for (uint8_t b : bytes) {
    if (i < p.size()) p[i++] = b;
  }
  return p;
}

u::Packet zeros_after(std::initializer_list<uint8_t> head) {
  u::Packet p{};
  std::size_t i = 0;
  for (uint8_t b : head) p[i++] = b;
  return p;
}

// messages/get_status_test.go, TestUnmarshalGetStatusResponse; messages/events_test.go,
// TestUnmarshalEvent (the same bytes: a pushed event has the get-status layout).
const u::Packet kStatusReply = packet({
    0x17, 0x20, 0x00, 0x00, 0x2d, 0x55, 0x39, 0x19, 0x39, 0x00, 0x00, 0x00, 0x01, 0x00, 0x03, 0x01,
    0xaa, 0xe8, 0x5d, 0x00, 0x20, 0x19, 0x04, 0x19, 0x17, 0x00, 0x09, 0x06, 0x01, 0x00, 0x01, 0x01,
    0x00, 0x00, 0x01, 0x01, 0x09, 0x14, 0x37, 0x02, 0x11, 0x00, 0x00, 0x00, 0x21, 0x00, 0x00, 0x00,
    0x2b, 0x04, 0x01, 0x19, 0x04, 0x20, 0x00, 0x00, 0x93, 0x26, 0x04, 0x88, 0x08, 0x92, 0x00, 0x00,
});

// messages/get_event_test.go, TestUnmarshalGetEventResponse.
const u::Packet kEventReply = packet({
    0x17, 0xb0, 0x00, 0x00, 0x2d, 0x55, 0x39, 0x19, 0x08, 0x00, 0x00, 0x00, 0x02, 0x01, 0x03, 0x01,
    0xad, 0xe8, 0x5d, 0x00, 0x20, 0x19, 0x02, 0x10, 0x07, 0x12, 0x01, 0x06, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x4a, 0x26, 0x80, 0x39, 0x08, 0x92, 0x00, 0x00,
});

}  // namespace

TEST_CASE("uhppote requests match uhppoted's bytes", "[uhppote]") {
  // messages/get_status_test.go, TestMarshalGetStatusRequest
  CHECK(u::get_status_request(kSerial) ==
        zeros_after({0x17, 0x20, 0x00, 0x00, 0x2d, 0x55, 0x39, 0x19}));
  // messages/get_event_test.go, TestMarshalGetEventRequest (index 1)
  CHECK(u::get_event_request(kSerial, 1) ==
        zeros_after({0x17, 0xb0, 0x00, 0x00, 0x2d, 0x55, 0x39, 0x19, 0x01}));
  // messages/get_event_index_test.go, TestMarshalGetEventIndexRequest
  CHECK(u::get_event_index_request(kSerial) ==
        zeros_after({0x17, 0xb4, 0x00, 0x00, 0x2d, 0x55, 0x39, 0x19}));
  // messages/set_event_index_test.go, TestMarshalSetEventIndexRequest (index 17, magic word)
  CHECK(u::set_event_index_request(kSerial, 17) ==
        zeros_after({0x17, 0xb2, 0x00, 0x00, 0x2d, 0x55, 0x39, 0x19, 0x11, 0x00, 0x00, 0x00, 0x55,
                     0xaa, 0xaa, 0x55}));
  // messages/set_listener.go: address at 8, port (little-endian) at 12. 192.168.1.100:60001.
  CHECK(u::set_listener_request(kSerial, {192, 168, 1, 100}, 60001) ==
        zeros_after(
            {0x17, 0x90, 0x00, 0x00, 0x2d, 0x55, 0x39, 0x19, 0xc0, 0xa8, 0x01, 0x64, 0x61, 0xea}));
}

TEST_CASE("uhppote get-status reply decodes as uhppoted reads it", "[uhppote]") {
  auto s = u::decode_status(kStatusReply);
  REQUIRE(s.is_ok());
  CHECK(s->serial == kSerial);
  CHECK(s->event.index == 57);
  CHECK(s->event.type == u::kTypeSwipe);
  CHECK_FALSE(s->event.granted);
  CHECK(s->event.door == 3);
  CHECK(s->event.direction == u::kDirectionIn);
  CHECK(s->event.card == 6154410);
  REQUIRE(s->event.timestamp.has_value());
  CHECK(s->event.timestamp->digits() == "20190419170009");
  CHECK(s->event.reason == 6);
  CHECK(s->door_open == std::array<bool, 4>{true, false, true, true});
  CHECK(s->button == std::array<bool, 4>{false, false, true, true});
  CHECK(s->system_error == 0x09);
  REQUIRE(s->system_time.has_value());
  CHECK(s->system_time->digits() == "20190420143702");
  CHECK(s->sequence == 17);
  CHECK(s->special_info == 43);
  CHECK(s->relays == 0x04);
  CHECK(s->inputs == 0x01);
}

TEST_CASE("uhppote status with no event yet has no timestamp", "[uhppote]") {
  // messages/get_status_test.go, TestUnmarshalGetStatusResponseWithNoEvent
  const u::Packet p = packet({
      0x17, 0x20, 0x00, 0x00, 0xe5, 0xd8, 0x4f, 0x0d, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x16, 0x03,
      0x34, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x21,
      0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  });
  auto s = u::decode_status(p);
  REQUIRE(s.is_ok());
  CHECK(s->serial == 223336677);
  CHECK(s->event.index == 0);
  CHECK_FALSE(s->event.timestamp.has_value());
  CHECK(s->door_open == std::array<bool, 4>{true, true, false, false});
  REQUIRE(s->system_time.has_value());
  CHECK(s->system_time->digits() == "20210408160334");
}

TEST_CASE("uhppote get-event reply decodes as uhppoted reads it", "[uhppote]") {
  auto e = u::decode_event(kEventReply);
  REQUIRE(e.is_ok());
  CHECK(e->index == 8);
  CHECK(e->type == u::kTypeDoor);
  CHECK(e->granted);
  CHECK(e->door == 3);
  CHECK(e->direction == u::kDirectionIn);
  CHECK(e->card == 6154413);
  CHECK(e->reason == 6);
  REQUIRE(e->timestamp.has_value());
  CHECK(*e->timestamp == u::DateTime{2019, 2, 10, 7, 12, 1});
}

TEST_CASE("uhppote get-event past the newest record is an empty record", "[uhppote]") {
  // messages/get_event_test.go, TestUnmarshalGetEventResponseWithNoEvents
  auto e = u::decode_event(zeros_after({0x17, 0xb0, 0x00, 0x00, 0x2d, 0x55, 0x39, 0x19}));
  REQUIRE(e.is_ok());
  CHECK(e->index == 0);
  CHECK(e->type == u::kTypeNone);
  CHECK_FALSE(e->timestamp.has_value());
}

TEST_CASE("uhppote overwritten record decodes with its type only", "[uhppote]") {
  u::Packet p = zeros_after({0x17, 0xb0, 0x00, 0x00, 0x2d, 0x55, 0x39, 0x19, 0x05, 0, 0, 0, 0xff});
  p[13] = 0x7f;  // whatever follows an overwritten marker is not read
  p[20] = 0xee;
  auto e = u::decode_event(p);
  REQUIRE(e.is_ok());
  CHECK(e->type == u::kTypeOverwritten);
  CHECK(e->index == 5);
}

TEST_CASE("uhppote get-event-index and set-event-index replies", "[uhppote]") {
  // messages/get_event_index_test.go, TestUnmarshalGetEventIndexResponse
  auto i =
      u::decode_event_index(zeros_after({0x17, 0xb4, 0x00, 0x00, 0x2d, 0x55, 0x39, 0x19, 0x11}));
  REQUIRE(i.is_ok());
  CHECK(*i == 17);
  // messages/set_event_index_test.go, TestUnmarshalSetEventIndexResponse
  auto c = u::decode_set_event_index(
      zeros_after({0x17, 0xb2, 0x00, 0x00, 0x2d, 0x55, 0x39, 0x19, 0x01}));
  REQUIRE(c.is_ok());
  CHECK(*c);
}

TEST_CASE("uhppote v6.62 listener event with start byte 0x19", "[uhppote]") {
  // messages/events_test.go, TestUnmarshalEventV6_62: same bytes, first byte 0x19.
  u::Packet p = kStatusReply;
  p[0] = 0x19;
  auto s = u::decode_status(p);
  REQUIRE(s.is_ok());
  CHECK(s->event.index == 57);
  // 0x19 is only ever a listener event: a get-event reply starting 0x19 is rejected.
  u::Packet q = kEventReply;
  q[0] = 0x19;
  auto e = u::decode_event(q);
  REQUIRE_FALSE(e.is_ok());
  CHECK_THAT(e.status().message(), Catch::Contains("start byte 0x19"));
}

TEST_CASE("uhppote decoders reject what is not the expected packet", "[uhppote]") {
  SECTION("wrong function code (uhppoted's ...WithInvalidMsgType)") {
    u::Packet p = kEventReply;
    p[1] = 0x94;
    auto e = u::decode_event(p);
    REQUIRE_FALSE(e.is_ok());
    CHECK_THAT(e.status().message(), Catch::Contains("0x94") && Catch::Contains("0xB0"));
    CHECK_FALSE(u::decode_status(kEventReply).is_ok());
  }
  SECTION("wrong length") {
    std::vector<uint8_t> short_packet(kStatusReply.begin(), kStatusReply.begin() + 63);
    auto s = u::decode_status(short_packet);
    REQUIRE_FALSE(s.is_ok());
    CHECK_THAT(s.status().message(), Catch::Contains("63 bytes"));
    std::vector<uint8_t> long_packet(kStatusReply.begin(), kStatusReply.end());
    long_packet.push_back(0);
    CHECK_FALSE(u::decode_status(long_packet).is_ok());
    CHECK_FALSE(u::decode_header({}).is_ok());
  }
  SECTION("bad start byte") {
    u::Packet p = kStatusReply;
    p[0] = 0x18;
    CHECK_FALSE(u::decode_status(p).is_ok());
  }
  SECTION("a bool that is neither 0 nor 1") {
    u::Packet p = kEventReply;
    p[13] = 0x02;
    auto e = u::decode_event(p);
    REQUIRE_FALSE(e.is_ok());
    CHECK_THAT(e.status().message(), Catch::Contains("granted") && Catch::Contains("offset 13"));
  }
  SECTION("a timestamp that is not BCD") {
    u::Packet p = kEventReply;
    p[23] = 0x1A;  // day
    auto e = u::decode_event(p);
    REQUIRE_FALSE(e.is_ok());
    CHECK_THAT(e.status().message(), Catch::Contains("0x1A is not BCD"));
  }
  SECTION("a BCD timestamp that is no date") {
    u::Packet p = kEventReply;
    p[22] = 0x02;
    p[23] = 0x30;  // 30 February
    auto e = u::decode_event(p);
    REQUIRE_FALSE(e.is_ok());
    CHECK_THAT(e.status().message(), Catch::Contains("20190230071201"));
  }
}

TEST_CASE("uhppote BCD date and time", "[uhppote]") {
  uint8_t b[7];
  u::encode_datetime({2024, 2, 29, 23, 59, 58}, b);
  const uint8_t expected[7] = {0x20, 0x24, 0x02, 0x29, 0x23, 0x59, 0x58};
  CHECK(std::equal(std::begin(b), std::end(b), std::begin(expected)));
  auto t = u::decode_datetime(b);
  REQUIRE(t.is_ok());
  CHECK(**t == u::DateTime{2024, 2, 29, 23, 59, 58});
  // types/datetime.go: "some uninitialised controllers default to 2000-00-00 00:00:00"
  const uint8_t uninitialised[7] = {0x20, 0, 0, 0, 0, 0, 0};
  auto none = u::decode_datetime(uninitialised);
  REQUIRE(none.is_ok());
  CHECK_FALSE(none->has_value());
  const uint8_t not_leap[7] = {0x20, 0x23, 0x02, 0x29, 0x00, 0x00, 0x00};
  CHECK_FALSE(u::decode_datetime(not_leap).is_ok());
  const uint8_t bad_hour[7] = {0x20, 0x23, 0x01, 0x01, 0x24, 0x00, 0x00};
  CHECK_FALSE(u::decode_datetime(bad_hour).is_ok());
}

TEST_CASE("uhppote replies round-trip through the decoders", "[uhppote]") {
  u::ControllerStatus s;
  s.serial = 405419896;
  s.event = {1234,
             u::kTypeSwipe,
             true,
             1,
             u::kDirectionOut,
             10058400,
             u::DateTime{2025, 12, 31, 23, 59, 59},
             u::kReasonSwipe};
  s.door_open = {false, true, false, false};
  s.button = {true, false, false, false};
  s.system_time = u::DateTime{2026, 1, 1, 0, 0, 1};
  s.sequence = 99;
  s.relays = 0x01;
  auto back = u::decode_status(u::status_reply(s));
  REQUIRE(back.is_ok());
  CHECK(*back == s);
  auto pushed = u::decode_status(u::pushed_event(s, true));
  REQUIRE(pushed.is_ok());
  CHECK(*pushed == s);

  auto e = u::decode_event(u::event_reply(s.serial, s.event));
  REQUIRE(e.is_ok());
  CHECK(*e == s.event);

  auto rq = u::decode_request(u::set_event_index_request(s.serial, 77));
  REQUIRE(rq.is_ok());
  CHECK(rq->function == u::kSetEventIndex);
  CHECK(rq->index == 77);
  CHECK(rq->magic_ok);
  auto listener = u::decode_request(u::set_listener_request(s.serial, {127, 0, 0, 1}, 60001));
  REQUIRE(listener.is_ok());
  CHECK(listener->address == std::array<uint8_t, 4>{127, 0, 0, 1});
  CHECK(listener->port == 60001);
}

TEST_CASE("uhppote reason texts follow uhppoted's table", "[uhppote]") {
  CHECK(u::reason_text(0x01) == "swipe");
  CHECK(u::reason_text(0x06) == "denied: no privilege");
  CHECK(u::reason_text(0x26) == "forced open");
  CHECK(u::reason_text(0x2D) == "remote open door by USB reader");
  CHECK(u::reason_text(0x02) == "reason 0x02");  // reserved
  CHECK(u::reason_text(0xEE) == "reason 0xEE");
}
