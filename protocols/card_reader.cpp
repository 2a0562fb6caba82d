#include "protocols/card_reader.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <cctype>
#include <cstdio>

namespace gw::protocols::card_reader {

namespace {

bool is_space(uint8_t b) { return b == ' ' || b == '\t' || b == '\r' || b == '\n'; }
bool is_digit(uint8_t b) { return b >= '0' && b <= '9'; }
int hex_value(uint8_t b) {
  if (b >= '0' && b <= '9') return b - '0';
  if (b >= 'a' && b <= 'f') return b - 'a' + 10;
  if (b >= 'A' && b <= 'F') return b - 'A' + 10;
  return -1;
}

std::span<const uint8_t> trimmed(std::span<const uint8_t> s) {
  while (!s.empty() && is_space(s.front())) s = s.subspan(1);
  while (!s.empty() && is_space(s.back())) s = s.first(s.size() - 1);
  return s;
}

bool ends_with(const std::vector<uint8_t>& v, std::string_view tail) {
  if (v.size() < tail.size()) return false;
  return std::equal(tail.begin(), tail.end(), v.end() - static_cast<std::ptrdiff_t>(tail.size()),
                    [](char a, uint8_t b) { return static_cast<uint8_t>(a) == b; });
}

Decoded reject(std::string kind, std::string message) {
  Decoded d;
  d.error = Rejection{std::move(kind), std::move(message)};
  return d;
}

Decoded accept(std::string card_id) {
  Decoded d;
  d.card_id = std::move(card_id);
  return d;
}

std::string upper_hex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0x0F];
  }
  return out;
}

// "N characters, M of them not digits": describes bad text without quoting it.
std::string shape_of(std::span<const uint8_t> text, bool (*good)(uint8_t)) {
  const auto bad = std::count_if(text.begin(), text.end(), [&](uint8_t b) { return !good(b); });
  std::string out = std::to_string(text.size()) + " characters";
  if (bad > 0) out += ", " + std::to_string(bad) + " of them not allowed";
  return out;
}

int wiegand_bits(CardFormat f) { return f == CardFormat::kWiegand26 ? 26 : 34; }

Decoded decode_line(CardFormat format, std::span<const uint8_t> payload) {
  const auto text = trimmed(payload);
  const auto all = [&](auto pred) { return std::all_of(text.begin(), text.end(), pred); };
  const auto hex_digit = [](uint8_t b) { return hex_value(b) >= 0; };
  switch (format) {
    case CardFormat::kDecimal:
      if (text.empty() || text.size() > 32 || !all(is_digit)) {
        return reject("format", "expected 1-32 decimal digits, got " + shape_of(text, is_digit));
      }
      return accept(std::string(text.begin(), text.end()));
    case CardFormat::kHex: {
      if (text.empty() || text.size() > 64 || !all(hex_digit)) {
        return reject("format", "expected 1-64 hex digits, got " +
                                    shape_of(text, [](uint8_t b) { return hex_value(b) >= 0; }));
      }
      std::string out(text.begin(), text.end());
      for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      return accept(std::move(out));
    }
    case CardFormat::kWiegand26:
    case CardFormat::kWiegand34: {
      const int n = wiegand_bits(format);
      const std::size_t max_hex = static_cast<std::size_t>((n + 3) / 4);
      uint64_t bits = 0;
      if (text.size() == static_cast<std::size_t>(n) &&
          all([](uint8_t b) { return b == '0' || b == '1'; })) {
        for (uint8_t b : text) bits = (bits << 1) | static_cast<uint64_t>(b - '0');
      } else if (!text.empty() && text.size() <= max_hex && all(hex_digit)) {
        for (uint8_t b : text) bits = (bits << 4) | static_cast<uint64_t>(hex_value(b));
        if (bits >> n) {
          return reject("format", "hex value has more than " + std::to_string(n) + " bits");
        }
      } else {
        return reject("format", "expected " + std::to_string(n) + " bits as '0'/'1' or 1-" +
                                    std::to_string(max_hex) + " hex digits, got " +
                                    std::to_string(text.size()) + " characters");
      }
      return decode_wiegand(bits, n);
    }
  }
  return reject("format", "unknown card format");
}

