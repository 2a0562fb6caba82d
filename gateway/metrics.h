// Registry holds the gateway's Prometheus metrics — counters, gauges and histograms, each a family
// of series told apart by labels — and renders them in the text exposition format 0.0.4.
//
// Guarantees: counter(), gauge() and histogram() return the same object for the same name and
// labels (label order does not matter), and the reference stays valid until that series is
// removed (remove(), remove_matching()) or the Registry is destroyed, so hot paths look a series up
// once and keep the reference. render() always produces text Prometheus accepts: families sorted by
// name, series by labels, label values escaped (and invalid UTF-8 replaced by U+FFFD, because one
// bad byte would make Prometheus reject the whole scrape), numbers without exponent noise.
// Misuse is a programming error and aborts with a log line naming it: an invalid metric or label
// name, a reserved label name ("__" prefix; "le" on a histogram), one label given twice, a name
// reused with another type, help text or bucket layout, unsorted bucket bounds, or a counter that
// would go negative.
//
// Threading: core thread only, like everything it measures; no locks. Data owned by other threads
// is published by refreshing series from on_collect() callbacks, which render() runs first.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace gw::metrics {

// Label name/value pairs, e.g. {{"device", "meter-b1-01"}, {"class", "access"}}.
using Labels = std::vector<std::pair<std::string, std::string>>;

// A value that only goes up (a restart resets it to zero, which Prometheus understands).
class Counter {
 public:
  void inc(double by = 1);  // by >= 0
  // Mirrors a total kept elsewhere (e.g. Router::committed_total()) from an on_collect() callback.
  // A total below the previous one reads as a counter reset, as after a restart.
  void set(double total);  // total >= 0
  double value() const { return value_; }

 private:
  double value_ = 0;
};

// A value that goes up and down: a queue depth, 1/0 for online, a temperature.
class Gauge {
 public:
  void set(double value) { value_ = value; }
  void inc(double by = 1) { value_ += by; }
  void dec(double by = 1) { value_ -= by; }
  double value() const { return value_; }

 private:
  double value_ = 0;
};

// Counts observations into buckets by upper bound (inclusive, as Prometheus' "le"), plus their
// sum. NaN observations are dropped: one would turn _sum into NaN for the life of the process.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // sorted, finite; +Inf is implicit
  void observe(double value);
  const std::vector<double>& upper_bounds() const { return bounds_; }
  // Per bucket (not cumulative); one more entry than upper_bounds(), the last for +Inf.
  const std::vector<uint64_t>& bucket_counts() const { return counts_; }
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  double sum_ = 0;
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  Counter& counter(std::string_view name, std::string_view help, Labels labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, Labels labels = {});
  // Every series of one histogram family has the same upper_bounds; a trailing +Inf is dropped.
  Histogram& histogram(std::string_view name, std::string_view help,
                       std::vector<double> upper_bounds, Labels labels = {});

  // Drops one series (a device removed by a reload). Returns whether it existed. A family whose
  // last series goes disappears from the output; it may be registered again, even as another type.
  bool remove(std::string_view name, Labels labels);
  // Drops every series, of any family, that has label `label_name` = `label_value` — all of a
  // device's series at once. Returns how many went.
  std::size_t remove_matching(std::string_view label_name, std::string_view label_value);

  // `refresh` runs at the start of every render(), in registration order, so an owner can copy its
  // own stats into gauges just in time. It may create and remove series. It must not call render().
  // Callbacks live as long as the Registry: capture only what outlives it.
  void on_collect(std::function<void()> refresh);

  // The exposition, text format 0.0.4 (Content-Type "text/plain; version=0.0.4; charset=utf-8").
  std::string render();

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  using Series = std::variant<Counter, Gauge, Histogram>;
  struct Family {
    Type type;
    std::string help;
    std::vector<double> bounds;       // histograms only
    std::map<Labels, Series> series;  // labels sorted by name; std::map keeps references valid
  };

  Family& family(std::string_view name, std::string_view help, Type type,
                 const std::vector<double>* bounds);
  void render_family(std::string& out, const std::string& name, const Family& f) const;

  std::map<std::string, Family, std::less<>> families_;
  std::vector<std::function<void()>> collectors_;
  bool rendering_ = false;
};

// The pieces of the format, exposed for tests and for anyone writing exposition text by hand.
bool valid_metric_name(std::string_view name);  // [a-zA-Z_:][a-zA-Z0-9_:]*
bool valid_label_name(std::string_view name);   // [a-zA-Z_][a-zA-Z0-9_]* (no ':', unlike metrics)
// Integral values up to 2^53 as plain integers ("42", "-3", "0"); others in the shortest form
// that reads back exactly ("0.1", "1e-07", "1e+21"); "NaN", "+Inf", "-Inf".
std::string format_value(double value);
// Backslash, double quote and newline escaped; invalid UTF-8 replaced by U+FFFD.
std::string escape_label_value(std::string_view value);

}  // namespace gw::metrics
