// StatementMap: a transaction-mode client's protocol-level prepared statements across pooled
// servers. Client names are the client's own; on servers every statement is named after the
// hash of its text (pgsw_<hash>) and prepared lazily on whichever server the client lands on.
// Rewrites the client's Parse/Bind/Describe/Close to those names and records in the
// ServerExchange which responses pgswitch adds or swallows, so the client sees the response
// stream of one PostgreSQL session. No sockets: bytes for the server are appended to a string.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/buffer.h"
#include "proxy/core/prepared_statements.h"
#include "proxy/session/server_exchange.h"

namespace pgswitch::proxy {

// The server side of a rewrite: where its bytes go and what that server has prepared.
struct StatementTarget {
  std::string& toServer;
  ServerStatementCache& cache;
  StaleStatements& stale;
  size_t capacity;  // max_prepared_statements per server connection
  ServerExchange& exchange;
  // Where a message spanning chunks is assembled (the worker's, shared by its sessions).
  std::vector<std::byte>& scratch;
  char txnStatus = 'I';  // the server's, from its last ReadyForQuery
};

class StatementMap {
 public:
  enum class Outcome {
    Forward,     // not a named statement of this client: forward the message unchanged
    Rewritten,   // replaced (or answered later by pgswitch): the caller drops the message
    Partial,     // Bind: its head was replaced; the caller drops total - passthrough bytes
                 // and forwards the last `passthrough` (the parameters) by reference
    Invalid,     // malformed message (error says why)
    AwaitShape,  // Bind/Describe: pgswitch asked the server for its copy's result shape
                 // first; the caller sends what it appended, leaves the message in place
                 // and comes back to it once ServerExchange::askingShape() is over
  };
  struct Result {
    Outcome outcome = Outcome::Forward;
    size_t passthrough = 0;
    const char* error = nullptr;
    // The text of the statement the message prepares or runs, when known (valid until the
    // client's input is consumed further; empty for Close). The caller looks for session
    // state in it.
    std::string_view sql;
  };
  // Each looks at the message of `total` bytes at the front of `in` (Bind: at least its
  // names) and leaves consuming it to the caller.
  Result parse(protocol::ByteQueue& in, size_t total, const StatementTarget& t);
  Result bind(protocol::ByteQueue& in, size_t total, const StatementTarget& t);
  Result describe(protocol::ByteQueue& in, size_t total, const StatementTarget& t);
  Result close(protocol::ByteQueue& in, size_t total, const StatementTarget& t);

  ClientStatements& names() { return names_; }

 private:
  bool onServer(uint64_t h, const StatementTarget& t);
  // Whether the server's copy of a client's statement may answer for it: the client was told
  // no shape, or the copy's is the same (or the transaction failed: the server refuses it
  // anyway, 25P02). Changed: the copy's was learned later, so the columns changed since the
  // client was told (PostgreSQL's 0A000). Outdated: learned earlier, so the copy predates a
  // change the client was told of (it is prepared again). Unknown: never described here.
  enum class Shape { Same, Changed, Outdated, Unknown };
  static Shape shapeOnServer(const ClientStatement& cs, const StatementTarget& t);
  // Makes sure the server has a usable copy of cs (prepared again if it was outdated) and
  // says whether it may run: never Outdated.
  Shape checkShape(const ClientStatement& cs, const StatementTarget& t);
  // Asks for the shape of the server's copy of h: pgswitch's own Describe, and a Flush.
  static Result askShape(uint64_t h, const StatementTarget& t);
  void prepare(uint64_t h, std::string_view tail, Expect::Kind kind, std::string_view clientName,
               const StatementTarget& t);

  ClientStatements names_;
};

}  // namespace pgswitch::proxy
