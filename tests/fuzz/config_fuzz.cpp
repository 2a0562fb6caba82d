// The YAML config loader, from a file as the daemon reads it: whatever the file holds, the
// answer is a config or a list of errors naming file and line, never a crash or an exception.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "gateway/config.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

// One scratch folder per process: relative paths in the config resolve against it, and the
// files they could name (profiles, keys) are just not there.
const std::string& config_path() {
  static const std::string path = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "gw-fuzz-config-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    return tmpl + "/gateway.yaml";
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  {
    std::ofstream out(config_path(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  const gw::config::LoadResult r = gw::config::load_config(config_path());
  GW_FUZZ_CHECK(r.config.has_value() == r.errors.empty());
  for (const auto& e : r.errors) {
    GW_FUZZ_CHECK(!e.message.empty());
    (void)e.to_string();
  }
  const std::string text(reinterpret_cast<const char*>(data), std::min<std::size_t>(size, 64));
  (void)gw::config::parse_duration(text);
  (void)gw::config::parse_size(text);
  return 0;
}
