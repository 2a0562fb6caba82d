#include "tools/sim/gate_sim_core.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>

namespace gw::sim {

namespace u = protocols::uhppote;

namespace {

constexpr int kRecordRegs = 8;
constexpr int kStatusRegs = 8;
constexpr std::size_t kMaxModbusFrame = 260;

uint32_t now_s() { return static_cast<uint32_t>(std::time(nullptr)); }

u::DateTime local_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  return {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec};
}

bool parse_ipv4_port(const std::string& text, std::array<uint8_t, 4>& ip, uint16_t& port) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  in_addr a{};
  if (inet_pton(AF_INET, text.substr(0, colon).c_str(), &a) != 1) return false;
  const long p = std::strtol(text.c_str() + colon + 1, nullptr, 10);
  if (p <= 0 || p > 65535) return false;
  std::memcpy(ip.data(), &a, 4);
  port = static_cast<uint16_t>(p);
  return true;
}

int bind_socket(const std::string& host, uint16_t port, int type, uint16_t& bound) {
  const int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1 ||
      bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      (type == SOCK_STREAM && listen(fd, 16) != 0)) {
    close(fd);
    return -1;
  }
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  bound = ntohs(a.sin_port);
  return fd;
}

}  // namespace

Passage passage(uint32_t seed, uint64_t n) {
  Passage p;
  p.n = n;
  // 104729 is prime and shares no factor with 80,000,000 = 2^10 * 5^7: n -> card is one-to-one
  // for n below 80 million, whatever the seed.
  p.card = static_cast<uint32_t>(10000000 + (uint64_t{seed} * 7919 + n * 104729) % 80000000);
  p.granted = n % 10 != 0;
  p.in = n % 2 == 1;
  return p;
}

GateSim::GateSim(GateSimOptions options)
    : options_(std::move(options)),
      rate_(options_.rate),
      reply_delay_ms_(options_.reply_delay_ms),
      ring_(options_.log_size) {
  if (!options_.listener.empty()) {
    has_listener_ = parse_ipv4_port(options_.listener, listener_ip_, listener_port_);
  }
}

GateSim::~GateSim() { stop(); }

Status GateSim::start() {
  if (pipe2(wake_, O_NONBLOCK | O_CLOEXEC) != 0)
    return Status::io_error("pipe: " + std::string(strerror(errno)));
  if (options_.modbus) {
    modbus_fd_ = bind_socket(options_.bind, options_.modbus_port, SOCK_STREAM, modbus_port_);
    if (modbus_fd_ < 0) {
      return Status::io_error("modbus: cannot listen on " + options_.bind + ":" +
                              std::to_string(options_.modbus_port) + ": " + strerror(errno));
    }
  }
  if (options_.uhppote) {
    udp_fd_ = bind_socket(options_.bind, options_.uhppote_port, SOCK_DGRAM, uhppote_port_);
    if (udp_fd_ < 0) {
      return Status::io_error("uhppote: cannot bind " + options_.bind + ":" +
                              std::to_string(options_.uhppote_port) + ": " + strerror(errno));
    }
  }
  if (!options_.passages_log.empty()) {
    passages_log_ = std::fopen(options_.passages_log.c_str(), "w");
    if (!passages_log_) {
      return Status::io_error("cannot write " + options_.passages_log + ": " + strerror(errno));
    }
  }
  thread_ = std::thread([this] { serve(); });
  return Status::ok();
}

void GateSim::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (wake_[1] >= 0) {
    const char b = 'x';
    [[maybe_unused]] auto n = write(wake_[1], &b, 1);
  }
  if (thread_.joinable()) thread_.join();
  for (Client& c : clients_) close(c.fd);
  clients_.clear();
  for (int* fd : {&modbus_fd_, &udp_fd_, &wake_[0], &wake_[1]}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
  if (passages_log_) std::fclose(passages_log_);
  passages_log_ = nullptr;
}

uint64_t GateSim::pass(uint64_t count) {
  std::lock_guard lock(mu_);
  record_locked(count);
  return passages_;
}

