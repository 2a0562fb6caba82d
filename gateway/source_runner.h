// SourceRunner is to a push device (card reader, gate controller, camera) what DevicePoller is to
// a polled one: it starts the device's EventSource with the cursor last committed for it, stamps
// what the source heard (device id, kind, gateway time), applies privacy.card_id to credentials
// before anything is stored, and hands events to the router — with the source's cursor, so a
// gate's log position commits in the same transaction as the entry read at it. Link changes
// become status events and the device's online state; dropped input is counted by kind.
// Core thread only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "drivers/event_source.h"
#include "gateway/config.h"
#include "gateway/device_poller.h"
#include "gateway/privacy.h"
#include "gateway/router.h"

namespace gw {

class SourceRunner {
 public:
  using State = DevicePoller::State;
  using Tracer = std::function<void(const std::string& device, bool tx,
                                    std::span<const uint8_t> bytes, const std::string& note)>;
  // Sees dropped input (the gateway logs it rate-limited and counts it in metrics).
  using BadInputObserver =
      std::function<void(const std::string& device, std::string_view kind, const std::string& message)>;

  SourceRunner(config::DeviceSection device, std::shared_ptr<drivers::EventSource> source,
               Router& router, const CredentialProtector& privacy);
  ~SourceRunner();

  void set_tracer(Tracer tracer) { tracer_ = std::move(tracer); }
  void set_bad_input_observer(BadInputObserver o) { bad_input_observer_ = std::move(o); }

  void start(std::string cursor);
  void stop();

  const std::string& id() const { return device_.id; }
  const config::DeviceSection& device() const { return device_; }
  State state() const { return state_; }
  const std::string& last_error() const { return last_error_; }
  uint64_t events() const { return events_; }
  int64_t last_event_us() const { return last_event_us_; }
  const std::map<std::string, uint64_t, std::less<>>& bad_input() const { return bad_input_; }

 private:
  void on_event(drivers::SourceEvent e);
  void on_link(bool up, const std::string& error);
  void emit_status(bool online, const std::string& error);

  const config::DeviceSection device_;
  std::shared_ptr<drivers::EventSource> source_;
  Router& router_;
  const CredentialProtector& privacy_;
  Tracer tracer_;
  BadInputObserver bad_input_observer_;
  // Callbacks hold a weak reference to this flag so none acts after stop().
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  State state_ = State::kUnknown;
  std::string last_error_;
  uint64_t events_ = 0;
  int64_t last_event_us_ = 0;
  std::map<std::string, uint64_t, std::less<>> bad_input_;
};

}  // namespace gw
