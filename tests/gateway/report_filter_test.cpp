#include "gateway/report_filter.h"

#include <catch2/catch.hpp>

using gw::ReportFilter;
using gw::config::ReportPolicy;
using gw::drivers::PointReading;
using namespace std::chrono_literals;

namespace {
const ReportFilter::TimePoint t0{};

std::vector<std::size_t> indices(const std::vector<PointReading>& rs) {
  std::vector<std::size_t> out;
  for (const auto& r : rs) out.push_back(r.index);
  return out;
}
PointReading good(std::size_t i, double v) { return {i, v, true, {}}; }
PointReading bad(std::size_t i) { return {i, 0.0, false, "timeout"}; }
}  // namespace

TEST_CASE("without on_change every good reading is reported") {
  ReportFilter f({ReportPolicy{}});
  CHECK(f.select({good(0, 1.0)}, t0).size() == 1);
  CHECK(f.select({good(0, 1.0)}, t0 + 1s).size() == 1);
}

TEST_CASE("on_change reports only moves beyond the deadband") {
  ReportFilter f({ReportPolicy{true, 0.5, std::nullopt}});
  CHECK(f.select({good(0, 10.0)}, t0).size() == 1);   // first value
  CHECK(f.select({good(0, 10.4)}, t0 + 1s).empty());  // within the deadband
  CHECK(f.select({good(0, 10.5)}, t0 + 2s).empty());  // exactly the deadband: not beyond it
  CHECK(f.select({good(0, 10.6)}, t0 + 3s).size() == 1);
  // Compared with the last *reported* value, so slow drift is not lost.
  CHECK(f.select({good(0, 10.9)}, t0 + 4s).empty());
  CHECK(f.select({good(0, 11.2)}, t0 + 5s).size() == 1);
}

TEST_CASE("max_interval forces a report of an unchanged value") {
  ReportFilter f({ReportPolicy{true, 0.0, 60s}});
  CHECK(f.select({good(0, 5.0)}, t0).size() == 1);
  CHECK(f.select({good(0, 5.0)}, t0 + 59s).empty());
  CHECK(f.select({good(0, 5.0)}, t0 + 60s).size() == 1);
  CHECK(f.select({good(0, 5.0)}, t0 + 61s).empty());
}

TEST_CASE("a quality change is reported once each way") {
  ReportFilter f({ReportPolicy{true, 1.0, std::nullopt}});
  CHECK(f.select({good(0, 5.0)}, t0).size() == 1);
  auto r = f.select({bad(0)}, t0 + 1s);
  REQUIRE(r.size() == 1);
  CHECK_FALSE(r[0].good);
  CHECK(f.select({bad(0)}, t0 + 2s).empty());
  CHECK(f.select({good(0, 5.0)}, t0 + 3s).size() == 1);  // recovered, same value: reported
}

TEST_CASE("points are filtered independently") {
  ReportFilter f({ReportPolicy{true, 0.0, std::nullopt}, ReportPolicy{}});
  CHECK(indices(f.select({good(0, 1.0), good(1, 1.0)}, t0)) == std::vector<std::size_t>{0, 1});
  CHECK(indices(f.select({good(0, 1.0), good(1, 1.0)}, t0 + 1s)) == std::vector<std::size_t>{1});
  CHECK(indices(f.select({good(0, 2.0), good(1, 1.0)}, t0 + 2s)) ==
        std::vector<std::size_t>{0, 1});
}
