#include "tools/gatewayctl/bundle.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "gateway/config.h"
#include "gateway/driver_registry.h"
#include "tools/gatewayctl/client.h"
#include "tools/gatewayctl/format.h"
#include "tools/gatewayctl/help.h"

#ifndef GW_VERSION
#define GW_VERSION "0.0.0"
#endif

namespace gw::ctl {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kMaxMetricsBytes = 16u << 20;

bool write_file(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  return static_cast<bool>(f);
}

std::string read_file(const fs::path& path, bool* ok) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  *ok = static_cast<bool>(f) || f.eof();
  return s.str();
}

// Runs argv with stdout and stderr into files, killing it after timeout_ms. Returns the exit
// status, or -1 with *error set when it could not run or was killed.
int run_child(const std::vector<std::string>& argv, const fs::path& stdout_file,
              const fs::path& stderr_file, int timeout_ms, std::string* error) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, stdout_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0640);
  posix_spawn_file_actions_addopen(&actions, 2, stderr_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0640);
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    *error = argv[0] + " could not run: " + std::strerror(rc);
    return -1;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int status = 0;
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      *error = argv[0] + " ended by signal " + std::to_string(WTERMSIG(status));
      return -1;
    }
    if (done < 0 && errno != EINTR) {
      *error = std::string("waitpid: ") + std::strerror(errno);
      return -1;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      *error = argv[0] + " took longer than " + std::to_string(timeout_ms / 1000) + " s; stopped";
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string timestamp(int64_t now_us, const char* fmt) {
  const std::time_t t = static_cast<std::time_t>(now_us / 1000000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, fmt, &tm);
  return buf;
}

struct Manifest {
  std::vector<std::string> included;
  std::vector<std::string> missing;
  void add(const std::string& what) { included.push_back(what); }
  void miss(const std::string& what, const std::string& why) {
    missing.push_back(what + ": " + why);
  }
};

// Everything the daemon answers, as JSON and as gatewayctl prints it.
std::string collect_daemon(const BundleInputs& in, const fs::path& dir, Manifest& m) {
  auto client = ControlClient::connect(in.socket);
  if (!client) {
    m.miss("hello.json, status.*, devices.*, buffer.*", client.status().message());
    return "";
  }
  Style plain;
  std::string gateway_id;
  struct Part {
    const char* cmd;
    const char* file;
  };
  for (const Part& p : {Part{"hello", "hello"}, Part{"status", "status"},
                        Part{"devices", "devices"}, Part{"buffer", "buffer"}}) {
    Result<Reply> reply = client.value()->call(p.cmd, Json::object(), in.timeout_ms);
    if (!reply || !reply->ok) {
      const std::string why =
          reply ? reply->message + " (" + reply->code + ")" : reply.status().message();
      m.miss(std::string(p.file) + ".json", why);
      if (!reply) {
        // The connection is gone or stuck; the later parts would only wait out the same timeout.
        return gateway_id;
      }
      continue;
    }
    Json result = reply->result;
    redact_all_credentials(result);
    write_file(dir / (std::string(p.file) + ".json"),
               result.dump(2, ' ', false, Json::error_handler_t::replace) + "\n");
    std::string text;
    const std::string cmd = p.cmd;
    if (cmd == "hello") {
      gateway_id = get_string(result, "gateway_id");
    } else if (cmd == "status") {
      text = status_screen(result, in.now_us, plain);
    } else if (cmd == "devices") {
      text = devices_table(result, plain, false, 0);
      const Json& devices = field(result, "devices");
      if (devices.is_array()) {
        for (const Json& d : devices) text += "\n" + device_detail(d, in.now_us, plain);
      }
    } else if (cmd == "buffer") {
      text = buffer_screen(result, gateway_id, false);
    }
    if (!text.empty()) write_file(dir / (std::string(p.file) + ".txt"), text);
    m.add(std::string(p.file) + ".json" +
          (text.empty() ? "" : ", " + std::string(p.file) + ".txt"));
  }
  return gateway_id;
}

void collect_config(const BundleInputs& in, const fs::path& dir, Manifest& m,
                    std::optional<config::Config>* loaded_out) {
  if (!in.config_file) {
    m.miss("config/", "no --config given and /etc/gatewayd/gatewayd.yaml does not exist");
    return;
  }
  fs::create_directories(dir / "config");
  bool ok = false;
  const std::string text = read_file(*in.config_file, &ok);
  if (!ok) {
    m.miss("config/", "cannot read " + *in.config_file + ": " + std::strerror(errno));
    return;
  }
  const fs::path name = fs::path(*in.config_file).filename();
  write_file(dir / "config" / name, redact_config_text(text));
  std::error_code ec;
  const fs::path absolute = fs::absolute(*in.config_file, ec);
  m.add("config/" + name.string() + " (" + (ec ? *in.config_file : absolute.string()) +
        ", secrets redacted)");

  config::LoadResult loaded = config::load_config(*in.config_file);
  std::vector<config::ConfigError> errors = loaded.errors;
  if (loaded.config) {
    auto more = check_drivers(*loaded.config);
    errors.insert(errors.end(), more.begin(), more.end());
  }
  std::string check;
  for (const auto& e : errors) check += "config error: " + e.to_string() + "\n";
  if (check.empty()) {
    check = *in.config_file + ": OK (" + std::to_string(loaded.config->devices.size()) +
            " devices, " + std::to_string(loaded.config->buses.size()) + " buses)\n";
  }
  write_file(dir / "config" / "check-config.txt", check);
  m.add("config/check-config.txt");
  if (!loaded.config) return;
  *loaded_out = loaded.config;

  // Shared register maps are part of what the devices do; they hold no secrets.
  std::vector<std::string> profiles;
  for (const auto& d : loaded.config->devices) {
    if (!d.profile.empty() &&
        std::find(profiles.begin(), profiles.end(), d.profile) == profiles.end()) {
      profiles.push_back(d.profile);
    }
  }
  if (!profiles.empty()) fs::create_directories(dir / "config" / "profiles");
  for (const std::string& p : profiles) {
    bool read_ok = false;
    const std::string body = read_file(p, &read_ok);
    if (!read_ok) {
      m.miss("config/profiles/" + fs::path(p).filename().string(), "cannot read " + p);
      continue;
    }
    write_file(dir / "config" / "profiles" / fs::path(p).filename(), redact_config_text(body));
    m.add("config/profiles/" + fs::path(p).filename().string() + " (" + p + ")");
  }
}

void collect_metrics(const std::optional<config::Config>& cfg, const fs::path& dir, Manifest& m) {
  if (!cfg) {
    m.miss("metrics.txt", "no loadable config, so metrics.listen is unknown");
    return;
  }
  if (!cfg->metrics.listen) {
    m.miss("metrics.txt", "metrics.listen is not configured");
    return;
  }
  auto where = metrics_endpoint(*cfg->metrics.listen);
  if (!where) {
    m.miss("metrics.txt", "metrics.listen '" + *cfg->metrics.listen +
                              "' names no fixed port to scrape (port 0 is chosen at start-up)");
    return;
  }
  std::string error;
  auto body = http_get(*where, "/metrics", 2000, &error);
  if (!body) {
    m.miss("metrics.txt", "GET http://" + *cfg->metrics.listen + "/metrics: " + error);
    return;
  }
  write_file(dir / "metrics.txt", *body);
  m.add("metrics.txt (http://" + where->host + ":" + std::to_string(where->port) + "/metrics)");
}

void collect_logs(const fs::path& dir, Manifest& m) {
  fs::create_directories(dir / "logs");
  const fs::path out = dir / "logs" / "journal.txt";
  const fs::path err = dir / "logs" / "journalctl.stderr";
  std::string error;
  const int rc = run_child({"journalctl", "-u", "gatewayd", "-n", "2000", "--no-pager"}, out, err,
                           20000, &error);
  bool ok = false;
  const std::string stderr_text = read_file(err, &ok);
  fs::remove(err);
  if (rc != 0) {
    const std::string why = rc < 0 ? error
                                   : "journalctl exited with " + std::to_string(rc) +
                                         (stderr_text.empty() ? "" : ": " + stderr_text);
    write_file(out, "journalctl -u gatewayd -n 2000 --no-pager was not available: " + why + "\n");
    m.miss("logs/journal.txt", why);
    return;
  }
  const std::string text = read_file(out, &ok);
  std::size_t lines = 0;
  for (char c : text) lines += c == '\n';
  if (text.find("-- No entries --") != std::string::npos || lines == 0) {
    m.miss("logs/journal.txt",
           "the journal has no gatewayd entries (not run by systemd here, or "
           "this user may not read the journal: add it to systemd-journal)");
    return;
  }
  m.add("logs/journal.txt (" + std::to_string(lines) + " lines of journalctl -u gatewayd)");
}

void collect_system(const std::optional<config::Config>& cfg, const fs::path& dir, Manifest& m,
                    int64_t now_us) {
  std::ostringstream s;
  s << "collected " << timestamp(now_us, "%Y-%m-%d %H:%M:%S %z") << " by gatewayctl " << GW_VERSION
    << "\n";
  utsname u{};
  if (uname(&u) == 0) {
    s << "host " << u.nodename << ", " << u.sysname << " " << u.release << " " << u.machine << "\n";
  }
  bool ok = false;
  const std::string os = read_file("/etc/os-release", &ok);
  std::smatch pretty;
  if (std::regex_search(os, pretty, std::regex("PRETTY_NAME=\"?([^\"\\n]*)"))) {
    s << "os " << pretty[1] << "\n";
  }
  const std::string up = read_file("/proc/uptime", &ok);
  if (ok && !up.empty()) s << "system up " << format_age(std::atoll(up.c_str())) << "\n";
  if (cfg) {
    struct statvfs v {};
    if (statvfs(cfg->gateway.data_dir.c_str(), &v) == 0) {
      const uint64_t free_bytes = static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
      const uint64_t total = static_cast<uint64_t>(v.f_blocks) * v.f_frsize;
      s << "data_dir " << cfg->gateway.data_dir << ": " << format_bytes(free_bytes) << " free of "
        << format_bytes(total) << "\n";
    } else {
      s << "data_dir " << cfg->gateway.data_dir << ": " << std::strerror(errno) << "\n";
    }
  }
  write_file(dir / "system.txt", s.str());
  m.add("system.txt");
}

}  // namespace

