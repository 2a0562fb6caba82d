// Clock safety: retention ages rows on the buffer clock (running time, carried across restarts),
// so wall-clock steps — an RTC back at 1970, an NTP step of hours or years — purge nothing that
// is still within max_age.
#include <catch2/catch.hpp>

#include "buffer_fixtures.h"

using namespace gw::storage;
using namespace gw::storage::testing;

namespace {

constexpr int64_t kHour = 3600LL * 1000000;
constexpr int64_t kDay = 24 * kHour;

// A monotonic source the test moves by hand.
struct FakeMonotonic {
  int64_t now = 1000;
  BufferClock::Source source() {
    return [this] { return now; };
  }
};

BufferOptions with_clock(FakeMonotonic& m, int64_t telemetry_max_age) {
  BufferOptions o;
  o.monotonic_us = m.source();
  o.classes[v1::TELEMETRY].max_age_us = telemetry_max_age;
  return o;
}

}  // namespace

TEST_CASE("retention purges by buffer-clock age, and records what it purged") {
  TempDir dir;
  FakeMonotonic mono;
  auto buf = open_buffer(dir.db(), with_clock(mono, 2 * kDay));
  REQUIRE(buf->append_batch(make_batch(1, 10, v1::TELEMETRY)).is_ok());
  mono.now += kDay;
  REQUIRE(buf->append_batch(make_batch(11, 10, v1::TELEMETRY)).is_ok());
  mono.now += kDay + kHour;  // the first ten are 2 days 1 hour old, the next ten 1 day 1 hour
  REQUIRE(buf->maintain().is_ok());
  CHECK(stored_seqs(dir.db(), v1::TELEMETRY).front() == 11);
  CHECK(buf->stats(v1::TELEMETRY).pending == 10);
  const auto ev = buf->take_evictions();
  REQUIRE(ev.size() == 1);
  CHECK(ev.front().reason == "max_age");
  CHECK(ev.front().first_seq == 1);
  CHECK(ev.front().last_seq == 10);
  CHECK(ev.front().count == 10);
  CHECK(buf->oldest_age_us(v1::TELEMETRY) == kDay + kHour);
}

TEST_CASE("wall-clock steps purge nothing: rows stamped in 1970, 2099 and now all stay") {
  TempDir dir;
  FakeMonotonic mono;
  auto buf = open_buffer(dir.db(), with_clock(mono, 2 * kDay));
  // The RTC came back as 1970; then NTP stepped it forward by decades; then someone set it
  // years ahead. gateway_time_us follows the wall clock; ages do not.
  std::vector<BufferedEvent> rows;
  rows.push_back(make_event(1, v1::TELEMETRY, 50, "m", 1000000));                // 1970
  rows.push_back(make_event(2, v1::TELEMETRY, 50, "m", 1767225600LL * 1000000));  // 2026
  rows.push_back(make_event(3, v1::TELEMETRY, 50, "m", 4070908800LL * 1000000));  // 2099
  REQUIRE(buf->append_batch(rows).is_ok());
  mono.now += kDay;  // one day of running time
  REQUIRE(buf->maintain().is_ok());
  CHECK(stored_seqs(dir.db(), v1::TELEMETRY) == std::vector<uint64_t>{1, 2, 3});
  CHECK(buf->take_evictions().empty());
  CHECK(buf->oldest_age_us(v1::TELEMETRY) == kDay);
  // And order stays by seq, whatever the stamps say.
  auto leased = buf->lease(v1::TELEMETRY, 10, 1u << 20);
  REQUIRE(leased.is_ok());
  REQUIRE(leased->size() == 3);
  CHECK(leased->at(0).seq == 1);
  CHECK(leased->at(2).seq == 3);
}

TEST_CASE("the buffer clock continues across a restart and a reboot, never back") {
  TempDir dir;
  FakeMonotonic mono;
  {
    auto buf = open_buffer(dir.db(), with_clock(mono, 2 * kDay));
    REQUIRE(buf->append_batch(make_batch(1, 5, v1::TELEMETRY)).is_ok());
    mono.now += kDay;
    REQUIRE(buf->append_batch(make_batch(6, 5, v1::TELEMETRY)).is_ok());
  }
  // A reboot: the monotonic clock starts from almost zero again.
  FakeMonotonic after_reboot;
  after_reboot.now = 5;
  auto buf = open_buffer(dir.db(), with_clock(after_reboot, 2 * kDay));
  CHECK(buf->clock().now_us() >= kDay);
  CHECK(buf->oldest_age_us(v1::TELEMETRY) == kDay);
  after_reboot.now += kDay + kHour;  // the first five are now just over two days old
  REQUIRE(buf->maintain().is_ok());
  CHECK(stored_seqs(dir.db(), v1::TELEMETRY) == std::vector<uint64_t>{6, 7, 8, 9, 10});
}

TEST_CASE("the wall clock is judged plausible only from 2025 on") {
  CHECK_FALSE(wall_clock_state(0).plausible);                        // RTC reset
  CHECK_FALSE(wall_clock_state(946684800LL * 1000000).plausible);    // 2000
  CHECK(wall_clock_state(kEarliestPlausibleWallUs).plausible);
  CHECK_FALSE(wall_clock_state(0).trusted());
}
