// RequestRoute: where a transaction-mode client's next request goes, decided before a server
// is asked for. Owns the route of the pending request (primary or replica, tag, the backend
// to avoid), the copy of a lone read kept for one retry elsewhere, and the read-your-writes
// floors (what a read must see: the database's for strong consistency, this client's own for
// read-your-writes). Reads the client's input but never consumes it; classification is
// routing/'s, the choice routing::pickBackend's.
#pragma once

#include <cstddef>
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "protocol/buffer.h"
#include "proxy/config/config.h"
#include "proxy/core/prepared_statements.h"
#include "proxy/core/write_floor.h"
#include "routing/classifier.h"
#include "routing/route_policy.h"
#include "routing/volatile_functions.h"

namespace pgswitch::proxy {

class SessionState;

class RequestRoute {
 public:
  // The tag of the first [[routing.rule]] the session matches ("" = none).
  void resolveSessionTag(const Config& cfg, std::string_view database, std::string_view user,
                         std::string_view applicationName);

  // Classifies the request at the front of `in` (up to its Sync, Flush or Query). False: it
  // has not arrived whole yet. Session state it creates is noted in `state` (pinOnLink).
  // Session mode: the primary, unclassified (the server stays with the session).
  // volatileFns: the database's volatile functions (null: not known yet); a read calling one
  // goes to the primary.
  bool decide(const protocol::ByteQueue& in, const Config& cfg, routing::Classifier& classifier,
              const ClientStatements& names, SessionState& state, uint64_t nowMs,
              const routing::VolatileFunctions* volatileFns = nullptr);
  // What the last decide() saw about functions, for the session to pass on; cleared here.
  struct FunctionNotes {
    bool toPrimary = false;       // a read went to the primary for a volatile function
    bool catalogChanged = false;  // function DDL: the database's catalog needs a fresh read
  };
  FunctionNotes takeFunctionNotes() { return std::exchange(functionNotes_, {}); }
  // The request goes to the primary without classification (login, session mode).
  void toPrimary();
  // A transaction lost with its server is run again: on the primary, as the write it was.
  void replayOnPrimary();
  // The database's write floor (strong consistency), set once the database is known.
  void useFloor(WriteFloor* f) { floor_ = f; }
  // The backend for the decided request: Backend (index), Hold or Refuse. `learned`: replay
  // positions the replicas told sessions since the topology was taken.
  routing::RoutePick pick(const routing::Topology& topo, const Config& cfg,
                          const ReplayPositions& learned, std::span<const int> outstanding,
                          uint64_t random);
  bool forWrite() const { return route().target == routing::Target::Primary; }
  // The picked replica must first show it has replayed this far (RoutePick::verify).
  uint64_t replayNeeded() const { return route().minReplayLsn; }
  // It did not within routing.max_wait_ms: the read goes to the primary.
  void readOnPrimary();

  // Whether the request at the front of `in` starts with a statement that writes: 1, 0, or -1
  // while its first message is incomplete. Query, Parse and Bind of a known statement only.
  // With volatileFns, a read calling one of them counts as a write (decide() would send it to
  // the primary); with session_reads, so does anything sessionReadsTargetFor() keeps there.
  int firstStatementWrites(const protocol::ByteQueue& in, const Config& cfg,
                           routing::Classifier& classifier, const ClientStatements& names,
                           const routing::VolatileFunctions* volatileFns = nullptr);

  // The request at the front of `in` goes on with what an earlier Flush-ended batch left on
  // its server: a Bind of the unnamed statement, an Execute of a suspended portal, a Describe
  // or Close. Only a Query, a Parse or a Bind of a named statement starts afresh. Its first
  // message must be whole.
  bool continuesBatch(const protocol::ByteQueue& in);

