#include "drivers/modbus_tcp/modbus_tcp_driver.h"

#include <chrono>
#include <cstdio>

#include "drivers/modbus_points.h"
#include "protocols/modbus_tcp.h"

namespace gw::drivers {
namespace {

namespace mtcp = protocols::modbus_tcp;
namespace rtu = protocols::modbus_rtu;

int64_t wall_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const char* table_name(protocols::RegisterTable t) {
  switch (t) {
    case protocols::RegisterTable::kCoil: return "coils";
    case protocols::RegisterTable::kDiscrete: return "discrete inputs";
    case protocols::RegisterTable::kHolding: return "holding";
    case protocols::RegisterTable::kInput: return "input";
  }
  return "?";
}

const char* exception_name(uint8_t code) {
  switch (code) {
    case 1: return "illegal function";
    case 2: return "illegal data address";
    case 3: return "illegal data value";
    case 4: return "server device failure";
    case 6: return "server device busy";
    case 10: return "gateway path unavailable";
    case 11: return "gateway target device failed to respond";
    default: return "exception";
  }
}

std::string value_text(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.6g", v);
  return text;
}

}  // namespace

ModbusTcpDriver::ModbusTcpDriver(ModbusTcpSettings settings, asio::any_io_executor core)
    : settings_(std::move(settings)),
      plan_(protocols::plan_reads(settings_.points, settings_.limits)),
      where_(settings_.host + ":" + std::to_string(settings_.port)),
      core_(core),
      socket_(core),
      resolver_(core),
      deadline_(core),
      wake_(core) {}

ModbusTcpDriver::~ModbusTcpDriver() = default;

void ModbusTcpDriver::set_tracer(FrameTracer tracer, std::function<bool(const std::string&)> active) {
  tracer_ = std::move(tracer);
  tracing_active_ = std::move(active);
}

void ModbusTcpDriver::poll(PollCallback done, bool urgent) {
  if (stopped_) return;
  if (urgent) {
    queue_.push_front({std::move(done), true});
  } else {
    queue_.push_back({std::move(done), false});
  }
  if (!serving_) {
    serving_ = true;
    asio::co_spawn(core_, [self = shared_from_this()] { return self->serve(); }, asio::detached);
  }
}

void ModbusTcpDriver::stop() {
  stopped_ = true;
  queue_.clear();
  close();
}

void ModbusTcpDriver::close() {
  boost::system::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  resolver_.cancel();
  disarm_deadline();
  connected_ = false;
}

void ModbusTcpDriver::disarm_deadline() {
  ++deadline_generation_;
  deadline_.cancel();
}

// One poll at a time over the one connection, until the queue is empty.
asio::awaitable<void> ModbusTcpDriver::serve() {
  auto self = shared_from_this();  // keeps the driver alive while a poll is in the air
  while (!stopped_ && !queue_.empty()) {
    Wanted w = std::move(queue_.front());
    queue_.pop_front();
    PollResult result = co_await poll_once(w.urgent);
    if (stopped_) break;
    w.done(std::move(result));
  }
  serving_ = false;
}

void ModbusTcpDriver::arm_deadline() {
  timed_out_ = false;
  const uint64_t armed = ++deadline_generation_;
  deadline_.expires_after(settings_.timeout);
  deadline_.async_wait([this, armed, self = weak_from_this()](const boost::system::error_code& ec) {
    // A stale expiry (the request finished while this handler was queued) must not close the
    // socket under the next request.
    if (ec || self.expired() || armed != deadline_generation_) return;
    timed_out_ = true;
    boost::system::error_code ignored;
    socket_.close(ignored);
    resolver_.cancel();
  });
}

asio::awaitable<Status> ModbusTcpDriver::connect() {
  boost::system::error_code ec;
  arm_deadline();
  auto endpoints = co_await resolver_.async_resolve(settings_.host, std::to_string(settings_.port),
                                                    asio::redirect_error(asio::use_awaitable, ec));
  if (!ec) {
    co_await asio::async_connect(socket_, endpoints, asio::redirect_error(asio::use_awaitable, ec));
  }
  disarm_deadline();
  if (ec || timed_out_) {
    close();
    co_return timed_out_ ? Status::timeout("connect to " + where_ + ": no answer within " +
                                           std::to_string(settings_.timeout.count()) + "ms")
                         : Status::unavailable("connect to " + where_ + ": " + ec.message());
  }
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  connected_ = true;
  co_return Status::ok();
}

asio::awaitable<Result<std::vector<uint8_t>>> ModbusTcpDriver::exchange(
    const std::vector<uint8_t>& request) {
  boost::system::error_code ec;
  arm_deadline();
  co_await asio::async_write(socket_, asio::buffer(request),
                             asio::redirect_error(asio::use_awaitable, ec));
  std::vector<uint8_t> frame(mtcp::kHeaderLength);
  if (!ec) {
    co_await asio::async_read(socket_, asio::buffer(frame),
                              asio::redirect_error(asio::use_awaitable, ec));
  }
  Status bad_header = Status::ok();
  if (!ec) {
    Result<mtcp::Header> h = mtcp::parse_header(frame);
    if (!h) {
      bad_header = h.status();
    } else {
      frame.resize(mtcp::kHeaderLength + h->pdu_length());
      co_await asio::async_read(socket_,
                                asio::buffer(frame.data() + mtcp::kHeaderLength, h->pdu_length()),
                                asio::redirect_error(asio::use_awaitable, ec));
    }
  }
  disarm_deadline();
  if (timed_out_) {
    close();
    co_return Status::timeout("read from " + where_ + ": no answer within " +
                              std::to_string(settings_.timeout.count()) + "ms");
  }
  if (ec) {
    close();
    co_return Status::unavailable("read from " + where_ + ": " + ec.message());
  }
  if (!bad_header) {
    if (tracer_) tracer_(settings_.device_id, false, true, frame, bad_header.message());
    close();
    co_return Status::protocol("answer from " + where_ + ": " + bad_header.message());
  }
  co_return frame;
}

asio::awaitable<PollResult> ModbusTcpDriver::poll_once(bool urgent) {
  PollResult result;
  const auto started = std::chrono::steady_clock::now();
  auto finish = [&](Status status) {
    result.status = std::move(status);
    if (!result.status) result.points.clear();
    result.observed_at_us = wall_now_us();
    result.latency = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started);
    return std::move(result);
  };
  if (!connected_) {
    if (Status s = co_await connect(); !s) co_return finish(std::move(s));
  }
  const uint8_t unit = static_cast<uint8_t>(settings_.unit_id);
  for (const protocols::ReadRequest& req : plan_) {
    const uint16_t tid = ++next_transaction_;
    const std::vector<uint8_t> request = mtcp::build_read_request(tid, unit, req.table, req.start,
                                                                  req.count);
    const bool trace = tracing();
    if (trace) {
      tracer_(settings_.device_id, true, false, request,
              "tid " + std::to_string(tid) + " unit " + std::to_string(unit) + " read " +
                  table_name(req.table) + " " + std::to_string(req.start) + "+" +
                  std::to_string(req.count) + (urgent ? " (one-off read)" : ""));
    }
    Result<std::vector<uint8_t>> frame = co_await exchange(request);
    if (stopped_) co_return finish(Status::unavailable("stopped"));
    if (!frame) {
      if (trace && frame.status().code() != Status::Code::kProtocol) {
        tracer_(settings_.device_id, false, false, {}, frame.status().message());
      }
      co_return finish(frame.status());
    }
    rtu::Response r = mtcp::parse_read_response(*frame, tid, unit, req.table, req.count);
    if (r.outcome == rtu::Response::Outcome::kGood) {
      const std::size_t first = result.points.size();
      decode_request_points(req, settings_.points, r.registers, r.bits, result.points);
      if (trace) {
        std::string note = "tid " + std::to_string(tid) + ":";
        for (std::size_t i = first; i < result.points.size(); ++i) {
          const PointReading& p = result.points[i];
          note += " " + settings_.points[p.index].name + "=" +
                  (p.good ? value_text(p.value) + settings_.points[p.index].unit
                          : "bad(" + p.error + ")");
        }
        tracer_(settings_.device_id, false, false, *frame, note);
      }
    } else if (r.error == rtu::Error::kException) {
      // The device is there but refuses these registers: its points are bad, the rest go on.
      const std::string why = "device answered exception " + std::to_string(r.exception_code) +
                              " (" + exception_name(r.exception_code) + ")";
      if (trace) {
        tracer_(settings_.device_id, false, false, *frame, "tid " + std::to_string(tid) + ": " + why);
      }
      mark_request_bad(req, why, result.points);
    } else {
      // Always reported (not only while tracing): a bad frame is logged, rate-limited.
      if (tracer_) tracer_(settings_.device_id, false, true, *frame, r.message);
      close();
      co_return finish(Status::protocol("answer from " + where_ + ": " + r.message));
    }
  }
  co_return finish(Status::ok());
}

}  // namespace gw::drivers
