// Lexer-path rules for transaction control (BEGIN ... RELEASE) and SET / RESET, including the
// transaction modes that decide TxnBeginReadOnly / SetTxnReadOnly.
#include <string>

#include "routing/statement_rules.h"

namespace pgswitch::routing {
namespace {

using TK = TokenKind;

// [ISOLATION LEVEL ...] [READ ONLY|READ WRITE] [[NOT] DEFERRABLE], comma or space separated.
bool parseTxnModes(const TokenSeq& t, size_t i, size_t e, TxnModes& m) {
  while (i < e) {
    if (t.kindAt(i, e, TK::Comma)) {
      ++i;
    } else if (t.word(i, e, "isolation") && t.word(i + 1, e, "level")) {
      i += 2;
      m.isolation = true;
      if (t.word(i, e, "serializable")) {
        m.serializable = true;
        ++i;
      } else if ((t.word(i, e, "repeatable") && t.word(i + 1, e, "read")) ||
                 (t.word(i, e, "read") &&
                  (t.word(i + 1, e, "committed") || t.word(i + 1, e, "uncommitted")))) {
        i += 2;
      } else {
        return false;
      }
    } else if (t.word(i, e, "read") && t.word(i + 1, e, "only")) {
      m.readOnly = 1;
      i += 2;
    } else if (t.word(i, e, "read") && t.word(i + 1, e, "write")) {
      m.readOnly = 0;
      i += 2;
    } else if (t.word(i, e, "deferrable")) {
      m.deferrable = true;
      ++i;
    } else if (t.word(i, e, "not") && t.word(i + 1, e, "deferrable")) {
      m.deferrable = true;
      i += 2;
    } else {
      return false;
    }
  }
  return true;
}

// A GUC name part: lower-cased; quotes stripped. False for U&"..." (left to the parser).
bool appendNamePart(const TokenSeq& t, size_t i, std::string& out) {
  std::string_view s = t.text(i);
  if (t[i].kind == TK::QuotedIdent) {
    if (s[0] != '"') return false;
    s = s.substr(1, s.size() - 2);
  }
  for (size_t k = 0; k < s.size(); ++k) {
    char ch = s[k];
    if (t[i].kind == TK::QuotedIdent && ch == '"') ++k;  // "" inside quotes is one quote
    out.push_back((ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch + ('a' - 'A')) : ch);
  }
  return true;
}

// name ('.' name)*; advances `i`.
bool parseGucName(const TokenSeq& t, size_t& i, size_t e, std::string& name) {
  if (!t.name(i, e) || !appendNamePart(t, i, name)) return false;
  ++i;
  while (t.kindAt(i, e, TK::Dot) && t.name(i + 1, e)) {
    name.push_back('.');
    if (!appendNamePart(t, i + 1, name)) return false;
    i += 2;
  }
  return true;
}

// A single-token value with its quotes removed, or empty.
std::string_view singleValue(const TokenSeq& t, size_t i, size_t e) {
  if (i + 1 != e) return {};
  std::string_view v = t.text(i);
  if (t[i].kind == TK::String) {
    if (v.size() < 2 || v[0] != '\'') return {};
    return v.substr(1, v.size() - 2);
  }
  return (t[i].kind == TK::Word || t[i].kind == TK::Number) ? v : std::string_view{};
}

}  // namespace

void applyBeginTxnModes(const TxnModes& m, Classification& out) {
  out.kind = m.readOnly == 1 ? StatementKind::TxnBeginReadOnly : StatementKind::TxnBegin;
  out.write = m.serializable || m.readOnly == 0;
}

void applySetTxnModes(const TxnModes& m, bool session, Classification& out) {
  const std::string prefix = session ? "default_transaction_" : "transaction_";
  if (m.readOnly == 1) {
    out.kind = StatementKind::SetTxnReadOnly;
  } else {
    out.kind = session ? StatementKind::SessionSet : StatementKind::LocalSet;
  }
  out.setName = prefix + (m.readOnly >= 0 ? "read_only" : m.isolation ? "isolation" : "deferrable");
  out.write = m.serializable || (!session && m.readOnly == 0);
}

bool classifyTransactionControl(const TokenSeq& t, size_t b, size_t e, Classification& out) {
  size_t i = b + 1;
  if (t.word(b, e, "begin") || t.word(b, e, "start")) {
    if (t.word(b, e, "start") && !t.word(i, e, "transaction")) return false;
    if (t.word(i, e, "work") || t.word(i, e, "transaction")) ++i;
    TxnModes m;
    if (!parseTxnModes(t, i, e, m)) return false;
    applyBeginTxnModes(m, out);
    return true;
  }
  if (t.word(b, e, "savepoint")) {
    return t.name(i, e) && i + 1 == e;  // Other
  }
  if (t.word(b, e, "release")) {
    if (t.word(i, e, "savepoint")) ++i;
    return t.name(i, e) && i + 1 == e;
  }
  const bool rollback = t.word(b, e, "rollback");
  if ((rollback || t.word(b, e, "commit")) && t.word(i, e, "prepared")) {
    // COMMIT/ROLLBACK PREPARED 'gid' finishes a two-phase transaction on the primary; it does
    // not end the session's own transaction (it cannot run inside one).
    if (!t.kindAt(i + 1, e, TK::String) || i + 2 != e) return false;
    out.write = true;
    out.kind = StatementKind::Write;
    return true;
  }
  if (t.word(i, e, "work") || t.word(i, e, "transaction")) ++i;
  if (rollback && t.word(i, e, "to")) {  // ROLLBACK TO [SAVEPOINT] name: stays in the transaction
    ++i;
    if (t.word(i, e, "savepoint")) ++i;
    return t.name(i, e) && i + 1 == e;
  }
  if (t.word(i, e, "and")) {
    ++i;
    if (t.word(i, e, "no")) ++i;
    if (!t.word(i, e, "chain")) return false;
    ++i;
  }
  if (i != e) return false;
  out.kind = StatementKind::TxnEnd;
  return true;
}

bool classifySet(const TokenSeq& t, size_t b, size_t e, Classification& out) {
  size_t i = b + 1;
  bool local = false;
  if (t.word(i, e, "local")) {
    local = true;
    ++i;
  } else if (t.word(i, e, "session") && !t.word(i + 1, e, "authorization") &&
             !t.word(i + 1, e, "characteristics")) {
    ++i;
  }
  if (t.word(i, e, "transaction")) {
    if (t.word(i + 1, e, "snapshot")) {
      // Snapshots are exported by a transaction on a particular server: the primary.
      if (!t.kindAt(i + 2, e, TK::String) || i + 3 != e) return false;
      out.kind = StatementKind::LocalSet;
      out.setName = "transaction_snapshot";
      out.write = true;
      return true;
    }
    TxnModes m;
    if (i + 1 >= e || !parseTxnModes(t, i + 1, e, m)) return false;
    applySetTxnModes(m, false, out);
    return true;
  }
  if (t.word(i, e, "session") && t.word(i + 1, e, "characteristics")) {
    TxnModes m;
    if (!t.word(i + 2, e, "as") || !t.word(i + 3, e, "transaction") || i + 4 >= e ||
        !parseTxnModes(t, i + 4, e, m)) {
      return false;
    }
    applySetTxnModes(m, true, out);
    return true;
  }
  out.kind = local ? StatementKind::LocalSet : StatementKind::SessionSet;
  if (t.word(i, e, "constraints")) {  // SET CONSTRAINTS: this transaction only
    out.kind = StatementKind::LocalSet;
    return i + 1 < e;
  }
  // The SQL-standard spellings of a few GUCs.
  struct Alias {
    std::string_view w1, w2, guc;
  };
  static constexpr Alias kAliases[] = {
      {"role", "", "role"},          {"session", "authorization", "session_authorization"},
      {"time", "zone", "timezone"},  {"names", "", "client_encoding"},
      {"schema", "", "search_path"}, {"xml", "option", "xmloption"}};
  for (const Alias& a : kAliases) {
    if (t.word(i, e, a.w1) && (a.w2.empty() || t.word(i + 1, e, a.w2))) {
      out.setName = a.guc;
      return i + (a.w2.empty() ? 1 : 2) < e;
    }
  }
  std::string name;
  if (!parseGucName(t, i, e, name)) return false;
  out.setName = std::move(name);
  if (t.word(i, e, "from") && t.word(i + 1, e, "current") && i + 2 == e) return true;
  if (!t.word(i, e, "to") && !(t.kindAt(i, e, TK::Operator) && t.text(i) == "=")) return false;
  ++i;
  if (i >= e) return false;
  const std::string_view v = singleValue(t, i, e);
  const std::string& n = out.setName;
  if (n == "default_transaction_read_only" || n == "transaction_read_only") {
    const int bv = parsePgBool(v);
    if (bv == 1) out.kind = StatementKind::SetTxnReadOnly;
    if (bv == 0 && n == "transaction_read_only") out.write = true;
  } else if (n == "default_transaction_isolation" || n == "transaction_isolation") {
    if (equalsLower(v, "serializable")) out.write = true;
  }
  return true;
}

bool classifyReset(const TokenSeq& t, size_t b, size_t e, Classification& out) {
  size_t i = b + 1;
  out.kind = StatementKind::SessionSet;
  struct Alias {
    std::string_view w1, w2, w3, guc;
  };
  static constexpr Alias kAliases[] = {
      {"all", "", "", "all"},
      {"role", "", "", "role"},
      {"session", "authorization", "", "session_authorization"},
      {"time", "zone", "", "timezone"},
      {"transaction", "isolation", "level", "transaction_isolation"}};
  for (const Alias& a : kAliases) {
    const size_t n = a.w2.empty() ? 1 : a.w3.empty() ? 2 : 3;
    if (t.word(i, e, a.w1) && (n < 2 || t.word(i + 1, e, a.w2)) &&
        (n < 3 || t.word(i + 2, e, a.w3)) && i + n == e) {
      out.setName = a.guc;
      return true;
    }
  }
  std::string name;
  if (!parseGucName(t, i, e, name) || i != e) return false;
  out.setName = std::move(name);
  return true;
}

}  // namespace pgswitch::routing
