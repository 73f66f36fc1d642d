// ServerExchange: the request/response bookkeeping between one client and the server it is
// linked to. One Expect per request sent, popped by the response that completes it; whether
// an extended-protocol batch is open (no Sync yet), whether the server skips to Sync after an
// error, whether COPY runs, whether a COMMIT is in flight; and where pgswitch must add
// responses (ParseComplete/CloseComplete for statements it did not send) or swallow them (its
// own Parse/Close). Pure: fed message types, it says what to do; tests drive it with
// message sequences.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/core/fifo_vector.h"
#include "proxy/core/prepared_statements.h"

namespace pgswitch::proxy {

struct Expect {
  enum class Kind : uint8_t {
    Query,         // simple Query: ends with ReadyForQuery
    FunctionCall,  // ends with ReadyForQuery
    Sync,          // ends with ReadyForQuery
    Parse,         // ParseComplete forwarded
    FakeParse,     // pgswitch sends ParseComplete itself (statement already on the server)
    HiddenParse,   // pgswitch's own Parse: its ParseComplete is swallowed
    Bind,
    Describe,  // ends with RowDescription or NoData
    Execute,   // ends with CommandComplete, EmptyQueryResponse or PortalSuspended
    Close,
    FakeClose,       // pgswitch sends CloseComplete itself (statement kept for others)
    HiddenClose,     // pgswitch's own Close (LRU eviction): swallowed
    HiddenSync,      // pgswitch's own Sync closing a batch the client ended with Flush:
                     // its ReadyForQuery is swallowed
    HiddenDescribe,  // pgswitch's own Describe of a statement, to learn its copy's result
                     // shape: ParameterDescription and RowDescription/NoData are swallowed
    DescribeParams,  // the client's Describe of a statement whose result shape changed: the
                     // ParameterDescription is forwarded (PostgreSQL sends it before its
                     // error), the RowDescription/NoData swallowed; a failing Describe follows
  };
  // Built in place for every message forwarded: the name-less form constructs no string.
  Expect(Kind k, uint64_t h = 0) : kind(k), hash(h) {}
  Expect(Kind k, uint64_t h, std::string name) : kind(k), hash(h), clientName(std::move(name)) {}
  Kind kind;
  // A Bind or Describe pgswitch sent under a name no server has, because this server's copy
  // of the statement has another result shape than the client was told: the server's 26000
  // reaches the client as PostgreSQL's 0A000, and the server skips to Sync as it would.
  // (Next to `kind`: the padding holds it.)
  bool resultTypeChanged = false;
  // How many client messages that end a COPY IN (CopyDone, CopyFail) went before this one:
  // tells, once a CopyInResponse arrives, which later Syncs the server ignores.
  uint32_t copyEnds = 0;
  // The named statement of Parse, HiddenParse, Bind, Describe, HiddenDescribe, DescribeParams
  // and HiddenClose.
  uint64_t hash = 0;
  // Parse: the client's name, forgotten if the Parse fails. Describe of a named statement:
  // the name the answer tells its shape to.
  std::string clientName;
};

// What a server's statements and the client's names look like to the exchange: the client's
// names (undone when the server skipped their messages) and, while linked, the server's
// cache and the worker's stale set.
struct StatementBooks {
  ClientStatements& client;
  ServerStatementCache* server = nullptr;
  StaleStatements* stale = nullptr;
};

class ServerExchange {
 public:
  // A client message forwarded as is (type is its frontend type byte).
  void forwarded(char type);
  // A client message pgswitch rewrote or answers itself: the entries it needs.
  void expect(Expect e);
  void batchOpened() { unsynced_ = true; }
  // pgswitch sent its own Sync to close a batch the client ended with Flush (the next
  // request must go elsewhere).
  void syncedByUs();
  // pgswitch's own Sync is outstanding: nothing of the client's may follow it here.
  bool syncingByUs() const;
  // pgswitch asked the server for a statement's result shape (HiddenDescribe): the client's
  // message that needs it waits for the answer.
  bool askingShape() const { return shapeQuestions_ > 0; }
  // The request whose answer comes next, if it describes a named statement (the client's
  // Describe or pgswitch's HiddenDescribe): its RowDescription or NoData gives the shape.
  const Expect* describing() const {
    if (expect_.empty()) return nullptr;
    const Expect& e = expect_.front();
    return (e.kind == Expect::Kind::Describe || e.kind == Expect::Kind::HiddenDescribe) && e.hash &&
                   !e.resultTypeChanged
               ? &e
               : nullptr;
  }
  // The error that comes next answers a Bind or Describe sent to fail (resultTypeChanged).
  bool failingForShape() const { return !expect_.empty() && expect_.front().resultTypeChanged; }
  // Every response of a batch ended with Flush has arrived; no Sync yet.
  bool answeredUnsynced() const {
    return expect_.empty() && unsynced_ && !discardUntilSync_ && !inCopy_;
  }
  // The server skips everything up to Sync after an extended-protocol error.
  bool discarding() const { return discardUntilSync_; }
  // A COMMIT went out (isCommit false: something else did, which changes nothing). It is in
  // flight until the ReadyForQuery of its request: with requests pipelined ahead of it, that
  // is not the next one.
  void commitSent(bool isCommit) {
    if (isCommit) commitReadies_ = readyForQueriesOwed() + 1;
  }
  bool commitInFlight() const { return commitReadies_ > 0; }

