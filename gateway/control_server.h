// ControlServer serves the control protocol (control_protocol.h) on a Unix socket: it accepts
// gatewayctl connections, frames requests as JSON lines (bounded: an overlong or unparsable line
// gets a bad_request answer and the connection stays usable), hands each request to the
// Handler and writes the answers back in order. Streaming answers (tail, trace) go through a
// ControlStream whose queue is bounded: a client that reads too slowly loses items, counted and
// reported to it, and never makes the daemon grow. Everything runs on the core executor and never
// blocks it. Socket file mode 0660.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "drivers/asio.h"
#include "protocols/status.h"

namespace gw::control {

using Json = nlohmann::json;

struct Request {
  int64_t id = 0;
  std::string cmd;
  Json args = Json::object();
};

struct Reply {
  bool ok = true;
  Json result = Json::object();
  std::string code;  // error code when !ok (control_protocol.h)
  std::string message;
  bool streaming = false;
  bool deferred = false;  // answered later through ControlStream::respond()

  static Reply success(Json result) { return Reply{true, std::move(result), {}, {}, false}; }
  static Reply error(std::string_view code, std::string message) {
    return Reply{false, Json::object(), std::string(code), std::move(message), false};
  }
  static Reply stream() { return Reply{true, Json{{"streaming", true}}, {}, {}, true}; }
  static Reply later() { return Reply{true, Json::object(), {}, {}, false, true}; }
};

class Session;

// The sending end of a streaming answer. Owned by whoever produces items; safe to keep after the
// client went away (send() then returns false).
class ControlStream {
 public:
  static constexpr std::size_t kMaxQueuedItems = 2000;
  ControlStream(std::weak_ptr<Session> session, int64_t id) : session_(std::move(session)), id_(id) {}
  // Queues one item; false when the client is gone (drop the stream then).
  bool send(const Json& item);
  // Ends the stream with a reason; the client sees {"end":true,"reason":...}.
  void end(const std::string& reason);
  // The answer to a request that returned Reply::later().
  void respond(const Reply& reply);
  bool open() const;

 private:
  std::weak_ptr<Session> session_;
  int64_t id_;
  uint64_t dropped_ = 0;
};

class Handler {
 public:
  virtual ~Handler() = default;
  // Answers one request. For a stream, return Reply::stream() and keep `stream` to send items.
  virtual Reply handle(const Request& request, std::shared_ptr<ControlStream> stream) = 0;
};

class ControlServer {
 public:
  ControlServer(asio::any_io_executor core, std::string path, Handler& handler);
  ~ControlServer();
  // Binds the socket. kUnavailable when the path is taken by a live daemon or cannot be created.
  Status start();
  void stop();
  const std::string& path() const { return path_; }

 private:
  void accept();

  asio::any_io_executor core_;
  std::string path_;
  Handler& handler_;
  asio::local::stream_protocol::acceptor acceptor_;
  std::vector<std::weak_ptr<Session>> sessions_;
  bool stopped_ = false;
};

// Parses one request line. Exposed for tests and the fuzz target.
Result<Request> parse_request_line(std::string_view line);
std::string encode_reply(int64_t id, const Reply& reply);

}  // namespace gw::control
