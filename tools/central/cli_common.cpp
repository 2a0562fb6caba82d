#include "tools/central/cli_common.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <utility>

namespace gw::central {

void log_line(std::string_view program, std::string_view msg) {
  std::string line(program);
  line += ": ";
  line += msg;
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
}

Result<double> parse_seconds(std::string_view flag, std::string_view text) {
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v) || v <= 0) {
    return Status::invalid(std::string(flag) + ": expected a positive number of seconds, got '" +
                           std::string(text) + "'");
  }
  return v;
}

std::optional<std::string_view> split_inline_value(std::string_view& arg) {
  const auto eq = arg.find('=');
  if (!arg.starts_with("--") || eq == std::string_view::npos) return std::nullopt;
  const std::string_view value = arg.substr(eq + 1);
  arg = arg.substr(0, eq);
  return value;
}

std::string describe_failure(const mqtt::token& tok) {
  static constexpr const char* kConnack[] = {nullptr,
                                             "unacceptable protocol version",
                                             "client id rejected",
                                             "server unavailable",
                                             "bad user name or password",
                                             "not authorized"};
  const int rc = tok.get_return_code();
  if (tok.get_type() == mqtt::token::Type::CONNECT && rc >= 1 && rc <= 5) {
    return "broker refused the connection: " + std::string(kConnack[rc]);
  }
  if (tok.get_type() == mqtt::token::Type::CONNECT && rc == MQTTASYNC_FAILURE) {
    return "no MQTT broker answered (connection refused, unreachable, or no CONNACK in time)";
  }
  return mqtt::exception::printable_error(rc, tok.get_reason_code(),
                                          mqtt::exception::error_str(rc));
}

bool write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return false;
  const bool written = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !written) return false;
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

Clock::time_point after(Clock::time_point start, double seconds) {
  return start +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

StopSignals::StopSignals() {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
}

bool StopSignals::wait(Clock::duration timeout) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  const int sig = sigtimedwait(&signals_, nullptr, &ts);
  if (sig == SIGINT || sig == SIGTERM) received_ = true;
  return received_;
}

void ConnectionState::connected() {
  {
    std::lock_guard lock(mu_);
    connected_ = true;
    last_error_.clear();
  }
  cv_.notify_all();
}

void ConnectionState::lost(const std::string& cause) {
  {
    std::lock_guard lock(mu_);
    connected_ = false;
  }
  log_line(program_, "connection lost" + (cause.empty() ? std::string() : " (" + cause + ")") +
                         "; reconnecting automatically");
}

void ConnectionState::failed(std::string why) {
  std::lock_guard lock(mu_);
  last_error_ = std::move(why);
}

bool ConnectionState::wait_connected(Clock::time_point deadline,
                                     const std::function<bool()>& stop_requested) {
  std::unique_lock lock(mu_);
  while (!connected_) {
    if (Clock::now() >= deadline || stop_requested()) return false;
    cv_.wait_for(lock, std::chrono::milliseconds(100));
  }
  return true;
}

std::string ConnectionState::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_.empty() ? "no answer from the broker" : last_error_;
}

}  // namespace gw::central
