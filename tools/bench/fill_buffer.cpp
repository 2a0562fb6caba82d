// fill_buffer: writes N telemetry events into a gatewayd buffer file (as the router would) and
// reports the bare SQLite rates of this machine: batched insert, and lease-and-ack of the same
// rows. Used by the benchmarks to make a backlog without waiting for devices.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "storage/event_buffer.h"

namespace v1 = campus::gateway::v1;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: fill_buffer BUFFER_FILE EVENTS BATCH\n");
    return 2;
  }
  const std::string path = argv[1];
  const long events = std::strtol(argv[2], nullptr, 10);
  const long batch = std::strtol(argv[3], nullptr, 10);
  if (events <= 0 || batch <= 0) {
    std::fprintf(stderr, "fill_buffer: EVENTS and BATCH must be positive\n");
    return 2;
  }
  auto opened = gw::storage::EventBuffer::open(path);
  if (!opened) {
    std::fprintf(stderr, "fill_buffer: %s\n", opened.status().message().c_str());
    return 1;
  }
  auto& buffer = *opened.value();
  const int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count();
  std::vector<gw::storage::BufferedEvent> rows;
  const auto start = std::chrono::steady_clock::now();
  for (long done = 0; done < events;) {
    rows.clear();
    for (long i = 0; i < batch && done < events; ++i, ++done) {
      v1::Event e;
      e.set_seq(buffer.next_seq() + rows.size());
      e.set_device_id("meter-" + std::to_string(done % 50));
      e.set_kind(v1::ENERGY_METER);
      e.set_event_class(v1::TELEMETRY);
      e.set_gateway_time_us(now_us - (events - done));
      auto* v = e.mutable_meter()->add_values();
      v->set_name("energy_total");
      v->set_value(1000.0 + double(done) * 0.01);
      v->set_unit("kWh");
      v->set_quality(v1::GOOD);
      gw::storage::BufferedEvent row;
      row.seq = e.seq();
      row.event_class = v1::TELEMETRY;
      row.device_id = e.device_id();
      row.gateway_time_us = e.gateway_time_us();
      row.payload = e.SerializeAsString();
      rows.push_back(std::move(row));
    }
    if (auto s = buffer.append_batch(rows); !s) {
      std::fprintf(stderr, "fill_buffer: %s\n", s.message().c_str());
      return 1;
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("fill_buffer events=%ld batch=%ld seconds=%.3f insert_rate=%.0f\n", events, batch,
              secs, double(events) / secs);
  return 0;
}
