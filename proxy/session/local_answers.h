// Requests pgswitch answers itself, without a server, and the dropping of a request that
// fails before it reaches one. Each function looks at the front of the client's input and
// either consumes a whole request and appends the answer to `out` (true), or leaves the input
// untouched (false). Pure: ByteQueue in, bytes out.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "protocol/buffer.h"
#include "proxy/core/prepared_statements.h"

namespace pgswitch::proxy {

// Parse+Sync (transaction mode, between transactions) of a new statement name whose text
// some server of this worker already parsed: ParseComplete + ReadyForQuery, and the name is
// recorded. Saves a round trip, and lets a client that prepares synchronously (libpq's
// PQprepare, as pgbench does) go on without waiting for a free server; the statement is
// prepared on a server when the client first uses it.
bool answerParse(protocol::ByteQueue& in, size_t maxMessage, ClientStatements& stmts,
                 const std::function<bool(uint64_t)>& known, std::vector<std::byte>& scratch,
                 std::string& out);

// SQL DEALLOCATE of one of the client's protocol-level statements (transaction mode): the
// server-side twin is pgsw_<hash> and may be shared, so the server cannot run it. psycopg 3
// (libpq < 17) evicts its cache this way, as a simple Query or as an unnamed
// Parse/Bind/[Describe]/Execute/Sync batch. txnStatus goes into the ReadyForQuery.
bool answerDeallocate(protocol::ByteQueue& in, size_t maxMessage, ClientStatements& stmts,
                      char txnStatus, std::vector<std::byte>& scratch, std::string& out);

// COMMIT / ROLLBACK (ABORT, END; optional WORK or TRANSACTION) while the client has no
// transaction: PostgreSQL only warns (25P01). Answering it here also lets a client clean up
// after a failover before any primary is back.
bool answerTxnEnd(protocol::ByteQueue& in, size_t maxMessage, std::string& out);

// Drops the messages of the request at the front of `in` up to the Query, Sync or
// FunctionCall that ends it. Returns true when that end was reached (ReadyForQuery is owed
// now), false when the rest is still to come and must be dropped as it arrives.
bool dropRequest(protocol::ByteQueue& in, size_t maxMessage);

}  // namespace pgswitch::proxy
