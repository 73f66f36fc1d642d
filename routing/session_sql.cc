// Session SQL: first-keyword tests, the DEALLOCATE and bare COMMIT/ROLLBACK readers, and the
// text of the session's internal queries. Comment skipping is the SQL lexer's.
#include "routing/session_sql.h"

#include <cstdio>

#include "routing/sql_lexer.h"

namespace pgswitch::routing {
namespace {

constexpr size_t npos = std::string_view::npos;

bool isAsciiAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isAsciiDigit(char c) { return c >= '0' && c <= '9'; }
char toLowerAscii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; }

// scan.l: ident_start [A-Za-z\200-\377_], ident_cont adds [0-9\$]. A keyword followed by '$'
// or a non-ASCII byte is part of a longer identifier, not the keyword.
bool identStart(char c) {
  return isAsciiAlpha(c) || c == '_' || static_cast<unsigned char>(c) >= 0x80;
}
bool identCont(char c) { return identStart(c) || isAsciiDigit(c) || c == '$'; }

// The characters the DEALLOCATE reader has always taken as a name (ASCII only, may start with
// a digit); kept as they were so the proxy answers exactly the statements it answered before.
bool deallocNameChar(char c) { return isAsciiAlpha(c) || isAsciiDigit(c) || c == '_' || c == '$'; }

bool containsLower(std::string_view hay, std::string_view lowerNeedle) {
  if (lowerNeedle.size() > hay.size()) return false;
  for (size_t i = 0; i + lowerNeedle.size() <= hay.size(); ++i) {
    size_t k = 0;
    while (k < lowerNeedle.size() && toLowerAscii(hay[i + k]) == lowerNeedle[k]) ++k;
    if (k == lowerNeedle.size()) return true;
  }
  return false;
}

void appendLiteral(std::string& out, std::string_view v) {
  out += '\'';
  for (char c : v) {
    if (c == '\'') out += '\'';
    out += c;
  }
  out += '\'';
}

}  // namespace

std::string_view firstKeyword(std::string_view sql) {
  size_t i = 0;
  // Most texts start with their keyword; the loop below is for space, comments and '('.
  while (i >= sql.size() || !identStart(sql[i])) {
    i = skipSpaceAndComments(sql, i);
    if (i == npos) return {};
    if (i < sql.size() && sql[i] == '(') {
      ++i;
      continue;
    }
    break;
  }
  if (i >= sql.size() || !identStart(sql[i])) return {};
  size_t end = i + 1;
  while (end < sql.size() && identCont(sql[end])) ++end;
  return sql.substr(i, end - i);
}

bool firstKeywordIs(std::string_view sql, std::string_view lowerKw) {
  return equalsLower(firstKeyword(sql), lowerKw);
}

bool isCommit(std::string_view sql) {
  std::string_view w = firstKeyword(sql);
  if (equalsLower(w, "commit") || equalsLower(w, "end")) return true;
  if (!equalsLower(w, "prepare")) return false;
  // PREPARE TRANSACTION makes the transaction durable: as uncertain as a COMMIT when lost.
  size_t at = static_cast<size_t>(w.data() + w.size() - sql.data());
  return equalsLower(firstKeyword(sql.substr(at)), "transaction");
}

