#include "gateway/metrics_server.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <unordered_set>
#include <vector>

#include "gateway/log.h"

namespace gw::metrics {

namespace {

using asio::ip::tcp;
using boost::system::error_code;

// ---- Parser helpers (RFC 9110 §5.6.2 token, RFC 9112 §5 field syntax) ----

bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

bool is_tchar(unsigned char c) {
  if (is_alpha(c) || is_digit(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool is_vchar(unsigned char c) { return c >= 0x21 && c <= 0x7E; }

// Field values: visible ASCII, space, tab and obs-text; no other control character.
bool is_field_char(unsigned char c) { return c == '\t' || c == ' ' || is_vchar(c) || c >= 0x80; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

std::string_view trim_ows(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

}  // namespace

RequestHead parse_request_head(std::string_view bytes, std::size_t max_head_bytes) {
  RequestHead h;
  // Only the first max_head_bytes can belong to the head; running out of them while more bytes
  // exist means the head is too long, running out of bytes means wait for more.
  const std::string_view s = bytes.substr(0, max_head_bytes);
  const bool more_beyond_limit = bytes.size() > max_head_bytes;
  const std::size_t n = s.size();
  bool in_request_line = true;

  auto bad = [&h](int status, std::string_view reason) {
    h.state = ParseState::kBad;
    h.status = status;
    h.reason = reason;
    h.method.clear();
    h.target.clear();
    return h;
  };
  auto need_more = [&]() {
    if (more_beyond_limit) {
      return in_request_line ? bad(414, "request line longer than 8 KiB")
                             : bad(431, "request head longer than 8 KiB");
    }
    h.state = ParseState::kNeedMore;
    return h;
  };

  std::size_t i = 0;
  auto at = [&s](std::size_t k) { return static_cast<unsigned char>(s[k]); };

  // RFC 9112 §2.2: a server SHOULD ignore empty lines received before the request line.
  while (i < n && (at(i) == '\r' || at(i) == '\n')) {
    if (at(i) == '\r') {
      if (i + 1 == n) return need_more();
      if (at(i + 1) != '\n') return bad(400, "bare CR in the request");
      ++i;
    }
    ++i;
  }

  // request-line = method SP request-target SP HTTP-version CRLF
  const std::size_t method_start = i;
  while (i < n && is_tchar(at(i))) ++i;
  if (i == n) return need_more();
  if (at(i) != ' ' || i == method_start) return bad(400, "malformed method in the request line");
  const std::size_t method_end = i++;

  const std::size_t target_start = i;
  while (i < n && is_vchar(at(i))) ++i;
  if (i == n) return need_more();
  if (at(i) != ' ' || i == target_start) return bad(400, "malformed target in the request line");
  const std::size_t target_end = i++;

  constexpr std::string_view kProtocol = "HTTP/";
  for (char expected : kProtocol) {
    if (i == n) return need_more();
    if (s[i] != expected) return bad(400, "malformed HTTP version in the request line");
    ++i;
  }
  int version[2] = {0, 0};
  for (int part = 0; part < 2; ++part) {
    if (i == n) return need_more();
    if (!is_digit(at(i))) return bad(400, "malformed HTTP version in the request line");
    version[part] = at(i) - '0';
    ++i;
    if (part == 0) {
      if (i == n) return need_more();
      if (at(i) != '.') return bad(400, "malformed HTTP version in the request line");
      ++i;
    }
  }
  if (i == n) return need_more();
  if (at(i) == '\r') {
    if (++i == n) return need_more();
    if (at(i) != '\n') return bad(400, "bare CR in the request line");
  } else if (at(i) != '\n') {
    return bad(400, "malformed HTTP version in the request line");
  }
  ++i;
  if (version[0] != 1) return bad(505, "only HTTP/1.x is served");
  in_request_line = false;

  // field-line = field-name ":" OWS field-value OWS, up to the empty line.
  int hosts = 0;
  for (;;) {
    if (i == n) return need_more();
    if (at(i) == '\r') {
      if (i + 1 == n) return need_more();
      if (at(i + 1) != '\n') return bad(400, "bare CR in the request head");
      i += 2;
      break;
    }
    if (at(i) == '\n') {
      ++i;
      break;
    }
    // RFC 9112 §5.2: a server may reject obs-fold with 400; nothing we serve needs it.
    if (at(i) == ' ' || at(i) == '\t') return bad(400, "folded header line (obs-fold)");

    const std::size_t name_start = i;
    while (i < n && is_tchar(at(i))) ++i;
    if (i == n) return need_more();
    if (at(i) != ':') {
      if (at(i) == ' ' || at(i) == '\t') {
        // Whitespace before the colon is a smuggling vector (RFC 9112 §5.1); either way bad.
        const std::size_t rest = s.find_first_of(":\n", i);
        if (rest != std::string_view::npos && s[rest] == ':') {
          return bad(400, "whitespace before ':' in a header line");
        }
        return bad(400, "header line without ':'");
      }
      if (at(i) == '\r' || at(i) == '\n') return bad(400, "header line without ':'");
      return bad(400, "malformed header name");
    }
    if (i == name_start) return bad(400, "empty header name");
    const std::string_view name = s.substr(name_start, i - name_start);
    ++i;

    const std::size_t value_start = i;
    while (i < n && is_field_char(at(i))) ++i;
    if (i == n) return need_more();
    const std::string_view value = trim_ows(s.substr(value_start, i - value_start));
    if (at(i) == '\r') {
      if (i + 1 == n) return need_more();
      if (at(i + 1) != '\n') return bad(400, "bare CR in a header value");
      ++i;
    } else if (at(i) != '\n') {
      return bad(400, "control character in a header value");
    }
    ++i;

    if (iequals(name, "content-length")) {
      uint64_t length = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
      if (value.empty() || ec != std::errc() || end != value.data() + value.size() ||
          !is_digit(static_cast<unsigned char>(value.front()))) {
        return bad(400, "malformed Content-Length");
      }
      if (h.content_length && *h.content_length != length) {
        return bad(400, "conflicting Content-Length headers");
      }
      h.content_length = length;
    } else if (iequals(name, "transfer-encoding")) {
      h.transfer_encoding = true;
    } else if (iequals(name, "host")) {
      ++hosts;
    }
  }

  // RFC 9112 §6.3: both framings at once is how requests are smuggled.
  if (h.content_length && h.transfer_encoding) {
    return bad(400, "both Content-Length and Transfer-Encoding");
  }
  if (hosts > 1) return bad(400, "more than one Host header");
  if (hosts == 0 && version[1] >= 1) return bad(400, "HTTP/1.1 request without a Host header");

  h.state = ParseState::kGood;
  h.method.assign(s.substr(method_start, method_end - method_start));
  h.target.assign(s.substr(target_start, target_end - target_start));
  h.version_minor = version[1];
  h.head_bytes = i;
  return h;
}

std::string_view request_path(std::string_view target) {
  // absolute-form (RFC 9112 §3.2.2), which a server must accept: drop scheme and authority.
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() >= scheme.size() && iequals(target.substr(0, scheme.size()), scheme)) {
      const std::size_t slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
      break;
    }
  }
  return target.substr(0, target.find_first_of("?#"));
}

namespace {

constexpr auto kAcceptRetry = std::chrono::milliseconds(100);
constexpr auto kMaxLinger = std::chrono::milliseconds(2000);
constexpr auto kRefusalWarnEvery = std::chrono::minutes(1);
constexpr std::string_view kExpositionType = "text/plain; version=0.0.4; charset=utf-8";
constexpr std::string_view kTextType = "text/plain; charset=utf-8";

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 431:
      return "Request Header Fields Too Large";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Error";
  }
}

struct Response {
  int status = 200;
  std::string head;
  std::string body;  // empty for HEAD
};

Response make_response(int status, std::string_view content_type, std::string body, bool head_only,
                       std::string_view extra_headers = {}) {
  Response r;
  r.status = status;
  r.head = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason_phrase(status)) +
           "\r\nContent-Type: " + std::string(content_type) +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n" +
           std::string(extra_headers) + "\r\n";
  if (!head_only) r.body = std::move(body);
  return r;
}

// A response to HEAD never has a body (RFC 9110 §9.3.2), whatever its status.
Response error_response(int status, std::string_view reason, bool head_only,
                        std::string_view extra = {}) {
  return make_response(status, kTextType, std::string(reason) + "\n", head_only, extra);
}

// What to answer; the only place that knows the routes.
Response route(const RequestHead& req, Registry& registry, std::size_t max_body_bytes) {
  if (req.state == ParseState::kBad) return error_response(req.status, req.reason, false);
  const bool head_only = req.method == "HEAD";
  if (req.content_length && *req.content_length > max_body_bytes) {
    return error_response(
        413, "request body larger than " + std::to_string(max_body_bytes) + " bytes", head_only);
  }
  const std::string_view path = request_path(req.target);
  const bool metrics = path == "/metrics";
  if (!metrics && path != "/") {
    return error_response(404, "not found; metrics are at /metrics", head_only);
  }
  if (!head_only && req.method != "GET") {
    return error_response(405, "method not allowed; use GET", false, "Allow: GET, HEAD\r\n");
  }
  if (metrics) return make_response(200, kExpositionType, registry.render(), head_only);
  return make_response(200, kTextType, "Campus Edge Gateway: Prometheus metrics are at /metrics\n",
                       head_only);
}

// "host:port" or "[v6]:port"; the config loader has already validated it, this only splits.
bool split_listen(std::string_view s, std::string& host, uint16_t& port) {
  std::string_view h;
  std::string_view p;
  if (!s.empty() && s.front() == '[') {
    const std::size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return false;
    }
    h = s.substr(1, close - 1);
    p = s.substr(close + 2);
  } else {
    const std::size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return false;
    h = s.substr(0, colon);
    p = s.substr(colon + 1);
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  if (h.empty() || p.empty() || ec != std::errc() || end != p.data() + p.size() || value > 65535) {
    return false;
  }
  host.assign(h);
  port = static_cast<uint16_t>(value);
  return true;
}

class Connection;

}  // namespace

class MetricsServerImpl : public std::enable_shared_from_this<MetricsServerImpl> {
 public:
  MetricsServerImpl(asio::any_io_executor core, Registry& registry, std::string listen,
                    MetricsServerOptions options)
      : core_(std::move(core)),
        registry_(registry),
        listen_(std::move(listen)),
        options_(options),
        acceptor_(core_),
        retry_timer_(core_) {}

