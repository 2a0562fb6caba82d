// Card readers that stream what they read: a FrameSplitter cuts the byte stream into frames by
// one of three framings, and decode_card() turns a frame into the card id the gateway reports.
// I/O-free; one splitter per connection, not thread-safe; safe to destroy at any point.
//
// Framings (config `framing:`):
//   line     text terminated by `delimiter` (1..8 bytes, default CR LF); the frame is the text
//            before it. Lines that are empty or only whitespace are skipped silently.
//   stx_etx  STX (02) payload ETX (03), as 125 kHz EM4100 readers send: the payload is ASCII hex,
//            data bytes then one XOR checksum byte (XOR of the data bytes), optionally followed
//            by CR LF inside the frame. RDM6300-style: 02 "0F00A1B2C3" "DF" 03 (14 bytes);
//            ID-12-style: 02 "0F00A1B2C3" "DF" 0D 0A 03 (16 bytes). The frame is the data bytes
//            (binary, 5 for EM4100), checksum verified. CR/LF between frames are ignored.
//   fixed    binary frames of exactly `length` bytes, back to back. Nothing in the bytes marks a
//            frame's start, so a partial frame is dropped when the line pauses (idle()).
//
// Bounded memory: a splitter holds at most max_length + 8 bytes of frame plus a 256-byte run of
// skipped bytes, whatever it is fed. A line with no delimiter within max_length bytes (an STX
// frame with no ETX within max_length bytes) is dropped and reported once ("overflow"); the
// splitter skips to the next delimiter (next STX) and resynchronizes there. Bytes outside
// STX...ETX frames are skipped and reported once per run ("framing").
//
// Printed card ids (what raw mode puts in access.credential; privacy hmac hashes this string):
//   decimal    line:    the digits as the reader sent them (leading zeros kept: they match the
//                       number printed on the card), 1..32 digits.
//              stx_etx: the last 4 data bytes as a 10-digit zero-padded number — the number
//                       printed on EM4100 cards (e.g. "0010597059"); the version byte is left out.
//              fixed:   the frame (1..8 bytes) as a big-endian unsigned number, no padding.
//   hex        uppercase hex digits. line: as sent (1..64 digits, case folded); stx_etx: all data
//              bytes ("0F00A1B2C3"); fixed: all frame bytes.
//   wiegand26  "FACILITY:CARD" in decimal without padding, e.g. "90:324" (H10301: even parity,
//              8-bit facility, 16-bit card, odd parity). Both parity bits are checked.
//   wiegand34  the same with a 16-bit facility (H10306: even parity, 16-bit facility, 16-bit
//              card, odd parity), e.g. "1234:56789". For both: number = facility * 65536 + card.
//   The raw Wiegand bits come, on line framing, as 26 (34) characters '0'/'1', first bit first,
//   or as hex of at most 7 (9) digits holding the bits right-aligned; on fixed framing, as the
//   frame's big-endian value with the bits right-aligned and unused high bits zero (so
//   wiegand26 needs length >= 4, wiegand34 >= 5). stx_etx frames carry no parity bits and
//   cannot be wiegand (check_combination()).
//
// Every rejection names its kind ("framing", "checksum", "parity", "overflow", "format") and
// says what was wrong without quoting the bytes: card numbers must never reach a log.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/status.h"

