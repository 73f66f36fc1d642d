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

void appendResultTypeChanged(std::string& out) {
  protocol::ErrorSpec e{"ERROR", "0A000", "cached plan must not change result type"};
  e.file = "plancache.c";
  e.line = "722";
  e.routine = "RevalidateCachedQuery";
  protocol::appendError(out, e);
}

std::string lostServerError(const Config& cfg, LostWork what, std::string_view serverSaid) {
  const bool safe = what == LostWork::Transaction;
  std::string_view code = safe ? "08006" : "08007";
  if (safe && !cfg.failover.retrySafeAs.empty()) code = cfg.failover.retrySafeAs;
  std::string detail =
      "pgswitch keeps this connection usable; the server connection behind it ended";
  if (!serverSaid.empty()) detail += " (server said " + std::string(serverSaid) + ")";
  std::string_view message;
  switch (what) {
    case LostWork::Transaction:
      message =
          "connection to the server lost (failover?): the transaction was rolled back and is "
          "safe to retry";
      break;
    case LostWork::CommitInFlight:
      message =
          "connection to the server lost while COMMIT was in progress: the transaction may or "
          "may not have committed";
      break;
    case LostWork::Autocommit:
      message =
          "connection to the server lost while a statement outside a transaction block was in "
          "progress: it may or may not have taken effect";
      break;
  }
  return errorResponse(code, message, detail);
}

}  // namespace pgswitch::proxy
