// The admin console (the virtual database "pgswitch"): one simple-Query string in, the wire
// messages that answer it out. Commands are objects in a table; what a command may change in
// the running proxy goes through ConsoleActions, so everything here is pure and unit-tested.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "proxy/core/stats.h"

namespace pgswitch::proxy {

inline constexpr std::string_view kPgswitchVersion = "0.1.0";

// What SET answers: error "" when applied. badValue: the value itself is not allowed (the
// console answers 22023 invalid_parameter_value, as PostgreSQL does for SET work_mem = -1);
// otherwise the proxy refused (55000).
struct SetResult {
  std::string error;
  bool badValue = false;
};

// What the console can ask the running proxy to do; implemented by proxy/, faked in tests.
// Each returns an empty string on success or a human-readable error.
class ConsoleActions {
 public:
  virtual ~ConsoleActions() = default;
  virtual std::string pause(std::string_view db) = 0;  // "" = all
  virtual std::string resume(std::string_view db) = 0;
  virtual std::string reload() = 0;
  virtual std::string enableBackend(std::string_view name) = 0;
  virtual std::string disableBackend(std::string_view name) = 0;
  virtual std::string drainBackend(std::string_view name) = 0;
  virtual std::string attachBackend(std::string_view name) = 0;
  virtual std::string promoteBackend(std::string_view name) = 0;
  virtual std::string switchoverTo(std::string_view name) = 0;
  // key is the qualified name shown by SHOW CONFIG ("pool.pool_size"), already checked to
  // exist and to be reloadable; value is the text as typed (quotes removed).
  virtual SetResult set(std::string_view key, std::string_view value) = 0;
  virtual std::string shutdown(bool wait) = 0;
};

struct ConsoleReply {
  std::string messages;     // complete wire messages, without the final ReadyForQuery
  bool closeAfter = false;  // SHUTDOWN succeeded: close the session after writing
};

// One simple Query string. Several ';'-separated commands are answered in turn; as in
// PostgreSQL, the first error ends the string (the rest is not run). Keywords are
// case-insensitive; names may be bare or double-quoted, values bare or single-quoted.
// Admin: every command; Stats (server.stats_users): SHOW and HELP, anything else 42501.
enum class ConsoleRole : uint8_t { Admin, Stats };
ConsoleReply runConsole(std::string_view query, const Snapshot& snap, ConsoleActions& actions,
                        ConsoleRole role = ConsoleRole::Admin);

// The command table as HELP shows it (syntax, description), in table order.
struct ConsoleCommandHelp {
  std::string_view syntax;
  std::string_view help;
};
std::span<const ConsoleCommandHelp> consoleHelp();

}  // namespace pgswitch::proxy
