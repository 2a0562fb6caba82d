// AlertStreamClient reads one camera's alert stream for as long as it runs: connect, GET the
// stream target, answer the camera's 401 with digest (or send basic up front), then read the
// multipart body forever, handing each part to its CameraHttpSource. A connection ends when the
// camera closes it, on any error, and when nothing at all arrived for heartbeat_timeout (a camera
// that stopped writing but keeps the socket open); then the client reconnects: at once when the
// stream had lived past one heartbeat timeout, else after a jittered backoff that doubles up to
// backoff_max. Core thread only.
#pragma once

#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "drivers/asio.h"
#include "drivers/camera_http/camera_http_source.h"
#include "protocols/http_auth.h"

namespace gw::drivers::camera_http {

class AlertStreamClient : public std::enable_shared_from_this<AlertStreamClient> {
 public:
  // `source` outlives every callback: stop() is called before it goes away.
  AlertStreamClient(asio::any_io_executor core, const CameraHttpSettings& settings,
                    CameraHttpSource& source);

  void start();
  void stop();

 private:
  struct Outcome {
    bool streamed = false;  // a 200 stream was read
    std::chrono::steady_clock::time_point stream_started{};
    bool retry_now = false;  // a 401 with a fresh challenge on a closed connection
    std::string error;       // why the connection ended
    std::string kind;        // bad_input kind to count it under, if any ("auth", "protocol")
  };

  asio::awaitable<void> run();
  // One connection. first_round 1: the login challenge is already known, a 401 is final.
  asio::awaitable<Outcome> session(int first_round);
  std::string authorization();
  std::chrono::milliseconds backoff(int failures);

  asio::any_io_executor core_;
  const CameraHttpSettings settings_;
  CameraHttpSource& source_;
  const std::string target_;
  std::optional<boost::beast::tcp_stream> stream_;
  asio::ip::tcp::resolver resolver_;
  asio::steady_timer timer_;
  std::optional<protocols::http_auth::Challenge> challenge_;  // last digest challenge
  uint32_t nc_ = 0;                                           // uses of its nonce so far
  std::mt19937_64 rng_;
  bool stopped_ = false;
};

}  // namespace gw::drivers::camera_http
