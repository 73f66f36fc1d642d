// Lexer-path rules for queries, DML, DDL and utility statements. Every rule either decides
// with certainty or returns false, so that only text the rules fully understand skips the parser.
#include "routing/statement_rules.h"

#include "routing/called_functions.h"
#include "routing/write_functions.h"

namespace pgswitch::routing {
namespace {

using TK = TokenKind;
constexpr int kMaxLevel = 16;

// Lower-cases a leading keyword into `buf`; empty if it is too long to be one we know.
std::string_view lowerKeyword(std::string_view w, char (&buf)[16]) {
  if (w.size() >= sizeof(buf)) return {};
  for (size_t i = 0; i < w.size(); ++i) {
    char ch = w[i];
    buf[i] = (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch + ('a' - 'A')) : ch;
  }
  return std::string_view(buf, w.size());
}

bool startsWithAny(const TokenSeq& t, size_t i, size_t e,
                   std::initializer_list<std::string_view> kws) {
  for (std::string_view kw : kws) {
    if (t.word(i, e, kw)) return true;
  }
  return false;
}

// A statement that may stand where a query is expected (CTE body, WITH main part, PREPARE).
bool isQueryStart(const TokenSeq& t, size_t i, size_t e) {
  return t.kindAt(i, e, TK::LParen) ||
         startsWithAny(
             t, i, e, {"select", "values", "table", "with", "insert", "update", "delete", "merge"});
}

// Token i (followed by '(') names a type, not a function: x::name(...), CAST(x AS name(...)),
// also schema-qualified (x::app.t(...) is not valid, but nothing is lost by skipping it).
bool castTarget(const TokenSeq& t, size_t b, size_t i) {
  while (i >= b + 2 && t[i - 1].kind == TK::Dot) i -= 2;
  if (i <= b) return false;
  if (t[i - 1].kind == TK::Operator && t.text(i - 1) == "::") return true;
  return t.word(i - 1, i, "as");
}

// Function calls, locking clauses and SELECT ... INTO anywhere in [b, e). Returns false when
// unsure (INTO below the statement's own level, a U&"..." function name).
bool scanQuery(const RuleContext& c, size_t b, size_t e, Classification& out, bool allowInto) {
  const TokenSeq& t = c.t;
  const uint32_t base = t[b].depth;
  uint32_t lead = 0;  // "((SELECT ... INTO t))" is still SELECT INTO
  while (t.kindAt(b + lead, e, TK::LParen)) ++lead;
  for (size_t i = b; i < e; ++i) {
    const Token& tok = t[i];
    if (tok.kind == TK::QuotedIdent) {
      if (!t.kindAt(i + 1, e, TK::LParen)) continue;
      std::string_view q = t.text(i);
      if (q[0] != '"') return false;  // U&"..." may spell anything
      if (q.find("\"\"") != std::string_view::npos) return false;  // "a""b": the parser unescapes
      q = q.substr(1, q.size() - 2);
      WriteFunctionMatch m = matchWriteFunction(q, c.opts.extraWriteFunctions);
      out.write |= m.write;
      out.sessionAdvisoryLock |= m.sessionAdvisoryLock;
      out.callsSetConfig |= m.setConfig;
      if (!m.write && !castTarget(t, b, i)) noteCalledFunction(q, c.opts, out);
      continue;
    }
    if (tok.kind != TK::Word) continue;
    std::string_view w = t.text(i);
    if (t.kindAt(i + 1, e, TK::LParen)) {
      WriteFunctionMatch m = matchWriteFunction(w, c.opts.extraWriteFunctions);
      out.write |= m.write;
      out.sessionAdvisoryLock |= m.sessionAdvisoryLock;
      out.callsSetConfig |= m.setConfig;
      if (!m.write && !notAFunctionName(w) && !castTarget(t, b, i)) {
        noteCalledFunction(w, c.opts, out);
      }
    } else if (equalsLower(w, "for")) {
      // FOR UPDATE / FOR NO KEY UPDATE / FOR SHARE / FOR KEY SHARE, at any depth.
      if (t.word(i + 1, e, "update") || t.word(i + 1, e, "share") ||
          (t.word(i + 1, e, "no") && t.word(i + 2, e, "key")) ||
          (t.word(i + 1, e, "key") && t.word(i + 2, e, "share"))) {
        out.write = true;
      }
    } else if (allowInto && equalsLower(w, "into")) {
      if (tok.depth - base > lead) return false;
      out.write = true;  // SELECT ... INTO creates a table
      size_t j = i + 1;
      if (t.word(j, e, "local") || t.word(j, e, "global")) ++j;
      if (t.word(j, e, "temp") || t.word(j, e, "temporary")) out.createsTempTable = true;
    }
  }
  return true;
}

bool classifySelect(const RuleContext& c, size_t b, size_t e, Classification& out) {
  if (!scanQuery(c, b, e, out, true)) return false;
  out.kind = out.write ? StatementKind::Write : StatementKind::Read;
  return true;
}

// WITH [RECURSIVE] name [(cols)] AS [[NOT] MATERIALIZED] (body) [SEARCH ...] [CYCLE ...], ...
bool classifyWith(const RuleContext& c, size_t b, size_t e, Classification& out, int level) {
  const TokenSeq& t = c.t;
  size_t i = b + 1;
  if (t.word(i, e, "recursive")) ++i;
  for (;;) {
    if (!t.name(i, e)) return false;
    ++i;
    if (t.kindAt(i, e, TK::LParen)) i = t[i].match + 1;
    if (!t.word(i, e, "as")) return false;
    ++i;
    if (t.word(i, e, "not")) ++i;
    if (t.word(i, e, "materialized")) ++i;
    if (!t.kindAt(i, e, TK::LParen)) return false;
    const size_t close = t[i].match;
    if (close >= e || !isQueryStart(t, i + 1, close)) return false;
    Classification body;
    if (!classifyStatement(c, i + 1, close, body, level + 1)) return false;
    absorbEffects(out, body);
    i = close + 1;
    // SEARCH ... SET col / CYCLE ... SET col USING path: skip to ',' or the main statement.
    while (i < e && t[i].kind != TK::Comma && !isQueryStart(t, i, e)) ++i;
    if (!t.kindAt(i, e, TK::Comma)) break;
    ++i;
  }
  if (!isQueryStart(t, i, e)) return false;
  Classification main;
  if (!classifyStatement(c, i, e, main, level + 1)) return false;
  absorbEffects(out, main);
  out.kind = out.write ? StatementKind::Write : StatementKind::Read;
  return true;
}

// A statement that starts with '(': a parenthesised SELECT/VALUES/TABLE, maybe a set operation.
bool classifyParenQuery(const RuleContext& c, size_t b, size_t e, Classification& out) {
  size_t i = b;
  while (c.t.kindAt(i, e, TK::LParen)) ++i;
  if (!startsWithAny(c.t, i, e, {"select", "values", "table"})) return false;
  return classifySelect(c, b, e, out);
}

// EXPLAIN [ANALYZE] [VERBOSE] stmt | EXPLAIN (option [value], ...) stmt. Only ANALYZE executes.
bool classifyExplain(const RuleContext& c, size_t b, size_t e, Classification& out, int level) {
  const TokenSeq& t = c.t;
  size_t i = b + 1;
  bool analyze = false;
  if (t.kindAt(i, e, TK::LParen)) {
    const size_t close = t[i].match;
    size_t j = i + 1;
    while (j < close) {
      if (t[j].kind != TK::Word) return false;
      const bool isAnalyze = t.word(j, close, "analyze") || t.word(j, close, "analyse");
      const size_t v = ++j;
      while (j < close && t[j].kind != TK::Comma) ++j;
      if (isAnalyze) {
        if (j == v) {
          analyze = true;
        } else {
          std::string_view val = t.text(v);
          if (t[v].kind == TK::String && val.size() >= 2 && val[0] == '\'') {
            val = val.substr(1, val.size() - 2);
          }
          const int bv = j - v == 1 ? parsePgBool(val) : -1;
          if (bv < 0) return false;
          analyze = bv == 1;
        }
      }
      if (j < close) ++j;
    }
    i = close + 1;
  } else {
    for (;; ++i) {
      if (t.word(i, e, "analyze") || t.word(i, e, "analyse")) {
        analyze = true;
      } else if (!t.word(i, e, "verbose")) {
        break;
      }
    }
  }
  if (!isQueryStart(t, i, e) && !startsWithAny(t, i, e, {"execute", "declare", "create"})) {
    return false;
  }
  Classification inner;
  if (!classifyStatement(c, i, e, inner, level + 1)) return false;
  if (analyze) absorbEffects(out, inner);
  out.kind = out.write ? StatementKind::Write : StatementKind::Read;
  return true;
}

// COPY [BINARY] { table [(cols)] | (query) } { FROM | TO } ...
bool classifyCopy(const RuleContext& c, size_t b, size_t e, Classification& out, int level) {
  const TokenSeq& t = c.t;
  size_t i = b + 1;
  if (t.word(i, e, "binary")) ++i;
  if (t.kindAt(i, e, TK::LParen)) {
    const size_t close = t[i].match;
    if (!isQueryStart(t, i + 1, close)) return false;
    Classification inner;
    if (!classifyStatement(c, i + 1, close, inner, level + 1)) return false;
    absorbEffects(out, inner);
    i = close + 1;
  } else {
    if (!t.name(i, e)) return false;
    ++i;
    while (t.kindAt(i, e, TK::Dot) && t.name(i + 1, e)) i += 2;
    if (t.kindAt(i, e, TK::LParen)) i = t[i].match + 1;
  }
  if (t.word(i, e, "from")) {
    out.write = true;
  } else if (!t.word(i, e, "to")) {
    return false;
  }
  out.kind = out.write ? StatementKind::Write : StatementKind::Read;
  return true;
}

// DECLARE name [BINARY] [ASENSITIVE|INSENSITIVE] [[NO] SCROLL] CURSOR [WITH[OUT] HOLD] FOR query
bool classifyDeclare(const RuleContext& c, size_t b, size_t e, Classification& out, int level) {
  const TokenSeq& t = c.t;
  size_t i = b + 1;
  if (!t.name(i, e)) return false;
  bool hold = false, cursor = false;
  for (++i; i < e && !t.word(i, e, "for"); ++i) {
    if (t[i].kind != TK::Word) return false;
    if (t.word(i, e, "cursor")) cursor = true;
    if (t.word(i, e, "with") && t.word(i + 1, e, "hold")) hold = true;
  }
  ++i;
  if (!cursor) return false;
  if (!startsWithAny(t, i, e, {"select", "values", "table", "with"}) &&
      !t.kindAt(i, e, TK::LParen)) {
    return false;
  }
  Classification inner;
  if (!classifyStatement(c, i, e, inner, level + 1)) return false;
  absorbEffects(out, inner);
  out.withHoldCursor = hold;
  out.kind = out.write ? StatementKind::Write : StatementKind::Read;
  return true;
}

// PREPARE name [(types)] AS stmt | PREPARE TRANSACTION 'gid'. Preparing executes nothing, so
// only the write flag of the inner statement carries over.
bool classifyPrepare(const RuleContext& c, size_t b, size_t e, Classification& out, int level) {
  const TokenSeq& t = c.t;
  size_t i = b + 1;
  if (t.word(i, e, "transaction")) {
    if (!t.kindAt(i + 1, e, TK::String) || i + 2 != e) return false;
    out.write = true;  // two-phase commit belongs to the primary
    out.kind = StatementKind::TxnEnd;
    return true;
  }
  if (!t.name(i, e)) return false;
  ++i;
  if (t.kindAt(i, e, TK::LParen)) i = t[i].match + 1;
  if (!t.word(i, e, "as")) return false;
  ++i;
  if (!isQueryStart(t, i, e)) return false;
  Classification inner;
  if (!classifyStatement(c, i, e, inner, level + 1)) return false;
  out.sqlPrepare = true;
  out.write = inner.write;
  out.kind = out.write ? StatementKind::Write : StatementKind::Other;
  return true;
}

// CREATE [OR REPLACE] [GLOBAL|LOCAL] [TEMP|TEMPORARY|UNLOGGED] object [IF NOT EXISTS] name
void classifyCreate(const TokenSeq& t, size_t b, size_t e, Classification& out) {
  out.write = true;
  out.kind = StatementKind::Write;
  size_t i = b + 1;
  if (t.word(i, e, "or") && t.word(i + 1, e, "replace")) i += 2;
  if (t.word(i, e, "global") || t.word(i, e, "local")) ++i;
  if (t.word(i, e, "temp") || t.word(i, e, "temporary")) {
    out.createsTempTable = true;
    return;
  }
  if (t.word(i, e, "unlogged")) ++i;
  if (!startsWithAny(t, i, e, {"table", "view", "sequence", "function", "procedure"})) return;
  ++i;
  if (t.word(i, e, "if") && t.word(i + 1, e, "not") && t.word(i + 2, e, "exists")) i += 3;
  // Objects created in pg_temp live and die with the session, like TEMP ones.
  if (t.word(i, e, "pg_temp") && t.kindAt(i + 1, e, TK::Dot)) out.createsTempTable = true;
}

// CREATE [OR REPLACE] / ALTER / DROP of a FUNCTION, PROCEDURE, ROUTINE or EXTENSION, DROP
// SCHEMA (CASCADE takes its functions along), DO (its body may create functions): the volatile
// functions of the database may have changed. `k` is the lower-cased first keyword.
bool changesFunctions(const TokenSeq& t, size_t b, size_t e, std::string_view k) {
  if (k == "do") return true;
  size_t i = b + 1;
  if (k == "create" && t.word(i, e, "or") && t.word(i + 1, e, "replace")) i += 2;
  if (k == "drop" && t.word(i, e, "schema")) return true;
  return startsWithAny(t, i, e, {"function", "procedure", "routine", "extension"});
}

bool classifyDiscard(const TokenSeq& t, size_t b, size_t e, Classification& out) {
  if (b + 2 != e) return false;
  if (t.word(b + 1, e, "all") || t.word(b + 1, e, "plans")) {
    out.discard = true;
  } else if (!startsWithAny(t, b + 1, e, {"temp", "temporary", "sequences"})) {
    return false;
  }
  out.kind = StatementKind::Other;
  return true;
}

}  // namespace

int parsePgBool(std::string_view v) {
  for (std::string_view s : {"on", "true", "yes", "t", "y", "1"}) {
    if (equalsLower(v, s)) return 1;
  }
  for (std::string_view s : {"off", "false", "no", "f", "n", "0"}) {
    if (equalsLower(v, s)) return 0;
  }
  return -1;
}

void absorbEffects(Classification& to, const Classification& from) {
  to.write |= from.write;
  to.createsTempTable |= from.createsTempTable;
  to.listen |= from.listen;
  to.unlisten |= from.unlisten;
  to.sessionAdvisoryLock |= from.sessionAdvisoryLock;
  to.withHoldCursor |= from.withHoldCursor;
  to.callsSetConfig |= from.callsSetConfig;
  to.sqlPrepare |= from.sqlPrepare;
  to.sqlDeallocate |= from.sqlDeallocate;
  to.discard |= from.discard;
  mergeCalledFunctions(to, from);
}

void StatementMerger::add(Classification&& s) {
  ++count_;
  absorbEffects(acc_, s);
  if (!s.setName.empty()) acc_.setName = std::move(s.setName);
  switch (s.kind) {
    case StatementKind::Read:
      anyRead_ = true;
      break;
    case StatementKind::Write:
      anyWrite_ = true;
      break;
    case StatementKind::Other:
      break;
    case StatementKind::TxnBegin:
    case StatementKind::TxnBeginReadOnly:
    case StatementKind::TxnEnd:
    case StatementKind::SetTxnReadOnly:
    case StatementKind::SessionSet:
    case StatementKind::LocalSet:
      hasSpecial_ = true;
      special_ = s.kind;
      break;
  }
}

Classification StatementMerger::finish() && {
  acc_.kind = hasSpecial_ ? special_
              : anyWrite_ ? StatementKind::Write
              : anyRead_  ? StatementKind::Read
                          : StatementKind::Other;
  acc_.multiStatement = count_ > 1;
  return std::move(acc_);
}

bool classifyStatement(const RuleContext& c, size_t b, size_t e, Classification& out, int level) {
  const TokenSeq& t = c.t;
  if (b >= e || level > kMaxLevel) return false;
  if (t[b].kind == TK::LParen) return classifyParenQuery(c, b, e, out);
  if (t[b].kind != TK::Word) return false;
  char buf[16];
  const std::string_view k = lowerKeyword(t.text(b), buf);
  auto writes = [&out](StatementKind kind = StatementKind::Write) {
    out.write = true;
    out.kind = kind;
    return true;
  };

  if (k == "select" || k == "values" || k == "table") return classifySelect(c, b, e, out);
  if (k == "insert" || k == "update" || k == "delete" || k == "merge") {
    writes();
    return scanQuery(c, b, e, out, false);
  }
  if (k == "with") return classifyWith(c, b, e, out, level);
  if (k == "begin" || k == "start" || k == "commit" || k == "end" || k == "rollback" ||
      k == "abort" || k == "savepoint" || k == "release") {
    return classifyTransactionControl(t, b, e, out);
  }
  if (k == "set") return classifySet(t, b, e, out);
  if (k == "reset") return classifyReset(t, b, e, out);
  if (k == "show" || k == "fetch" || k == "move") {
    out.kind = StatementKind::Read;
    return true;
  }
  if (k == "close") return true;  // Other
  if (k == "explain") return classifyExplain(c, b, e, out, level);
  if (k == "copy") return classifyCopy(c, b, e, out, level);
  if (k == "declare") return classifyDeclare(c, b, e, out, level);
  if (k == "prepare") return classifyPrepare(c, b, e, out, level);
  if (k == "execute") return writes();  // the prepared text is unknown here
  if (k == "deallocate") {
    out.sqlDeallocate = true;
    return true;
  }
  if (k == "discard") return classifyDiscard(t, b, e, out);
  if (k == "create" || k == "alter" || k == "drop" || k == "do") {
    out.changesFunctions = changesFunctions(t, b, e, k);
  }
  if (k == "create") {
    classifyCreate(t, b, e, out);
    return true;
  }
  if (k == "listen") {
    out.listen = true;
    return writes();
  }
  if (k == "unlisten") {  // goes where the LISTEN went
    out.unlisten = true;
    return writes();
  }
  for (std::string_view w :
       {"alter",  "drop",    "truncate", "grant",   "revoke",   "comment",    "lock",
        "vacuum", "analyze", "analyse",  "cluster", "reindex",  "refresh",    "call",
        "do",     "notify",  "security", "import",  "reassign", "checkpoint", "load"}) {
    if (k == w) return writes();
  }
  return false;
}

}  // namespace pgswitch::routing
