#include "drivers/camera_http/alert_stream_client.h"

#include <array>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <limits>

#include "drivers/camera_http/body_decoder.h"
#include "drivers/camera_http/http_io.h"

namespace gw::drivers::camera_http {

namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kDrainLimit = 64 * 1024;  // a 401's body we read past to reuse the socket

std::string duration_text(std::chrono::milliseconds d) {
  const auto ms = d.count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms";
}

}  // namespace

AlertStreamClient::AlertStreamClient(asio::any_io_executor core, const CameraHttpSettings& settings,
                                     CameraHttpSource& source)
    : core_(core),
      settings_(settings),
      source_(source),
      target_(alert_stream_target(settings)),
      resolver_(core),
      timer_(core),
      rng_(std::random_device{}()) {}

void AlertStreamClient::start() {
  asio::co_spawn(
      core_, [self = shared_from_this()] { return self->run(); }, asio::detached);
}

void AlertStreamClient::stop() {
  stopped_ = true;
  resolver_.cancel();
  timer_.cancel();
  if (stream_) {
    boost::system::error_code ec;
    stream_->socket().close(ec);
  }
}

std::chrono::milliseconds AlertStreamClient::backoff(int failures) {
  auto d = settings_.backoff_initial;
  for (int i = 1; i < failures && d < settings_.backoff_max; ++i) d *= 2;
  d = std::min(d, settings_.backoff_max);
  std::uniform_int_distribution<int64_t> pick(d.count() / 2, std::max<int64_t>(d.count(), 1));
  return std::chrono::milliseconds(pick(rng_));
}

std::string AlertStreamClient::authorization() {
  if (settings_.username.empty()) return {};
  if (settings_.auth == CameraHttpSettings::Auth::kBasic) {
    return protocols::http_auth::basic_authorization(settings_.username, settings_.password);
  }
  if (!challenge_) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string cnonce;
  const uint64_t r = rng_();
  for (int i = 0; i < 16; ++i) cnonce += kHex[(r >> (4 * i)) & 0xF];
  auto value = protocols::http_auth::digest_authorization(
      *challenge_, {"GET", target_, settings_.username, settings_.password, ++nc_, cnonce});
  return value.is_ok() ? value.value() : std::string();
}

