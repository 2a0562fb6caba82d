#include "protocols/modbus_read_plan.h"

#include <catch2/catch.hpp>

using namespace gw::protocols;

namespace {
PointSpec at(RegisterTable table, uint16_t address, ValueType type) {
  PointSpec p;
  p.name = "p" + std::to_string(address);
  p.table = table;
  p.address = address;
  p.type = type;
  return p;
}
}  // namespace

TEST_CASE("adjacent registers share one request") {
  std::vector<PointSpec> pts = {at(RegisterTable::kHolding, 2, ValueType::kFloat32),
                                at(RegisterTable::kHolding, 0, ValueType::kUint32),
                                at(RegisterTable::kHolding, 4, ValueType::kUint16)};
  auto plan = plan_reads(pts);
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].start == 0);
  CHECK(plan[0].count == 5);
  CHECK(plan[0].points == std::vector<std::size_t>{1, 0, 2});
}

TEST_CASE("a gap splits requests unless max_gap allows it") {
  std::vector<PointSpec> pts = {at(RegisterTable::kHolding, 0, ValueType::kUint16),
                                at(RegisterTable::kHolding, 3, ValueType::kUint16)};
  CHECK(plan_reads(pts).size() == 2);
  auto plan = plan_reads(pts, {.max_registers = 125, .max_gap = 2});
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].count == 4);
  CHECK(plan_reads(pts, {.max_registers = 125, .max_gap = 1}).size() == 2);
}

TEST_CASE("tables are never mixed and limits are respected") {
  std::vector<PointSpec> pts = {at(RegisterTable::kHolding, 0, ValueType::kUint16),
                                at(RegisterTable::kInput, 1, ValueType::kUint16),
                                at(RegisterTable::kCoil, 0, ValueType::kBool),
                                at(RegisterTable::kCoil, 1, ValueType::kBool)};
  auto plan = plan_reads(pts);
  REQUIRE(plan.size() == 3);
  CHECK(plan[2].table == RegisterTable::kCoil);
  CHECK(plan[2].count == 2);

  std::vector<PointSpec> many;
  for (uint16_t a = 0; a < 130; a += 2) many.push_back(at(RegisterTable::kHolding, a, ValueType::kUint32));
  plan = plan_reads(many);
  REQUIRE(plan.size() == 2);
  CHECK(plan[0].count <= kMaxRegistersPerRead);
  CHECK(plan[0].count + plan[1].count == 130);
  // A device that rejects large reads.
  plan = plan_reads(many, {.max_registers = 10, .max_gap = 0});
  CHECK(plan.size() == 13);
  for (const auto& r : plan) CHECK(r.count <= 10);
}

TEST_CASE("overlapping points are served by the same request") {
  std::vector<PointSpec> pts = {at(RegisterTable::kHolding, 10, ValueType::kUint32),
                                at(RegisterTable::kHolding, 11, ValueType::kUint16)};
  auto plan = plan_reads(pts);
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].start == 10);
  CHECK(plan[0].count == 2);
}
