// The simulated IP camera behind camera_sim (README.md): a camera that serves an alert stream
// (Hikvision ISAPI alertStream or Dahua eventManager attach) behind digest or basic login, and a
// camera that pushes its alarms to a URL. A library so the driver tests can run it in-process;
// camera_sim.cpp is its command line. It writes the cameras' formats itself and checks digest
// logins with its own code, independent of gw_protocols, whose decoders it is used to test.
//
// Timestamps in log lines are unix seconds (t=1700000000.123), so a test can line them up with
// its own clock.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace gw::sim::camera {

enum class Vendor { kHikvision, kDahua };

// One step of a scripted sequence: "VMD@1=active*3" is motion on channel 1 reported active three
// times (once as the transition, twice more as "still active"); "garbage" is a malformed alert.
struct Step {
  enum class State { kActive, kInactive, kPulse, kGarbage };
  std::string type;      // the vendor's event name: VMD, linedetection, VideoMotion, ...
  uint32_t channel = 1;  // 1-based (Dahua's index is channel - 1)
  State state = State::kActive;
  int repeat = 1;
};

// "TYPE@CH=STATE[*N],..." with STATE active | inactive | pulse, or "garbage". Empty on error,
// with `error` set.
std::vector<Step> parse_sequence(std::string_view spec, std::string& error);
// Every post of a sequence in order, repeats spelled out, with each one's per-event post count.
struct Post {
  Step step;
  int post_count = 1;
};
std::vector<Post> expand(const std::vector<Step>& steps);

// Alert bodies as the cameras write them.
std::string hikvision_xml(const Post& post);
std::string hikvision_json(const Post& post);
std::string simple_json(const Post& post);
std::string dahua_text(const Post& post);
std::string hikvision_heartbeat_xml();

// ---------------------------------------------------------------------------------------------

struct StreamOptions {
  enum class Auth { kDigest, kBasic, kNone };
  Vendor vendor = Vendor::kHikvision;
  Auth auth = Auth::kDigest;
  std::string user = "admin";
  std::string password = "12345";
  double heartbeat_s = 10;     // Hikvision videoloss/inactive or Dahua "Heartbeat" every so often
  double interval_s = 0.2;     // between sequence posts
  double start_delay_s = 0.5;  // after a stream starts, before its first sequence post
  int stall_after = -1;        // parts written on a connection before it stops writing; -1 never
  int stall_connections = 1;   // how many connections (the first ones) stall
  bool chunked = false;        // Transfer-Encoding: chunked instead of a body ended by close
  std::vector<Step> sequence;  // played once, across connections
};

// Serves the alert stream on 127.0.0.1. Each connection: login (401 + challenge, then the
// answer), a 200 multipart stream, a heartbeat at once and every heartbeat_s, and the next posts
// of the shared sequence every interval_s. A stalled connection stays open and silent.
class StreamCamera {
 public:
  using Log = std::function<void(const std::string&)>;
  StreamCamera(StreamOptions options, Log log);
  ~StreamCamera();

  uint16_t start(uint16_t port = 0);  // returns the port it listens on
  void stop();

  int connections() const { return connections_.load(); }
  int streams() const { return streams_.load(); }        // connections that got a 200
  int posts_sent() const { return posts_sent_.load(); }  // sequence posts written
  bool sequence_done() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<int> connections_{0};
  std::atomic<int> streams_{0};
  std::atomic<int> posts_sent_{0};
};

// ---------------------------------------------------------------------------------------------

struct PushOptions {
  enum class Format { kXml, kJson, kSimple, kDahua, kMultipart };
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string path = "/";
  Format format = Format::kXml;
  double interval_s = 0.1;
  std::size_t image_bytes = 20000;  // kMultipart: the fake JPEG's size
  std::vector<Step> sequence;
};

struct PushResult {
  int status = 0;  // 0: no answer
  std::string reply;
};

// Posts every step of the sequence (repeats included), one request each, over one keep-alive
// connection (reopened when the server closes it). Blocking.
std::vector<PushResult> push_all(const PushOptions& options, const StreamCamera::Log& log);

}  // namespace gw::sim::camera
