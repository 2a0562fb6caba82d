#include "drivers/modbus_tcp/modbus_tcp_driver.h"

#include "drivers/modbus_points.h"

#include <errno.h>
#include <modbus/modbus.h>

#include <atomic>
#include <chrono>
#include <cstring>

namespace gw::drivers {
namespace {

int64_t wall_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// libmodbus reports Modbus exception responses as errno values above MODBUS_ENOBASE.
bool is_exception_reply(int err) {
  return err > MODBUS_ENOBASE && err <= MODBUS_ENOBASE + MODBUS_EXCEPTION_GATEWAY_TARGET;
}

}  // namespace

struct ModbusTcpDriver::Connection {
  modbus_t* ctx = nullptr;
  bool connected = false;
  ~Connection() { close(); }
  void close() {
    if (ctx) {
      modbus_close(ctx);
      modbus_free(ctx);
      ctx = nullptr;
    }
    connected = false;
  }
};

ModbusTcpDriver::ModbusTcpDriver(ModbusTcpSettings settings, asio::any_io_executor core,
                                 asio::any_io_executor io_pool)
    : settings_(std::move(settings)),
      plan_(protocols::plan_reads(settings_.points, settings_.limits)),
      core_(std::move(core)),
      strand_(asio::make_strand(io_pool)),
      connection_(std::make_unique<Connection>()),
      stopped_(std::make_shared<std::atomic<bool>>(false)) {}

ModbusTcpDriver::~ModbusTcpDriver() = default;

void ModbusTcpDriver::poll(PollCallback done, bool /*urgent: one connection per device*/) {
  asio::post(strand_, [self = shared_from_this(), done = std::move(done)]() mutable {
    if (self->stopped_->load()) return;
    PollResult result = self->poll_blocking();
    asio::post(self->core_, [stopped = self->stopped_, done = std::move(done),
                             result = std::move(result)]() mutable {
      if (!stopped->load()) done(std::move(result));
    });
  });
}

void ModbusTcpDriver::stop() {
  stopped_->store(true);
  asio::post(strand_, [self = shared_from_this()] { self->connection_->close(); });
}

PollResult ModbusTcpDriver::poll_blocking() {
  PollResult result;
  const auto started = std::chrono::steady_clock::now();
  const std::string where = settings_.host + ":" + std::to_string(settings_.port);
  Connection& conn = *connection_;

  auto fail = [&](const std::string& what, int err) {
    result.status = err == ETIMEDOUT ? Status::timeout(what + " " + where + ": no answer within " +
                                                       std::to_string(settings_.timeout.count()) +
                                                       "ms")
                                     : Status::unavailable(what + " " + where + ": " +
                                                           modbus_strerror(err));
    result.points.clear();
    conn.close();  // a late reply must never be read as the answer to the next request
    result.observed_at_us = wall_now_us();
    result.latency = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started);
    return result;
  };

  if (!conn.connected) {
    conn.close();
    conn.ctx = modbus_new_tcp_pi(settings_.host.c_str(), std::to_string(settings_.port).c_str());
    if (!conn.ctx) return fail("create context for", errno);
    modbus_set_slave(conn.ctx, settings_.unit_id);
    const auto ms = settings_.timeout.count();
    modbus_set_response_timeout(conn.ctx, static_cast<uint32_t>(ms / 1000),
                                static_cast<uint32_t>((ms % 1000) * 1000));
    if (modbus_connect(conn.ctx) == -1) return fail("connect to", errno);
    conn.connected = true;
  }

  std::vector<uint16_t> regs(protocols::kMaxRegistersPerRead);
  std::vector<uint8_t> bits(protocols::kMaxBitsPerRead);
  for (const protocols::ReadRequest& req : plan_) {
    int rc = -1;
    switch (req.table) {
      case protocols::RegisterTable::kHolding:
        rc = modbus_read_registers(conn.ctx, req.start, req.count, regs.data());
        break;
      case protocols::RegisterTable::kInput:
        rc = modbus_read_input_registers(conn.ctx, req.start, req.count, regs.data());
        break;
      case protocols::RegisterTable::kCoil:
        rc = modbus_read_bits(conn.ctx, req.start, req.count, bits.data());
        break;
      case protocols::RegisterTable::kDiscrete:
        rc = modbus_read_input_bits(conn.ctx, req.start, req.count, bits.data());
        break;
    }
    if (rc == -1 && is_exception_reply(errno)) {
      // The device is there but refuses these registers: its points are bad, the rest go on.
      mark_request_bad(req, std::string("device answered: ") + modbus_strerror(errno),
                       result.points);
      continue;
    }
    if (rc == -1) return fail("read from", errno);
    if (rc != req.count) return fail("short answer from", EMBBADDATA);
    const bool bit_table = protocols::is_bit_table(req.table);
    decode_request_points(req, settings_.points,
                          std::span<const uint16_t>(regs).first(bit_table ? 0 : req.count),
                          std::span<const uint8_t>(bits).first(bit_table ? req.count : 0),
                          result.points);
  }
  result.status = Status::ok();
  result.observed_at_us = wall_now_us();
  result.latency = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - started);
  return result;
}

}  // namespace gw::drivers
