// Pieces shared by the console's source files (console_commands.cc: parsing, dispatch and
// the commands that act; console_show.cc: the SHOW commands; console_config.cc: the
// SHOW CONFIG table). Not for use outside the console.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/admin/console_commands.h"
#include "proxy/core/stats.h"

namespace pgswitch::proxy::console {

// SQLSTATEs the console answers with.
inline constexpr std::string_view kSyntaxError = "42601";
inline constexpr std::string_view kUndefinedObject = "42704";
inline constexpr std::string_view kNotInPrerequisiteState = "55000";
inline constexpr std::string_view kInvalidParameterValue = "22023";
inline constexpr std::string_view kInvalidCatalogName = "3D000";
inline constexpr std::string_view kInsufficientPrivilege = "42501";

struct Token {
  enum class Kind { Word, QuotedIdent, String, Equals, Comma, Semicolon };
  Kind kind = Kind::Word;
  std::string text;                              // quotes removed, doubled quotes undone
  bool isKeyword(std::string_view upper) const;  // a bare word equal ignoring case
  bool isName() const { return kind == Kind::Word || kind == Kind::QuotedIdent; }
};

struct ParseError {
  std::string message;
};

// Splits the query into tokens; comments (-- and /* */) and whitespace are dropped.
// Fails only on an unterminated quote or comment.
bool tokenize(std::string_view query, std::vector<Token>& out, ParseError& err);

enum class Outcome { Ok, Error, Close };

struct Context {
  std::span<const Token> args;  // the tokens after the command's own keywords
  const Snapshot& snap;
  ConsoleActions& actions;
  std::string& out;
};

using Handler = Outcome (*)(const Context&);

struct Command {
  std::string_view words;  // the keywords that select it, upper case: "SHOW BACKENDS"
  std::string_view syntax;
  std::string_view help;
  Handler handler;
  bool readOnly = false;  // only looks: stats_users may run it
};

// ErrorResponse with severity ERROR (the session stays usable); returns Outcome::Error.
Outcome fail(std::string& out, std::string_view sqlstate, std::string_view message,
             std::string_view hint = {}, std::string_view detail = {});

// 42601 unless the command got no arguments.
bool noArgs(const Context& c, std::string_view command);

// A text result set built row by row, then written as RowDescription, DataRow*,
// CommandComplete "SHOW".
class ResultSet {
 public:
  struct Col {
    std::string_view name;
    uint32_t typeOid;
  };
  static constexpr uint32_t kText = 25, kInt4 = 23, kInt8 = 20, kBool = 16;

  explicit ResultSet(std::vector<Col> cols) : cols_(std::move(cols)) {}
  ResultSet& row() {
    rows_.emplace_back();
    return *this;
  }
  ResultSet& add(std::string_view v) { return cell(std::string(v)); }
  ResultSet& add(const char* v) { return cell(std::string(v)); }
  ResultSet& add(const std::string& v) { return cell(v); }
  ResultSet& add(uint64_t v) { return cell(std::to_string(v)); }
  ResultSet& add(int64_t v) { return cell(std::to_string(v)); }
  ResultSet& add(int v) { return cell(std::to_string(v)); }
  ResultSet& add(bool v) { return cell(std::string(v ? "t" : "f")); }
  ResultSet& null() { return cell(std::nullopt); }
  void write(std::string& out, std::string_view tag = "SHOW") const;

 private:
  ResultSet& cell(std::optional<std::string> v) {
    rows_.back().push_back(std::move(v));
    return *this;
  }
  std::vector<Col> cols_;
  std::vector<std::vector<std::optional<std::string>>> rows_;
};

// Snapshot::backendNames without removed backends and counter slots: the names commands
// accept.
std::vector<std::string> liveBackendNames(const Snapshot& snap);

// SHOW commands (console_show.cc).
Outcome showBackends(const Context& c);
Outcome showPools(const Context& c);
Outcome showClients(const Context& c);
Outcome showServers(const Context& c);
Outcome showStats(const Context& c);
Outcome showConfig(const Context& c);
Outcome showEvents(const Context& c);
Outcome showCoordination(const Context& c);
Outcome showVersion(const Context& c);
Outcome showTotals(const Context& c);

// Every setting with its current value (console_config.cc): config_file, then the settings
// table (proxy/config/settings.h) in its order, keys qualified with their TOML section
// ("pool.pool_size"); backends and users follow as "backend.<name>.host". Passwords are never
// shown: "********" when set, "" when not.
struct ConfigEntry {
  std::string key;
  std::string value;
  bool reloadable = true;  // takes effect on RELOAD (and SET, if settable) without a restart
  bool settable = true;    // SET changes it (Apply::Set in the settings table)
};
std::vector<ConfigEntry> configEntries(const Config& cfg);

}  // namespace pgswitch::proxy::console
