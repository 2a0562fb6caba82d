#include "drivers/camera_http/push_server.h"

#include <array>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "drivers/camera_http/body_decoder.h"
#include "drivers/camera_http/http_io.h"

namespace gw::drivers::camera_http {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr int kMaxRefusing = 16;  // refusals being written at once; more are just closed
constexpr auto kRefuseTimeout = std::chrono::seconds(1);
constexpr auto kRebindMin = std::chrono::seconds(1);
constexpr auto kRebindMax = std::chrono::seconds(30);
constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr std::size_t kLingerBytes = 1u << 20;

std::string size_text(uint64_t n) {
  if (n % (1u << 20) == 0) return std::to_string(n >> 20) + "MiB";
  if (n % 1024 == 0) return std::to_string(n >> 10) + "KiB";
  return std::to_string(n) + " bytes";
}

std::string duration_text(std::chrono::milliseconds d) {
  const auto ms = d.count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms";
}

asio::ip::address plain(asio::ip::address a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  }
  return a;
}

http::response<http::string_body> text_response(unsigned status, unsigned version, std::string body,
                                                bool keep_alive) {
  http::response<http::string_body> res{static_cast<http::status>(status), version};
  res.set(http::field::server, "gatewayd-camera_http");
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.keep_alive(keep_alive);
  res.body() = std::move(body) + "\n";
  res.prepare_payload();
  return res;
}

}  // namespace

PushServer::PushServer(asio::any_io_executor core, const CameraHttpSettings& settings,
                       CameraHttpSource& source)
    : core_(core),
      settings_(settings),
      source_(source),
      acceptor_(core),
      retry_(core),
      silence_(core) {
  for (const std::string& a : settings_.allow_from) {
    boost::system::error_code ec;
    const auto addr = asio::ip::make_address(a, ec);
    if (!ec) allowed_.push_back(plain(addr));  // the config loader has checked them
  }
}

void PushServer::start() {
  asio::co_spawn(
      core_, [self = shared_from_this()] { return self->listen(); }, asio::detached);
}

void PushServer::stop() {
  stopped_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  retry_.cancel();
  silence_.cancel();
  for (auto& [id, weak] : open_) {
    if (auto s = weak.lock()) s->socket().close(ec);
  }
  open_.clear();
}

bool PushServer::allowed(const asio::ip::address& peer) const {
  if (allowed_.empty()) return true;
  const auto p = plain(peer);
  return std::find(allowed_.begin(), allowed_.end(), p) != allowed_.end();
}

void PushServer::heard_from_camera() {
  if (settings_.heartbeat_timeout.count() <= 0) return;
  source_.on_link(true, "");
  arm_silence();
}

void PushServer::arm_silence() {
  silence_.expires_after(settings_.heartbeat_timeout);
  silence_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->stopped_) return;
    self->source_.on_link(false, "no notification from the camera for " +
                                     duration_text(self->settings_.heartbeat_timeout));
  });
}

