// The commands that need no daemon and read local files: check-config (the daemon's own
// validation and messages), the offline buffer inspection, and buffer export. The buffer file is
// opened read-only: WAL readers never block gatewayd writing it, and nothing here can change it.
// One thread.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "campus/gateway/v1/gateway.pb.h"
#include "protocols/status.h"

namespace gw::ctl {

// `check-config FILE`: exit 0 with "FILE: OK (N devices, M buses)", or 78 with one
// "gatewayctl: config error: ..." line per problem.
int run_check_config(const std::string& file, std::ostream& out, std::ostream& err);

// data_dir of a config file; prints the config errors (exit 78 in *exit) when it does not load.
std::optional<std::string> data_dir_from_config(const std::string& config_file, std::ostream& err,
                                                int* exit);

// `buffer --data-dir DIR`: the buffer file's counts per class (the layout of buffer_screen()).
int run_offline_buffer(const std::string& data_dir, bool json, std::ostream& out,
                       std::ostream& err);

struct ExportSummary {
  uint64_t events = 0;
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
  std::vector<std::string> problems;  // rows whose payload does not decode (skipped)
};

// Writes every event of the buffer file at db_path (one class, when given) to sink as JSON
// lines, in seq order. Raw card ids become "[redacted]" unless show_credentials.
Result<ExportSummary> export_events(const std::string& db_path, std::ostream& sink,
                                    std::optional<campus::gateway::v1::EventClass> only_class,
                                    bool show_credentials);

// `buffer export FILE`: FILE "-" is standard output; a file is written as FILE.tmp and renamed,
// so a half-written export never looks complete.
int run_buffer_export(const std::string& data_dir, const std::string& file,
                      std::optional<campus::gateway::v1::EventClass> only_class,
                      bool show_credentials, std::ostream& out, std::ostream& err);

}  // namespace gw::ctl
