// The ErrorResponses a client session writes itself (as opposed to FATALs that end it):
// a request refused or failed by pgswitch, and work lost with its server.
#pragma once

#include <string>
#include <string_view>

#include "proxy/config/config.h"

namespace pgswitch::proxy {

// One whole ERROR-severity ErrorResponse message.
std::string errorResponse(std::string_view sqlstate, std::string_view message,
                          std::string_view detail = {}, std::string_view hint = {});

// PostgreSQL's own error for a prepared statement whose result columns changed since it was
// prepared (plancache.c, PostgreSQL 15), field for field: pgjdbc re-prepares and retries on
// its routine name, Rails on its message.
void appendResultTypeChanged(std::string& out);

// What was lost with a server, as the client must be told.
enum class LostWork {
  Transaction,     // an open transaction: rolled back, safe to retry (08006 or retry_safe_as)
  CommitInFlight,  // its COMMIT was sent, no answer: outcome unknown (08007)
  Autocommit,      // a statement outside a transaction was running: outcome unknown (08007)
};

// The ErrorResponse for work lost with its server. serverSaid: the FATAL the server sent
// before it went, if any.
std::string lostServerError(const Config& cfg, LostWork what, std::string_view serverSaid);

}  // namespace pgswitch::proxy
