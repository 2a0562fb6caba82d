// camera_sim: a simulated IP camera for the camera_http driver (README.md).
//
//   camera_sim stream [--vendor hikvision|dahua] [--port N] [--auth digest|basic|none]
//                     [--user U] [--password P] [--heartbeat S] [--interval S] [--start-delay S]
//                     [--sequence SPEC] [--stall-after N] [--stall-connections K] [--chunked]
//   camera_sim push --url http://127.0.0.1:PORT/PATH [--format xml|json|simple|dahua|multipart]
//                   [--sequence SPEC] [--interval S] [--image-bytes N]
//
// stream serves an alert stream on 127.0.0.1 and prints "listening 127.0.0.1 PORT" first; it
// runs until SIGINT/SIGTERM. push posts the sequence and exits 0 when every post got the answer
// it should (200, and 400 for `garbage` steps), 1 otherwise. Every log line is on stdout.

#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "tools/sim/camera_sim_core.h"
#include "tools/sim/sim_cli.h"

using namespace gw::sim;
using namespace gw::sim::camera;

namespace {

void print(const std::string& line) {
  std::fprintf(stdout, "%s\n", line.c_str());
  std::fflush(stdout);
}

void help() {
  std::fputs(
      "camera_sim stream [options]   serve an alert stream (Hikvision ISAPI or Dahua attach)\n"
      "  --vendor hikvision|dahua    stream format (default hikvision)\n"
      "  --port N                    127.0.0.1 port, 0 picks one (default 0)\n"
      "  --auth digest|basic|none    login the camera demands (default digest)\n"
      "  --user U --password P       credentials (default admin / 12345)\n"
      "  --heartbeat S               seconds between heartbeats (default 10)\n"
      "  --interval S                seconds between sequence posts (default 0.2)\n"
      "  --start-delay S             seconds from stream start to the first post (default 0.5)\n"
      "  --sequence SPEC             e.g. VMD@1=active*3,VMD@1=inactive,garbage\n"
      "  --stall-after N             stop writing after N parts (heartbeats and posts) but keep\n"
      "                              the connection open\n"
      "  --stall-connections K       the first K connections stall (default 1)\n"
      "  --chunked                   Transfer-Encoding: chunked\n"
      "camera_sim push --url http://127.0.0.1:PORT/PATH [options]   post alarms to a listener\n"
      "  --format xml|json|simple|dahua|multipart   body form (default xml); multipart carries a\n"
      "                              fake JPEG after the XML alert\n"
      "  --sequence SPEC --interval S --image-bytes N\n"
      "SPEC: TYPE@CHANNEL=active|inactive|pulse[*N] or garbage, comma separated; *N repeats the\n"
      "post (the repeats are \"still active\" notifications).\n",
      stdout);
}

std::string value(int& i, int argc, char** argv) {
  if (i + 1 >= argc) usage_error(std::string(argv[i]) + " needs a value");
  return argv[++i];
}

std::vector<Step> sequence(const std::string& spec) {
  std::string error;
  auto steps = parse_sequence(spec, error);
  if (steps.empty()) usage_error("--sequence: " + error);
  return steps;
}

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

int run_stream(int argc, char** argv) {
  StreamOptions o;
  int port = 0;
  for (int i = 2; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--vendor") {
      const std::string v = value(i, argc, argv);
      if (v != "hikvision" && v != "dahua")
        usage_error("--vendor: '" + v + "' is not hikvision or dahua");
      o.vendor = v == "dahua" ? Vendor::kDahua : Vendor::kHikvision;
    } else if (a == "--port") {
      port = parse_int(a, value(i, argc, argv), 0, 65535);
    } else if (a == "--auth") {
      const std::string v = value(i, argc, argv);
      if (v == "digest") {
        o.auth = StreamOptions::Auth::kDigest;
      } else if (v == "basic") {
        o.auth = StreamOptions::Auth::kBasic;
      } else if (v == "none") {
        o.auth = StreamOptions::Auth::kNone;
      } else {
        usage_error("--auth: '" + v + "' is not digest, basic or none");
      }
    } else if (a == "--user") {
      o.user = value(i, argc, argv);
    } else if (a == "--password") {
      o.password = value(i, argc, argv);
    } else if (a == "--heartbeat") {
      o.heartbeat_s = parse_seconds(a, value(i, argc, argv));
    } else if (a == "--interval") {
      o.interval_s = parse_seconds(a, value(i, argc, argv));
    } else if (a == "--start-delay") {
      o.start_delay_s = parse_seconds(a, value(i, argc, argv));
    } else if (a == "--sequence") {
      o.sequence = sequence(value(i, argc, argv));
    } else if (a == "--stall-after") {
      o.stall_after = parse_int(a, value(i, argc, argv), 0, 1000000);
    } else if (a == "--stall-connections") {
      o.stall_connections = parse_int(a, value(i, argc, argv), 1, 1000000);
    } else if (a == "--chunked") {
      o.chunked = true;
    } else {
      usage_error("unknown option '" + std::string(a) + "' for stream");
    }
  }
  StreamCamera cam(o, print);
  uint16_t bound = 0;
  try {
    bound = cam.start(static_cast<uint16_t>(port));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "camera_sim: cannot listen on 127.0.0.1:%d: %s\n", port, e.what());
    return 1;
  }
  print("listening 127.0.0.1 " + std::to_string(bound));
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);
  while (!g_stop) pause();
  cam.stop();
  print("stopped: connections " + std::to_string(cam.connections()) + ", streams " +
        std::to_string(cam.streams()) + ", posts sent " + std::to_string(cam.posts_sent()));
  return 0;
}

