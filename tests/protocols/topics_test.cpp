#include "protocols/topics.h"

#include <catch2/catch.hpp>

using namespace gw::protocols;
namespace v1 = campus::gateway::v1;

TEST_CASE("topics follow the contract") {
  TopicRoot root{"campus", "north-campus", "library", "lib-gw-01"};
  CHECK(events_topic(root, v1::ACCESS) == "campus/north-campus/library/lib-gw-01/events/access");
  CHECK(events_topic(root, v1::TELEMETRY) ==
        "campus/north-campus/library/lib-gw-01/events/telemetry");
  CHECK(state_topic(root) == "campus/north-campus/library/lib-gw-01/state");
  CHECK(health_topic(root) == "campus/north-campus/library/lib-gw-01/health");
  CHECK(parse_class_name("alarm") == v1::ALARM);
  CHECK_FALSE(parse_class_name("Alarm"));
}
