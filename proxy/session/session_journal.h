// SessionJournal: the session state a failover can rebuild on another server, kept as what
// made it (docs/failover.md, "Session state"): LISTEN channels, SQL PREPAREd statements and,
// in session mode, protocol-level named prepared statements (their Parse messages). Statement
// names are one namespace, as in PostgreSQL: DEALLOCATE drops a Parse's statement too.
// Settings are not here: SessionState carries them. Pure: fed statements and messages, gives
// the steps that rebuild the state; no I/O.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pgswitch::proxy {

class SessionJournal {
 public:
  // At most this many bytes of statements and messages are kept; beyond, the journal is
  // incomplete (the state can no longer be rebuilt).
  static constexpr size_t kLimit = 1 << 20;

  // A simple-protocol statement the client sent (whole text) that may make such state.
  void statement(std::string_view sql);
  // Session mode: a Parse of a named statement (the whole message) and a Close of one.
  void parse(std::string_view name, std::span<const std::byte> message);
  void closeStatement(std::string_view name);
  // Command tags that drop state wholesale.
  void discardAll();     // DISCARD ALL
  void deallocateAll();  // DEALLOCATE ALL

  // A LISTEN or PREPARE command tag came back: false when the journal had not seen its
  // statement (it arrived in pieces, or inside something else), which makes it incomplete.
  void confirm(std::string_view what);
  // Something was made that the journal could not follow (a multi-statement LISTEN, ...):
  // the state cannot be rebuilt.
  void incomplete(std::string why);
  bool complete() const { return incomplete_.empty(); }
  const std::string& whyIncomplete() const { return incomplete_; }
  bool empty() const { return entries_.empty(); }
  bool listens() const;

  // One step of a rebuild: a SQL statement, or protocol messages (a Parse; the caller ends it
  // with Sync).
  struct Entry {
    enum class Kind { Listen, Prepare, Parse } kind;
    std::string name;   // channel or statement name
    std::string bytes;  // statement text, or the Parse message
  };
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  void drop(Entry::Kind kind, std::string_view name);
  void dropStatement(std::string_view name);  // a PREPARE's or a Parse's
  void add(Entry e);
  void recount();

  std::vector<Entry> entries_;
  size_t bytes_ = 0;
  int unconfirmed_ = 0;  // LISTENs and PREPAREs seen whose command tag has not come back
  std::string incomplete_;
};

}  // namespace pgswitch::proxy
