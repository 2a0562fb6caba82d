#include "drivers/camera_http/body_decoder.h"

namespace gw::drivers::camera_http {

namespace camera = protocols::camera;

namespace {

std::string cut(std::string_view s) {
  std::string out(s.substr(0, kTraceBytes));
  if (s.size() > kTraceBytes) out += "...";
  return out;
}

std::string size_text(std::size_t n) { return std::to_string(n) + (n == 1 ? " byte" : " bytes"); }

}  // namespace

Result<BodyDecoder> BodyDecoder::make(std::string_view content_type,
                                      camera::SplitterLimits limits) {
  const camera::MediaType media = camera::parse_media_type(content_type);
  BodyDecoder d;
  if (media.type.rfind("multipart/", 0) == 0) {
    std::string boundary = media.param("boundary");
    while (!boundary.empty() && (boundary.front() == '-' || boundary.front() == ' ')) {
      boundary.erase(0, 1);
    }
    if (boundary.empty()) {
      return Status::invalid("Content-Type '" + std::string(content_type.substr(0, 80)) +
                             "' is multipart but names no boundary");
    }
    d.splitter_.emplace(media.param("boundary"), limits);
  }
  return d;
}

void BodyDecoder::feed(std::string_view bytes, std::vector<Decoded>& out) {
  if (splitter_) {
    splitter_->feed(bytes, parts_);
    decode_parts(parts_, out);
    return;
  }
  size_ += bytes.size();
  if (body_.size() + bytes.size() <= camera::kMaxAlertBytes) {
    body_.append(bytes);
  } else {
    body_.clear();  // refused at finish(); nothing more is kept
  }
}

void BodyDecoder::finish(std::vector<Decoded>& out) {
  if (splitter_) {
    splitter_->finish(parts_);
    decode_parts(parts_, out);
    return;
  }
  Decoded d;
  d.raw = cut(body_);
  d.note = "body, " + size_text(size_);
  if (size_ > camera::kMaxAlertBytes) {
    d.error = "body of " + size_text(size_) + " is larger than an alert may be (" +
              size_text(camera::kMaxAlertBytes) + ")";
    d.error_kind = "overflow";
  } else if (auto alerts = camera::parse_body(body_); alerts.is_ok()) {
    d.alerts = std::move(alerts).value();
  } else {
    d.error = alerts.status().message();
    d.error_kind = "format";
  }
  body_.clear();
  size_ = 0;
  out.push_back(std::move(d));
}

void BodyDecoder::decode_parts(std::vector<camera::Part>& parts, std::vector<Decoded>& out) {
  for (camera::Part& p : parts) {
    Decoded d;
    const std::string type = p.content_type.empty() ? "untyped" : p.content_type;
    d.note = type + " part, " + size_text(p.size);
    d.raw = cut(p.head + p.body);
    if (!p.error.empty()) {
      d.error = "multipart: " + p.error;
      d.error_kind = "format";
    } else if (p.skipped == camera::Part::Skipped::kMedia) {
      d.media = true;
      d.note += ", skipped";
    } else if (p.skipped == camera::Part::Skipped::kOversize) {
      d.error = "multipart: " + type + " part of " + size_text(p.size) +
                " is larger than an alert may be (" + size_text(camera::kMaxAlertBytes) +
                "); skipped";
      d.error_kind = "overflow";
    } else if (auto alerts = camera::parse_body(p.body); alerts.is_ok()) {
      d.alerts = std::move(alerts).value();
    } else {
      d.error = alerts.status().message();
      d.error_kind = "format";
    }
    out.push_back(std::move(d));
  }
  parts.clear();
}

}  // namespace gw::drivers::camera_http
