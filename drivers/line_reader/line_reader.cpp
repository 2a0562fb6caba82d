#include "drivers/line_reader/line_reader.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <functional>
#include <random>

#include "drivers/serial_line.h"

namespace gw::drivers {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
namespace cr = protocols::card_reader;
namespace v1 = campus::gateway::v1;

namespace {

std::string format_ms(std::chrono::milliseconds d) {
  if (d.count() % 60000 == 0) return std::to_string(d.count() / 60000) + "m";
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

void set_int_option(int fd, int level, int name, int value) {
  // Best effort: a kernel without the option still gets SO_KEEPALIVE's defaults.
  (void)::setsockopt(fd, level, name, &value, sizeof value);
}

}  // namespace

// The byte stream: a serial port, or a TCP connection (a networked reader or a serial server).
class LineReader::Transport {
 public:
  explicit Transport(asio::any_io_executor ex)
      : serial_(ex), tcp_(ex), resolver_(ex), connect_timer_(ex) {}

  asio::awaitable<Status> open(const LineReaderSettings& s) {
    close();
    boost::system::error_code ec;
    if (s.is_tcp()) {
      is_tcp_ = true;
      const std::string where = s.host + ":" + std::to_string(s.port);
      auto endpoints = co_await resolver_.async_resolve(
          s.host, std::to_string(s.port), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return Status::unavailable("resolve " + s.host + ": " + ec.message());
      // A reader behind a dead route would leave connect() hanging for minutes.
      auto attempt = std::make_shared<ConnectAttempt>();
      connect_timer_.expires_after(s.connect_timeout);
      connect_timer_.async_wait([this, attempt](const boost::system::error_code& e) {
        if (e || attempt->done) return;
        attempt->timed_out = true;
        boost::system::error_code ignored;
        tcp_.close(ignored);
      });
      co_await asio::async_connect(tcp_, endpoints, asio::redirect_error(asio::use_awaitable, ec));
      attempt->done = true;
      connect_timer_.cancel();
      if (attempt->timed_out) {
        co_return Status::unavailable("connect to " + where + ": no answer within " +
                                      format_ms(s.connect_timeout));
      }
      if (ec) co_return Status::unavailable("connect to " + where + ": " + ec.message());
      tcp_.set_option(asio::socket_base::keep_alive(true), ec);
      const int fd = tcp_.native_handle();
      set_int_option(fd, IPPROTO_TCP, TCP_KEEPIDLE, static_cast<int>(s.keepalive_idle.count()));
      set_int_option(fd, IPPROTO_TCP, TCP_KEEPINTVL,
                     static_cast<int>(s.keepalive_interval.count()));
      set_int_option(fd, IPPROTO_TCP, TCP_KEEPCNT, s.keepalive_count);
      co_return Status::ok();
    }
    is_tcp_ = false;
    serial_.open(s.device_path, ec);
    if (ec) {
      co_return Status::unavailable(
          "open " + s.device_path + ": " + ec.message() +
          (ec == boost::system::errc::no_such_file_or_directory ? " (reader unplugged?)" : ""));
    }
    ec = set_serial_line(serial_, s.baud, s.data_bits, s.parity, s.stop_bits);
    if (ec) {
      close();
      co_return Status::unavailable("configure " + s.device_path + ": " + ec.message());
    }
    // No flush of the input queue: bytes a reader sent just before we opened are swipes.
    co_return Status::ok();
  }

  void close() {
    boost::system::error_code ignored;
    resolver_.cancel();  // a slow DNS lookup must not outlive stop()
    serial_.close(ignored);
    tcp_.close(ignored);
  }

  asio::awaitable<std::size_t> read_some(asio::mutable_buffer buf, boost::system::error_code& ec) {
    if (is_tcp_) {
      co_return co_await tcp_.async_read_some(buf, asio::redirect_error(asio::use_awaitable, ec));
    }
    co_return co_await serial_.async_read_some(buf, asio::redirect_error(asio::use_awaitable, ec));
  }

 private:
  struct ConnectAttempt {
    bool done = false;
    bool timed_out = false;
  };
  asio::serial_port serial_;
  asio::ip::tcp::socket tcp_;
  asio::ip::tcp::resolver resolver_;
  asio::steady_timer connect_timer_;
  bool is_tcp_ = false;
};

Status validate(const LineReaderSettings& s) {
  const std::string who = "device " + s.device_id + ": ";
  if (s.is_tcp()) {
    if (s.port == 0) return Status::invalid(who + "tcp_line needs address host:port");
  } else if (s.device_path.empty()) {
    return Status::invalid(who + "serial_line needs a serial port or a bus");
  }
  const cr::Framing& f = s.framing;
  if (f.max_length < 1) return Status::invalid(who + "framing max_length must be at least 1");
  if (f.type == cr::FramingType::kLine &&
      (f.delimiter.empty() || f.delimiter.size() > cr::kMaxDelimiter)) {
    return Status::invalid(who + "framing delimiter must be 1..8 bytes");
  }
  if (f.type == cr::FramingType::kFixed && f.length < 1) {
    return Status::invalid(who + "framing type fixed needs length");
  }
  if (Status c = cr::check_combination(f, s.format); !c) return Status::invalid(who + c.message());
  return Status::ok();
}

LineReader::LineReader(asio::any_io_executor core, LineReaderSettings settings)
    : core_(core),
      settings_(std::move(settings)),
      transport_(std::make_unique<Transport>(core)),
      splitter_(settings_.framing),
      sleep_(core),
      idle_watch_(core),
      frame_gap_(core) {
  sink_ = [this](const cr::Piece& piece) { on_piece(piece); };
}

LineReader::~LineReader() = default;

std::string LineReader::where() const {
  return settings_.is_tcp() ? settings_.host + ":" + std::to_string(settings_.port)
                            : settings_.device_path;
}

void LineReader::start(SourceCallbacks callbacks, std::string /*cursor: readers have no log*/) {
  if (started_ || stopped_) return;
  started_ = true;
  callbacks_ = std::move(callbacks);
  asio::co_spawn(
      core_, [self = shared_from_this()]() { return self->run(); }, asio::detached);
}

void LineReader::stop() {
  stopped_ = true;
  transport_->close();
  sleep_.cancel();
  idle_watch_.cancel();
  frame_gap_.cancel();
}

void LineReader::report_link(bool up, const std::string& why) {
  if (stopped_) return;
  const LinkState next = up ? LinkState::kUp : LinkState::kDown;
  if (link_ == next) return;  // once per change, not once per retry
  link_ = next;
  if (callbacks_.link) callbacks_.link(up, why);
}

asio::awaitable<void> LineReader::sleep_for(std::chrono::milliseconds d) {
  boost::system::error_code ec;
  sleep_.expires_after(d);
  co_await sleep_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

asio::awaitable<void> LineReader::run() {
  auto self = shared_from_this();  // keeps the reader alive while the loop runs
  std::minstd_rand rng(static_cast<uint32_t>(std::hash<std::string>{}(settings_.device_id) ^
                                             Clock::now().time_since_epoch().count()));
  auto delay = settings_.reopen_min;
  // Full-ish jitter (half to all of the delay): many readers behind one converter or one switch
  // must not reconnect in lockstep.
  auto next_delay = [&] {
    const auto d = delay;
    delay = std::min(delay * 2, settings_.reopen_max);
    std::uniform_int_distribution<int64_t> half_to_full(d.count() / 2, d.count());
    return std::chrono::milliseconds(half_to_full(rng));
  };
  std::string idle_reason;  // set while reconnecting after idle_timeout: the link may be fine

  while (!stopped_) {
    Status opened = co_await transport_->open(settings_);
    if (stopped_) break;
    if (!opened) {
      ++stats_.open_failures;
      report_link(false, idle_reason.empty()
                             ? opened.message()
                             : idle_reason + ", and reconnecting failed: " + opened.message());
      idle_reason.clear();
      co_await sleep_for(next_delay());
      continue;
    }
    ++stats_.opens;
    idle_reason.clear();
    delay = settings_.reopen_min;
    report_link(true, "");
    splitter_.reset();
    last_rx_ = Clock::now();
    idle_expired_ = false;
    arm_idle_watch();

    std::string why;
    const ReadEnd end = co_await read_until_failure(why);
    transport_->close();
    idle_watch_.cancel();
    frame_gap_.cancel();
    if (end == ReadEnd::kStopped || stopped_) break;
    if (end == ReadEnd::kIdle) {
      ++stats_.idle_reconnects;
      idle_reason = why;
      continue;  // reconnect at once; the link is reported down only if that fails
    }
    report_link(false, why);
    co_await sleep_for(next_delay());
  }
  transport_->close();
}

asio::awaitable<LineReader::ReadEnd> LineReader::read_until_failure(std::string& why) {
  for (;;) {
    boost::system::error_code ec;
    const std::size_t n = co_await transport_->read_some(asio::buffer(read_buf_), ec);
    if (stopped_) co_return ReadEnd::kStopped;
    if (ec) {
      if (idle_expired_) {
        why = where() + ": no data for " + format_ms(settings_.idle_timeout);
        co_return ReadEnd::kIdle;
      }
      if (ec == asio::error::eof) {
        why = settings_.is_tcp() ? where() + ": connection closed by the reader"
                                 : where() + ": end of file (device gone?)";
      } else {
        why = where() + ": read failed: " + ec.message();
      }
      co_return ReadEnd::kFailed;
    }
    last_rx_ = Clock::now();
    stats_.bytes += n;
    on_bytes(std::span<const uint8_t>(read_buf_.data(), n));
    if (stopped_) co_return ReadEnd::kStopped;
  }
}

void LineReader::arm_idle_watch() {
  if (!settings_.is_tcp() || settings_.idle_timeout.count() <= 0) return;
  // One timer per idle period, not per read: it re-arms from the last byte seen when it fires.
  idle_watch_.expires_at(last_rx_ + settings_.idle_timeout);
  idle_watch_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (ec || !self || self->stopped_) return;
    if (Clock::now() < self->last_rx_ + self->settings_.idle_timeout) {
      self->arm_idle_watch();
      return;
    }
    self->idle_expired_ = true;
    self->transport_->close();  // the pending read ends with operation_aborted
  });
}

void LineReader::arm_frame_gap() {
  if (settings_.framing.type != cr::FramingType::kFixed || splitter_.buffered() == 0) return;
  frame_gap_.expires_after(settings_.fixed_frame_gap);
  frame_gap_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (ec || !self || self->stopped_) return;
    if (Clock::now() < self->last_rx_ + self->settings_.fixed_frame_gap) return;  // bytes came
    self->splitter_.idle(self->sink_);
  });
}

