// GateSim plays a gate controller with an event log of bounded size, for the gate drivers' tests
// and for gate_sim (README.md): a Modbus TCP gate with the register layout of
// drivers/gate/modbus_gate_source.h (encoded here independently of the driver), and/or a
// UHPPOTE UT0311-L0x controller on UDP (packets built with protocols/uhppote, whose bytes are
// checked against uhppoted's in tests/protocols/uhppote_test.cpp).
//
// Passages are numbered n = 1, 2, 3, ... for the life of the process and recorded in every
// enabled gate's log. Everything about passage n is a pure function of (seed, n), so a test can
// predict what the gateway must deliver: see passage().
//
// One thread serves all sockets from one poll() loop; the control methods (pass, reset, mute,
// ...) may be called from any thread and take effect before they return.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "protocols/status.h"
#include "protocols/uhppote.h"

namespace gw::sim {

struct GateSimOptions {
  std::string bind = "127.0.0.1";
  bool modbus = true;
  uint16_t modbus_port = 0;  // 0: kernel-chosen
  uint16_t status_base = 0;
  uint16_t log_base = 100;
  uint32_t log_size = 64;  // Modbus log records kept (N)
  bool uhppote = true;
  uint16_t uhppote_port = 0;
  uint32_t serial_number = 405419896;
  uint32_t uhppote_log_size = 1000;  // UHPPOTE entries kept; the oldest go first
  std::string listener;              // "ip:port" to push UHPPOTE events to (or set-listener)
  uint32_t seed = 1;
  double rate = 0;           // automatic passages per second; 0 = on command only
  std::string passages_log;  // one JSON line per passage recorded (truncated at start)
  int reply_delay_ms = 0;    // a slow controller: every answer waits this long
};

// What passage n is, for the seed: the card id (unique for n < 80,000,000), granted unless
// n is a multiple of 10, direction in for odd n and out for even n, door 1.
struct Passage {
  uint64_t n = 0;
  uint32_t card = 0;
  bool granted = true;
  bool in = true;
};
Passage passage(uint32_t seed, uint64_t n);

class GateSim {
 public:
  explicit GateSim(GateSimOptions options);
  ~GateSim();
  GateSim(const GateSim&) = delete;
  GateSim& operator=(const GateSim&) = delete;

  // Binds the sockets and starts the serving thread.
  Status start();
  void stop();
  uint16_t modbus_port() const { return modbus_port_; }
  uint16_t uhppote_port() const { return uhppote_port_; }
  uint32_t modbus_log_size() const { return options_.log_size; }

  // Records `count` passages now, in every enabled gate's log (and pushes each UHPPOTE one to
  // the listener). Returns the number of the last one.
  uint64_t pass(uint64_t count);
  void set_door(bool open);
  // Clears both logs: the next entry is index 1 again (a replaced or factory-reset controller).
  void reset_logs();
  // While muted, requests are read and never answered (a controller off the network).
  void set_mute(bool muted);
  void set_rate(double per_second);
  // Every answer waits this long first (the serving thread sleeps: a slow controller).
  void set_reply_delay(int ms);
  uint64_t passages() const;
  uint64_t modbus_newest() const;
  uint64_t uhppote_newest() const;
  uint64_t requests() const;  // requests answered so far, both gates

 private:
  struct ModbusRecord {
    uint32_t index = 0, time = 0, card = 0;
    uint16_t result = 0, direction = 0;
  };
  struct Client {
    int fd = -1;
    std::vector<uint8_t> in;
  };
  void serve();
  void record_locked(uint64_t count);
  void serve_modbus(Client& c);
  std::vector<uint8_t> modbus_reply(const uint8_t* frame, std::size_t len);
  bool modbus_register(uint32_t address, uint16_t& value) const;
  void serve_uhppote();
  protocols::uhppote::ControllerStatus uhppote_status_locked() const;
  void push_locked();

  const GateSimOptions options_;
  mutable std::mutex mu_;
  std::thread thread_;
  int wake_[2] = {-1, -1};
  int modbus_fd_ = -1;
  int udp_fd_ = -1;
  uint16_t modbus_port_ = 0;
  uint16_t uhppote_port_ = 0;
  std::vector<Client> clients_;
  bool stopping_ = false;
  FILE* passages_log_ = nullptr;

  // State, under mu_.
  uint64_t passages_ = 0;
  bool door_open_ = false;
  bool muted_ = false;
  double rate_ = 0;
  int reply_delay_ms_ = 0;
  uint64_t requests_ = 0;
  uint32_t modbus_newest_ = 0;
  uint32_t count_in_ = 0, count_out_ = 0;
  std::vector<ModbusRecord> ring_;
  std::deque<protocols::uhppote::EventRecord> events_;  // oldest first
  uint32_t uhppote_next_ = 1;
  uint32_t uhppote_event_index_ = 0;  // set-event-index's bookmark
  bool has_listener_ = false;
  std::array<uint8_t, 4> listener_ip_{};
  uint16_t listener_port_ = 0;
};

}  // namespace gw::sim