std::string redact_config_text(const std::string& yaml) {
  // key: value, in block or flow style, for keys that name a secret rather than a file holding
  // one. The contract keeps secrets out of the file, but a bundle is collected when something
  // is wrong, and a mistyped `password:` must not travel to support.
  static const std::regex secret(
      R"(((?:^|[\s{,])[A-Za-z0-9_-]*(?:password|passwd|secret|token|psk|api_key|apikey|private_key)[A-Za-z0-9_-]*\s*:[ \t]*)([^\s,}#][^,}#\n]*))",
      std::regex::icase | std::regex::multiline);
  static const std::regex userinfo(R"(([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s:'"]+:[^/@\s'"]+@)");
  std::string out;
  std::sregex_iterator it(yaml.begin(), yaml.end(), secret), end;
  std::size_t last = 0;
  for (; it != end; ++it) {
    const std::smatch& mt = *it;
    const std::string key = mt[1].str();
    out += yaml.substr(last, static_cast<std::size_t>(mt.position(0)) - last);
    // A *_file key holds a path (allowed; its contents are never read).
    std::string bare = key;
    while (!bare.empty() && (bare.back() == ' ' || bare.back() == '\t' || bare.back() == ':')) {
      bare.pop_back();
    }
    if (bare.ends_with("_file") || bare.ends_with("_FILE")) {
      out += mt[0].str();
    } else {
      out += key + "<redacted>";
    }
    last = static_cast<std::size_t>(mt.position(0) + mt.length(0));
  }
  out += yaml.substr(last);
  return std::regex_replace(out, userinfo, "$1<redacted>@");
}

std::optional<HostPort> metrics_endpoint(const std::string& listen) {
  std::string host;
  std::string port;
  if (listen.starts_with("[")) {
    const std::size_t close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':') {
      return std::nullopt;
    }
    host = listen.substr(1, close - 1);
    port = listen.substr(close + 2);
  } else {
    const std::size_t colon = listen.rfind(':');
    if (colon == std::string::npos) return std::nullopt;
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
  }
  char* end = nullptr;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 1 || p > 65535) return std::nullopt;
  if (host.empty() || host == "0.0.0.0" || host == "*") host = "127.0.0.1";
  if (host == "::") host = "::1";
  return HostPort{host, static_cast<int>(p)};
}

