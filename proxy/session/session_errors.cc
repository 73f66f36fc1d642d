// Session ErrorResponses, built with protocol/'s builder.
#include "proxy/session/session_errors.h"

#include "protocol/builder.h"

namespace pgswitch::proxy {

std::string errorResponse(std::string_view sqlstate, std::string_view message,
                          std::string_view detail, std::string_view hint) {
  std::string err;
  protocol::appendError(err, protocol::ErrorSpec{"ERROR", sqlstate, message, detail, hint});
  return err;
}

std::string lostServerError(const Config& cfg, bool commitInFlight, std::string_view serverSaid) {
  std::string_view code = commitInFlight ? "08007" : "08006";
  if (!commitInFlight && !cfg.failover.retrySafeAs.empty()) code = cfg.failover.retrySafeAs;
  std::string detail =
      "pgswitch keeps this connection usable; the server connection behind it ended";
  if (!serverSaid.empty()) detail += " (server said " + std::string(serverSaid) + ")";
  return errorResponse(code,
                       commitInFlight
                           ? "connection to the server lost while COMMIT was in progress: the "
                             "transaction may or may not have committed"
                           : "connection to the server lost (failover?): the transaction was "
                             "rolled back and is safe to retry",
                       detail);
}

}  // namespace pgswitch::proxy
