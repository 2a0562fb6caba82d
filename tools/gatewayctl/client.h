// ControlClient is gatewayctl's end of one connection to gatewayd's control socket: JSON lines as
// gateway/control_protocol.h defines them (requests with increasing ids, responses in request
// order, then stream items for tail and trace). Blocking I/O with deadlines (poll), no threads;
// an optional "interrupt" descriptor (the read end of a self-pipe a signal handler writes to)
// ends a wait early, which is how Ctrl-C ends a stream cleanly. One thread per client.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "protocols/status.h"
#include "tools/gatewayctl/json_util.h"

namespace gw::ctl {

// Requests are capped by the protocol (kMaxLineBytes); replies are not, and a `devices` answer
// for a large building is bigger than 64 KiB, so the client accepts replies up to this size.
inline constexpr std::size_t kMaxReplyBytes = 64u << 20;

// Splits a byte stream into lines (without the '\n'; a trailing '\r' is dropped too). A line
// longer than max_line is an overflow: the reader stops producing lines. No I/O.
class LineReader {
 public:
  explicit LineReader(std::size_t max_line) : max_line_(max_line) {}
  void feed(std::string_view bytes);
  std::optional<std::string> next();
  bool overflow() const { return overflow_; }

 private:
  std::size_t max_line_;
  std::string buffer_;
  std::size_t scanned_ = 0;  // bytes of buffer_ known to hold no '\n'
  bool overflow_ = false;
};

// One line for a failed connect(): the path, what went wrong, what to do.
std::string connect_error_message(const std::string& path, int err);

// A daemon response: ok with its result, or the error's code and message.
struct Reply {
  bool ok = false;
  Json result;
  std::string code;
  std::string message;
};

// What a wait for the next line produced.
struct Incoming {
  enum class Kind { kMessage, kTimeout, kClosed, kInterrupted, kError };
  Kind kind = Kind::kError;
  Json message;       // kMessage
  std::string error;  // kError: what went wrong (read failed, not JSON, too long)
};

class ControlClient {
 public:
  // kUnavailable with connect_error_message() when nobody can be reached at `path`;
  // kInvalidArgument when the path cannot be a Unix socket path at all.
  static Result<std::unique_ptr<ControlClient>> connect(const std::string& path);
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // A descriptor whose readability ends any wait with kInterrupted (-1: none).
  void set_interrupt_fd(int fd) { interrupt_fd_ = fd; }
  const std::string& path() const { return path_; }

  // Sends {"v":1,"id":N,"cmd":cmd,"args":args}; args omitted when null. Returns N.
  Result<uint64_t> send(std::string_view cmd, const Json& args);
  // The next line from gatewayd, waiting at most timeout_ms (< 0: no limit).
  Incoming next(int timeout_ms);
  // send() then the response carrying the same id. Errors: kTimeout (no answer in time),
  // kUnavailable (connection closed or interrupted), kIoError, kProtocol (not the protocol).
  Result<Reply> call(std::string_view cmd, const Json& args, int timeout_ms);

 private:
  ControlClient(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
  LineReader reader_{kMaxReplyBytes};
  uint64_t next_id_ = 1;
  int interrupt_fd_ = -1;
};

// Reads a response message into a Reply (ok/result or error code/message).
Reply to_reply(const Json& message);

}  // namespace gw::ctl
