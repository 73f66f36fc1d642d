// The front door: hints, lexing, splitting into statements, the lexer rules, the parser
// fallback when any statement is uncertain, and the per-worker cache.
#include "routing/classifier.h"

#include <xxhash.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "routing/cache_key.h"
#include "routing/classify_cache.h"
#include "routing/hints.h"
#include "routing/pg_parser_fallback.h"
#include "routing/sql_lexer.h"
#include "routing/statement_rules.h"

namespace pgswitch::routing {
namespace {

Classification primaryOnly() {
  Classification c;
  c.write = true;
  c.kind = StatementKind::Other;
  return c;
}

// The lexer path. Returns false when unsure; `statements` is the number of statements found,
// or -1 when the text did not even lex.
bool classifyWithLexer(std::string_view sql, const ClassifierOptions& opts, Classification& out,
                       int& statements) {
  statements = -1;
  // Reused by each thread: a text the cache has not seen (simple-protocol pgbench makes every
  // text new with its literals) is classified without allocating (issue 14).
  thread_local std::vector<Token> tokens;
  tokens.clear();
  tokens.reserve(64);
  if (!lexSql(sql, tokens)) return false;
  const TokenSeq t(sql, tokens);
  const RuleContext ctx{t, opts};
  StatementMerger merger;
  bool sure = true;
  size_t start = 0;
  int count = 0;
  for (size_t i = 0; i <= t.size(); ++i) {
    if (i < t.size()) {
      if (t[i].kind == TokenKind::Word && t.word(i + 1, t.size(), "atomic") &&
          equalsLower(t.text(i), "begin")) {
        sure = false;  // BEGIN ATOMIC ... END bodies contain ';': leave them to the parser
      }
      if (t[i].kind != TokenKind::Semicolon) continue;
      if (t[i].depth != 0) sure = false;  // ';' inside parentheses (CREATE RULE, or an error)
      if (t[i].depth != 0) continue;
    }
    if (i > start) {
      ++count;
      if (sure) {
        Classification c;
        sure = classifyStatement(ctx, start, i, c, 0);
        merger.add(std::move(c));
      }
    }
    start = i + 1;
  }
  statements = count;
  if (!sure) return false;
  out = std::move(merger).finish();
  return true;
}

Classification classifyImpl(std::string_view sql, const ClassifierOptions& opts) {
  Classification r;
  // PostgreSQL reads a query as a C string; text after a NUL is invisible to this classifier's
  // fallback but might not be to whatever forwards it. Ambiguous: primary.
  if (std::memchr(sql.data(), '\0', sql.size()) != nullptr) {
    r = primaryOnly();
  } else {
    int statements = -1;
    if (!classifyWithLexer(sql, opts, r, statements) && !classifyWithParser(sql, opts, r)) {
      // Neither the lexer rules nor PostgreSQL's grammar accept it: the primary reports the
      // error (and nothing can run on a replica by mistake).
      r = primaryOnly();
      r.usedParser = true;
      r.multiStatement = statements > 1;
    }
  }
  parseLeadingHints(sql, r);
  if (r.write) {  // the primary anyway: nothing to look up, nothing to cache
    r.calledFunctions.clear();
    r.calledFunctionsTruncated = false;
  }
  return r;
}

}  // namespace

const char* toString(StatementKind k) {
  switch (k) {
    case StatementKind::Read:
      return "Read";
    case StatementKind::Write:
      return "Write";
    case StatementKind::TxnBegin:
      return "TxnBegin";
    case StatementKind::TxnBeginReadOnly:
      return "TxnBeginReadOnly";
    case StatementKind::TxnEnd:
      return "TxnEnd";
    case StatementKind::SetTxnReadOnly:
      return "SetTxnReadOnly";
    case StatementKind::SessionSet:
      return "SessionSet";
    case StatementKind::LocalSet:
      return "LocalSet";
    case StatementKind::Other:
      return "Other";
  }
  return "?";
}

Classification classifyUncached(std::string_view sql, const ClassifierOptions& opts) noexcept {
  try {
    return classifyImpl(sql, opts);
  } catch (...) {  // allocation failure: the only thing that can throw here
    return primaryOnly();
  }
}

Classifier::Classifier(ClassifierOptions opts) : opts_(std::move(opts)) {
  for (auto* list : {&opts_.extraWriteFunctions, &opts_.readOnlyFunctions}) {
    for (std::string& f : *list) {
      for (char& ch : f) {
        if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch + ('a' - 'A'));
      }
    }
  }
  if (opts_.cacheCapacity > 0) {
    cache_ = std::make_unique<ClassifyCache>(opts_.cacheCapacity);
    size_t slots = 1;
    while (slots < opts_.cacheCapacity) slots <<= 1;
    seenOnce_.reset(static_cast<uint64_t*>(std::calloc(slots, sizeof(uint64_t))));
    if (!seenOnce_) throw std::bad_alloc();
    seenMask_ = slots - 1;
  }
}

void Classifier::FreeDeleter::operator()(uint64_t* p) const noexcept { std::free(p); }

Classifier::~Classifier() = default;
Classifier::Classifier(Classifier&&) noexcept = default;
Classifier& Classifier::operator=(Classifier&&) noexcept = default;

const Classification& Classifier::classify(std::string_view sql) noexcept {
  if (!cache_) {
    last_ = classifyUncached(sql, opts_);
    return last_;
  }
  if (lastValid_ && sql.size() == lastText_.size() &&
      std::memcmp(sql.data(), lastText_.data(), sql.size()) == 0) {
    ++hits_;
    return last_;
  }
  lastValid_ = false;
  try {
    // Filed by the text with its number literals folded (routing/cache_key.h); a text the
    // fold cannot follow by its own words, as written, and one with a NUL not at all (its
    // words are not what decides it, and a NUL is what the fold writes for a number).
    std::string_view key = sql;
    if (sql.size() <= kFoldMaxBytes && foldNumbers(sql, key_)) {
      key = key_;
    } else if (std::memchr(sql.data(), '\0', sql.size()) != nullptr) {
      last_ = classifyUncached(sql, opts_);
      return last_;
    }
    const uint64_t h = XXH3_64bits(key.data(), key.size());
    if (const Classification* c = cache_->find(h, key.size())) {
      ++hits_;
      last_ = *c;
    } else {
      ++misses_;
      last_ = classifyUncached(sql, opts_);
      // The slot takes the high bits' mix so that it is not the cache's set index.
      uint64_t& seen = seenOnce_[(h ^ (h >> 32)) & seenMask_];
      if (seen == h) {
        cache_->insert(h, key.size(), last_);
      } else {
        seen = h;
      }
    }
    if (sql.size() <= kLastMaxBytes) {
      lastText_.assign(sql);
      lastValid_ = true;
    }
    return last_;
  } catch (...) {
    static const Classification kPrimaryOnly = primaryOnly();
    return kPrimaryOnly;
  }
}

}  // namespace pgswitch::routing
