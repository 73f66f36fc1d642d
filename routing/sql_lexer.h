// A small SQL lexer that follows PostgreSQL's scan.l closely enough to find statement
// boundaries, keywords and function calls: comments, every quoting form, parentheses.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace pgswitch::routing {

enum class TokenKind : uint8_t {
  Word,         // unquoted identifier or keyword
  QuotedIdent,  // "ident" or U&"ident"
  String,       // '...', E'...', B'...', X'...', N'...', U&'...', $tag$...$tag$
  Number,
  Param,  // $1
  Operator,
  LParen,
  RParen,
  LBracket,
  RBracket,
  Comma,
  Semicolon,
  Dot,
};

struct Token {
  uint32_t pos = 0;
  uint32_t len = 0;
  TokenKind kind = TokenKind::Word;
  uint32_t depth = 0;  // parenthesis depth; a '(' and its ')' carry the depth outside them
  uint32_t match = 0;  // for LParen/RParen: index of the partner token
};

// Tokenises `sql` into `out` (cleared first). Returns false when the text cannot be lexed the
// way PostgreSQL would (unterminated quote or comment, stray character) or when parentheses do
// not balance; `out` then holds the tokens read so far and must not be interpreted.
// Assumes standard_conforming_strings = on (the default since PostgreSQL 9.1).
bool lexSql(std::string_view sql, std::vector<Token>& out);

// Skips whitespace and comments from `pos`; returns the first other position, or sql.size().
// Returns std::string_view::npos for an unterminated block comment.
size_t skipSpaceAndComments(std::string_view sql, size_t pos);

// `pos` at "/*": returns the position after the matching "*/" (block comments nest), or npos.
size_t skipBlockComment(std::string_view sql, size_t pos);

// ASCII case-insensitive equality against a lower-case keyword.
inline bool equalsLower(std::string_view text, std::string_view lowerKw) {
  if (text.size() != lowerKw.size()) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + ('a' - 'A'));
    if (c != lowerKw[i]) return false;
  }
  return true;
}

// A token array over its source text, with bounds-checked accessors.
class TokenSeq {
 public:
  TokenSeq(std::string_view sql, std::span<const Token> toks) : sql_(sql), toks_(toks) {}

  size_t size() const { return toks_.size(); }
  const Token& operator[](size_t i) const { return toks_[i]; }
  std::string_view text(size_t i) const { return sql_.substr(toks_[i].pos, toks_[i].len); }
  bool kindAt(size_t i, size_t end, TokenKind k) const { return i < end && toks_[i].kind == k; }
  // Unquoted word equal to the lower-case keyword `kw`.
  bool word(size_t i, size_t end, std::string_view kw) const {
    return i < end && toks_[i].kind == TokenKind::Word && equalsLower(text(i), kw);
  }
  // An identifier (quoted or not) usable as a name.
  bool name(size_t i, size_t end) const {
    return i < end && (toks_[i].kind == TokenKind::Word || toks_[i].kind == TokenKind::QuotedIdent);
  }
  std::string_view sql() const { return sql_; }

 private:
  std::string_view sql_;
  std::span<const Token> toks_;
};

}  // namespace pgswitch::routing