void GateSim::record_locked(uint64_t count) {
  for (uint64_t k = 0; k < count; ++k) {
    const Passage p = passage(options_.seed, ++passages_);
    const uint32_t t = now_s();
    uint32_t modbus_index = 0;
    uint32_t uhppote_index = 0;
    if (options_.modbus) {
      modbus_index = ++modbus_newest_;
      ring_[modbus_index % ring_.size()] = {modbus_index, t, p.card,
                                            static_cast<uint16_t>(p.granted ? 1 : 2),
                                            static_cast<uint16_t>(p.in ? 1 : 2)};
      if (p.granted) ++(p.in ? count_in_ : count_out_);
    }
    if (options_.uhppote) {
      u::EventRecord r;
      r.index = uhppote_index = uhppote_next_++;
      r.type = u::kTypeSwipe;
      r.granted = p.granted;
      r.door = 1;
      r.direction = p.in ? u::kDirectionIn : u::kDirectionOut;
      r.card = p.card;
      r.timestamp = local_now();
      r.reason = p.granted ? u::kReasonSwipe : u::kReasonNoPrivilege;
      events_.push_back(r);
      while (events_.size() > options_.uhppote_log_size) events_.pop_front();
      push_locked();
    }
    if (passages_log_) {
      std::fprintf(
          passages_log_,
          "{\"n\":%llu,\"card\":%u,\"granted\":%s,\"direction\":\"%s\",\"modbus_index\":%u,"
          "\"uhppote_index\":%u,\"t\":%u}\n",
          static_cast<unsigned long long>(p.n), p.card, p.granted ? "true" : "false",
          p.in ? "in" : "out", modbus_index, uhppote_index, t);
      std::fflush(passages_log_);
    }
  }
}

void GateSim::set_door(bool open) {
  std::lock_guard lock(mu_);
  door_open_ = open;
}

void GateSim::reset_logs() {
  std::lock_guard lock(mu_);
  modbus_newest_ = 0;
  std::fill(ring_.begin(), ring_.end(), ModbusRecord{});
  events_.clear();
  uhppote_next_ = 1;
  uhppote_event_index_ = 0;
}

void GateSim::set_mute(bool muted) {
  std::lock_guard lock(mu_);
  muted_ = muted;
}

void GateSim::set_rate(double per_second) {
  {
    std::lock_guard lock(mu_);
    rate_ = per_second;
  }
  const char b = 'r';
  [[maybe_unused]] auto n = write(wake_[1], &b, 1);
}

void GateSim::set_reply_delay(int ms) {
  std::lock_guard lock(mu_);
  reply_delay_ms_ = ms;
}

uint64_t GateSim::passages() const {
  std::lock_guard lock(mu_);
  return passages_;
}
uint64_t GateSim::modbus_newest() const {
  std::lock_guard lock(mu_);
  return modbus_newest_;
}
uint64_t GateSim::uhppote_newest() const {
  std::lock_guard lock(mu_);
  return events_.empty() ? 0 : events_.back().index;
}
uint64_t GateSim::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

void GateSim::serve() {
  using Clock = std::chrono::steady_clock;
  Clock::time_point next_auto = Clock::now();
  double carry = 0;  // fractional passages owed by the rate
  for (;;) {
    std::vector<pollfd> fds;
    fds.push_back({wake_[0], POLLIN, 0});
    if (modbus_fd_ >= 0) fds.push_back({modbus_fd_, POLLIN, 0});
    if (udp_fd_ >= 0) fds.push_back({udp_fd_, POLLIN, 0});
    const std::size_t first_client = fds.size();
    for (const Client& c : clients_) fds.push_back({c.fd, POLLIN, 0});
    double rate = 0;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      rate = rate_;
    }
    int timeout_ms = -1;
    if (rate > 0) {
      const auto wait =
          std::chrono::duration_cast<std::chrono::milliseconds>(next_auto - Clock::now());
      timeout_ms = static_cast<int>(std::max<int64_t>(0, wait.count()));
    }
    const int n = ::poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) return;
    if (rate > 0 && Clock::now() >= next_auto) {
      // Automatic passages: in 10 ms steps, owed ones carried over, so the long-run rate holds.
      carry += rate * 0.01;
      const auto due = static_cast<uint64_t>(std::floor(carry));
      carry -= static_cast<double>(due);
      if (due > 0) pass(due);
      next_auto += std::chrono::milliseconds(10);
      if (next_auto < Clock::now()) next_auto = Clock::now() + std::chrono::milliseconds(10);
    }
    if (n <= 0) continue;
    if (fds[0].revents) {
      char buf[64];
      while (read(wake_[0], buf, sizeof buf) > 0) {
      }
    }
    for (std::size_t i = 1; i < first_client; ++i) {
      if (!fds[i].revents) continue;
      if (fds[i].fd == modbus_fd_) {
        for (;;) {
          const int c = accept4(modbus_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          clients_.push_back({c, {}});
        }
      } else if (fds[i].fd == udp_fd_) {
        serve_uhppote();
      }
    }
    // Clients accepted above are not in fds yet; only the polled ones are served.
    std::vector<int> closed;
    for (std::size_t i = first_client; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      Client& c = clients_[i - first_client];
      uint8_t buf[512];
      const ssize_t got = read(c.fd, buf, sizeof buf);
      if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        closed.push_back(c.fd);
        continue;
      }
      c.in.insert(c.in.end(), buf, buf + got);
      serve_modbus(c);
      if (c.in.size() > kMaxModbusFrame) closed.push_back(c.fd);  // not Modbus TCP
    }
    for (int fd : closed) {
      close(fd);
      std::erase_if(clients_, [fd](const Client& c) { return c.fd == fd; });
    }
  }
}

