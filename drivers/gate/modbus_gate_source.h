// ModbusGateSource follows a turnstile or door controller exposed over Modbus TCP: its status
// (door open, lock, passage counters) and its own event log, read by index. It is an
// EventSource: passages become access events, the door state a `door_open` meter value on
// change, lock and counters a meter event on change. After the gateway or the link was down,
// the entries recorded meanwhile are read back from the log (historical = true); the cursor
// handed to the gateway with each entry ("<index>@<time>") is what makes that exact across
// restarts and kill -9.
//
// Register layout (holding registers, FC 3; every 32-bit value high word first). Both blocks
// move with their base address, so the layout fits any controller that can map registers:
//
//   status block at `status_base` (8 registers)
//     +0      door open      0 closed, 1 open
//     +1      lock           0 locked, 1 unlocked
//     +2..+3  passages in    uint32 counter
//     +4..+5  passages out   uint32 counter
//     +6..+7  newest index   uint32, index of the newest log record; 0 = log empty
//   log window at `log_base`: `log_size` (N) records of 8 registers; the record with index i
//   (i >= 1, +1 per passage, never reused until the log is reset) sits at
//   log_base + (i mod N) * 8, so the controller keeps the newest N:
//     +0..+1  index          uint32, the record's own index (tells an overwritten slot)
//     +2..+3  time           uint32, unix seconds (UTC)
//     +4..+5  card id        uint32
//     +6      result         0 unknown, 1 granted, 2 denied
//     +7      direction      0 as configured, 1 in, 2 out
//
// libmodbus blocks, so every read runs on the I/O pool (serialized per device by a strand) and
// the result is posted back to the core executor, where all state lives and every callback
// runs. Reads up to 15 records per request and 120 per round, then yields to the core.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "drivers/asio.h"
#include "drivers/event_source.h"
#include "drivers/gate/event_log.h"

namespace gw::drivers {

struct ModbusGateSettings {
  std::string device_id;
  std::string host;
  uint16_t port = 502;
  int unit_id = 1;
  std::chrono::milliseconds poll{1000};
  std::chrono::milliseconds timeout{500};
  int offline_after = 3;  // consecutive failed rounds before the link is reported down
  uint16_t status_base = 0;
  uint16_t log_base = 100;
  uint32_t log_size = 64;  // records the controller keeps; log_base + 8 * log_size <= 65536
};

inline constexpr int kGateRecordRegisters = 8;
inline constexpr int kGateStatusRegisters = 8;

class ModbusGateSource : public EventSource, public std::enable_shared_from_this<ModbusGateSource> {
 public:
  ModbusGateSource(ModbusGateSettings settings, asio::any_io_executor core,
                   asio::any_io_executor io_pool);
  ~ModbusGateSource() override;

  void start(SourceCallbacks callbacks, std::string cursor) override;
  void stop() override;

  struct Record {
    uint32_t index = 0;
    uint32_t time = 0;
    uint32_t card = 0;
    uint16_t result = 0;
    uint16_t direction = 0;
  };
  struct Round;  // one blocking read round's outcome (defined in the .cpp)

 private:
  struct Connection;  // libmodbus context; touched only on strand_
  void schedule(std::chrono::milliseconds delay);
  void run_round();
  void on_round(Round round);
  void emit_record(const Record& r);

  const ModbusGateSettings settings_;
  asio::any_io_executor core_;
  asio::strand<asio::any_io_executor> strand_;
  asio::steady_timer timer_;
  std::unique_ptr<Connection> connection_;
  std::shared_ptr<std::atomic<bool>> stopped_;
  SourceCallbacks cb_;

  // Core-thread state.
  gate::LogCursor cursor_;
  bool have_cursor_ = false;  // false until a cursor was handed in or a baseline was taken
  bool link_up_ = false;
  bool link_known_ = false;
  int failures_ = 0;
  uint64_t historical_until_ = 0;  // entries up to this index waited out an outage
  std::optional<uint16_t> door_;
  std::optional<std::array<uint32_t, 3>> counters_;  // lock, in, out
  bool pending_baseline_ = false;  // the baseline cursor rides on the next meter event
};

}  // namespace gw::drivers
