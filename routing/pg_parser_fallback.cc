// Parser-path rules over libpg_query's JSON parse tree. Node names follow PostgreSQL 15's
// parsenodes.h; the JSON omits fields with default values (0, false, ""), hence the defaults.
#include "routing/pg_parser_fallback.h"

#include <pg_query.h>

#include <string>

#include "routing/called_functions.h"
#include "routing/json_tree.h"
#include "routing/statement_rules.h"
#include "routing/write_functions.h"

namespace pgswitch::routing {
namespace {

constexpr int kMaxLevel = 16;
constexpr long kCursorOptHold = 0x0020;  // CURSOR_OPT_HOLD in parsenodes.h

class TreeRules {
 public:
  TreeRules(const json::Document& d, const ClassifierOptions& opts) : d_(d), opts_(opts) {}

  // `wrapper` is an object with one member named after the node type ({"SelectStmt": {...}}).
  void classifyWrapped(uint32_t wrapper, Classification& out, int level) const {
    const uint32_t node = wrapper != 0 ? d_.firstChild(wrapper) : 0;
    if (node == 0 || level > kMaxLevel) {
      out.write = true;
      out.kind = StatementKind::Write;
      return;
    }
    classifyNode(d_[node].key, node, out, level);
  }

 private:
  std::string_view str(uint32_t i) const {
    return i != 0 && d_[i].type == json::Type::String ? d_[i].text : std::string_view{};
  }
  long num(uint32_t i) const {
    if (i == 0 || d_[i].type != json::Type::Number) return 0;
    long v = 0;
    for (char ch : d_[i].text) {
      if (ch >= '0' && ch <= '9') v = v * 10 + (ch - '0');
    }
    return v;
  }
  bool flag(uint32_t obj, std::string_view key) const {
    const uint32_t i = d_.member(obj, key);
    return i != 0 && d_[i].text == "true";
  }

  bool hasKey(uint32_t sub, std::string_view key) const {
    for (uint32_t i = sub + 1; i < d_[sub].end; ++i) {
      if (d_[i].key == key) return true;
    }
    return false;
  }

  // Every FuncCall in the subtree: the last name component decides.
  void scanFunctions(uint32_t sub, Classification& out) const {
    for (uint32_t i = sub + 1; i < d_[sub].end; ++i) {
      if (d_[i].key != "FuncCall") continue;
      const uint32_t names = d_.member(i, "funcname");
      uint32_t last = 0;
      for (uint32_t n = names ? d_.firstChild(names) : 0; n != 0; n = d_[n].next) last = n;
      if (last == 0) continue;
      const std::string name = json::unescape(str(d_.path(last, {"String", "sval"})));
      WriteFunctionMatch m = matchWriteFunction(name, opts_.extraWriteFunctions);
      out.write |= m.write;
      out.sessionAdvisoryLock |= m.sessionAdvisoryLock;
      out.callsSetConfig |= m.setConfig;
      if (!m.write) noteCalledFunction(name, opts_, out);
    }
  }

  // An A_Const (or String/Integer/Boolean node) as text: "42", "serializable", "true".
  std::string constText(uint32_t wrapper) const {
    if (wrapper == 0) return {};
    const uint32_t n = d_.firstChild(wrapper);
    if (n == 0) return {};
    const uint32_t obj = d_[n].key == "A_Const" ? n : wrapper;
    if (uint32_t v = d_.path(obj, {"sval"}); v != 0) {
      return json::unescape(d_[v].type == json::Type::String ? str(v) : str(d_.member(v, "sval")));
    }
    if (uint32_t v = d_.member(obj, "ival"); v != 0) {
      return std::to_string(d_[v].type == json::Type::Number ? num(v) : num(d_.member(v, "ival")));
    }
    if (uint32_t v = d_.member(obj, "boolval"); v != 0) {
      return d_[v].type == json::Type::Bool ? std::string(d_[v].text)
                                            : (flag(v, "boolval") ? "true" : "false");
    }
    if (d_[n].key == "Integer") return std::to_string(num(d_.member(n, "ival")));
    if (d_[n].key == "String") return json::unescape(str(d_.member(n, "sval")));
    return {};
  }

  // DefElem list of transaction modes (BEGIN options, SET TRANSACTION args).
  TxnModes txnModes(uint32_t list) const {
    TxnModes m;
    for (uint32_t e = list ? d_.firstChild(list) : 0; e != 0; e = d_[e].next) {
      const uint32_t def = d_.member(e, "DefElem");
      const std::string_view name = str(d_.member(def, "defname"));
      const std::string value = constText(d_.member(def, "arg"));
      if (name == "transaction_read_only") {
        m.readOnly = value == "1" ? 1 : 0;
      } else if (name == "transaction_isolation") {
        m.isolation = true;
        m.serializable = value == "serializable";
      } else if (name == "transaction_deferrable") {
        m.deferrable = true;
      }
    }
    return m;
  }

