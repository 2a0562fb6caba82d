// bare_poll: the floor of the polling workload W(N). Reads REGS holding registers from each of N
// Modbus TCP devices once per period with libmodbus (one connection per device, kept open) and
// publishes each reading at QoS 1 with libmosquitto — nothing else: no storage, no decoding, no
// config. Polls are spread evenly over the period, as gatewayd spreads its devices. One thread
// does everything: between polls it waits in mosquitto_loop(), which takes the PUBACKs in. Runs
// for --seconds, then prints one line of totals.
//
//   bare_poll --ports-file FILE --uri URI [--seconds S] [--period-ms P] [--registers R]
//
// The ports file is modbus_tcp_sim's (`listening INDEX PORT` per line). libmodbus 3.1.6 waits with
// select(), and so does mosquitto_loop(): the MQTT connection is opened first so that every socket
// stays below FD_SETSIZE for the 1,000 devices of W(1000).
#include <modbus/modbus.h>
#include <mosquitto.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

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

  // tcp://HOST:PORT
  const auto colon = uri.rfind(':');
  if (uri.rfind("tcp://", 0) != 0 || colon == std::string::npos || colon < 6) {
    std::fprintf(stderr, "bare_poll: --uri must be tcp://HOST:PORT, not '%s'\n", uri.c_str());
    return 2;
  }
  const std::string host = uri.substr(6, colon - 6);
  const int mqtt_port = std::atoi(uri.c_str() + colon + 1);
  mosquitto_lib_init();
  bool connected = false;
  mosquitto* mosq = mosquitto_new("bench-bare-poll", true, &connected);
  if (mosq == nullptr) {
    std::fprintf(stderr, "bare_poll: mosquitto_new failed\n");
    return 1;
  }
  mosquitto_connect_callback_set(mosq, [](mosquitto*, void* flag, int rc) {
    *static_cast<bool*>(flag) = rc == 0;
  });
  if (mosquitto_connect(mosq, host.c_str(), mqtt_port, 60) != MOSQ_ERR_SUCCESS) {
    std::fprintf(stderr, "bare_poll: cannot connect to %s\n", uri.c_str());
    return 1;
  }
  for (int i = 0; i < 100 && !connected; ++i) mosquitto_loop(mosq, 50, 1);
  if (!connected) {
    std::fprintf(stderr, "bare_poll: no CONNACK from %s\n", uri.c_str());
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
      // Wait in the MQTT loop (PUBACKs, keep-alive) while a millisecond or more is left.
      for (auto now = Clock::now(); now < due; now = Clock::now()) {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(due - now).count();
        if (ms < 1) {
          std::this_thread::sleep_until(due);
          break;
        }
        mosquitto_loop(mosq, static_cast<int>(ms), 1);
      }
      ++polls;
      if (modbus_read_registers(devices[i], 0, regs, values.data()) != regs) {
        ++errors;
        continue;
      }
      // The registers as they came: a reading, nothing more.
      const std::string topic = "bench/bare_poll/" + std::to_string(i);
      if (mosquitto_publish(mosq, nullptr, topic.c_str(),
                            static_cast<int>(values.size() * sizeof(uint16_t)), values.data(), 1,
                            false) == MOSQ_ERR_SUCCESS) {
        ++published;
      } else {
        ++errors;
      }
    }
  }
done:
  for (int i = 0; i < 20; ++i) mosquitto_loop(mosq, 50, 1);  // the last PUBACKs
  mosquitto_disconnect(mosq);
  mosquitto_destroy(mosq);
  mosquitto_lib_cleanup();
  for (modbus_t* ctx : devices) {
    modbus_close(ctx);
    modbus_free(ctx);
  }
  std::printf("bare_poll devices=%zu polls=%ld published=%ld errors=%ld\n", n, polls, published,
              errors);
  return 0;
}
