#include "tools/sim/camera_sim_core.h"

// Boost.Asio through the project's wrapper (Boost 1.74 needs <utility> first with g++ 12).
#include "drivers/asio.h"

#include <openssl/evp.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <utility>

namespace gw::sim::camera {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

std::string stamp() {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  char buf[32];
  std::snprintf(buf, sizeof buf, "t=%lld.%03lld", static_cast<long long>(us / 1000000),
                static_cast<long long>(us % 1000000 / 1000));
  return buf;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return std::string(s);
}

std::string md5_hex(std::string_view s) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> d{};
  unsigned int n = 0;
  EVP_Digest(s.data(), s.size(), d.data(), &n, EVP_md5(), nullptr);
  std::string hex;
  char two[3];
  for (unsigned i = 0; i < n; ++i) {
    std::snprintf(two, sizeof two, "%02x", d[i]);
    hex += two;
  }
  return hex;
}

std::string base64(std::string_view in) {
  static constexpr char k[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += k[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += k[(acc << (6 - bits)) & 63];
  while (out.size() % 4) out += '=';
  return out;
}

// `a="x", b=y` -> map (the sim's own reading of an Authorization header).
std::map<std::string, std::string> auth_params(std::string_view s) {
  std::map<std::string, std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == ',')) ++i;
    const std::size_t eq = s.find('=', i);
    if (eq == std::string_view::npos) break;
    const std::string name = trim(s.substr(i, eq - i));
    i = eq + 1;
    std::string value;
    if (i < s.size() && s[i] == '"') {
      const std::size_t close = s.find('"', i + 1);
      value = std::string(s.substr(i + 1, close - i - 1));
      i = close == std::string_view::npos ? s.size() : close + 1;
    } else {
      const std::size_t comma = s.find(',', i);
      value = trim(s.substr(i, comma - i));
      i = comma == std::string_view::npos ? s.size() : comma;
    }
    out[name] = value;
  }
  return out;
}

const char* state_name(Step::State s) {
  switch (s) {
    case Step::State::kActive:
      return "active";
    case Step::State::kInactive:
      return "inactive";
    case Step::State::kPulse:
      return "pulse";
    case Step::State::kGarbage:
      return "garbage";
  }
  return "?";
}

std::string describe(const Post& p) {
  if (p.step.state == Step::State::kGarbage) return "garbage";
  return p.step.type + "@" + std::to_string(p.step.channel) + "=" + state_name(p.step.state) +
         " #" + std::to_string(p.post_count);
}

std::string now_iso() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool sleep_until(std::mutex& mu, std::condition_variable& cv, const bool& stopping,
                 Clock::time_point t) {
  std::unique_lock lock(mu);
  cv.wait_until(lock, t, [&] { return stopping; });
  return !stopping;
}

}  // namespace

std::vector<Step> parse_sequence(std::string_view spec, std::string& error) {
  std::vector<Step> steps;
  std::size_t pos = 0;
  while (pos <= spec.size() && !spec.empty()) {
    std::size_t comma = spec.find(',', pos);
    if (comma == std::string_view::npos) comma = spec.size();
    const std::string item = trim(spec.substr(pos, comma - pos));
    pos = comma + 1;
    if (item.empty()) continue;
    Step s;
    std::string body = item;
    if (const std::size_t star = body.find('*'); star != std::string::npos) {
      const std::string n = body.substr(star + 1);
      auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), s.repeat);
      if (ec != std::errc() || p != n.data() + n.size() || s.repeat < 1 || s.repeat > 100000) {
        error = "bad repeat count in '" + item + "'";
        return {};
      }
      body.resize(star);
    }
    if (body == "garbage") {
      s.type = "garbage";
      s.state = Step::State::kGarbage;
      steps.push_back(s);
      continue;
    }
    const std::size_t at = body.find('@');
    const std::size_t eq = body.find('=');
    if (at == std::string::npos || eq == std::string::npos || at > eq || at == 0) {
      error = "'" + item + "' is not TYPE@CHANNEL=STATE[*N] or garbage";
      return {};
    }
    s.type = body.substr(0, at);
    const std::string ch = body.substr(at + 1, eq - at - 1);
    auto [p, ec] = std::from_chars(ch.data(), ch.data() + ch.size(), s.channel);
    if (ec != std::errc() || p != ch.data() + ch.size() || s.channel < 1) {
      error = "bad channel in '" + item + "' (1, 2, ...)";
      return {};
    }
    const std::string state = body.substr(eq + 1);
    if (state == "active") {
      s.state = Step::State::kActive;
    } else if (state == "inactive") {
      s.state = Step::State::kInactive;
    } else if (state == "pulse") {
      s.state = Step::State::kPulse;
    } else {
      error = "bad state in '" + item + "' (active, inactive or pulse)";
      return {};
    }
    steps.push_back(s);
  }
  if (steps.empty()) error = "empty sequence";
  return steps;
}