  bool tempRelation(uint32_t rangeVar) const {
    return str(d_.member(rangeVar, "relpersistence")) == "t" ||
           str(d_.member(rangeVar, "schemaname")) == "pg_temp";
  }

  void classifyNode(std::string_view type, uint32_t n, Classification& out, int level) const {
    auto readOrWrite = [&out] {
      out.kind = out.write ? StatementKind::Write : StatementKind::Read;
    };
    auto inner = [&](uint32_t wrapper) {
      Classification c;
      classifyWrapped(wrapper, c, level + 1);
      return c;
    };
    if (type == "SelectStmt") {
      out.write = hasKey(n, "intoClause") || hasKey(n, "lockingClause") ||
                  hasKey(n, "InsertStmt") || hasKey(n, "UpdateStmt") || hasKey(n, "DeleteStmt") ||
                  hasKey(n, "MergeStmt");
      out.createsTempTable = tempRelation(d_.path(n, {"intoClause", "rel"}));
      scanFunctions(n, out);
      readOrWrite();
    } else if (type == "InsertStmt" || type == "UpdateStmt" || type == "DeleteStmt" ||
               type == "MergeStmt") {
      out.write = true;
      scanFunctions(n, out);
      readOrWrite();
    } else if (type == "ExplainStmt") {
      bool analyze = false;
      for (uint32_t o = d_.firstChild(d_.member(n, "options")); o != 0; o = d_[o].next) {
        const uint32_t def = d_.member(o, "DefElem");
        const std::string_view name = str(d_.member(def, "defname"));
        if (name != "analyze" && name != "analyse") continue;
        const uint32_t arg = d_.member(def, "arg");
        analyze = arg == 0 || parsePgBool(constText(arg)) != 0;  // unknown spelling: assume on
      }
      if (analyze) absorbEffects(out, inner(d_.member(n, "query")));
      readOrWrite();
    } else if (type == "DeclareCursorStmt") {
      absorbEffects(out, inner(d_.member(n, "query")));
      out.withHoldCursor = (num(d_.member(n, "options")) & kCursorOptHold) != 0;
      readOrWrite();
    } else if (type == "PrepareStmt") {
      out.sqlPrepare = true;
      out.write = inner(d_.member(n, "query")).write;
      out.kind = out.write ? StatementKind::Write : StatementKind::Other;
    } else if (type == "DeallocateStmt") {
      out.sqlDeallocate = true;
    } else if (type == "DiscardStmt") {
      const std::string_view target = str(d_.member(n, "target"));
      out.discard = target == "DISCARD_ALL" || target == "DISCARD_PLANS";
    } else if (type == "CopyStmt") {
      out.write = flag(n, "is_from");
      if (uint32_t q = d_.member(n, "query"); q != 0) absorbEffects(out, inner(q));
      readOrWrite();
    } else if (type == "TransactionStmt") {
      classifyTransaction(n, out);
    } else if (type == "VariableSetStmt") {
      classifyVariableSet(n, out);
    } else if (type == "VariableShowStmt" || type == "FetchStmt") {
      out.kind = StatementKind::Read;
    } else if (type == "ClosePortalStmt") {
      out.kind = StatementKind::Other;
    } else if (type == "ConstraintsSetStmt") {
      out.kind = StatementKind::LocalSet;
    } else {
      // Everything else changes data, schema or server state: the primary's business.
      out.write = true;
      out.kind = StatementKind::Write;
      out.changesFunctions = changesFunctions(type, n);
      out.listen = type == "ListenStmt";
      out.unlisten = type == "UnlistenStmt";
      if (type == "CreateStmt") out.createsTempTable = tempRelation(d_.member(n, "relation"));
      if (type == "CreateTableAsStmt") {
        out.createsTempTable = tempRelation(d_.path(n, {"into", "rel"}));
      }
      if (type == "ViewStmt") out.createsTempTable = tempRelation(d_.member(n, "view"));
      if (type == "CreateSeqStmt") out.createsTempTable = tempRelation(d_.member(n, "sequence"));
      if (type == "CreateFunctionStmt") {
        const uint32_t first = d_.firstChild(d_.member(n, "funcname"));
        const uint32_t next = first ? d_[first].next : 0;
        out.createsTempTable = next != 0 && str(d_.path(first, {"String", "sval"})) == "pg_temp";
      }
    }
  }