  Status start();
  error_code listen_on(const tcp::endpoint& endpoint);
  void stop();
  void forget(Connection* c) { live_.erase(c); }

  void do_accept();
  void on_accept(const error_code& ec, tcp::socket socket);

  asio::any_io_executor core_;
  Registry& registry_;
  std::string listen_;
  MetricsServerOptions options_;
  tcp::acceptor acceptor_;
  asio::steady_timer retry_timer_;
  std::unordered_set<Connection*> live_;
  MetricsServer::Stats stats_;
  uint16_t port_ = 0;
  bool started_ = false;
  bool stopped_ = false;
  std::chrono::steady_clock::time_point last_refusal_warning_{};
};

namespace {

// One client: read the head (deadline), write one response (deadline), then read and discard
// until the client closes — closing with unread input would reset the connection and could
// destroy the response before the client reads it — up to max_body_bytes or a short deadline.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<MetricsServerImpl> server, tcp::socket socket)
      : server_(std::move(server)), socket_(std::move(socket)), deadline_(server_->core_) {}

  ~Connection() {
    // Reached without finish() only when the io_context is destroyed with our handlers queued.
    if (!done_) server_->forget(this);
  }

  void start() {
    deadline_.expires_after(server_->options_.timeout);
    check_deadline();
    do_read();
  }

