#include "tools/gatewayctl/offline.h"

#include <google/protobuf/util/json_util.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "gateway/config.h"
#include "gateway/driver_registry.h"
#include "protocols/topics.h"
#include "storage/event_buffer.h"
#include "storage/sqlite_db.h"
#include "tools/gatewayctl/format.h"
#include "tools/gatewayctl/help.h"
#include "tools/gatewayctl/json_util.h"

namespace gw::ctl {

namespace v1 = campus::gateway::v1;

namespace {

std::string buffer_path(const std::string& data_dir) {
  return (std::filesystem::path(data_dir) / "buffer.db").string();
}

// Whether the buffer file is there; a folder we may not look into says so instead of throwing.
bool buffer_exists(const std::string& path, std::string* why) {
  std::error_code ec;
  const bool there = std::filesystem::exists(path, ec);
  if (ec) *why = "cannot look at " + path + ": " + ec.message();
  return there;
}

}  // namespace

int run_check_config(const std::string& file, std::ostream& out, std::ostream& err) {
  config::LoadResult loaded = config::load_config(file);
  auto errors = loaded.errors;
  if (loaded.config) {
    auto more = check_drivers(*loaded.config);
    errors.insert(errors.end(), more.begin(), more.end());
  }
  for (const auto& e : errors) err << "gatewayctl: config error: " << e.to_string() << "\n";
  if (!errors.empty()) return kExitConfig;
  out << loaded.config->source_path << ": OK (" << loaded.config->devices.size() << " devices, "
      << loaded.config->buses.size() << " buses)\n";
  return kExitOk;
}

std::optional<std::string> data_dir_from_config(const std::string& config_file, std::ostream& err,
                                                int* exit) {
  config::LoadResult loaded = config::load_config(config_file);
  for (const auto& e : loaded.errors) err << "gatewayctl: config error: " << e.to_string() << "\n";
  if (!loaded.config) {
    *exit = kExitConfig;
    return std::nullopt;
  }
  return loaded.config->gateway.data_dir;
}

int run_offline_buffer(const std::string& data_dir, bool json, std::ostream& out,
                       std::ostream& err) {
  const std::string path = buffer_path(data_dir);
  std::string why;
  if (!buffer_exists(path, &why)) {
    err << "gatewayctl buffer: " << (why.empty() ? "no buffer at " + path : why) << "\n";
    return kExitUnavailable;
  }
  auto insp = storage::inspect_buffer(path);
  if (!insp) {
    err << "gatewayctl buffer: " << insp.status().message() << "\n";
    return kExitFailure;
  }
  const int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  auto age_s = [&](const storage::ClassStats& s) -> int64_t {
    return s.oldest_time_us ? std::max<int64_t>(0, (now_us - s.oldest_time_us) / 1000000) : 0;
  };
  uint64_t total = 0;
  Json classes = Json::object();
  for (auto cls : {v1::ACCESS, v1::ALARM, v1::TELEMETRY, v1::STATUS}) {
    const auto& s = insp->classes[cls];
    total += s.pending;
    Json c;
    c["pending"] = s.pending;
    c["bytes"] = s.bytes;
    c["oldest_age_s"] = age_s(s);
    classes[std::string(protocols::class_name(cls))] = std::move(c);
  }
  Json doc;
  doc["path"] = path;
  doc["schema_version"] = insp->schema_version;
  doc["next_seq"] = insp->next_seq;
  doc["pending"] = total;
  doc["classes"] = std::move(classes);
  if (json) {
    out << doc.dump() << "\n";
  } else {
    out << buffer_screen(doc, "", false);
  }
  return kExitOk;
}

Result<ExportSummary> export_events(const std::string& db_path, std::ostream& sink,
                                    std::optional<v1::EventClass> only_class,
                                    bool show_credentials) {
  // inspect_buffer checks that this is a gatewayd buffer at all before we read rows from it.
  if (auto insp = storage::inspect_buffer(db_path); !insp) return insp.status();
  auto db = storage::SqliteDb::open(db_path, /*read_only=*/true);
  if (!db) return db.status();
  // One statement reads one snapshot: rows committed meanwhile are not half-included.
  Result<storage::Statement> rows = db.value()->prepare(
      only_class ? "SELECT seq, class, device_id, gateway_time_us, payload FROM events "
                   "WHERE class = ?1 ORDER BY seq"
                 : "SELECT seq, class, device_id, gateway_time_us, payload FROM events "
                   "ORDER BY seq");
  if (!rows) return rows.status();
  if (only_class) rows.value().bind(1, static_cast<int64_t>(*only_class));

  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  opts.always_print_primitive_fields = true;
  ExportSummary summary;
  for (;;) {
    Result<bool> row = rows.value().step();
    if (!row) return row.status();
    if (!*row) break;
    const auto seq = static_cast<uint64_t>(rows.value().column_int64(0));
    const std::string_view payload = rows.value().column_blob(4);
    v1::Event event;
    if (!event.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
      summary.problems.push_back("seq " + std::to_string(seq) + ": payload (" +
                                 std::to_string(payload.size()) +
                                 " bytes) is not a campus.gateway.v1.Event; skipped");
      continue;
    }
    if (event.seq() != seq) {
      summary.problems.push_back("seq " + std::to_string(seq) + ": payload carries seq " +
                                 std::to_string(event.seq()) + "; exported as stored");
    }
    if (!show_credentials && event.has_access() && !event.access().credential().empty() &&
        !event.access().credential().starts_with("h:")) {
      event.mutable_access()->set_credential("[redacted]");
    }
    std::string line;
    if (!google::protobuf::util::MessageToJsonString(event, &line, opts).ok()) {
      summary.problems.push_back("seq " + std::to_string(seq) +
                                 ": cannot be printed as JSON; skipped");
      continue;
    }
    sink << line << '\n';
    if (summary.events == 0) summary.first_seq = seq;
    summary.last_seq = seq;
    ++summary.events;
  }
  if (!sink) return Status::io_error("writing the export failed");
  return summary;
}

int run_buffer_export(const std::string& data_dir, const std::string& file,
                      std::optional<v1::EventClass> only_class, bool show_credentials,
                      std::ostream& out, std::ostream& err) {
  const std::string path = buffer_path(data_dir);
  std::string why;
  if (!buffer_exists(path, &why)) {
    err << "gatewayctl: buffer export: " << (why.empty() ? "no buffer at " + path : why) << "\n";
    return kExitUnavailable;
  }
  Result<ExportSummary> summary = Status::ok();
  const bool to_stdout = file == "-";
  const std::string tmp = file + ".tmp";
  if (to_stdout) {
    summary = export_events(path, out, only_class, show_credentials);
    out.flush();
  } else {
    std::ofstream sink(tmp, std::ios::binary | std::ios::trunc);
    if (!sink) {
      err << "gatewayctl: buffer export: cannot write " << tmp << ": " << std::strerror(errno)
          << "\n";
      return kExitFailure;
    }
    summary = export_events(path, sink, only_class, show_credentials);
    sink.close();
    if (summary && !sink) summary = Status::io_error("writing " + tmp + " failed (disk full?)");
  }
  std::error_code ignored;
  if (!summary) {
    if (!to_stdout) std::filesystem::remove(tmp, ignored);
    err << "gatewayctl: buffer export: " << summary.status().message() << "\n";
    return kExitFailure;
  }
  if (!to_stdout) {
    std::error_code ec;
    std::filesystem::rename(tmp, file, ec);
    if (ec) {
      std::filesystem::remove(tmp, ignored);
      err << "gatewayctl: buffer export: cannot rename " << tmp << " to " << file << ": "
          << ec.message() << "\n";
      return kExitFailure;
    }
  }
  for (const std::string& p : summary->problems) err << "gatewayctl: buffer export: " << p << "\n";
  std::ostream& report = to_stdout ? err : out;
  report << "exported " << format_count(summary->events) << " events";
  if (summary->events) {
    report << " (seq " << summary->first_seq << ".." << summary->last_seq << ")";
  }
  report << " from " << path << " to " << (to_stdout ? "standard output" : file) << "\n";
  return summary->problems.empty() ? kExitOk : kExitFailure;
}

}  // namespace gw::ctl