int run_push(int argc, char** argv) {
  PushOptions o;
  std::string url;
  for (int i = 2; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--url") {
      url = value(i, argc, argv);
    } else if (a == "--format") {
      const std::string v = value(i, argc, argv);
      if (v == "xml") {
        o.format = PushOptions::Format::kXml;
      } else if (v == "json") {
        o.format = PushOptions::Format::kJson;
      } else if (v == "simple") {
        o.format = PushOptions::Format::kSimple;
      } else if (v == "dahua") {
        o.format = PushOptions::Format::kDahua;
      } else if (v == "multipart") {
        o.format = PushOptions::Format::kMultipart;
      } else {
        usage_error("--format: '" + v + "' is not xml, json, simple, dahua or multipart");
      }
    } else if (a == "--sequence") {
      o.sequence = sequence(value(i, argc, argv));
    } else if (a == "--interval") {
      o.interval_s = parse_seconds(a, value(i, argc, argv));
    } else if (a == "--image-bytes") {
      o.image_bytes = static_cast<std::size_t>(parse_int(a, value(i, argc, argv), 4, 64 << 20));
    } else {
      usage_error("unknown option '" + std::string(a) + "' for push");
    }
  }
  // http://HOST:PORT/PATH
  const std::string_view prefix = "http://";
  if (url.rfind(prefix, 0) != 0) usage_error("--url: '" + url + "' is not http://HOST:PORT/PATH");
  const std::string rest = url.substr(prefix.size());
  const std::size_t slash = rest.find('/');
  const std::string hostport = rest.substr(0, slash);
  o.path = slash == std::string::npos ? "/" : rest.substr(slash);
  const std::size_t colon = hostport.rfind(':');
  if (colon == std::string::npos) usage_error("--url: '" + url + "' has no port");
  o.host = hostport.substr(0, colon);
  o.port = static_cast<uint16_t>(parse_int("--url port", hostport.substr(colon + 1), 1, 65535));
  if (o.sequence.empty()) usage_error("push needs --sequence");

  const auto results = push_all(o, print);
  const auto posts = expand(o.sequence);
  int wrong = 0;
  for (std::size_t i = 0; i < results.size(); ++i) {
    const int want = posts[i].step.state == Step::State::kGarbage ? 400 : 200;
    if (results[i].status != want) ++wrong;
  }
  print("done: " + std::to_string(results.size()) + " posts, " + std::to_string(wrong) +
        " with an unexpected answer");
  return wrong == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  set_program_name("camera_sim");
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    help();
    return argc < 2 ? kExitUsage : 0;
  }
  const std::string_view mode = argv[1];
  if (mode == "stream") return run_stream(argc, argv);
  if (mode == "push") return run_push(argc, argv);
  usage_error("unknown mode '" + std::string(mode) + "' (stream or push)");
}
