#include "tools/central/seq_set.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

namespace gw::central {
namespace {

std::vector<SeqRange> all_missing(const SeqSet& s) {
  return s.missing_ranges(s.min(), s.max(), SIZE_MAX);
}

TEST_CASE("a seq delivered twice is one member and reported as a duplicate") {
  SeqSet s;
  CHECK(s.insert(7));
  CHECK_FALSE(s.insert(7));
  CHECK(s.size() == 1);
  CHECK(s.contains(7));
  CHECK_FALSE(s.contains(8));
}

TEST_CASE("missing ranges are the holes between first and last, in order") {
  SeqSet s;
  for (uint64_t seq : {1, 2, 3, 7, 8, 10}) s.insert(seq);
  CHECK(all_missing(s) == std::vector<SeqRange>{{4, 6}, {9, 9}});
  CHECK(s.missing_ranges(1, 10, 1) == std::vector<SeqRange>{{4, 6}});
  CHECK(s.missing_ranges(0, 12, 10) == std::vector<SeqRange>{{0, 0}, {4, 6}, {9, 9}, {11, 12}});
}

TEST_CASE("a backlog older than the first live seq moves min down") {
  SeqSet s;
  s.insert(100);
  s.insert(50);
  CHECK(s.min() == 50);
  CHECK(s.max() == 100);
  CHECK(all_missing(s) == std::vector<SeqRange>{{51, 99}});
}

TEST_CASE("holes spanning chunks and absent chunks come out as one range") {
  SeqSet s;
  s.insert(10);
  s.insert(65535);
  s.insert(65536 * 5 + 3);  // chunks 1..4 never allocated
  CHECK(all_missing(s) == std::vector<SeqRange>{{11, 65534}, {65536, 65536 * 5 + 2}});
}

TEST_CASE("a jump to a huge seq costs one chunk and still reports exactly") {
  SeqSet s;
  s.insert(5);
  s.insert(1'000'000'000'000);
  CHECK(all_missing(s) == std::vector<SeqRange>{{6, 999'999'999'999}});
}

TEST_CASE("seqs at the very top of uint64 do not overflow") {
  SeqSet s;
  s.insert(UINT64_MAX);
  s.insert(UINT64_MAX - 2);
  CHECK(all_missing(s) == std::vector<SeqRange>{{UINT64_MAX - 1, UINT64_MAX - 1}});
  CHECK(s.missing_ranges(UINT64_MAX - 3, UINT64_MAX, 10) ==
        std::vector<SeqRange>{{UINT64_MAX - 3, UINT64_MAX - 3}, {UINT64_MAX - 1, UINT64_MAX - 1}});
}

TEST_CASE("ten million seqs with a few holes") {
  SeqSet s;
  constexpr uint64_t kN = 10'000'000;
  for (uint64_t seq = 1; seq <= kN; ++seq) {
    if (seq % 3'000'000 != 0) s.insert(seq);
  }
  CHECK(s.size() == kN - 3);
  CHECK(all_missing(s) == std::vector<SeqRange>{{3'000'000, 3'000'000},
                                                {6'000'000, 6'000'000},
                                                {9'000'000, 9'000'000}});
}

}  // namespace
}  // namespace gw::central
