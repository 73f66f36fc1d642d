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

// The ErrorResponse for work lost with its server: 08007 when a COMMIT was in flight (the
// outcome is unknown), else 08006 or failover.retry_safe_as (nothing took effect).
// serverSaid: the FATAL the server sent before it went, if any.
std::string lostServerError(const Config& cfg, bool commitInFlight, std::string_view serverSaid);

}  // namespace pgswitch::proxy
