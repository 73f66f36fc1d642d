// SessionState: what a client has changed in "its" PostgreSQL session, tracked from the
// messages it sends and receives, so that a pooled client can move between servers (or must
// not). Owns the client's settings (startup packet, options, every SET that follows it), the
// ParameterStatus values the client was told, the pin (one writer: pin()), and the session
// SETs whose value must be read back. Pure: fed classifications, tags and statuses; no I/O.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/command_tag.h"
#include "proxy/core/login_facts.h"
#include "proxy/core/shared_params.h"
#include "proxy/session/session_journal.h"
#include "routing/classifier.h"

namespace pgswitch::proxy {


class SessionState {
 public:
  // The startup packet's settings (names as sent; "options" already split into them): the
  // worker's shared copy (Worker::startupSettings), or a copy of the session's own.
  void startShared(std::shared_ptr<const Settings> startup);
  void start(Settings startup) { startShared(std::make_shared<Settings>(std::move(startup))); }
  // The value the client's session has for a setting ("" when never set).
  std::string_view setting(std::string_view lowerName) const;
  const Settings& settings() const;
  // Identifies settings() (never 0): a server last configured for the same hash needs no SET.
  uint64_t settingsHash() const;

  // Pinning: session state that lives only on the current server keeps the client there
  // until it leaves. The first reason is kept. pin(): state no other server can be given
  // (temporary table, advisory lock, WITH HOLD cursor, ...); pinRebuildable(): state the
  // journal can rebuild there after a failover (LISTEN, prepared statements).
  void pin(std::string_view reason);
  void pinRebuildable(std::string_view reason);
  bool pinned() const { return pinned_; }
  const std::string& pinReason() const;
  // The client's session can be moved to another server (after its server was lost): no
  // lasting pin, and the journal followed everything it was given.
  bool movable() const { return !lasting_ && journal().complete(); }
  // Why not (empty when movable).
  std::string unmovableReason() const;
  SessionJournal& journal();  // made on first use
  const SessionJournal& journal() const;
  // A request about to be routed creates state the command tags will not reveal (temporary
  // table, advisory lock, WITH HOLD cursor): the client is pinned once a server is linked.
  void pinOnLink(const char* reason) { pinOnLink_ = reason; }
  void linked();

  // A statement the client sends, classified. sql is its text; reported: the parameters the
  // server reports (their changes arrive as ParameterStatus and need no read-back);
  // carrySets: transaction mode, where an unreported session SET is read back and carried.
  void noteStatement(const routing::Classification& c, std::string_view sql,
                     const ServerParams& reported, bool carrySets);
  // A noted statement was function DDL (CREATE FUNCTION inside a transaction): once that
  // transaction is over, the database's catalog of volatile functions wants a fresh read.
  bool takeFunctionsChanged() { return std::exchange(functionsChanged_, false); }
  // What the relay must do to prepared statements after a CommandComplete.
  enum class TagEffect { None, ForgetServerStatements, ForgetAllStatements };
  TagEffect onCommandTag(protocol::CommandTag tag, bool transactionPooling);
  // A ParameterStatus the server sent while linked: the setting now follows the client.
  // Returns true when application_name changed (routing rules may match differently).
  bool onParameterStatus(std::string_view name, std::string_view value);
  // ReadyForQuery: a SET whose effect was neither reported nor carried pins the client.
  void onReadyForQuery();

  // Session SETs of unreported settings, read back after their transaction (carrySets).
  bool readbackDue() const { return pins_ && !pins_->readback.empty(); }
  const std::string& nextReadback() const { return pins_->readback.front(); }
  // The read-back query answered (ok with value) or failed: the setting follows the client,
  // or (failed) the client is pinned.
  void onReadback(bool ok, std::string_view value);
  // The server went away with read-backs pending: those settings cannot follow the client.
  void readbackLost();

  // The SQL that brings a server from `applied` (what pgswitch SET there) and `reported`
  // to this client's settings; updates `applied`. False (with `badName`) for a setting name
  // that cannot be a PostgreSQL parameter.
  bool configureSql(std::map<std::string, std::string>& applied, const ServerParams& reported,
                    std::string& sql, std::string& badName) const;
  // ParameterStatus messages for every reported value (login) or for those the client has not
  // seen with this value (after moving to another server). At login `reported` is the
  // worker's interned copy of the server's values (ParamsInterner): the client keeps a
  // reference to it, not a map of its own, until a value it is told differs.
  void appendAllParams(SharedParams reported, std::string& out);
  // serverId/generation identify the server and its reported values (ServerConn::id(),
  // paramsGen()): unchanged since the last call, nothing is compared; nor when `digest`
  // (toldDigest(reported), ServerConn::paramsDigest()) is that of what the client was told.
  void appendChangedParams(uint64_t serverId, uint64_t generation, uint64_t digest,
                           const ServerParams& reported, std::string& out);

 private:
  bool carryable(std::string_view name, const ServerParams& reported) const;

  // The settings now, and the startup packet's (DISCARD ALL returns the session to these):
  // one shared copy until the first change (copy-on-write, settingsForWrite()); null: none.
  // Issue 14: a driver's five startup parameters are ~350 bytes, once per idle client.
  std::shared_ptr<const Settings> settings_;
  std::shared_ptr<const Settings> startup_;
  Settings& settingsForWrite();
  mutable uint64_t hash_ = 0;  // of settings_, 0 = recompute
  bool pinned_ = false;
  bool lasting_ = false;  // pinned by state no other server can be given
  bool functionsChanged_ = false;
  // Why the session is pinned, why for good, and the settings still to read back: few
  // sessions have any, so made on first use (issue 14: 88 bytes in every idle client).
  struct Pins {
    std::string reason;
    std::string lastingReason;
    std::vector<std::string> readback;  // setting names still to read back
  };
  std::unique_ptr<Pins> pins_;
  Pins& pins();
  // Null until something is journaled or asked of it: most clients never LISTEN or PREPARE.
  std::unique_ptr<SessionJournal> journal_;
  const char* pinOnLink_ = nullptr;
  // Between two ReadyForQuery: SET tags seen, and how many of them are accounted for by
  // ParameterStatus, by transaction-scoped SETs, or by read-back.
  int setTags_ = 0, reported_ = 0, scoped_ = 0, carried_ = 0;
  // The ParameterStatus values the client has seen: shared with the clients told the same
  // (copied by toldForWrite() before one of them changes).
  SharedParams told_;
  ServerParams& toldForWrite();
  void tell(const std::string& name, std::string_view value);  // told_[name] = value
  uint64_t toldServer_ = 0, toldGeneration_ = 0;  // told_ last compared against these
  uint64_t toldDigest_ = 0;                       // toldDigest(*told_) when told_ is set
};

}  // namespace pgswitch::proxy
