// Recovery of a damaged buffer file: move it aside, copy what can still be read into a fresh
// file at the same path, and say what happened. Used by EventBuffer::open_or_recover() at start,
// so a damaged file costs the events that cannot be read, never a crash loop.
//
// What is kept: every events row SQLite can still return (seq, class, payload, commit time and
// pinned flag unchanged), the device cursors, the state rows and unannounced evictions. next_seq
// of the fresh file is above everything the damaged file or the SeqFloor file knew of, so no
// seq is handed out twice. When rows could not be read (or the old next_seq is unknown), an
// eviction record with reason "corrupt_file" covers the seqs that may be missing, so centrals
// are told by a gap event. The damaged file stays as "<path>.corrupt-<UTC time>" for analysis.
#pragma once

#include <string>

#include "protocols/status.h"
#include "storage/event_buffer.h"

namespace gw::storage {

// `reason`: why the file is considered damaged (for the report). `wall_now_us` names the moved
// file. Fails (kUnavailable) when the file cannot be moved or the fresh one cannot be written.
Result<RecoveryReport> set_aside_and_salvage(const std::string& path, const std::string& reason,
                                             int64_t wall_now_us);

}  // namespace gw::storage
