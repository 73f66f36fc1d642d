// The lexer path: classifies one statement from its tokens, or says it is unsure (and the
// caller hands the whole text to libpg_query). Split in two files along the grammar:
// statement_rules.cc (queries, DML, DDL, utility) and txn_rules.cc (transaction control, SET).
#pragma once

#include <cstddef>
#include <string>

#include "routing/classifier.h"
#include "routing/sql_lexer.h"

namespace pgswitch::routing {

struct RuleContext {
  const TokenSeq& t;
  const ClassifierOptions& opts;
};

// Classifies tokens [b, e) as one statement into `out` (which starts default-constructed).
// Returns false when unsure; `out` is then meaningless. `level` bounds nesting (WITH bodies,
// EXPLAIN, PREPARE, DECLARE, COPY (query)).
bool classifyStatement(const RuleContext& c, size_t b, size_t e, Classification& out, int level);

// txn_rules.cc: BEGIN, START, COMMIT, END, ABORT, ROLLBACK, SAVEPOINT, RELEASE.
bool classifyTransactionControl(const TokenSeq& t, size_t b, size_t e, Classification& out);
// txn_rules.cc: SET ... and RESET ...
bool classifySet(const TokenSeq& t, size_t b, size_t e, Classification& out);
bool classifyReset(const TokenSeq& t, size_t b, size_t e, Classification& out);

// Transaction modes of BEGIN / START TRANSACTION / SET TRANSACTION / SET SESSION
// CHARACTERISTICS, shared by the lexer rules and the parser fallback.
struct TxnModes {
  int readOnly = -1;  // -1 unspecified, 1 READ ONLY, 0 READ WRITE
  bool isolation = false;
  bool serializable = false;
  bool deferrable = false;
};
// BEGIN: TxnBegin / TxnBeginReadOnly. SERIALIZABLE cannot run on a hot standby and neither can
// an explicit READ WRITE transaction, so both set `write`.
void applyBeginTxnModes(const TxnModes& m, Classification& out);
// SET TRANSACTION (session = false) or SET SESSION CHARACTERISTICS AS TRANSACTION (true):
// SetTxnReadOnly for READ ONLY, else LocalSet / SessionSet; setName is the GUC that changes
// ([default_]transaction_read_only / _isolation / _deferrable).
void applySetTxnModes(const TxnModes& m, bool session, Classification& out);

// Merges the statements of one query string: write and effects OR-ed; the kind is the last
// transaction/SET kind if any statement has one, else Write, Read, Other in that order; setName
// is the last one seen.
class StatementMerger {
 public:
  void add(Classification&& s);
  int count() const { return count_; }
  Classification finish() &&;

 private:
  Classification acc_;
  int count_ = 0;
  bool hasSpecial_ = false, anyRead_ = false, anyWrite_ = false;
  StatementKind special_ = StatementKind::Other;
};

// 1 / 0 for PostgreSQL's common boolean spellings (on/true/yes/t/y/1, off/false/no/f/n/0),
// -1 for anything else. Case-insensitive.
int parsePgBool(std::string_view v);

// OR-s the write flag and the session-state flags of `from` into `to`.
void absorbEffects(Classification& to, const Classification& from);

}  // namespace pgswitch::routing
