#include "drivers/gate/uhppote_source.h"

#include <ctime>
#include <vector>

namespace gw::drivers {

namespace v1 = campus::gateway::v1;
namespace u = protocols::uhppote;
using boost::system::error_code;

namespace {

constexpr int kAttempts = 2;              // UDP loses datagrams; one retry before failing
constexpr int kMaxEntriesPerRound = 500;  // then the core gets a turn (pushed events, stop)
constexpr std::size_t kEmitBatch = 100;   // entries handed to the gateway in one go

std::string function_name(uint8_t f) {
  switch (f) {
    case u::kGetStatus:
      return "get-status";
    case u::kGetEvent:
      return "get-event";
    case u::kGetEventIndex:
      return "get-event-index";
    case u::kSetEventIndex:
      return "set-event-index";
    case u::kSetListener:
      return "set-listener";
    default:
      return "function " + std::to_string(f);
  }
}

int64_t local_time_us(const u::DateTime& t) {
  std::tm tm{};
  tm.tm_year = t.year - 1900;
  tm.tm_mon = t.month - 1;
  tm.tm_mday = t.day;
  tm.tm_hour = t.hour;
  tm.tm_min = t.minute;
  tm.tm_sec = t.second;
  tm.tm_isdst = -1;  // the zone's rules decide, as for any local wall-clock time
  const std::time_t s = std::mktime(&tm);
  return s == static_cast<std::time_t>(-1) ? 0 : static_cast<int64_t>(s) * 1000000;
}

std::string stamp_of(const u::EventRecord& r) {
  return r.timestamp ? r.timestamp->digits() : std::string();
}

}  // namespace

UhppoteSource::UhppoteSource(UhppoteSettings settings, asio::any_io_executor core)
    : settings_(std::move(settings)),
      core_(core),
      socket_(core),
      listener_(core),
      poll_timer_(core),
      deadline_(core) {}

UhppoteSource::~UhppoteSource() = default;

void UhppoteSource::start(SourceCallbacks callbacks, std::string cursor) {
  cb_ = std::move(callbacks);
  if (!cursor.empty()) {
    auto parsed = gate::parse_cursor(cursor);
    if (parsed) {
      cursor_ = *parsed;
      have_cursor_ = true;
    } else {
      note("cursor", parsed.status().message() + "; starting after the newest entry");
    }
  }
  auto self = shared_from_this();
  asio::co_spawn(
      core_, [self] { return self->run(); }, asio::detached);
  if (!settings_.listen_host.empty()) {
    asio::co_spawn(
        core_, [self] { return self->listen(); }, asio::detached);
  }
}

void UhppoteSource::stop() {
  if (stopped_) return;
  stopped_ = true;
  error_code ignored;
  socket_.close(ignored);
  listener_.close(ignored);
  poll_timer_.cancel();
  deadline_.cancel();
}

void UhppoteSource::note(std::string_view kind, const std::string& message) {
  if (!stopped_ && cb_.bad_input) cb_.bad_input(kind, message);
}

void UhppoteSource::trace(bool tx, std::span<const uint8_t> bytes, const std::string& what) {
  if (!stopped_ && cb_.trace) cb_.trace(tx, bytes, what);
}

asio::awaitable<void> UhppoteSource::run() {
  auto self = shared_from_this();  // the coroutine keeps the source alive until it ends
  while (!stopped_) {
    bool more = false;
    if (!socket_.is_open()) {
      error_code ec;
      asio::ip::udp::resolver resolver(core_);
      auto endpoints =
          co_await resolver.async_resolve(settings_.host, std::to_string(settings_.port),
                                          asio::redirect_error(asio::use_awaitable, ec));
      if (stopped_) co_return;
      if (!ec && !endpoints.empty()) {
        const auto endpoint = endpoints.begin()->endpoint();
        socket_.open(endpoint.protocol(), ec);
        // Connected UDP: the kernel drops datagrams from anyone but the controller, and a
        // closed port comes back as "connection refused" instead of a timeout.
        if (!ec) socket_.connect(endpoint, ec);
        if (ec) socket_.close();
      } else if (!ec) {
        ec = asio::error::host_not_found;
      }
      if (ec) {
        error_ = "controller " + settings_.host + ":" + std::to_string(settings_.port) + ": " +
                 ec.message();
        on_failure();
      }
    }
    if (socket_.is_open() && !co_await sync(more)) on_failure();
    if (stopped_) co_return;
    if (!more && !wake_) {
      error_code ec;
      poll_timer_.expires_after(settings_.poll);
      co_await poll_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    wake_ = false;
  }
}

void UhppoteSource::on_failure() {
  ++failures_;
  if (failures_ >= settings_.offline_after && (link_up_ || !link_known_)) {
    link_up_ = false;
    link_known_ = true;
    if (cb_.link && !stopped_) cb_.link(false, error_);
  }
}

asio::awaitable<std::optional<u::Packet>> UhppoteSource::exchange(const Packet& request) {
  auto self = shared_from_this();
  const uint8_t function = request[1];
  const uint32_t index = static_cast<uint32_t>(request[8]) | request[9] << 8 | request[10] << 16 |
                         static_cast<uint32_t>(request[11]) << 24;
  std::string what = function_name(function);
  if (function == u::kGetEvent) what += " " + std::to_string(index);
  const std::string where = settings_.host + ":" + std::to_string(settings_.port);
  error_ = what + " to " + where + ": no answer within " +
           std::to_string(settings_.timeout.count()) + "ms (" + std::to_string(kAttempts) +
           " attempts)";
  for (int attempt = 0; attempt < kAttempts && !stopped_; ++attempt) {
    error_code ec;
    // A late answer to an earlier request must not be taken for this one (get-event 0 accepts
    // any index): drop whatever is already queued.
    while (socket_.available(ec) > 0 && !ec) {
      std::array<uint8_t, 128> stale;
      socket_.receive(asio::buffer(stale), 0, ec);
    }
    ec.clear();
    co_await socket_.async_send(asio::buffer(request),
                                asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_) co_return std::nullopt;
    if (ec) {
      error_ = what + " to " + where + ": " + ec.message();
      continue;
    }
    trace(true, request, what);
    const uint64_t generation = ++deadline_generation_;
    deadline_.expires_after(settings_.timeout);
    deadline_.async_wait([this, self, generation](const error_code& e) {
      // A deadline that fired after its request was answered must not cancel the next one.
      if (!e && generation == deadline_generation_ && !stopped_) socket_.cancel();
    });
    Packet reply{};
    for (;;) {
      std::array<uint8_t, 128> buf;  // larger than a packet, so an oversized datagram shows
      const std::size_t n = co_await socket_.async_receive(
          asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
      if (stopped_) co_return std::nullopt;
      if (ec == asio::error::operation_aborted) break;  // the deadline passed
      if (ec) {
        error_ = what + " to " + where + ": " + ec.message();
        ++deadline_generation_;
        deadline_.cancel();
        break;
      }
      const std::span<const uint8_t> got(buf.data(), n);
      trace(false, got, "reply to " + what);
      auto header = u::decode_header(got);
      if (!header) {
        note("protocol", "answer to " + what + ": " + header.status().message());
        continue;
      }
      if (header->function != function || header->serial != settings_.serial_number) {
        // A late answer to an earlier request, or another controller behind the same address.
        if (header->serial != settings_.serial_number) {
          note("protocol", "answer from controller " + std::to_string(header->serial) +
                               ", configured serial_number is " +
                               std::to_string(settings_.serial_number));
        }
        continue;
      }
      if (function == u::kGetEvent && index != u::kFirstEvent && index != u::kLastEvent) {
        const uint32_t got_index = static_cast<uint32_t>(got[8]) | got[9] << 8 | got[10] << 16 |
                                   static_cast<uint32_t>(got[11]) << 24;
        const bool none = got_index == 0 && got[12] == u::kTypeNone;
        if (got_index != index && !none && got[12] != u::kTypeOverwritten) continue;  // late
      }
      std::copy(got.begin(), got.end(), reply.begin());
      ++deadline_generation_;
      deadline_.cancel();
      co_return reply;
    }
  }
  co_return std::nullopt;
}

asio::awaitable<std::optional<u::EventRecord>> UhppoteSource::get_event(uint32_t index) {
  auto reply = co_await exchange(u::get_event_request(settings_.serial_number, index));
  if (!reply) co_return std::nullopt;
  auto record = u::decode_event(*reply);
  if (!record) {
    error_ = "get-event " + std::to_string(index) + ": " + record.status().message();
    note("protocol", error_);
    co_return std::nullopt;
  }
  co_return *record;
}

void UhppoteSource::on_status(const u::ControllerStatus& status) {
  if (!have_cursor_) {
    // First start: the newest entry is the starting point; its position commits with the
    // first event (the door state, emitted just below).
    cursor_ = {status.event.index, status.event.index ? stamp_of(status.event) : std::string()};
    have_cursor_ = true;
    pending_baseline_ = true;
  }
  const bool open = status.door_open[0];
  if (door_open_ != open) {
    door_open_ = open;
    SourceEvent e;
    v1::MeterValue* v = e.event.mutable_meter()->add_values();
    v->set_name("door_open");
    v->set_value(open ? 1.0 : 0.0);
    v->set_quality(v1::GOOD);
    if (pending_baseline_) {
      e.cursor = gate::format_cursor(cursor_);
      pending_baseline_ = false;
    }
    if (!stopped_) cb_.event(std::move(e));
  }
}

asio::awaitable<bool> UhppoteSource::sync(bool& more) {
  auto self = shared_from_this();
  struct Busy {
    bool& flag;
    explicit Busy(bool& f) : flag(f) { flag = true; }
    ~Busy() { flag = false; }
  } busy(busy_);

  auto reply = co_await exchange(u::get_status_request(settings_.serial_number));
  if (!reply) co_return false;
  auto status = u::decode_status(*reply);
  if (!status) {
    error_ = "get-status: " + status.status().message();
    note("protocol", error_);
    co_return false;
  }
  const uint64_t newest = status->event.index;
  const bool fresh_link = !link_up_;
  failures_ = 0;
  if (fresh_link) {
    // What the log holds now was recorded while nobody was reading it.
    link_up_ = true;
    link_known_ = true;
    historical_until_ = newest;
    if (cb_.link) cb_.link(true, {});
  }
  on_status(*status);
  if (stopped_ || pending_baseline_) co_return true;

  gate::CatchUp plan = gate::plan_catch_up(cursor_, 0, newest);
  if (plan.reset) {
    note("reset",
         gate::reset_message(cursor_, newest, "its newest index is below the last index read"));
    cursor_ = {};
    if (!fresh_link) historical_until_ = 0;
  } else if (plan.verify) {
    auto at_cursor = co_await get_event(static_cast<uint32_t>(cursor_.index));
    if (!at_cursor) co_return false;
    if (at_cursor->type != u::kTypeOverwritten && at_cursor->index == cursor_.index &&
        stamp_of(*at_cursor) != cursor_.stamp) {
      note("reset", gate::reset_message(cursor_, newest,
                                        "the entry at index " + std::to_string(cursor_.index) +
                                            " is not the one read before"));
      cursor_ = {};
      if (!fresh_link) historical_until_ = 0;
    }
  }

  // Entries are handed over in groups: what is emitted in one turn of the core loop commits in
  // one transaction, so a backfill does not pay a disk sync per entry. Fetched but not yet
  // emitted entries are simply read again after a crash (the cursor moves only with emits).
  std::vector<u::EventRecord> batch;
  auto flush = [&] {
    for (const u::EventRecord& r : batch) emit_record(r, r.index <= historical_until_);
    batch.clear();
  };
  uint64_t next = cursor_.index + 1;
  for (int count = 0; next <= newest && count < kMaxEntriesPerRound && !stopped_;) {
    auto record = co_await get_event(static_cast<uint32_t>(next));
    if (!record) {
      flush();
      co_return false;
    }
    if (record->type == u::kTypeOverwritten) {
      flush();
      // Overwritten before it was read: ask where the log starts now and skip to it, once.
      auto first = co_await get_event(u::kFirstEvent);
      if (!first) co_return false;
      if (first->index <= next || first->type == u::kTypeOverwritten) {
        note("protocol", "controller reports entry " + std::to_string(next) +
                             " overwritten but its oldest entry is " +
                             std::to_string(first->index));
        co_return true;
      }
      note("gap", gate::lost_message(first->index - next, next, first->index - 1));
      cursor_ = {first->index - 1, {}};
      next = first->index;
      continue;
    }
    if (record->index != next) {
      flush();
      note("protocol", "get-event " + std::to_string(next) +
                           " returned no entry, but the newest index is " + std::to_string(newest));
      co_return true;
    }
    batch.push_back(*record);
    ++next;
    ++count;
    if (batch.size() >= kEmitBatch) flush();
  }
  flush();
  more = next <= newest;
  co_return true;
}

void UhppoteSource::emit_record(const u::EventRecord& r, bool historical) {
  if (stopped_) return;
  SourceEvent e;
  v1::Event& ev = e.event;
  ev.set_historical(historical);
  if (r.timestamp) ev.set_device_time_us(local_time_us(*r.timestamp));
  v1::AccessBody* a = ev.mutable_access();
  if (r.type == u::kTypeSwipe) {
    a->set_credential(std::to_string(r.card));
    a->set_result(r.granted ? v1::GRANTED : v1::DENIED);
  } else {
    // Door, button, alarm and remote-open records: no card was read; the reason says what.
    a->set_result(v1::RESULT_UNKNOWN);
  }
  a->set_reason(u::reason_text(r.reason));
  if (r.direction == u::kDirectionIn) a->set_direction(v1::IN);
  if (r.direction == u::kDirectionOut) a->set_direction(v1::OUT);
  if (r.door > 1) {
    a->set_door((settings_.door.empty() ? std::string("door") : settings_.door) + "-" +
                std::to_string(r.door));
  }
  cursor_ = {r.index, stamp_of(r)};
  e.cursor = gate::format_cursor(cursor_);
  cb_.event(std::move(e));
}

asio::awaitable<void> UhppoteSource::listen() {
  auto self = shared_from_this();
  error_code ec;
  const auto address = asio::ip::make_address(settings_.listen_host, ec);
  const asio::ip::udp::endpoint local(address, settings_.listen_port);
  if (!ec) listener_.open(local.protocol(), ec);
  if (!ec) listener_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) listener_.bind(local, ec);
  if (ec) {
    note("listen", "cannot listen for pushed events on " + settings_.listen_host + ":" +
                       std::to_string(settings_.listen_port) + ": " + ec.message() +
                       "; polling only");
    co_return;
  }
  std::array<uint8_t, 128> buf;
  while (!stopped_) {
    asio::ip::udp::endpoint sender;
    const std::size_t n = co_await listener_.async_receive_from(
        asio::buffer(buf), sender, asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_ || ec == asio::error::operation_aborted) co_return;
    if (ec) continue;  // e.g. an ICMP error for an earlier datagram: nothing to read
    const std::span<const uint8_t> got(buf.data(), n);
    trace(false, got, "pushed event");
    auto status = u::decode_status(got);
    if (!status) {
      note("protocol",
           "pushed packet from " + sender.address().to_string() + ": " + status.status().message());
      continue;
    }
    if (status->serial != settings_.serial_number) {
      note("protocol", "pushed event from controller " + std::to_string(status->serial) +
                           ", configured serial_number is " +
                           std::to_string(settings_.serial_number));
      continue;
    }
    const u::EventRecord& r = status->event;
    if (have_cursor_ && !pending_baseline_) on_status(*status);  // door state, on change
    if (!busy_ && link_up_ && have_cursor_ && !pending_baseline_ && r.index == cursor_.index + 1 &&
        r.type != u::kTypeNone) {
      emit_record(r, false);
    } else if (r.index != cursor_.index) {
      // Not the next entry (a round is reading, or entries came in between): catch up by index.
      wake_ = true;
      if (!busy_) poll_timer_.cancel();
    }
  }
}

}  // namespace gw::drivers
