// Hint comments: a tiny parser over the text of each leading comment.
#include "routing/hints.h"

#include "routing/sql_lexer.h"

namespace pgswitch::routing {
namespace {

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool isTagChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

void skipSpaces(std::string_view s, size_t& i) {
  while (i < s.size() && isSpace(s[i])) ++i;
}

// Reads a run of letters at `i` and compares it with `kw`.
bool takeWord(std::string_view s, size_t& i, std::string_view kw) {
  size_t j = i;
  while (j < s.size() && ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z'))) ++j;
  if (!equalsLower(s.substr(i, j - i), kw)) return false;
  i = j;
  return true;
}

// `body` is the text between "/*" and "*/".
void applyHintComment(std::string_view body, Classification& out) {
  size_t i = 0;
  skipSpaces(body, i);
  if (!takeWord(body, i, "pgswitch")) return;
  skipSpaces(body, i);
  if (i >= body.size() || body[i] != ':') return;
  ++i;
  bool primary = false, replica = false, any = false;
  std::string_view tag;
  for (;;) {
    skipSpaces(body, i);
    if (i >= body.size()) break;
    if (body[i] == ',') {
      ++i;
      continue;
    }
    if (takeWord(body, i, "primary")) {
      primary = true;
    } else if (takeWord(body, i, "replica")) {
      replica = true;
    } else if (takeWord(body, i, "tag")) {
      skipSpaces(body, i);
      if (i >= body.size() || body[i] != '=') return;
      ++i;
      skipSpaces(body, i);
      size_t start = i;
      while (i < body.size() && isTagChar(body[i])) ++i;
      if (i == start) return;
      tag = body.substr(start, i - start);
    } else {
      return;  // unknown item: not a hint we understand
    }
    any = true;
    if (i < body.size() && !isSpace(body[i]) && body[i] != ',') return;
  }
  if (!any) return;
  if (primary) {
    out.hint = Classification::Hint::Primary;
  } else if (replica && out.hint != Classification::Hint::Primary) {
    out.hint = Classification::Hint::Replica;
  }
  if (!tag.empty()) out.hintTag.assign(tag);
}

}  // namespace

void parseLeadingHints(std::string_view s, Classification& out) {
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (isSpace(c)) {
      ++i;
    } else if (c == '-' && i + 1 < s.size() && s[i + 1] == '-') {
      while (i < s.size() && s[i] != '\n' && s[i] != '\r') ++i;
    } else if (c == '/' && i + 1 < s.size() && s[i + 1] == '*') {
      size_t end = skipBlockComment(s, i);
      if (end == std::string_view::npos) return;
      applyHintComment(s.substr(i + 2, end - 2 - (i + 2)), out);
      i = end;
    } else {
      return;
    }
  }
}

}  // namespace pgswitch::routing