  // As the lexer rule (statement_rules.cc): DDL after which the database's volatile
  // functions may differ.
  bool changesFunctions(std::string_view type, uint32_t n) const {
    if (type == "CreateFunctionStmt" || type == "AlterFunctionStmt" || type == "DoStmt" ||
        type == "CreateExtensionStmt" || type == "AlterExtensionStmt" ||
        type == "AlterExtensionContentsStmt") {
      return true;
    }
    if (type != "DropStmt" && type != "RenameStmt" && type != "AlterObjectSchemaStmt" &&
        type != "AlterOwnerStmt") {
      return false;
    }
    for (std::string_view key : {"removeType", "renameType", "objectType"}) {
      const std::string_view o = str(d_.member(n, key));
      if (o == "OBJECT_FUNCTION" || o == "OBJECT_PROCEDURE" || o == "OBJECT_ROUTINE" ||
          o == "OBJECT_EXTENSION" || (type == "DropStmt" && o == "OBJECT_SCHEMA")) {
        return true;
      }
    }
    return false;
  }

  void classifyTransaction(uint32_t n, Classification& out) const {
    const std::string_view kind = str(d_.member(n, "kind"));
    if (kind == "TRANS_STMT_BEGIN" || kind == "TRANS_STMT_START") {
      applyBeginTxnModes(txnModes(d_.member(n, "options")), out);
    } else if (kind == "TRANS_STMT_COMMIT" || kind == "TRANS_STMT_ROLLBACK") {
      out.kind = StatementKind::TxnEnd;
    } else if (kind == "TRANS_STMT_PREPARE") {
      out.kind = StatementKind::TxnEnd;
      out.write = true;
    } else if (kind == "TRANS_STMT_COMMIT_PREPARED" || kind == "TRANS_STMT_ROLLBACK_PREPARED") {
      out.kind = StatementKind::Write;
      out.write = true;
    } else {
      out.kind = StatementKind::Other;  // SAVEPOINT, RELEASE, ROLLBACK TO
    }
  }

  void classifyVariableSet(uint32_t n, Classification& out) const {
    const std::string_view kind = str(d_.member(n, "kind"));
    std::string name = json::unescape(str(d_.member(n, "name")));
    for (char& ch : name) {
      if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch + ('a' - 'A'));
    }
    const bool local = flag(n, "is_local");
    const uint32_t args = d_.member(n, "args");
    if (kind == "VAR_SET_MULTI") {
      if (name == "transaction snapshot") {
        out.kind = StatementKind::LocalSet;
        out.setName = "transaction_snapshot";
        out.write = true;
      } else {
        applySetTxnModes(txnModes(args), name == "session characteristics", out);
      }
      return;
    }
    out.kind = local ? StatementKind::LocalSet : StatementKind::SessionSet;
    if (kind == "VAR_RESET_ALL") {
      out.setName = "all";
      return;
    }
    out.setName = name;
    const uint32_t first = args ? d_.firstChild(args) : 0;
    if (kind != "VAR_SET_VALUE" || first == 0 || d_[first].next != 0) return;
    const std::string value = constText(first);
    if (name == "default_transaction_read_only" || name == "transaction_read_only") {
      const int bv = parsePgBool(value);
      if (bv == 1) out.kind = StatementKind::SetTxnReadOnly;
      if (bv == 0 && name == "transaction_read_only") out.write = true;
    } else if (name == "default_transaction_isolation" || name == "transaction_isolation") {
      if (equalsLower(value, "serializable")) out.write = true;
    }
  }

  const json::Document& d_;
  const ClassifierOptions& opts_;
};

}  // namespace

bool classifyWithParser(std::string_view sql, const ClassifierOptions& opts, Classification& out) {
  const std::string text(sql);  // libpg_query wants a NUL-terminated string
  PgQueryParseResult r = pg_query_parse(text.c_str());
  if (r.error != nullptr || r.parse_tree == nullptr) {
    pg_query_free_parse_result(r);
    return false;
  }
  json::Document d;
  const bool parsed = d.parse(r.parse_tree);
  bool ok = false;
  if (parsed) {
    const uint32_t stmts = d.member(d.root(), "stmts");
    StatementMerger merger;
    TreeRules rules(d, opts);
    for (uint32_t s = stmts ? d.firstChild(stmts) : 0; s != 0; s = d[s].next) {
      Classification c;
      rules.classifyWrapped(d.member(s, "stmt"), c, 0);
      merger.add(std::move(c));
    }
    out = std::move(merger).finish();
    out.usedParser = true;
    ok = true;
  }
  pg_query_free_parse_result(r);  // the tree's string views die here; `out` owns its strings
  return ok;
}

}  // namespace pgswitch::routing