std::optional<std::string> http_get(const HostPort& where, const std::string& path, int timeout_ms,
                                    std::string* error) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  auto left_ms = [&] {
    return static_cast<int>(std::max<int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                 std::chrono::steady_clock::now())
               .count()));
  };
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int gai =
          getaddrinfo(where.host.c_str(), std::to_string(where.port).c_str(), &hints, &found);
      gai != 0) {
    *error = std::string("cannot resolve ") + where.host + ": " + gai_strerror(gai);
    return std::nullopt;
  }
  int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    freeaddrinfo(found);
    *error = std::strerror(errno);
    return std::nullopt;
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  int rc = ::connect(fd, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);
  if (rc != 0 && errno != EINPROGRESS) {
    *error = std::strerror(errno);
    return std::nullopt;
  }
  pollfd p{fd, POLLOUT, 0};
  if (rc != 0) {
    if (::poll(&p, 1, left_ms()) <= 0) {
      *error = "no connection within " + std::to_string(timeout_ms) + " ms";
      return std::nullopt;
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
    if (soerr != 0) {
      *error = std::strerror(soerr);
      return std::nullopt;
    }
  }
  const std::string host_header =
      where.host.find(':') != std::string::npos ? "[" + where.host + "]" : where.host;
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: " + host_header + ":" +
                              std::to_string(where.port) +
                              "\r\nUser-Agent: gatewayctl\r\nConnection: close\r\n\r\n";
  std::size_t sent = 0;
  while (sent < request.size()) {
    p = {fd, POLLOUT, 0};
    if (::poll(&p, 1, left_ms()) <= 0) {
      *error = "timed out sending the request";
      return std::nullopt;
    }
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      *error = std::strerror(errno);
      return std::nullopt;
    }
    sent += static_cast<std::size_t>(n);
  }
  std::string response;
  for (;;) {
    p = {fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, left_ms());
    if (ready <= 0) {
      *error = "no complete answer within " + std::to_string(timeout_ms) + " ms";
      return std::nullopt;
    }
    char buf[16384];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      *error = std::strerror(errno);
      return std::nullopt;
    }
    if (n == 0) break;
    response.append(buf, static_cast<std::size_t>(n));
    if (response.size() > kMaxMetricsBytes) {
      *error = "answer larger than 16 MiB";
      return std::nullopt;
    }
  }
  const std::size_t header_end = response.find("\r\n\r\n");
  if (!response.starts_with("HTTP/") || header_end == std::string::npos) {
    *error = "not an HTTP answer";
    return std::nullopt;
  }
  const std::size_t sp = response.find(' ');
  const std::string status_line = response.substr(0, response.find("\r\n"));
  if (sp == std::string::npos || response.compare(sp + 1, 3, "200") != 0) {
    *error = "HTTP status: " + status_line;
    return std::nullopt;
  }
  return response.substr(header_end + 4);
}

