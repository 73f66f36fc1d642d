// Relay: moves one client's messages to its linked server and the answers back, by byte
// range. Only the 5-byte header of most messages is read; a message is assembled only when
// pgswitch must look inside (ReadyForQuery, ParameterStatus, CommandComplete, ErrorResponse,
// a Query whose statement may change session state, and in transaction mode the statement
// names of Parse/Bind/Describe/Close). Everything else is forwarded as slices of the chunks it
// was read into, even before the whole message arrived, so a 1 GB row never sits in
// pgswitch's memory. Feeds the ServerExchange, the StatementMap and the SessionState; tells
// the session, by the Event it returns, what it cannot decide itself.
#pragma once

#include <cstddef>
#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "protocol/buffer.h"
#include "proxy/config/config.h"
#include "proxy/core/conn.h"
#include "proxy/core/server_conn.h"
#include "proxy/core/worker.h"
#include "proxy/session/readonly_retry.h"
#include "proxy/session/server_exchange.h"
#include "proxy/session/session_state.h"
#include "proxy/session/statement_map.h"
#include "proxy/session/txn_replay.h"

namespace pgswitch::proxy {

class Relay {
 public:
  Relay(Worker& w, const Config& cfg, Conn& client, SessionState& state);

  struct Event {
    enum class Kind {
      Ok,
      Terminate,    // the client said goodbye
      ClientError,  // the client broke the protocol: FATAL 08P01 with `message`
      ServerError,  // the server broke the protocol: drop it, FATAL 08P01 with `message`
      ServerFatal,  // the server said FATAL (`message`: its code and text): abandon it
      // A lone read wrote on a replica (25006) before any byte of its answer reached the
      // client: its error and ReadyForQuery were dropped; run it again on the primary.
      RetryOnPrimary,
    };
    Kind kind = Kind::Ok;
    std::string message;
    bool answeredLocally = false;         // the client may be between transactions now
    bool requestEnded = false;            // stopped after a Query or Sync (stopAtRequestEnd)
    bool recoveryConflict = false;        // RetryOnPrimary: the replica said 40001, not 25006
    bool applicationNameChanged = false;  // routing rules may match differently
  };

  // backend: the slot its counters are kept under (looked up per use: the worker's counter
  // array grows when a new backend appears).
  void link(ServerConn& s, int backend);
  // The client's cancel slot: told that its requests are answered before the ReadyForQuery
  // that says so reaches the client (a cancel the client sends after it must be dropped).
  void setCancelSlot(CancelSlot* slot) { cancelSlot_ = slot; }
  void unlink();
  // The server was lost: as unlink(), and what was left of a client message half-forwarded
  // to it is dropped as it arrives (it must not be read as a new message). The replay log
  // is kept: the session replays it or drops it (replay().stop()).
  void unlinkLost();
  ServerConn* server() const { return server_; }
  // Strong consistency: the ReadyForQuery that ends a write transaction (status idle, nothing
  // else owed) is kept back, with what came before it unflushed, until releaseReady(): the
  // session first learns the commit's LSN, so no other client can read before the floor
  // moves. Set for each link.
  void holdFinalReady(bool on) { holdReady_ = on; }
  bool readyHeld() const { return readyHeld_; }
  // Sends the held ReadyForQuery (also after the server was lost: the commit was done).
  void releaseReady();
  // The request about to be sent to this replica is a lone autocommit read with a retry copy:
  // a 25006 before any answer byte reached the client becomes Event::Kind::RetryOnPrimary.
  void armReadOnlyRetry() { busy().retry.arm(); }

  // Client bytes to the linked server (and the answers pgswitch owes, to the client).
  Event toServer();
  // toServer() stops after each complete Query or Sync that has more input behind it, so the
  // caller can look at the next request first.
  void stopAtRequestEnd(bool on) { stopAtRequestEnd_ = on; }
  // Server bytes to the client.
  Event toClient();

  // Between transactions: nothing owed, nothing half-forwarded, transaction status idle.
  bool idle() const;
  // The transaction that just ended may have committed asynchronously (a SET of
  // synchronous_commit in it): its LSN is the insert position. Cleared by the call.
  bool takeAsyncCommitPossible() { return std::exchange(asyncCommitPossible_, false); }
  // Outside a transaction, a batch the client ended with Flush has been answered in full: the
  // next request may still go elsewhere once closeBatch() ends it.
  bool batchAwaitsSync() const;
  // Ends that batch with pgswitch's own Sync (its ReadyForQuery is not forwarded).
  void closeBatch();
  // A batch is open (no Sync yet) with answers owed that the server keeps until a Sync or a
  // Flush: asks for them with pgswitch's own Flush (unless one went since the last request),
  // so that the batch can be closed (batchAwaitsSync) and what the client sent next routed
  // afresh.
  void flushBatch();
  // The next client message starts a request: nothing owed or half-sent, no transaction.
  bool atRequestStart() const;
  // toServer() stopped at a message that needed a statement's result shape, and the server
  // has answered: the client's input can go on.
  bool shapeAnswered() const { return heldForShape_ && !view().exchange.askingShape(); }
  // toServer() stopped there: the front of the client's input is in the middle of a request.
  bool heldForShape() const { return heldForShape_; }
  // Nothing of the client's has been sent since the server was last idle.
  bool sentNothing() const { return reqStartUs_ == 0; }
  // A server message is half-forwarded: the client cannot be given anything else now.
  bool midMessage() const { return s2cPassthrough_ > 0; }
  // The client has sent part of a message (half-forwarded, half-buffered or half-dropped) and
  // owes the rest.
  bool clientMidMessage();
  // A client message is partly forwarded: the next client bytes are its rest.
  bool clientHalfSent() const { return c2sPassthrough_ > 0 || skip_ > 0; }
  const ServerExchange& exchange() const { return view().exchange; }
  StatementMap& statements() { return statements_; }