asio::awaitable<void> PushServer::listen() {
  auto self = shared_from_this();
  boost::system::error_code ec;
  const std::string where = settings_.listen_host + ":" + std::to_string(settings_.listen_port);
  auto rebind = std::chrono::duration_cast<std::chrono::milliseconds>(kRebindMin);
  while (!stopped_) {
    const auto address = asio::ip::make_address(settings_.listen_host, ec);
    if (!ec) {
      const tcp::endpoint endpoint(address, settings_.listen_port);
      acceptor_.open(endpoint.protocol(), ec);
      if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
      if (!ec) acceptor_.bind(endpoint, ec);
      if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      source_.on_link(false, "cannot listen on " + where + ": " + ec.message());
      retry_.expires_after(rebind);
      co_await retry_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      rebind =
          std::min(rebind * 2, std::chrono::duration_cast<std::chrono::milliseconds>(kRebindMax));
      continue;
    }
    port_ = acceptor_.local_endpoint(ec).port();
    // Without a heartbeat the camera cannot be watched; being ready to hear it is the link.
    if (settings_.heartbeat_timeout.count() <= 0) {
      source_.on_link(true, "");
    } else {
      arm_silence();
    }
    while (!stopped_) {
      tcp::socket socket =
          co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (stopped_) co_return;
      if (ec) {
        // Out of descriptors and the like: pause instead of spinning.
        retry_.expires_after(std::chrono::milliseconds(100));
        co_await retry_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      const auto peer = socket.remote_endpoint(ec);
      if (ec) continue;
      if (!allowed(peer.address())) {
        const std::string who = plain(peer.address()).to_string();
        source_.on_bad_input("auth", "push from " + who + " refused: not in allow_from");
        asio::co_spawn(core_, refuse(std::move(socket), 403, who + " may not post to this device"),
                       asio::detached);
        continue;
      }
      if (sessions_ >= settings_.max_connections) {
        asio::co_spawn(core_,
                       refuse(std::move(socket), 503,
                              "too many connections (" + std::to_string(sessions_) + ")"),
                       asio::detached);
        continue;
      }
      asio::co_spawn(core_, session(std::move(socket)), asio::detached);
    }
  }
}

// After an error answer the request may still be arriving (a body we refused unread). Closing
// with unread input makes the kernel reset the connection, and the reset can destroy the answer
// before the client reads it; so stop sending, then read and drop input for a short while.
static asio::awaitable<void> linger_close(beast::tcp_stream& stream) {
  boost::system::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  std::vector<char> sink(kReadChunk);
  std::size_t dropped = 0;
  stream.expires_after(kLingerTime);
  while (!ec && dropped < kLingerBytes) {
    dropped += co_await stream.async_read_some(asio::buffer(sink),
                                               asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> PushServer::refuse(tcp::socket socket, unsigned status, std::string why) {
  auto self = shared_from_this();
  if (refusing_ >= kMaxRefusing) co_return;  // the socket closes as it goes out of scope
  ++refusing_;
  beast::tcp_stream stream(std::move(socket));
  auto res = text_response(status, 11, std::move(why), false);
  stream.expires_after(kRefuseTimeout);
  boost::system::error_code ec;
  co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
  if (!ec) co_await linger_close(stream);
  --refusing_;
}

asio::awaitable<void> PushServer::session(tcp::socket socket) {
  auto self = shared_from_this();
  boost::system::error_code ec;
  const std::string peer = plain(socket.remote_endpoint(ec).address()).to_string();
  auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
  const uint64_t id = next_session_++;
  open_[id] = stream;
  ++sessions_;
  struct Leave {
    PushServer* server;
    uint64_t id;
    ~Leave() {
      server->open_.erase(id);
      --server->sessions_;
    }
  } leave{this, id};

  beast::flat_buffer buffer(kHeaderLimit + kReadChunk);
  std::vector<char> chunk(kReadChunk);  // on the heap: keeps the coroutine frame small
  while (!stopped_) {
    http::request_parser<http::buffer_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(settings_.max_body);
    stream->expires_after(settings_.timeout);
    co_await http::async_read_header(*stream, buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_) co_return;
    if (ec) {
      const bool idle =
          buffer.size() == 0 && (ec == beast::error::timeout || ec == http::error::end_of_stream ||
                                 ec == asio::error::eof || ec == asio::error::connection_reset);
      if (idle) co_return;  // a keep-alive connection the camera is done with
      unsigned status = 400;
      std::string why = "not a valid HTTP request: " + ec.message();
      std::string kind = "protocol";
      if (ec == http::error::header_limit) {
        status = 431;
        why = "request header larger than " + size_text(kHeaderLimit);
      } else if (ec == http::error::body_limit) {
        status = 413;
        why = "request body larger than max_body (" + size_text(settings_.max_body) + ")";
        kind = "overflow";
      } else if (ec == beast::error::timeout) {
        why = "incomplete request header after " + duration_text(settings_.timeout);
      }
      source_.on_bad_input(kind, "push from " + peer + ": " + why);
      if (ec != beast::error::timeout && ec != asio::error::connection_reset) {
        auto res = text_response(status, 11, why, false);
        source_.on_trace(true, head_text(res.base()) + res.body(), "answer to " + peer);
        stream->expires_after(settings_.timeout);
        co_await http::async_write(*stream, res, asio::redirect_error(asio::use_awaitable, ec));
        if (!ec && !stopped_) co_await linger_close(*stream);
      }
      co_return;
    }
    auto& req = parser.get();
    source_.on_trace(false, head_text(req.base()), "push from " + peer);

    // Everything that can be refused without reading the body is, and the connection closes
    // (the body would otherwise be taken for the next request).
    std::optional<std::pair<unsigned, std::string>> early;
    if (req.method() != http::verb::post && req.method() != http::verb::put) {
      early = {405, "method " + std::string(req.method_string()) + " not allowed; POST alarms"};
    } else if (!settings_.path.empty()) {
      const std::string_view target(req.target().data(), req.target().size());
      if (target.substr(0, target.find('?')) != settings_.path) {
        early = {404, "no alarm receiver at " + std::string(target.substr(0, 200)) + "; post to " +
                          settings_.path};
      }
    }
    const std::string content_type(req[http::field::content_type]);
    auto decoder = BodyDecoder::make(content_type);
    if (!early && !decoder.is_ok()) early = {400, decoder.status().message()};
    if (early) {
      source_.on_bad_input("protocol", "push from " + peer + ": " + early->second);
      auto res = text_response(early->first, req.version(), early->second, false);
      source_.on_trace(true, head_text(res.base()) + res.body(), "answer to " + peer);
      stream->expires_after(settings_.timeout);
      co_await http::async_write(*stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (!ec && !stopped_) co_await linger_close(*stream);
      co_return;
    }
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      co_await asio::async_write(stream->socket(), asio::buffer(kContinue),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (stopped_ || ec) co_return;
    }

    // The whole body must arrive within `timeout`.
    std::vector<Decoded> decoded;
    while (!parser.is_done()) {
      req.body().data = chunk.data();
      req.body().size = chunk.size();
      co_await http::async_read_some(*stream, buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
      if (stopped_) co_return;
      if (ec == http::error::need_buffer) ec = {};
      const std::size_t n = chunk.size() - req.body().size;
      if (n > 0) decoder.value().feed(std::string_view(chunk.data(), n), decoded);
      if (ec) break;
    }
    if (ec) {
      std::string why = "request body incomplete: " + ec.message();
      std::string kind = "protocol";
      if (ec == http::error::body_limit) {
        why = "request body larger than max_body (" + size_text(settings_.max_body) + ")";
        kind = "overflow";
      } else if (ec == beast::error::timeout) {
        why = "request body incomplete after " + duration_text(settings_.timeout);
      }
      source_.on_bad_input(kind, "push from " + peer + ": " + why);
      if (ec == http::error::body_limit) {
        auto res = text_response(413, req.version(), why, false);
        source_.on_trace(true, head_text(res.base()) + res.body(), "answer to " + peer);
        stream->expires_after(settings_.timeout);
        co_await http::async_write(*stream, res, asio::redirect_error(asio::use_awaitable, ec));
        if (!ec && !stopped_) co_await linger_close(*stream);
      }
      co_return;
    }
    decoder.value().finish(decoded);

    std::size_t alerts = 0, media = 0;
    std::string first_error;
    for (const Decoded& d : decoded) {
      alerts += d.alerts.size();
      media += d.media ? 1 : 0;
      if (first_error.empty() && !d.error.empty()) first_error = d.error;
    }
    for (const Decoded& d : decoded) source_.on_decoded(d);
    if (alerts > 0) heard_from_camera();

    unsigned status = 200;
    std::string answer = "OK: " + std::to_string(alerts) + (alerts == 1 ? " alert" : " alerts");
    if (alerts == 0) {
      status = 400;
      answer = !first_error.empty() ? first_error
               : media > 0
                   ? "no alert in the body, only " + std::to_string(media) + " picture part(s)"
                   : "no alert in the body";
    } else if (!first_error.empty()) {
      answer += "; ignored: " + first_error;
    }
    auto res = text_response(status, req.version(), answer, req.keep_alive());
    source_.on_trace(true, head_text(res.base()) + res.body(), "answer to " + peer);
    stream->expires_after(settings_.timeout);
    co_await http::async_write(*stream, res, asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_ || ec || !res.keep_alive()) co_return;
  }
}

}  // namespace gw::drivers::camera_http