Decoded decode_stx(CardFormat format, std::span<const uint8_t> data) {
  switch (format) {
    case CardFormat::kDecimal: {
      if (data.size() < 4) {
        return reject("format", "decimal needs at least 4 data bytes, frame has " +
                                    std::to_string(data.size()));
      }
      uint32_t n = 0;
      for (uint8_t b : data.last(4)) n = (n << 8) | b;
      char text[16];
      std::snprintf(text, sizeof text, "%010u", n);
      return accept(text);
    }
    case CardFormat::kHex:
      return accept(upper_hex(data));
    case CardFormat::kWiegand26:
    case CardFormat::kWiegand34:
      break;
  }
  return reject("format", "stx_etx frames carry no Wiegand parity bits");
}

Decoded decode_fixed(CardFormat format, std::span<const uint8_t> frame) {
  switch (format) {
    case CardFormat::kDecimal: {
      if (frame.empty() || frame.size() > 8) {
        return reject("format", "decimal reads at most 8 bytes as one number, frame has " +
                                    std::to_string(frame.size()));
      }
      uint64_t n = 0;
      for (uint8_t b : frame) n = (n << 8) | b;
      return accept(std::to_string(n));
    }
    case CardFormat::kHex:
      return accept(upper_hex(frame));
    case CardFormat::kWiegand26:
    case CardFormat::kWiegand34: {
      const int n = wiegand_bits(format);
      const std::size_t low_bytes = static_cast<std::size_t>((n + 7) / 8);
      if (frame.size() < low_bytes) {
        return reject("format", "frame of " + std::to_string(frame.size()) + " bytes cannot hold " +
                                    std::to_string(n) + " bits");
      }
      const std::size_t high = frame.size() - low_bytes;
      uint64_t bits = 0;
      for (uint8_t b : frame.subspan(high)) bits = (bits << 8) | b;
      const bool high_zero =
          std::all_of(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(high),
                      [](uint8_t b) { return b == 0; });
      if (!high_zero || (bits >> n) != 0) {
        return reject("format", "bits set above the " + std::to_string(n) + " Wiegand bits");
      }
      return decode_wiegand(bits, n);
    }
  }
  return reject("format", "unknown card format");
}

}  // namespace

std::optional<CardFormat> parse_card_format(std::string_view name) {
  if (name == "decimal") return CardFormat::kDecimal;
  if (name == "hex") return CardFormat::kHex;
  if (name == "wiegand26") return CardFormat::kWiegand26;
  if (name == "wiegand34") return CardFormat::kWiegand34;
  return std::nullopt;
}

std::string_view card_format_name(CardFormat format) {
  switch (format) {
    case CardFormat::kDecimal:
      return "decimal";
    case CardFormat::kHex:
      return "hex";
    case CardFormat::kWiegand26:
      return "wiegand26";
    case CardFormat::kWiegand34:
      return "wiegand34";
  }
  return "?";
}

Status check_combination(const Framing& framing, CardFormat format) {
  const bool wiegand = format == CardFormat::kWiegand26 || format == CardFormat::kWiegand34;
  const std::string name(card_format_name(format));
  switch (framing.type) {
    case FramingType::kLine:
      return Status::ok();
    case FramingType::kStxEtx:
      if (wiegand) {
        return Status::invalid(
            "stx_etx frames (EM4100) carry no Wiegand parity bits; use "
            "card_format decimal or hex");
      }
      return Status::ok();
    case FramingType::kFixed:
      if (format == CardFormat::kDecimal && framing.length > 8) {
        return Status::invalid(
            "decimal reads a fixed frame as one number of at most 8 bytes, but "
            "length is " +
            std::to_string(framing.length) + "; use hex");
      }
      if (wiegand) {
        const std::size_t need = format == CardFormat::kWiegand26 ? 4 : 5;
        if (framing.length < need) {
          return Status::invalid(name + " needs frames of at least " + std::to_string(need) +
                                 " bytes (length is " + std::to_string(framing.length) + ")");
        }
      }
      return Status::ok();
  }
  return Status::invalid("unknown framing");
}

// ---- FrameSplitter ----

FrameSplitter::FrameSplitter(Framing framing) : framing_(std::move(framing)) {
  assert(framing_.max_length >= 1);
  assert(framing_.type != FramingType::kLine ||
         (!framing_.delimiter.empty() && framing_.delimiter.size() <= kMaxDelimiter));
  assert(framing_.type != FramingType::kFixed || framing_.length >= 1);
}