  // Transaction replay (txn_replay.h). From a request start on the primary (or in session
  // mode), with the server configured: what the client sends and gets is recorded (or, after
  // replay(), compared) until the server is idle again.
  void recordTransaction();
  const TxnReplay& replay() const { return view().replay; }
  // The same, to replay or stop it (failover_replay.cc).
  TxnReplay& replayLog() { return busy().replay; }
  // The server was lost (unlinkLost): what it ran can be run again elsewhere — it was inside a
  // transaction block, no COMMIT was in flight, and no message was half-sent either way.
  bool replayable(char txnStatus, bool commitInFlight) const;
  // The replay is given up: the replayed bytes not read again are dropped from the client's
  // input, and nothing is recorded until the next link.
  void dropReplay();
  // No server and nothing owed: what only requests in flight use goes back (issue 14).
  void shrinkIdle();

  // Answers the request at the front of the client's input with `err` (a whole ErrorResponse)
  // instead of running it; its remaining messages are dropped as they arrive, then
  // ReadyForQuery.
  void failRequest(std::string_view err);
  // Drops what is left of a failed request; false while its end has not arrived.
  bool dropFailedRequest();
  bool dropping() const { return dropping_; }
  // `err` now for the request in progress, then ReadyForQuery: at once when the request has
  // ended (ended), else once the rest of it has arrived and been dropped. Used when its
  // server was lost with answers owed.
  // more: further requests the client pipelined behind it, already sent to the lost server:
  // each gets `err` and a ReadyForQuery too (the client waits for one per request).
  void answerError(std::string_view err, bool ended, int more = 0);
  // Transaction mode, between transactions: requests pgswitch answers itself.
  bool answerLocally(char txnStatus);

 private:
  void unlinkKeepingReplay();
  void restartReplayWhenIdle();
  void forwardWhole(size_t total, char type);
  // Transaction mode, inside toServer: a DEALLOCATE of a statement the client prepared at the
  // front of its input, answered here (answerDeallocate) when the server owes nothing before
  // it and the transaction has not failed.
  bool deallocateAnswered(char txn, Event& ev);
  void noteStatement(std::string_view sql);
  void onReadyForQuery(char status);
  void countReady(char status);
  // Up to 256 bytes of the Query text at the front (what is enough to tell a COMMIT or SET),
  // copied into the caller's `buf` (on its stack: not 256 bytes in every session).
  using HeadBuf = std::array<char, 256>;
  std::string_view queryHead(size_t total, HeadBuf& buf);
  BackendCounters& counters() { return worker_.counters(backend_); }
  // The worker's buffers (Worker::SessionScratch): filled and emptied within one call.
  Worker::SessionScratch& scratch() { return worker_.scratch(); }
  // Empties the two strings at the start of a pass: bytes an earlier pass (of any session)
  // left there when it stopped early (an invalid message) must not reach this client.
  void emptyScratch();

  Worker& worker_;
  const Config& cfg_;
  Conn& client_;
  SessionState& state_;
  // The client may move between servers at request boundaries (transaction mode, or session
  // mode with session_reads): statements are mapped per server, SETs carried.
  const bool transactionPooling_;
  const bool sessionReads_;  // session mode with session_reads (Config::sessionReads)
  int backend_ = -1;
  ServerConn* server_ = nullptr;
  StatementMap statements_;
  // What only requests in flight use: the replies owed, the read-only retry's held answer,
  // the transaction's replay log. Made at the first request, dropped by shrinkIdle (issue 14:
  // ~170 bytes an idle client does not carry).
  struct Busy {
    explicit Busy(size_t replayLimit) : replay(replayLimit) {}
    ServerExchange exchange;
    ReadOnlyRetry retry;
    TxnReplay replay;
  };
  std::unique_ptr<Busy> busy_;
  Busy& busy() {
    if (!busy_) makeBusy();
    return *busy_;
  }
  void makeBusy();
  // Read-only: the relay's, or one that says nothing is in flight.
  static const Busy& nothingInFlight();
  const Busy& view() const { return busy_ ? *busy_ : nothingInFlight(); }
  size_t c2sPassthrough_ = 0;  // bytes of the current client message still to forward
  size_t s2cPassthrough_ = 0;
  bool dropping_ = false;    // a failed request: its messages are dropped up to Sync/Query
  bool stopAtRequestEnd_ = false;
  bool asyncCommitPossible_ = false;  // noteStatement saw a SET of synchronous_commit
  bool holdReady_ = false;
  bool readyHeld_ = false;
  bool heldForShape_ = false;  // toServer() stopped for ServerExchange::askingShape()
  CancelSlot* cancelSlot_ = nullptr;
  size_t skip_ = 0;          // bytes of a client message whose server was lost, to drop
  // When the first request since the server was last idle was sent (latency; 0: none yet).
  uint64_t reqStartUs_ = 0;
};

}  // namespace pgswitch::proxy
