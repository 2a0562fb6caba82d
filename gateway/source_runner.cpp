#include "gateway/source_runner.h"

#include <chrono>

namespace gw {

namespace v1 = campus::gateway::v1;

namespace {
int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

SourceRunner::SourceRunner(config::DeviceSection device,
                           std::shared_ptr<drivers::EventSource> source, Router& router,
                           const CredentialProtector& privacy)
    : device_(std::move(device)), source_(std::move(source)), router_(router), privacy_(privacy) {}

SourceRunner::~SourceRunner() { stop(); }

void SourceRunner::start(std::string cursor) {
  std::weak_ptr<bool> alive = alive_;
  drivers::SourceCallbacks cb;
  cb.event = [this, alive](drivers::SourceEvent e) {
    if (alive.lock()) on_event(std::move(e));
  };
  cb.link = [this, alive](bool up, const std::string& error) {
    if (alive.lock()) on_link(up, error);
  };
  cb.bad_input = [this, alive](std::string_view kind, const std::string& message) {
    if (!alive.lock()) return;
    auto it = bad_input_.find(kind);
    if (it == bad_input_.end()) it = bad_input_.emplace(std::string(kind), 0).first;
    ++it->second;
    if (bad_input_observer_) bad_input_observer_(device_.id, kind, message);
  };
  cb.trace = [this, alive](bool tx, std::span<const uint8_t> bytes, const std::string& note) {
    if (alive.lock() && tracer_) tracer_(device_.id, tx, bytes, note);
  };
  source_->start(std::move(cb), std::move(cursor));
}

void SourceRunner::stop() {
  if (!alive_) return;
  alive_.reset();
  source_->stop();
}

void SourceRunner::on_event(drivers::SourceEvent e) {
  v1::Event& event = e.event;
  event.set_device_id(device_.id);
  event.set_kind(device_.kind);
  event.set_gateway_time_us(now_us());
  if (event.has_access()) {
    v1::AccessBody* a = event.mutable_access();
    a->set_credential(privacy_.protect(a->credential()));
    if (a->door().empty()) a->set_door(device_.door);
    if (a->direction() == v1::DIRECTION_UNSPECIFIED) {
      a->set_direction(device_.direction == "in"    ? v1::IN
                       : device_.direction == "out" ? v1::OUT
                                                    : v1::UNKNOWN);
    }
    if (a->result() == v1::ACCESS_RESULT_UNSPECIFIED) a->set_result(v1::RESULT_UNKNOWN);
  }
  ++events_;
  last_event_us_ = event.gateway_time_us();
  // Something heard from the device is proof of life, even for a source that reports no link.
  if (state_ != State::kOnline) on_link(true, {});
  router_.submit(std::move(event), std::move(e.cursor));
}

void SourceRunner::on_link(bool up, const std::string& error) {
  const State next = up ? State::kOnline : State::kOffline;
  last_error_ = up ? std::string() : error;
  if (next == state_) return;
  // The first "down" of a device never seen up is still news: ops must see a dead reader.
  state_ = next;
  emit_status(up, up ? std::string() : error);
}

void SourceRunner::emit_status(bool online, const std::string& error) {
  v1::Event event;
  event.set_device_id(device_.id);
  event.set_kind(device_.kind);
  event.set_gateway_time_us(now_us());
  event.mutable_status()->set_online(online);
  event.mutable_status()->set_error(error);
  router_.submit(std::move(event));
}

}  // namespace gw
