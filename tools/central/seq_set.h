// SeqSet is the set of event sequence numbers one gateway has delivered, as a sparse bitmap:
// 64 Ki-bit chunks in an ordered map, so ten million consecutive seqs cost about 1.2 MiB and a
// jump from seq 5 to seq 10^12 costs one more chunk, not a terabit. Seqs may arrive in any order
// (a backlog drains after live events). Not thread-safe; the owner serializes access.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace gw::central {

// An inclusive range [first, last] of sequence numbers.
struct SeqRange {
  uint64_t first = 0;
  uint64_t last = 0;
  bool operator==(const SeqRange&) const = default;
};

class SeqSet {
 public:
  // Adds seq; returns false when it was already present (a duplicate delivery).
  bool insert(uint64_t seq);
  bool contains(uint64_t seq) const;
  uint64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Smallest and largest member; only meaningful when !empty().
  uint64_t min() const { return min_; }
  uint64_t max() const { return max_; }

  // The first `limit` maximal runs of absent seqs inside [lo, hi], in ascending order. Costs one
  // pass over the chunks in [lo, hi] (about 150 k word reads for ten million seqs); absent chunks
  // are skipped whole.
  std::vector<SeqRange> missing_ranges(uint64_t lo, uint64_t hi, std::size_t limit) const;

 private:
  static constexpr unsigned kChunkBits = 16;  // 65536 seqs, 8 KiB per chunk
  static constexpr uint64_t kWordsPerChunk = (uint64_t{1} << kChunkBits) / 64;
  static constexpr uint64_t kLastChunk = UINT64_MAX >> kChunkBits;
  using Chunk = std::array<uint64_t, kWordsPerChunk>;

  // Smallest absent / present seq >= from, or nullopt when there is none up to UINT64_MAX.
  std::optional<uint64_t> next_absent(uint64_t from) const;
  std::optional<uint64_t> next_present(uint64_t from) const;

  std::map<uint64_t, Chunk> chunks_;  // chunk index (seq >> kChunkBits) -> bits
  uint64_t size_ = 0;
  uint64_t min_ = 0;
  uint64_t max_ = 0;
};

}  // namespace gw::central
