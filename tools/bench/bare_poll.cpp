// bare_poll: the floor of the polling workload W(N). Reads REGS holding registers from each of N
// Modbus TCP devices once per period with libmodbus (one connection per device, kept open) and
// publishes each reading at QoS 1 with Paho — nothing else: no storage, no decoding, no config.
// Polls are spread evenly over the period, as gatewayd spreads its devices. One thread polls;
// Paho runs its own. Runs for --seconds, then prints one line of totals.
//
//   bare_poll --ports-file FILE --uri URI [--seconds S] [--period-ms P] [--registers R]
//
// The ports file is modbus_tcp_sim's (`listening INDEX PORT` per line). libmodbus 3.1.6 waits with
// select(): the MQTT connection is opened first so that device sockets stay below FD_SETSIZE for
// the 1,000 devices of W(1000).
#include <modbus/modbus.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <mqtt/async_client.h>

using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  std::string ports_file, uri;
  double seconds = 20;
  long period_ms = 1000;
  int regs = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i], v = argv[i + 1];
    if (f == "--ports-file") ports_file = v;
    else if (f == "--uri") uri = v;
    else if (f == "--seconds") seconds = std::atof(v.c_str());
    else if (f == "--period-ms") period_ms = std::atol(v.c_str());
    else if (f == "--registers") regs = std::atoi(v.c_str());
    else {
      std::fprintf(stderr, "bare_poll: unknown flag '%s'\n", f.c_str());
      return 2;
    }
  }
  if (ports_file.empty() || uri.empty() || seconds <= 0 || period_ms <= 0 || regs < 1 ||
      regs > 125) {
    std::fprintf(stderr, "usage: bare_poll --ports-file FILE --uri URI [--seconds S] "
                         "[--period-ms P] [--registers 1..125]\n");
    return 2;
  }
  std::vector<int> ports;
  {
    std::ifstream in(ports_file);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream s(line);
      std::string word;
      int index = 0, port = 0;
      if (s >> word >> index >> port && word == "listening") ports.push_back(port);
    }
  }
  if (ports.empty()) {
    std::fprintf(stderr, "bare_poll: no 'listening INDEX PORT' lines in %s\n", ports_file.c_str());
    return 1;
  }

  mqtt::async_client client(uri, "bench-bare-poll", mqtt::create_options(MQTTVERSION_3_1_1));
  try {
    client.connect(mqtt::connect_options_builder().clean_session(true).finalize())->wait();
  } catch (const mqtt::exception& e) {
    std::fprintf(stderr, "bare_poll: cannot connect to %s: %s\n", uri.c_str(), e.what());
    return 1;
  }

  std::vector<modbus_t*> devices;
  for (int port : ports) {
    modbus_t* ctx = modbus_new_tcp("127.0.0.1", port);
    if (ctx == nullptr || modbus_connect(ctx) != 0) {
      std::fprintf(stderr, "bare_poll: cannot connect to 127.0.0.1:%d: %s\n", port,
                   modbus_strerror(errno));
      return 1;
    }
    modbus_set_response_timeout(ctx, 0, 500000);
    devices.push_back(ctx);
  }

  const std::size_t n = devices.size();
  const auto period = std::chrono::milliseconds(period_ms);
  const auto t0 = Clock::now();
  const auto end = t0 + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(seconds));
  std::vector<uint16_t> values(static_cast<std::size_t>(regs));
  long polls = 0, errors = 0, published = 0;
  for (long round = 0;; ++round) {
    for (std::size_t i = 0; i < n; ++i) {
      const auto due = t0 + round * period + period * static_cast<long>(i) / static_cast<long>(n);
      if (due >= end) goto done;
      std::this_thread::sleep_until(due);
      ++polls;
      if (modbus_read_registers(devices[i], 0, regs, values.data()) != regs) {
        ++errors;
        continue;
      }
      // The registers as they came, device index first: a reading, nothing more.
      std::string payload(reinterpret_cast<const char*>(values.data()),
                          values.size() * sizeof(uint16_t));
      try {
        client.publish(mqtt::make_message("bench/bare_poll/" + std::to_string(i), payload, 1,
                                          false));
        ++published;
      } catch (const mqtt::exception&) {
        ++errors;
      }
    }
  }
done:
  try {
    client.disconnect()->wait_for(std::chrono::seconds(5));
  } catch (const mqtt::exception&) {
  }
  for (modbus_t* ctx : devices) {
    modbus_close(ctx);
    modbus_free(ctx);
  }
  std::printf("bare_poll devices=%zu polls=%ld published=%ld errors=%ld\n", n, polls, published,
              errors);
  return 0;
}
