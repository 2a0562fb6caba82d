// Canned daemon answers shaped as gateway/control_protocol.h describes them, for the format and
// command tests. Times are fixed: "now" is 2024-05-01 03:26:00 UTC and the tests run with TZ=UTC.
#pragma once

#include <cstdlib>
#include <ctime>
#include <string>

#include "tools/gatewayctl/json_util.h"

namespace gw::ctl::testing {

inline constexpr int64_t kNowUs = 1714533960LL * 1000000;  // 2024-05-01 03:26:00 UTC
inline constexpr int64_t at(int hh, int mm, int ss = 0) {
  return (1714521600LL + hh * 3600 + mm * 60 + ss) * 1000000;
}

inline void use_utc() {
  ::setenv("TZ", "UTC", 1);
  ::tzset();
}

inline Json device_summary(const std::string& id, bool online, const std::string& error = "") {
  return Json{{"id", id},
              {"online", online},
              {"state", online ? "online" : "offline"},
              {"last_error", error}};
}

inline Json healthy_status() {
  Json devices = Json::array();
  for (int i = 1; i <= 12; ++i) {
    char id[32];
    std::snprintf(id, sizeof id, "meter-b1-%02d", i);
    devices.push_back(device_summary(id, true));
  }
  return Json{{"gateway_id", "lib-gw-01"},
              {"version", "0.1.0"},
              {"boot_id", "5f3c2a9e"},
              {"uptime_s", 3 * 86400 + 4 * 3600},
              {"started_at_us", kNowUs - (3LL * 86400 + 4 * 3600) * 1000000},
              {"mqtt",
               {{"uri", "tcp://broker.campus:1883"},
                {"connected", true},
                {"connected_since_us", kNowUs - (2LL * 3600 + 13 * 60) * 1000000},
                {"reconnects", 1},
                {"last_error", ""},
                {"inflight", 0},
                {"published_events", 120344},
                {"acked_events", 120344},
                {"republished_events", 12}}},
              {"buffer",
               {{"pending", 0},
                {"oldest_age_s", 0},
                {"next_seq", 120345},
                {"classes",
                 {{"access", {{"pending", 0}, {"bytes", 0}, {"oldest_age_s", 0}}},
                  {"alarm", {{"pending", 0}, {"bytes", 0}, {"oldest_age_s", 0}}},
                  {"telemetry", {{"pending", 0}, {"bytes", 0}, {"oldest_age_s", 0}}},
                  {"status", {{"pending", 0}, {"bytes", 0}, {"oldest_age_s", 0}}}}}}},
              {"devices_online", 12},
              {"devices_offline", 0},
              {"devices", devices},
              {"buses", Json::array()},
              {"last_errors", Json::array()}};
}

inline Json degraded_status() {
  Json st = healthy_status();
  st["mqtt"]["connected"] = false;
  st["mqtt"]["connected_since_us"] = at(3, 12);
  st["mqtt"]["last_error"] = "connection refused";
  st["mqtt"]["reconnects"] = 14;
  st["buffer"] = {{"pending", 1204},
                  {"oldest_age_s", 840},
                  {"next_seq", 121549},
                  {"classes",
                   {{"access", {{"pending", 3}, {"bytes", 1230}, {"oldest_age_s", 840}}},
                    {"alarm", {{"pending", 0}, {"bytes", 0}, {"oldest_age_s", 0}}},
                    {"telemetry", {{"pending", 1190}, {"bytes", 419840}, {"oldest_age_s", 840}}},
                    {"status", {{"pending", 11}, {"bytes", 1126}, {"oldest_age_s", 720}}}}}};
  st["devices_online"] = 10;
  st["devices_offline"] = 2;
  st["devices"][6] = device_summary("meter-b1-07", false, "no answer within 200ms");
  st["devices"][8] =
      device_summary("meter-b1-09", false, "connect to 10.0.3.29:502: Connection refused");
  st["buses"] = Json::array({Json{{"id", "rs485-1"},
                                  {"open", true},
                                  {"exchanges", 12033},
                                  {"timeouts", 37},
                                  {"bad_frames", 2},
                                  {"discarded_bytes", 17},
                                  {"queued", 1}}});
  st["last_errors"] = Json::array(
      {Json{{"at_us", at(3, 12, 4)}, {"component", "uplink"}, {"message", "connection refused"}},
       Json{{"at_us", at(3, 11, 58)},
            {"component", "meter-b1-07"},
            {"message", "offline: no answer within 200ms"}}});
  return st;
}

inline Json device_full(const std::string& id, bool online) {
  Json d = {{"id", id},
            {"kind", "energy_meter"},
            {"driver", online ? "modbus_tcp" : "modbus_rtu"},
            {"address", online ? "10.0.3.21:502" : "rs485-1"},
            {"unit_id", online ? 1 : 7},
            {"online", online},
            {"state", online ? "online" : "offline"},
            {"last_good_read_us", online ? at(3, 25, 58) : at(3, 11, 40)},
            {"last_error", online ? "" : "no answer within 200ms"},
            {"polls", online ? 54213 : 5120},
            {"failures", online ? 3 : 61},
            {"errors",
             {{"timeout", online ? 2 : 58},
              {"protocol", online ? 1 : 3},
              {"unavailable", 0},
              {"other", 0}}},
            {"skipped_while_offline", online ? 0 : 140},
            {"overruns", 0},
            {"poll_ms_configured", 5000},
            {"poll_ms_achieved", online ? 5004.2 : 20100.0},
            {"latency_ms", {{"last", online ? 12.4 : 0.0}, {"avg", online ? 15.1 : 182.0}}},
            {"points", Json::array()}};
  d["points"].push_back({{"name", "energy_total"},
                         {"value", 1234.56},
                         {"unit", "kWh"},
                         {"good", true},
                         {"at_us", online ? at(3, 25, 58) : at(3, 11, 40)}});
  d["points"].push_back({{"name", "voltage_l1"},
                         {"value", online ? Json(231.7) : Json(nullptr)},
                         {"unit", "V"},
                         {"good", online},
                         {"at_us", online ? at(3, 25, 58) : at(3, 11, 40)}});
  return d;
}

inline Json devices_result() {
  return Json{{"devices",
               Json::array({device_full("meter-b1-01", true), device_full("meter-b1-07", false)})}};
}

// A telemetry event in protobuf's JSON form (64-bit integers as strings).
inline Json telemetry_event(uint64_t seq) {
  return Json{{"seq", std::to_string(seq)},
              {"device_id", "meter-b1-01"},
              {"kind", "ENERGY_METER"},
              {"event_class", "TELEMETRY"},
              {"gateway_time_us", std::to_string(at(3, 25, 58) + 123000)},
              {"device_time_us", "0"},
              {"historical", false},
              {"meter",
               {{"values", Json::array({Json{{"name", "energy_total"},
                                             {"value", 1234.56},
                                             {"unit", "kWh"},
                                             {"quality", "GOOD"}},
                                        Json{{"name", "voltage_l1"},
                                             {"value", 231.7},
                                             {"unit", "V"},
                                             {"quality", "GOOD"}}})}}}};
}

inline Json access_event(uint64_t seq, const std::string& credential) {
  return Json{{"seq", std::to_string(seq)},
              {"device_id", "gate-n1-reader"},
              {"kind", "CARD_READER"},
              {"event_class", "ACCESS"},
              {"gateway_time_us", std::to_string(at(3, 25, 59))},
              {"device_time_us", "0"},
              {"historical", false},
              {"access",
               {{"credential", credential},
                {"direction", "IN"},
                {"result", "GRANTED"},
                {"door", "north-gate-1"},
                {"reason", ""}}}};
}

}  // namespace gw::ctl::testing
