// The YAML loader behind config.h. yaml-cpp only parses; every check lives here so that each
// problem comes back as one ConfigError with the file, line, key path and value an ops engineer
// needs. The walk never uses yaml-cpp's operator[] or as<T>() (both throw on a wrong node type):
// maps are read through MapReader and scalars through Checker, which turn every surprise in the
// input into an error value instead.
#include "gateway/config.h"

#include "gateway/edit_distance.h"
#include "protocols/card_reader.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>

namespace gw::config {
namespace {

namespace fs = std::filesystem;
using YAML::Node;
using namespace std::string_literals;

constexpr std::size_t kMaxErrors = 200;      // a fuzzed file must not produce megabytes of text
constexpr std::size_t kMaxValueChars = 120;  // longer values are clipped in errors
constexpr std::size_t kMaxFileBytes = 16u << 20;
constexpr int64_t kMsPerDay = 86'400'000;
// 100 years: any longer and adding it to a clock's now() in nanoseconds could overflow.
constexpr int64_t kMaxDurationMs = 36'500 * kMsPerDay;
constexpr Duration kMinPoll{10};
constexpr std::size_t kMaxSocketPath = 107;  // sizeof(sockaddr_un::sun_path) - 1 on Linux
constexpr std::string_view kDurationForm = "write it like 500ms, 5s, 2m, 1h or 7d";
constexpr std::string_view kSizeForm = "write it like 100B, 64KiB, 512MiB or 1GiB (or plain bytes)";

// ---------------------------------------------------------------------------------------------
// Text helpers

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_lower_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z'); }
bool is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_space_or_control(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u <= 0x20 || u == 0x7f;
}
bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_digit);
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string join(const std::vector<std::string_view>& items, std::string_view sep = ", ") {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += sep;
    out += items[i];
  }
  return out;
}

std::string in_quotes(std::string_view s) { return "'" + std::string(s) + "'"; }

// "a rate rule", "an offline rule"
std::string a_or_an(std::string_view word) {
  const bool vowel =
      !word.empty() && std::string_view("aeiou").find(word[0]) != std::string_view::npos;
  return (vowel ? "an " : "a ") + std::string(word);
}


// The valid word closest to `word`, or "" when none is close enough to be a likely typo.
std::string closest(std::string_view word, const std::vector<std::string_view>& options) {
  if (word.empty() || word.size() > 64) return {};
  const std::string w = lower(word);
  std::size_t best = SIZE_MAX;
  std::string_view pick;
  for (std::string_view o : options) {
    const std::size_t d = edit_distance(w, o);
    if (d < best) {
      best = d;
      pick = o;
    }
  }
  const std::size_t limit = w.size() <= 3 ? 1 : w.size() <= 8 ? 2 : 3;
  return best <= limit ? std::string(pick) : std::string();
}

std::string did_you_mean(std::string_view word, const std::vector<std::string_view>& options) {
  const std::string best = closest(word, options);
  return best.empty() ? std::string() : "did you mean " + in_quotes(best) + "? ";
}

std::string format_duration(Duration d) {
  const int64_t ms = d.count();
  struct Unit {
    int64_t ms;
    const char* suffix;
  };
  for (const Unit u :
       {Unit{kMsPerDay, "d"}, Unit{3'600'000, "h"}, Unit{60'000, "m"}, Unit{1'000, "s"}}) {
    if (ms != 0 && ms % u.ms == 0) return std::to_string(ms / u.ms) + u.suffix;
  }
  return std::to_string(ms) + "ms";
}

// ---------------------------------------------------------------------------------------------
// Value parsers that explain themselves

template <typename T>
struct Parsed {
  std::optional<T> value;
  std::string why;  // set when value is empty
  static Parsed ok(T v) { return {std::move(v), {}}; }
  static Parsed fail(std::string w) { return {std::nullopt, std::move(w)}; }
};

Parsed<Duration> parse_duration_detail(std::string_view s, bool allow_zero) {
  using P = Parsed<Duration>;
  std::size_t i = 0;
  while (i < s.size() && is_digit(s[i])) ++i;
  const std::string_view digits = s.substr(0, i);
  const std::string_view unit = s.substr(i);
  if (digits.empty()) {
    if (!s.empty() && s[0] == '-') {
      return P::fail("must be positive; "s + std::string(kDurationForm));
    }
    return P::fail("not a duration; "s + std::string(kDurationForm));
  }
  if (unit.empty()) return P::fail("not a duration (no unit); "s + std::string(kDurationForm));
  if (unit[0] == '.' || unit[0] == ',') {
    return P::fail("whole numbers only; use a smaller unit (1500ms, not 1.5s)");
  }
  static constexpr std::array<std::pair<std::string_view, int64_t>, 5> kUnits{
      {{"ms", 1}, {"s", 1'000}, {"m", 60'000}, {"h", 3'600'000}, {"d", kMsPerDay}}};
  int64_t factor = 0;
  for (const auto& [name, ms] : kUnits) {
    if (unit == name) factor = ms;
  }
  if (factor == 0) {
    return P::fail("unknown unit " + in_quotes(unit) + "; units are ms, s, m, h, d; " +
                   std::string(kDurationForm));
  }
  uint64_t n = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec == std::errc::result_out_of_range || n > static_cast<uint64_t>(kMaxDurationMs / factor)) {
    return P::fail("too long; the longest duration accepted is 36500d (100 years)");
  }
  if (ec != std::errc() || end != digits.data() + digits.size()) {
    return P::fail("not a duration; "s + std::string(kDurationForm));
  }
  if (n == 0 && !allow_zero) return P::fail("must be greater than zero");
  return P::ok(Duration(static_cast<int64_t>(n) * factor));
}

Parsed<uint64_t> parse_size_detail(std::string_view s) {
  using P = Parsed<uint64_t>;
  std::size_t i = 0;
  while (i < s.size() && is_digit(s[i])) ++i;
  const std::string_view digits = s.substr(0, i);
  const std::string_view unit = s.substr(i);
  if (digits.empty()) {
    if (!s.empty() && s[0] == '-') {
      return P::fail("must not be negative; "s + std::string(kSizeForm));
    }
    return P::fail("not a size; "s + std::string(kSizeForm));
  }
  if (!unit.empty() && (unit[0] == '.' || unit[0] == ',')) {
    return P::fail("whole numbers only; use a smaller unit (1536KiB, not 1.5MiB)");
  }
  static constexpr std::array<std::pair<std::string_view, unsigned>, 6> kUnits{
      {{"", 0}, {"B", 0}, {"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}}};
  std::optional<unsigned> found;
  for (const auto& [name, bits] : kUnits) {
    if (unit == name) found = bits;
  }
  if (!found) {
    const std::string u = lower(unit);
    if (u == "k" || u == "kb" || u == "m" || u == "mb" || u == "g" || u == "gb" || u == "t" ||
        u == "tb" || u == "kib" || u == "mib" || u == "gib" || u == "tib") {
      return P::fail("unknown unit " + in_quotes(unit) +
                     "; sizes use binary units spelled B, KiB, MiB, GiB, TiB (1KiB = 1024 bytes)");
    }
    return P::fail("unknown unit " + in_quotes(unit) + "; " + std::string(kSizeForm));
  }
  const unsigned shift = *found;
  uint64_t n = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec == std::errc::result_out_of_range || n > (UINT64_MAX >> shift)) {
    return P::fail("too large");
  }
  if (ec != std::errc() || end != digits.data() + digits.size()) {
    return P::fail("not a size; "s + std::string(kSizeForm));
  }
  return P::ok(n << shift);
}

enum class IntProblem { kNone, kNotNumber, kNotWhole, kOutOfRange };

IntProblem parse_int(std::string_view s, int64_t& out) {
  std::string_view body = s;
  if (!body.empty() && body[0] == '+') body.remove_prefix(1);
  const std::string_view digits = (!body.empty() && body[0] == '-') ? body.substr(1) : body;
  // Hex, as register maps in meter manuals print addresses (0x5000).
  if (body.size() > 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'X')) {
    const std::string_view hex = body.substr(2);
    uint64_t u = 0;
    const auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), u, 16);
    if (ec == std::errc::result_out_of_range || u > uint64_t(INT64_MAX)) {
      return IntProblem::kOutOfRange;
    }
    if (ec != std::errc() || end != hex.data() + hex.size()) return IntProblem::kNotNumber;
    out = static_cast<int64_t>(u);
    return IntProblem::kNone;
  }
  if (all_digits(digits)) {
    const auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), out);
    if (ec == std::errc::result_out_of_range) return IntProblem::kOutOfRange;
    if (ec != std::errc() || end != body.data() + body.size()) return IntProblem::kNotNumber;
    return IntProblem::kNone;
  }
  double d = 0;
  const auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), d);
  if (ec == std::errc() && end == body.data() + body.size() && std::isfinite(d)) {
    return IntProblem::kNotWhole;
  }
  return IntProblem::kNotNumber;
}

// Strict decimal number: no hex, no "nan"/"inf", nothing trailing.
enum class NumberProblem { kNone, kNotNumber, kOutOfRange };

NumberProblem parse_number(std::string_view s, double& out) {
  std::string_view body = s;
  if (!body.empty() && body[0] == '+') body.remove_prefix(1);
  if (body.empty()) return NumberProblem::kNotNumber;
  for (char c : body) {
    if (!(is_digit(c) || c == '-' || c == '.' || c == 'e' || c == 'E' || c == '+')) {
      return NumberProblem::kNotNumber;
    }
  }
  const auto [end, ec] =
      std::from_chars(body.data(), body.data() + body.size(), out, std::chars_format::general);
  if (end != body.data() + body.size()) return NumberProblem::kNotNumber;
  if (ec == std::errc::result_out_of_range) return NumberProblem::kOutOfRange;
  if (ec != std::errc()) return NumberProblem::kNotNumber;
  if (!std::isfinite(out)) return NumberProblem::kOutOfRange;
  return NumberProblem::kNone;
}

struct HostPort {
  std::string host;
  uint16_t port = 0;
};

Parsed<HostPort> parse_host_port(std::string_view s, bool allow_port_zero) {
  using P = Parsed<HostPort>;
  std::string_view host;
  std::string_view port;
  bool bracketed = false;
  if (s.empty()) return P::fail("empty; write host:port");
  if (s[0] == '[') {
    const std::size_t close = s.find(']');
    if (close == std::string_view::npos) return P::fail("missing ']' after the IPv6 address");
    host = s.substr(1, close - 1);
    const std::string_view rest = s.substr(close + 1);
    if (rest.empty() || rest[0] != ':') return P::fail("no port; write [address]:port");
    port = rest.substr(1);
    bracketed = true;
  } else {
    const std::size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return P::fail("no port; write host:port");
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return P::fail("IPv6 addresses go in brackets, e.g. [fd00::21]:502");
    }
  }
  if (host.empty()) return P::fail("no host; write host:port");
  for (char c : host) {
    const bool ok = bracketed ? (is_hex(c) || c == ':' || c == '.' || c == '%')
                              : (is_alnum(c) || c == '.' || c == '-' || c == '_');
    if (!ok) {
      return P::fail("host " + in_quotes(host) + " has a character not allowed in a host name");
    }
  }
  const unsigned lowest = allow_port_zero ? 0 : 1;
  const std::string range = std::to_string(lowest) + "..65535";
  if (!all_digits(port)) return P::fail("port " + in_quotes(port) + " is not a number " + range);
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value > 65535 || value < lowest) {
    return P::fail("port " + std::string(port) + " is out of range " + range);
  }
  return P::ok(HostPort{std::string(host), static_cast<uint16_t>(value)});
}

bool is_gateway_id(std::string_view s) {
  return !s.empty() && s.size() <= 64 && is_lower_alnum(s[0]) &&
         std::all_of(s.begin(), s.end(), [](char c) { return is_lower_alnum(c) || c == '-'; });
}

// A numeric IPv4 or IPv6 address (what a socket can bind to without a resolver).
bool is_ip_literal(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// Device ids, point names and alarm names: [A-Za-z0-9][A-Za-z0-9._-]{0,63}.
bool is_name(std::string_view s) {
  return !s.empty() && s.size() <= 64 && is_alnum(s[0]) &&
         std::all_of(s.begin(), s.end(),
                     [](char c) { return is_alnum(c) || c == '.' || c == '_' || c == '-'; });
}
constexpr std::string_view kNameRule =
    "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit";

// Why `s` cannot be one MQTT topic level, or "".
std::string topic_level_problem(std::string_view s) {
  if (s.empty()) return "must not be empty";
  for (char c : s) {
    if (c == '/' || c == '+' || c == '#') {
      return "must not contain '/', '+' or '#': it is one level of every MQTT topic";
    }
    if (is_space_or_control(c)) return "must not contain spaces or control characters";
  }
  return {};
}

// Why an opened file is not usable, or nullopt. O_NONBLOCK keeps a FIFO from hanging us.
std::optional<std::string> unreadable_reason(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return std::generic_category().message(errno);
  struct stat st {};
  const int rc = ::fstat(fd, &st);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return std::generic_category().message(err);
  if (S_ISDIR(st.st_mode)) return "it is a directory";
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  return std::nullopt;
}

// Why a private key file must not be used: others on the box could read (or replace) it.
std::optional<std::string> exposed_key_reason(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;  // unreadable_reason() reports it
  if ((st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) == 0) return std::nullopt;
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return "the private key " + path + " is readable or writable by group or others (mode " +
         mode + "); make it readable by the daemon's user only: chmod 600 " + path;
}

// Reads a whole file; on failure returns nullopt and sets `why` to the OS reason.
std::optional<std::string> read_file(const std::string& path, std::string& why) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    why = std::generic_category().message(errno);
    return std::nullopt;
  }
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    why = "it is a directory";
    return std::nullopt;
  }
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      why = std::generic_category().message(errno);
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxFileBytes) {
      why = "larger than 16 MiB; this is not a config file";
      ::close(fd);
      return std::nullopt;
    }
  }
  ::close(fd);
  return text;
}

