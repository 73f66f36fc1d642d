// Statement classification for read/write routing: is this SQL text safe on a replica, and
// which session or transaction state does it touch. Pure code: no I/O, no clocks, no throws.
// A hand-written lexer decides the common cases; libpg_query settles the rest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pgswitch::routing {

enum class StatementKind {
  Read,              // plain query that may run on a replica (unless `write` says otherwise)
  Write,             // data change, DDL, or anything else that must run on the primary
  TxnBegin,          // BEGIN / START TRANSACTION
  TxnBeginReadOnly,  // BEGIN ... READ ONLY
  TxnEnd,            // COMMIT / END / ROLLBACK / ABORT / PREPARE TRANSACTION
  SetTxnReadOnly,    // SET TRANSACTION READ ONLY, SET SESSION CHARACTERISTICS ... READ ONLY,
                     // SET [default_]transaction_read_only = on
  SessionSet,        // SET [SESSION] x, RESET x, RESET ALL, SET ROLE, ...
  LocalSet,          // SET LOCAL x, SET TRANSACTION (without READ ONLY), SET CONSTRAINTS
  Other,             // SAVEPOINT, RELEASE, ROLLBACK TO, CLOSE, DEALLOCATE, DISCARD, PREPARE of a
                     // read, empty text, unparseable text
};

const char* toString(StatementKind k);

struct Classification {
  enum class Hint { None, Primary, Replica };

  bool write = false;  // must run on the primary
  StatementKind kind = StatementKind::Other;
  // Session-state effects that matter to a pooler (pinning decisions).
  bool createsTempTable = false;     // CREATE TEMP TABLE/VIEW/SEQUENCE, SELECT INTO TEMP, pg_temp.x
  bool listen = false;               // LISTEN
  bool unlisten = false;             // UNLISTEN
  bool sessionAdvisoryLock = false;  // pg_advisory_lock[_shared], pg_try_advisory_lock[_shared]
  bool withHoldCursor = false;       // DECLARE ... WITH HOLD
  bool callsSetConfig = false;       // set_config(...): session state no command tag reveals
  bool sqlPrepare = false;           // PREPARE name AS ...
  bool sqlDeallocate = false;        // DEALLOCATE
  bool discard = false;              // DISCARD ALL / DISCARD PLANS
  // SET/RESET: the GUC name, lower-cased ("search_path", "all" for RESET ALL, "role",
  // "timezone", "transaction_read_only", "default_transaction_read_only", ...). Owned strings,
  // not views, so that a Classification (cached or not) never points into a caller's buffer.
  std::string setName;
  bool multiStatement = false;  // more than one statement in the text
  Hint hint = Hint::None;       // leading /* pgswitch: primary */ or /* pgswitch: replica */
  std::string hintTag;          // leading /* pgswitch: tag=reporting */
  bool usedParser = false;      // the lexer was unsure; libpg_query decided
  // Functions the text calls that the proxy may have to look up (routing/called_functions.h):
  // the last name component, lower-cased, without built-in writers and trusted names, at most
  // kMaxCalledFunctions (calledFunctionsTruncated when there were more). Empty when `write`
  // is set: such a statement goes to the primary anyway. A SELECT calling a function the
  // database's catalog says is volatile is sent to the primary (routing/volatile_functions.h).
  std::vector<std::string> calledFunctions;
  bool calledFunctionsTruncated = false;
  // CREATE/ALTER/DROP FUNCTION, PROCEDURE, ROUTINE or EXTENSION, DROP SCHEMA, DO: the
  // database's function catalog may have changed.
  bool changesFunctions = false;

  bool operator==(const Classification&) const = default;
};

struct ClassifierOptions {
  // Functions that write or must run on the primary, in addition to the built-in list
  // (nextval, setval, pg_advisory_lock, ...). Compared case-insensitively.
  std::vector<std::string> extraWriteFunctions;
  // Functions trusted as read-only although the catalog says volatile: never reported in
  // Classification::calledFunctions. Compared case-insensitively.
  std::vector<std::string> readOnlyFunctions;
  // Entries in the per-Classifier cache; 0 disables caching.
  size_t cacheCapacity = 16384;
};

// Classifies without a cache. Never throws; on internal failure returns write = true.
Classification classifyUncached(std::string_view sql, const ClassifierOptions& opts) noexcept;

class ClassifyCache;

// One per worker thread (not thread-safe). Caches results by XXH3_64bits of the text with its
// number literals folded (routing/cache_key.h: every pgbench -S query is one key) in a
// bounded set-associative CLOCK cache; a key is cached the second time it misses (a
// direct-mapped table of hashes seen once keeps the door), so texts that never repeat (string
// literals that differ each time) cost no insert and evict nothing.
class Classifier {
 public:
  explicit Classifier(ClassifierOptions opts = {});
  ~Classifier();
  Classifier(Classifier&&) noexcept;
  Classifier& operator=(Classifier&&) noexcept;

  // The result stays valid until the next classify() on this Classifier.
  const Classification& classify(std::string_view sql) noexcept;

  const ClassifierOptions& options() const { return opts_; }
  uint64_t cacheHits() const { return hits_; }
  uint64_t cacheMisses() const { return misses_; }

 private:
  ClassifierOptions opts_;
  std::unique_ptr<ClassifyCache> cache_;
  // Hash of a text that missed once, by its low bits. calloc'd: its pages are touched only as
  // slots are written (a worker that sees few texts does not hold 128 KiB of zeros).
  struct FreeDeleter {
    void operator()(uint64_t* p) const noexcept;
  };
  std::unique_ptr<uint64_t[], FreeDeleter> seenOnce_;
  std::string key_;  // the cache key of the text being classified (foldNumbers), reused
  // The last text and its classification: an extended-protocol client sends one text again
  // and again (each Parse, each Bind of a named statement), and comparing it costs less than
  // folding and hashing it. Texts up to kLastMaxBytes are kept.
  static constexpr size_t kLastMaxBytes = 1024;
  std::string lastText_;
  Classification last_;
  bool lastValid_ = false;
  // Longer texts (bulk INSERTs) are filed as written: folding would copy them, and key_
  // would keep the largest one's capacity.
  static constexpr size_t kFoldMaxBytes = 16384;
  size_t seenMask_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

}  // namespace pgswitch::routing
