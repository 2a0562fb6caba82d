// A small, safe XML reader for the short documents devices send (a camera's
// EventNotificationAlert is a few hundred bytes). It builds a tree of elements and their text and
// nothing more: no DTD (a document with <!DOCTYPE is refused, so no entity can be declared, let
// alone fetched or expanded), only the five predefined entities and numeric character references,
// bounded input size, nesting depth and element count. Namespaces are reduced to local names
// ("hik:eventType" and "eventType" in any default namespace both read as "eventType"), which is
// how cameras' documents differ from each other in practice. Attributes are checked for syntax
// and dropped. Every outcome is a value; nothing recurses deeper than max_depth. Pure; any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/status.h"

namespace gw::protocols::xml {

struct Limits {
  std::size_t max_bytes = 64 * 1024;
  int max_depth = 16;
  std::size_t max_elements = 2048;
};

struct Element {
  std::string name;  // local name, prefix removed
  std::string text;  // the element's own character data (entities decoded, CDATA included)
  std::vector<Element> children;

  // First direct child with this local name, or null.
  const Element* child(std::string_view local_name) const;
  // The child's text with surrounding whitespace removed; empty when there is no such child.
  std::string child_text(std::string_view local_name) const;
};

// Parses one document. Errors name what was wrong and the byte offset where it was found.
Result<Element> parse(std::string_view document, const Limits& limits = {});

}  // namespace gw::protocols::xml
