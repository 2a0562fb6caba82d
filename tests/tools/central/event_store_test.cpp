// EventStore on real SQLite files: dedup on (gateway_id, seq), two writers on one file, gaps and
// announced gaps, bad targets.
#include "tools/central/event_store.h"

#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <thread>

namespace {

namespace fs = std::filesystem;
namespace v1 = campus::gateway::v1;
using gw::central::EventRow;
using gw::central::SeqRange;

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("gw-store-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  static std::atomic<int>& counter() {
    static std::atomic<int> c{0};
    return c;
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

v1::Event meter_event(uint64_t seq) {
  v1::Event e;
  e.set_seq(seq);
  e.set_device_id("meter-1");
  e.set_kind(v1::ENERGY_METER);
  e.set_event_class(v1::TELEMETRY);
  e.set_gateway_time_us(1'700'000'000'000'000 + int64_t(seq));
  auto* v = e.mutable_meter()->add_values();
  v->set_name("energy_total");
  v->set_value(double(seq));
  v->set_unit("kWh");
  return e;
}

std::vector<EventRow> rows(const std::string& gateway, uint64_t first, uint64_t last) {
  std::vector<EventRow> out;
  for (uint64_t s = first; s <= last; ++s)
    out.push_back(gw::central::make_row(gateway, meter_event(s)));
  return out;
}

std::unique_ptr<gw::central::EventStore> open(const std::string& path, const std::string& who) {
  auto store = gw::central::open_event_store(path, who);
  REQUIRE(store.is_ok());
  return std::move(store).value();
}

}  // namespace

TEST_CASE("a row keeps what the event said") {
  v1::Event e = meter_event(42);
  e.set_historical(true);
  const EventRow r = gw::central::make_row("lib-gw-01", e);
  CHECK(r.gateway_id == "lib-gw-01");
  CHECK(r.seq == 42);
  CHECK(r.event_class == "telemetry");
  CHECK(r.historical);
  CHECK(r.body_json.find("\"energy_total\"") != std::string::npos);
  v1::Event back;
  REQUIRE(back.ParseFromString(r.payload));
  CHECK(back.seq() == 42);
  CHECK_FALSE(r.announced_gap);

  v1::Event gap;
  gap.set_seq(50);
  gap.set_event_class(v1::STATUS);
  gap.mutable_gap()->set_first_seq(43);
  gap.mutable_gap()->set_last_seq(47);
  gap.mutable_gap()->set_count(5);
  const EventRow g = gw::central::make_row("lib-gw-01", gap);
  REQUIRE(g.announced_gap);
  CHECK(*g.announced_gap == SeqRange{43, 47});
}

TEST_CASE("the same event stored twice is one row; the second time counts as a duplicate") {
  TempDir dir;
  auto store = open(dir.file("central.db"), "c1");
  auto first = store->insert(rows("gw-a", 1, 10));
  REQUIRE(first.is_ok());
  CHECK(first->inserted == 10);
  CHECK(first->duplicates == 0);
  auto again = store->insert(rows("gw-a", 5, 15));
  REQUIRE(again.is_ok());
  CHECK(again->inserted == 5);
  CHECK(again->duplicates == 6);
  // Another gateway's seq 1 is another event.
  auto other = store->insert(rows("gw-b", 1, 3));
  REQUIRE(other.is_ok());
  CHECK(other->inserted == 3);

  auto summary = store->summarize(10);
  REQUIRE(summary.is_ok());
  REQUIRE(summary->size() == 2);
  CHECK((*summary)[0].gateway_id == "gw-a");
  CHECK((*summary)[0].events == 15);
  CHECK((*summary)[0].first_seq == 1);
  CHECK((*summary)[0].last_seq == 15);
  CHECK((*summary)[0].missing == 0);
  CHECK((*summary)[1].events == 3);
}

TEST_CASE("two writers on one file lose nothing and store each event once") {
  TempDir dir;
  const std::string path = dir.file("shared.db");
  { auto create = open(path, "setup"); }
  // Overlapping halves, in many small transactions, from two connections at once.
  auto writer = [&](const std::string& who, uint64_t first, uint64_t last, uint64_t& inserted,
                    uint64_t& dups, bool& ok) {
    auto store = open(path, who);
    ok = true;
    for (uint64_t s = first; s <= last; s += 10) {
      auto r = store->insert(rows("gw-a", s, std::min(last, s + 9)));
      if (!r) {
        ok = false;
        return;
      }
      inserted += r->inserted;
      dups += r->duplicates;
    }
  };
  uint64_t ins1 = 0, ins2 = 0, dup1 = 0, dup2 = 0;
  bool ok1 = false, ok2 = false;
  std::thread t1(writer, "c1", 1, 3000, std::ref(ins1), std::ref(dup1), std::ref(ok1));
  std::thread t2(writer, "c2", 2001, 5000, std::ref(ins2), std::ref(dup2), std::ref(ok2));
  t1.join();
  t2.join();
  REQUIRE(ok1);
  REQUIRE(ok2);
  CHECK(ins1 + ins2 == 5000);
  CHECK(dup1 + dup2 == 1000);  // the overlap 2001..3000 was offered twice
  auto store = open(path, "check");
  auto summary = store->summarize(10);
  REQUIRE(summary.is_ok());
  REQUIRE(summary->size() == 1);
  CHECK((*summary)[0].events == 5000);
  CHECK((*summary)[0].missing == 0);
}

TEST_CASE("holes are reported, minus the seqs the gateway announced as dropped") {
  TempDir dir;
  auto store = open(dir.file("gaps.db"), "c1");
  REQUIRE(store->insert(rows("gw-a", 1, 10)).is_ok());
  REQUIRE(store->insert(rows("gw-a", 21, 30)).is_ok());  // 11..20 missing
  REQUIRE(store->insert(rows("gw-a", 36, 40)).is_ok());  // 31..35 missing
  v1::Event gap;
  gap.set_seq(41);
  gap.set_event_class(v1::STATUS);
  gap.mutable_gap()->set_first_seq(31);
  gap.mutable_gap()->set_last_seq(35);
  const std::vector<EventRow> announce{gw::central::make_row("gw-a", gap)};
  REQUIRE(store->insert(announce).is_ok());
  auto summary = store->summarize(10);
  REQUIRE(summary.is_ok());
  const auto& g = (*summary)[0];
  CHECK(g.events == 26);
  CHECK(g.last_seq == 41);
  CHECK(g.missing == 10);
  CHECK(g.announced_dropped == 5);
  REQUIRE(g.missing_ranges.size() == 1);
  CHECK(g.missing_ranges[0] == SeqRange{11, 20});

  // A late delivery closes the hole.
  REQUIRE(store->insert(rows("gw-a", 11, 20)).is_ok());
  auto after = store->summarize(10);
  REQUIRE(after.is_ok());
  CHECK((*after)[0].missing == 0);
}

TEST_CASE("subtract_announced splits holes around announcements") {
  using gw::central::subtract_announced;
  auto m = subtract_announced({{10, 30}}, {{12, 14}, {20, 25}, {13, 16}}, 10);
  CHECK(m.count == 21 - 5 - 6);
  CHECK(m.announced == 11);
  REQUIRE(m.ranges.size() == 3);
  CHECK(m.ranges[0] == SeqRange{10, 11});
  CHECK(m.ranges[1] == SeqRange{17, 19});
  CHECK(m.ranges[2] == SeqRange{26, 30});

  auto covered = subtract_announced({{5, 6}, {9, 9}}, {{1, 100}}, 10);
  CHECK(covered.count == 0);
  CHECK(covered.announced == 3);

  auto limited = subtract_announced({{1, 1}, {3, 3}, {5, 5}}, {}, 2);
  CHECK(limited.count == 3);
  CHECK(limited.ranges.size() == 2);

  auto top = subtract_announced({{UINT64_MAX - 1, UINT64_MAX}}, {{UINT64_MAX, UINT64_MAX}}, 5);
  CHECK(top.count == 1);
  CHECK(top.announced == 1);
}

TEST_CASE("bad store targets are refused with a reason") {
  TempDir dir;
  auto unknown = gw::central::open_event_store("mysql://db/central", "c1");
  REQUIRE_FALSE(unknown.is_ok());
  CHECK(unknown.status().message().find("mysql://") != std::string::npos);

  const std::string garbage = dir.file("garbage.db");
  std::ofstream(garbage) << std::string(8192, 'x');
  auto bad = gw::central::open_event_store(garbage, "c1");
  REQUIRE_FALSE(bad.is_ok());
  CHECK_FALSE(bad.status().message().empty());

  auto nowhere = gw::central::open_event_store(dir.file("no/such/dir/central.db"), "c1");
  REQUIRE_FALSE(nowhere.is_ok());
}