std::vector<Post> expand(const std::vector<Step>& steps) {
  std::vector<Post> posts;
  std::map<std::pair<std::string, uint32_t>, int> counts;
  for (const Step& s : steps) {
    for (int i = 0; i < s.repeat; ++i) {
      int& c = counts[{s.type, s.channel}];
      c = s.state == Step::State::kInactive ? 0 : c + 1;
      posts.push_back({s, std::max(c, 1)});
    }
  }
  return posts;
}

std::string hikvision_xml(const Post& p) {
  if (p.step.state == Step::State::kGarbage) {
    return "<EventNotificationAlert><eventType>VMD</eventTyp></EventNotificationAlert>";
  }
  const bool active = p.step.state != Step::State::kInactive;
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n"
         "<EventNotificationAlert version=\"2.0\" "
         "xmlns=\"http://www.hikvision.com/ver20/XMLSchema\">\r\n"
         "<ipAddress>127.0.0.1</ipAddress>\r\n<portNo>80</portNo>\r\n<protocol>HTTP</protocol>\r\n"
         "<macAddress>44:19:b6:00:00:01</macAddress>\r\n<channelID>" +
         std::to_string(p.step.channel) + "</channelID>\r\n<dateTime>" + now_iso() +
         "</dateTime>\r\n<activePostCount>" + std::to_string(p.post_count) +
         "</activePostCount>\r\n<eventType>" + p.step.type + "</eventType>\r\n<eventState>" +
         (active ? "active" : "inactive") + "</eventState>\r\n<eventDescription>" + p.step.type +
         " alarm</eventDescription>\r\n</EventNotificationAlert>\r\n";
}

std::string hikvision_heartbeat_xml() {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n"
         "<EventNotificationAlert version=\"2.0\" "
         "xmlns=\"http://www.isapi.org/ver20/XMLSchema\">\r\n"
         "<ipAddress>127.0.0.1</ipAddress>\r\n<channelID>1</channelID>\r\n<dateTime>" +
         now_iso() +
         "</dateTime>\r\n<activePostCount>0</activePostCount>\r\n<eventType>videoloss</eventType>"
         "\r\n<eventState>inactive</eventState>\r\n<eventDescription>videoloss alarm"
         "</eventDescription>\r\n</EventNotificationAlert>\r\n";
}

std::string hikvision_json(const Post& p) {
  if (p.step.state == Step::State::kGarbage) return "{\"eventType\": \"VMD\", \"eventState\": ";
  const bool active = p.step.state != Step::State::kInactive;
  return "{\"ipAddress\":\"127.0.0.1\",\"portNo\":80,\"protocol\":\"HTTP\",\"channelID\":" +
         std::to_string(p.step.channel) + ",\"dateTime\":\"" + now_iso() +
         "\",\"activePostCount\":" + std::to_string(p.post_count) + ",\"eventType\":\"" +
         p.step.type + "\",\"eventState\":\"" + (active ? "active" : "inactive") +
         "\",\"eventDescription\":\"" + p.step.type + " alarm\"}";
}

std::string simple_json(const Post& p) {
  if (p.step.state == Step::State::kGarbage) return "{\"type\": \"motion\", \"active\": \"yes\"}";
  const bool active = p.step.state != Step::State::kInactive;
  return "{\"type\":\"" + p.step.type + "\",\"active\":" + (active ? "true" : "false") +
         ",\"channel\":" + std::to_string(p.step.channel) + ",\"detail\":\"camera_sim post " +
         std::to_string(p.post_count) + "\",\"time\":\"" + now_iso() + "\"}";
}

std::string dahua_text(const Post& p) {
  if (p.step.state == Step::State::kGarbage) return "Code=VideoMotion;action=Sideways;index=0";
  const char* action = p.step.state == Step::State::kActive     ? "Start"
                       : p.step.state == Step::State::kInactive ? "Stop"
                                                                : "Pulse";
  return "Code=" + p.step.type + ";action=" + action +
         ";index=" + std::to_string(p.step.channel - 1);
}

// ---------------------------------------------------------------------------------------------
// StreamCamera

