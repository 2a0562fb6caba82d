#include "protocols/camera_alert.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "protocols/http_auth.h"
#include "protocols/xml_reader.h"

using gw::Result;
using namespace gw::protocols;
using namespace gw::protocols::camera;
using namespace std::chrono_literals;

namespace {

// As a Hikvision camera (firmware 5.5+) sends it on its alert stream, namespace and all.
std::string hik_xml(const std::string& type, const std::string& state, int channel = 1,
                    int post_count = 1) {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n"
         "<EventNotificationAlert version=\"2.0\" "
         "xmlns=\"http://www.hikvision.com/ver20/XMLSchema\">\r\n"
         "<ipAddress>10.17.133.46</ipAddress>\r\n<portNo>80</portNo>\r\n"
         "<protocol>HTTP</protocol>\r\n<macAddress>44:19:b6:6d:24:85</macAddress>\r\n"
         "<channelID>" +
         std::to_string(channel) +
         "</channelID>\r\n<dateTime>2017-05-04T11:20:02+08:00</dateTime>\r\n"
         "<activePostCount>" +
         std::to_string(post_count) + "</activePostCount>\r\n<eventType>" + type +
         "</eventType>\r\n<eventState>" + state + "</eventState>\r\n<eventDescription>" + type +
         " alarm</eventDescription>\r\n</EventNotificationAlert>\r\n";
}

Alert one(const Result<std::vector<Alert>>& r) {
  INFO(r.status().message());
  REQUIRE(r.is_ok());
  REQUIRE(r->size() == 1);
  return r->front();
}

std::string error_of(const Result<std::vector<Alert>>& r) {
  REQUIRE_FALSE(r.is_ok());
  return r.status().message();
}

// Splits `stream` feeding it `chunk` bytes at a time.
std::vector<Part> split(const std::string& boundary, const std::string& stream, std::size_t chunk,
                        SplitterLimits limits = {}, SplitterStats* stats = nullptr,
                        bool finish = false) {
  MultipartSplitter s(boundary, limits);
  std::vector<Part> parts;
  for (std::size_t i = 0; i < stream.size(); i += chunk) s.feed(stream.substr(i, chunk), parts);
  if (finish) s.finish(parts);
  if (stats) *stats = s.stats();
  return parts;
}

std::string hik_stream_part(const std::string& xml) {
  return "--boundary\r\nContent-Type: application/xml; charset=\"UTF-8\"\r\nContent-Length: " +
         std::to_string(xml.size()) + "\r\n\r\n" + xml + "\r\n";
}

std::string dahua_part(const std::string& text) {
  // Dahua counts the line break after the text in Content-Length (its API document: 39 bytes
  // for the 37 of "Code=VideoMotion;action=Start;index=0").
  return "--myboundary\r\nContent-Type: text/plain\r\nContent-Length: " +
         std::to_string(text.size() + 2) + "\r\n\r\n" + text + "\r\n";
}

// A fake JPEG: SOI marker, then bytes that include what looks like a boundary on its own line
// only when the part is length-delimited (so the length must be honoured).
std::string fake_jpeg(std::size_t n) {
  std::string j = "\xFF\xD8\xFF\xE0";
  while (j.size() < n) j += static_cast<char>(j.size() * 7 % 251);
  j.resize(n);
  return j;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// XML reader

TEST_CASE("XML reader builds elements with local names and decoded text", "[xml]") {
  auto doc = xml::parse(
      "\xEF\xBB\xBF<?xml version='1.0'?><!-- c --><h:a xmlns:h='urn:x' k=\"v&amp;\">"
      "x&lt;y&#65;&#x42;<b/><c><![CDATA[<raw>]]></c><?pi stuff?></h:a>\n");
  INFO(doc.status().message());
  REQUIRE(doc.is_ok());
  CHECK(doc->name == "a");
  CHECK(doc->text == "x<yAB");
  REQUIRE(doc->children.size() == 2);
  CHECK(doc->children[0].name == "b");
  CHECK(doc->child_text("c") == "<raw>");
  CHECK(doc->child("missing") == nullptr);
}

TEST_CASE("XML reader refuses DTDs, unknown entities and malformed documents", "[xml]") {
  // An external entity (XXE) attempt never gets as far as an entity.
  auto xxe = xml::parse(
      "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>");
  REQUIRE_FALSE(xxe.is_ok());
  CHECK_THAT(xxe.status().message(), Catch::Contains("DOCTYPE"));
  CHECK_THAT(xml::parse("<r>&x;</r>").status().message(), Catch::Contains("undefined entity &x;"));
  CHECK_THAT(xml::parse("<a><b></a>").status().message(),
             Catch::Contains("end tag </a> does not match <b>"));
  CHECK_THAT(xml::parse("<a>").status().message(), Catch::Contains("end of document inside <a>"));
  CHECK_THAT(xml::parse("").status().message(), Catch::Contains("no root element"));
  CHECK_THAT(xml::parse("<a/><b/>").status().message(), Catch::Contains("a second root"));
  CHECK_THAT(xml::parse("hello").status().message(), Catch::Contains("text before the root"));
  CHECK_THAT(xml::parse("<a b=c/>").status().message(), Catch::Contains("without quotes"));
  CHECK_THAT(xml::parse("<a>&#0;</a>").status().message(), Catch::Contains("invalid code point"));
  CHECK_THAT(xml::parse("<a><!-- x -- y --></a>").status().message(), Catch::Contains("'--'"));
}

TEST_CASE("XML reader bounds depth, element count and size", "[xml]") {
  std::string deep;
  for (int i = 0; i < 10000; ++i) deep += "<a>";
  CHECK_THAT(xml::parse(deep).status().message(), Catch::Contains("nested deeper than 16"));
  std::string wide = "<r>";
  for (int i = 0; i < 3000; ++i) wide += "<a/>";
  wide += "</r>";
  CHECK_THAT(xml::parse(wide).status().message(), Catch::Contains("more than 2048 elements"));
  xml::Limits small;
  small.max_bytes = 10;
  CHECK_THAT(xml::parse("<abcdefgh></abcdefgh>", small).status().message(),
             Catch::Contains("larger than the limit of 10"));
}

// ---------------------------------------------------------------------------------------------
// Alert bodies

TEST_CASE("Hikvision XML alert: fields, time, type mapping", "[camera]") {
  const Alert a = one(parse_body(hik_xml("VMD", "active", 2, 5)));
  CHECK(a.vendor_type == "VMD");
  CHECK(a.type == "motion");
  CHECK(a.state == State::kActive);
  CHECK(a.channel == 2);
  CHECK(a.active_post_count == 5);
  CHECK(a.device_time_us == 1493868002LL * 1000000);  // 2017-05-04T03:20:02Z
  CHECK(a.detail == "VMD: VMD alarm");
  CHECK_FALSE(a.heartbeat);
  CHECK_FALSE(a.heartbeat_unless_active);

  const Alert line = one(parse_body(hik_xml("linedetection", "inactive")));
  CHECK(line.type == "line_crossing");
  CHECK(line.state == State::kInactive);
  CHECK(one(parse_body(hik_xml("fielddetection", "active"))).type == "intrusion");
  CHECK(one(parse_body(hik_xml("shelteralarm", "active"))).type == "tamper");
  CHECK(one(parse_body(hik_xml("tamperdetection", "active"))).type == "tamper");
  CHECK(one(parse_body(hik_xml("someNewThing", "active"))).type == "somenewthing");
}

TEST_CASE("Hikvision heartbeats are flagged, not dropped by the parser", "[camera]") {
  const Alert hb = one(parse_body(hik_xml("videoloss", "inactive", 1, 0)));
  CHECK(hb.type == "video_loss");
  CHECK(hb.heartbeat_unless_active);
  CHECK_FALSE(hb.heartbeat);
  CHECK_FALSE(one(parse_body(hik_xml("videoloss", "active"))).heartbeat_unless_active);
  CHECK(one(parse_body(hik_xml("heartBeat", "active"))).heartbeat);
}

TEST_CASE("Hikvision XML in other namespaces and shapes", "[camera]") {
  const Alert isapi = one(
      parse_body("<hik:EventNotificationAlert xmlns:hik=\"http://www.isapi.org/ver20/XMLSchema\">"
                 "<hik:eventType>IO</hik:eventType><hik:eventState>active</hik:eventState>"
                 "<hik:inputIOPortID>3</hik:inputIOPortID></hik:EventNotificationAlert>"));
  CHECK(isapi.type == "alarm_input");
  CHECK(isapi.channel == 3);
  CHECK(isapi.device_time_us == 0);
  CHECK(isapi.detail == "IO");
  const Alert nvr = one(
      parse_body("<EventNotificationAlert><dynChannelID>7</dynChannelID><eventType>VMD</eventType>"
                 "<eventState> Active </eventState></EventNotificationAlert>"));
  CHECK(nvr.channel == 7);
  CHECK(nvr.state == State::kActive);
}

TEST_CASE("Bad Hikvision XML is refused with the reason", "[camera]") {
  CHECK_THAT(error_of(parse_body("<Other><eventType>VMD</eventType></Other>")),
             Catch::Contains("root element is <Other>"));
  CHECK_THAT(error_of(parse_body("<EventNotificationAlert><eventState>active</eventState>"
                                 "</EventNotificationAlert>")),
             Catch::Contains("no eventType"));
  CHECK_THAT(error_of(parse_body("<EventNotificationAlert><eventType>VMD</eventType>"
                                 "<eventState>maybe</eventState></EventNotificationAlert>")),
             Catch::Contains("eventState 'maybe' is neither active nor inactive"));
  CHECK_THAT(error_of(parse_body("<EventNotificationAlert><eventType>VMD</eventType><eventState>"
                                 "active</eventState><channelID>x</channelID>"
                                 "</EventNotificationAlert>")),
             Catch::Contains("channel 'x' is not a number"));
  CHECK_THAT(error_of(parse_body("<EventNotificationAlert><eventType>VMD")),
             Catch::Contains("XML: end of document"));
}

TEST_CASE("JSON alerts: Hikvision form and the simple form", "[camera]") {
  const Alert hik =
      one(parse_body(R"({"ipAddress":"10.0.0.9","channelID":"4","dateTime":"2023-08-11T21:37:30Z",)"
                     R"("activePostCount":3,"eventType":"linedetection","eventState":"active",)"
                     R"("eventDescription":"Line crossing alarm"})"));
  CHECK(hik.type == "line_crossing");
  CHECK(hik.channel == 4);
  CHECK(hik.active_post_count == 3);
  CHECK(hik.device_time_us == 1691789850LL * 1000000);
  CHECK(hik.detail == "linedetection: Line crossing alarm");

  const Alert nested = one(parse_body(
      R"({"EventNotificationAlert":{"eventType":"VMD","eventState":"inactive","channelID":1}})"));
  CHECK(nested.type == "motion");
  CHECK(nested.state == State::kInactive);

  const Alert simple =
      one(parse_body(R"({"type":"tamper","active":true,"channel":2,"detail":"lens covered",)"
                     R"("time":"2023-08-11T23:37:30.250+02:00"})"));
  CHECK(simple.type == "tamper");
  CHECK(simple.state == State::kActive);
  CHECK(simple.channel == 2);
  CHECK(simple.detail == "lens covered");
  CHECK(simple.device_time_us == 1691789850LL * 1000000 + 250000);
}

TEST_CASE("Bad JSON alerts are refused with the reason", "[camera]") {
  CHECK_THAT(error_of(parse_body("{\"type\":")), Catch::Contains("not a valid JSON document"));
  CHECK_THAT(error_of(parse_body(R"({"hello":1})")),
             Catch::Contains("neither eventType/eventState"));
  CHECK_THAT(error_of(parse_body(R"({"type":"motion","active":"yes"})")),
             Catch::Contains("\"active\" must be true or false"));
  CHECK_THAT(error_of(parse_body(R"({"type":"motion","active":true,"channel":-1})")),
             Catch::Contains("\"channel\" must be a whole number"));
  CHECK_THAT(error_of(parse_body(R"({"type":"motion","active":true,"time":"yesterday"})")),
             Catch::Contains("not an ISO 8601 time"));
  CHECK_THAT(error_of(parse_body(R"({"eventType":"VMD","eventState":{"x":1}})")),
             Catch::Contains("eventState '?'"));
  CHECK_THAT(error_of(parse_body(std::string(10000, '[') + std::string(10000, ']'))),
             Catch::Contains("nested deeper than 16"));
  CHECK_THAT(error_of(parse_body("[1,2]")), Catch::Contains("expected an object"));
  CHECK_THAT(error_of(parse_body("{" + std::string(40, '[') + std::string(40, ']') + "}")),
             Catch::Contains("nested deeper than 16"));
}

TEST_CASE("Dahua event lines: Start, Stop, Pulse, index, data, heartbeat", "[camera]") {
  const Alert start = one(parse_body("Code=VideoMotion;action=Start;index=0\r\n"));
  CHECK(start.type == "motion");
  CHECK(start.vendor_type == "VideoMotion");
  CHECK(start.state == State::kActive);
  CHECK(start.channel == 1);  // index 0 is the first channel
  CHECK(one(parse_body("Code=VideoMotion;action=Stop;index=3")).state == State::kInactive);
  CHECK(one(parse_body("Code=VideoMotion;action=Stop;index=3")).channel == 4);
  CHECK(one(parse_body("Code=AlarmLocal;action=Pulse;index=1")).state == State::kPulse);
  CHECK(one(parse_body("Code=CrossLineDetection; action=Start; index=0")).type == "line_crossing");
  CHECK(one(parse_body("Code=VideoBlind;action=Start;index=0")).type == "tamper");
  CHECK(one(parse_body("Code=VideoLoss;action=Start;index=0")).type == "video_loss");

  // data= is JSON that may contain ';' and span lines.
  const Alert with_data = one(
      parse_body("Code=CrossRegionDetection;action=Start;index=0;data={\n\t\"Name\":\t\"a;b\",\n"
                 "\t\"UTC\":\t1691815050\n}\n"));
  CHECK(with_data.type == "intrusion");

  auto two = parse_body(
      "Code=VideoMotion;action=Start;index=0\r\nCode=VideoBlind;action=Stop;"
      "index=1\r\n");
  REQUIRE(two.is_ok());
  REQUIRE(two->size() == 2);
  CHECK((*two)[1].type == "tamper");
  CHECK((*two)[1].channel == 2);

  CHECK(one(parse_body("Heartbeat\r\n")).heartbeat);
  CHECK(one(parse_body("Code=Heartbeat;action=Pulse")).heartbeat);
}

TEST_CASE("Bad Dahua bodies and garbage are refused", "[camera]") {
  CHECK_THAT(error_of(parse_body("Code=VideoMotion;action=Maybe;index=0")),
             Catch::Contains("action 'Maybe' is not Start, Stop or Pulse"));
  CHECK_THAT(error_of(parse_body("Code=VideoMotion;action=Start;index=first")),
             Catch::Contains("index 'first' is not a number"));
  CHECK_THAT(error_of(parse_body("hello world")), Catch::Contains("not a Dahua event line"));
  CHECK_THAT(error_of(parse_body("Code=;action=Start")), Catch::Contains("without a Code"));
  CHECK_THAT(error_of(parse_body(" \r\n ")), Catch::Contains("empty body"));
  CHECK_THAT(error_of(parse_body(std::string("\x01\x02\xff", 3))),
             Catch::Contains("not a Dahua event line"));
}

TEST_CASE("normalize_type keeps unknown names as safe lower-case text", "[camera]") {
  CHECK(normalize_type("VMD") == "motion");
  CHECK(normalize_type(" videoloss ") == "video_loss");
  CHECK(normalize_type("SmartMotionHuman") == "smartmotionhuman");
  CHECK(normalize_type("Odd Name/1") == "odd_name_1");
  CHECK(normalize_type(std::string(200, 'x')).size() == 64);
  CHECK(normalize_type("") == "unknown");
}

TEST_CASE("ISO 8601 times with a zone become unix microseconds", "[camera]") {
  CHECK(parse_iso8601_us("2017-05-04T11:20:02+08:00") == 1493868002LL * 1000000);
  CHECK(parse_iso8601_us("2017-05-04T03:20:02Z") == 1493868002LL * 1000000);
  CHECK(parse_iso8601_us("2017-05-04T01:20:02-0200") == 1493868002LL * 1000000);
  CHECK(parse_iso8601_us("1970-01-01 00:00:00.5Z") == 500000);
  CHECK_FALSE(parse_iso8601_us("2017-05-04T11:20:02"));  // camera-local: unknown zone
  CHECK_FALSE(parse_iso8601_us("2017-13-04T11:20:02Z"));
  CHECK_FALSE(parse_iso8601_us("2017-05-04T11:20:02+08:00junk"));
  CHECK_FALSE(parse_iso8601_us("soon"));
}

TEST_CASE("Content-Type parameters", "[camera]") {
  MediaType m = parse_media_type("Multipart/Mixed; boundary=\"--a b\"; charset=UTF-8");
  CHECK(m.type == "multipart/mixed");
  CHECK(m.param("boundary") == "--a b");
  CHECK(m.param("charset") == "UTF-8");
  CHECK(parse_media_type("multipart/x-mixed-replace;boundary=myboundary").param("boundary") ==
        "myboundary");
  CHECK(parse_media_type("text/plain").params.empty());
  CHECK(is_media("image/jpeg"));
  CHECK(is_media("application/octet-stream"));
  CHECK_FALSE(is_media("application/xml"));
}

// ---------------------------------------------------------------------------------------------
// Multipart splitting

TEST_CASE("A Hikvision alert stream splits the same at any read size", "[multipart]") {
  const std::string stream = hik_stream_part(hik_xml("VMD", "active", 1, 1)) +
                             hik_stream_part(hik_xml("videoloss", "inactive", 1, 0)) +
                             hik_stream_part(hik_xml("VMD", "inactive", 1, 2));
  for (std::size_t chunk :
       {std::size_t{1}, std::size_t{2}, std::size_t{7}, std::size_t{100}, stream.size()}) {
    INFO("chunk " << chunk);
    const auto parts = split("boundary", stream, chunk);
    REQUIRE(parts.size() == 3);
    CHECK(parts[0].content_type == "application/xml");
    CHECK(parts[0].body == hik_xml("VMD", "active", 1, 1));
    CHECK(one(parse_body(parts[1].body)).heartbeat_unless_active);
    CHECK(one(parse_body(parts[2].body)).state == State::kInactive);
    CHECK(parts[2].head.find("Content-Length:") != std::string::npos);
  }
}

TEST_CASE("A part with a Content-Length is complete before the next boundary", "[multipart]") {
  // An alert stream sends the boundary ahead of the next part, which may come much later: the
  // event must not wait for it.
  MultipartSplitter s("myboundary");
  std::vector<Part> parts;
  s.feed(dahua_part("Code=VideoMotion;action=Start;index=0"), parts);
  REQUIRE(parts.size() == 1);
  CHECK(one(parse_body(parts[0].body)).state == State::kActive);
}

TEST_CASE("A Dahua stream with heartbeats, byte by byte", "[multipart]") {
  const std::string stream =
      dahua_part("Heartbeat") + dahua_part("Code=VideoMotion;action=Start;index=0") +
      dahua_part("Code=VideoMotion;action=Stop;index=0") + dahua_part("Heartbeat");
  const auto parts = split("myboundary", stream, 1);
  REQUIRE(parts.size() == 4);
  CHECK(one(parse_body(parts[0].body)).heartbeat);
  CHECK(one(parse_body(parts[1].body)).state == State::kActive);
  CHECK(one(parse_body(parts[2].body)).state == State::kInactive);
}

TEST_CASE("Boundary-delimited parts and a skipped picture (form-data push)", "[multipart]") {
  // Hikvision's HTTP-listening push with a picture: multipart/form-data, the alert then a JPEG,
  // no Content-Length on the parts.
  const std::string xml = hik_xml("linedetection", "active");
  const std::string jpeg = fake_jpeg(300000);
  const std::string body =
      "--MIME_boundary\r\nContent-Disposition: form-data; "
      "name=\"linedetection\"\r\nContent-Type: application/xml\r\n\r\n" +
      xml +
      "\r\n--MIME_boundary\r\nContent-Disposition: form-data; "
      "name=\"linedetectionImage\"; filename=\"a.jpg\"\r\n"
      "Content-Type: image/jpeg\r\n\r\n" +
      jpeg + "\r\n--MIME_boundary--\r\nepilogue is ignored\r\n";
  for (std::size_t chunk : {std::size_t{1}, std::size_t{4096}, body.size()}) {
    INFO("chunk " << chunk);
    SplitterStats stats;
    MultipartSplitter s("MIME_boundary");
    std::vector<Part> parts;
    std::size_t most_buffered = 0;
    for (std::size_t i = 0; i < body.size(); i += chunk) {
      s.feed(std::string_view(body).substr(i, chunk), parts);
      most_buffered = std::max(most_buffered, s.buffered_bytes());
    }
    CHECK(s.closed());
    REQUIRE(parts.size() == 2);
    CHECK(parts[0].body == xml);
    CHECK(parts[1].skipped == Part::Skipped::kMedia);
    CHECK(parts[1].body.empty());
    CHECK(parts[1].size == jpeg.size());
    CHECK(s.stats().media_skipped == 1);
    CHECK(s.stats().stray_bytes == 0);
    // The picture was never held: memory stays near one read plus one boundary line.
    CHECK(most_buffered < chunk + xml.size() + 200);
  }
}

TEST_CASE("An oversize part is skipped and counted, and the next part still arrives",
          "[multipart]") {
  SplitterLimits limits;
  limits.max_part_bytes = 1000;
  const std::string big(5000, 'x');
  const std::string next = "Code=VideoMotion;action=Start;index=0";
  // With a Content-Length and boundary-delimited.
  const std::string with_length = dahua_part(big) + dahua_part(next);
  const std::string delimited =
      "--myboundary\r\n\r\n" + big + "\r\n--myboundary\r\n\r\n" + next + "\r\n--myboundary--\r\n";
  for (const std::string* stream : {&with_length, &delimited}) {
    for (std::size_t chunk : {std::size_t{1}, std::size_t{333}}) {
      SplitterStats stats;
      const auto parts = split("myboundary", *stream, chunk, limits, &stats);
      REQUIRE(parts.size() == 2);
      CHECK(parts[0].skipped == Part::Skipped::kOversize);
      CHECK(parts[0].body.empty());
      CHECK(parts[0].size >= 5000);
      CHECK(stats.oversize == 1);
      CHECK(one(parse_body(parts[1].body)).type == "motion");
    }
  }
}

TEST_CASE("Garbage between parts is dropped and counted; lenient boundary lines", "[multipart]") {
  const std::string stream = "preamble text\r\n" + dahua_part("Heartbeat") + "junk junk\r\n" +
                             "-- myboundary\r\nContent-Length: 9\r\n\r\nHeartbeat\r\n" +
                             "----myboundary  \r\n\r\nHeartbeat\r\n--myboundary--";
  SplitterStats stats;
  const auto parts = split("myboundary", stream, 1, {}, &stats, true);
  REQUIRE(parts.size() == 3);
  for (const Part& p : parts) CHECK(one(parse_body(p.body)).heartbeat);
  CHECK(stats.stray_bytes == 8);  // "junkjunk"; the preamble is allowed by RFC 2046
  // A boundary declared with leading dashes, as some firmware writes it.
  CHECK(split("--myboundary", dahua_part("Heartbeat"), 3).size() == 1);
}

TEST_CASE("Malformed part headers are reported per part; the stream goes on", "[multipart]") {
  const std::string bad_header = "--b\r\nnot a header\r\n\r\nx\r\n";
  const std::string huge_header = "--b\r\nX-Long: " + std::string(20000, 'a') + "\r\n\r\nx\r\n";
  const std::string good = "--b\r\nContent-Length: 9\r\n\r\nHeartbeat\r\n";
  SplitterStats stats;
  const auto parts = split("b", bad_header + huge_header + good, 1, {}, &stats);
  REQUIRE(parts.size() == 3);
  CHECK_THAT(parts[0].error, Catch::Contains("malformed part header line 'not a header'"));
  CHECK_THAT(parts[1].error, Catch::Contains("header section larger than 8192 bytes"));
  CHECK(one(parse_body(parts[2].body)).heartbeat);
  CHECK(stats.bad_parts == 2);
}

TEST_CASE("finish(): a body without its close delimiter, and one cut short", "[multipart]") {
  SplitterStats stats;
  auto open = split("b", "--b\r\n\r\nHeartbeat\r\n", 1, {}, &stats, true);
  REQUIRE(open.size() == 1);
  CHECK(one(parse_body(open[0].body)).heartbeat);
  auto cut = split("b", "--b\r\nContent-Length: 100\r\n\r\nHeart", 1, {}, &stats, true);
  REQUIRE(cut.size() == 1);
  CHECK_THAT(cut[0].error, Catch::Contains("after 5 of 100 bytes"));
}

TEST_CASE("Endless garbage without a line break keeps memory bounded", "[multipart]") {
  MultipartSplitter s("boundary");
  std::vector<Part> parts;
  const std::string chunk(4096, 'g');
  for (int i = 0; i < 2560; ++i) {  // 10 MiB
    s.feed(chunk, parts);
    REQUIRE(s.buffered_bytes() <= chunk.size() + 100);
  }
  s.feed("\r\n" + hik_stream_part(hik_xml("VMD", "active")), parts);
  REQUIRE(parts.size() == 1);  // and it recovers at the next boundary
  CHECK(one(parse_body(parts[0].body)).type == "motion");
}

// ---------------------------------------------------------------------------------------------
// Tracking

TEST_CASE("Repeated still-active posts are one transition; heartbeats none", "[tracker]") {
  AlertTracker t;
  const auto now = AlertTracker::Clock::now();
  Transition tr;
  auto feed = [&](const std::string& body) { return t.on_alert(one(parse_body(body)), now, tr); };
  using V = AlertTracker::Verdict;
  CHECK(feed(hik_xml("videoloss", "inactive")) == V::kHeartbeat);
  CHECK(feed(hik_xml("VMD", "active", 1, 1)) == V::kTransition);
  CHECK(tr.type == "motion");
  CHECK(tr.active);
  CHECK(tr.channel == 1);
  CHECK(feed(hik_xml("VMD", "active", 1, 2)) == V::kRepeat);
  CHECK(feed(hik_xml("VMD", "active", 1, 3)) == V::kRepeat);
  CHECK(feed(hik_xml("VMD", "active", 2, 1)) == V::kTransition);  // another channel
  CHECK(feed(hik_xml("VMD", "inactive", 1, 4)) == V::kTransition);
  CHECK_FALSE(tr.active);
  CHECK(feed(hik_xml("VMD", "inactive", 1, 5)) == V::kRepeat);
  // Real video loss: its inactive is the end of it, not a heartbeat.
  CHECK(feed(hik_xml("videoloss", "active")) == V::kTransition);
  CHECK(feed(hik_xml("videoloss", "inactive")) == V::kTransition);
  CHECK_FALSE(tr.active);
  CHECK(feed(hik_xml("videoloss", "inactive")) == V::kHeartbeat);
  CHECK(feed("Heartbeat") == V::kHeartbeat);
  // A pulse is an event each time and leaves no state behind.
  CHECK(feed("Code=AlarmLocal;action=Pulse;index=0") == V::kTransition);
  CHECK(tr.active);
  CHECK(feed("Code=AlarmLocal;action=Pulse;index=0") == V::kTransition);
  CHECK(t.stats().repeats == 3);
  CHECK(t.stats().heartbeats == 3);
}

TEST_CASE("inactive_after ends an active state that is no longer posted", "[tracker]") {
  AlertTracker t(5s);
  const auto t0 = AlertTracker::Clock::now();
  Transition tr;
  const Alert vmd = one(parse_body(hik_xml("VMD", "active")));
  REQUIRE(t.on_alert(vmd, t0, tr) == AlertTracker::Verdict::kTransition);
  CHECK(t.next_expiry() == t0 + 5s);
  CHECK(t.expire(t0 + 4s).empty());
  REQUIRE(t.on_alert(vmd, t0 + 4s, tr) == AlertTracker::Verdict::kRepeat);  // still active
  CHECK(t.expire(t0 + 8s).empty());
  const auto ended = t.expire(t0 + 9s);
  REQUIRE(ended.size() == 1);
  CHECK(ended[0].type == "motion");
  CHECK_FALSE(ended[0].active);
  CHECK(ended[0].detail == "VMD: no active notification for 5s");
  CHECK_FALSE(t.next_expiry());
  CHECK(t.on_alert(vmd, t0 + 10s, tr) == AlertTracker::Verdict::kTransition);
  // Without inactive_after nothing expires.
  AlertTracker never;
  REQUIRE(never.on_alert(vmd, t0, tr) == AlertTracker::Verdict::kTransition);
  CHECK(never.expire(t0 + 24h).empty());
}

TEST_CASE("The tracker holds a bounded number of states", "[tracker]") {
  AlertTracker t({}, 4);
  const auto now = AlertTracker::Clock::now();
  Transition tr;
  for (uint32_t ch = 1; ch <= 100; ++ch) {
    Alert a = one(parse_body(hik_xml("VMD", "active", static_cast<int>(ch))));
    CHECK(t.on_alert(a, now, tr) == AlertTracker::Verdict::kTransition);
  }
  // Channel 1 is still remembered as active: its repeat is suppressed.
  CHECK(t.on_alert(one(parse_body(hik_xml("VMD", "active", 1))), now, tr) ==
        AlertTracker::Verdict::kRepeat);
}

// ---------------------------------------------------------------------------------------------
// HTTP authentication

TEST_CASE("Digest responses match the RFC examples", "[auth]") {
  // RFC 2617 section 3.5.
  auto c2617 = http_auth::parse_challenges(
      "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", "
      "nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"");
  REQUIRE(c2617.size() == 1);
  http_auth::DigestInput in{"GET", "/dir/index.html", "Mufasa", "Circle Of Life", 1, "0a4f113b"};
  auto h = http_auth::digest_authorization(c2617[0], in);
  REQUIRE(h.is_ok());
  CHECK_THAT(*h, Catch::Contains("response=\"6629fae49393a05397450978507c4ef1\""));
  CHECK_THAT(*h, Catch::Contains("qop=auth, nc=00000001, cnonce=\"0a4f113b\""));
  CHECK_THAT(*h, Catch::Contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
  const auto echoed = http_auth::parse_params(h->substr(7));
  CHECK(echoed.at("username") == "Mufasa");
  CHECK(echoed.at("uri") == "/dir/index.html");

  // RFC 7616 section 3.9.1, MD5 and SHA-256.
  const std::string nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
  const std::string cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
  http_auth::DigestInput in7616{"GET", "/dir/index.html", "Mufasa", "Circle of Life", 1, cnonce};
  for (auto [alg, expected] :
       {std::pair<std::string, std::string>{"MD5", "8ca523f5e9506fed4657c9700eebdbec"},
        {"SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"}}) {
    auto ch = http_auth::parse_challenges(
        "Digest realm=\"http-auth@example.org\", qop=\"auth, "
        "auth-int\", algorithm=" +
        alg + ", nonce=\"" + nonce + "\", opaque=\"x\"");
    REQUIRE(ch.size() == 1);
    auto r = http_auth::digest_authorization(ch[0], in7616);
    REQUIRE(r.is_ok());
    CHECK_THAT(*r, Catch::Contains("response=\"" + expected + "\""));
  }
}

TEST_CASE("Several challenges in one header; unsupported digests are explained", "[auth]") {
  auto cs = http_auth::parse_challenges(
      "Basic realm=\"cam\", Digest qop=\"auth\", realm=\"IP Camera(12345)\", nonce=\"abc\", "
      "stale=\"FALSE\"");
  REQUIRE(cs.size() == 2);
  CHECK(cs[0].scheme == "basic");
  CHECK(cs[0].param("realm") == "cam");
  CHECK(cs[1].scheme == "digest");
  CHECK(cs[1].param("realm") == "IP Camera(12345)");
  CHECK(cs[1].param("stale") == "FALSE");

  auto ch = http_auth::parse_challenges("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"");
  CHECK_THAT(
      http_auth::digest_authorization(ch[0], {"GET", "/", "u", "p", 1, "c"}).status().message(),
      Catch::Contains("auth-int is not supported"));
  ch = http_auth::parse_challenges("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256");
  CHECK_THAT(
      http_auth::digest_authorization(ch[0], {"GET", "/", "u", "p", 1, "c"}).status().message(),
      Catch::Contains("'SHA-512-256' is not supported"));
  // No qop: RFC 2069 style, response = H(HA1:nonce:HA2).
  ch = http_auth::parse_challenges("Digest realm=\"r\", nonce=\"n\"");
  auto old = http_auth::digest_authorization(ch[0], {"GET", "/", "u", "p", 1, "c"});
  REQUIRE(old.is_ok());
  const std::string expected =
      http_auth::md5_hex(http_auth::md5_hex("u:r:p") + ":n:" + http_auth::md5_hex("GET:/"));
  CHECK_THAT(*old, Catch::Contains(expected));
  CHECK_THAT(*old, !Catch::Contains("qop="));
  // A challenge value with a line break would split our request header: refused.
  ch = http_auth::parse_challenges("Digest realm=\"r\", nonce=\"n\r\nX-Injected: 1\"");
  CHECK_THAT(http_auth::digest_authorization(ch[0], {"GET", "/", "u", "p", 1, "c"})
                 .status()
                 .message(),
             Catch::Contains("control character in its nonce"));
  CHECK(http_auth::basic_authorization("Aladdin", "open sesame") ==
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
}

// ---------------------------------------------------------------------------------------------
// Robustness: mutated inputs never crash and never make the splitter hold more than its bound.

TEST_CASE("Mutated bodies and streams are handled without crashing", "[camera][robust]") {
  std::mt19937 rng(4242);
  const std::vector<std::string> seeds = {
      hik_xml("VMD", "active"),
      R"({"type":"motion","active":true,"channel":1})",
      R"({"eventType":"VMD","eventState":"active","channelID":"2"})",
      "Code=VideoMotion;action=Start;index=0;data={\"a\":[1,2]}",
      "Heartbeat",
      hik_stream_part(hik_xml("VMD", "active")) + dahua_part("Heartbeat")};
  static const char kAlphabet[] = "<>/&;=\"'{}[]:-\r\n\0x#!?";
  const std::string alphabet(kAlphabet, sizeof kAlphabet - 1);
  for (int round = 0; round < 20000; ++round) {
    std::string s = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      const std::size_t at = rng() % s.size();
      switch (rng() % 4) {
        case 0:
          s[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          s.erase(at, 1 + rng() % 8);
          break;
        case 2:
          s.insert(at, s.substr(rng() % s.size(), rng() % 16));
          break;
        default:
          s[at] = static_cast<char>(rng() % 256);
          break;
      }
    }
    auto r = parse_body(s);
    if (r.is_ok()) CHECK_FALSE(r->empty());
    SplitterLimits limits;
    limits.max_part_bytes = 256;
    limits.max_header_bytes = 128;
    // Whole or in pieces, the same parts come out.
    MultipartSplitter whole("boundary", limits);
    std::vector<Part> expected;
    whole.feed(s, expected);
    whole.finish(expected);
    for (std::size_t piece : {std::size_t{1}, std::size_t{5}}) {
      MultipartSplitter sp("boundary", limits);
      std::vector<Part> parts;
      for (std::size_t i = 0; i < s.size(); i += piece) {
        sp.feed(std::string_view(s).substr(i, piece), parts);
      }
      sp.finish(parts);
      REQUIRE(parts.size() == expected.size());
      for (std::size_t i = 0; i < parts.size(); ++i) {
        CHECK(parts[i].body == expected[i].body);
        CHECK(parts[i].skipped == expected[i].skipped);
        CHECK(parts[i].error == expected[i].error);
        CHECK(parts[i].body.size() <= 256);
      }
    }
  }
}