void LineReader::on_bytes(std::span<const uint8_t> bytes) {
  splitter_.feed(bytes, sink_);
  arm_frame_gap();
}

void LineReader::on_piece(const cr::Piece& piece) {
  if (stopped_) return;
  auto trace = [&](const std::string& note) {
    if (callbacks_.trace) callbacks_.trace(false, piece.raw, note);
  };
  auto reject = [&](const cr::Rejection& r) {
    ++stats_.rejected;
    trace(r.kind + ": " + r.message);
    if (callbacks_.bad_input) callbacks_.bad_input(r.kind, r.message);
  };
  if (piece.kind == cr::Piece::Kind::kDropped) {
    if (piece.rejection) {
      reject(*piece.rejection);
    } else {
      trace("skipped");
    }
    return;
  }
  cr::Decoded card = cr::decode_card(settings_.framing.type, settings_.format, piece.payload);
  if (!card.ok()) {
    reject(*card.error);
    return;
  }
  trace("card");
  ++stats_.swipes;
  SourceEvent out;
  v1::AccessBody* access = out.event.mutable_access();
  access->set_credential(std::move(card.card_id));
  access->set_direction(settings_.direction);
  access->set_result(v1::RESULT_UNKNOWN);
  access->set_door(settings_.door);
  if (callbacks_.event) callbacks_.event(std::move(out));
}

}  // namespace gw::drivers