int line_of(const Node& n) {
  if (!n.IsDefined()) return 0;
  const YAML::Mark m = n.Mark();
  return m.is_null() ? 0 : m.line + 1;
}

std::string node_kind(const Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a single value";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

// ---------------------------------------------------------------------------------------------
// Collecting errors

class ErrorSink {
 public:
  void add(ConfigError e, int order) {
    if (entries_.size() >= kMaxErrors) {
      ++dropped_;
      return;
    }
    entries_.push_back({order, std::move(e)});
  }
  bool empty() const { return entries_.empty() && dropped_ == 0; }

  std::vector<ConfigError> finish(const std::string& file) {
    std::stable_sort(entries_.begin(), entries_.end(),
                     [](const Entry& a, const Entry& b) { return a.order < b.order; });
    std::vector<ConfigError> out;
    out.reserve(entries_.size() + 1);
    for (auto& e : entries_) out.push_back(std::move(e.error));
    if (dropped_ > 0) {
      out.push_back(ConfigError{
          file, 0, "", "",
          std::to_string(dropped_) + " more problems not shown; fix the ones above first"});
    }
    return out;
  }

 private:
  struct Entry {
    int order;
    ConfigError error;
  };
  std::vector<Entry> entries_;
  std::size_t dropped_ = 0;
};

// Reports problems in one YAML file and reads typed scalars. Every getter returns nullopt after
// reporting, so callers only decide what to do with a good value.
class Checker {
 public:
  // anchor_line >= 0: errors sort at that line of the main file (a profile's errors sort where
  // the profile is named).
  Checker(ErrorSink& sink, std::string file, fs::path base_dir, int anchor_line = -1)
      : sink_(sink),
        file_(std::move(file)),
        base_dir_(std::move(base_dir)),
        anchor_line_(anchor_line) {}

  const std::string& file() const { return file_; }

  void report(int at_line, const std::string& path, std::string_view value, std::string message) {
    std::string v(value.substr(0, kMaxValueChars));
    if (value.size() > kMaxValueChars) v += "...";
    sink_.add(ConfigError{file_, at_line, path, std::move(v), context_ + std::move(message)},
              anchor_line_ >= 0 ? anchor_line_ : at_line);
  }
  // Put in front of every message until cleared: "alarm rule 'x': " names the rule, since a key
  // path like alarms[7].point does not.
  void set_context(std::string context) { context_ = std::move(context); }
  void report(const Node& at, const std::string& path, std::string_view value,
              std::string message) {
    report(line_of(at), path, value, std::move(message));
  }

  std::optional<std::string> scalar(const Node& n, const std::string& path) {
    if (n.IsScalar()) return n.Scalar();
    if (n.IsNull()) {
      report(n, path, "", "has no value");
    } else {
      report(n, path, "", "expected a single value, got " + node_kind(n));
    }
    return std::nullopt;
  }

  std::optional<std::string> text(const Node& n, const std::string& path) {
    auto s = scalar(n, path);
    if (s && s->empty()) {
      report(n, path, "", "must not be empty");
      return std::nullopt;
    }
    return s;
  }

  std::optional<int64_t> integer(const Node& n, const std::string& path, int64_t lo, int64_t hi) {
    const auto s = scalar(n, path);
    if (!s) return std::nullopt;
    const std::string range = std::to_string(lo) + ".." + std::to_string(hi);
    int64_t v = 0;
    switch (parse_int(*s, v)) {
      case IntProblem::kNone:
        if (v >= lo && v <= hi) return v;
        [[fallthrough]];
      case IntProblem::kOutOfRange:
        report(n, path, *s, "out of range; must be a whole number from " + range);
        return std::nullopt;
      case IntProblem::kNotWhole:
        report(n, path, *s, "must be a whole number from " + range);
        return std::nullopt;
      case IntProblem::kNotNumber:
        break;
    }
    report(n, path, *s, "not a number; expected a whole number from " + range);
    return std::nullopt;
  }

  std::optional<double> number(const Node& n, const std::string& path) {
    const auto s = scalar(n, path);
    if (!s) return std::nullopt;
    double v = 0;
    switch (parse_number(*s, v)) {
      case NumberProblem::kNone:
        return v;
      case NumberProblem::kOutOfRange:
        report(n, path, *s, "number is too large (or not finite)");
        return std::nullopt;
      case NumberProblem::kNotNumber:
        break;
    }
    report(n, path, *s, "not a number; write a decimal number like 0.01, 250 or -5");
    return std::nullopt;
  }

  std::optional<bool> boolean(const Node& n, const std::string& path) {
    const auto s = scalar(n, path);
    if (!s) return std::nullopt;
    const std::string v = lower(*s);
    if (v == "true" || v == "yes" || v == "on") return true;
    if (v == "false" || v == "no" || v == "off") return false;
    report(n, path, *s, "not a boolean; write true or false");
    return std::nullopt;
  }

  std::optional<Duration> duration(const Node& n, const std::string& path,
                                   bool allow_zero = false) {
    const auto s = scalar(n, path);
    if (!s) return std::nullopt;
    auto p = parse_duration_detail(*s, allow_zero);
    if (!p.value) report(n, path, *s, p.why);
    return p.value;
  }

  std::optional<uint64_t> size(const Node& n, const std::string& path) {
    const auto s = scalar(n, path);
    if (!s) return std::nullopt;
    auto p = parse_size_detail(*s);
    if (!p.value) report(n, path, *s, p.why);
    return p.value;
  }

  template <typename T, std::size_t N>
  std::optional<T> choice(const Node& n, const std::string& path,
                          const std::array<std::pair<std::string_view, T>, N>& options) {
    const auto s = scalar(n, path);
    if (!s) return std::nullopt;
    std::vector<std::string_view> names;
    for (const auto& [name, value] : options) {
      if (name == *s) return value;
      names.push_back(name);
    }
    report(n, path, *s, did_you_mean(*s, names) + "must be one of: " + join(names));
    return std::nullopt;
  }

  // A path as written, made absolute against the config file's folder.
  std::string resolve(const std::string& p) const {
    const fs::path q(p);
    if (q.is_absolute()) return q.lexically_normal().string();
    return (base_dir_ / q).lexically_normal().string();
  }

  std::optional<std::string> path_value(const Node& n, const std::string& path) {
    const auto s = text(n, path);
    if (!s) return std::nullopt;
    return resolve(*s);
  }

  // A file the daemon will read: resolved, and checked now so a typo fails at start-up.
  std::optional<std::string> readable_file(const Node& n, const std::string& path) {
    const auto s = text(n, path);
    if (!s) return std::nullopt;
    std::string abs = resolve(*s);
    if (auto why = unreadable_reason(abs)) {
      report(n, path, *s, "cannot read " + abs + ": " + *why);
      return std::nullopt;
    }
    return abs;
  }

  std::vector<Node> list(const Node& n, const std::string& path) {
    std::vector<Node> items;
    if (n.IsSequence()) {
      for (const auto& item : n) items.push_back(item);
    } else if (!n.IsNull()) {
      report(n, path, n.IsScalar() ? n.Scalar() : "",
             "expected a list (entries starting with '- '), got " + node_kind(n));
    }
    return items;
  }

 private:
  ErrorSink& sink_;
  std::string file_;
  fs::path base_dir_;
  int anchor_line_;
  std::string context_;
};

// One YAML map, read without surprises: duplicate keys and non-scalar keys are reported when it
// is built, unknown keys by check_keys().
class MapReader {
 public:
  // key_line: the line of the key this map is the value of. A block map's own mark is its first
  // entry, but "missing from gateway (line 1)" should point at `gateway:`.
  MapReader(Checker& c, const Node& node, std::string path, bool null_is_empty = false,
            int key_line = 0)
      : c_(c), path_(std::move(path)), line_(key_line > 0 ? key_line : line_of(node)) {
    if (node.IsMap()) {
      ok_ = true;
      for (auto it = node.begin(); it != node.end(); ++it) {
        const Node key = it->first;
        const Node value = it->second;
        if (!key.IsScalar()) {
          c_.report(key.IsDefined() ? key : node, path_, "",
                    "keys must be plain names, not " + node_kind(key));
          continue;
        }
        const std::string name = key.Scalar();
        if (const Entry* first = entry(name)) {
          c_.report(key, child(name), "",
                    "duplicate key " + in_quotes(name) + " (first at line " +
                        std::to_string(line_of(first->key)) + "); keep one");
          continue;
        }
        entries_.push_back({name, key, value});
      }
    } else if (null_is_empty && node.IsNull()) {
      ok_ = true;
    } else {
      std::string what = path_.empty() ? "the file must be a map of sections (gateway:, mqtt:, ...)"
                                       : "expected a map of `key: value` entries";
      c_.report(node, path_, node.IsScalar() ? node.Scalar() : "",
                what + ", got " + node_kind(node));
    }
  }

  bool ok() const { return ok_; }
  int line() const { return line_; }
  const std::string& path() const { return path_; }
  std::string child(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }

  const Node* find(std::string_view key) const {
    const Entry* e = entry(key);
    return e ? &e->value : nullptr;
  }
  bool has(std::string_view key) const { return entry(key) != nullptr; }
  int key_line(std::string_view key) const {
    const Entry* e = entry(key);
    return e ? line_of(e->key) : line_;
  }

  const Node* require(std::string_view key, std::string_view why = {}) {
    if (const Node* v = find(key)) return v;
    const std::string where =
        path_.empty() ? "the file" : path_ + " (line " + std::to_string(line_) + ")";
    c_.report(line_, child(key), "",
              "required key " + in_quotes(key) + " is missing from " + where +
                  (why.empty() ? "" : "; " + std::string(why)));
    return nullptr;
  }

  // Reports every key not in `allowed`. `misplaced` may explain a key that is valid elsewhere.
  void check_keys(
      const std::vector<std::string_view>& allowed,
      const std::function<std::optional<std::string>(std::string_view)>& misplaced = {}) {
    for (const Entry& e : entries_) {
      if (std::find(allowed.begin(), allowed.end(), e.name) != allowed.end()) continue;
      if (misplaced) {
        if (auto why = misplaced(e.name)) {
          c_.report(e.key, child(e.name), "", *why);
          continue;
        }
      }
      const std::string best = closest(e.name, allowed);
      c_.report(e.key, child(e.name), "",
                "unknown key " + in_quotes(e.name) +
                    (best.empty() ? "" : " (did you mean " + in_quotes(best) + "?)") +
                    "; expected one of: " + join(allowed));
    }
  }

 private:
  struct Entry {
    std::string name;
    Node key;
    Node value;
  };
  const Entry* entry(std::string_view key) const {
    for (const Entry& e : entries_) {
      if (e.name == key) return &e;
    }
    return nullptr;
  }

  Checker& c_;
  std::string path_;
  int line_ = 0;
  bool ok_ = false;
  std::vector<Entry> entries_;
};

std::string indexed(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

// ---------------------------------------------------------------------------------------------
// Vocabulary

using campus::gateway::v1::DeviceKind;
namespace pb = campus::gateway::v1;

constexpr std::array<std::pair<std::string_view, DeviceKind>, 5> kKinds{{
    {"energy_meter", pb::ENERGY_METER},
    {"access_gate", pb::ACCESS_GATE},
    {"card_reader", pb::CARD_READER},
    {"camera", pb::CAMERA},
    {"sensor", pb::SENSOR},
}};
constexpr std::array<std::pair<std::string_view, std::string_view>, 8> kDrivers{{
    {"modbus_tcp", "modbus_tcp"},
    {"modbus_rtu", "modbus_rtu"},
    {"dlt645", "dlt645"},
    {"serial_line", "serial_line"},
    {"tcp_line", "tcp_line"},
    {"camera_http", "camera_http"},
    {"modbus_gate", "modbus_gate"},
    {"uhppote", "uhppote"},
}};
constexpr std::array<std::pair<std::string_view, char>, 3> kParities{
    {{"none", 'N'}, {"even", 'E'}, {"odd", 'O'}}};
constexpr std::array<std::pair<std::string_view, WhenFull>, 2> kWhenFull{
    {{"reject_new", WhenFull::kRejectNew}, {"drop_oldest", WhenFull::kDropOldest}}};
constexpr std::array<std::pair<std::string_view, EventClass>, 4> kClasses{
    {{"access", pb::ACCESS},
     {"alarm", pb::ALARM},
     {"telemetry", pb::TELEMETRY},
     {"status", pb::STATUS}}};
constexpr std::array<std::pair<std::string_view, PrivacySection::CardId>, 2> kCardIds{
    {{"raw", PrivacySection::CardId::kRaw}, {"hmac", PrivacySection::CardId::kHmac}}};
constexpr std::array<std::pair<std::string_view, std::string_view>, 3> kDirections{
    {{"in", "in"}, {"out", "out"}, {"unknown", "unknown"}}};
constexpr std::array<std::pair<std::string_view, std::string_view>, 4> kCardFormats{
    {{"decimal", "decimal"},
     {"hex", "hex"},
     {"wiegand26", "wiegand26"},
     {"wiegand34", "wiegand34"}}};
constexpr std::array<std::pair<std::string_view, FramingSection::Type>, 3> kFramings{
    {{"line", FramingSection::Type::kLine},
     {"stx_etx", FramingSection::Type::kStxEtx},
     {"fixed", FramingSection::Type::kFixed}}};
constexpr std::array<std::pair<std::string_view, std::string_view>, 4> kSeverities{
    {{"info", "info"}, {"minor", "minor"}, {"major", "major"}, {"critical", "critical"}}};
constexpr std::array<std::pair<std::string_view, protocols::RegisterTable>, 4> kTables{
    {{"holding", protocols::RegisterTable::kHolding},
     {"input", protocols::RegisterTable::kInput},
     {"coil", protocols::RegisterTable::kCoil},
     {"discrete", protocols::RegisterTable::kDiscrete}}};
constexpr std::array<int, 8> kBauds{1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200};

// The modbus_gate register layout's fixed sizes (drivers/gate/modbus_gate_source.h).
constexpr uint32_t kGateStatusRegisters = 8;
constexpr uint32_t kGateRecordRegisters = 8;

// Device keys and the drivers that take them ("*": every driver).
struct DeviceKey {
  std::string_view key;
  std::string_view drivers;
};
constexpr DeviceKey kDeviceKeys[] = {
    {"id", "*"},
    {"kind", "*"},
    {"driver", "*"},
    {"poll", "*"},
    {"timeout", "*"},
    {"offline_after", "*"},
    {"door", "*"},
    {"direction", "*"},
    {"address", "modbus_tcp tcp_line camera_http modbus_gate uhppote"},
    {"bus", "modbus_rtu dlt645 serial_line"},
    {"port", "serial_line"},
    {"baud", "serial_line"},
    {"parity", "serial_line"},
    {"data_bits", "serial_line"},
    {"stop_bits", "serial_line"},
    {"unit_id", "modbus_tcp modbus_rtu modbus_gate"},
    {"max_registers", "modbus_tcp modbus_rtu"},
    {"max_gap", "modbus_tcp modbus_rtu"},
    {"points", "modbus_tcp modbus_rtu dlt645"},
    {"profile", "modbus_tcp modbus_rtu dlt645"},
    {"meter_address", "dlt645"},
    {"framing", "serial_line tcp_line"},
    {"card_format", "serial_line tcp_line"},
    {"idle_timeout", "tcp_line"},
    {"serial_number", "uhppote"},
    {"listen", "uhppote camera_http"},
    {"mode", "camera_http"},
    {"vendor", "camera_http"},
    {"path", "camera_http"},
    {"username", "camera_http"},
    {"password_file", "camera_http"},
    {"auth", "camera_http"},
    {"heartbeat", "camera_http"},
    {"heartbeat_timeout", "camera_http"},
    {"inactive_after", "camera_http"},
    {"allow_from", "camera_http"},
    {"max_body", "camera_http"},
    {"max_connections", "camera_http"},
    {"registers", "modbus_gate"},
    {"log_size", "modbus_gate"},
};

bool driver_takes(const DeviceKey& k, std::string_view driver) {
  if (k.drivers == "*") return true;
  std::string_view rest = k.drivers;
  while (!rest.empty()) {
    const std::size_t sp = rest.find(' ');
    if (rest.substr(0, sp) == driver) return true;
    if (sp == std::string_view::npos) break;
    rest.remove_prefix(sp + 1);
  }
  return false;
}

std::vector<std::string_view> device_keys_for(std::string_view driver) {
  std::vector<std::string_view> keys;
  for (const DeviceKey& k : kDeviceKeys) {
    if (driver.empty() || driver_takes(k, driver)) keys.push_back(k.key);
  }
  return keys;
}

bool is_modbus(std::string_view driver) { return driver == "modbus_tcp" || driver == "modbus_rtu"; }
bool has_points(std::string_view driver) { return is_modbus(driver) || driver == "dlt645"; }

enum class PointFamily { kModbus, kDlt645 };

const std::vector<std::string_view> kModbusPointKeys{
    "name", "table", "address", "type", "word_order", "scale", "offset", "unit", "report"};
const std::vector<std::string_view> kDltPointKeys{"name", "di", "decimals", "unit", "report"};

// ---------------------------------------------------------------------------------------------
// The loader

class Loader {
 public:
  Loader(ErrorSink& sink, std::string file, fs::path base_dir)
      : sink_(sink), base_dir_(base_dir), c_(sink, std::move(file), std::move(base_dir)) {}

  void load(const Node& root, Config& cfg) {
    MapReader r(c_, root, "");
    if (!r.ok()) return;
    r.check_keys({"gateway", "mqtt", "buffer", "control", "metrics", "privacy", "buses", "devices",
                  "alarms"});
    init_classes(cfg.buffer);
    if (const Node* n = r.require("gateway")) load_gateway(*n, r.key_line("gateway"), cfg.gateway);
    if (const Node* n = r.require("mqtt")) load_mqtt(*n, r.key_line("mqtt"), cfg.mqtt);
    if (const Node* n = r.find("buffer")) load_buffer(*n, r.key_line("buffer"), cfg.buffer);
    if (const Node* n = r.find("control")) load_control(*n, r.key_line("control"), cfg.control);
    if (const Node* n = r.find("metrics")) load_metrics(*n, r.key_line("metrics"), cfg.metrics);
    if (const Node* n = r.find("privacy")) load_privacy(*n, r.key_line("privacy"), cfg.privacy);
    if (const Node* n = r.find("buses")) load_buses(*n, cfg.buses);
    if (const Node* n = r.find("devices")) load_devices(*n, cfg);
    if (const Node* n = r.find("alarms")) load_alarms(*n, cfg);
    if (cfg.mqtt.client_id.empty()) cfg.mqtt.client_id = cfg.gateway.id;
  }

 private:
  static void init_classes(BufferSection& b) {
    b.classes[pb::ACCESS] = {std::chrono::days(180), WhenFull::kRejectNew};
    b.classes[pb::ALARM] = {std::chrono::days(180), WhenFull::kRejectNew};
    b.classes[pb::TELEMETRY] = {std::chrono::days(30), WhenFull::kDropOldest};
    b.classes[pb::STATUS] = {std::chrono::days(30), WhenFull::kDropOldest};
  }

  void load_gateway(const Node& n, int key_line, GatewaySection& g) {
    MapReader r(c_, n, "gateway", false, key_line);
    if (!r.ok()) return;
    r.check_keys({"id", "site", "building", "data_dir"});
    if (const Node* v = r.require("id")) {
      if (auto s = c_.text(*v, r.child("id"))) {
        if (is_gateway_id(*s)) {
          g.id = *s;
        } else {
          c_.report(*v, r.child("id"), *s,
                    "must be 1-64 lowercase letters, digits or '-', starting with a letter or "
                    "digit (it is part of every MQTT topic and event id)");
        }
      }
    }
    for (const char* key : {"site", "building"}) {
      if (const Node* v = r.require(key)) {
        if (auto s = c_.scalar(*v, r.child(key))) {
          if (auto why = topic_level_problem(*s); !why.empty()) {
            c_.report(*v, r.child(key), *s, why);
          } else {
            (std::string_view(key) == "site" ? g.site : g.building) = *s;
          }
        }
      }
    }
    if (const Node* v = r.require("data_dir")) {
      if (auto p = c_.path_value(*v, r.child("data_dir"))) g.data_dir = *p;
    }
  }

  void load_mqtt(const Node& n, int key_line, MqttSection& m) {
    MapReader r(c_, n, "mqtt", false, key_line);
    if (!r.ok()) return;
    r.check_keys({"uri", "client_id", "username", "password_file", "tls", "topic_prefix",
                  "keepalive", "max_inflight", "batch_max_events", "backoff"},
                 [](std::string_view key) -> std::optional<std::string> {
                   if (key == "password") {
                     return "the password never goes in this file; write it to a file only the "
                            "daemon can read and name that file with password_file:"s;
                   }
                   if (key == "ca_file" || key == "cert_file" || key == "key_file" ||
                       key == "verify_hostname") {
                     return in_quotes(key) + " belongs under mqtt.tls";
                   }
                   return std::nullopt;
                 });
    bool ssl = false;
    bool uri_ok = false;
    const Node* uri = r.require("uri");
    if (uri) {
      if (auto s = c_.text(*uri, r.child("uri"))) {
        std::string_view rest = *s;
        std::string problem;
        if (starts_with(rest, "tcp://")) {
          rest.remove_prefix(6);
        } else if (starts_with(rest, "ssl://")) {
          rest.remove_prefix(6);
          ssl = true;
        } else if (starts_with(rest, "mqtt://")) {
          problem = "scheme must be tcp:// or ssl://; write tcp:// instead of mqtt://";
        } else if (starts_with(rest, "mqtts://")) {
          problem = "scheme must be tcp:// or ssl://; write ssl:// instead of mqtts://";
        } else {
          problem = "must start with tcp:// or ssl://, e.g. tcp://127.0.0.1:1883";
        }
        if (problem.empty()) {
          auto hp = parse_host_port(rest, false);
          if (!hp.value) {
            problem = hp.why + " (write it like tcp://127.0.0.1:1883 or ssl://broker:8883)";
          }
        }
        if (problem.empty()) {
          m.uri = *s;
          uri_ok = true;
        } else {
          c_.report(*uri, r.child("uri"), *s, problem);
        }
      }
    }
    if (const Node* v = r.find("client_id")) {
      if (auto s = c_.text(*v, r.child("client_id"))) {
        if (std::any_of(s->begin(), s->end(), is_space_or_control)) {
          c_.report(*v, r.child("client_id"), *s, "must not contain spaces or control characters");
        } else if (s->size() > 65535) {
          c_.report(*v, r.child("client_id"), *s, "longer than MQTT allows (65535 bytes)");
        } else {
          m.client_id = *s;
        }
      }
    }
    if (const Node* v = r.find("username")) {
      if (auto s = c_.text(*v, r.child("username"))) m.username = *s;
    }
    if (const Node* v = r.find("password_file")) {
      if (auto p = c_.readable_file(*v, r.child("password_file"))) m.password_file = *p;
    }
    const Node* tls = r.find("tls");
    if (tls) m.tls = load_tls(*tls, r.key_line("tls"));
    if (const Node* v = r.find("topic_prefix")) {
      const std::string path = r.child("topic_prefix");
      if (auto s = c_.text(*v, path)) {
        std::string why;
        for (char ch : *s) {
          if (ch == '+' || ch == '#') {
            why = "must not contain '+' or '#' (MQTT wildcards)";
          } else if (is_space_or_control(ch)) {
            why = "must not contain spaces or control characters";
          }
        }
        if (why.empty() &&
            (s->front() == '/' || s->back() == '/' || s->find("//") != std::string::npos)) {
          why = "must not start or end with '/' or contain '//' (empty topic levels)";
        }
        if (why.empty()) {
          m.topic_prefix = *s;
        } else {
          c_.report(*v, path, *s, why);
        }
      }
    }
    if (const Node* v = r.find("keepalive")) {
      const std::string path = r.child("keepalive");
      if (auto d = c_.duration(*v, path)) {
        if (d->count() % 1000 != 0 || *d > std::chrono::seconds(65535)) {
          c_.report(*v, path, v->Scalar(),
                    "must be whole seconds from 1s to 65535s (MQTT counts keepalive in seconds)");
        } else {
          m.keepalive = *d;
        }
      }
    }
    if (const Node* v = r.find("max_inflight")) {
      if (auto i = c_.integer(*v, r.child("max_inflight"), 1, 65535)) {
        m.max_inflight = static_cast<int>(*i);
      }
    }
    if (const Node* v = r.find("batch_max_events")) {
      if (auto i = c_.integer(*v, r.child("batch_max_events"), 1, 10000)) {
        m.batch_max_events = static_cast<int>(*i);
      }
    }
    if (const Node* v = r.find("backoff")) load_backoff(*v, r.key_line("backoff"), m);

    if (uri_ok && ssl && !tls) {
      c_.report(*uri, "mqtt.tls", m.uri,
                "the uri uses ssl:// but mqtt has no tls section; add tls: { ca_file: ... }");
    }
    if (uri_ok && !ssl && tls) {
      c_.report(r.key_line("tls"), "mqtt.tls", m.uri,
                "tls is set but the uri is tcp://, which would connect unencrypted; use ssl://");
    }
  }

  std::optional<TlsSection> load_tls(const Node& n, int key_line) {
    MapReader r(c_, n, "mqtt.tls", false, key_line);
    if (!r.ok()) return std::nullopt;
    r.check_keys({"ca_file", "cert_file", "key_file", "verify_hostname"});
    TlsSection t;
    if (const Node* v =
            r.require("ca_file", "it names the CA that signed the broker's certificate")) {
      if (auto p = c_.readable_file(*v, r.child("ca_file"))) t.ca_file = *p;
    }
    const Node* cert = r.find("cert_file");
    const Node* key = r.find("key_file");
    if (cert) {
      if (auto p = c_.readable_file(*cert, r.child("cert_file"))) t.cert_file = *p;
    }
    if (key) {
      if (auto p = c_.readable_file(*key, r.child("key_file"))) {
        if (auto why = exposed_key_reason(*p)) {
          c_.report(*key, r.child("key_file"), key->Scalar(), *why);
        } else {
          t.key_file = *p;
        }
      }
    }
    if (cert && !key) {
      c_.report(*cert, r.child("key_file"), "",
                "cert_file is set but key_file is not; a client certificate needs both");
    } else if (key && !cert) {
      c_.report(*key, r.child("cert_file"), "",
                "key_file is set but cert_file is not; a client certificate needs both");
    }
    if (const Node* v = r.find("verify_hostname")) {
      if (auto b = c_.boolean(*v, r.child("verify_hostname"))) t.verify_hostname = *b;
    }
    return t;
  }

  void load_backoff(const Node& n, int key_line, MqttSection& m) {
    MapReader r(c_, n, "mqtt.backoff", false, key_line);
    if (!r.ok()) return;
    r.check_keys({"initial", "max", "splay"});
    std::optional<Duration> initial;
    std::optional<Duration> max;
    if (const Node* v = r.find("initial")) initial = c_.duration(*v, r.child("initial"));
    if (const Node* v = r.find("max")) max = c_.duration(*v, r.child("max"));
    if (const Node* v = r.find("splay")) {
      if (auto d = c_.duration(*v, r.child("splay"), /*allow_zero=*/true)) {
        if (*d > std::chrono::minutes(10)) {
          c_.report(*v, r.child("splay"), v->Scalar(), "must be at most 10m");
        } else {
          m.startup_splay = *d;
        }
      }
    }
    if (initial) m.backoff_initial = *initial;
    if (max) m.backoff_max = *max;
    if ((initial || max) && m.backoff_initial > m.backoff_max) {
      const Node* at = initial ? r.find("initial") : r.find("max");
      c_.report(*at, initial ? r.child("initial") : r.child("max"), at->Scalar(),
                "backoff.initial (" + format_duration(m.backoff_initial) +
                    ") must not be longer than backoff.max (" + format_duration(m.backoff_max) +
                    ")");
    }
  }

  void load_buffer(const Node& n, int key_line, BufferSection& b) {
    MapReader r(c_, n, "buffer", true, key_line);
    if (!r.ok()) return;
    r.check_keys({"max_bytes", "telemetry_linger", "classes"});
    if (const Node* v = r.find("telemetry_linger")) {
      const std::string path = r.child("telemetry_linger");
      if (auto d = c_.duration(*v, path, /*allow_zero=*/true)) {
        if (*d > std::chrono::seconds(1)) {
          c_.report(*v, path, v->Scalar(), "must be at most 1s (0 commits telemetry at once)");
        } else {
          b.telemetry_linger = *d;
        }
      }
    }
    if (const Node* v = r.find("max_bytes")) {
      if (auto s = c_.size(*v, r.child("max_bytes"))) {
        if (*s < (1u << 20)) {
          c_.report(*v, r.child("max_bytes"), v->Scalar(), "must be at least 1MiB");
        } else {
          b.max_bytes = *s;
        }
      }
    }
    const Node* classes = r.find("classes");
    if (!classes) return;
    MapReader cr(c_, *classes, "buffer.classes", true, r.key_line("classes"));
    if (!cr.ok()) return;
    std::vector<std::string_view> names;
    names.reserve(kClasses.size());
    for (const auto& [name, cls] : kClasses) names.push_back(name);
    cr.check_keys(names);
    for (const auto& [name, cls] : kClasses) {
      const Node* cn = cr.find(name);
      if (!cn) continue;
      MapReader pr(c_, *cn, cr.child(name), false, cr.key_line(name));
      if (!pr.ok()) continue;
      pr.check_keys({"max_age", "when_full"});
      ClassPolicy& policy = b.classes[cls];
      if (const Node* v = pr.find("max_age")) {
        if (auto d = c_.duration(*v, pr.child("max_age"))) policy.max_age = *d;
      }
      if (const Node* v = pr.find("when_full")) {
        if (auto w = c_.choice(*v, pr.child("when_full"), kWhenFull)) {
          if (*w == WhenFull::kDropOldest && (cls == pb::ACCESS || cls == pb::ALARM)) {
            c_.report(*v, pr.child("when_full"), v->Scalar(),
                      std::string(name) +
                          " events are never evicted (contract: delivery promise 4); use "
                          "reject_new, which raises an alarm when the buffer is full");
          } else {
            policy.when_full = *w;
          }
        }
      }
    }
  }

  void load_control(const Node& n, int key_line, ControlSection& ctl) {
    MapReader r(c_, n, "control", true, key_line);
    if (!r.ok()) return;
    r.check_keys({"socket"});
    if (const Node* v = r.find("socket")) {
      if (auto p = c_.path_value(*v, r.child("socket"))) {
        if (p->size() > kMaxSocketPath) {
          c_.report(*v, r.child("socket"), v->Scalar(),
                    "the resolved path " + *p + " is " + std::to_string(p->size()) +
                        " bytes; a Unix socket path must be at most 107 bytes");
        } else {
          ctl.socket = *p;
        }
      }
    }
  }

  void load_metrics(const Node& n, int key_line, MetricsSection& met) {
    MapReader r(c_, n, "metrics", true, key_line);
    if (!r.ok()) return;
    r.check_keys({"listen"});
    if (const Node* v = r.find("listen")) {
      if (auto s = c_.text(*v, r.child("listen"))) {
        // Port 0 is allowed: tests bind an ephemeral port and read it back.
        auto hp = parse_host_port(*s, true);
        if (hp.value) {
          met.listen = *s;
        } else {
          c_.report(*v, r.child("listen"), *s, hp.why + " (e.g. 127.0.0.1:9108)");
        }
      }
    }
  }

  void load_privacy(const Node& n, int key_line, PrivacySection& p) {
    MapReader r(c_, n, "privacy", true, key_line);
    if (!r.ok()) return;
    r.check_keys({"card_id", "key_file"});
    if (const Node* v = r.find("card_id")) {
      if (auto mode = c_.choice(*v, r.child("card_id"), kCardIds)) p.card_id = *mode;
    }
    const Node* key = r.find("key_file");
    if (key) {
      if (auto f = c_.readable_file(*key, r.child("key_file"))) {
        std::string why;
        auto bytes = read_file(*f, why);
        if (bytes && !bytes->empty() && bytes->back() == '\n') bytes->pop_back();
        if (bytes && bytes->empty() && p.card_id == PrivacySection::CardId::kHmac) {
          c_.report(*key, r.child("key_file"), key->Scalar(),
                    "the key file " + *f + " is empty; an HMAC key must not be empty");
        } else {
          p.key_file = *f;
        }
      }
    } else if (p.card_id == PrivacySection::CardId::kHmac) {
      r.require("key_file", "card_id: hmac needs the key");
    }
  }

  // baud, parity, data_bits, stop_bits of a bus or of a serial_line device's own port.
  void load_line_settings(const MapReader& r, BusSection& b) {
    if (const Node* v = r.find("baud")) {
      if (auto i = c_.integer(*v, r.child("baud"), 1, INT_MAX)) {
        if (std::find(kBauds.begin(), kBauds.end(), *i) == kBauds.end()) {
          c_.report(*v, r.child("baud"), v->Scalar(),
                    "not a standard baud rate; use one of 1200, 2400, 4800, 9600, 19200, 38400, "
                    "57600, 115200");
        } else {
          b.baud = static_cast<int>(*i);
        }
      }
    }
    if (const Node* v = r.find("parity")) {
      if (auto pty = c_.choice(*v, r.child("parity"), kParities)) b.parity = *pty;
    }
    if (const Node* v = r.find("data_bits")) {
      if (auto i = c_.integer(*v, r.child("data_bits"), 5, 8)) b.data_bits = static_cast<int>(*i);
    }
    if (const Node* v = r.find("stop_bits")) {
      if (auto i = c_.integer(*v, r.child("stop_bits"), 1, 2)) b.stop_bits = static_cast<int>(*i);
    }
  }

  // A serial port may have one owner: a bus or a serial_line device.
  void claim_port(const Node& at, const std::string& path, const std::string& port,
                  const std::string& owner) {
    auto [it, inserted] =
        port_owner_.emplace(port, owner + " (line " + std::to_string(line_of(at)) + ")");
    if (!inserted) {
      c_.report(at, path, port,
                "serial port already used by " + it->second + "; a port can have one owner");
    }
  }

  void load_buses(const Node& n, std::vector<BusSection>& buses) {
    const auto items = c_.list(n, "buses");
    for (std::size_t i = 0; i < items.size(); ++i) {
      const std::string path = indexed("buses", i);
      MapReader r(c_, items[i], path);
      if (!r.ok()) continue;
      r.check_keys({"id", "port", "baud", "parity", "data_bits", "stop_bits", "turnaround"});
      BusSection b;
      b.line = r.line();
      if (const Node* v = r.require("id")) {
        if (auto s = c_.text(*v, r.child("id"))) {
          if (!is_gateway_id(*s)) {
            c_.report(*v, r.child("id"), *s,
                      "must be 1-64 lowercase letters, digits or '-', starting with a letter or "
                      "digit");
          } else if (auto it = bus_index_.find(*s); it != bus_index_.end()) {
            c_.report(*v, r.child("id"), *s,
                      "duplicate bus id; first defined at line " +
                          std::to_string(buses[it->second].line));
          } else {
            b.id = *s;
          }
        }
      }
      if (const Node* v = r.require("port", "the serial device, e.g. /dev/ttyS1")) {
        if (auto s = c_.text(*v, r.child("port"))) {
          if (s->rfind("tcp://", 0) == 0) {
            // A serial server (RS-485 to Ethernet) carrying the line's raw frames over TCP.
            auto hp = parse_host_port(std::string_view(*s).substr(6), false);
            if (hp.value) {
              b.port = *s;
              b.tcp_host = hp.value->host;
              b.tcp_port = hp.value->port;
              claim_port(*v, r.child("port"), *s, "bus " + in_quotes(b.id));
            } else {
              c_.report(*v, r.child("port"), *s, hp.why + " (e.g. tcp://10.0.3.50:4001)");
            }
          } else if ((*s)[0] != '/') {
            c_.report(*v, r.child("port"), *s,
                      "must be an absolute device path like /dev/ttyS1, or tcp://host:port for a "
                      "serial server");
          } else {
            b.port = *s;
            claim_port(*v, r.child("port"), *s, "bus " + in_quotes(b.id));
          }
        }
      }
      load_line_settings(r, b);
      if (const Node* v = r.find("turnaround")) {
        if (auto d = c_.duration(*v, r.child("turnaround"), /*allow_zero=*/true)) {
          if (*d > std::chrono::seconds(1)) {
            c_.report(*v, r.child("turnaround"), v->Scalar(), "at most 1s");
          } else {
            b.turnaround = *d;
          }
        }
      }
      if (!b.id.empty()) bus_index_.emplace(b.id, buses.size());
      buses.push_back(std::move(b));
    }
  }

  // ---- devices ----

  struct DeviceRefs {  // what later cross-checks need to point at
    int bus_line = 0;
    int unit_line = 0;
    int meter_line = 0;
  };

  void load_devices(const Node& n, Config& cfg) {
    const auto items = c_.list(n, "devices");
    std::map<std::string, int> id_line;
    std::vector<DeviceRefs> refs;
    for (std::size_t i = 0; i < items.size(); ++i) {
      const std::string path = indexed("devices", i);
      MapReader r(c_, items[i], path);
      if (!r.ok()) continue;
      DeviceSection d;
      DeviceRefs ref;
      d.line = r.line();
      load_device(r, d, ref, cfg);
      if (!d.id.empty()) {
        auto [it, inserted] = id_line.emplace(d.id, r.key_line("id"));
        if (!inserted) {
          c_.report(r.key_line("id"), r.child("id"), d.id,
                    "duplicate device id; first defined at line " + std::to_string(it->second));
        }
      }
      cfg.devices.push_back(std::move(d));
      refs.push_back(ref);
    }
    check_bus_sharing(cfg, refs);
  }

  void load_device(MapReader& r, DeviceSection& d, DeviceRefs& ref, const Config& cfg) {
    // The driver decides which keys are valid, so read it first.
    std::string driver;
    if (const Node* v = r.require("driver")) {
      if (auto s = c_.choice(*v, r.child("driver"), kDrivers)) driver = *s;
    }
    d.driver = driver;
    r.check_keys(device_keys_for(driver), [&](std::string_view key) -> std::optional<std::string> {
      const bool line_setting =
          key == "baud" || key == "parity" || key == "data_bits" || key == "stop_bits";
      if (line_setting && (driver == "modbus_rtu" || driver == "dlt645")) {
        return in_quotes(key) + " belongs to the bus: set it on the entry of buses: this " +
               driver + " device names";
      }
      if (key == "password" && driver == "camera_http") {
        return std::string("the password never goes in this file; write it to a file only the "
                           "daemon can read and name that file with password_file:");
      }
      for (const DeviceKey& k : kDeviceKeys) {
        if (k.key == key) {
          std::string users;
          for (char ch : k.drivers) users += ch == ' ' ? std::string(", ") : std::string(1, ch);
          return in_quotes(key) + " does not apply to driver " + driver + " (it is for " + users +
                 ")";
        }
      }
      return std::nullopt;
    });

    if (const Node* v = r.require("id")) {
      if (auto s = c_.text(*v, r.child("id"))) {
        if (is_name(*s)) {
          d.id = *s;
        } else {
          c_.report(*v, r.child("id"), *s, std::string(kNameRule));
        }
      }
    }
    if (const Node* v = r.require("kind")) {
      if (auto k = c_.choice(*v, r.child("kind"), kKinds)) d.kind = *k;
    }

    // camera_http reads address: in stream mode only (load_camera).
    if (driver == "modbus_tcp" || driver == "tcp_line" || driver == "modbus_gate" ||
        driver == "uhppote") {
      if (const Node* v = r.require("address", "write it as host:port")) {
        read_address(*v, r.child("address"), "10.0.3.21:502", d);
      }
    }

    if (driver == "modbus_rtu" || driver == "dlt645") {
      if (const Node* v = r.require("bus", "it names one of buses: by id")) {
        resolve_bus(*v, r.child("bus"), cfg, d);
        ref.bus_line = line_of(*v);
      }
    } else if (driver == "serial_line") {
      const Node* bus = r.find("bus");
      const Node* port = r.find("port");
      if (bus && port) {
        c_.report(*port, r.child("port"), port->IsScalar() ? port->Scalar() : "",
                  "give bus: or port:, not both");
      } else if (!bus && !port) {
        c_.report(r.line(), r.child("port"), "",
                  "serial_line needs port: (with its line settings) or bus: naming a bus");
      } else if (bus) {
        resolve_bus(*bus, r.child("bus"), cfg, d);
        ref.bus_line = line_of(*bus);
        for (const char* key : {"baud", "parity", "data_bits", "stop_bits"}) {
          if (r.has(key)) {
            c_.report(r.key_line(key), r.child(key), "",
                      "line settings come from the bus; remove " + in_quotes(key) +
                          " or use port: instead of bus:");
          }
        }
      } else if (auto s = c_.text(*port, r.child("port"))) {
        if ((*s)[0] != '/') {
          c_.report(*port, r.child("port"), *s, "must be an absolute device path like /dev/ttyS1");
        } else {
          d.serial_port = *s;
          BusSection own;
          own.port = *s;
          own.line = line_of(*port);
          load_line_settings(r, own);
          claim_port(*port, r.child("port"), *s, "device " + in_quotes(d.id));
          own.id = d.id;
          d.line_settings = own;
        }
      }
    }

    if (is_modbus(driver)) {
      const int64_t hi = driver == "modbus_tcp" ? 255 : 247;
      const int64_t lo = driver == "modbus_tcp" ? 0 : 1;
      if (const Node* v = r.find("unit_id")) {
        if (auto i = c_.integer(*v, r.child("unit_id"), lo, hi)) d.unit_id = static_cast<int>(*i);
        ref.unit_line = line_of(*v);
      }
      if (const Node* v = r.find("max_registers")) {
        if (auto i = c_.integer(*v, r.child("max_registers"), 1, protocols::kMaxRegistersPerRead)) {
          d.max_registers = static_cast<int>(*i);
        }
      }
      if (const Node* v = r.find("max_gap")) {
        if (auto i = c_.integer(*v, r.child("max_gap"), 0, protocols::kMaxRegistersPerRead - 1)) {
          d.max_gap = static_cast<int>(*i);
        }
      }
    }

    if (driver == "dlt645") {
      if (const Node* v =
              r.require("meter_address", "the 12-digit address printed on the meter, in quotes")) {
        ref.meter_line = line_of(*v);
        if (auto s = c_.text(*v, r.child("meter_address"))) {
          if (s->size() == 12 && all_digits(*s)) {
            d.meter_address = *s;
          } else {
            c_.report(*v, r.child("meter_address"), *s,
                      "must be exactly 12 decimal digits as printed on the meter; quote it "
                      "(\"000000123456\") to keep leading zeros");
          }
        }
      }
    }

    if (driver == "modbus_gate" || driver == "uhppote") load_gate(r, d);
    if (driver == "camera_http") load_camera(r, d);

    const Node* poll = r.find("poll");
    const Node* timeout = r.find("timeout");
    if (poll) {
      if (auto dur = c_.duration(*poll, r.child("poll"))) {
        if (*dur < kMinPoll) {
          c_.report(*poll, r.child("poll"), poll->Scalar(), "must be at least 10ms");
        } else {
          d.poll = *dur;
        }
      }
    }
    if (timeout) {
      if (auto dur = c_.duration(*timeout, r.child("timeout"))) {
        if (*dur >= d.poll && driver != "camera_http") {  // cameras are not polled
          c_.report(*timeout, r.child("timeout"), timeout->Scalar(),
                    "timeout (" + format_duration(*dur) + ") must be shorter than poll (" +
                        format_duration(d.poll) + ")");
        } else {
          d.timeout = *dur;
        }
      }
    } else if (d.timeout >= d.poll && driver != "camera_http") {
      // The 1s default must not make a fast poll invalid: a request gets half the period.
      d.timeout = d.poll / 2;
    }
    if (const Node* v = r.find("offline_after")) {
      if (auto i = c_.integer(*v, r.child("offline_after"), 1, 100)) {
        d.offline_after = static_cast<int>(*i);
      }
    }
    if (const Node* v = r.find("door")) {
      if (auto s = c_.text(*v, r.child("door"))) d.door = *s;
    }
    if (const Node* v = r.find("direction")) {
      if (auto s = c_.choice(*v, r.child("direction"), kDirections)) d.direction = *s;
    }
    if (const Node* v = r.find("card_format")) {
      if (auto s = c_.choice(*v, r.child("card_format"), kCardFormats)) d.card_format = *s;
    }
    if (const Node* v = r.find("framing")) {
      d.framing = load_framing(*v, r.child("framing"), r.key_line("framing"));
    }
    if (const Node* v = r.find("idle_timeout")) {
      if (auto dur = c_.duration(*v, r.child("idle_timeout"), /*allow_zero=*/true)) {
        d.idle_timeout = *dur;
      }
    }
    if (driver == "serial_line" || driver == "tcp_line") check_card_format(r, d);

    if (has_points(driver)) load_device_points(r, d, driver);
  }

  // Whether the framing can carry the card format (stx_etx has no Wiegand parity bits, a fixed
  // frame must hold the bits): the reader's driver would reject every frame otherwise.
  void check_card_format(MapReader& r, const DeviceSection& d) {
    namespace cr = protocols::card_reader;
    const auto format = cr::parse_card_format(d.card_format);
    if (!format) return;  // already reported
    const FramingSection f = d.framing.value_or(FramingSection{});
    cr::Framing framing;
    framing.type = f.type == FramingSection::Type::kLine     ? cr::FramingType::kLine
                   : f.type == FramingSection::Type::kStxEtx ? cr::FramingType::kStxEtx
                                                             : cr::FramingType::kFixed;
    framing.length = static_cast<std::size_t>(f.length);
    if (framing.type == cr::FramingType::kFixed && f.length <= 0) return;  // already reported
    if (Status ok = cr::check_combination(framing, *format); !ok) {
      const bool given = r.has("card_format");
      c_.report(given ? r.key_line("card_format") : r.key_line("framing"),
                r.child(given ? "card_format" : "framing"), d.card_format, ok.message());
    }
  }

  // Gate controllers: the Modbus gate's register layout, the UHPPOTE controller's identity and
  // where it pushes its events (drivers/gate/*.h).
  void load_gate(MapReader& r, DeviceSection& d) {
    if (d.driver == "modbus_gate") {
      if (const Node* v = r.find("unit_id")) {
        if (auto i = c_.integer(*v, r.child("unit_id"), 0, 255)) d.unit_id = static_cast<int>(*i);
      }
      if (const Node* v = r.find("log_size")) {
        if (auto i = c_.integer(*v, r.child("log_size"), 1, 8000)) {
          d.log_size = static_cast<uint32_t>(*i);
        }
      }
      int registers_line = r.line();
      if (const Node* v = r.find("registers")) {
        registers_line = r.key_line("registers");
        MapReader rr(c_, *v, r.child("registers"), false, registers_line);
        if (rr.ok()) {
          rr.check_keys({"status", "log"});
          if (const Node* x = rr.find("status")) {
            if (auto i = c_.integer(*x, rr.child("status"), 0, 65536 - kGateStatusRegisters)) {
              d.status_base = static_cast<uint16_t>(*i);
            }
          }
          if (const Node* x = rr.find("log")) {
            if (auto i = c_.integer(*x, rr.child("log"), 0, 65535)) {
              d.log_base = static_cast<uint16_t>(*i);
            }
          }
        }
      }
      const uint32_t log_end = uint32_t{d.log_base} + d.log_size * kGateRecordRegisters;
      const uint32_t status_end = uint32_t{d.status_base} + kGateStatusRegisters;
      if (log_end > 65536) {
        c_.report(registers_line, r.child("registers") + ".log", std::to_string(d.log_base),
                  "the log window (" + std::to_string(d.log_size) + " records of " +
                      std::to_string(kGateRecordRegisters) + " registers from " +
                      std::to_string(d.log_base) + ") runs past register 65535; lower log or "
                      "log_size");
      } else if (d.status_base < log_end && d.log_base < status_end) {
        c_.report(registers_line, r.child("registers"), "",
                  "the status block (" + std::to_string(d.status_base) + ".." +
                      std::to_string(status_end - 1) + ") overlaps the log window (" +
                      std::to_string(d.log_base) + ".." + std::to_string(log_end - 1) + ")");
      }
      return;
    }
    if (const Node* v =
            r.require("serial_number", "the controller's serial number, from its label")) {
      if (auto i = c_.integer(*v, r.child("serial_number"), 1, 4294967295LL)) {
        d.serial_number = static_cast<uint32_t>(*i);
      }
    }
    if (const Node* v = r.find("listen")) read_listen(*v, r.child("listen"), "0.0.0.0:60001", d);
  }

  // address: host:port of a device the gateway connects to.
  void read_address(const Node& v, const std::string& path, std::string_view example,
                    DeviceSection& d) {
    auto s = c_.text(v, path);
    if (!s) return;
    auto hp = parse_host_port(*s, false);
    if (hp.value) {
      d.host = hp.value->host;
      d.port = hp.value->port;
    } else {
      c_.report(v, path, *s, hp.why + " (e.g. " + std::string(example) + ")");
    }
  }

  // listen: ip:port the gateway binds for a device that calls in; a name would need a lookup
  // at every bind and could resolve to another machine.
  void read_listen(const Node& v, const std::string& path, std::string_view example,
                   DeviceSection& d) {
    auto s = c_.text(v, path);
    if (!s) return;
    auto hp = parse_host_port(*s, false);
    if (!hp.value) {
      c_.report(v, path, *s, hp.why + " (e.g. " + std::string(example) + ")");
    } else if (!is_ip_literal(hp.value->host)) {
      c_.report(v, path, *s,
                "the host must be an IP address of this machine (or 0.0.0.0), not a name");
    } else {
      d.listen_host = hp.value->host;
      d.listen_port = hp.value->port;
    }
  }

  // camera_http: which mode, whose format, where to listen or connect, login, heartbeat and
  // bounds (README "Cameras").
  void load_camera(MapReader& r, DeviceSection& d) {
    static constexpr std::array<std::pair<std::string_view, std::string_view>, 2> kModes{
        {{"push", "push"}, {"stream", "stream"}}};
    static constexpr std::array<std::pair<std::string_view, std::string_view>, 2> kVendors{
        {{"hikvision", "hikvision"}, {"dahua", "dahua"}}};
    static constexpr std::array<std::pair<std::string_view, std::string_view>, 2> kAuths{
        {{"digest", "digest"}, {"basic", "basic"}}};
    DeviceSection::Camera cam;
    if (const Node* v = r.require("mode", "push (the camera posts its alarms to listen:) or "
                                          "stream (the gateway reads the camera's alert stream)")) {
      if (auto s = c_.choice(*v, r.child("mode"), kModes)) cam.mode = *s;
    }
    const bool push = cam.mode == "push";
    const bool stream = cam.mode == "stream";
    // Keys that belong to the other mode are errors, not silently ignored.
    auto only = [&](const char* key, bool allowed, const char* mode) {
      if (!allowed && !cam.mode.empty() && r.has(key)) {
        c_.report(r.key_line(key), r.child(key), "",
                  in_quotes(key) + " applies to mode: " + mode + " only");
      }
    };
    for (const char* key : {"address", "username", "password_file", "auth", "heartbeat"}) {
      only(key, !push, "stream");  // push: heartbeat_timeout alone says when a camera is silent
    }
    for (const char* key : {"listen", "allow_from", "max_body", "max_connections"}) {
      only(key, !stream, "push");
    }
    if (const Node* v = r.find("vendor")) {
      if (auto s = c_.choice(*v, r.child("vendor"), kVendors)) cam.vendor = *s;
    }
    if (stream) {
      if (const Node* v = r.require("address", "the camera's HTTP endpoint as host:port")) {
        read_address(*v, r.child("address"), "10.0.3.30:80", d);
      }
    }
    if (push) {
      if (const Node* v = r.require("listen", "where the camera posts to, as ip:port")) {
        read_listen(*v, r.child("listen"), "0.0.0.0:8090", d);
      }
    }
    if (const Node* v = r.find("path")) {
      if (auto s = c_.text(*v, r.child("path"))) {
        if ((*s)[0] != '/' || s->find_first_of(" \t\r\n") != std::string::npos) {
          c_.report(*v, r.child("path"), *s, "must start with '/' and contain no spaces");
        } else {
          cam.path = *s;
        }
      }
    }
    if (const Node* v = r.find("username")) {
      if (auto s = c_.text(*v, r.child("username"))) {
        if (std::any_of(s->begin(), s->end(),
                        [](char ch) { return static_cast<unsigned char>(ch) < 0x20; })) {
          c_.report(*v, r.child("username"), *s, "must not contain control characters");
        } else {
          cam.username = *s;
        }
      }
    }
    if (const Node* v = r.find("password_file")) {
      if (!r.has("username")) {
        c_.report(r.key_line("password_file"), r.child("password_file"), "",
                  "password_file: needs username: too");
      }
      if (auto p = c_.readable_file(*v, r.child("password_file"))) cam.password_file = *p;
    }
    if (const Node* v = r.find("auth")) {
      if (auto s = c_.choice(*v, r.child("auth"), kAuths)) cam.auth = *s;
    }
    if (const Node* v = r.find("heartbeat")) {
      if (auto dur = c_.duration(*v, r.child("heartbeat"))) {
        if (*dur < std::chrono::seconds(1) || *dur > std::chrono::minutes(10)) {
          c_.report(*v, r.child("heartbeat"), v->Scalar(), "must be from 1s to 10m");
        } else {
          cam.heartbeat = *dur;
        }
      }
    }
    if (const Node* v = r.find("heartbeat_timeout")) {
      if (auto dur = c_.duration(*v, r.child("heartbeat_timeout"))) {
        if (stream && *dur <= cam.heartbeat) {
          c_.report(*v, r.child("heartbeat_timeout"), v->Scalar(),
                    "must be longer than heartbeat (" + format_duration(cam.heartbeat) +
                        "), or a stream would be dropped between two heartbeats");
        } else {
          cam.heartbeat_timeout = *dur;
        }
      }
    }
    if (const Node* v = r.find("inactive_after")) {
      if (auto dur = c_.duration(*v, r.child("inactive_after"), /*allow_zero=*/true)) {
        cam.inactive_after = *dur;
      }
    }
    if (const Node* v = r.find("allow_from")) {
      const std::string path = r.child("allow_from");
      const auto items = c_.list(*v, path);
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (auto s = c_.text(items[i], indexed(path, i))) {
          if (is_ip_literal(*s)) {
            cam.allow_from.push_back(*s);
          } else {
            c_.report(items[i], indexed(path, i), *s, "must be an IP address like 10.0.3.30");
          }
        }
      }
    }
    if (const Node* v = r.find("max_body")) {
      if (auto n = c_.size(*v, r.child("max_body"))) {
        if (*n < 64 * 1024 || *n > (256ull << 20)) {
          c_.report(*v, r.child("max_body"), v->Scalar(), "must be from 64KiB to 256MiB");
        } else {
          cam.max_body = *n;
        }
      }
    }
    if (const Node* v = r.find("max_connections")) {
      if (auto i = c_.integer(*v, r.child("max_connections"), 1, 256)) {
        cam.max_connections = static_cast<int>(*i);
      }
    }
    // Cameras are not polled: `timeout` bounds a connect, a request and a push's whole read.
    if (!r.has("timeout")) d.timeout = std::chrono::seconds(10);
    d.camera = std::move(cam);
  }

  void resolve_bus(const Node& v, const std::string& path, const Config& cfg, DeviceSection& d) {
    auto s = c_.text(v, path);
    if (!s) return;
    if (bus_index_.count(*s)) {
      d.bus = *s;
      return;
    }
    std::vector<std::string_view> ids;
    for (const BusSection& b : cfg.buses) {
      if (!b.id.empty()) ids.push_back(b.id);
    }
    if (ids.empty()) {
      c_.report(v, path, *s, "unknown bus; no buses are defined (add it under buses:)");
    } else {
      c_.report(v, path, *s,
                "unknown bus; " + did_you_mean(*s, ids) + "buses defined: " + join(ids));
    }
  }

  std::optional<FramingSection> load_framing(const Node& n, const std::string& path, int key_line) {
    MapReader r(c_, n, path, false, key_line);
    if (!r.ok()) return std::nullopt;
    r.check_keys({"type", "delimiter", "max_length", "length"});
    FramingSection f;
    if (const Node* v = r.find("type")) {
      if (auto t = c_.choice(*v, r.child("type"), kFramings)) f.type = *t;
    }
    if (const Node* v = r.find("delimiter")) {
      if (f.type != FramingSection::Type::kLine) {
        c_.report(r.key_line("delimiter"), r.child("delimiter"), "",
                  "delimiter applies only to type: line");
      } else if (auto s = c_.text(*v, r.child("delimiter"))) {
        if (s->size() > 8) {
          c_.report(*v, r.child("delimiter"), *s, "longer than 8 bytes");
        } else {
          f.delimiter = *s;
        }
      }
    }
    bool max_given = false;
    if (const Node* v = r.find("max_length")) {
      if (auto i = c_.integer(*v, r.child("max_length"), 1, 65536)) {
        f.max_length = static_cast<int>(*i);
        max_given = true;
      }
    }
    if (const Node* v = r.find("length")) {
      if (f.type != FramingSection::Type::kFixed) {
        c_.report(r.key_line("length"), r.child("length"), "",
                  "length applies only to type: fixed (the others use max_length)");
      } else if (auto i = c_.integer(*v, r.child("length"), 1, 65536)) {
        f.length = static_cast<int>(*i);
        if (!max_given) {
          f.max_length = std::max(f.max_length, f.length);
        } else if (f.max_length < f.length) {
          c_.report(*v, r.child("length"), v->Scalar(),
                    "longer than max_length (" + std::to_string(f.max_length) + ")");
        }
      }
    } else if (f.type == FramingSection::Type::kFixed) {
      r.require("length", "type: fixed needs the frame length in bytes");
    }
    return f;
  }

  void load_device_points(MapReader& r, DeviceSection& d, const std::string& driver) {
    const PointFamily family = driver == "dlt645" ? PointFamily::kDlt645 : PointFamily::kModbus;
    const Node* points = r.find("points");
    const Node* profile = r.find("profile");
    if (points && profile) {
      c_.report(r.key_line("profile"), r.child("profile"),
                profile->IsScalar() ? profile->Scalar() : "", "give points: or profile:, not both");
      return;
    }
    if (!points && !profile) {
      c_.report(r.line(), r.child("points"), "",
                "required key 'points' is missing from " + r.path() + " (line " +
                    std::to_string(r.line()) + "); a " + driver +
                    " device needs points: or profile: FILE");
      return;
    }
    if (points) {
      d.points = load_points(c_, *points, r.child("points"), family);
      return;
    }
    auto file = c_.readable_file(*profile, r.child("profile"));
    if (!file) return;
    d.profile = *file;
    d.points = load_profile(*file, family, line_of(*profile));
  }

  // A shared register map: { points: [...], model: "...", manual: "..." }. Its errors name the
  // profile file and its own lines; a profile used by many devices is read and reported once.
  std::vector<PointSection> load_profile(const std::string& file, PointFamily family,
                                         int anchor_line) {
    const auto key = std::make_pair(file, static_cast<int>(family));
    if (auto it = profiles_.find(key); it != profiles_.end()) return it->second;
    std::vector<PointSection>& out = profiles_[key];
    Checker pc(sink_, file, base_dir_, anchor_line);
    std::string why;
    auto text = read_file(file, why);
    if (!text) {
      pc.report(0, "", "", "cannot read profile: " + why);
      return out;
    }
    Node root;
    try {
      root = YAML::Load(*text);
    } catch (const YAML::Exception& e) {
      pc.report(e.mark.is_null() ? 0 : e.mark.line + 1, "", "", "YAML syntax error: " + e.msg);
      return out;
    }
    if (root.IsNull()) {
      pc.report(0, "", "", "the profile is empty; it needs points:");
      return out;
    }
    MapReader r(pc, root, "");
    if (!r.ok()) return out;
    r.check_keys({"points", "model", "manual"});
    for (const char* doc_key : {"model", "manual"}) {
      if (const Node* v = r.find(doc_key)) (void)pc.scalar(*v, doc_key);
    }
    if (const Node* v = r.require("points")) out = load_points(pc, *v, "points", family);
    return out;
  }

  static std::vector<PointSection> load_points(Checker& c, const Node& n, const std::string& path,
                                               PointFamily family) {
    std::vector<PointSection> out;
    const auto items = c.list(n, path);
    if (items.empty()) {
      if (n.IsSequence() || n.IsNull()) c.report(n, path, "", "needs at least one point");
      return out;
    }
    std::map<std::string, int> name_line;
    out.reserve(items.size());  // held for the daemon's life, once per device: no growth slack
    for (std::size_t i = 0; i < items.size(); ++i) {
      const std::string ppath = indexed(path, i);
      MapReader r(c, items[i], ppath);
      if (!r.ok()) continue;
      PointSection p;
      if (family == PointFamily::kModbus) {
        load_modbus_point(c, r, p);
      } else {
        load_dlt_point(c, r, p);
      }
      if (const Node* v = r.find("report")) {
        p.report = load_report(c, *v, r.child("report"), r.key_line("report"));
      }
      if (!p.spec.name.empty()) {
        auto [it, inserted] = name_line.emplace(p.spec.name, r.key_line("name"));
        if (!inserted) {
          c.report(
              r.key_line("name"), r.child("name"), p.spec.name,
              "duplicate point name in this device; first at line " + std::to_string(it->second));
        }
      }
      out.push_back(std::move(p));
    }
    return out;
  }

  static void load_point_name(Checker& c, MapReader& r, PointSection& p) {
    if (const Node* v = r.require("name")) {
      if (auto s = c.text(*v, r.child("name"))) {
        if (is_name(*s)) {
          p.spec.name = *s;
        } else {
          c.report(*v, r.child("name"), *s, std::string(kNameRule));
        }
      }
    }
    if (const Node* v = r.find("unit")) {
      if (auto s = c.scalar(*v, r.child("unit"))) p.spec.unit = *s;
    }
  }

  static void load_modbus_point(Checker& c, MapReader& r, PointSection& p) {
    r.check_keys(kModbusPointKeys, [](std::string_view key) -> std::optional<std::string> {
      if (key == "di" || key == "decimals") {
        return in_quotes(key) + " applies only to dlt645 points";
      }
      return std::nullopt;
    });
    load_point_name(c, r, p);
    bool table_ok = true, address_ok = false, type_ok = false;
    const Node* type = r.find("type");
    const Node* address = r.find("address");
    if (const Node* v = r.find("table")) {
      auto t = c.choice(*v, r.child("table"), kTables);
      if (t) p.spec.table = *t;
      table_ok = t.has_value();
    }
    if (type) {
      if (auto s = c.scalar(*type, r.child("type"))) {
        if (auto t = protocols::parse_value_type(*s)) {
          p.spec.type = *t;
          type_ok = true;
        } else {
          const std::vector<std::string_view> names{"int16",   "uint16",  "int32",
                                                    "uint32",  "int64",   "uint64",
                                                    "float32", "float64", "bool"};
          c.report(*type, r.child("type"), *s,
                   did_you_mean(*s, names) + "must be one of: " + join(names));
        }
      }
    } else if (table_ok && protocols::is_bit_table(p.spec.table)) {
      p.spec.type = protocols::ValueType::kBool;  // the only type a bit table holds
      type_ok = true;
    } else {
      r.require("type", "e.g. uint16, int32, float32");
    }
    if (address) {
      if (auto a = c.integer(*address, r.child("address"), 0, 65535)) {
        p.spec.address = static_cast<uint16_t>(*a);
        address_ok = true;
      }
    } else {
      r.require("address", "the zero-based register number");
    }
    if (const Node* v = r.find("word_order")) {
      if (auto s = c.scalar(*v, r.child("word_order"))) {
        if (auto w = protocols::parse_word_order(*s)) {
          p.spec.word_order = *w;
        } else {
          c.report(*v, r.child("word_order"), *s,
                   did_you_mean(*s, {"big", "little"}) + "must be one of: big, little");
        }
      }
    }
    if (const Node* v = r.find("scale")) {
      if (auto x = c.number(*v, r.child("scale"))) {
        if (*x == 0) {
          c.report(*v, r.child("scale"), v->Scalar(), "must not be 0 (every value would read 0)");
        } else {
          p.spec.scale = *x;
        }
      }
    }
    if (const Node* v = r.find("offset")) {
      if (auto x = c.number(*v, r.child("offset"))) p.spec.offset = *x;
    }
    if (table_ok && type_ok && address_ok) {
      const Status st = protocols::validate_point(p.spec);
      if (!st.is_ok()) {
        if (protocols::is_bit_table(p.spec.table) && p.spec.type != protocols::ValueType::kBool) {
          c.report(*type, r.child("type"), type->Scalar(), st.message());
        } else {
          c.report(*address, r.child("address"), address->Scalar(), st.message());
        }
      }
    }
  }

  static void load_dlt_point(Checker& c, MapReader& r, PointSection& p) {
    r.check_keys(kDltPointKeys, [](std::string_view key) -> std::optional<std::string> {
      if (std::find(kModbusPointKeys.begin(), kModbusPointKeys.end(), key) !=
          kModbusPointKeys.end()) {
        return in_quotes(key) +
               " does not apply to dlt645 points: the driver knows each DI's format (use "
               "decimals: to override it)";
      }
      return std::nullopt;
    });
    load_point_name(c, r, p);
    if (const Node* v = r.require("di", "the data identifier DI3..DI0 as 8 hex digits")) {
      if (auto s = c.text(*v, r.child("di"))) {
        if (s->size() == 8 && std::all_of(s->begin(), s->end(), is_hex)) {
          p.di = *s;
        } else {
          c.report(*v, r.child("di"), *s,
                   "must be exactly 8 hex digits (DI3..DI0), quoted, e.g. \"00010000\"");
        }
      }
    }
    if (const Node* v = r.find("decimals")) {
      if (auto i = c.integer(*v, r.child("decimals"), 0, 8)) p.decimals = static_cast<int>(*i);
    }
  }

  static ReportPolicy load_report(Checker& c, const Node& n, const std::string& path,
                                  int key_line) {
    ReportPolicy rp;
    MapReader r(c, n, path, false, key_line);
    if (!r.ok()) return rp;
    r.check_keys({"on_change", "deadband", "max_interval"});
    if (const Node* v = r.find("on_change")) {
      if (auto b = c.boolean(*v, r.child("on_change"))) rp.on_change = *b;
    }
    if (const Node* v = r.find("deadband")) {
      if (auto x = c.number(*v, r.child("deadband"))) {
        if (*x < 0) {
          c.report(*v, r.child("deadband"), v->Scalar(), "must not be negative");
        } else if (*x > 0 && !rp.on_change) {
          c.report(*v, r.child("deadband"), v->Scalar(),
                   "deadband has no effect unless on_change: true");
        } else {
          rp.deadband = *x;
        }
      }
    }
    if (const Node* v = r.find("max_interval")) {
      if (auto d = c.duration(*v, r.child("max_interval"))) rp.max_interval = *d;
    }
    return rp;
  }

  // Cross-device rules, once every device is read: one Modbus unit / DL/T 645 address per bus,
  // and a serial_line device owns its bus alone (it reads the line as a stream).
  void check_bus_sharing(const Config& cfg, const std::vector<DeviceRefs>& refs) {
    std::map<std::pair<std::string, int>, std::size_t> units;
    std::map<std::pair<std::string, std::string>, std::size_t> meters;
    std::map<std::string, std::vector<std::size_t>> users;
    for (std::size_t i = 0; i < cfg.devices.size(); ++i) {
      const DeviceSection& d = cfg.devices[i];
      if (d.bus.empty()) continue;
      users[d.bus].push_back(i);
      const std::string path = indexed("devices", i);
      if (d.driver == "modbus_rtu") {
        auto [it, inserted] = units.emplace(std::make_pair(d.bus, d.unit_id), i);
        if (!inserted) {
          c_.report(refs[i].unit_line ? refs[i].unit_line : d.line, path + ".unit_id",
                    std::to_string(d.unit_id),
                    "unit_id already used on bus " + in_quotes(d.bus) + " by device " +
                        in_quotes(cfg.devices[it->second].id) + " (line " +
                        std::to_string(cfg.devices[it->second].line) + ")");
        }
      } else if (d.driver == "dlt645" && !d.meter_address.empty()) {
        auto [it, inserted] = meters.emplace(std::make_pair(d.bus, d.meter_address), i);
        if (!inserted) {
          c_.report(refs[i].meter_line, path + ".meter_address", d.meter_address,
                    "meter_address already used on bus " + in_quotes(d.bus) + " by device " +
                        in_quotes(cfg.devices[it->second].id));
        }
      }
    }
    for (const auto& [bus, list] : users) {
      if (list.size() < 2) continue;
      for (std::size_t i : list) {
        if (cfg.devices[i].driver != "serial_line") continue;
        c_.report(refs[i].bus_line, indexed("devices", i) + ".bus", bus,
                  "a serial_line device needs its bus to itself, but " +
                      std::to_string(list.size() - 1) + " other device(s) use it too");
      }
    }
  }

  // ---- alarms ----

  void load_alarms(const Node& n, Config& cfg) {
    const auto items = c_.list(n, "alarms");
    std::map<std::string, int> names;
    for (std::size_t i = 0; i < items.size(); ++i) {
      MapReader r(c_, items[i], indexed("alarms", i));
      if (!r.ok()) continue;
      AlarmSection a;
      a.line = r.line();
      const Node* name = r.find("name");
      if (name && name->IsScalar() && is_name(name->Scalar())) {
        c_.set_context("alarm rule " + in_quotes(name->Scalar()) + ": ");
      }
      load_alarm(r, a, cfg);
      c_.set_context({});
      if (!a.name.empty()) {
        auto [it, inserted] = names.emplace(a.name, r.key_line("name"));
        if (!inserted) {
          c_.report(r.key_line("name"), r.child("name"), a.name,
                    "duplicate alarm name; first at line " + std::to_string(it->second));
        }
      }
      cfg.alarms.push_back(std::move(a));
    }
  }

  void load_alarm(MapReader& r, AlarmSection& a, const Config& cfg) {
    r.check_keys({"name", "devices", "kind", "point", "high", "low", "hysteresis", "for",
                  "severity", "stale", "offline", "rate", "held_open", "forced", "grant_window",
                  "denied", "active_for"});
    if (const Node* v = r.require("name")) {
      if (auto s = c_.text(*v, r.child("name"))) {
        if (is_name(*s)) {
          a.name = *s;
        } else {
          c_.report(*v, r.child("name"), *s, std::string(kNameRule));
        }
      }
    }

    const Node* devices = r.find("devices");
    const Node* kind = r.find("kind");
    if (devices && kind) {
      c_.report(r.key_line("kind"), r.child("kind"), "", "give devices: or kind:, not both");
    } else if (!devices && !kind) {
      c_.report(r.line(), r.child("devices"), "",
                "required key 'devices' (or 'kind') is missing from " + r.path() + " (line " +
                    std::to_string(r.line()) + "); say which devices the rule watches");
    }
    std::vector<const DeviceSection*> listed;
    std::vector<std::pair<int, std::string>> listed_at;  // line and key path of each
    if (devices) {
      const auto ids = c_.list(*devices, r.child("devices"));
      if (devices->IsSequence() && ids.empty()) {
        c_.report(*devices, r.child("devices"), "", "lists no devices");
      }
      std::vector<std::string_view> known;
      for (const DeviceSection& d : cfg.devices) known.push_back(d.id);
      for (std::size_t j = 0; j < ids.size(); ++j) {
        const std::string path = indexed(r.child("devices"), j);
        auto s = c_.text(ids[j], path);
        if (!s) continue;
        auto it = std::find_if(cfg.devices.begin(), cfg.devices.end(),
                               [&](const DeviceSection& d) { return d.id == *s; });
        if (it == cfg.devices.end()) {
          c_.report(ids[j], path, *s,
                    "unknown device; " + did_you_mean(*s, known) +
                        "it must be the id of one of devices:");
          continue;
        }
        a.devices.push_back(*s);
        listed.push_back(&*it);
        listed_at.emplace_back(line_of(ids[j]), path);
      }
    }
    if (kind) {
      if (auto k = c_.choice(*kind, r.child("kind"), kKinds)) a.kind = *k;
    }
    if (const Node* v = r.find("severity")) {
      if (auto s = c_.choice(*v, r.child("severity"), kSeverities)) a.severity = *s;
    }

    // Which condition does the rule state? Exactly one.
    struct Condition {
      std::string_view label;
      std::vector<std::string_view> keys;
    };
    const std::array<Condition, 8> conditions{{
        {"high/low", {"high", "low"}},
        {"stale", {"stale"}},
        {"offline", {"offline"}},
        {"rate", {"rate"}},
        {"held_open", {"held_open"}},
        {"forced", {"forced"}},
        {"denied", {"denied"}},
        {"active_for", {"active_for"}},
    }};
    std::vector<std::string_view> found;
    std::string_view second_key;
    for (const Condition& cond : conditions) {
      for (std::string_view key : cond.keys) {
        if (r.has(key)) {
          if (found.size() == 1 && second_key.empty()) second_key = key;
          found.push_back(cond.label);
          break;
        }
      }
    }
    if (found.empty()) {
      c_.report(r.line(), r.path(), "",
                "the rule has no condition; give one of: high/low, stale, offline, rate, "
                "held_open, forced, denied, active_for");
    } else if (found.size() > 1) {
      c_.report(
          r.key_line(second_key), r.child(second_key), "",
          "more than one condition (" + join(found, " and ") + "); write one rule per condition");
    }
    const std::string_view cond = found.size() == 1 ? found[0] : std::string_view();

    if (const Node* v = r.find("high")) a.high = c_.number(*v, r.child("high"));
    if (const Node* v = r.find("low")) a.low = c_.number(*v, r.child("low"));
    if (a.high && a.low && *a.low >= *a.high) {
      c_.report(r.key_line("low"), r.child("low"), r.find("low")->Scalar(),
                "low must be below high (" + r.find("high")->Scalar() + ")");
    }
    if (const Node* v = r.find("hysteresis")) {
      if (cond != "high/low" && !cond.empty()) {
        c_.report(r.key_line("hysteresis"), r.child("hysteresis"), "",
                  "hysteresis applies only to high/low rules");
      } else if (auto x = c_.number(*v, r.child("hysteresis"))) {
        if (*x < 0) {
          c_.report(*v, r.child("hysteresis"), v->Scalar(), "must not be negative");
        } else {
          a.hysteresis = *x;
        }
      }
    }
    if (const Node* v = r.find("for")) {
      if (cond != "high/low" && cond != "rate" && !cond.empty()) {
        c_.report(r.key_line("for"), r.child("for"), "",
                  "for: applies only to high/low and rate rules");
      } else if (auto d = c_.duration(*v, r.child("for"), true)) {
        a.hold_for = *d;
      }
    }
    if (const Node* v = r.find("stale")) a.stale = c_.duration(*v, r.child("stale"));
    if (const Node* v = r.find("offline")) a.offline = c_.duration(*v, r.child("offline"));
    if (const Node* v = r.find("grant_window")) {
      if (cond != "forced" && !cond.empty()) {
        c_.report(r.key_line("grant_window"), r.child("grant_window"), "",
                  "grant_window applies only to forced rules");
      } else if (auto d = c_.duration(*v, r.child("grant_window"))) {
        a.grant_window = *d;
      }
    }
    if (const Node* v = r.find("held_open")) a.held_open = c_.duration(*v, r.child("held_open"));
    if (const Node* v = r.find("forced")) {
      if (auto b = c_.boolean(*v, r.child("forced"))) {
        if (*b) {
          a.forced = true;
        } else {
          c_.report(*v, r.child("forced"), v->Scalar(),
                    "forced: false is not a condition; write forced: true or remove the rule");
        }
      }
    }
    if (const Node* v = r.find("rate")) {
      MapReader rr(c_, *v, r.child("rate"), false, r.key_line("rate"));
      if (rr.ok()) {
        rr.check_keys({"max_delta", "min_delta", "window"});
        if (!rr.has("max_delta") && !rr.has("min_delta")) {
          rr.require("max_delta",
                     "give max_delta (a jump) and/or min_delta (0: a counter running backwards)");
        }
        if (const Node* x = rr.find("max_delta")) {
          if (auto d = c_.number(*x, rr.child("max_delta"))) {
            if (*d <= 0) {
              c_.report(*x, rr.child("max_delta"), x->Scalar(), "must be greater than 0");
            } else {
              a.rate_max_delta = *d;
            }
          }
        }
        if (const Node* x = rr.find("min_delta")) {
          if (auto d = c_.number(*x, rr.child("min_delta"))) {
            if (a.rate_max_delta && *d >= *a.rate_max_delta) {
              c_.report(*x, rr.child("min_delta"), x->Scalar(),
                        "must be below max_delta (" + rr.find("max_delta")->Scalar() + ")");
            } else {
              a.rate_min_delta = *d;
            }
          }
        }
        if (const Node* x = rr.require("window")) {
          a.rate_window = c_.duration(*x, rr.child("window"));
        }
      }
    }
    if (const Node* v = r.find("denied")) {
      MapReader dr(c_, *v, r.child("denied"), false, r.key_line("denied"));
      if (dr.ok()) {
        dr.check_keys({"count", "window"});
        if (const Node* x = dr.require("count")) {
          if (auto i = c_.integer(*x, dr.child("count"), 1, 1'000'000)) {
            a.denied_count = static_cast<int>(*i);
          }
        }
        if (const Node* x = dr.require("window")) {
          a.denied_window = c_.duration(*x, dr.child("window"));
        }
      }
    }
    if (const Node* v = r.find("active_for")) {
      MapReader ar(c_, *v, r.child("active_for"), false, r.key_line("active_for"));
      if (ar.ok()) {
        ar.check_keys({"type", "duration"});
        if (const Node* x = ar.require("type", "the camera event type, e.g. tamper or motion")) {
          if (auto s = c_.text(*x, ar.child("type"))) {
            if (std::all_of(s->begin(), s->end(),
                            [](char ch) { return is_lower_alnum(ch) || ch == '_'; })) {
              a.active_type = *s;
            } else {
              c_.report(*x, ar.child("type"), *s,
                        "an event type is lowercase letters, digits and '_', e.g. tamper");
            }
          }
        }
        if (const Node* x = ar.require("duration")) {
          a.active_duration = c_.duration(*x, ar.child("duration"));
        }
      }
    }

    // point: needed by value rules, meaningless for door and camera rules.
    const Node* point = r.find("point");
    if (point) {
      if (auto s = c_.text(*point, r.child("point"))) a.point = *s;
    }
    if ((cond == "high/low" || cond == "rate") && !point) {
      r.require("point", "a " + std::string(cond) + " rule watches one point");
    }
    if (point && (cond == "offline" || cond == "held_open" || cond == "forced" ||
                  cond == "denied" || cond == "active_for")) {
      c_.report(r.key_line("point"), r.child("point"), "",
                "point does not apply to " + a_or_an(cond) + " rule");
    } else if (!a.point.empty()) {
      // A typo in the point name would make the rule silently never fire.
      for (const DeviceSection* d : listed) {
        if (!has_points(d->driver) || d->points.empty()) continue;
        const bool defined =
            std::any_of(d->points.begin(), d->points.end(),
                        [&](const PointSection& p) { return p.spec.name == a.point; });
        if (!defined) {
          std::vector<std::string_view> pts;
          for (const PointSection& p : d->points) pts.push_back(p.spec.name);
          c_.report(*point, r.child("point"), a.point,
                    "device " + in_quotes(d->id) + " has no such point; " +
                        did_you_mean(a.point, pts) + "its points: " + join(pts));
        }
      }
    }
    check_alarm_devices(r, a, cond, listed, listed_at, cfg);
  }

  static std::string_view kind_label(DeviceKind k) {
    for (const auto& [name, value] : kKinds) {
      if (value == k) return name;
    }
    return "device";
  }

  // Can the rule ever fire, or fire only when it should, on the devices it covers? A rule that
  // watches something its devices never report would stay silent forever; one that would read a
  // healthy, steady value as stale would cry wolf. Both are refused here rather than found out
  // during an incident.
  void check_alarm_devices(MapReader& r, const AlarmSection& a, std::string_view cond,
                           const std::vector<const DeviceSection*>& listed,
                           const std::vector<std::pair<int, std::string>>& listed_at,
                           const Config& cfg) {
    if (cond.empty()) return;
    std::vector<DeviceKind> allowed;
    std::string_view watches;
    if (cond == "active_for") {
      allowed = {pb::CAMERA};
      watches = "camera events";
    } else if (cond == "denied") {
      allowed = {pb::CARD_READER, pb::ACCESS_GATE};
      watches = "DENIED passages of card readers and gates";
    } else if (cond == "held_open" || cond == "forced") {
      allowed = {pb::ACCESS_GATE, pb::SENSOR};
      watches = "a door_open reading (gates, door contacts)";
    }
    auto fits = [&](DeviceKind k) {
      return allowed.empty() || std::find(allowed.begin(), allowed.end(), k) != allowed.end();
    };
    if (a.kind && !fits(*a.kind)) {
      c_.report(r.key_line("kind"), r.child("kind"), kind_label(*a.kind),
                std::string(cond) + " watches " + std::string(watches) + "; " +
                    a_or_an(kind_label(*a.kind)) + " reports none");
      return;
    }
    // The devices covered, with where to point an error about one of them.
    std::vector<std::pair<const DeviceSection*, std::pair<int, std::string>>> covered;
    for (std::size_t i = 0; i < listed.size(); ++i) covered.push_back({listed[i], listed_at[i]});
    if (a.kind) {
      for (const DeviceSection& d : cfg.devices) {
        if (d.kind == *a.kind) covered.push_back({&d, {r.key_line("kind"), r.child("kind")}});
      }
    }
    auto point_named = [](const DeviceSection& d, std::string_view name) -> const PointSection* {
      for (const PointSection& p : d.points) {
        if (p.spec.name == name) return &p;
      }
      return nullptr;
    };
    bool any_defines_point = false, any_with_points = false;
    for (const auto& [d, at] : covered) {
      const auto& [line, path] = at;
      const std::string who = "device " + in_quotes(d->id) + " (" +
                              std::string(kind_label(d->kind)) + ")";
      if (!fits(d->kind)) {
        c_.report(line, path, d->id,
                  who + ": " + std::string(cond) + " watches " + std::string(watches));
        continue;
      }
      const bool polled = has_points(d->driver) && !d->points.empty();
      if (polled) {
        any_with_points = true;
        if (!a.point.empty() && point_named(*d, a.point)) any_defines_point = true;
      }
      if ((cond == "held_open" || cond == "forced") && polled && !point_named(*d, "door_open")) {
        c_.report(line, path, d->id,
                  who + " has no point named door_open (1 open, 0 closed) for " +
                      std::string(cond) + " to watch");
      }
      if (cond == "stale" && a.stale) {
        if (!polled) {
          c_.report(line, path, d->id,
                    who + " reports events when something happens, not periodic readings, so "
                          "stale would fire whenever it is quiet; use offline: instead");
          continue;
        }
        // A point reported only on change may legitimately stay silent longer than `stale`.
        auto silent = [&](const PointSection& p) {
          return p.report.on_change &&
                 (!p.report.max_interval || *p.report.max_interval >= *a.stale);
        };
        const PointSection* p = a.point.empty() ? nullptr : point_named(*d, a.point);
        const bool all_silent = p ? silent(*p)
                                  : std::all_of(d->points.begin(), d->points.end(), silent);
        if ((p || a.point.empty()) && all_silent) {
          c_.report(line, path, d->id,
                    who + " reports " + (p ? "point " + in_quotes(a.point) : "its points"s) +
                        " only on change, without a report.max_interval below " +
                        format_duration(*a.stale) +
                        ", so a steady value would read as stale; give it one");
        }
      }
    }
    // A kind rule's point is a typo when none of the kind's devices has it.
    if (a.kind && !a.point.empty() && any_with_points && !any_defines_point) {
      c_.report(r.key_line("point"), r.child("point"), a.point,
                "no " + std::string(kind_label(*a.kind)) + " device has a point named " +
                    in_quotes(a.point));
    }
  }

  ErrorSink& sink_;
  fs::path base_dir_;
  Checker c_;
  std::map<std::string, std::size_t> bus_index_;
  std::map<std::string, std::string> port_owner_;
  std::map<std::pair<std::string, int>, std::vector<PointSection>> profiles_;
};

// Where each YAML document of the file starts: at most two are looked for (one is all a config
// may hold). yaml-cpp 0.7's LoadAll never returns on some malformed files — a lone "," is enough:
// its parser reports an empty document at the same place forever, memory growing (found by
// tests/fuzz/config) — so the documents are walked here first, and a parser that does not move
// on is reported instead of followed.
struct DocumentStarts {
  std::vector<YAML::Mark> marks;
  std::optional<YAML::Mark> stuck;
};

class DocumentStartRecorder : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> marks;
  void OnDocumentStart(const YAML::Mark& mark) override { marks.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

DocumentStarts find_documents(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentStartRecorder recorder;
  DocumentStarts out;
  while (recorder.marks.size() < 3 && parser.HandleNextDocument(recorder)) {
    const size_t n = recorder.marks.size();
    if (n >= 2 && recorder.marks[n - 1].pos <= recorder.marks[n - 2].pos) {
      out.stuck = recorder.marks[n - 1];
      return out;
    }
  }
  out.marks = recorder.marks;
  if (out.marks.size() > 2) out.marks.resize(2);
  return out;
}

void load_into(const std::string& path, ErrorSink& sink, Config& cfg) {
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  if (ec) abs = fs::path(path);
  cfg.source_path = abs.lexically_normal().string();

  Checker top(sink, path, abs.parent_path());
  std::string why;
  const auto text = read_file(path, why);
  if (!text) {
    top.report(0, "", "", "cannot read config file: " + why);
    return;
  }
  std::optional<Node> doc;
  try {
    const DocumentStarts starts = find_documents(*text);
    if (starts.stuck) {
      top.report(starts.stuck->line + 1, "", "",
                 "YAML syntax error: unexpected character at column " +
                     std::to_string(starts.stuck->column + 1) +
                     " (a stray ',' '[' or '{' outside any value?)");
      return;
    }
    if (starts.marks.size() > 1) {
      top.report(starts.marks[1].line + 1, "", "",
                 "the file holds more than one YAML document ('---'); keep one");
      return;
    }
    if (!starts.marks.empty()) doc = YAML::Load(*text);
  } catch (const YAML::Exception& e) {
    top.report(e.mark.is_null() ? 0 : e.mark.line + 1, "", "", "YAML syntax error: " + e.msg);
    return;
  }
  if (!doc || doc->IsNull()) {
    top.report(doc ? line_of(*doc) : 0, "", "",
               "the file is empty; it needs at least gateway: and mqtt:");
    return;
  }
  Loader(sink, path, abs.parent_path()).load(*doc, cfg);
}

}  // namespace

std::string ConfigError::to_string() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line);
  out += ": ";
  if (!key_path.empty()) out += key_path + ": ";
  out += message;
  if (!value.empty()) {
    out += " (got '";
    // One error is one log line: escape what would break it.
    static constexpr char kHex[] = "0123456789abcdef";
    for (char c : value) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '\n') {
        out += "\\n";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c == '\t') {
        out += "\\t";
      } else if (u < 0x20 || u == 0x7f) {
        out += std::string("\\x") + kHex[u >> 4] + kHex[u & 15];
      } else {
        out += c;
      }
    }
    out += "')";
  }
  return out;
}

LoadResult load_config(const std::string& path) {
  LoadResult result;
  ErrorSink sink;
  Config cfg;
  try {
    load_into(path, sink, cfg);
  } catch (const std::exception& e) {
    // Not expected: every check above reports instead of throwing. Keep the promise anyway.
    sink.add(ConfigError{path, 0, "", "", std::string("internal error while reading: ") + e.what()},
             INT_MAX);
  } catch (...) {
    sink.add(ConfigError{path, 0, "", "", "internal error while reading"}, INT_MAX);
  }
  if (sink.empty()) {
    result.config = std::move(cfg);
  } else {
    result.errors = sink.finish(path);
  }
  return result;
}

std::optional<Duration> parse_duration(const std::string& text) {
  return parse_duration_detail(text, false).value;
}

std::optional<uint64_t> parse_size(const std::string& text) {
  return parse_size_detail(text).value;
}

}  // namespace gw::config
