#include "drivers/bus/serial_bus.h"

#include <termios.h>

#include <algorithm>

#include "drivers/serial_line.h"

namespace gw::drivers {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr auto kReopenMin = 500ms;
constexpr auto kReopenMax = 30s;
constexpr std::chrono::milliseconds kLateGuard{200};

// Modbus over serial line, 2.5.1.1: 3.5 character times between frames, fixed at 1.75 ms above
// 19200 baud. A character is start + data + parity + stop bits.
std::chrono::microseconds silent_interval(const BusSettings& s) {
  if (s.baud > 19200) return 1750us;
  const int bits = 1 + s.data_bits + (s.parity == 'N' ? 0 : 1) + s.stop_bits;
  return std::chrono::microseconds(static_cast<int64_t>(3.5 * bits * 1e6 / s.baud) + 1);
}

}  // namespace

// The byte stream under the bus: a serial port or a TCP connection to a serial server.
class SerialBus::Transport {
 public:
  explicit Transport(asio::any_io_executor ex) : serial_(ex), tcp_(ex), resolver_(ex) {}

  asio::awaitable<Status> open(const BusSettings& s) {
    boost::system::error_code ec;
    if (!s.tcp_host.empty()) {
      auto endpoints = co_await resolver_.async_resolve(
          s.tcp_host, std::to_string(s.tcp_port), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return Status::unavailable("resolve " + s.tcp_host + ": " + ec.message());
      co_await asio::async_connect(tcp_, endpoints, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        co_return Status::unavailable("connect to " + s.tcp_host + ":" +
                                      std::to_string(s.tcp_port) + ": " + ec.message());
      }
      tcp_.set_option(asio::ip::tcp::no_delay(true), ec);
      tcp_.set_option(asio::socket_base::keep_alive(true), ec);
      is_tcp_ = true;
      co_return Status::ok();
    }
    serial_.open(s.device_path, ec);
    if (ec) co_return Status::unavailable("open " + s.device_path + ": " + ec.message());
    ec = set_serial_line(serial_, s.baud, s.data_bits, s.parity, s.stop_bits);
    if (ec) {
      serial_.close();
      co_return Status::unavailable("configure " + s.device_path + ": " + ec.message());
    }
    // Replies to requests sent before a reopen can still sit in the kernel's input queue.
    ::tcflush(serial_.native_handle(), TCIFLUSH);
    is_tcp_ = false;
    co_return Status::ok();
  }

  bool is_open() const { return is_tcp_ ? tcp_.is_open() : serial_.is_open(); }

  void close() {
    boost::system::error_code ec;
    serial_.close(ec);
    tcp_.close(ec);
  }

  template <typename Handler>
  void async_read_some(asio::mutable_buffer buf, Handler&& h) {
    if (is_tcp_) {
      tcp_.async_read_some(buf, std::forward<Handler>(h));
    } else {
      serial_.async_read_some(buf, std::forward<Handler>(h));
    }
  }

  asio::awaitable<boost::system::error_code> write(std::span<const uint8_t> bytes) {
    boost::system::error_code ec;
    if (is_tcp_) {
      co_await asio::async_write(tcp_, asio::buffer(bytes.data(), bytes.size()),
                                 asio::redirect_error(asio::use_awaitable, ec));
    } else {
      co_await asio::async_write(serial_, asio::buffer(bytes.data(), bytes.size()),
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    co_return ec;
  }

 private:
  asio::serial_port serial_;
  asio::ip::tcp::socket tcp_;
  asio::ip::tcp::resolver resolver_;
  bool is_tcp_ = false;
};

SerialBus::SerialBus(asio::any_io_executor core, BusSettings settings)
    : core_(core),
      settings_(std::move(settings)),
      silent_(silent_interval(settings_)),
      transport_(std::make_unique<Transport>(core)),
      wake_(core),
      sleep_(core) {}

SerialBus::~SerialBus() = default;

BusStats SerialBus::take_window_stats() {
  BusStats out = stats_;
  stats_.max_wait = std::chrono::microseconds(0);
  return out;
}

bool SerialBus::is_open() const { return transport_->is_open() && !line_failed_; }

void SerialBus::start() {
  asio::co_spawn(core_, [self = shared_from_this()]() { return self->run(); }, asio::detached);
}

void SerialBus::stop() {
  stopped_ = true;
  transport_->close();
  wake_.cancel();
  sleep_.cancel();
  urgent_.clear();
  normal_.clear();
}

void SerialBus::submit(Exchange exchange, Done done) {
  if (stopped_) return;
  if (line_failed_ || !transport_->is_open()) {
    // The line is down: say so at once rather than queue requests that cannot be sent.
    asio::post(core_, [done = std::move(done), why = line_error_.empty()
                                                         ? "bus " + settings_.id + " not open yet"
                                                         : line_error_]() {
      done(ExchangeResult{Status::unavailable(why), {}, {}});
    });
    return;
  }
  Job job{std::move(exchange), std::move(done), Clock::now()};
  (job.exchange.urgent ? urgent_ : normal_).push_back(std::move(job));
  stats_.queued = urgent_.size() + normal_.size();
  wake_.cancel();
}

void SerialBus::fail_queued(const std::string& why) {
  for (auto* q : {&urgent_, &normal_}) {
    while (!q->empty()) {
      Job job = std::move(q->front());
      q->pop_front();
      asio::post(core_, [done = std::move(job.done), why]() {
        done(ExchangeResult{Status::unavailable(why), {}, {}});
      });
    }
  }
  stats_.queued = 0;
}

void SerialBus::start_reading() {
  if (reading_) return;
  reading_ = true;
  transport_->async_read_some(
      asio::buffer(read_chunk_),
      [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
        self->reading_ = false;
        if (self->stopped_) return;
        if (ec) {
          self->line_failed_ = true;
          self->line_error_ = "bus " + self->settings_.id + ": line lost: " + ec.message();
          self->wake_.cancel();
          return;
        }
        self->rx_.insert(self->rx_.end(), self->read_chunk_.begin(),
                         self->read_chunk_.begin() + static_cast<std::ptrdiff_t>(n));
        self->last_activity_ = Clock::now();
        self->wake_.cancel();
        self->start_reading();
      });
}

asio::awaitable<void> SerialBus::sleep_until(Clock::time_point t) {
  boost::system::error_code ec;
  sleep_.expires_at(t);
  co_await sleep_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

// Waits until new bytes arrive (true) or the deadline passes (false).
asio::awaitable<bool> SerialBus::wait_rx_until(Clock::time_point deadline) {
  const std::size_t before = rx_.size();
  boost::system::error_code ec;
  wake_.expires_at(deadline);
  co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  co_return rx_.size() != before;
}

asio::awaitable<bool> SerialBus::open_line() {
  auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(kReopenMin);
  for (;;) {
    if (stopped_) co_return false;
    transport_->close();
    Status s = co_await transport_->open(settings_);
    if (s) {
      line_failed_ = false;
      line_error_.clear();
      rx_.clear();
      last_activity_ = Clock::now();
      start_reading();
      co_return true;
    }
    line_failed_ = true;
    line_error_ = "bus " + settings_.id + ": " + s.message();
    fail_queued(line_error_);
    co_await sleep_until(Clock::now() + delay);
    delay = std::min(delay * 2, std::chrono::duration_cast<std::chrono::milliseconds>(kReopenMax));
  }
}

asio::awaitable<void> SerialBus::run() {
  auto self = shared_from_this();  // keeps the bus alive while the loop runs
  if (!co_await open_line()) co_return;
  while (!stopped_) {
    if (line_failed_) {
      ++stats_.reopens;
      if (!co_await open_line()) co_return;
    }
    if (urgent_.empty() && normal_.empty()) {
      // Sleep until work arrives; bytes arriving now are noise or late replies: drop them.
      boost::system::error_code ec;
      wake_.expires_at(Clock::time_point::max());
      co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    auto& q = urgent_.empty() ? normal_ : urgent_;
    Job job = std::move(q.front());
    q.pop_front();
    stats_.queued = urgent_.size() + normal_.size();
    const auto started = Clock::now();
    if (!job.exchange.urgent) {
      stats_.max_wait = std::max(stats_.max_wait, std::chrono::duration_cast<std::chrono::microseconds>(
                                                      started - job.queued_at));
    }
    ExchangeResult result = co_await execute(job);
    stats_.busy += std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started);
    if (stopped_) co_return;
    job.done(std::move(result));
  }
}

asio::awaitable<ExchangeResult> SerialBus::execute(Job& job) {
  const Exchange& ex = job.exchange;
  ExchangeResult result;

  // The line must be quiet for the silent interval (plus turnaround) before we talk. Bytes
  // still arriving (a late reply to an earlier request) push the start out and are dropped.
  for (;;) {
    const auto quiet_at =
        std::max(last_activity_ + silent_ + settings_.turnaround, quiet_until_);
    if (Clock::now() >= quiet_at || line_failed_) break;
    co_await sleep_until(quiet_at);
  }
  stats_.discarded_bytes += rx_.size();
  if (tracer_ && !rx_.empty()) tracer_("", false, rx_, "stray bytes discarded");
  rx_.clear();
  if (line_failed_) {
    result.status = Status::unavailable(line_error_);
    co_return result;
  }

  const auto sent_at = Clock::now();
  if (auto ec = co_await transport_->write(ex.request); ec) {
    line_failed_ = true;
    line_error_ = "bus " + settings_.id + ": write failed: " + ec.message();
    result.status = Status::unavailable(line_error_);
    co_return result;
  }
  last_activity_ = Clock::now();
  ++stats_.exchanges;
  if (tracer_) tracer_(ex.device_id, true, ex.request, ex.urgent ? "one-off request" : "");
  if (!ex.check) {
    co_return result;  // broadcast: nobody answers
  }

  const auto deadline = sent_at + ex.timeout;
  auto trace_rx = [&](const ExchangeResult& r) {
    if (tracer_) tracer_(ex.device_id, false, r.reply, r.status ? "" : r.status.message());
  };
  for (;;) {
    FrameCheck verdict = ex.check(rx_);
    if (verdict.verdict == FrameCheck::Verdict::kComplete) {
      // A frame ends with silence: wait one silent interval to be sure nothing follows.
      const auto frame_end = last_activity_;
      while (Clock::now() < frame_end + silent_ && !line_failed_) {
        co_await wait_rx_until(std::max(frame_end, last_activity_) + silent_);
        if (rx_.size() > verdict.length) break;
      }
      result.latency = std::chrono::duration_cast<std::chrono::microseconds>(frame_end - sent_at);
      if (rx_.size() > verdict.length) {
        ++stats_.bad_frames;
        result.status = Status::protocol("reply followed by " +
                                         std::to_string(rx_.size() - verdict.length) +
                                         " extra bytes");
        result.reply = rx_;
      } else {
        result.reply.assign(rx_.begin(), rx_.begin() + static_cast<std::ptrdiff_t>(verdict.length));
      }
      rx_.clear();
      trace_rx(result);
      co_return result;
    }
    if (verdict.verdict == FrameCheck::Verdict::kBad) {
      ++stats_.bad_frames;
      result.status = Status::protocol(verdict.message);
      result.reply = rx_;
      rx_.clear();  // the rest of this reply arrives later and is dropped before the next one
      trace_rx(result);
      co_return result;
    }
    if (line_failed_) {
      result.status = Status::unavailable(line_error_);
      co_return result;
    }
    if (Clock::now() >= deadline || !co_await wait_rx_until(deadline)) {
      if (Clock::now() < deadline) continue;  // woken without bytes (a submit): keep waiting
      ++stats_.timeouts;
      // A device that answers late usually answers soon after the deadline: keep the line
      // quiet a little longer so that answer is dropped, not taken for the next request's.
      quiet_until_ = Clock::now() + std::min<std::chrono::milliseconds>(ex.timeout, kLateGuard);
      result.status = Status::timeout(
          rx_.empty() ? "no answer within " + std::to_string(ex.timeout.count()) + "ms"
                      : "incomplete answer (" + std::to_string(rx_.size()) + " bytes) within " +
                            std::to_string(ex.timeout.count()) + "ms");
      result.reply = rx_;
      rx_.clear();
      trace_rx(result);
      co_return result;
    }
  }
}

}  // namespace gw::drivers
