#include "gateway/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "gateway/log.h"

namespace gw::metrics {

namespace {

// Misuse is a bug in the caller, found by its first test run: say what and where, then stop.
[[noreturn]] void misuse(std::string_view what, std::string_view name) {
  log::error("metrics", "programming error: ", what, " \"", escape_label_value(name), "\"");
  std::abort();
}

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Length of the well-formed UTF-8 sequence starting at s[i], or 0 when there is none (stray
// continuation byte, overlong form, surrogate, beyond U+10FFFF, truncated).
std::size_t utf8_length_at(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  std::size_t len = 0;
  uint32_t cp = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    cp = c & 0x1Fu;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    cp = c & 0x0Fu;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    cp = c & 0x07u;
  } else {
    return 0;
  }
  if (s.size() - i < len) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0u) != 0x80u) return 0;
    cp = (cp << 6) | (b & 0x3Fu);
  }
  if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
  if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
  return len;
}

// HELP text escapes backslash and newline; label values also the double quote (format 0.0.4).
void append_escaped(std::string& out, std::string_view s, bool escape_quote) {
  for (std::size_t i = 0; i < s.size();) {
    const char c = s[i];
    const std::size_t len = utf8_length_at(s, i);
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && escape_quote) {
      out += "\\\"";
    } else {
      out.append(s.data() + i, len);
    }
    i += len;
  }
}

// Sorted by name, so the same set in any order is the same series, and output is stable.
Labels canonical(Labels labels, bool histogram, std::string_view metric) {
  for (const auto& [name, value] : labels) {
    if (!valid_label_name(name)) misuse("invalid label name", name);
    if (name.starts_with("__")) misuse("label names starting with __ are reserved", name);
    if (histogram && name == "le") misuse("label le is reserved on histogram", metric);
  }
  std::sort(labels.begin(), labels.end());
  for (std::size_t i = 1; i < labels.size(); ++i) {
    if (labels[i].first == labels[i - 1].first) misuse("label given twice", labels[i].first);
  }
  return labels;
}

// A trailing +Inf is the implicit last bucket; the rest must be finite and strictly increasing.
std::vector<double> normalized_bounds(std::vector<double> bounds) {
  if (!bounds.empty() && std::isinf(bounds.back()) && bounds.back() > 0) bounds.pop_back();
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) misuse("histogram bound is not finite", format_value(bounds[i]));
    if (i > 0 && !(bounds[i - 1] < bounds[i])) {
      misuse("histogram bounds are not strictly increasing", format_value(bounds[i]));
    }
  }
  return bounds;
}

// `{a="x",b="y"}`, with (extra_name, extra_value) last when given; nothing for no labels.
void append_labels(std::string& out, const Labels& labels, std::string_view extra_name = {},
                   std::string_view extra_value = {}) {
  if (labels.empty() && extra_name.empty()) return;
  out += '{';
  bool first = true;
  auto one = [&](std::string_view name, std::string_view value) {
    if (!first) out += ',';
    first = false;
    out += name;
    out += "=\"";
    append_escaped(out, value, true);
    out += '"';
  };
  for (const auto& [name, value] : labels) one(name, value);
  if (!extra_name.empty()) one(extra_name, extra_value);
  out += '}';
}

void append_sample(std::string& out, std::string_view name, std::string_view suffix,
                   const Labels& labels, double value, std::string_view extra_name = {},
                   std::string_view extra_value = {}) {
  out += name;
  out += suffix;
  append_labels(out, labels, extra_name, extra_value);
  out += ' ';
  out += format_value(value);
  out += '\n';
}

}  // namespace

bool valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = is_alpha(c) || c == '_' || c == ':' || (i > 0 && is_digit(c));
    if (!ok) return false;
  }
  return true;
}

bool valid_label_name(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = is_alpha(c) || c == '_' || (i > 0 && is_digit(c));
    if (!ok) return false;
  }
  return true;
}

std::string format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Every integer up to 2^53 is exact in a double; printing it as one keeps counters readable
  // ("1234567" rather than "1.234567e+06") and -0 as "0".
  if (std::trunc(value) == value && std::fabs(value) <= 9007199254740992.0) {
    return std::to_string(static_cast<int64_t>(value));
  }
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  if (ec != std::errc()) misuse("cannot format a number", "");  // 32 bytes always suffice
  return std::string(buf, end);
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  append_escaped(out, value, true);
  return out;
}

void Counter::inc(double by) {
  if (!(by >= 0)) misuse("counter increment is negative or NaN", format_value(by));
  value_ += by;
}

void Counter::set(double total) {
  if (!(total >= 0)) misuse("counter total is negative or NaN", format_value(total));
  value_ = total;
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(normalized_bounds(std::move(upper_bounds))), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  if (std::isnan(value)) return;
  const auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[static_cast<std::size_t>(bucket)];
  ++count_;
  sum_ += value;
}