struct StreamCamera::Impl {
  StreamCamera& owner;
  StreamOptions opt;
  Log log;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::thread accept_thread;
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::vector<std::thread> workers;
  std::vector<int> fds;  // open connections, shut down by stop()
  std::vector<Post> posts;
  std::size_t cursor = 0;
  std::set<std::string> nonces;
  std::mt19937_64 rng{std::random_device{}()};

  Impl(StreamCamera& o, StreamOptions options, Log l)
      : owner(o), opt(std::move(options)), log(std::move(l)), posts(expand(opt.sequence)) {}

  void say(const std::string& line) {
    std::lock_guard lock(mu);
    if (log) log(stamp() + " " + line);
  }

  std::string new_nonce() {
    char buf[33];
    std::lock_guard lock(mu);
    std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                  static_cast<unsigned long long>(rng()));
    nonces.insert(buf);
    return buf;
  }

  // Empty when the request may have the stream; else why not.
  std::string check_login(const http::request<http::empty_body>& req) {
    if (opt.auth == StreamOptions::Auth::kNone) return {};
    const std::string auth(req[http::field::authorization]);
    if (auth.empty()) return "no Authorization";
    if (opt.auth == StreamOptions::Auth::kBasic) {
      return auth == "Basic " + base64(opt.user + ":" + opt.password) ? "" : "wrong basic login";
    }
    if (auth.rfind("Digest ", 0) != 0) return "not a Digest answer";
    auto p = auth_params(std::string_view(auth).substr(7));
    {
      std::lock_guard lock(mu);
      if (!nonces.count(p["nonce"])) return "unknown nonce";
    }
    if (p["username"] != opt.user) return "unknown user '" + p["username"] + "'";
    if (p["realm"] != "camera_sim") return "wrong realm";
    if (p["uri"] != std::string(req.target())) return "uri does not match the request";
    if (p["qop"] != "auth" || p["nc"].empty() || p["cnonce"].empty()) return "qop=auth expected";
    const std::string ha1 = md5_hex(opt.user + ":camera_sim:" + opt.password);
    const std::string ha2 = md5_hex("GET:" + std::string(req.target()));
    const std::string expected =
        md5_hex(ha1 + ":" + p["nonce"] + ":" + p["nc"] + ":" + p["cnonce"] + ":auth:" + ha2);
    return p["response"] == expected ? "" : "wrong digest response (password?)";
  }

  bool write(tcp::socket& s, const std::string& bytes) {
    boost::system::error_code ec;
    asio::write(s, asio::buffer(bytes), ec);
    return !ec;
  }

  std::string part(const std::string& text) const {
    std::string p;
    if (opt.vendor == Vendor::kHikvision) {
      p = "--boundary\r\nContent-Type: application/xml; charset=\"UTF-8\"\r\nContent-Length: " +
          std::to_string(text.size()) + "\r\n\r\n" + text + "\r\n";
    } else {
      // Dahua counts the line break after the text in Content-Length.
      p = "--myboundary\r\nContent-Type: text/plain\r\nContent-Length: " +
          std::to_string(text.size() + 2) + "\r\n\r\n" + text + "\r\n";
    }
    if (!opt.chunked) return p;
    char size[20];
    std::snprintf(size, sizeof size, "%zx\r\n", p.size());
    return size + p + "\r\n";
  }

  void serve(int n, tcp::socket& s) {
    beast::flat_buffer buffer;
    boost::system::error_code ec;
    bool granted = false;
    for (int round = 0; round < 3 && !granted; ++round) {
      http::request<http::empty_body> req;
      http::read(s, buffer, req, ec);
      if (ec) {
        say("closed " + std::to_string(n) + ": " + ec.message());
        return;
      }
      say("request " + std::to_string(n) + " " + std::string(req.method_string()) + " " +
          std::string(req.target()));
      const std::string why = check_login(req);
      if (why.empty()) {
        granted = true;
        break;
      }
      std::string challenge = opt.auth == StreamOptions::Auth::kBasic
                                  ? "Basic realm=\"camera_sim\""
                                  : "Digest qop=\"auth\", realm=\"camera_sim\", nonce=\"" +
                                        new_nonce() + "\", stale=\"FALSE\", opaque=\"sim\"";
      const std::string body = "<html>401 Unauthorized</html>";
      say("login " + std::to_string(n) + " refused: " + why);
      if (!write(s, "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/html\r\nContent-Length: " +
                        std::to_string(body.size()) + "\r\nWWW-Authenticate: " + challenge +
                        "\r\n\r\n" + body)) {
        return;
      }
    }
    if (!granted) return;
    const bool hik = opt.vendor == Vendor::kHikvision;
    std::string head = "HTTP/1.1 200 OK\r\nMIME-Version: 1.0\r\nConnection: close\r\n";
    head += hik ? "Content-Type: multipart/mixed; boundary=boundary\r\n"
                : "Content-Type: multipart/x-mixed-replace; boundary=myboundary\r\n";
    if (opt.chunked) head += "Transfer-Encoding: chunked\r\n";
    head += "\r\n";
    if (!write(s, head)) return;
    ++owner.streams_;
    say("stream " + std::to_string(n) + " started (" + (hik ? "hikvision" : "dahua") + ")");

    const auto heartbeat = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(std::max(opt.heartbeat_s, 0.01)));
    const auto interval = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(std::max(opt.interval_s, 0.001)));
    auto next_heartbeat = Clock::now();
    auto next_post = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(opt.start_delay_s));
    int parts = 0;
    while (true) {
      if (!sleep_until(mu, cv, stopping, std::min(next_heartbeat, next_post))) return;
      if (opt.stall_after >= 0 && n <= opt.stall_connections && parts >= opt.stall_after) {
        say("stall " + std::to_string(n) + " after " + std::to_string(parts) + " parts");
        // Silent but open, until the client gives up (or stop()).
        std::array<char, 256> sink{};
        while (!ec) s.read_some(asio::buffer(sink), ec);
        say("closed " + std::to_string(n) + " by the client after the stall");
        return;
      }
      const auto now = Clock::now();
      if (now >= next_heartbeat) {
        if (!write(s, part(hik ? hikvision_heartbeat_xml() : std::string("Heartbeat")))) break;
        ++parts;
        next_heartbeat += heartbeat;
        say("heartbeat " + std::to_string(n));
        continue;
      }
      std::optional<Post> post;
      std::size_t index = 0;
      {
        std::lock_guard lock(mu);
        if (cursor < posts.size()) {
          index = cursor++;
          post = posts[index];
        }
      }
      if (!post) {
        next_post = Clock::now() + std::chrono::hours(24 * 365);
        continue;
      }
      if (!write(s, part(hik ? hikvision_xml(*post) : dahua_text(*post)))) {
        say("closed " + std::to_string(n) + " while sending post " + std::to_string(index + 1));
        return;
      }
      ++parts;
      ++owner.posts_sent_;
      next_post += interval;
      say("sent " + std::to_string(n) + " post " + std::to_string(index + 1) + "/" +
          std::to_string(posts.size()) + " " + describe(*post));
    }
    say("closed " + std::to_string(n));
  }

  void accept_loop() {
    int n = 0;
    while (true) {
      boost::system::error_code ec;
      tcp::socket s(io);
      acceptor.accept(s, ec);
      {
        std::lock_guard lock(mu);
        if (stopping) return;
      }
      if (ec) continue;
      ++n;
      ++owner.connections_;
      const auto peer = s.remote_endpoint(ec);
      say("connection " + std::to_string(n) + " from " + peer.address().to_string() + ":" +
          std::to_string(peer.port()));
      std::lock_guard lock(mu);
      fds.push_back(s.native_handle());
      workers.emplace_back([this, n, sock = std::move(s)]() mutable {
        serve(n, sock);
        // Forget the descriptor before closing it, so stop() never shuts down a reused number.
        std::lock_guard done(mu);
        fds.erase(std::find(fds.begin(), fds.end(), sock.native_handle()));
        boost::system::error_code ignored;
        sock.close(ignored);
      });
    }
  }
};