bool mayHoldSeveralStatements(std::string_view sql) {
  // After the first ';' only blanks and more ';'. A ';' in a comment or a string literal
  // makes this say "several", which only costs a replay.
  size_t semi = sql.find(';');
  if (semi == std::string_view::npos) return false;
  for (char c : sql.substr(semi))
    if (c != ';' && c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\0') return true;
  return false;
}

namespace {

// The identifier at `i` (after blanks and comments): quoted as written, unquoted folded.
// Advances i past it; empty when there is none.
std::string identifierAt(std::string_view sql, size_t& i) {
  i = skipSpaceAndComments(sql, i);
  if (i == npos || i >= sql.size()) return {};
  std::string out;
  if (sql[i] == '"') {
    for (size_t k = i + 1; k < sql.size(); ++k) {
      if (sql[k] == '"') {
        if (k + 1 < sql.size() && sql[k + 1] == '"') {
          out += '"';
          ++k;
          continue;
        }
        i = k + 1;
        return out.empty() ? std::string("\"\"") : out;
      }
      out += sql[k];
    }
    return {};  // unterminated
  }
  if (sql[i] == '*') {
    ++i;
    return "*";
  }
  if (!identStart(sql[i])) return {};
  size_t end = i;
  while (end < sql.size() && identCont(sql[end])) out += toLowerAscii(sql[end++]);
  i = end;
  return out;
}

}  // namespace

bool mayMakeSessionObject(std::string_view sql) {
  std::string_view w = firstKeyword(sql);
  return equalsLower(w, "listen") || equalsLower(w, "unlisten") || equalsLower(w, "prepare") ||
         equalsLower(w, "deallocate");
}

SessionObject sessionObject(std::string_view sql, bool& unsure) {
  unsure = false;
  using K = SessionObject::Kind;
  std::string_view w = firstKeyword(sql);
  K kind;
  if (equalsLower(w, "listen")) {
    kind = K::Listen;
  } else if (equalsLower(w, "unlisten")) {
    kind = K::Unlisten;
  } else if (equalsLower(w, "prepare")) {
    kind = K::Prepare;
  } else if (equalsLower(w, "deallocate")) {
    kind = K::Deallocate;
  } else {
    return {};
  }
  // Anything but one statement (or a PREPARE TRANSACTION) cannot be followed.
  if (mayHoldSeveralStatements(sql)) {
    unsure = true;
    return {};
  }
  size_t i = static_cast<size_t>(w.data() + w.size() - sql.data());
  std::string name = identifierAt(sql, i);
  if (kind == K::Deallocate && name == "prepare") name = identifierAt(sql, i);
  if (kind == K::Prepare && name == "transaction") return {};  // two-phase commit, not ours
  if (name.empty()) {
    unsure = true;
    return {};
  }
  if (kind == K::Unlisten && name == "*") kind = K::UnlistenAll;
  if (kind == K::Deallocate && name == "all") kind = K::DeallocateAll;
  if (name == "*" && kind != K::UnlistenAll) {
    unsure = true;
    return {};
  }
  return {kind, std::move(name)};
}

bool isLoneBegin(std::string_view sql) {
  std::string_view w = firstKeyword(sql);
  return (equalsLower(w, "begin") || equalsLower(w, "start")) && !mayHoldSeveralStatements(sql);
}

bool mayTouchSessionState(std::string_view sql) {
  std::string_view w = firstKeyword(sql);
  if (equalsLower(w, "set") || equalsLower(w, "reset") || equalsLower(w, "create") ||
      equalsLower(w, "declare"))
    return true;
  return containsLower(sql, "advisory") || containsLower(sql, "temp") ||
         containsLower(sql, "set_config");
}

bool mayMakeCommitAsync(const Classification& c, std::string_view sql) {
  if ((c.kind == StatementKind::LocalSet || c.kind == StatementKind::SessionSet) &&
      c.setName == "synchronous_commit")
    return true;
  return c.callsSetConfig && containsLower(sql, "synchronous_commit");
}

bool startsWithSet(std::string_view sql) { return firstKeywordIs(sql, "set"); }

bool startsWithReset(std::string_view sql) { return firstKeywordIs(sql, "reset"); }

bool startsWithSetOrReset(std::string_view sql) {
  std::string_view w = firstKeyword(sql);
  return equalsLower(w, "set") || equalsLower(w, "reset");
}

bool isSqlExecute(std::string_view sql) { return firstKeywordIs(sql, "execute"); }

bool mayStartDeallocate(char first) {
  // A comment's first byte, a d, or whitespace (what skipSpaceAndComments steps over).
  return first == 'd' || first == 'D' || first == '-' || first == '/' ||
         skipSpaceAndComments(std::string_view(&first, 1), 0) == 1;
}

std::optional<std::string> deallocateTarget(std::string_view sql) {
  size_t i = 0;
  auto skip = [&] {
    i = skipSpaceAndComments(sql, i);
    return i != npos;
  };
  auto word = [&] {
    size_t b = i;
    while (i < sql.size() && deallocNameChar(sql[i])) ++i;
    return sql.substr(b, i - b);
  };
  if (!skip() || !equalsLower(word(), "deallocate") || !skip()) return std::nullopt;
  std::string_view w = word();
  if (equalsLower(w, "prepare")) {
    if (!skip()) return std::nullopt;
    w = word();
  }
  std::string name;
  bool quoted = false;
  if (!w.empty()) {
    name.reserve(w.size());
    for (char c : w) name += toLowerAscii(c);
  } else if (i < sql.size() && sql[i] == '"') {
    quoted = true;
    for (++i;; ++i) {
      if (i >= sql.size()) return std::nullopt;
      if (sql[i] == '"') {
        if (i + 1 < sql.size() && sql[i + 1] == '"') {
          name += '"';
          ++i;
          continue;
        }
        ++i;
        break;
      }
      name += sql[i];
    }
  }
  if (!skip()) return std::nullopt;
  if (i < sql.size() && sql[i] == ';') ++i;
  if (!skip()) return std::nullopt;
  if (i != sql.size() || name.empty() || (!quoted && name == "all")) return std::nullopt;
  return name;
}

TxnEnd bareTxnEnd(std::string_view sql) {
  std::string_view words[2];
  size_t count = 0;
  size_t i = 0;
  for (;;) {
    i = skipSpaceAndComments(sql, i);
    if (i == npos) return TxnEnd::None;
    if (i >= sql.size()) break;
    if (sql[i] == ';') {
      ++i;
      continue;
    }
    if (!isAsciiAlpha(sql[i]) || count == 2) return TxnEnd::None;
    size_t b = i;
    while (i < sql.size() && isAsciiAlpha(sql[i])) ++i;
    words[count++] = sql.substr(b, i - b);
  }
  if (count == 0) return TxnEnd::None;
  if (count == 2 && !equalsLower(words[1], "work") && !equalsLower(words[1], "transaction"))
    return TxnEnd::None;
  if (equalsLower(words[0], "rollback") || equalsLower(words[0], "abort")) return TxnEnd::Rollback;
  if (equalsLower(words[0], "commit") || equalsLower(words[0], "end")) return TxnEnd::Commit;
  return TxnEnd::None;
}

bool validSettingName(std::string_view name) {
  if (name.empty() || name.size() > 63 * 2 + 1) return false;
  for (char c : name)
    if (!(isAsciiAlpha(c) || isAsciiDigit(c) || c == '_' || c == '.')) return false;
  return true;
}

std::string quoteLiteral(std::string_view v) {
  std::string q;
  q.reserve(v.size() + 2);
  appendLiteral(q, v);
  return q;
}

void appendSetConfig(std::string& sql, std::string_view name, std::string_view value) {
  sql += "SELECT set_config(";
  appendLiteral(sql, name);
  sql += ", ";
  appendLiteral(sql, value);
  sql += ", false);";
}

void appendReset(std::string& sql, std::string_view name) {
  sql += "RESET ";
  sql += name;
  sql += ';';
}

std::string replayWaitQuery(uint64_t lsn, uint64_t waitMs) {
  char target[24];
  snprintf(target, sizeof target, "%X/%X", static_cast<unsigned>(lsn >> 32),
           static_cast<unsigned>(lsn & 0xffffffffu));
  return "EXECUTE pgswitch_replay_wait('" + std::string(target) + "', " +
         std::to_string(waitMs) + ")";
}

std::string currentSettingQuery(std::string_view name) {
  std::string sql = "SELECT current_setting(";
  appendLiteral(sql, name);
  sql += ')';
  return sql;
}

bool isHarmlessSessionSet(const Classification& c, std::string_view sql) {
  return c.kind == StatementKind::SessionSet && c.setName == "extra_float_digits" &&
         sql.find_first_of("-0") == std::string_view::npos;
}

}  // namespace pgswitch::routing
