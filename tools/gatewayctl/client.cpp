#include "tools/gatewayctl/client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "gateway/control_protocol.h"

namespace gw::ctl {

void LineReader::feed(std::string_view bytes) {
  if (!overflow_) buffer_.append(bytes);
}

std::optional<std::string> LineReader::next() {
  if (overflow_) return std::nullopt;
  const std::size_t nl = buffer_.find('\n', scanned_);
  if (nl == std::string::npos) {
    scanned_ = buffer_.size();
    if (buffer_.size() > max_line_) {
      overflow_ = true;
      buffer_.clear();
    }
    return std::nullopt;
  }
  if (nl > max_line_) {
    overflow_ = true;
    buffer_.clear();
    return std::nullopt;
  }
  std::string line = buffer_.substr(0, nl);
  buffer_.erase(0, nl + 1);
  scanned_ = 0;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

std::string connect_error_message(const std::string& path, int err) {
  const std::string head = "cannot connect to gatewayd at " + path + ": ";
  switch (err) {
    case ENOENT:
      return head +
             "no such socket - is gatewayd running? (systemctl status gatewayd); if it uses "
             "another socket, give --socket PATH or --config FILE";
    case ECONNREFUSED:
      return head +
             "connection refused - the socket exists but nobody listens: is gatewayd running? "
             "(systemctl status gatewayd)";
    case EACCES:
    case EPERM:
      return head +
             "permission denied - add yourself to the gatewayd group (sudo usermod -aG gatewayd "
             "$USER, then log in again) or run gatewayctl with sudo";
    case ENOTDIR:
      return head + "a part of the path is not a directory - check --socket / control.socket";
    case EAGAIN:
      return head + "gatewayd's connection queue is full - it is overloaded or stuck; try again";
    default:
      return head + std::strerror(err);
  }
}

Reply to_reply(const Json& message) {
  Reply r;
  r.ok = get_bool(message, "ok");
  if (r.ok) {
    r.result = field(message, "result");
  } else {
    const Json& error = field(message, "error");
    r.code = get_string(error, "code", "internal");
    r.message = get_string(error, "message", "gatewayd gave no reason");
  }
  return r;
}

Result<std::unique_ptr<ControlClient>> ControlClient::connect(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return Status::invalid("'" + path + "' cannot be a control socket: a Unix socket path is 1.." +
                           std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::unavailable(connect_error_message(path, errno));
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::unavailable(connect_error_message(path, err));
  }
  return std::unique_ptr<ControlClient>(new ControlClient(fd, path));
}

ControlClient::~ControlClient() { ::close(fd_); }

Result<uint64_t> ControlClient::send(std::string_view cmd, const Json& args) {
  const uint64_t id = next_id_++;
  Json request;
  request["v"] = control::kProtocolVersion;
  request["id"] = id;
  request["cmd"] = cmd;
  if (!args.is_null()) request["args"] = args;
  std::string line = request.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (line.size() > control::kMaxLineBytes) {
    return Status::invalid("request too long for the control protocol (" +
                           std::to_string(line.size()) + " bytes)");
  }
  line += '\n';
  std::size_t sent = 0;
  while (sent < line.size()) {
    const ssize_t n = ::send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::unavailable("lost the connection to gatewayd at " + path_ + " (" +
                                 std::strerror(errno) + ")");
    }
    sent += static_cast<std::size_t>(n);
  }
  return id;
}

Incoming ControlClient::next(int timeout_ms) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
  for (;;) {
    if (auto line = reader_.next()) {
      Json message = parse_line(*line);
      if (message.is_discarded() || !message.is_object()) {
        std::string shown = line->substr(0, 80);
        for (char& c : shown) {
          if (static_cast<unsigned char>(c) < 0x20) c = '?';
        }
        return {Incoming::Kind::kError,
                {},
                "the peer at " + path_ + " does not speak gatewayd's control protocol (sent '" +
                    shown + "')"};
      }
      return {Incoming::Kind::kMessage, std::move(message), {}};
    }
    if (reader_.overflow()) {
      return {Incoming::Kind::kError,
              {},
              "gatewayd sent a line longer than " + std::to_string(kMaxReplyBytes >> 20) + " MiB"};
    }
    int wait = -1;
    if (timeout_ms >= 0) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return {Incoming::Kind::kTimeout, {}, {}};
      wait = static_cast<int>(left.count());
    }
    pollfd fds[2] = {{fd_, POLLIN, 0}, {interrupt_fd_, POLLIN, 0}};
    const int rc = ::poll(fds, interrupt_fd_ >= 0 ? 2 : 1, wait);
    if (rc < 0) {
      if (errno == EINTR) continue;  // a signal handler also wrote to the interrupt pipe
      return {Incoming::Kind::kError, {}, std::string("poll: ") + std::strerror(errno)};
    }
    if (rc == 0) continue;  // the deadline check above decides
    if (interrupt_fd_ >= 0 && (fds[1].revents & POLLIN))
      return {Incoming::Kind::kInterrupted, {}, {}};
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[65536];
      const ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        if (errno == ECONNRESET) return {Incoming::Kind::kClosed, {}, {}};
        return {Incoming::Kind::kError, {}, std::string("read: ") + std::strerror(errno)};
      }
      if (n == 0) return {Incoming::Kind::kClosed, {}, {}};
      reader_.feed(std::string_view(buf, static_cast<std::size_t>(n)));
    }
  }
}

Result<Reply> ControlClient::call(std::string_view cmd, const Json& args, int timeout_ms) {
  Result<uint64_t> id = send(cmd, args);
  if (!id) return id.status();
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    Incoming in = next(timeout_ms < 0 ? -1 : static_cast<int>(std::max<int64_t>(0, left)));
    switch (in.kind) {
      case Incoming::Kind::kMessage: {
        // Responses come in request order; a line for an older request (a stream item still in
        // flight) is not ours.
        const Json& mid = field(in.message, "id");
        if (!mid.is_null() && (!mid.is_number_unsigned() || mid.get<uint64_t>() != *id)) {
          if (!mid.is_number_integer()) {
            return Status::protocol("gatewayd answered with an id that is not a number");
          }
          continue;
        }
        if (field(in.message, "ok").is_null()) {
          if (!field(in.message, "item").is_null() || !field(in.message, "end").is_null()) continue;
          return Status::protocol("gatewayd's answer has no \"ok\": " +
                                  in.message.dump().substr(0, 120));
        }
        return to_reply(in.message);
      }
      case Incoming::Kind::kTimeout:
        return Status::timeout("no answer from gatewayd at " + path_ + " within " +
                               std::to_string(timeout_ms) +
                               " ms (is it stuck? --timeout waits "
                               "longer)");
      case Incoming::Kind::kClosed:
        return Status::unavailable("gatewayd at " + path_ +
                                   " closed the connection without answering (did it stop?)");
      case Incoming::Kind::kInterrupted:
        return Status::unavailable("interrupted");
      case Incoming::Kind::kError:
        return Status::protocol(in.error);
    }
  }
}

}  // namespace gw::ctl
