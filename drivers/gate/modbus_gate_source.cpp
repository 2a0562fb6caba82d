#include "drivers/gate/modbus_gate_source.h"

#include <modbus/modbus.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <vector>

namespace gw::drivers {

namespace v1 = campus::gateway::v1;

namespace {

constexpr uint32_t kMaxRecordsPerRequest = 15;  // 120 registers, under Modbus' 125
constexpr uint32_t kMaxRecordsPerRound = 120;   // then the core gets a turn

uint32_t u32(const uint16_t* r) { return static_cast<uint32_t>(r[0]) << 16 | r[1]; }

v1::MeterValue good_value(const char* name, double value) {
  v1::MeterValue v;
  v.set_name(name);
  v.set_value(value);
  v.set_quality(v1::GOOD);
  return v;
}

}  // namespace

struct ModbusGateSource::Connection {
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

struct ModbusGateSource::Round {
  gw::Status status;
  uint16_t door = 0;
  uint16_t lock = 0;
  uint32_t passages_in = 0;
  uint32_t passages_out = 0;
  uint32_t newest = 0;
  bool baseline = false;  // no cursor yet: take the newest entry as the starting point
  gate::CatchUp plan;
  std::optional<Record> checked;  // baseline: the newest record; plan.verify: the cursor's
  std::vector<Record> records;    // plan.first onwards, in index order
  bool more = false;              // records beyond what this round read
};

ModbusGateSource::ModbusGateSource(ModbusGateSettings settings, asio::any_io_executor core,
                                   asio::any_io_executor io_pool)
    : settings_(std::move(settings)),
      core_(core),
      strand_(asio::make_strand(io_pool)),
      timer_(core),
      connection_(std::make_unique<Connection>()),
      stopped_(std::make_shared<std::atomic<bool>>(false)) {}

ModbusGateSource::~ModbusGateSource() = default;

void ModbusGateSource::start(SourceCallbacks callbacks, std::string cursor) {
  cb_ = std::move(callbacks);
  if (!cursor.empty()) {
    auto parsed = gate::parse_cursor(cursor);
    if (parsed) {
      cursor_ = *parsed;
      have_cursor_ = true;
    } else if (cb_.bad_input) {
      cb_.bad_input("cursor", parsed.status().message() + "; starting after the newest entry");
    }
  }
  schedule(std::chrono::milliseconds(0));
}

void ModbusGateSource::stop() {
  if (stopped_->exchange(true)) return;
  timer_.cancel();
  asio::post(strand_, [self = shared_from_this()] { self->connection_->close(); });
}

void ModbusGateSource::schedule(std::chrono::milliseconds delay) {
  if (stopped_->load()) return;
  timer_.expires_after(delay);
  // Handlers waiting on the core hold the source weakly: one still queued when the core's
  // io_context is destroyed must not be what destroys the source (its strand belongs to the
  // I/O pool, which may be gone by then).
  timer_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (ec || !self || self->stopped_->load()) return;
    self->run_round();
  });
}