// ---- Modbus TCP: FC 3 and 4 over the status block and the log window ----

bool GateSim::modbus_register(uint32_t a, uint16_t& v) const {
  const uint32_t sb = options_.status_base;
  if (a >= sb && a < sb + kStatusRegs) {
    const uint32_t in = count_in_, out = count_out_, newest = modbus_newest_;
    const uint16_t block[kStatusRegs] = {
        static_cast<uint16_t>(door_open_ ? 1 : 0), static_cast<uint16_t>(door_open_ ? 1 : 0),
        static_cast<uint16_t>(in >> 16),           static_cast<uint16_t>(in),
        static_cast<uint16_t>(out >> 16),          static_cast<uint16_t>(out),
        static_cast<uint16_t>(newest >> 16),       static_cast<uint16_t>(newest)};
    v = block[a - sb];
    return true;
  }
  const uint32_t lb = options_.log_base;
  if (a >= lb && a < lb + ring_.size() * kRecordRegs) {
    const ModbusRecord& r = ring_[(a - lb) / kRecordRegs];
    const uint16_t rec[kRecordRegs] = {static_cast<uint16_t>(r.index >> 16),
                                       static_cast<uint16_t>(r.index),
                                       static_cast<uint16_t>(r.time >> 16),
                                       static_cast<uint16_t>(r.time),
                                       static_cast<uint16_t>(r.card >> 16),
                                       static_cast<uint16_t>(r.card),
                                       r.result,
                                       r.direction};
    v = rec[(a - lb) % kRecordRegs];
    return true;
  }
  return false;
}

std::vector<uint8_t> GateSim::modbus_reply(const uint8_t* f, std::size_t len) {
  // f: MBAP (7 bytes) + PDU.
  std::vector<uint8_t> out(f, f + 7);
  const uint8_t fc = f[7];
  auto exception = [&](uint8_t code) {
    out.push_back(static_cast<uint8_t>(fc | 0x80));
    out.push_back(code);
  };
  if ((fc == 3 || fc == 4) && len == 12) {
    const uint32_t start = f[8] << 8 | f[9];
    const uint32_t count = f[10] << 8 | f[11];
    if (count < 1 || count > 125) {
      exception(3);
    } else {
      std::vector<uint16_t> values(count);
      bool ok = true;
      for (uint32_t k = 0; k < count && ok; ++k) ok = modbus_register(start + k, values[k]);
      if (!ok) {
        exception(2);
      } else {
        out.push_back(fc);
        out.push_back(static_cast<uint8_t>(count * 2));
        for (uint16_t v : values) {
          out.push_back(static_cast<uint8_t>(v >> 8));
          out.push_back(static_cast<uint8_t>(v));
        }
      }
    }
  } else if (fc == 3 || fc == 4) {
    exception(3);
  } else {
    exception(1);
  }
  const std::size_t pdu_and_unit = out.size() - 6;
  out[4] = static_cast<uint8_t>(pdu_and_unit >> 8);
  out[5] = static_cast<uint8_t>(pdu_and_unit);
  return out;
}

