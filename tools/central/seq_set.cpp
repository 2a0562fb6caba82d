#include "tools/central/seq_set.h"

#include <bit>

namespace gw::central {

namespace {
constexpr uint64_t kChunkMask = (uint64_t{1} << 16) - 1;
}  // namespace

bool SeqSet::insert(uint64_t seq) {
  const uint64_t chunk = seq >> kChunkBits;
  Chunk& bits = chunks_[chunk];  // value-initialized (all zero) when new
  const uint64_t bit = seq & kChunkMask;
  uint64_t& word = bits[bit / 64];
  const uint64_t mask = uint64_t{1} << (bit % 64);
  if (word & mask) return false;
  word |= mask;
  if (size_ == 0) {
    min_ = max_ = seq;
  } else {
    if (seq < min_) min_ = seq;
    if (seq > max_) max_ = seq;
  }
  ++size_;
  return true;
}

bool SeqSet::contains(uint64_t seq) const {
  auto it = chunks_.find(seq >> kChunkBits);
  if (it == chunks_.end()) return false;
  const uint64_t bit = seq & kChunkMask;
  return (it->second[bit / 64] >> (bit % 64)) & 1;
}

std::optional<uint64_t> SeqSet::next_absent(uint64_t from) const {
  uint64_t pos = from;
  for (;;) {
    const uint64_t chunk = pos >> kChunkBits;
    auto it = chunks_.find(chunk);
    if (it == chunks_.end()) return pos;
    const uint64_t base = chunk << kChunkBits;
    const uint64_t bit = pos & kChunkMask;
    uint64_t w = bit / 64;
    uint64_t holes = ~it->second[w] & (~uint64_t{0} << (bit % 64));
    while (holes == 0 && ++w < kWordsPerChunk) holes = ~it->second[w];
    if (holes != 0) return base + w * 64 + std::countr_zero(holes);
    if (chunk == kLastChunk) return std::nullopt;
    pos = (chunk + 1) << kChunkBits;
  }
}

std::optional<uint64_t> SeqSet::next_present(uint64_t from) const {
  const uint64_t first_chunk = from >> kChunkBits;
  auto it = chunks_.lower_bound(first_chunk);
  uint64_t start_bit = (it != chunks_.end() && it->first == first_chunk) ? (from & kChunkMask) : 0;
  for (; it != chunks_.end(); ++it, start_bit = 0) {
    uint64_t w = start_bit / 64;
    uint64_t present = it->second[w] & (~uint64_t{0} << (start_bit % 64));
    while (present == 0 && ++w < kWordsPerChunk) present = it->second[w];
    if (present != 0) return (it->first << kChunkBits) + w * 64 + std::countr_zero(present);
  }
  return std::nullopt;
}

std::vector<SeqRange> SeqSet::missing_ranges(uint64_t lo, uint64_t hi, std::size_t limit) const {
  std::vector<SeqRange> out;
  uint64_t pos = lo;
  while (pos <= hi && out.size() < limit) {
    const std::optional<uint64_t> absent = next_absent(pos);
    if (!absent || *absent > hi) break;
    const std::optional<uint64_t> present = next_present(*absent);
    // present > *absent, so present - 1 cannot underflow.
    const uint64_t last = (present && *present <= hi) ? *present - 1 : hi;
    out.push_back({*absent, last});
    if (last >= hi) break;
    pos = last + 1;
  }
  return out;
}

}  // namespace gw::central