  void finish() {
    if (done_) return;
    done_ = true;
    error_code ignored;
    socket_.close(ignored);
    deadline_.cancel();
    server_->forget(this);
  }

 private:
  // The asio timeouts example's pattern: one wait loop, re-armed by moving the expiry, so a
  // wait that already fired before a re-arm cannot close the connection by mistake.
  void check_deadline() {
    if (done_) return;
    if (deadline_.expiry() <= asio::steady_timer::clock_type::now()) {
      if (!responded_) {
        ++server_->stats_.timed_out;
        log::debug("metrics", "closing a client that did not finish its request in time");
      }
      finish();
      return;
    }
    deadline_.async_wait(
        [self = shared_from_this()](const error_code&) { self->check_deadline(); });
  }

  void do_read() {
    socket_.async_read_some(
        asio::buffer(chunk_),
        [self = shared_from_this()](const error_code& ec, std::size_t n) { self->on_read(ec, n); });
  }

  void on_read(const error_code& ec, std::size_t n) {
    if (done_) return;
    if (ec) {
      // A client that half-closes mid-head still reads: tell it why nothing will come.
      if (ec == asio::error::eof && !received_.empty()) {
        RequestHead h;
        h.state = ParseState::kBad;
        h.status = 400;
        h.reason = "connection closed before the end of the request head";
        respond(h);
        return;
      }
      finish();
      return;
    }
    received_.append(chunk_.data(), n);
    RequestHead h = parse_request_head(received_);
    if (h.state == ParseState::kNeedMore) {
      do_read();
      return;
    }
    respond(h);
  }

