#include "tools/gatewayctl/commands.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>

#include "gateway/config.h"
#include "gateway/control_protocol.h"
#include "protocols/topics.h"
#include "tools/gatewayctl/args.h"
#include "tools/gatewayctl/bundle.h"
#include "tools/gatewayctl/client.h"
#include "tools/gatewayctl/format.h"
#include "tools/gatewayctl/help.h"
#include "tools/gatewayctl/json_util.h"
#include "tools/gatewayctl/offline.h"
#include "tools/gatewayctl/probe.h"

#ifndef GW_VERSION
#define GW_VERSION "0.0.0"
#endif

namespace gw::ctl {

namespace {

constexpr int kDefaultTimeoutMs = 10000;
constexpr const char* kDefaultConfig = "/etc/gatewayd/gatewayd.yaml";

// ---- Ctrl-C for streams ---------------------------------------------------------------------

int g_interrupt_write_fd = -1;

extern "C" void on_interrupt(int) {
  const int saved = errno;
  if (g_interrupt_write_fd >= 0) {
    const char byte = 1;
    [[maybe_unused]] ssize_t n = ::write(g_interrupt_write_fd, &byte, 1);
  }
  errno = saved;
}

// SIGINT/SIGTERM write to a pipe for as long as this lives, so a blocked stream wakes up and
// ends cleanly; the previous handlers come back afterwards.
class InterruptPipe {
 public:
  InterruptPipe() {
    if (::pipe2(fds_, O_CLOEXEC | O_NONBLOCK) != 0) {
      fds_[0] = fds_[1] = -1;
      return;
    }
    g_interrupt_write_fd = fds_[1];
    struct sigaction sa {};
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~InterruptPipe() {
    if (fds_[0] < 0) return;
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
    g_interrupt_write_fd = -1;
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  InterruptPipe(const InterruptPipe&) = delete;
  InterruptPipe& operator=(const InterruptPipe&) = delete;
  int read_fd() const { return fds_[0]; }

 private:
  int fds_[2] = {-1, -1};
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

// ---- shared plumbing ------------------------------------------------------------------------

int64_t now_us(const Context& ctx) {
  if (ctx.now_us) return ctx.now_us;
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Session {
  const Invocation& inv;
  Context& ctx;
  Style style;
  std::string name;  // the command, for messages
  int timeout_ms = kDefaultTimeoutMs;

  std::ostream& out() { return ctx.out; }
  std::ostream& err() { return ctx.err; }
  int fail(int code, const std::string& message) {
    err() << "gatewayctl: " << name << ": " << message << "\n";
    return code;
  }
  bool json() const { return inv.has("--json"); }
};

// The socket: --socket, else control.socket of --config, else the default. nullopt with *exit set
// when --config does not load (78, with the same messages as check-config).
std::optional<std::string> resolve_socket(Session& s, int* exit) {
  if (auto path = s.inv.get("--socket")) return *path;
  if (auto file = s.inv.get("--config")) {
    config::LoadResult loaded = config::load_config(*file);
    for (const auto& e : loaded.errors) {
      s.err() << "gatewayctl: config error: " << e.to_string() << "\n";
    }
    if (!loaded.config) {
      *exit = kExitConfig;
      return std::nullopt;
    }
    return loaded.config->control.socket;
  }
  return std::string(control::kDefaultSocket);
}

// Connects, or prints the one-line reason and sets *exit.
std::unique_ptr<ControlClient> connect_daemon(Session& s, int* exit) {
  std::optional<std::string> path = resolve_socket(s, exit);
  if (!path) return nullptr;
  auto client = ControlClient::connect(*path);
  if (!client) {
    *exit = s.fail(
        client.status().code() == Status::Code::kInvalidArgument ? kExitFailure : kExitUnavailable,
        client.status().message());
    return nullptr;
  }
  return std::move(client).value();
}

int status_exit(const Status& st) {
  return st.code() == Status::Code::kProtocol || st.code() == Status::Code::kInvalidArgument
             ? kExitFailure
             : kExitUnavailable;
}

// "gatewayctl: <command>: <message> (<code>)"; a message of several lines (reload's config
// errors) gets one prefixed line each, the code on the last. 69 for unavailable, else 1.
int report_daemon_error(Session& s, const Reply& reply) {
  std::string_view message = reply.message;
  while (!message.empty() && message.back() == '\n') message.remove_suffix(1);
  for (;;) {
    const std::size_t nl = message.find('\n');
    if (nl == std::string_view::npos) break;
    s.err() << "gatewayctl: " << s.name << ": " << message.substr(0, nl) << "\n";
    message.remove_prefix(nl + 1);
  }
  s.err() << "gatewayctl: " << s.name << ": " << message << " (" << reply.code << ")\n";
  return reply.code == control::error_code::kUnavailable ? kExitUnavailable : kExitFailure;
}

// One request; prints any failure as the contract asks and sets *exit.
std::optional<Json> call(Session& s, ControlClient& client, std::string_view cmd, const Json& args,
                         int* exit) {
  Result<Reply> reply = client.call(cmd, args, s.timeout_ms);
  if (!reply) {
    *exit = s.fail(status_exit(reply.status()), reply.status().message());
    return std::nullopt;
  }
  if (!reply->ok) {
    *exit = report_daemon_error(s, *reply);
    return std::nullopt;
  }
  return reply->result;
}

// After a not_found for a device: the nearest configured id, if one is close (best effort).
void suggest_device(Session& s, ControlClient& client, const std::string& wanted) {
  Result<Reply> reply = client.call("devices", Json::object(), s.timeout_ms);
  if (!reply || !reply->ok) return;
  std::vector<std::string> ids;
  const Json& devices = field(reply->result, "devices");
  if (devices.is_array()) {
    for (const Json& d : devices) ids.push_back(get_string(d, "id"));
  }
  std::vector<std::string_view> views(ids.begin(), ids.end());
  const std::string near = closest_match(wanted, views);
  if (!near.empty()) {
    s.err() << "gatewayctl: did you mean " << near << "? (gatewayctl devices lists them)\n";
  }
}

// The daemon's gateway id, for event lines (best effort: "" when hello fails).
std::string gateway_id_of(Session& s, ControlClient& client) {
  Result<Reply> reply = client.call("hello", Json::object(), std::min(s.timeout_ms, 5000));
  if (!reply || !reply->ok) return "";
  return get_string(reply->result, "gateway_id");
}

void print_json(Session& s, const Json& doc) {
  s.out() << doc.dump(-1, ' ', false, Json::error_handler_t::replace) << "\n";
}

std::optional<campus::gateway::v1::EventClass> parse_class_option(Session& s, int* exit) {
  auto v = s.inv.get("--class");
  if (!v) return std::nullopt;
  auto c = protocols::parse_class_name(*v);
  if (!c) {
    *exit = s.fail(kExitFailure,
                   "--class must be access, alarm, telemetry or status (got '" + *v + "')");
  }
  return c;
}

// ---- daemon commands ------------------------------------------------------------------------

int cmd_status(Session& s) {
  int exit = kExitOk;
  auto client = connect_daemon(s, &exit);
  if (!client) return exit;
  auto result = call(s, *client, "status", Json::object(), &exit);
  if (!result) return exit;
  if (s.json()) {
    print_json(s, *result);
  } else {
    s.out() << status_screen(*result, now_us(s.ctx), s.style, s.ctx.width);
  }
  return kExitOk;
}

int cmd_devices(Session& s) {
  if (!s.inv.args.empty() && s.inv.has("--offline")) {
    return s.fail(kExitFailure, "--offline lists devices; it does not go with DEVICE");
  }
  int exit = kExitOk;
  auto client = connect_daemon(s, &exit);
  if (!client) return exit;
  Json args = Json::object();
  if (!s.inv.args.empty()) args["device"] = s.inv.args[0];
  Result<Reply> reply = client->call("devices", args, s.timeout_ms);
  if (!reply) return s.fail(status_exit(reply.status()), reply.status().message());
  if (!reply->ok) {
    const int code = report_daemon_error(s, *reply);
    if (reply->code == control::error_code::kNotFound && !s.inv.args.empty()) {
      suggest_device(s, *client, s.inv.args[0]);
    }
    return code;
  }
  const Json& result = reply->result;
  if (s.json()) {
    print_json(s, result);
    return kExitOk;
  }
  if (s.inv.args.empty()) {
    s.out() << devices_table(result, s.style, s.inv.has("--offline"), s.ctx.width);
    return kExitOk;
  }
  const Json& devices = field(result, "devices");
  if (!devices.is_array() || devices.empty()) {
    return s.fail(kExitFailure, "gatewayd returned no device named '" + s.inv.args[0] + "'");
  }
  s.out() << device_detail(devices[0], now_us(s.ctx), s.style);
  return kExitOk;
}

int cmd_read(Session& s) {
  int exit = kExitOk;
  auto client = connect_daemon(s, &exit);
  if (!client) return exit;
  Json args = Json::object();
  args["device"] = s.inv.args[0];
  args["point"] = s.inv.args[1];
  Result<Reply> reply = client->call("read", args, s.timeout_ms);
  if (!reply) return s.fail(status_exit(reply.status()), reply.status().message());
  if (!reply->ok) {
    const int code = report_daemon_error(s, *reply);
    // "no device" deserves a suggestion; "no point" already lists the device's points.
    if (reply->code == control::error_code::kNotFound &&
        reply->message.find("no point") == std::string::npos) {
      suggest_device(s, *client, s.inv.args[0]);
    }
    return code;
  }
  if (s.json()) {
    print_json(s, reply->result);
  } else {
    s.out() << read_result_line(reply->result, s.style) << "\n";
  }
  return get_bool(reply->result, "good") ? kExitOk : kExitFailure;
}

int cmd_reload(Session& s) {
  int exit = kExitOk;
  auto client = connect_daemon(s, &exit);
  if (!client) return exit;
  auto result = call(s, *client, "reload", Json::object(), &exit);
  if (!result) return exit;
  if (s.json()) {
    print_json(s, *result);
  } else {
    s.out() << reload_summary(*result) << "\n";
  }
  return kExitOk;
}

int cmd_alarms(Session& s) {
  std::size_t recent = 10;
  if (auto n = s.inv.get("--recent")) {
    char* end = nullptr;
    const long v = std::strtol(n->c_str(), &end, 10);
    if (end != n->c_str() + n->size() || n->empty() || v < 0 || v > 50) {
      return s.fail(kExitFailure, "--recent must be 0..50 (got '" + *n + "')");
    }
    recent = static_cast<std::size_t>(v);
  }
  int exit = kExitOk;
  auto client = connect_daemon(s, &exit);
  if (!client) return exit;
  auto result = call(s, *client, "alarms", Json::object(), &exit);
  if (!result) return exit;
  if (s.json()) {
    print_json(s, *result);
  } else {
    s.out() << alarms_screen(*result, now_us(s.ctx), s.style, recent, s.ctx.width);
  }
  return kExitOk;
}

// tail and trace: the request, then items until the end, the connection closes or Ctrl-C.
int stream(Session& s, std::string_view cmd, const Json& args, bool show_credentials) {
  int exit = kExitOk;
  auto client = connect_daemon(s, &exit);
  if (!client) return exit;
  const std::string gateway = cmd == "tail" && !s.json() ? gateway_id_of(s, *client) : "";

  std::optional<InterruptPipe> own_pipe;
  int interrupt_fd = s.ctx.interrupt_fd;
  if (interrupt_fd < 0) {
    own_pipe.emplace();
    interrupt_fd = own_pipe->read_fd();
  }
  client->set_interrupt_fd(interrupt_fd);

  Result<uint64_t> id = client->send(cmd, args);
  if (!id) return s.fail(kExitUnavailable, id.status().message());
  bool started = false;
  for (;;) {
    Incoming in = client->next(started ? -1 : s.timeout_ms);
    switch (in.kind) {
      case Incoming::Kind::kInterrupted:
        return kExitOk;
      case Incoming::Kind::kTimeout:
        return s.fail(kExitUnavailable, "no answer from gatewayd at " + client->path() +
                                            " (is it stuck? --timeout waits longer)");
      case Incoming::Kind::kClosed:
        return s.fail(kExitUnavailable, started
                                            ? "gatewayd closed the stream (did it stop?)"
                                            : "gatewayd closed the connection without answering");
      case Incoming::Kind::kError:
        return s.fail(kExitFailure, in.error);
      case Incoming::Kind::kMessage:
        break;
    }
    const Json& m = in.message;
    const Json& mid = field(m, "id");
    if (mid.is_number_integer() && mid.get<uint64_t>() != *id) continue;
    if (!started) {
      if (field(m, "ok").is_null()) continue;
      Reply reply = to_reply(m);
      if (!reply.ok) {
        const int code = report_daemon_error(s, reply);
        if (reply.code == control::error_code::kNotFound && args.contains("device")) {
          client->set_interrupt_fd(-1);
          suggest_device(s, *client, get_string(args, "device"));
        }
        return code;
      }
      started = true;
      if (!s.json()) {
        s.err() << "gatewayctl: " << s.name << ": streaming from " << client->path()
                << "; Ctrl-C to stop\n";
      }
      continue;
    }
    if (get_bool(m, "end")) {
      s.out().flush();
      const std::string reason = get_string(m, "reason", "no reason given");
      s.err() << "gatewayctl: " << s.name << ": gatewayd ended the stream: " << reason << "\n";
      return kExitOk;
    }
    Json item = field(m, "item");
    if (item.is_null()) continue;
    if (cmd == "tail") {
      if (!show_credentials) redact_all_credentials(item);
      if (s.json()) {
        print_json(s, item);
      } else {
        s.out() << event_line(field(item, "event"), gateway, show_credentials) << "\n";
      }
    } else if (s.json()) {
      print_json(s, item);
    } else {
      s.out() << trace_line(item, s.style) << "\n";
    }
    s.out().flush();
    if (!s.out()) return kExitOk;  // the reader went away (e.g. `| head`)
  }
}

int cmd_tail(Session& s) {
  int exit = kExitOk;
  auto cls = parse_class_option(s, &exit);
  if (exit) return exit;
  Json args = Json::object();
  if (auto d = s.inv.get("--device")) args["device"] = *d;
  if (cls) args["class"] = std::string(protocols::class_name(*cls));
  const bool show = s.inv.has("--show-credentials");
  if (show) args["show_credentials"] = true;
  return stream(s, "tail", args, show);
}

int cmd_trace(Session& s) {
  Json args = Json::object();
  args["device"] = s.inv.args[0];
  const bool show = s.inv.has("--show-credentials");
  if (show) args["show_credentials"] = true;
  return stream(s, "trace", args, show);
}

int cmd_buffer(Session& s) {
  const bool json = s.json();
  if (auto dir = s.inv.get("--data-dir")) {
    if (s.inv.has("--oldest"))
      return s.fail(kExitFailure, "--oldest needs the running gatewayd, not --data-dir");
    return run_offline_buffer(*dir, json, s.out(), s.err());
  }
  Json args = Json::object();
  if (auto n = s.inv.get("--oldest")) {
    char* end = nullptr;
    const long v = std::strtol(n->c_str(), &end, 10);
    if (end != n->c_str() + n->size() || v < 0 || v > 1000) {
      return s.fail(kExitFailure, "--oldest must be 0..1000 (got '" + *n + "')");
    }
    args["oldest"] = v;
  }
  int exit = kExitOk;
  std::optional<std::string> path = resolve_socket(s, &exit);
  if (!path) return exit;
  auto client = ControlClient::connect(*path);
  if (!client) {
    // Without the daemon the file itself still answers (the pre-daemon behaviour of --config).
    if (auto file = s.inv.get("--config"); file && !s.inv.has("--socket")) {
      s.err() << "gatewayctl: buffer: " << client.status().message()
              << "\ngatewayctl: buffer: reading the buffer file offline instead\n";
      std::optional<std::string> dir = data_dir_from_config(*file, s.err(), &exit);
      if (!dir) return exit;
      return run_offline_buffer(*dir, json, s.out(), s.err());
    }
    return s.fail(kExitUnavailable,
                  client.status().message() +
                      " (or read the file offline: gatewayctl buffer --data-dir DIR)");
  }
  const std::string gateway = json ? "" : gateway_id_of(s, *client.value());
  auto result = call(s, *client.value(), "buffer", args, &exit);
  if (!result) return exit;
  redact_all_credentials(*result);
  if (json) {
    print_json(s, *result);
  } else {
    s.out() << buffer_screen(*result, gateway, false);
  }
  return kExitOk;
}

int cmd_buffer_export(Session& s) {
  int exit = kExitOk;
  auto cls = parse_class_option(s, &exit);
  if (exit) return exit;
  std::string dir;
  if (auto d = s.inv.get("--data-dir")) {
    dir = *d;
  } else if (auto file = s.inv.get("--config")) {
    std::optional<std::string> from = data_dir_from_config(*file, s.err(), &exit);
    if (!from) return exit;
    dir = *from;
  } else {
    return s.fail(kExitFailure, "give --data-dir DIR or --config FILE");
  }
  return run_buffer_export(dir, s.inv.args[0], cls, s.inv.has("--show-credentials"), s.out(),
                           s.err());
}

int cmd_version(Session& s) {
  Json doc;
  doc["gatewayctl"] = GW_VERSION;
  int exit = kExitOk;
  std::optional<std::string> path = resolve_socket(s, &exit);
  if (!path) return exit;
  doc["socket"] = *path;
  std::string problem;
  auto client = ControlClient::connect(*path);
  if (client) {
    Result<Reply> reply =
        client.value()->call("hello", Json::object(), std::min(s.timeout_ms, 3000));
    if (reply && reply->ok) {
      doc["gatewayd"] = reply->result;
    } else {
      problem = reply ? reply->message + " (" + reply->code + ")" : reply.status().message();
    }
  } else {
    problem = client.status().message();
  }
  if (!doc.contains("gatewayd")) doc["gatewayd"] = nullptr;
  if (s.json()) {
    print_json(s, doc);
    return kExitOk;
  }
  s.out() << "gatewayctl " << GW_VERSION << " (control protocol " << control::kProtocolVersion
          << ")\n";
  const Json& hello = doc["gatewayd"];
  if (hello.is_null()) {
    s.out() << "gatewayd   not reachable: " << problem << "\n";
  } else {
    s.out() << "gatewayd   " << get_string(hello, "version", "?") << " (gateway "
            << get_string(hello, "gateway_id", "?") << ", control protocol "
            << get_string(hello, "protocol", "?") << ") at " << *path << "\n";
  }
  return kExitOk;
}

int cmd_probe(Session& s) {
  Result<ProbeRequest> req = parse_probe_request(s.inv);
  if (!req) {
    s.err() << "gatewayctl: " << req.status().message() << "\n";
    return kExitFailure;
  }
  ProbeFailure failure;
  Result<ProbeResult> result = run_probe(*req, &failure);
  if (!result) {
    return s.fail(failure.unreachable ? kExitUnavailable : kExitFailure, failure.message);
  }
  if (s.json()) {
    print_json(s, probe_json(*req, *result));
  } else {
    s.out() << format_probe(*req, *result, s.style);
  }
  return kExitOk;
}

int cmd_bundle(Session& s) {
  int exit = kExitOk;
  std::optional<std::string> path = resolve_socket(s, &exit);
  // A config that does not load must not stop the bundle: support needs it most then.
  BundleInputs in;
  in.output = s.inv.args[0];
  in.timeout_ms = std::min(s.timeout_ms, 5000);
  in.now_us = now_us(s.ctx);
  if (auto file = s.inv.get("--config")) {
    in.config_file = *file;
  } else if (std::error_code ec; std::filesystem::exists(kDefaultConfig, ec)) {
    in.config_file = kDefaultConfig;
  }
  in.socket = path ? *path : std::string(control::kDefaultSocket);
  if (!path)
    s.err() << "gatewayctl: bundle: continuing with the default socket " << in.socket << "\n";
  return run_bundle(in, s.out(), s.err());
}

int cmd_help(Session& s) {
  if (s.inv.args.empty()) {
    s.out() << overview_help();
    return kExitOk;
  }
  std::string name = s.inv.args[0];
  if (s.inv.args.size() > 1) name += " " + s.inv.args[1];
  const CommandSpec* c = find_command(name);
  if (!c) {
    std::string msg = "no command '" + name + "'";
    std::string near = closest_match(s.inv.args[0], command_names());
    if (!near.empty()) msg += "; did you mean '" + near + "'?";
    return s.fail(kExitFailure, msg);
  }
  s.out() << command_help(*c);
  return kExitOk;
}

int cmd_completion(Session& s) {
  if (s.inv.args[0] != "bash") {
    return s.fail(kExitFailure,
                  "no completion for '" + s.inv.args[0] + "' (bash is the one supported)");
  }
  s.out() << bash_completion();
  return kExitOk;
}

int cmd_man(Session& s) {
  // Reproducible builds set SOURCE_DATE_EPOCH; otherwise today's date.
  std::time_t t = std::time(nullptr);
  if (const char* epoch = std::getenv("SOURCE_DATE_EPOCH"))
    t = static_cast<std::time_t>(std::atoll(epoch));
  std::tm tm{};
  gmtime_r(&t, &tm);
  char date[16];
  std::strftime(date, sizeof date, "%Y-%m-%d", &tm);
  s.out() << man_page(GW_VERSION, date);
  return kExitOk;
}

int dispatch(Session& s) {
  const std::string& n = s.name;
  if (n == "status") return cmd_status(s);
  if (n == "devices") return cmd_devices(s);
  if (n == "tail") return cmd_tail(s);
  if (n == "trace") return cmd_trace(s);
  if (n == "read") return cmd_read(s);
  if (n == "buffer") return cmd_buffer(s);
  if (n == "buffer export") return cmd_buffer_export(s);
  if (n == "reload") return cmd_reload(s);
  if (n == "alarms") return cmd_alarms(s);
  if (n == "check-config") return run_check_config(s.inv.args[0], s.out(), s.err());
  if (n == "probe") return cmd_probe(s);
  if (n == "bundle") return cmd_bundle(s);
  if (n == "version") return cmd_version(s);
  if (n == "help") return cmd_help(s);
  if (n == "completion") return cmd_completion(s);
  if (n == "man") return cmd_man(s);
  // The table lists a command this switch lacks: a bug, said plainly rather than silently.
  return s.fail(kExitFailure, "not implemented in this build");
}

int run_checked(const std::vector<std::string>& argv, Context& ctx) {
  Result<Invocation> parsed = parse_arguments(argv);
  if (!parsed) {
    ctx.err << "gatewayctl: " << parsed.status().message() << "\n";
    return kExitFailure;
  }
  const Invocation& inv = *parsed;
  if (!inv.command) {
    if (inv.version) {
      ctx.out << "gatewayctl " << GW_VERSION << "\n";
      return kExitOk;
    }
    if (inv.help) {
      ctx.out << overview_help();
      return kExitOk;
    }
    ctx.err << "gatewayctl: no command given\n\n" << overview_help();
    return kExitFailure;
  }
  if (inv.help) {
    ctx.out << command_help(*inv.command);
    return kExitOk;
  }
  Session s{inv, ctx, Style{ctx.color && !inv.has("--no-color")}, std::string(inv.command->name)};
  if (auto t = inv.get("--timeout")) {
    auto d = config::parse_duration(*t);
    if (!d || d->count() < 1 || d->count() > 24LL * 3600 * 1000) {
      return s.fail(kExitFailure,
                    "--timeout must be a duration like 500ms, 5s or 2m (got '" + *t + "')");
    }
    s.timeout_ms = static_cast<int>(d->count());
  }
  return dispatch(s);
}

}  // namespace

int run(const std::vector<std::string>& argv, Context& ctx) {
  // The contract: never a stack trace or an abort on bad input. Anything thrown below (a
  // library's exception on input we did not foresee) becomes one line and exit 1.
  try {
    return run_checked(argv, ctx);
  } catch (const std::exception& e) {
    ctx.err << "gatewayctl: internal error: " << e.what() << "\n";
  } catch (...) {
    ctx.err << "gatewayctl: internal error\n";
  }
  return kExitFailure;
}

}  // namespace gw::ctl
