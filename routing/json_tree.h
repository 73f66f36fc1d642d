// A minimal read-only JSON tree for libpg_query's parse-tree output: nodes in one vector in
// document order, so that every subtree is a contiguous index range (scanned without recursion).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgswitch::routing::json {

enum class Type : uint8_t { Null, Bool, Number, String, Array, Object };

struct Node {
  Type type = Type::Null;
  std::string_view key;   // member name when the parent is an object (no escapes expected)
  std::string_view text;  // String: raw contents between the quotes (still escaped);
                          // Number/Bool: the literal
  uint32_t next = 0;      // index of the next sibling, 0 if none
  uint32_t end = 0;       // one past the last node of this subtree
};

class Document {
 public:
  // Parses `text` (which must outlive the Document). False on malformed JSON or nesting deeper
  // than `maxDepth`.
  bool parse(std::string_view text, int maxDepth = 1000);

  const std::vector<Node>& nodes() const { return nodes_; }
  uint32_t root() const { return 0; }
  // First child of `i`, or 0 when it has none (0 is never a child index).
  uint32_t firstChild(uint32_t i) const { return nodes_[i].end > i + 1 ? i + 1 : 0; }
  // The member `key` of object `i`, or 0.
  uint32_t member(uint32_t i, std::string_view key) const;
  // Follows a path of member names; 0 if any step is missing.
  uint32_t path(uint32_t i, std::initializer_list<std::string_view> keys) const;
  const Node& operator[](uint32_t i) const { return nodes_[i]; }

 private:
  bool parseValue(int depth);
  std::string_view text_;
  size_t pos_ = 0;
  int maxDepth_ = 0;
  std::vector<Node> nodes_;
};

// Decodes a JSON string body (\" \\ \/ \b \f \n \r \t \uXXXX, the latter as UTF-8).
std::string unescape(std::string_view raw);

}  // namespace pgswitch::routing::json
