// JSON parsing for the parser fallback. Recursion depth is bounded by maxDepth.
#include "routing/json_tree.h"

namespace pgswitch::routing::json {
namespace {

bool isWs(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// `i` after the opening quote; returns the index of the closing quote, or npos.
size_t stringEnd(std::string_view s, size_t i) {
  while (i < s.size()) {
    if (s[i] == '\\') {
      i += 2;
    } else if (s[i] == '"') {
      return i;
    } else {
      ++i;
    }
  }
  return std::string_view::npos;
}

void appendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace

bool Document::parse(std::string_view text, int maxDepth) {
  text_ = text;
  pos_ = 0;
  maxDepth_ = maxDepth;
  nodes_.clear();
  if (!parseValue(0)) return false;
  while (pos_ < text_.size() && isWs(text_[pos_])) ++pos_;
  return pos_ == text_.size();
}

bool Document::parseValue(int depth) {
  if (depth > maxDepth_) return false;
  while (pos_ < text_.size() && isWs(text_[pos_])) ++pos_;
  if (pos_ >= text_.size()) return false;
  const uint32_t self = static_cast<uint32_t>(nodes_.size());
  nodes_.emplace_back();
  const char c = text_[pos_];
  if (c == '{' || c == '[') {
    const bool object = c == '{';
    const char close = object ? '}' : ']';
    nodes_[self].type = object ? Type::Object : Type::Array;
    ++pos_;
    uint32_t prev = 0;
    for (bool first = true;; first = false) {
      while (pos_ < text_.size() && isWs(text_[pos_])) ++pos_;
      if (pos_ >= text_.size()) return false;
      if (text_[pos_] == close && first) {
        ++pos_;
        break;
      }
      std::string_view key;
      if (object) {
        if (text_[pos_] != '"') return false;
        size_t end = stringEnd(text_, pos_ + 1);
        if (end == std::string_view::npos) return false;
        key = text_.substr(pos_ + 1, end - pos_ - 1);
        pos_ = end + 1;
        while (pos_ < text_.size() && isWs(text_[pos_])) ++pos_;
        if (pos_ >= text_.size() || text_[pos_] != ':') return false;
        ++pos_;
      }
      const uint32_t child = static_cast<uint32_t>(nodes_.size());
      if (!parseValue(depth + 1)) return false;
      nodes_[child].key = key;
      if (prev != 0) nodes_[prev].next = child;
      prev = child;
      while (pos_ < text_.size() && isWs(text_[pos_])) ++pos_;
      if (pos_ >= text_.size()) return false;
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] != close) return false;
      ++pos_;
      break;
    }
  } else if (c == '"') {
    size_t end = stringEnd(text_, pos_ + 1);
    if (end == std::string_view::npos) return false;
    nodes_[self].type = Type::String;
    nodes_[self].text = text_.substr(pos_ + 1, end - pos_ - 1);
    pos_ = end + 1;
  } else {
    size_t start = pos_;
    while (pos_ < text_.size() && !isWs(text_[pos_]) && text_[pos_] != ',' && text_[pos_] != '}' &&
           text_[pos_] != ']') {
      ++pos_;
    }
    std::string_view lit = text_.substr(start, pos_ - start);
    if (lit.empty()) return false;
    nodes_[self].text = lit;
    if (lit == "true" || lit == "false") {
      nodes_[self].type = Type::Bool;
    } else if (lit == "null") {
      nodes_[self].type = Type::Null;
    } else if (lit[0] == '-' || (lit[0] >= '0' && lit[0] <= '9')) {
      nodes_[self].type = Type::Number;
    } else {
      return false;
    }
  }
  nodes_[self].end = static_cast<uint32_t>(nodes_.size());
  return true;
}

uint32_t Document::member(uint32_t i, std::string_view key) const {
  if (i >= nodes_.size() || nodes_[i].type != Type::Object) return 0;
  for (uint32_t c = firstChild(i); c != 0; c = nodes_[c].next) {
    if (nodes_[c].key == key) return c;
  }
  return 0;
}

uint32_t Document::path(uint32_t i, std::initializer_list<std::string_view> keys) const {
  for (std::string_view k : keys) {
    i = member(i, k);
    if (i == 0) return 0;
  }
  return i;
}

std::string unescape(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c != '\\' || i + 1 >= raw.size()) {
      out.push_back(c);
      continue;
    }
    char e = raw[++i];
    switch (e) {
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'u': {
        uint32_t cp = 0;
        size_t k = 0;
        for (; k < 4 && i + 1 + k < raw.size(); ++k) {
          char h = raw[i + 1 + k];
          cp <<= 4;
          if (h >= '0' && h <= '9')
            cp |= static_cast<uint32_t>(h - '0');
          else if (h >= 'a' && h <= 'f')
            cp |= static_cast<uint32_t>(h - 'a' + 10);
          else if (h >= 'A' && h <= 'F')
            cp |= static_cast<uint32_t>(h - 'A' + 10);
        }
        i += k;
        appendUtf8(out, cp);
        break;
      }
      default:
        out.push_back(e);
        break;  // \" \\ \/
    }
  }
  return out;
}

}  // namespace pgswitch::routing::json