Registry::Family& Registry::family(std::string_view name, std::string_view help, Type type,
                                   const std::vector<double>* bounds) {
  auto it = families_.find(name);
  if (it == families_.end()) {
    if (!valid_metric_name(name)) misuse("invalid metric name", name);
    Family f{type, std::string(help), bounds ? *bounds : std::vector<double>{}, {}};
    return families_.emplace(std::string(name), std::move(f)).first->second;
  }
  Family& f = it->second;
  if (f.type != type) misuse("metric registered again as another type", name);
  if (f.help != help) misuse("metric registered again with other help text", name);
  if (bounds && f.bounds != *bounds) misuse("histogram registered again with other buckets", name);
  return f;
}

Counter& Registry::counter(std::string_view name, std::string_view help, Labels labels) {
  Family& f = family(name, help, Type::kCounter, nullptr);
  auto [it, added] = f.series.try_emplace(canonical(std::move(labels), false, name), Counter{});
  return std::get<Counter>(it->second);
}

Gauge& Registry::gauge(std::string_view name, std::string_view help, Labels labels) {
  Family& f = family(name, help, Type::kGauge, nullptr);
  auto [it, added] = f.series.try_emplace(canonical(std::move(labels), false, name), Gauge{});
  return std::get<Gauge>(it->second);
}

Histogram& Registry::histogram(std::string_view name, std::string_view help,
                               std::vector<double> upper_bounds, Labels labels) {
  const std::vector<double> bounds = normalized_bounds(std::move(upper_bounds));
  Family& f = family(name, help, Type::kHistogram, &bounds);
  Labels key = canonical(std::move(labels), true, name);
  auto it = f.series.find(key);
  if (it == f.series.end()) it = f.series.emplace(std::move(key), Histogram(bounds)).first;
  return std::get<Histogram>(it->second);
}

bool Registry::remove(std::string_view name, Labels labels) {
  auto fit = families_.find(name);
  if (fit == families_.end()) return false;
  const bool removed = fit->second.series.erase(canonical(std::move(labels), false, name)) > 0;
  if (fit->second.series.empty()) families_.erase(fit);
  return removed;
}

std::size_t Registry::remove_matching(std::string_view label_name, std::string_view label_value) {
  std::size_t removed = 0;
  for (auto fit = families_.begin(); fit != families_.end();) {
    auto& series = fit->second.series;
    removed += std::erase_if(series, [&](const auto& entry) {
      return std::any_of(entry.first.begin(), entry.first.end(), [&](const auto& label) {
        return label.first == label_name && label.second == label_value;
      });
    });
    fit = series.empty() ? families_.erase(fit) : std::next(fit);
  }
  return removed;
}

void Registry::on_collect(std::function<void()> refresh) {
  // A callback added while callbacks run would move the one running out from under it.
  if (rendering_) misuse("on_collect() called from an on_collect() callback", "");
  collectors_.push_back(std::move(refresh));
}

std::string Registry::render() {
  if (rendering_) misuse("render() called from an on_collect() callback", "");
  rendering_ = true;
  for (auto& refresh : collectors_) refresh();
  rendering_ = false;

  std::string out;
  for (const auto& [name, f] : families_) render_family(out, name, f);
  return out;
}

void Registry::render_family(std::string& out, const std::string& name, const Family& f) const {
  out += "# HELP ";
  out += name;
  out += ' ';
  append_escaped(out, f.help, false);
  out += "\n# TYPE ";
  out += name;
  out += f.type == Type::kCounter ? " counter\n"
         : f.type == Type::kGauge ? " gauge\n"
                                  : " histogram\n";
  for (const auto& [labels, series] : f.series) {
    if (const auto* c = std::get_if<Counter>(&series)) {
      append_sample(out, name, "", labels, c->value());
    } else if (const auto* g = std::get_if<Gauge>(&series)) {
      append_sample(out, name, "", labels, g->value());
    } else {
      const auto& h = std::get<Histogram>(series);
      // Buckets are cumulative in the exposition; +Inf equals _count.
      uint64_t cumulative = 0;
      for (std::size_t i = 0; i < h.upper_bounds().size(); ++i) {
        cumulative += h.bucket_counts()[i];
        append_sample(out, name, "_bucket", labels, static_cast<double>(cumulative), "le",
                      format_value(h.upper_bounds()[i]));
      }
      append_sample(out, name, "_bucket", labels, static_cast<double>(h.count()), "le", "+Inf");
      append_sample(out, name, "_sum", labels, h.sum());
      append_sample(out, name, "_count", labels, static_cast<double>(h.count()));
    }
  }
}

}  // namespace gw::metrics