void ModbusGateSource::run_round() {
  // The round reads on the I/O pool with a copy of the position; the core is not touched there.
  const gate::LogCursor cursor = cursor_;
  const bool have_cursor = have_cursor_;
  asio::post(strand_, [self = shared_from_this(), cursor, have_cursor] {
    if (self->stopped_->load()) return;
    const ModbusGateSettings& s = self->settings_;
    Connection& conn = *self->connection_;
    Round round;
    const std::string where = s.host + ":" + std::to_string(s.port);
    auto fail = [&](const std::string& what) {
      const int err = errno;
      round.status =
          err == ETIMEDOUT
              ? gw::Status::timeout(what + " " + where + ": no answer within " +
                                    std::to_string(s.timeout.count()) + "ms")
              : gw::Status::unavailable(what + " " + where + ": " + modbus_strerror(err));
      conn.close();  // a late reply must never be read as the answer to the next request
    };
    auto read = [&](uint32_t address, int count, uint16_t* out) {
      const int rc = modbus_read_registers(conn.ctx, static_cast<int>(address), count, out);
      if (rc == count) return true;
      if (rc >= 0) errno = EMBBADDATA;
      fail("read registers " + std::to_string(address) + ".." +
           std::to_string(address + count - 1) + " from");
      return false;
    };

    bool ok = true;
    if (!conn.connected) {
      conn.close();
      conn.ctx = modbus_new_tcp_pi(s.host.c_str(), std::to_string(s.port).c_str());
      if (!conn.ctx) {
        fail("create context for");
        ok = false;
      } else {
        modbus_set_slave(conn.ctx, s.unit_id);
        const auto ms = s.timeout.count();
        modbus_set_response_timeout(conn.ctx, static_cast<uint32_t>(ms / 1000),
                                    static_cast<uint32_t>((ms % 1000) * 1000));
        if (modbus_connect(conn.ctx) == -1) {
          fail("connect to");
          ok = false;
        } else {
          conn.connected = true;
        }
      }
    }

    std::array<uint16_t, kGateStatusRegisters> st{};
    if (ok) ok = read(s.status_base, kGateStatusRegisters, st.data());
    if (ok) {
      round.door = st[0];
      round.lock = st[1];
      round.passages_in = u32(&st[2]);
      round.passages_out = u32(&st[4]);
      round.newest = u32(&st[6]);
      const uint64_t newest = round.newest;
      const uint64_t n = s.log_size;
      const uint64_t oldest = newest == 0 ? 0 : (newest > n ? newest - n + 1 : 1);
      uint64_t start = 1;
      uint64_t end = 0;  // inclusive; nothing when start > end
      if (!have_cursor) {
        round.baseline = true;
        start = end = newest;  // the newest record, for its stamp
        if (newest == 0) start = 1;
      } else {
        round.plan = gate::plan_catch_up(cursor, oldest, newest);
        start = round.plan.verify ? cursor.index : round.plan.first;
        end = std::min<uint64_t>(newest, start + kMaxRecordsPerRound - 1);
        round.more = end < newest;
      }
      std::vector<uint16_t> regs(kMaxRecordsPerRequest * kGateRecordRegisters);
      for (uint64_t i = start; ok && i <= end;) {
        if (self->stopped_->load()) return;  // shutting down: no more blocking reads
        const uint64_t slot = i % n;
        const uint64_t count = std::min<uint64_t>({kMaxRecordsPerRequest, end - i + 1, n - slot});
        const uint32_t address = s.log_base + static_cast<uint32_t>(slot) * kGateRecordRegisters;
        const int nregs = static_cast<int>(count) * kGateRecordRegisters;
        if (!read(address, nregs, regs.data())) {
          ok = false;
          break;
        }
        for (uint64_t k = 0; k < count; ++k) {
          const uint16_t* r = &regs[k * kGateRecordRegisters];
          round.records.push_back({u32(r), u32(r + 2), u32(r + 4), r[6], r[7]});
        }
        i += count;
      }
      if (ok && (round.baseline || round.plan.verify) && !round.records.empty()) {
        round.checked = round.records.front();
        round.records.erase(round.records.begin());
      }
    }
    if (ok) round.status = gw::Status::ok();
    asio::post(self->core_, [weak = std::weak_ptr(self), round = std::move(round)]() mutable {
      auto source = weak.lock();
      if (source && !source->stopped_->load()) source->on_round(std::move(round));
    });
  });
}

