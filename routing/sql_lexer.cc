// The SQL lexer: PostgreSQL's token rules for comments, quoting and identifiers, reduced to
// what classification needs (token kinds and spans, parenthesis depth and partners).
#include "routing/sql_lexer.h"

#include <limits>

namespace pgswitch::routing {
namespace {

constexpr size_t npos = std::string_view::npos;
constexpr uint32_t kNoOpen = std::numeric_limits<uint32_t>::max();

bool isSpace(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool isDigit(unsigned char c) { return c >= '0' && c <= '9'; }
// scan.l: ident_start [A-Za-z\200-\377_], ident_cont adds [0-9\$].
bool identStart(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}
bool identCont(unsigned char c) { return identStart(c) || isDigit(c) || c == '$'; }
// Dollar-quote tags: like identifiers, but without '$'.
bool dolqCont(unsigned char c) { return identStart(c) || isDigit(c); }
bool opChar(unsigned char c) {
  switch (c) {
    case '~':
    case '!':
    case '@':
    case '#':
    case '^':
    case '&':
    case '|':
    case '`':
    case '?':
    case '+':
    case '-':
    case '*':
    case '/':
    case '%':
    case '<':
    case '>':
    case '=':
      return true;
    default:
      return false;
  }
}

// `i` at the opening quote; a doubled quote is an escaped quote; with `backslash` (E'...'),
// a backslash escapes the next byte. Returns the position after the closing quote.
size_t skipQuoted(std::string_view s, size_t i, char quote, bool backslash) {
  ++i;
  while (i < s.size()) {
    char c = s[i];
    if (backslash && c == '\\') {
      i += 2;
      continue;
    }
    if (c == quote) {
      if (i + 1 < s.size() && s[i + 1] == quote) {
        i += 2;
        continue;
      }
      return i + 1;
    }
    ++i;
  }
  return npos;
}

// `i` at '$' not followed by a digit: a $tag$...$tag$ string, or npos.
size_t skipDollarQuoted(std::string_view s, size_t i) {
  size_t j = i + 1;
  if (j < s.size() && identStart(static_cast<unsigned char>(s[j]))) {
    while (j < s.size() && dolqCont(static_cast<unsigned char>(s[j]))) ++j;
  }
  if (j >= s.size() || s[j] != '$') return npos;
  std::string_view tag = s.substr(i, j - i + 1);
  size_t end = s.find(tag, j + 1);
  return end == npos ? npos : end + tag.size();
}

size_t skipNumber(std::string_view s, size_t i) {
  while (i < s.size() && isDigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i < s.size() && s[i] == '.' && !(i + 1 < s.size() && s[i + 1] == '.')) {
    ++i;
    while (i < s.size() && isDigit(static_cast<unsigned char>(s[i]))) ++i;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    size_t j = i + 1;
    if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
    if (j < s.size() && isDigit(static_cast<unsigned char>(s[j]))) {
      while (j < s.size() && isDigit(static_cast<unsigned char>(s[j]))) ++j;
      i = j;
    }
  }
  return i;
}

}  // namespace

size_t skipBlockComment(std::string_view s, size_t i) {
  int depth = 0;
  while (i < s.size()) {
    if (s[i] == '/' && i + 1 < s.size() && s[i + 1] == '*') {
      ++depth;
      i += 2;
    } else if (s[i] == '*' && i + 1 < s.size() && s[i + 1] == '/') {
      i += 2;
      if (--depth == 0) return i;
    } else {
      ++i;
    }
  }
  return npos;
}

size_t skipSpaceAndComments(std::string_view s, size_t i) {
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (isSpace(c)) {
      ++i;
    } else if (c == '-' && i + 1 < s.size() && s[i + 1] == '-') {
      while (i < s.size() && s[i] != '\n' && s[i] != '\r') ++i;
    } else if (c == '/' && i + 1 < s.size() && s[i + 1] == '*') {
      i = skipBlockComment(s, i);
      if (i == npos) return npos;
    } else {
      break;
    }
  }
  return i;
}

bool lexSql(std::string_view s, std::vector<Token>& out) {
  out.clear();
  if (s.size() >= std::numeric_limits<uint32_t>::max()) return false;
  uint32_t depth = 0;
  uint32_t openTop = kNoOpen;  // innermost unmatched '(' (older ones chained through `match`)
  size_t i = 0;
  for (;;) {
    i = skipSpaceAndComments(s, i);
    if (i == npos) return false;
    if (i >= s.size()) break;
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const unsigned char c1 = i + 1 < s.size() ? static_cast<unsigned char>(s[i + 1]) : 0;
    const unsigned char c2 = i + 2 < s.size() ? static_cast<unsigned char>(s[i + 2]) : 0;
    Token t;
    t.pos = static_cast<uint32_t>(i);
    t.depth = depth;
    size_t end = npos;
    if (identStart(c)) {
      // String prefixes only apply when the whole identifier would be the single letter.
      if ((c == 'e' || c == 'E') && c1 == '\'') {
        end = skipQuoted(s, i + 1, '\'', true);
        t.kind = TokenKind::String;
      } else if ((c == 'b' || c == 'B' || c == 'x' || c == 'X' || c == 'n' || c == 'N') &&
                 c1 == '\'') {
        end = skipQuoted(s, i + 1, '\'', false);
        t.kind = TokenKind::String;
      } else if ((c == 'u' || c == 'U') && c1 == '&' && (c2 == '\'' || c2 == '"')) {
        end = skipQuoted(s, i + 2, static_cast<char>(c2), false);
        t.kind = c2 == '"' ? TokenKind::QuotedIdent : TokenKind::String;
        if (c2 == '"' && end != npos && end - i <= 4) return false;  // U&"" is empty
      } else {
        end = i + 1;
        while (end < s.size() && identCont(static_cast<unsigned char>(s[end]))) ++end;
        t.kind = TokenKind::Word;
      }
    } else if (isDigit(c) || (c == '.' && isDigit(c1))) {
      end = skipNumber(s, i);
      t.kind = TokenKind::Number;
    } else {
      switch (c) {
        case '\'':
          end = skipQuoted(s, i, '\'', false);
          t.kind = TokenKind::String;
          break;
        case '"':
          end = skipQuoted(s, i, '"', false);
          if (end != npos && end - i == 2) return false;  // zero-length delimited identifier
          t.kind = TokenKind::QuotedIdent;
          break;
        case '$':
          if (isDigit(c1)) {
            end = i + 1;
            while (end < s.size() && isDigit(static_cast<unsigned char>(s[end]))) ++end;
            t.kind = TokenKind::Param;
          } else {
            end = skipDollarQuoted(s, i);
            t.kind = TokenKind::String;
          }
          break;
        case '(':
          end = i + 1;
          t.kind = TokenKind::LParen;
          t.match = openTop;
          openTop = static_cast<uint32_t>(out.size());
          ++depth;
          break;
        case ')':
          if (depth == 0) return false;
          end = i + 1;
          t.kind = TokenKind::RParen;
          t.depth = --depth;
          t.match = openTop;
          openTop = out[openTop].match;
          out[t.match].match = static_cast<uint32_t>(out.size());
          break;
        case '[':
          end = i + 1;
          t.kind = TokenKind::LBracket;
          break;
        case ']':
          end = i + 1;
          t.kind = TokenKind::RBracket;
          break;
        case ',':
          end = i + 1;
          t.kind = TokenKind::Comma;
          break;
        case ';':
          end = i + 1;
          t.kind = TokenKind::Semicolon;
          break;
        case '.':
          end = i + 1;
          t.kind = TokenKind::Dot;
          break;
        case ':':  // ':', '::' and ':=' all count as operators here
          end = (c1 == ':' || c1 == '=') ? i + 2 : i + 1;
          t.kind = TokenKind::Operator;
          break;
        default:
          if (!opChar(c)) return false;  // '\\', '{', '}', control bytes: not SQL outside strings
          end = i + 1;
          // An operator never contains the start of a comment.
          while (end < s.size() && opChar(static_cast<unsigned char>(s[end])) &&
                 !(s[end] == '-' && end + 1 < s.size() && s[end + 1] == '-') &&
                 !(s[end] == '/' && end + 1 < s.size() && s[end + 1] == '*')) {
            ++end;
          }
          t.kind = TokenKind::Operator;
          break;
      }
    }
    if (end == npos) return false;
    t.len = static_cast<uint32_t>(end - i);
    out.push_back(t);
    i = end;
  }
  return depth == 0;
}

}  // namespace pgswitch::routing
