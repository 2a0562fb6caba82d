#include "drivers/camera_http/camera_http_source.h"

#include "drivers/camera_http/alert_stream_client.h"
#include "drivers/camera_http/body_decoder.h"
#include "drivers/camera_http/push_server.h"

namespace gw::drivers {

namespace camera = protocols::camera;
using camera::AlertTracker;

std::string alert_stream_target(const CameraHttpSettings& s) {
  const auto hb = std::max<int64_t>(1, (s.heartbeat.count() + 999) / 1000);
  if (s.vendor == CameraHttpSettings::Vendor::kHikvision) {
    return s.path.empty() ? "/ISAPI/Event/notification/alertStream" : s.path;
  }
  if (s.path.empty()) {
    return "/cgi-bin/eventManager.cgi?action=attach&codes=[All]&heartbeat=" + std::to_string(hb);
  }
  if (s.path.find("heartbeat=") != std::string::npos) return s.path;
  // Without heartbeat= a Dahua camera sends none, and a dead stream could not be told from a
  // quiet one.
  return s.path + (s.path.find('?') == std::string::npos ? "?" : "&") +
         "heartbeat=" + std::to_string(hb);
}

CameraHttpSource::CameraHttpSource(asio::any_io_executor core, CameraHttpSettings settings)
    : core_(core),
      settings_(std::move(settings)),
      tracker_(settings_.inactive_after),
      expiry_(core) {}

CameraHttpSource::~CameraHttpSource() { stop(); }

void CameraHttpSource::start(SourceCallbacks callbacks, std::string cursor) {
  (void)cursor;  // a camera has no log to resume from: what happened while down is gone
  if (started_ || stopped_) return;
  started_ = true;
  callbacks_ = std::move(callbacks);
  if (settings_.mode == CameraHttpSettings::Mode::kPush) {
    server_ = std::make_shared<camera_http::PushServer>(core_, settings_, *this);
    server_->start();
  } else {
    client_ = std::make_shared<camera_http::AlertStreamClient>(core_, settings_, *this);
    client_->start();
  }
}

void CameraHttpSource::stop() {
  if (stopped_) return;
  stopped_ = true;
  expiry_.cancel();
  if (server_) server_->stop();
  if (client_) client_->stop();
}

uint16_t CameraHttpSource::listening_port() const { return server_ ? server_->port() : 0; }

void CameraHttpSource::on_link(bool up, const std::string& why) {
  if (stopped_) return;
  // Only changes are news: a camera that stays unreachable is reported once, not per retry.
  if (link_up_ == up) return;
  link_up_ = up;
  if (callbacks_.link) callbacks_.link(up, why);
}

void CameraHttpSource::on_bad_input(std::string_view kind, const std::string& message) {
  if (stopped_) return;
  if (callbacks_.bad_input) callbacks_.bad_input(kind, message);
}

void CameraHttpSource::on_trace(bool tx, std::string_view bytes, const std::string& note) {
  if (stopped_ || !callbacks_.trace) return;
  callbacks_.trace(
      tx, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
      note);
}

void CameraHttpSource::emit(const camera::Transition& t) {
  ++stats_.transitions;
  if (!callbacks_.event) return;
  SourceEvent ev;
  auto* body = ev.event.mutable_camera();
  body->set_type(t.type);
  body->set_active(t.active);
  body->set_channel(t.channel);
  body->set_detail(t.detail);
  if (t.device_time_us > 0) ev.event.set_device_time_us(t.device_time_us);
  callbacks_.event(std::move(ev));
}

void CameraHttpSource::on_decoded(const camera_http::Decoded& d) {
  if (stopped_) return;
  std::string note = d.note;
  if (d.media) ++stats_.media_parts;
  if (!d.error.empty()) {
    ++stats_.refused;
    note += ": refused: " + d.error;
    on_bad_input(d.error_kind, d.error);
  }
  const auto now = AlertTracker::Clock::now();
  std::vector<camera::Transition> transitions;
  for (const camera::Alert& a : d.alerts) {
    ++stats_.notifications;
    camera::Transition t;
    const auto verdict = tracker_.on_alert(a, now, t);
    std::string what = a.vendor_type;
    if (a.channel) what += " ch" + std::to_string(a.channel);
    switch (verdict) {
      case AlertTracker::Verdict::kHeartbeat:
        ++stats_.heartbeats;
        note += "; " + what + ": heartbeat";
        break;
      case AlertTracker::Verdict::kRepeat:
        ++stats_.repeats;
        note +=
            "; " + what +
            std::string(a.state == camera::State::kActive ? " still active" : " still inactive") +
            ": not re-sent";
        break;
      case AlertTracker::Verdict::kTransition:
        note += "; " + what + " -> " + t.type + (t.active ? " active" : " inactive");
        transitions.push_back(std::move(t));
        break;
    }
  }
  // Trace first, so `gatewayctl trace` shows the bytes before the events they caused.
  on_trace(false, d.raw, note);
  for (const camera::Transition& t : transitions) emit(t);
  arm_expiry();
}

void CameraHttpSource::arm_expiry() {
  const auto next = tracker_.next_expiry();
  if (!next) {
    expiry_.cancel();
    return;
  }
  expiry_.expires_at(*next);
  expiry_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->stopped_) return;
    for (const camera::Transition& t : self->tracker_.expire(AlertTracker::Clock::now())) {
      self->on_trace(false, {}, t.detail);
      self->emit(t);
    }
    self->arm_expiry();
  });
}

}  // namespace gw::drivers
