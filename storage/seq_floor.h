// SeqFloor is a small file next to the buffer ("buffer.db.seq") that holds a seq no event has
// reached yet: every seq ever handed out is below it. The buffer keeps next_seq in its own meta
// row; this file is the second copy that survives when the database file does not (a corrupt
// file moved aside), so that a rebuilt buffer never hands out a seq again.
//
// It is written ahead in blocks (kBlock seqs), atomically (temporary file, fsync, rename, fsync
// of the folder), and only when the buffer comes within half a block of it, so it costs one
// small write per half a million events. Not thread-safe: the buffer's owner thread.
#pragma once

#include <cstdint>
#include <string>

#include "protocols/status.h"

namespace gw::storage {

class SeqFloor {
 public:
  static constexpr uint64_t kBlock = 1u << 20;

  explicit SeqFloor(std::string path) : path_(std::move(path)) {}

  // Reads the file; 0 when there is none (a new buffer, or one written before this file
  // existed). A file that cannot be parsed is an error naming it.
  Result<uint64_t> load();
  // Makes sure the stored floor is above `next_seq` by at least half a block, writing a new
  // one when it is not. A failed write (disk full) is returned; the caller may go on, the
  // floor is then only as good as the last write.
  Status ensure_above(uint64_t next_seq);
  uint64_t value() const { return value_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  uint64_t value_ = 0;
};

}  // namespace gw::storage