namespace gw::protocols::card_reader {

inline constexpr uint8_t kStx = 0x02;
inline constexpr uint8_t kEtx = 0x03;
inline constexpr std::size_t kMaxDelimiter = 8;
inline constexpr std::size_t kMaxSkipPiece = 256;  // skipped bytes are handed out in pieces

enum class FramingType { kLine, kStxEtx, kFixed };
enum class CardFormat { kDecimal, kHex, kWiegand26, kWiegand34 };

struct Framing {
  FramingType type = FramingType::kLine;
  std::string delimiter = "\r\n";  // kLine: 1..kMaxDelimiter bytes
  std::size_t max_length = 256;    // kLine: text bytes; kStxEtx: bytes from STX to ETX
  std::size_t length = 0;          // kFixed: bytes per frame
};

// "decimal" -> kDecimal, ...; nullopt for anything else.
std::optional<CardFormat> parse_card_format(std::string_view name);
std::string_view card_format_name(CardFormat format);

// Whether this framing can carry this card format (e.g. wiegand26 needs a fixed length >= 4,
// stx_etx cannot carry Wiegand parity). The message says what would work instead.
Status check_combination(const Framing& framing, CardFormat format);

struct Rejection {
  std::string kind;     // framing | checksum | parity | overflow | format
  std::string message;  // what was wrong; never the card number
};

// What the splitter made of some input. `raw` covers the bytes as received (a frame with its
// markers and delimiter; or skipped bytes, at most kMaxSkipPiece per piece), for tracing.
// Spans point into the splitter and are valid only during the callback.
struct Piece {
  enum class Kind {
    kFrame,    // a complete frame: payload is its content
    kDropped,  // bytes that are not (part of) a good frame
  };
  Kind kind = Kind::kDropped;
  std::span<const uint8_t> raw;
  std::span<const uint8_t> payload;  // kFrame only
  // kDropped: set on the first piece of each rejected frame or run of skipped bytes (so a
  // 10 MB line without a delimiter counts once); empty for whitespace between frames and for
  // the later pieces of a run.
  std::optional<Rejection> rejection;
};

struct SplitterStats {
  uint64_t frames = 0;
  uint64_t rejected = 0;  // pieces that carried a rejection
  uint64_t dropped_bytes =
      0;  // every byte not part of a good frame (whitespace between frames too)
  uint64_t overflows = 0;
};

class FrameSplitter {
 public:
  using Sink = std::function<void(const Piece&)>;

  // The framing must be valid (delimiter 1..8 bytes, max_length >= 1, fixed length >= 1).
  explicit FrameSplitter(Framing framing);

  // Consumes `bytes` and calls `sink` for every piece, in stream order. Any split of the stream
  // (byte by byte, or all at once) gives the same frames and rejections; only the cut of
  // skipped bytes into pieces differs, as skipped bytes are handed out before feed() returns.
  void feed(std::span<const uint8_t> bytes, const Sink& sink);
  // The line paused: a fixed frame that is still incomplete will never be completed (it began
  // in the middle of a frame or lost bytes), so it is dropped ("framing"). No-op otherwise.
  void idle(const Sink& sink);
  // Forget everything (the connection was reopened). Stats stay.
  void reset();

  std::size_t buffered() const { return frame_.size() + skipped_.size(); }
  const SplitterStats& stats() const { return stats_; }
  const Framing& framing() const { return framing_; }

 private:
  enum class State { kBetween, kInFrame, kSkipping };

  void feed_line(uint8_t b, const Sink& sink);
  void feed_stx(uint8_t b, const Sink& sink);
  void feed_fixed(uint8_t b, const Sink& sink);
  void finish_stx_frame(const Sink& sink);
  void emit_frame(std::span<const uint8_t> raw, std::span<const uint8_t> payload, const Sink& sink);
  void drop_frame(Rejection why, const Sink& sink);
  // Skipped bytes: collected (bounded) and handed out as kDropped pieces.
  void skip(uint8_t b, const Sink& sink, std::optional<Rejection> starts_run = std::nullopt);
  void flush_skipped(const Sink& sink);

  Framing framing_;
  State state_ = State::kBetween;
  std::vector<uint8_t> frame_;    // the frame being collected, from its first byte
  std::vector<uint8_t> skipped_;  // skipped bytes not yet handed out
  std::optional<Rejection> skipped_rejection_;
  std::vector<uint8_t> payload_;  // scratch for decoded stx_etx data
  SplitterStats stats_;
};

// A frame's card id in the printed form above, or why there is none.
struct Decoded {
  std::string card_id;             // set when ok()
  std::optional<Rejection> error;  // set when not
  bool ok() const { return !error.has_value(); }
};
Decoded decode_card(FramingType framing, CardFormat format, std::span<const uint8_t> payload);

// A raw Wiegand frame of 26 or 34 bits, right-aligned in `bits` with the first transmitted bit
// most significant, checked (both parity bits) and printed "FACILITY:CARD".
Decoded decode_wiegand(uint64_t bits, int bit_count);

}  // namespace gw::protocols::card_reader
