// CameraHttpSource is the camera_http driver: it turns a camera's alarm notifications into
// `camera` events (type, active, channel, detail), one per active/inactive transition. It runs in
// one of two modes:
//   push    an HTTP listener on `listen:` that the camera POSTs its alarms to (Hikvision's "HTTP
//           listening host", or anything that posts the accepted bodies); one listener per
//           device, so the address a camera posts to says which device it is.
//   stream  a client that GETs the camera's alert stream (Hikvision ISAPI alertStream, Dahua
//           eventManager attach), reads it forever, logs in with HTTP digest (or basic), and
//           reconnects with backoff; a stream silent for longer than its heartbeat timeout is
//           taken for dead and reconnected.
// Repeated "still active" notifications of one (type, channel) are one event; heartbeats are
// none; no picture or video is stored or forwarded. Link up/down, refused input and raw traffic
// go to the SourceCallbacks. All I/O is asynchronous on the core executor, and every callback
// runs there; stop() is called on the core thread too.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "drivers/asio.h"
#include "drivers/event_source.h"
#include "protocols/camera_alert.h"

namespace gw::drivers {

struct CameraHttpSettings {
  enum class Mode { kPush, kStream };
  enum class Vendor { kHikvision, kDahua };
  enum class Auth { kDigest, kBasic };

  std::string device_id;
  Mode mode = Mode::kStream;
  Vendor vendor = Vendor::kHikvision;

  // stream: the camera's HTTP endpoint and request target (empty: the vendor's alert stream).
  std::string host;
  uint16_t port = 80;
  std::string path;
  std::string username;  // empty: no credentials
  std::string password;
  Auth auth = Auth::kDigest;
  // stream: how often the camera sends a heartbeat (Dahua is asked for it), and how long the
  // stream may stay silent before it counts as dead. push: heartbeat_timeout > 0 makes the
  // camera offline after that long without a post (0: the listener's state is the link state).
  std::chrono::milliseconds heartbeat{std::chrono::seconds(10)};
  std::chrono::milliseconds heartbeat_timeout{std::chrono::seconds(30)};

  // push: where to listen (port 0 picks one: tests), who may post, and bounds.
  std::string listen_host = "0.0.0.0";
  uint16_t listen_port = 0;
  std::vector<std::string> allow_from;  // IP addresses; empty: anyone
  std::size_t max_body = 4u << 20;      // a whole request, pictures included
  int max_connections = 8;

  // Connect, send and read-headers timeout; in push mode also a request's whole read time and
  // the keep-alive idle time.
  std::chrono::milliseconds timeout{std::chrono::seconds(10)};
  // An active state with no new post for this long ends by itself (0: never).
  std::chrono::milliseconds inactive_after{std::chrono::seconds(5)};
  // stream: reconnect backoff after failures, full jitter in [d/2, d], d doubling from initial
  // to max. A stream that had lived longer than heartbeat_timeout is reconnected at once.
  std::chrono::milliseconds backoff_initial{std::chrono::milliseconds(500)};
  std::chrono::milliseconds backoff_max{std::chrono::seconds(30)};
};

// The request target a stream-mode camera is asked for.
std::string alert_stream_target(const CameraHttpSettings& settings);

namespace camera_http {
class AlertStreamClient;
class PushServer;
struct Decoded;
}  // namespace camera_http

class CameraHttpSource : public EventSource, public std::enable_shared_from_this<CameraHttpSource> {
 public:
  struct Stats {
    uint64_t notifications = 0;  // alerts decoded, heartbeats included
    uint64_t transitions = 0;    // events emitted
    uint64_t repeats = 0;        // still-active (or still-inactive) posts not re-sent
    uint64_t heartbeats = 0;
    uint64_t media_parts = 0;  // pictures skipped
    uint64_t refused = 0;      // bodies or parts refused
    uint64_t connects = 0;     // stream: connections that got a 200 stream
  };

  CameraHttpSource(asio::any_io_executor core, CameraHttpSettings settings);
  ~CameraHttpSource() override;

  void start(SourceCallbacks callbacks, std::string cursor) override;
  void stop() override;

  // push mode: the port the listener is bound to (0 until it is).
  uint16_t listening_port() const;
  const Stats& stats() const { return stats_; }
  const CameraHttpSettings& settings() const { return settings_; }

  // Called by the client and the server (core thread); nothing happens after stop().
  void on_link(bool up, const std::string& why);
  void on_decoded(const camera_http::Decoded& decoded);
  void on_bad_input(std::string_view kind, const std::string& message);
  void on_trace(bool tx, std::string_view bytes, const std::string& note);
  void on_stream_connected() { ++stats_.connects; }

 private:
  void arm_expiry();
  void emit(const protocols::camera::Transition& t);

  asio::any_io_executor core_;
  CameraHttpSettings settings_;
  SourceCallbacks callbacks_;
  protocols::camera::AlertTracker tracker_;
  asio::steady_timer expiry_;
  std::shared_ptr<camera_http::AlertStreamClient> client_;
  std::shared_ptr<camera_http::PushServer> server_;
  std::optional<bool> link_up_;
  bool started_ = false;
  bool stopped_ = false;
  Stats stats_;
};

}  // namespace gw::drivers
