#include "protocols/xml_reader.h"

#include <cstdint>

namespace gw::protocols::xml {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

bool is_name_start(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == ':' || u >= 0x80;
}

bool is_name_char(char c) {
  return is_name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string_view local_name(std::string_view qname) {
  const std::size_t colon = qname.rfind(':');
  return colon == std::string_view::npos ? qname : qname.substr(colon + 1);
}

class Parser {
 public:
  Parser(std::string_view doc, const Limits& limits) : s_(doc), limits_(limits) {}

  Result<Element> run() {
    if (s_.size() > limits_.max_bytes) {
      return Status::invalid("XML document of " + std::to_string(s_.size()) +
                             " bytes is larger than the limit of " +
                             std::to_string(limits_.max_bytes));
    }
    if (s_.substr(0, 3) == "\xEF\xBB\xBF") pos_ = 3;
    Element root;
    bool have_root = false;
    // Prolog, root element, epilogue.
    while (true) {
      skip_space();
      if (pos_ >= s_.size()) break;
      if (s_[pos_] != '<') {
        return failed(have_root ? "text after the root element" : "text before the root element");
      }
      if (starts("<?")) {
        if (!skip_until("?>", "processing instruction")) return error_;
        continue;
      }
      if (starts("<!--")) {
        if (!skip_comment()) return error_;
        continue;
      }
      if (starts("<!")) {
        return failed(starts("<!DOCTYPE") ? "DOCTYPE declarations are not accepted (no DTDs)"
                                          : "unexpected <! markup outside the root element");
      }
      if (have_root) return failed("a second root element");
      if (!element(root)) return error_;
      have_root = true;
    }
    if (!have_root) return failed("no root element");
    return root;
  }

 private:
  void fail(const std::string& what) {
    error_ = Status::invalid("XML: " + what + " at byte " + std::to_string(pos_));
  }
  Status failed(const std::string& what) {
    fail(what);
    return error_;
  }

  bool starts(std::string_view prefix) const { return s_.substr(pos_, prefix.size()) == prefix; }

  void skip_space() {
    while (pos_ < s_.size() && is_space(s_[pos_])) ++pos_;
  }

  bool skip_until(std::string_view end, const char* what) {
    const std::size_t at = s_.find(end, pos_);
    if (at == std::string_view::npos) {
      fail(std::string("unterminated ") + what);
      return false;
    }
    pos_ = at + end.size();
    return true;
  }

  bool skip_comment() {
    pos_ += 4;
    const std::size_t at = s_.find("--", pos_);
    if (at == std::string_view::npos) {
      fail("unterminated comment");
      return false;
    }
    pos_ = at;
    if (!starts("-->")) {
      fail("'--' inside a comment");
      return false;
    }
    pos_ += 3;
    return true;
  }

  bool name(std::string_view& out) {
    const std::size_t start = pos_;
    if (pos_ >= s_.size() || !is_name_start(s_[pos_])) {
      fail("expected a name");
      return false;
    }
    while (pos_ < s_.size() && is_name_char(s_[pos_])) ++pos_;
    out = s_.substr(start, pos_ - start);
    return true;
  }

  // At '&': decodes one reference into `out`.
  bool reference(std::string& out) {
    const std::size_t semi = s_.find(';', pos_);
    if (semi == std::string_view::npos || semi - pos_ > 12) {
      fail("'&' that does not start a reference (write &amp;)");
      return false;
    }
    const std::string_view ref = s_.substr(pos_ + 1, semi - pos_ - 1);
    if (ref == "lt") {
      out += '<';
    } else if (ref == "gt") {
      out += '>';
    } else if (ref == "amp") {
      out += '&';
    } else if (ref == "quot") {
      out += '"';
    } else if (ref == "apos") {
      out += '\'';
    } else if (ref.size() >= 2 && ref[0] == '#') {
      const bool hex = ref[1] == 'x';
      const std::string_view digits = ref.substr(hex ? 2 : 1);
      if (digits.empty()) {
        fail("empty character reference");
        return false;
      }
      uint32_t cp = 0;
      for (char c : digits) {
        uint32_t d = 0;
        if (c >= '0' && c <= '9') {
          d = static_cast<uint32_t>(c - '0');
        } else if (hex && c >= 'a' && c <= 'f') {
          d = static_cast<uint32_t>(c - 'a' + 10);
        } else if (hex && c >= 'A' && c <= 'F') {
          d = static_cast<uint32_t>(c - 'A' + 10);
        } else {
          fail("bad character reference");
          return false;
        }
        cp = cp * (hex ? 16 : 10) + d;
        if (cp > 0x10FFFF) break;
      }
      if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        fail("character reference to an invalid code point");
        return false;
      }
      append_utf8(out, cp);
    } else {
      // Any other name would need a DTD to mean something; there is none.
      fail("undefined entity &" + std::string(ref.substr(0, 12)) + ";");
      return false;
    }
    pos_ = semi + 1;
    return true;
  }

  // After the name of a start tag: attributes, then '>' or '/>'. Sets `empty` for '/>'.
  bool attributes(bool& empty) {
    while (true) {
      const std::size_t before = pos_;
      skip_space();
      if (pos_ >= s_.size()) {
        fail("unterminated start tag");
        return false;
      }
      if (s_[pos_] == '>') {
        ++pos_;
        empty = false;
        return true;
      }
      if (starts("/>")) {
        pos_ += 2;
        empty = true;
        return true;
      }
      if (pos_ == before) {
        fail("expected whitespace before an attribute");
        return false;
      }
      std::string_view attr;
      if (!name(attr)) return false;
      skip_space();
      if (pos_ >= s_.size() || s_[pos_] != '=') {
        fail("attribute without '='");
        return false;
      }
      ++pos_;
      skip_space();
      if (pos_ >= s_.size() || (s_[pos_] != '"' && s_[pos_] != '\'')) {
        fail("attribute value without quotes");
        return false;
      }
      const char quote = s_[pos_++];
      std::string ignored;
      while (true) {
        if (pos_ >= s_.size()) {
          fail("unterminated attribute value");
          return false;
        }
        const char c = s_[pos_];
        if (c == quote) {
          ++pos_;
          break;
        }
        if (c == '<') {
          fail("'<' in an attribute value");
          return false;
        }
        if (c == '&') {
          if (!reference(ignored)) return false;
        } else {
          ++pos_;
        }
      }
    }
  }

  // At '<' of the root's start tag. Iterative: the stack holds the open elements.
  bool element(Element& root) {
    std::vector<Element*> open;
    std::vector<std::string_view> qnames;
    if (!start_tag(root, open, qnames)) return false;
    while (!open.empty()) {
      if (pos_ >= s_.size()) {
        fail("end of document inside <" + std::string(qnames.back()) + ">");
        return false;
      }
      Element& current = *open.back();
      const char c = s_[pos_];
      if (c == '&') {
        if (!reference(current.text)) return false;
      } else if (c != '<') {
        current.text += c;
        ++pos_;
      } else if (starts("</")) {
        pos_ += 2;
        std::string_view qname;
        if (!name(qname)) return false;
        skip_space();
        if (pos_ >= s_.size() || s_[pos_] != '>') {
          fail("malformed end tag");
          return false;
        }
        if (qname != qnames.back()) {
          fail("end tag </" + std::string(qname) + "> does not match <" +
               std::string(qnames.back()) + ">");
          return false;
        }
        ++pos_;
        open.pop_back();
        qnames.pop_back();
      } else if (starts("<![CDATA[")) {
        pos_ += 9;
        const std::size_t end = s_.find("]]>", pos_);
        if (end == std::string_view::npos) {
          fail("unterminated CDATA section");
          return false;
        }
        current.text.append(s_.substr(pos_, end - pos_));
        pos_ = end + 3;
      } else if (starts("<!--")) {
        if (!skip_comment()) return false;
      } else if (starts("<?")) {
        if (!skip_until("?>", "processing instruction")) return false;
      } else if (starts("<!")) {
        fail("unexpected <! markup inside an element");
        return false;
      } else {
        if (static_cast<int>(open.size()) >= limits_.max_depth) {
          fail("elements nested deeper than " + std::to_string(limits_.max_depth));
          return false;
        }
        // Ancestors live in their parents' vectors, which do not change while they are open,
        // so growing current.children never moves an element that is on the stack.
        current.children.emplace_back();
        if (!start_tag(current.children.back(), open, qnames)) return false;
      }
    }
    return true;
  }

  // At '<': reads a start tag into `e`; pushes it when it is not empty (<a/>).
  bool start_tag(Element& e, std::vector<Element*>& open, std::vector<std::string_view>& qnames) {
    if (++elements_ > limits_.max_elements) {
      fail("more than " + std::to_string(limits_.max_elements) + " elements");
      return false;
    }
    ++pos_;
    std::string_view qname;
    if (!name(qname)) return false;
    e.name = std::string(local_name(qname));
    bool empty = false;
    if (!attributes(empty)) return false;
    if (!empty) {
      open.push_back(&e);
      qnames.push_back(qname);
    }
    return true;
  }

  std::string_view s_;
  const Limits& limits_;
  std::size_t pos_ = 0;
  std::size_t elements_ = 0;
  Status error_;
};

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

const Element* Element::child(std::string_view local) const {
  for (const Element& c : children) {
    if (c.name == local) return &c;
  }
  return nullptr;
}

std::string Element::child_text(std::string_view local) const {
  const Element* c = child(local);
  return c ? std::string(trimmed(c->text)) : std::string();
}

Result<Element> parse(std::string_view document, const Limits& limits) {
  return Parser(document, limits).run();
}

}  // namespace gw::protocols::xml