void ModbusGateSource::on_round(Round round) {
  if (!round.status.is_ok()) {
    ++failures_;
    if (failures_ >= settings_.offline_after && (link_up_ || !link_known_)) {
      link_up_ = false;
      link_known_ = true;
      if (cb_.link) cb_.link(false, round.status.message());
    }
    schedule(settings_.poll);
    return;
  }
  failures_ = 0;
  const bool fresh_link = !link_up_;
  if (fresh_link) {
    // First answer since start or since the link came back: what the log holds now was
    // recorded while nobody was reading it.
    link_up_ = true;
    link_known_ = true;
    historical_until_ = round.newest;
    if (cb_.link) cb_.link(true, {});
  }

  if (round.baseline) {
    cursor_ = {round.newest, {}};
    if (round.checked && round.checked->index == round.newest) {
      cursor_.stamp = std::to_string(round.checked->time);
    }
    have_cursor_ = true;
    pending_baseline_ = true;
  }

  auto emit_meter = [&](std::initializer_list<v1::MeterValue> values) {
    SourceEvent e;
    for (const auto& v : values) *e.event.mutable_meter()->add_values() = v;
    if (pending_baseline_) {
      // First start: the position is the log's newest entry; it commits with this event.
      e.cursor = gate::format_cursor(cursor_);
      pending_baseline_ = false;
    }
    cb_.event(std::move(e));
  };
  if (round.door > 1) {
    if (cb_.bad_input) {
      cb_.bad_input("format", "door register holds " + std::to_string(round.door) +
                                  ", expected 0 (closed) or 1 (open)");
    }
  } else if (door_ != round.door) {
    door_ = round.door;
    emit_meter({good_value("door_open", round.door == 1 ? 1.0 : 0.0)});
  }
  const std::array<uint32_t, 3> counters{round.lock, round.passages_in, round.passages_out};
  if (counters_ != counters) {
    counters_ = counters;
    emit_meter({good_value("locked", round.lock == 0 ? 1.0 : 0.0),
                good_value("passages_in", round.passages_in),
                good_value("passages_out", round.passages_out)});
  }
  if (round.baseline) return schedule(settings_.poll);

  const gate::CatchUp& plan = round.plan;
  uint64_t expected = plan.first;
  if (plan.reset) {
    if (cb_.bad_input) {
      cb_.bad_input("reset", gate::reset_message(cursor_, round.newest,
                                                 "its newest index is below the last index read"));
    }
    cursor_ = {};
    // Entries of the new numbering were recorded while we were reading live, unless we are
    // just back from an outage.
    if (!fresh_link) historical_until_ = 0;
  } else if (plan.verify && round.checked && round.checked->index == cursor_.index &&
             std::to_string(round.checked->time) != cursor_.stamp) {
    if (cb_.bad_input) {
      cb_.bad_input("reset",
                    gate::reset_message(cursor_, round.newest,
                                        "the entry at index " + std::to_string(cursor_.index) +
                                            " is not the one read before"));
    }
    cursor_ = {};
    if (!fresh_link) historical_until_ = 0;
    // What this round read continued the old numbering; read again from the start.
    return schedule(std::chrono::milliseconds(0));
  }
  if (plan.lost > 0) {
    if (cb_.bad_input) {
      cb_.bad_input("gap", gate::lost_message(plan.lost, plan.first - plan.lost, plan.first - 1));
    }
    // Said once: the position moves past the hole even before the next entry commits.
    cursor_ = {plan.first - 1, {}};
  }
  for (const Record& r : round.records) {
    if (r.index != expected) {
      if (r.index > expected) {
        // Overwritten between the status read and this one: the next round counts the loss.
        return schedule(std::chrono::milliseconds(0));
      }
      if (cb_.bad_input) {
        cb_.bad_input("protocol", "log slot for index " + std::to_string(expected) +
                                      " holds index " + std::to_string(r.index) +
                                      " (newest index says " + std::to_string(round.newest) + ")");
      }
      return schedule(settings_.poll);
    }
    emit_record(r);
    ++expected;
    if (stopped_->load()) return;
  }
  schedule(round.more ? std::chrono::milliseconds(0) : settings_.poll);
}

void ModbusGateSource::emit_record(const Record& r) {
  SourceEvent e;
  v1::Event& ev = e.event;
  ev.set_historical(r.index <= historical_until_);
  if (r.time != 0) ev.set_device_time_us(static_cast<int64_t>(r.time) * 1000000);
  v1::AccessBody* a = ev.mutable_access();
  a->set_credential(std::to_string(r.card));
  switch (r.result) {
    case 1:
      a->set_result(v1::GRANTED);
      break;
    case 2:
      a->set_result(v1::DENIED);
      break;
    default:
      a->set_result(v1::RESULT_UNKNOWN);
      if (r.result != 0) a->set_reason("result code " + std::to_string(r.result));
      break;
  }
  if (r.direction == 1) a->set_direction(v1::IN);
  if (r.direction == 2) a->set_direction(v1::OUT);
  cursor_ = {r.index, std::to_string(r.time)};
  e.cursor = gate::format_cursor(cursor_);
  cb_.event(std::move(e));
}

}  // namespace gw::drivers
