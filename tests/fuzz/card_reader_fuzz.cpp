// Card readers' byte streams: every framing, every card format, any bytes, cut anywhere.
// The splitter promises the same frames and rejections however the stream is cut, and bounded
// memory whatever it is fed.
#include <string>
#include <vector>

#include "protocols/card_reader.h"
#include "tests/fuzz/fuzz_input.h"

namespace cr = gw::protocols::card_reader;

namespace {

struct Outcome {
  std::vector<std::string> frames;      // payloads of good frames
  std::vector<std::string> rejections;  // kinds, in order
  bool operator==(const Outcome&) const = default;
};

Outcome run(const cr::Framing& framing, cr::CardFormat format, std::span<const uint8_t> bytes,
            std::size_t piece) {
  cr::FrameSplitter splitter(framing);
  Outcome out;
  const std::size_t bound = framing.max_length + 8 + cr::kMaxSkipPiece + framing.length;
  auto sink = [&](const cr::Piece& p) {
    if (p.kind == cr::Piece::Kind::kFrame) {
      out.frames.emplace_back(p.payload.begin(), p.payload.end());
      const cr::Decoded d = cr::decode_card(framing.type, format, p.payload);
      GW_FUZZ_CHECK(d.ok() != d.error.has_value());
      if (d.ok()) GW_FUZZ_CHECK(!d.card_id.empty());
      if (d.error) GW_FUZZ_CHECK(!d.error->kind.empty());
    } else if (p.rejection) {
      GW_FUZZ_CHECK(!p.rejection->kind.empty() && !p.rejection->message.empty());
      out.rejections.push_back(p.rejection->kind);
    }
  };
  for (std::size_t at = 0; at < bytes.size(); at += piece) {
    splitter.feed(bytes.subspan(at, std::min(piece, bytes.size() - at)), sink);
    GW_FUZZ_CHECK(splitter.buffered() <= bound);
  }
  splitter.idle(sink);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  gw::fuzz::Input in(data, size);
  cr::Framing framing;
  framing.type = static_cast<cr::FramingType>(in.byte() % 3);
  const auto format = static_cast<cr::CardFormat>(in.byte() % 4);
  const std::size_t delim_len = 1 + in.byte() % cr::kMaxDelimiter;
  framing.delimiter.clear();
  for (std::size_t i = 0; i < delim_len; ++i) framing.delimiter.push_back(static_cast<char>(in.byte()));
  if (in.flag()) framing.delimiter = "\r\n";  // the common case, often
  framing.max_length = 1 + in.byte() % 64;
  framing.length = 1 + in.byte() % 12;
  const std::size_t piece = 1 + in.byte() % 16;
  (void)cr::check_combination(framing, format);

  const auto bytes = in.rest();
  const Outcome whole = run(framing, format, bytes, bytes.size() + 1);
  const Outcome cut = run(framing, format, bytes, piece);
  if (framing.type != cr::FramingType::kFixed) {
    // Fixed framing drops a partial frame only on idle(), so all cuts agree there too; the
    // other framings must agree frame for frame and rejection for rejection.
    GW_FUZZ_CHECK(whole == cut);
  } else {
    GW_FUZZ_CHECK(whole.frames == cut.frames);
  }

  uint64_t bits = 0;
  for (int i = 0; i < 8; ++i) bits = bits << 8 | in.byte();
  (void)cr::decode_wiegand(bits, in.flag() ? 26 : 34);
  (void)cr::parse_card_format(in.rest_text().substr(0, 16));
  return 0;
}
