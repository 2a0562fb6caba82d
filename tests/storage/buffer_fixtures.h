// Shared helpers of the storage tests: a temporary folder, events as the router would make
// them, and looks at a buffer file through plain SQLite (not through the code under test).
#pragma once

#include <sqlite3.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "storage/event_buffer.h"

namespace gw::storage::testing {

namespace fs = std::filesystem;
namespace v1 = campus::gateway::v1;

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/gw-buffer-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string db() const { return (path / "buffer.db").string(); }
};

// A real small filesystem (tmpfs) for disk-full tests; needs root. `mounted` says whether it
// worked; where it cannot, tests fall back to an injected free-space figure (documented there).
struct SmallDisk {
  fs::path path;
  bool mounted = false;
  explicit SmallDisk(uint64_t bytes) {
    char tmpl[] = "/tmp/gw-small-disk-XXXXXX";
    path = mkdtemp(tmpl);
    const std::string opts = "size=" + std::to_string(bytes);
    mounted = ::mount("tmpfs", path.c_str(), "tmpfs", 0, opts.c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted) ::umount2(path.c_str(), MNT_DETACH);
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string db() const { return (path / "buffer.db").string(); }
};

inline std::unique_ptr<EventBuffer> open_buffer(const std::string& path, BufferOptions o = {}) {
  auto r = EventBuffer::open(path, std::move(o));
  INFO(r.status().message());
  REQUIRE(r.is_ok());
  return std::move(r).value();
}

inline BufferedEvent make_event(uint64_t seq, v1::EventClass cls, std::size_t payload_bytes = 200,
                                const std::string& device = "dev-1", int64_t time_us = 0) {
  v1::Event e;
  e.set_seq(seq);
  e.set_device_id(device);
  e.set_event_class(cls);
  e.set_gateway_time_us(time_us ? time_us : int64_t(1700000000000000 + seq));
  if (cls == v1::ACCESS) {
    e.mutable_access()->set_door("door-" + std::string(payload_bytes, 'd'));
  } else {
    auto* v = e.mutable_meter()->add_values();
    v->set_name(std::string(payload_bytes, 'v'));
    v->set_value(double(seq));
  }
  BufferedEvent b;
  b.seq = seq;
  b.event_class = cls;
  b.device_id = device;
  b.gateway_time_us = e.gateway_time_us();
  b.payload = e.SerializeAsString();
  return b;
}

inline std::vector<BufferedEvent> make_batch(uint64_t first_seq, std::size_t n, v1::EventClass cls,
                                             std::size_t payload_bytes = 200) {
  std::vector<BufferedEvent> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(make_event(first_seq + i, cls, payload_bytes));
  return out;
}

// Rows of one class (or all, with class 0) as stored, read with plain SQLite.
inline std::vector<uint64_t> stored_seqs(const std::string& path, int cls = 0) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  const std::string sql = cls ? "SELECT seq FROM events WHERE class=" + std::to_string(cls) +
                                    " ORDER BY seq"
                              : "SELECT seq FROM events ORDER BY seq";
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
  std::vector<uint64_t> out;
  while (sqlite3_step(st) == SQLITE_ROW) out.push_back(uint64_t(sqlite3_column_int64(st, 0)));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

inline int64_t sql_int(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
  int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

inline uint64_t file_size_or0(const std::string& p) {
  std::error_code ec;
  const auto n = fs::file_size(p, ec);
  return ec ? 0 : n;
}

}  // namespace gw::storage::testing