  // The replica running a lone read died before a byte of the answer reached the client:
  // the read is put back in front of `in`, to be routed again away from that backend. Once
  // per request; false when it cannot be retried.
  bool retryLostRead(protocol::ByteQueue& in, int lostBackend);
  // The lone read decided last (routed to a replica) has its copy: it can be run again on the
  // primary if the replica finds it writes (Relay::armReadOnlyRetry).
  bool canRetryOnPrimary() const { return hasRetryCopy_; }
  // The replica refused that read with 25006 (or cancelled it, 40001) before a byte of it
  // reached the client: it is put back in front of `in`, and the next request goes to the
  // primary. Once per request; false when there is no copy.
  bool retryOnPrimary(protocol::ByteQueue& in);
  // The pending request failed on this backend before reaching it: route it again, elsewhere.
  void retryElsewhere(int backend);
  // Nothing in flight for a while: the retry copy's memory goes back (issue 14).
  void shrinkIdle();
  // A backend that refused logins for now: the next pick avoids it.
  void avoid(int backend) { avoid_ = backend; }
  // A byte of the answer reached the client: the request can no longer be sent elsewhere.
  void answered() { retryable_ = false; }

  // Strong and read-your-writes: after a write transaction (on the primary: the caller
  // checks), its LSN is asked for.
  bool wantsCommitLsn(const Config& cfg) const;
  // Strong: the commit's ReadyForQuery waits for that LSN (Relay::holdFinalReady).
  bool holdsReady(const Config& cfg) const;
  // The LSN arrived (or could not be read: nullopt). lsnLost: the server went away first.
  void commitLsn(std::optional<uint64_t> lsn, uint64_t nowMs, const Config& cfg);
  void lsnLost(uint64_t nowMs, const Config& cfg) { commitLsn(std::nullopt, nowMs, cfg); }
  // A client pinned to the primary starts another transaction there: it may write.
  void writingAgain() { routedWrite_ = true; }
  // A write committed where its LSN is not tracked (no replica to read it from).
  void untrackedCommit(uint64_t nowMs, const Config& cfg);

 private:
  // The request being routed when it is a read for a replica: its route (whose tag points
  // into `tag`: sessionTag_ may change while it waits), and the copy of a lone read for one
  // retry. Made by the first such request, given back by shrinkIdle() (issue 14: 112 bytes an
  // idle client does not need); none means the default route, the primary.
  struct Pending {
    routing::RouteRequest route;
    std::string tag;
    std::vector<std::byte> retryBuf;
    // The client input's consumedTotal() when the copy was taken (the request at its front):
    // what of the request was never sent (a message waiting for its statement's result
    // shape) is still in the input when the retry starts, and the copy stands in for it.
    uint64_t consumedAtCopy = 0;
  };
  // Replaces what is left of the copied request in `in` by the whole copy.
  void putBackCopy(protocol::ByteQueue& in);
  std::unique_ptr<Pending> pending_;
  Pending& pending();
  static const routing::RouteRequest kNoRoute;
  const routing::RouteRequest& route() const { return pending_ ? pending_->route : kNoRoute; }
  // From [[routing.rule]]: points into the session's Config, which the session holds for
  // its whole life (null: no rule's tag).
  const std::string* sessionTag_ = nullptr;
  // Read-your-writes floor: replicas must have replayed this far. `blind_`: the floor is
  // unknown (reads go to the primary) since blindSinceMs_, for at most kBlindMs.
  uint64_t floorLsn_ = 0;
  uint64_t blindSinceMs_ = 0;
  static constexpr uint64_t kBlindMs = 30000;
  static constexpr uint64_t kStrongBlindMs = 10000;  // everyone's reads: shorter
  WriteFloor* floor_ = nullptr;  // the database's (strong)
  bool blind_ = false;
  bool readOnPrimary_ = false;   // the next pick sends this read to the primary
  bool routedWrite_ = true;      // the current server was chosen for a write
  int avoid_ = -1;
  bool retryable_ = false;           // no answer byte has reached the client yet
  bool retryPending_ = false;        // the next request is a retry (never retried again)
  bool hasRetryCopy_ = false;        // retryBuf holds the request decided last
  bool forcePrimary_ = false;        // the next request is a read that wrote on a replica
  FunctionNotes functionNotes_;
  // The request decided last had function DDL: the next decide() (its transaction is over by
  // then) asks for another read of the catalog.
  bool functionDdlBefore_ = false;
  static constexpr size_t kRetryCopyLimit = 64 * 1024;
};

}  // namespace pgswitch::proxy