void GateSim::serve_modbus(Client& c) {
  for (;;) {
    if (c.in.size() < 7) return;
    const std::size_t length = c.in[4] << 8 | c.in[5];
    if (c.in[2] != 0 || c.in[3] != 0 || length < 2 || length > 254) {
      c.in.assign(kMaxModbusFrame + 1, 0);  // not Modbus TCP: the caller closes it
      return;
    }
    const std::size_t total = 6 + length;
    if (c.in.size() < total) return;
    std::vector<uint8_t> reply;
    int delay_ms = 0;
    {
      std::lock_guard lock(mu_);
      if (!muted_) {
        ++requests_;
        reply = modbus_reply(c.in.data(), total);
        delay_ms = reply_delay_ms_;
      }
    }
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    c.in.erase(c.in.begin(), c.in.begin() + static_cast<std::ptrdiff_t>(total));
    if (!reply.empty()) {
      [[maybe_unused]] auto n = send(c.fd, reply.data(), reply.size(), MSG_NOSIGNAL);
    }
  }
}

// ---- UHPPOTE: get-status, get-event, get/set-event-index, set-listener ----

u::ControllerStatus GateSim::uhppote_status_locked() const {
  u::ControllerStatus s;
  s.serial = options_.serial_number;
  if (!events_.empty()) s.event = events_.back();
  s.door_open = {door_open_, false, false, false};
  s.system_time = local_now();
  s.sequence = static_cast<uint32_t>(requests_);
  return s;
}

void GateSim::push_locked() {
  if (!has_listener_ || udp_fd_ < 0) return;
  const u::Packet p = u::pushed_event(uhppote_status_locked());
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(listener_port_);
  std::memcpy(&to.sin_addr, listener_ip_.data(), 4);
  sendto(udp_fd_, p.data(), p.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
}

void GateSim::serve_uhppote() {
  for (;;) {
    uint8_t buf[256];
    sockaddr_in from{};
    socklen_t from_len = sizeof from;
    const ssize_t got =
        recvfrom(udp_fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (got < 0) return;
    auto rq = u::decode_request(std::span<const uint8_t>(buf, static_cast<std::size_t>(got)));
    if (!rq || rq->serial != options_.serial_number) continue;  // not for us: no answer
    std::optional<u::Packet> reply;
    int delay_ms = 0;
    {
      std::lock_guard lock(mu_);
      if (muted_) continue;
      ++requests_;
      delay_ms = reply_delay_ms_;
      const uint32_t serial = options_.serial_number;
      switch (rq->function) {
        case u::kGetStatus:
          reply = u::status_reply(uhppote_status_locked());
          break;
        case u::kGetEvent: {
          // uhppote-simulator entities/eventslist.go, Get(): 0 = oldest, 0xFFFFFFFF = newest,
          // below the oldest = overwritten (type 0xFF), past the newest = an empty record.
          u::EventRecord r;
          if (events_.empty()) {
          } else if (rq->index == u::kFirstEvent) {
            r = events_.front();
          } else if (rq->index == u::kLastEvent) {
            r = events_.back();
          } else if (rq->index < events_.front().index) {
            r.index = rq->index;
            r.type = u::kTypeOverwritten;
          } else if (rq->index <= events_.back().index) {
            r = events_[rq->index - events_.front().index];
          }
          reply = u::event_reply(serial, r);
          break;
        }
        case u::kGetEventIndex:
          reply = u::event_index_reply(serial, uhppote_event_index_);
          break;
        case u::kSetEventIndex: {
          const bool changed = rq->magic_ok && rq->index != uhppote_event_index_;
          if (changed) uhppote_event_index_ = rq->index;
          reply = u::set_event_index_reply(serial, changed);
          break;
        }
        case u::kSetListener:
          listener_ip_ = rq->address;
          listener_port_ = rq->port;
          has_listener_ = rq->port != 0;
          reply = u::set_listener_reply(serial, true);
          break;
        default:
          break;  // functions this simulator does not play: no answer, like an old firmware
      }
    }
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    if (reply) {
      sendto(udp_fd_, reply->data(), reply->size(), 0, reinterpret_cast<sockaddr*>(&from),
             from_len);
    }
  }
}

}  // namespace gw::sim