int run_bundle(const BundleInputs& in, std::ostream& out, std::ostream& err) {
  if (!in.output.ends_with(".tar.gz") && !in.output.ends_with(".tgz")) {
    err << "gatewayctl: bundle: '" << in.output << "' should end in .tar.gz (it is a gzip'd tar)\n";
    return kExitFailure;
  }
  std::error_code ec;
  const fs::path output = fs::absolute(in.output, ec);
  if (ec || !fs::is_directory(output.parent_path())) {
    err << "gatewayctl: bundle: no folder " << output.parent_path().string() << " to write "
        << in.output << " into\n";
    return kExitFailure;
  }
  std::string tmpl = (fs::temp_directory_path() / "gatewayctl-bundle-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) {
    err << "gatewayctl: bundle: cannot create a temporary folder in "
        << fs::temp_directory_path().string() << ": " << std::strerror(errno) << "\n";
    return kExitFailure;
  }
  const fs::path work = tmpl;
  struct Cleanup {
    fs::path path;
    ~Cleanup() {
      std::error_code ignored;
      fs::remove_all(path, ignored);
    }
  } cleanup{work};
  // The folder name inside the archive: the file's name without .tar.gz.
  std::string stem = output.filename().string();
  stem = stem.substr(0, stem.size() - (stem.ends_with(".tgz") ? 4 : 7));
  if (stem.empty()) stem = "gatewayd-bundle";
  const fs::path dir = work / stem;
  fs::create_directories(dir);

  Manifest m;
  const std::string gateway_id = collect_daemon(in, dir, m);
  std::optional<config::Config> cfg;
  collect_config(in, dir, m, &cfg);
  collect_metrics(cfg, dir, m);
  collect_logs(dir, m);
  collect_system(cfg, dir, m, in.now_us);

  std::ostringstream manifest;
  manifest << "gatewayd support bundle"
           << (gateway_id.empty() ? std::string() : " of " + gateway_id) << ", collected "
           << timestamp(in.now_us, "%Y-%m-%d %H:%M:%S %z") << " by gatewayctl " << GW_VERSION
           << "\nsocket " << in.socket << "\n"
           << "config " << (in.config_file ? *in.config_file : std::string("(none)")) << "\n\n"
           << "Included:\n";
  for (const std::string& s : m.included) manifest << "  " << s << "\n";
  manifest << "\nMissing:\n";
  if (m.missing.empty()) manifest << "  nothing\n";
  for (const std::string& s : m.missing) manifest << "  " << s << "\n";
  manifest << "\nSecrets: the config is copied with secret-looking values and URI passwords "
              "replaced by <redacted>; password_file and key_file are never read (their paths "
              "are kept). Card ids are [redacted] in every JSON file.\n";
  write_file(dir / "MANIFEST.txt", manifest.str());

  std::string error;
  const fs::path tar_err = work / "tar.stderr";
  const int rc = run_child({"/bin/tar", "-czf", output.string(), "-C", work.string(), stem},
                           work / "tar.stdout", tar_err, 60000, &error);
  if (rc != 0) {
    bool ok = false;
    const std::string tar_text = read_file(tar_err, &ok);
    err << "gatewayctl: bundle: /bin/tar failed: "
        << (rc < 0             ? error
            : tar_text.empty() ? "exit " + std::to_string(rc)
                               : tar_text)
        << "\n";
    return kExitFailure;
  }
  const auto size = fs::file_size(output, ec);
  out << "wrote " << output.string() << " (" << format_bytes(ec ? 0 : size) << ")\n";
  for (const std::string& s : m.included) out << "  + " << s << "\n";
  for (const std::string& s : m.missing) out << "  - " << s << "\n";
  return kExitOk;
}

}  // namespace gw::ctl
