#include "gateway/control_server.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "gateway/control_protocol.h"

namespace gw::control {

namespace {
constexpr std::size_t kMaxQueuedBytes = 8 * 1024 * 1024;
constexpr std::size_t kMaxSessions = 32;
}  // namespace

Result<Request> parse_request_line(std::string_view line) {
  Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::invalid("not a JSON object");
  if (!j.is_object()) return Status::invalid("a request is a JSON object");
  Request r;
  if (auto it = j.find("id"); it != j.end()) {
    if (!it->is_number_integer()) return Status::invalid("\"id\" must be an integer");
    r.id = it->get<int64_t>();
  }
  auto v = j.find("v");
  if (v == j.end() || !v->is_number_integer()) {
    return Status::invalid("\"v\" (protocol version) is missing or not an integer");
  }
  if (v->get<int64_t>() != kProtocolVersion) {
    return Status::error(Status::Code::kUnavailable,
                         "protocol version " + v->dump() + " is not supported (supported: " +
                             std::to_string(kProtocolVersion) + ")");
  }
  auto cmd = j.find("cmd");
  if (cmd == j.end() || !cmd->is_string()) return Status::invalid("\"cmd\" must be a string");
  r.cmd = cmd->get<std::string>();
  if (auto a = j.find("args"); a != j.end()) {
    if (!a->is_object()) return Status::invalid("\"args\" must be an object");
    r.args = *a;
  }
  return r;
}

std::string encode_reply(int64_t id, const Reply& reply) {
  Json j{{"v", kProtocolVersion}, {"id", id}, {"ok", reply.ok}};
  if (reply.ok) {
    j["result"] = reply.result;
  } else {
    j["error"] = Json{{"code", reply.code}, {"message", reply.message}};
  }
  // Replace invalid UTF-8 (a device's garbage in an error message) instead of throwing.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

// One client connection: reads request lines, writes answers and stream items in order.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(asio::local::stream_protocol::socket socket, Handler& handler)
      : socket_(std::move(socket)), handler_(handler) {}

  void start() { read(); }
  void close() {
    boost::system::error_code ec;
    socket_.close(ec);
    closed_ = true;
  }
  bool closed() const { return closed_; }

  // Queues a line; false when it would exceed the session's bound (the caller counts a drop).
  bool queue(std::string line, bool droppable) {
    if (closed_) return false;
    if (droppable && (out_.size() >= ControlStream::kMaxQueuedItems ||
                      queued_bytes_ + line.size() > kMaxQueuedBytes)) {
      return false;
    }
    queued_bytes_ += line.size();
    out_.push_back(std::move(line));
    if (!writing_) write();
    return true;
  }

 private:
  void read() {
    socket_.async_read_some(
        asio::buffer(chunk_), [self = shared_from_this()](const boost::system::error_code& ec,
                                                          std::size_t n) {
          if (ec) {
            self->closed_ = true;
            return;
          }
          self->take(std::string_view(self->chunk_.data(), n));
          if (!self->closed_) self->read();
        });
  }

  void take(std::string_view bytes) {
    for (char c : bytes) {
      if (c != '\n') {
        if (line_.size() < kMaxLineBytes) {
          line_.push_back(c);
        } else {
          overlong_ = true;  // keep reading to the newline, then answer once
        }
        continue;
      }
      if (overlong_) {
        queue(encode_reply(0, Reply::error(error_code::kBadRequest,
                                           "request longer than " +
                                               std::to_string(kMaxLineBytes) + " bytes")),
              false);
      } else if (!line_.empty()) {
        dispatch(line_);
      }
      line_.clear();
      overlong_ = false;
    }
  }

  void dispatch(const std::string& line) {
    Result<Request> req = parse_request_line(line);
    if (!req) {
      const bool version = req.status().code() == Status::Code::kUnavailable;
      queue(encode_reply(0, Reply::error(version ? error_code::kUnsupportedVersion
                                                 : error_code::kBadRequest,
                                         req.status().message())),
            false);
      return;
    }
    auto stream = std::make_shared<ControlStream>(weak_from_this(), req->id);
    Reply reply;
    try {
      reply = handler_.handle(*req, stream);
    } catch (const std::exception& e) {
      // A handler bug must not take the daemon down with it; the client gets the reason.
      reply = Reply::error(error_code::kInternal, e.what());
    }
    if (!reply.deferred) queue(encode_reply(req->id, reply), false);
  }

  void write() {
    writing_ = true;
    asio::async_write(socket_, asio::buffer(out_.front()),
                      [self = shared_from_this()](const boost::system::error_code& ec,
                                                  std::size_t) {
                        self->writing_ = false;
                        if (ec) {
                          self->closed_ = true;
                          self->out_.clear();
                          return;
                        }
                        self->queued_bytes_ -= self->out_.front().size();
                        self->out_.pop_front();
                        if (!self->out_.empty()) self->write();
                      });
  }

  asio::local::stream_protocol::socket socket_;
  Handler& handler_;
  std::array<char, 4096> chunk_{};
  std::string line_;
  bool overlong_ = false;
  std::deque<std::string> out_;
  std::size_t queued_bytes_ = 0;
  bool writing_ = false;
  bool closed_ = false;
};

bool ControlStream::send(const Json& item) {
  auto s = session_.lock();
  if (!s || s->closed()) return false;
  if (dropped_ > 0) {
    // Tell the client what it missed before the next item, once there is room again.
    Json note{{"v", kProtocolVersion}, {"id", id_}, {"item", Json{{"dropped", dropped_}}}};
    if (!s->queue(note.dump() + "\n", true)) {
      ++dropped_;
      return true;
    }
    dropped_ = 0;
  }
  Json j{{"v", kProtocolVersion}, {"id", id_}, {"item", item}};
  if (!s->queue(j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n", true)) {
    ++dropped_;
  }
  return true;
}

void ControlStream::end(const std::string& reason) {
  auto s = session_.lock();
  if (!s || s->closed()) return;
  Json j{{"v", kProtocolVersion}, {"id", id_}, {"end", true}, {"reason", reason}};
  s->queue(j.dump() + "\n", false);
}

void ControlStream::respond(const Reply& reply) {
  auto s = session_.lock();
  if (!s || s->closed()) return;
  s->queue(encode_reply(id_, reply), false);
}

bool ControlStream::open() const {
  auto s = session_.lock();
  return s && !s->closed();
}

ControlServer::ControlServer(asio::any_io_executor core, std::string path, Handler& handler)
    : core_(core), path_(std::move(path)), handler_(handler), acceptor_(core) {}

ControlServer::~ControlServer() { stop(); }

Status ControlServer::start() {
  namespace fs = std::filesystem;
  std::error_code fec;
  fs::create_directories(fs::path(path_).parent_path(), fec);
  if (fs::exists(path_)) {
    // A live daemon answers on it: the path is taken. A stale socket file is replaced.
    asio::local::stream_protocol::socket probe(core_);
    boost::system::error_code ec;
    probe.connect(asio::local::stream_protocol::endpoint(path_), ec);
    if (!ec) return Status::unavailable("control socket " + path_ + " is taken by a running daemon");
    fs::remove(path_, fec);
  }
  boost::system::error_code ec;
  acceptor_.open(asio::local::stream_protocol(), ec);
  if (!ec) acceptor_.bind(asio::local::stream_protocol::endpoint(path_), ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::unavailable("control socket " + path_ + ": " + ec.message());
  ::chmod(path_.c_str(), 0660);
  accept();
  return Status::ok();
}

void ControlServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  for (auto& w : sessions_) {
    if (auto s = w.lock()) s->close();
  }
  std::error_code fec;
  std::filesystem::remove(path_, fec);
}

void ControlServer::accept() {
  acceptor_.async_accept([this](const boost::system::error_code& ec,
                                asio::local::stream_protocol::socket socket) {
    if (ec) return;  // closed at stop
    std::erase_if(sessions_, [](const std::weak_ptr<Session>& w) {
      auto s = w.lock();
      return !s || s->closed();
    });
    if (sessions_.size() >= kMaxSessions) {
      boost::system::error_code ignored;
      socket.close(ignored);
    } else {
      auto session = std::make_shared<Session>(std::move(socket), handler_);
      sessions_.push_back(session);
      session->start();
    }
    accept();
  });
}

}  // namespace gw::control
