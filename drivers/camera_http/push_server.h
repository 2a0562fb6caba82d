// PushServer is the listener a camera POSTs (or PUTs) its alarms to. Each request body — an
// alert document, or a multipart body with the alert and a picture — is decoded as it arrives
// (pictures are dropped as they stream past, never held) and answered 200 when it carried at least
// one alert, 400 with the reason when it did not. Bounds: max_body per request (413 beyond),
// 16 KiB of headers, max_connections at once (503 beyond), `timeout` to read a whole request and
// as the keep-alive idle time; addresses outside allow_from get 403. A listener that cannot bind
// retries with backoff. Core thread only.
#pragma once

#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "drivers/asio.h"
#include "drivers/camera_http/camera_http_source.h"

namespace gw::drivers::camera_http {

class PushServer : public std::enable_shared_from_this<PushServer> {
 public:
  // `source` outlives every callback: stop() is called before it goes away.
  PushServer(asio::any_io_executor core, const CameraHttpSettings& settings,
             CameraHttpSource& source);

  void start();
  void stop();
  uint16_t port() const { return port_; }

 private:
  asio::awaitable<void> listen();
  asio::awaitable<void> session(asio::ip::tcp::socket socket);
  asio::awaitable<void> refuse(asio::ip::tcp::socket socket, unsigned status, std::string why);
  bool allowed(const asio::ip::address& peer) const;
  void heard_from_camera();
  void arm_silence();

  asio::any_io_executor core_;
  const CameraHttpSettings settings_;
  CameraHttpSource& source_;
  std::vector<asio::ip::address> allowed_;
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer retry_;
  asio::steady_timer silence_;  // heartbeat_timeout > 0: no post for that long = offline
  std::map<uint64_t, std::weak_ptr<boost::beast::tcp_stream>> open_;  // closed by stop()
  uint64_t next_session_ = 0;
  int sessions_ = 0;
  int refusing_ = 0;
  uint16_t port_ = 0;
  bool stopped_ = false;
};

}  // namespace gw::drivers::camera_http
