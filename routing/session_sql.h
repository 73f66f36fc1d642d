// The SQL a proxy session must recognise without classifying it (COMMIT in flight, SET/RESET,
// DEALLOCATE, a bare COMMIT/ROLLBACK) and the SQL text of the session's own internal queries.
// Pure functions over text: no I/O, no state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "routing/classifier.h"

namespace pgswitch::routing {

// The first word of the statement: whitespace, comments (including pgswitch hint comments) and
// opening parentheses are skipped. A view into `sql` covering one unquoted identifier as
// PostgreSQL's scanner reads it (it cannot start with a digit), not case-folded; empty when the
// statement does not start with such a word or the text ends inside a comment. Pass the whole
// statement: a prefix cut inside the first word would make "COMMITTED" read as "COMMIT".
std::string_view firstKeyword(std::string_view sql);

// firstKeyword(sql) equals the lower-case keyword `lowerKw`, in any case.
bool firstKeywordIs(std::string_view sql, std::string_view lowerKw);

// The statement is a COMMIT (or its synonym END, or PREPARE TRANSACTION). Tells that a
// transaction's outcome is in flight, so that losing the server now must be reported as
// "outcome unknown" (08007).
bool isCommit(std::string_view sql);

// A simple Query's text may hold more than one statement (something other than blanks follows
// a ';'). Such a Query may end its transaction where isCommit cannot see it ("UPDATE ...;
// COMMIT"), so a transaction that sent one is never replayed.
bool mayHoldSeveralStatements(std::string_view sql);

// Session objects a failover can rebuild on another server (proxy/session/session_journal.h):
// what a single statement creates or drops, and the name (unquoted names folded to lower
// case, as PostgreSQL does; "*" / ALL as the *All kinds).
struct SessionObject {
  enum class Kind { None, Listen, Unlisten, UnlistenAll, Prepare, Deallocate, DeallocateAll };
  Kind kind = Kind::None;
  std::string name;
};
// The first keyword is LISTEN, UNLISTEN, PREPARE or DEALLOCATE (sessionObject() is worth
// asking).
bool mayMakeSessionObject(std::string_view sql);
// kind None: the text is not one of those, or not a single statement (then the journal cannot
// follow it: `unsure` says so when its first keyword was one of them).
SessionObject sessionObject(std::string_view sql, bool& unsure);

// The text is one BEGIN / START TRANSACTION and nothing else: sent outside a transaction and
// lost, it cannot have changed anything (a transaction replay may start with it).
bool isLoneBegin(std::string_view sql);

// The cheap filter in front of the classifier: false means the statement cannot set or create
// session state (SET, RESET, CREATE TEMP ..., DECLARE ... WITH HOLD, session advisory locks),
// so most SELECTs skip classification. True only means "classify it": the first keyword is
// SET, RESET, CREATE or DECLARE, or "advisory", "temp" or "set_config" occurs anywhere in the
// text.
bool mayTouchSessionState(std::string_view sql);

// The statement starts with SET; such a statement is classified even when it would otherwise
// not be (it may change a setting the session must carry or pin for).
bool startsWithSet(std::string_view sql);

// The statement starts with RESET: tells a RESET from a SET of the same setting, since only
// SETs are counted by the pinning heuristic at ReadyForQuery.
bool startsWithReset(std::string_view sql);

// startsWithSet(sql) || startsWithReset(sql), reading the first word once.
bool startsWithSetOrReset(std::string_view sql);

// The statement is an SQL EXECUTE of a prepared statement, whose text routing cannot see.
bool isSqlExecute(std::string_view sql);

// The statement name of "DEALLOCATE [PREPARE] name" with an optional trailing ';', so that
// the proxy can answer it for a statement it prepared under another name on the server.
// An unquoted name is folded to lower case, a double-quoted one is taken as written ("" is a
// quote). nullopt for DEALLOCATE [PREPARE] ALL, an empty name, trailing text, an unterminated
// comment or quote, and every other statement. Comments may stand wherever whitespace may.
std::optional<std::string> deallocateTarget(std::string_view sql);
// False when a statement starting with byte `first` cannot be a DEALLOCATE: it starts with
// neither whitespace, a comment, nor a d. Lets the hot path skip deallocateTarget (and the
// copy of the message it needs) for almost every statement.
bool mayStartDeallocate(char first);

// What a transaction-ending statement that is nothing else asks for.
enum class TxnEnd : uint8_t {
  None,      // not such a statement
  Commit,    // COMMIT or END
  Rollback,  // ROLLBACK or ABORT
};

// Recognises the text that is only COMMIT, END, ROLLBACK or ABORT, optionally followed by WORK
// or TRANSACTION, with whitespace, comments and ';' anywhere between and around the words
// (any case). Outside a transaction the proxy answers such a statement itself (PostgreSQL only
// warns, 25P01), without taking a server. Anything else, including AND CHAIN, is None.
TxnEnd bareTxnEnd(std::string_view sql);

// A setting name that may be written into SQL unquoted (RESET name): ASCII letters, digits,
// '_' and '.', at most 127 bytes (a two-part name of two identifiers of at most 63 bytes).
// Names that fail it are refused rather than quoted: PostgreSQL would not know them either.
bool validSettingName(std::string_view name);

// `v` as an SQL string literal: in single quotes, each quote doubled. Assumes
// standard_conforming_strings = on (backslashes are not escapes), as the SQL lexer does.
std::string quoteLiteral(std::string_view v);

// A session SET that need not pin a pooled client: pgjdbc sends "SET extra_float_digits = 3"
// on connect, and since PostgreSQL 12 every value > 0 prints floats alike (shortest exact);
// 0 or a negative value changes the output, so those still count.
bool isHarmlessSessionSet(const Classification& c, std::string_view sql);

// Appends "SELECT set_config('name', 'value', false);". set_config takes the value the way
// PostgreSQL takes a startup parameter (search_path "a,public" is two schemas), which
// SET name = 'value' would not, so a client's startup parameters are applied with it.
void appendSetConfig(std::string& sql, std::string_view name, std::string_view value);

// Appends "RESET name;" to undo a setting an earlier client of the server applied. `name` is
// written unquoted: it must satisfy validSettingName().
void appendReset(std::string& sql, std::string_view name);

// "SELECT current_setting('name')": reads back a setting PostgreSQL does not report, so a SET
// of it in transaction mode can be carried to the client's next server instead of pinning.
std::string currentSettingQuery(std::string_view name);

// Asked of the primary right after a write transaction (strong, read-your-writes): the WAL
// position a replica must have replayed before it may serve a later read. A synchronous commit
// (anything but synchronous_commit = off) waited until its record was flushed, so the flush
// position covers it; it is the tighter bound, since the insert position also counts records
// of transactions still running, which reach the replicas only with a later flush. An
// asynchronous commit is covered only by the insert position.
inline constexpr std::string_view kCommitLsnQuery =
    "SELECT CASE WHEN current_setting('synchronous_commit') = 'off' "
    "THEN pg_current_wal_insert_lsn() ELSE pg_current_wal_flush_lsn() END";
// A statement of the transaction may make its commit asynchronous whatever the session's
// synchronous_commit says: SET [LOCAL] synchronous_commit, or set_config() naming it.
bool mayMakeCommitAsync(const Classification& c, std::string_view sql);
// The replay watcher's question to a replica (health/replay_watcher.h): its replay position
// as soon as it has replayed `lsn`, or after waiting up to `waitMs` for it, in 1 ms steps on
// the server (so one question covers a whole wait, not one round trip per step). The rows of
// generate_series are checked one by one and LIMIT 1 stops at the first that passes; the CASE
// sleeps before each check but the first, so a replica already there answers at once.
// Prepared once per watcher connection (kReplayWaitPrepare, with a generic plan: the
// statement is asked hundreds of times a second under a write load, and parsing and
// planning it each time cost more than running it); replayWaitQuery is the EXECUTE. It may
// run again on the same connection (a first check that failed after it): DEALLOCATE first.
inline constexpr std::string_view kReplayWaitPrepare =
    "DEALLOCATE ALL; SET plan_cache_mode = force_generic_plan; "
    "PREPARE pgswitch_replay_wait(pg_lsn, int) AS "
    "SELECT pg_last_wal_replay_lsn() FROM generate_series(0, $2) AS g WHERE CASE WHEN g > 0 "
    "THEN pg_sleep(0.001) IS NOT NULL ELSE true END AND "
    "(pg_last_wal_replay_lsn() >= $1 OR g = $2) LIMIT 1";
std::string replayWaitQuery(uint64_t lsn, uint64_t waitMs);
// After a transaction that may have committed asynchronously although the session's setting
// says otherwise (SET LOCAL synchronous_commit, set_config(...) in it).
inline constexpr std::string_view kAsyncCommitLsnQuery = "SELECT pg_current_wal_insert_lsn()";

}  // namespace pgswitch::routing
