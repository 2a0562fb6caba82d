#include "protocols/modbus_tcp.h"

#include <catch2/catch.hpp>

namespace mtcp = gw::protocols::modbus_tcp;
namespace rtu = gw::protocols::modbus_rtu;
using gw::protocols::RegisterTable;
using Bytes = std::vector<uint8_t>;

TEST_CASE("a read request is an MBAP header and a function 3/4/1/2 PDU") {
  CHECK(mtcp::build_read_request(0x1234, 7, RegisterTable::kHolding, 100, 10) ==
        std::vector<uint8_t>{0x12, 0x34, 0, 0, 0, 6, 7, 3, 0, 100, 0, 10});
  CHECK(mtcp::build_read_request(1, 1, RegisterTable::kInput, 0x0102, 2)[7] == 4);
  CHECK(mtcp::build_read_request(1, 1, RegisterTable::kCoil, 0, 9)[7] == 1);
  CHECK(mtcp::build_read_request(1, 1, RegisterTable::kDiscrete, 0, 9)[7] == 2);
}

TEST_CASE("a good answer gives its registers") {
  const std::vector<uint8_t> frame{0x12, 0x34, 0, 0, 0, 7, 7, 3, 4, 0x00, 0x2A, 0xFF, 0xFE};
  auto r = mtcp::parse_read_response(frame, 0x1234, 7, RegisterTable::kHolding, 2);
  REQUIRE(r.outcome == rtu::Response::Outcome::kGood);
  CHECK(r.registers == std::vector<uint16_t>{42, 0xFFFE});
  CHECK(r.frame_length == frame.size());
}

TEST_CASE("bits come least significant first") {
  const std::vector<uint8_t> frame{0, 1, 0, 0, 0, 5, 1, 1, 2, 0b00000101, 0b1};
  auto r = mtcp::parse_read_response(frame, 1, 1, RegisterTable::kCoil, 9);
  REQUIRE(r.outcome == rtu::Response::Outcome::kGood);
  CHECK(r.bits == std::vector<uint8_t>{1, 0, 1, 0, 0, 0, 0, 0, 1});
}

TEST_CASE("answers that cannot be trusted name what is wrong") {
  SECTION("another transaction") {
    auto r = mtcp::parse_read_response(Bytes{0, 2, 0, 0, 0, 5, 1, 3, 2, 0, 1}, 1, 1,
                                       RegisterTable::kHolding, 1);
    CHECK(r.error == rtu::Error::kWrongTransaction);
    CHECK(r.message == "transaction id 2 (expected 1)");
  }
  SECTION("another unit") {
    auto r = mtcp::parse_read_response(Bytes{0, 1, 0, 0, 0, 5, 9, 3, 2, 0, 1}, 1, 1,
                                       RegisterTable::kHolding, 1);
    CHECK(r.error == rtu::Error::kWrongUnit);
  }
  SECTION("protocol id is not Modbus") {
    auto h = mtcp::parse_header(std::vector<uint8_t>{0, 1, 0, 7, 0, 5, 1});
    REQUIRE_FALSE(h);
    CHECK(h.status().message().find("protocol id 7") != std::string::npos);
  }
  SECTION("impossible length") {
    CHECK_FALSE(mtcp::parse_header(std::vector<uint8_t>{0, 1, 0, 0, 0, 1, 1}));
    CHECK_FALSE(mtcp::parse_header(std::vector<uint8_t>{0, 1, 0, 0, 1, 0, 1}));
    CHECK(mtcp::parse_header(std::vector<uint8_t>{0, 1, 0, 0, 0, 254, 1}));
  }
  SECTION("byte count disagrees with the request") {
    auto r = mtcp::parse_read_response(Bytes{0, 1, 0, 0, 0, 5, 1, 3, 2, 0, 1}, 1, 1,
                                       RegisterTable::kHolding, 2);
    CHECK(r.error == rtu::Error::kBadByteCount);
  }
  SECTION("an exception is a well-formed refusal") {
    auto r = mtcp::parse_read_response(Bytes{0, 1, 0, 0, 0, 3, 1, 0x83, 2}, 1, 1,
                                       RegisterTable::kHolding, 2);
    CHECK(r.error == rtu::Error::kException);
    CHECK(r.exception_code == 2);
  }
  SECTION("length field and frame disagree") {
    auto r = mtcp::parse_read_response(Bytes{0, 1, 0, 0, 0, 9, 1, 3, 2, 0, 1}, 1, 1,
                                       RegisterTable::kHolding, 1);
    CHECK(r.error == rtu::Error::kBadByteCount);
  }
}