void FrameSplitter::reset() {
  state_ = State::kBetween;
  frame_.clear();
  skipped_.clear();
  skipped_rejection_.reset();
}

void FrameSplitter::feed(std::span<const uint8_t> bytes, const Sink& sink) {
  for (uint8_t b : bytes) {
    switch (framing_.type) {
      case FramingType::kLine:
        feed_line(b, sink);
        break;
      case FramingType::kStxEtx:
        feed_stx(b, sink);
        break;
      case FramingType::kFixed:
        feed_fixed(b, sink);
        break;
    }
  }
  flush_skipped(sink);
}

void FrameSplitter::idle(const Sink& sink) {
  if (framing_.type != FramingType::kFixed || frame_.empty()) return;
  drop_frame({"framing", "partial frame of " + std::to_string(frame_.size()) + " of " +
                             std::to_string(framing_.length) + " bytes dropped after a pause"},
             sink);
}

void FrameSplitter::feed_line(uint8_t b, const Sink& sink) {
  const std::string_view delim = framing_.delimiter;
  if (state_ == State::kSkipping) {
    // The rest of an overflowed line: skip up to and including the next delimiter. The last
    // delimiter-1 bytes of the dropped line are kept in frame_ to catch a delimiter split there.
    frame_.push_back(b);
    if (frame_.size() > delim.size()) frame_.erase(frame_.begin());
    skip(b, sink);
    if (ends_with(frame_, delim)) {
      frame_.clear();
      state_ = State::kBetween;
      flush_skipped(sink);
    }
    return;
  }
  frame_.push_back(b);
  if (ends_with(frame_, delim)) {
    const std::span<const uint8_t> raw(frame_);
    const auto text = raw.first(raw.size() - delim.size());
    if (trimmed(text).empty()) {
      // An empty line (e.g. the LF of a CR LF reader split on CR): nothing to report.
      flush_skipped(sink);
      Piece p;
      p.raw = raw;
      stats_.dropped_bytes += raw.size();
      sink(p);
      frame_.clear();
    } else {
      emit_frame(raw, text, sink);
    }
    return;
  }
  if (frame_.size() >= framing_.max_length + delim.size()) {
    // More than max_length bytes and still no delimiter: whatever follows cannot make this a
    // valid line.
    ++stats_.overflows;
    std::vector<uint8_t> tail(frame_.end() - static_cast<std::ptrdiff_t>(delim.size() - 1),
                              frame_.end());
    drop_frame(
        {"overflow", "no delimiter within max_length (" + std::to_string(framing_.max_length) +
                         " bytes); skipping to the next delimiter"},
        sink);
    frame_ = std::move(tail);
    state_ = State::kSkipping;
  }
}

void FrameSplitter::feed_stx(uint8_t b, const Sink& sink) {
  if (b == kStx) {
    if (state_ == State::kInFrame) {
      drop_frame({"framing", "frame cut short: STX again after " + std::to_string(frame_.size()) +
                                 " bytes without ETX"},
                 sink);
    }
    flush_skipped(sink);
    frame_.assign(1, b);
    state_ = State::kInFrame;
    return;
  }
  switch (state_) {
    case State::kBetween:
      if (b == '\r' || b == '\n') {
        skip(b, sink);  // some readers end each frame with CR LF after ETX: not garbage
      } else {
        skip(b, sink, Rejection{"framing", "bytes outside STX...ETX frames skipped"});
        state_ = State::kSkipping;
      }
      return;
    case State::kSkipping:
      skip(b, sink);  // the run goes on until the next STX (counted once, when it started)
      return;
    case State::kInFrame:
      frame_.push_back(b);
      if (b == kEtx) {
        finish_stx_frame(sink);
        state_ = State::kBetween;
      } else if (frame_.size() + 1 > framing_.max_length) {
        ++stats_.overflows;
        drop_frame({"overflow", "no ETX within max_length (" + std::to_string(framing_.max_length) +
                                    " bytes); skipping to the next STX"},
                   sink);
        state_ = State::kSkipping;
      }
      return;
  }
}