  enum class Verdict {
    Forward,  // send it to the client
    Swallow,  // pgswitch's own request: the client never asked
    Desync,   // the server answered something nobody asked for: drop the server
  };
  struct Response {
    Verdict verdict = Verdict::Forward;
    uint64_t parsed = 0;  // a ParseComplete confirmed this statement hash (0: none)
  };
  // A response from the server (backend type byte). ErrorResponse goes to error() instead.
  Response onResponse(char type);
  // ErrorResponse with this SQLSTATE: undoes what the server will skip (up to Sync).
  void error(std::string_view sqlstate, StatementBooks books);
  // ParseComplete/CloseComplete that pgswitch owes the client now (its own answers to
  // requests the server never saw), appended to out.
  // Called before every message to the client: inline while nothing is owed.
  void appendFakes(std::string& out, ClientStatements& client) {
    if (!expect_.empty() && answeredByUs(expect_.front().kind)) appendOwedFakes(out, client);
  }
  // A Close of a client name is waiting for its CloseComplete.
  bool closePending() const;

  // Nothing owed, no batch open, no COPY, not skipping: the server can be let go.
  bool idle() const;
  // Nothing owed and no batch open: pgswitch may answer a request itself without reordering.
  bool quiet() const { return expect_.empty() && !unsynced_; }
  bool owed() const { return !expect_.empty() || unsynced_; }
  // Extended-protocol messages went since the last Sync.
  bool batchOpen() const { return unsynced_; }
  // A Flush (the client's or pgswitch's) went after the last request that has an answer:
  // asking again would add nothing.
  bool flushAsked() const { return flushAsked_; }
  void flushSent() { flushAsked_ = true; }
  // A ReadyForQuery-ending request (Query, Sync, FunctionCall) is outstanding.
  bool owesReadyForQuery() const;
  // How many: a pipelining client waits for one ReadyForQuery per request.
  int readyForQueriesOwed() const;
  bool inCopy() const { return inCopy_; }
  // The server is in COPY IN and nothing that ends it has been sent: what the client sends
  // now is copy data, ignored (Sync, Flush) or discarded with an error (anything else).
  bool copyInOpen() const { return copyInOpen_; }
  size_t pending() const { return expect_.size(); }
  // Forgets everything (the server was released or lost).
  void reset();
  // Nothing owed: the queue gives its block back (a client idle for a while).
  void shrink() { expect_.shrink(); }

 private:
  // The responses pgswitch sends the client itself (the server never saw their requests).
  static bool answeredByUs(Expect::Kind k) {
    return k == Expect::Kind::FakeParse || k == Expect::Kind::FakeClose;
  }
  void appendOwedFakes(std::string& out, ClientStatements& client);
  void push(Expect::Kind k, uint64_t h = 0);
  // Removes the entries at [at, at + n) (popped, skipped after an error, or ignored in COPY).
  void drop(size_t at, size_t n = 1);
  // A message that reaches a server in COPY IN: Sync and Flush are ignored there (libpq
  // sends a Sync behind an extended-protocol COPY FROM STDIN), CopyDone and CopyFail end the
  // copy, and any other message ends it with an error and is itself discarded. True: the
  // message has no answer of its own.
  bool consumedByCopy(char type);
  // CopyInResponse: the Syncs already sent behind the COPY are ignored, and a message sent
  // there that is not copy data ended the copy and was discarded; their entries go.
  void copyInStarted();
  FifoVector<Expect> expect_;
  bool unsynced_ = false;          // extended-protocol messages sent since the last Sync
  bool discardUntilSync_ = false;  // the server skips messages until Sync after an error
  bool inCopy_ = false;
  bool flushAsked_ = false;  // see flushAsked()
  bool copyInOpen_ = false;  // in COPY IN, and no message that ends it has been sent yet
  uint32_t copyEnds_ = 0;    // CopyDone and CopyFail messages sent (Expect::copyEnds)
  int commitReadies_ = 0;  // ReadyForQuery messages until the COMMIT sent last is answered
  int shapeQuestions_ = 0;  // HiddenDescribe entries in expect_
};

}  // namespace pgswitch::proxy