  void respond(const RequestHead& h) {
    Response r = route(h, server_->registry_, server_->options_.max_body_bytes);
    if (h.state == ParseState::kBad || r.status == 413) {
      ++server_->stats_.bad_requests;
      log::debug("metrics", "answered ", r.status, " ", reason_phrase(r.status),
                 h.reason.empty() ? "" : ": ", h.reason);
    }
    const std::size_t body_seen =
        h.state == ParseState::kGood ? received_.size() - h.head_bytes : 0;
    drain_left_ =
        server_->options_.max_body_bytes - std::min(body_seen, server_->options_.max_body_bytes);
    received_.clear();
    response_ = std::move(r);
    deadline_.expires_after(server_->options_.timeout);
    const std::array<asio::const_buffer, 2> buffers{asio::buffer(response_.head),
                                                    asio::buffer(response_.body)};
    asio::async_write(
        socket_, buffers,
        [self = shared_from_this()](const error_code& ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(const error_code& ec) {
    if (done_) return;
    if (ec) {
      finish();
      return;
    }
    responded_ = true;
    ++server_->stats_.responses;
    response_ = {};
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    deadline_.expires_after(
        std::min<std::chrono::milliseconds>(server_->options_.timeout, kMaxLinger));
    do_drain();
  }

  void do_drain() {
    if (drain_left_ == 0) {
      finish();
      return;
    }
    socket_.async_read_some(asio::buffer(chunk_),
                            [self = shared_from_this()](const error_code& ec, std::size_t n) {
                              self->on_drain(ec, n);
                            });
  }

  void on_drain(const error_code& ec, std::size_t n) {
    if (done_) return;
    if (ec || n >= drain_left_) {
      finish();
      return;
    }
    drain_left_ -= n;
    do_drain();
  }

  std::shared_ptr<MetricsServerImpl> server_;
  tcp::socket socket_;
  asio::steady_timer deadline_;
  std::array<char, 4096> chunk_{};
  std::string received_;
  Response response_;
  std::size_t drain_left_ = 0;
  bool responded_ = false;
  bool done_ = false;
};

}  // namespace

error_code MetricsServerImpl::listen_on(const tcp::endpoint& endpoint) {
  error_code ec;
  error_code ignored;
  acceptor_.close(ignored);
  acceptor_.open(endpoint.protocol(), ec);
  if (ec) return ec;
  // A restart must not fail on the previous process's TIME_WAIT sockets; on Linux this does not
  // let two listeners share the port.
  acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (ec) return ec;
  acceptor_.bind(endpoint, ec);
  if (ec) return ec;
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return ec;
  port_ = acceptor_.local_endpoint(ec).port();
  return ec;
}

Status MetricsServerImpl::start() {
  if (started_) return Status::invalid("metrics server already started");
  started_ = true;
  std::string host;
  uint16_t port = 0;
  if (!split_listen(listen_, host, port)) {
    return Status::invalid("metrics.listen " + listen_ + " is not host:port");
  }
  auto unavailable = [this](const error_code& ec) {
    error_code ignored;
    acceptor_.close(ignored);
    return Status::unavailable("cannot listen on " + listen_ +
                               " (metrics.listen): " + ec.message());
  };
  error_code ec;
  std::vector<tcp::endpoint> candidates;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (!ec) {
    candidates.emplace_back(address, port);
  } else {
    // A name such as "localhost": resolved once, here, before the loop runs.
    tcp::resolver resolver(core_);
    auto results = resolver.resolve(host, std::to_string(port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec) return unavailable(ec);
    for (const auto& entry : results) candidates.push_back(entry.endpoint());
    if (candidates.empty()) return unavailable(asio::error::host_not_found);
  }
  // The first address of a name that binds wins ("localhost" may list ::1 on a host without
  // IPv6); the error reported is the first one's.
  error_code first_error;
  for (const tcp::endpoint& endpoint : candidates) {
    ec = listen_on(endpoint);
    if (!ec) break;
    if (!first_error) first_error = ec;
  }
  if (ec) return unavailable(first_error);
  log::info("metrics", "serving Prometheus metrics on ", listen_, " (port ", port_,
            ") at /metrics");
  do_accept();
  return Status::ok();
}

void MetricsServerImpl::stop() {
  if (stopped_) return;
  stopped_ = true;
  error_code ignored;
  acceptor_.close(ignored);
  retry_timer_.cancel();
  const std::vector<Connection*> open(live_.begin(), live_.end());
  for (Connection* c : open) c->finish();
}

void MetricsServerImpl::do_accept() {
  acceptor_.async_accept([self = shared_from_this()](const error_code& ec, tcp::socket socket) {
    self->on_accept(ec, std::move(socket));
  });
}

void MetricsServerImpl::on_accept(const error_code& ec, tcp::socket socket) {
  if (stopped_) return;
  if (ec) {
    if (ec == asio::error::operation_aborted) return;
    // Out of descriptors or memory: the pending connection stays queued and would wake us at
    // once, so wait a moment instead of spinning the core thread.
    log::debug("metrics", "accept failed: ", ec.message());
    retry_timer_.expires_after(kAcceptRetry);
    retry_timer_.async_wait([self = shared_from_this()](const error_code& e) {
      if (!e && !self->stopped_) self->do_accept();
    });
    return;
  }
  if (live_.size() >= options_.max_connections) {
    ++stats_.refused;
    const auto now = std::chrono::steady_clock::now();
    if (stats_.refused == 1 || now - last_refusal_warning_ >= kRefusalWarnEvery) {
      last_refusal_warning_ = now;
      log::warn("metrics", "refusing connections: ", live_.size(), " already open (at most ",
                options_.max_connections, "); refused so far ", stats_.refused);
    }
    error_code ignored;
    socket.close(ignored);
  } else {
    ++stats_.accepted;
    auto c = std::make_shared<Connection>(shared_from_this(), std::move(socket));
    live_.insert(c.get());
    c->start();
  }
  do_accept();
}

MetricsServer::MetricsServer(asio::any_io_executor core, Registry& registry, std::string listen,
                             MetricsServerOptions options)
    : impl_(std::make_shared<MetricsServerImpl>(std::move(core), registry, std::move(listen),
                                                options)) {}

MetricsServer::~MetricsServer() { impl_->stop(); }

Status MetricsServer::start() { return impl_->start(); }
void MetricsServer::stop() { impl_->stop(); }
uint16_t MetricsServer::port() const { return impl_->port_; }
std::size_t MetricsServer::connections() const { return impl_->live_.size(); }
const MetricsServer::Stats& MetricsServer::stats() const { return impl_->stats_; }

}  // namespace gw::metrics
