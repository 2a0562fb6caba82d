// MetricsServer is the scrape endpoint: a small HTTP/1.1 server that answers GET and HEAD for
// /metrics with Registry::render() and for / with a pointer to /metrics, one request per
// connection ("Connection: close"). It is exposed to whatever can reach metrics.listen, so it
// treats every byte as hostile: a request head is capped at 8 KiB (431), a body at 64 KiB (413,
// else read and discarded), a client gets one deadline (default 5 s) to deliver its whole head and
// another to take the answer, at most 32 connections are open at once (more are closed on accept),
// and malformed input gets a 4xx (505 for HTTP/2+) with a one-line reason, never a crash; then on
// it serves the next client. Running out of file descriptors pauses accepting, not spinning.
//
// Threading: runs entirely on the executor it is given (the core thread); never blocks, except
// start() resolving a host name once. Construct, start, stop and destroy it on that thread (or
// while the loop is not running), and before its io_context. The Registry must outlive it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "drivers/asio.h"
#include "gateway/metrics.h"
#include "protocols/status.h"

namespace gw::metrics {

// ---- The request-head parser: no I/O, so it is unit-tested and fuzzed on plain bytes. ----

constexpr std::size_t kMaxHeadBytes = 8 * 1024;

enum class ParseState { kNeedMore, kGood, kBad };

struct RequestHead {
  ParseState state = ParseState::kNeedMore;
  // kBad: the status to answer (400, 414 request line too long, 431 head too long, 505 not
  // HTTP/1.x) and a one-line reason for the body, a static string that never echoes input.
  int status = 0;
  std::string_view reason;
  // kGood:
  std::string method;
  std::string target;          // as sent, e.g. "/metrics?x=1"
  int version_minor = 1;       // HTTP/1.<minor>
  std::size_t head_bytes = 0;  // through the empty line; what follows is body (or junk)
  std::optional<uint64_t> content_length;
  bool transfer_encoding = false;  // a body of unknown length follows
};

// Parses the bytes received so far from the start of a connection (RFC 9112 request line and
// header fields; bare LF accepted as a line end, leading empty lines skipped). Answers kNeedMore
// only while `bytes` is a prefix of a valid head that fits `max_head_bytes`, so garbage (a TLS
// ClientHello, a binary probe) is refused at its first impossible byte, not after 8 KiB.
// HTTP/1.1 requires exactly one Host header; obs-fold, whitespace before ':', control characters,
// conflicting Content-Length, and Content-Length with Transfer-Encoding are refused.
RequestHead parse_request_head(std::string_view bytes, std::size_t max_head_bytes = kMaxHeadBytes);

// "/metrics" from "/metrics?x=1" or "http://host:9108/metrics"; anything else unchanged.
std::string_view request_path(std::string_view target);

// ---- The server ----

class MetricsServerImpl;  // metrics_server.cpp

struct MetricsServerOptions {
  // Time a client has to send its whole request head after connecting, and again to take the
  // response. Slowloris defence: trickling a byte now and then does not extend it.
  std::chrono::milliseconds timeout{5000};
  std::size_t max_connections = 32;
  std::size_t max_body_bytes = 64 * 1024;
};

class MetricsServer {
 public:
  struct Stats {
    uint64_t accepted = 0;      // connections taken on
    uint64_t refused = 0;       // closed on accept: max_connections already open
    uint64_t timed_out = 0;     // closed at a deadline before the response was out
    uint64_t responses = 0;     // responses written, any status
    uint64_t bad_requests = 0;  // of which 4xx/5xx because of the request's bytes
  };

  // `listen` is metrics.listen: "host:port" or "[v6addr]:port"; port 0 picks a free port.
  MetricsServer(asio::any_io_executor core, Registry& registry, std::string listen,
                MetricsServerOptions options = {});
  ~MetricsServer();  // stop()s
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds and starts accepting. kUnavailable, naming the address and the OS error, when it cannot
  // bind (port taken, address not local, no permission) — the daemon exits 69; kInvalidArgument
  // for a listen string that is not host:port.
  Status start();
  // Closes the listener and every connection. Idempotent.
  void stop();

  uint16_t port() const;            // the bound port, after a successful start()
  std::size_t connections() const;  // open right now
  const Stats& stats() const;

 private:
  // Shared with in-flight handlers, which may run after this object is gone.
  std::shared_ptr<MetricsServerImpl> impl_;
};

}  // namespace gw::metrics
