// FakeDaemon: a test double for gatewayd's side of the control protocol only
// (gateway/control_protocol.h). It listens on a Unix socket in a fresh temp folder and answers
// each request line with canned lines registered per command ("@ID@" becomes the request's id),
// so gatewayctl's client and commands can be tested without the daemon. It is not a model of
// the daemon's behaviour; the real daemon is covered by the integration tests.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tools/gatewayctl/json_util.h"

namespace gw::ctl::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "gwctl-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : std::string();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

class FakeDaemon {
 public:
  struct Script {
    std::vector<std::string> lines;  // sent in order, "@ID@" replaced by the request id
    bool close_after = false;        // hang up after the lines (a daemon that died)
    bool silent = false;             // send nothing at all (a stuck daemon)
  };

  FakeDaemon() {
    socket_path_ = dir_.file("gatewayd.sock");
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket_path_.c_str(), sizeof addr.sun_path - 1);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd_, 8) != 0) {
      ::close(listen_fd_);
      listen_fd_ = -1;
    }
    [[maybe_unused]] int rc = ::pipe(stop_);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeDaemon() {
    [[maybe_unused]] ssize_t n = ::write(stop_[1], "x", 1);
    thread_.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
    ::close(stop_[0]);
    ::close(stop_[1]);
  }

  const std::string& socket_path() const { return socket_path_; }
  const TempDir& dir() const { return dir_; }

  // Scripts are found by "cmd <args as JSON>" first (e.g. `devices {"device":"x"}`), then by cmd.
  void on(const std::string& cmd, Script script) {
    std::lock_guard<std::mutex> lock(mu_);
    scripts_[cmd] = std::move(script);
  }
  // The usual answer: {"v":1,"id":N,"ok":true,"result":<result>}.
  void answer(const std::string& cmd, const Json& result) {
    Json line;
    line["v"] = 1;
    line["id"] = "@ID@";
    line["ok"] = true;
    line["result"] = result;
    on(cmd, {{with_id_placeholder(line)}});
  }
  void fail(const std::string& cmd, const std::string& code, const std::string& message) {
    Json line;
    line["v"] = 1;
    line["id"] = "@ID@";
    line["ok"] = false;
    line["error"] = {{"code", code}, {"message", message}};
    on(cmd, {{with_id_placeholder(line)}});
  }
  static std::string with_id_placeholder(const Json& line) {
    std::string text = line.dump();
    const std::string quoted = "\"@ID@\"";
    const std::size_t at = text.find(quoted);
    if (at != std::string::npos) text.replace(at, quoted.size(), "@ID@");
    return text;
  }

  std::vector<Json> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  void serve() {
    for (;;) {
      pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) continue;
      if (fds[1].revents) return;
      if (!(fds[0].revents & POLLIN)) continue;
      const int conn = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) continue;
      const bool stop = handle(conn);
      ::close(conn);
      if (stop) return;
    }
  }

  // One connection until the client hangs up; true when the test is ending.
  bool handle(int conn) {
    std::string buffer;
    for (;;) {
      pollfd fds[2] = {{conn, POLLIN, 0}, {stop_[0], POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) continue;
      if (fds[1].revents) return true;
      char buf[4096];
      const ssize_t n = ::read(conn, buf, sizeof buf);
      if (n <= 0) return false;
      buffer.append(buf, static_cast<std::size_t>(n));
      std::size_t nl;
      while ((nl = buffer.find('\n')) != std::string::npos) {
        const std::string line = buffer.substr(0, nl);
        buffer.erase(0, nl + 1);
        Json request = parse_line(line);
        Script script;
        {
          std::lock_guard<std::mutex> lock(mu_);
          requests_.push_back(request);
          auto it = scripts_.find(get_string(request, "cmd") + " " + field(request, "args").dump());
          if (it == scripts_.end()) it = scripts_.find(get_string(request, "cmd"));
          if (it != scripts_.end()) {
            script = it->second;
          } else {
            Json err;
            err["v"] = 1;
            err["id"] = "@ID@";
            err["ok"] = false;
            err["error"] = {{"code", "unknown_command"},
                            {"message", "unknown command '" + get_string(request, "cmd") + "'"}};
            script.lines = {with_id_placeholder(err)};
          }
        }
        if (script.silent) continue;
        const std::string id = std::to_string(get_int(request, "id"));
        for (std::string out : script.lines) {
          for (std::size_t at; (at = out.find("@ID@")) != std::string::npos;)
            out.replace(at, 4, id);
          out += "\n";
          if (::send(conn, out.data(), out.size(), MSG_NOSIGNAL) < 0) return false;
        }
        if (script.close_after) return false;
      }
    }
  }

  TempDir dir_;
  std::string socket_path_;
  int listen_fd_ = -1;
  int stop_[2] = {-1, -1};
  std::thread thread_;
  mutable std::mutex mu_;
  std::map<std::string, Script> scripts_;
  std::vector<Json> requests_;
};

}  // namespace gw::ctl::testing
