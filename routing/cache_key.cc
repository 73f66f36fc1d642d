#include "routing/cache_key.h"

#include <array>

namespace pgswitch::routing {
namespace {

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// A byte that continues an identifier (PostgreSQL: letters, digits, '_', '$', non-ASCII).
bool identChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || isDigit(c) || c == '_' || c == '$' ||
         static_cast<unsigned char>(c) >= 0x80;
}

enum class In { Code, String, Ident, LineComment, BlockComment };

// Per state, the bytes the switch in foldNumbers has to look at: what may end the state or
// start another, a digit in code, and the two bytes that refuse a key anywhere. Every other
// byte is copied as it is, a run at a time: most of a query is such bytes, and a loop that
// went through the switch for each of them cost more than the rest of a cache hit.
using Stops = std::array<bool, 256>;

constexpr Stops stopsOf(std::string_view bytes, bool digits) {
  Stops s{};
  for (char c : bytes) s[static_cast<unsigned char>(c)] = true;
  s[static_cast<unsigned char>('\\')] = s[0] = true;
  for (char c = '0'; digits && c <= '9'; ++c) s[static_cast<unsigned char>(c)] = true;
  return s;
}

constexpr std::array<Stops, 5> kStops = {
    stopsOf("'\"-/$", true),  // Code
    stopsOf("'", false),      // String
    stopsOf("\"", false),     // Ident
    stopsOf("\n\r", false),   // LineComment
    stopsOf("*/", false),     // BlockComment
};

}  // namespace

bool foldNumbers(std::string_view sql, std::string& key) {
  key.clear();
  key.reserve(sql.size());
  In in = In::Code;
  int depth = 0;  // block comments nest
  const size_t n = sql.size();
  for (size_t i = 0; i < n;) {
    const Stops& stops = kStops[static_cast<size_t>(in)];
    size_t run = i;
    while (run < n && !stops[static_cast<unsigned char>(sql[run])]) ++run;
    key.append(sql.data() + i, run - i);
    if (run == n) break;
    i = run;
    const char c = sql[i];
    if (c == '\\' || c == '\0') return false;
    switch (in) {
      case In::Code:
        if (c == '\'') {
          in = In::String;
        } else if (c == '"') {
          in = In::Ident;
        } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
          in = In::LineComment;
        } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
          in = In::BlockComment;
          depth = 1;
          key.append("/*");
          i += 2;
          continue;
        } else if (c == '$') {
          // Anything that could open a dollar quote ($$, $tag$), also inside a word (a$b):
          // no key. A parameter ($1) or a word's $ and digits are kept as written.
          if (i + 1 >= n || !isDigit(sql[i + 1])) return false;
          size_t j = i + 1;
          while (j < n && isDigit(sql[j])) ++j;
          key.append(sql.substr(i, j - i));
          i = j;
          continue;
        } else if (isDigit(c) && (i == 0 || !identChar(sql[i - 1]))) {
          size_t j = i;
          while (j < n && isDigit(sql[j])) ++j;
          const std::string_view run = sql.substr(i, j - i);
          if (run == "1" || run[0] == '0') {
            key.append(run);
          } else {
            key.push_back('\0');
          }
          i = j;
          continue;
        }
        break;
      case In::String:
        if (c == '\'') in = In::Code;  // '' inside a string: out and straight back in
        break;
      case In::Ident:
        if (c == '"') in = In::Code;
        break;
      case In::LineComment:
        if (c == '\n' || c == '\r') in = In::Code;
        break;
      case In::BlockComment:
        if (c == '*' && i + 1 < n && sql[i + 1] == '/') {
          key.append("*/");
          i += 2;
          if (--depth == 0) in = In::Code;
          continue;
        }
        if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
          ++depth;
          key.append("/*");
          i += 2;
          continue;
        }
        break;
    }
    key.push_back(c);
    ++i;
  }
  return true;
}

}  // namespace pgswitch::routing