asio::awaitable<void> AlertStreamClient::run() {
  auto self = shared_from_this();  // alive until the loop ends
  int failures = 0;
  bool retried = false;
  while (!stopped_) {
    Outcome o = co_await session(retried ? 1 : 0);
    if (stream_) {
      boost::system::error_code ec;
      stream_->socket().close(ec);
      stream_.reset();
    }
    if (stopped_) co_return;
    // A 401 answered on a connection the camera closes: log in again on a new one, once.
    if (o.retry_now && !retried) {
      retried = true;
      continue;
    }
    retried = false;
    if (!o.kind.empty()) source_.on_bad_input(o.kind, o.error);
    source_.on_link(false, o.error);
    const bool lived = o.streamed && Clock::now() - o.stream_started >= settings_.heartbeat_timeout;
    failures = lived ? 0 : failures + 1;
    if (failures == 0) continue;
    timer_.expires_after(backoff(failures));
    boost::system::error_code ec;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<AlertStreamClient::Outcome> AlertStreamClient::session(int first_round) {
  Outcome out;
  boost::system::error_code ec;
  const std::string endpoint = settings_.host + ":" + std::to_string(settings_.port);

  // The resolver has no deadline of its own: the timer cancels it.
  timer_.expires_after(settings_.timeout);
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
    if (!e) self->resolver_.cancel();
  });
  auto results = co_await resolver_.async_resolve(settings_.host, std::to_string(settings_.port),
                                                  asio::redirect_error(asio::use_awaitable, ec));
  timer_.cancel();
  if (stopped_) co_return out;
  if (ec) {
    out.error = "cannot resolve " + settings_.host + ": " +
                (ec == asio::error::operation_aborted
                     ? "no answer within " + duration_text(settings_.timeout)
                     : ec.message());
    co_return out;
  }
  stream_.emplace(core_);
  stream_->expires_after(settings_.timeout);
  co_await stream_->async_connect(results, asio::redirect_error(asio::use_awaitable, ec));
  if (stopped_) co_return out;
  if (ec) {
    out.error =
        "cannot connect to " + endpoint + ": " +
        (ec == beast::error::timeout ? "no answer within " + duration_text(settings_.timeout)
                                     : ec.message());
    co_return out;
  }

  beast::flat_buffer buffer(kHeaderLimit + kReadChunk);
  // Two rounds at most: the second answers the 401 of the first.
  for (int round = first_round; round < 2; ++round) {
    http::request<http::empty_body> req{http::verb::get, target_, 11};
    req.set(http::field::host, endpoint);
    req.set(http::field::user_agent, "gatewayd-camera_http");
    req.set(http::field::accept, "multipart/mixed, multipart/x-mixed-replace, */*");
    req.keep_alive(true);
    if (const std::string auth = authorization(); !auth.empty()) {
      req.set(http::field::authorization, auth);
    }
    const std::string req_head = head_text(req.base());
    source_.on_trace(true, req_head, "GET alert stream");
    stream_->expires_after(settings_.timeout);
    co_await http::async_write(*stream_, req, asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_) co_return out;
    if (ec) {
      out.error = "cannot send the request to " + endpoint + ": " + ec.message();
      co_return out;
    }

    http::response_parser<http::buffer_body> parser;
    parser.header_limit(kHeaderLimit);
    // A stream has no end. (Not boost::none: Beast 1.74 compares a Content-Length with an empty
    // optional as "larger than the limit" and refuses even a 401's short body.)
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    stream_->expires_after(settings_.timeout);
    co_await http::async_read_header(*stream_, buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_) co_return out;
    if (ec) {
      out.error =
          "no answer to GET " + target_ + " from " + endpoint + ": " +
          (ec == beast::error::timeout ? "nothing within " + duration_text(settings_.timeout)
                                       : ec.message());
      if (ec != beast::error::timeout && ec != http::error::end_of_stream &&
          ec != asio::error::connection_reset && ec != asio::error::eof) {
        out.kind = "protocol";  // the camera said something that is not HTTP
      }
      co_return out;
    }
    auto& res = parser.get();
    source_.on_trace(false, head_text(res.base()), "alert stream response");

    if (res.result() == http::status::unauthorized) {
      std::optional<protocols::http_auth::Challenge> digest;
      bool basic_offered = false;
      const auto [first, last] = res.equal_range(http::field::www_authenticate);
      for (auto field = first; field != last; ++field) {
        for (auto& c : protocols::http_auth::parse_challenges(
                 std::string_view(field->value().data(), field->value().size()))) {
          if (c.scheme == "digest" && !digest) {
            digest = std::move(c);
          } else if (c.scheme == "basic") {  // not `c` after the move (clang-tidy)
            basic_offered = true;
          }
        }
      }
      out.kind = "auth";
      if (settings_.username.empty()) {
        out.error = "camera asks for a login (HTTP 401) and no username: is configured";
        co_return out;
      }
      const bool basic = settings_.auth == CameraHttpSettings::Auth::kBasic;
      if (round == 0 && !basic && digest) {
        // Check now that we can answer it, so a challenge we cannot meet is named as such.
        auto probe = protocols::http_auth::digest_authorization(
            *digest, {"GET", target_, settings_.username, settings_.password, 1, "0"});
        if (!probe.is_ok()) {
          out.error = "cannot answer the camera's digest challenge: " + probe.status().message();
          co_return out;
        }
        challenge_ = std::move(digest);
        nc_ = 0;
        // Read past the 401's body to send the answer on the same connection, when its end is
        // known; else log in on a new connection.
        std::vector<char> scratch(4096);
        std::size_t drained = 0;
        while (!parser.is_done() && !parser.need_eof() && drained <= kDrainLimit) {
          res.body().data = scratch.data();
          res.body().size = scratch.size();
          co_await http::async_read_some(*stream_, buffer, parser,
                                         asio::redirect_error(asio::use_awaitable, ec));
          if (stopped_) co_return out;
          if (ec == http::error::need_buffer) ec = {};
          if (ec) break;
          drained += scratch.size() - res.body().size;
        }
        out.kind.clear();
        if (!parser.is_done() || !res.keep_alive()) {
          out.retry_now = true;
          out.error = "camera closed the connection after its login challenge";
          co_return out;
        }
        continue;
      }
      if (basic) {
        out.error = "camera refused the basic login of user '" + settings_.username +
                    "' (HTTP 401)" + (digest ? "; it asks for digest: set auth: digest" : "");
      } else if (!digest) {
        out.error = std::string("camera asks for a login it does not offer as digest (HTTP 401)") +
                    (basic_offered ? "; it offers basic: set auth: basic" : "");
      } else {
        out.error = "camera refused the digest login of user '" + settings_.username +
                    "' (HTTP 401); check username: and password_file:";
      }
      co_return out;
    }
    if (res.result() != http::status::ok) {
      out.error = "camera answered HTTP " + std::to_string(res.result_int()) + " " +
                  std::string(res.reason()) + " to GET " + target_;
      out.kind = "protocol";
      co_return out;
    }
    const std::string content_type(res[http::field::content_type]);
    auto decoder = BodyDecoder::make(content_type);
    if (!decoder.is_ok() || !decoder->multipart()) {
      out.error = "camera answered GET " + target_ + " with Content-Type '" +
                  content_type.substr(0, 80) + "', not a multipart alert stream";
      out.kind = "protocol";
      co_return out;
    }

    out.streamed = true;
    out.stream_started = Clock::now();
    source_.on_stream_connected();
    source_.on_link(true, "");
    std::vector<char> chunk(kReadChunk);  // on the heap: keeps the coroutine frame small
    std::vector<Decoded> decoded;
    while (true) {
      res.body().data = chunk.data();
      res.body().size = chunk.size();
      // Any byte counts as life: the deadline restarts with every read.
      stream_->expires_after(settings_.heartbeat_timeout);
      co_await http::async_read_some(*stream_, buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
      if (stopped_) co_return out;
      if (ec == http::error::need_buffer) ec = {};
      const std::size_t n = chunk.size() - res.body().size;
      if (n > 0) {
        decoder.value().feed(std::string_view(chunk.data(), n), decoded);
        for (const Decoded& d : decoded) source_.on_decoded(d);
        decoded.clear();
      }
      if (ec == beast::error::timeout) {
        out.error = "alert stream silent for " + duration_text(settings_.heartbeat_timeout) +
                    " (heartbeat timeout)";
        co_return out;
      }
      if (ec) {
        out.error = "alert stream lost: " + ec.message();
        co_return out;
      }
      if (parser.is_done()) {
        out.error = "camera ended the alert stream";
        co_return out;
      }
    }
  }
  co_return out;  // not reached: the last round always returns
}

}  // namespace gw::drivers::camera_http