StreamCamera::StreamCamera(StreamOptions options, Log log)
    : impl_(std::make_unique<Impl>(*this, std::move(options), std::move(log))) {}

StreamCamera::~StreamCamera() { stop(); }

uint16_t StreamCamera::start(uint16_t port) {
  const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen();
  const uint16_t bound = impl_->acceptor.local_endpoint().port();
  impl_->accept_thread = std::thread([this] { impl_->accept_loop(); });
  return bound;
}

void StreamCamera::stop() {
  if (!impl_) return;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return;
    impl_->stopping = true;
    // shutdown() wakes threads blocked in accept() or read() on these sockets.
    if (impl_->acceptor.is_open()) ::shutdown(impl_->acceptor.native_handle(), SHUT_RDWR);
    for (int fd : impl_->fds) ::shutdown(fd, SHUT_RDWR);
  }
  impl_->cv.notify_all();
  if (impl_->accept_thread.joinable()) impl_->accept_thread.join();
  for (auto& t : impl_->workers) {
    if (t.joinable()) t.join();
  }
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
}

bool StreamCamera::sequence_done() const {
  std::lock_guard lock(impl_->mu);
  return impl_->cursor >= impl_->posts.size();
}

// ---------------------------------------------------------------------------------------------
// Push

std::vector<PushResult> push_all(const PushOptions& o, const StreamCamera::Log& log) {
  std::vector<PushResult> results;
  asio::io_context io;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
  auto say = [&](const std::string& line) {
    if (log) log(stamp() + " " + line);
  };
  const std::vector<Post> posts = expand(o.sequence);
  for (std::size_t i = 0; i < posts.size(); ++i) {
    const Post& p = posts[i];
    http::request<http::string_body> req{http::verb::post, o.path, 11};
    req.set(http::field::host, o.host + ":" + std::to_string(o.port));
    req.set(http::field::user_agent, "camera_sim");
    req.keep_alive(true);
    switch (o.format) {
      case PushOptions::Format::kXml:
        req.set(http::field::content_type, "application/xml; charset=\"UTF-8\"");
        req.body() = hikvision_xml(p);
        break;
      case PushOptions::Format::kJson:
        req.set(http::field::content_type, "application/json");
        req.body() = hikvision_json(p);
        break;
      case PushOptions::Format::kSimple:
        req.set(http::field::content_type, "application/json");
        req.body() = simple_json(p);
        break;
      case PushOptions::Format::kDahua:
        req.set(http::field::content_type, "text/plain");
        req.body() = dahua_text(p);
        break;
      case PushOptions::Format::kMultipart: {
        // As Hikvision's HTTP listening push sends an alarm with its picture: the alert part
        // ended by the boundary, the picture with its length (and bytes that look almost like
        // a boundary line, which must not end it).
        req.set(http::field::content_type, "multipart/form-data; boundary=MIME_boundary");
        std::string jpeg = "\xFF\xD8\xFF\xE0";
        jpeg += "\r\n--MIME_boundar\r\n--MIME_boundary_x\r\n";
        while (jpeg.size() < o.image_bytes) jpeg += static_cast<char>(jpeg.size() * 13 % 256);
        jpeg.resize(std::max<std::size_t>(o.image_bytes, 4));
        jpeg[jpeg.size() - 2] = '\xFF';
        jpeg[jpeg.size() - 1] = '\xD9';
        req.body() = "--MIME_boundary\r\nContent-Disposition: form-data; name=\"" + p.step.type +
                     "\"\r\nContent-Type: application/xml\r\n\r\n" + hikvision_xml(p) +
                     "\r\n--MIME_boundary\r\nContent-Disposition: form-data; name=\"" +
                     p.step.type +
                     "Image\"; filename=\"picture.jpg\"\r\n"
                     "Content-Type: image/jpeg\r\nContent-Length: " +
                     std::to_string(jpeg.size()) + "\r\n\r\n" + jpeg + "\r\n--MIME_boundary--\r\n";
        break;
      }
    }
    req.prepare_payload();
    PushResult r;
    for (int attempt = 0; attempt < 2 && r.status == 0; ++attempt) {
      boost::system::error_code ec;
      if (!stream) {
        tcp::resolver resolver(io);
        auto eps = resolver.resolve(o.host, std::to_string(o.port), ec);
        if (ec) break;
        stream.emplace(io);
        stream->connect(eps, ec);
        if (ec) {
          say("post " + std::to_string(i + 1) + " cannot connect: " + ec.message());
          stream.reset();
          break;
        }
        buffer.clear();
      }
      http::write(*stream, req, ec);
      http::response<http::string_body> res;
      if (!ec) http::read(*stream, buffer, res, ec);
      if (ec) {
        stream.reset();  // the server closed a kept-alive connection: once more on a new one
        continue;
      }
      r.status = res.result_int();
      r.reply = trim(res.body().substr(0, res.body().find('\n')));
      if (!res.keep_alive()) stream.reset();
    }
    say("post " + std::to_string(i + 1) + "/" + std::to_string(posts.size()) + " " + describe(p) +
        " -> " + std::to_string(r.status) + " " + r.reply);
    results.push_back(r);
    if (i + 1 < posts.size()) {
      std::this_thread::sleep_for(std::chrono::duration<double>(o.interval_s));
    }
  }
  return results;
}

}  // namespace gw::sim::camera