void FrameSplitter::finish_stx_frame(const Sink& sink) {
  // frame_ = STX content ETX; content = hex data, hex checksum, optional CR LF.
  std::span<const uint8_t> content = std::span<const uint8_t>(frame_).subspan(1);
  content = content.first(content.size() - 1);
  while (!content.empty() && (content.back() == '\r' || content.back() == '\n')) {
    content = content.first(content.size() - 1);
  }
  const bool hex =
      std::all_of(content.begin(), content.end(), [](uint8_t c) { return hex_value(c) >= 0; });
  if (!hex || content.size() < 4 || content.size() % 2 != 0) {
    drop_frame(
        {"format", "STX/ETX frame is not hex data + checksum (" + std::to_string(content.size()) +
                       " characters" + (hex ? "" : ", not all hex digits") + ")"},
        sink);
    return;
  }
  payload_.clear();
  for (std::size_t i = 0; i < content.size(); i += 2) {
    payload_.push_back(
        static_cast<uint8_t>(hex_value(content[i]) << 4 | hex_value(content[i + 1])));
  }
  const uint8_t checksum = payload_.back();
  payload_.pop_back();
  uint8_t x = 0;
  for (uint8_t d : payload_) x ^= d;
  if (x != checksum) {
    drop_frame({"checksum", "XOR checksum does not match the " + std::to_string(payload_.size()) +
                                " data bytes"},
               sink);
    return;
  }
  emit_frame(frame_, payload_, sink);
}

void FrameSplitter::feed_fixed(uint8_t b, const Sink& sink) {
  frame_.push_back(b);
  if (frame_.size() == framing_.length) emit_frame(frame_, frame_, sink);
}

void FrameSplitter::emit_frame(std::span<const uint8_t> raw, std::span<const uint8_t> payload,
                               const Sink& sink) {
  flush_skipped(sink);
  ++stats_.frames;
  Piece p;
  p.kind = Piece::Kind::kFrame;
  p.raw = raw;
  p.payload = payload;
  sink(p);
  frame_.clear();
}

void FrameSplitter::drop_frame(Rejection why, const Sink& sink) {
  flush_skipped(sink);
  ++stats_.rejected;
  stats_.dropped_bytes += frame_.size();
  Piece p;
  p.raw = frame_;
  p.rejection = std::move(why);
  sink(p);
  frame_.clear();
}

void FrameSplitter::skip(uint8_t b, const Sink& sink, std::optional<Rejection> starts_run) {
  if (starts_run) {
    flush_skipped(sink);
    skipped_rejection_ = std::move(starts_run);
  }
  skipped_.push_back(b);
  ++stats_.dropped_bytes;
  if (skipped_.size() >= kMaxSkipPiece) flush_skipped(sink);
}

void FrameSplitter::flush_skipped(const Sink& sink) {
  if (skipped_.empty()) return;
  Piece p;
  p.raw = skipped_;
  p.rejection = std::move(skipped_rejection_);
  if (p.rejection) ++stats_.rejected;
  sink(p);
  skipped_.clear();
  skipped_rejection_.reset();
}

// ---- card ids ----

Decoded decode_wiegand(uint64_t bits, int bit_count) {
  if (bit_count != 26 && bit_count != 34) return reject("format", "unsupported Wiegand length");
  const std::string name = "wiegand" + std::to_string(bit_count);
  const int half = bit_count / 2;  // each parity bit covers itself and half - 1 data bits
  const uint64_t mask = (uint64_t{1} << half) - 1;
  const uint64_t first = (bits >> half) & mask;  // leading even parity bit + first data bits
  const uint64_t second = bits & mask;           // last data bits + trailing odd parity bit
  if (std::popcount(first) % 2 != 0) {
    return reject("parity",
                  name + ": leading even parity bit does not match bits 2-" + std::to_string(half));
  }
  if (std::popcount(second) % 2 != 1) {
    return reject("parity", name + ": trailing odd parity bit does not match bits " +
                                std::to_string(half + 1) + "-" + std::to_string(bit_count - 1));
  }
  const uint64_t data = (bits >> 1) & ((uint64_t{1} << (bit_count - 2)) - 1);
  const uint64_t facility = data >> 16;
  const uint64_t card = data & 0xFFFF;
  return accept(std::to_string(facility) + ":" + std::to_string(card));
}

Decoded decode_card(FramingType framing, CardFormat format, std::span<const uint8_t> payload) {
  switch (framing) {
    case FramingType::kLine:
      return decode_line(format, payload);
    case FramingType::kStxEtx:
      return decode_stx(format, payload);
    case FramingType::kFixed:
      return decode_fixed(format, payload);
  }
  return reject("format", "unknown framing");
}

}  // namespace gw::protocols::card_reader
