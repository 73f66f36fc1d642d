// The settings table: every single-valued setting of [server], [pool], [health], [failover],
// [routing] and [tls], declared once. The TOML loader, the console's SET and SHOW CONFIG, and the
// reload check iterate it, so a range or a default cannot differ between them.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "proxy/config/config.h"

namespace pgswitch::proxy {

// The arrays of tables ([[backend]], [[user]], [[routing.rule]]) are not in the table: they are
// lists of records with rules between their fields (a derived backend name, a password format
// that must suit `auth`), and config.cc loads them by hand.

enum class SettingType {
  Integer,  // TOML integer; SET: decimal digits
  Boolean,  // TOML true/false; SET also on/off, yes/no, 1/0
  Text,     // TOML string; SET: the value as typed
  List,     // TOML array of strings; SET: comma-separated
  Choice,   // TOML string, one of `choices`; SET: case-insensitive
};

// How a changed value reaches the running process.
enum class Apply {
  Restart,  // read once at start-up (sockets, threads, the log file): shown as not reloadable
  Reload,   // RELOAD / SIGHUP apply it; SET refuses it
  Set,      // RELOAD, SIGHUP and the console's SET apply it
};

// One value of a setting: int64_t (Integer), bool (Boolean), std::string (Text, Choice),
// std::vector<std::string> (List).
using SettingValue = std::variant<int64_t, bool, std::string, std::vector<std::string>>;

struct Setting {
  std::string_view key;  // "pool.pool_size": the TOML section and the name inside it
  SettingType type = SettingType::Text;
  Apply apply = Apply::Set;
  SettingValue def;                  // what Config() holds
  int64_t min = 0, max = INT64_MAX;  // Integer: inclusive
  std::vector<std::string> choices;  // Choice: the allowed values, as written in the file
  bool secret = false;               // SHOW CONFIG shows "********" (or "" when unset)
  std::string_view help;             // one line, as README.md describes it
  // Where the value lives in Config. `write` only ever receives a value check() accepted.
  std::function<SettingValue(const Config&)> read;
  std::function<void(Config&, const SettingValue&)> write;
  // A rule beyond type, range and choices (listen's "host:port"): "" or why not.
  std::string (*extraCheck)(const SettingValue&) = nullptr;

  std::string_view section() const { return key.substr(0, key.find('.')); }
  std::string_view name() const { return key.substr(key.find('.') + 1); }
};

// In SHOW CONFIG order: [server], [pool], [health], [failover], [routing], [tls].
std::span<const Setting> settings();
// Exact key ("pool.pool_size"), or nullptr.
const Setting* findSetting(std::string_view key);
// The sections that hold settings, in table order.
std::span<const std::string_view> settingSections();

// The one range check: "" or why `v` is not allowed for `s`, phrased to follow the setting's
// name ("must be at least 1"). Checks type, range, choices and extraCheck.
std::string checkValue(const Setting& s, const SettingValue& v);

// Rules between two settings, checked after a load and after every SET.
struct CrossCheck {
  std::string_view key;   // the setting the error is reported on
  std::string_view rule;  // follows its name: "must not exceed pool_size"
  bool (*holds)(const Config&);
};
std::span<const CrossCheck> crossChecks();

// The value as SHOW CONFIG prints it: integers in decimal, true/false, lists joined by ", ",
// secrets masked.
std::string showValue(const Setting& s, const Config& c);

// "setting \"k\" cannot be changed ..." for a setting SET must refuse, "" for one it may change.
std::string setRefusal(const Setting& s);

// The settings whose value differs between two configs and that take effect only after a
// restart: what a reload must warn about (it keeps running with the old values).
std::vector<const Setting*> restartOnlyChanges(const Config& running, const Config& loaded);

// A value (or a line quoting one) as the log may show it: at most `limit` bytes, cut on a
// UTF-8 character boundary, followed by "... (N bytes)" when cut; control characters become
// '?' so that a value cannot forge log lines. A console SET or a config file can carry
// megabytes, and each would otherwise become one log line.
inline constexpr size_t kLogValueLimit = 200;
std::string logValue(std::string_view v, size_t limit = kLogValueLimit);

}  // namespace pgswitch::proxy
