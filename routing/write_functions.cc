// Built-in write functions, looked up by binary search on the lower-cased name.
#include "routing/write_functions.h"

#include <algorithm>
#include <array>

#include "routing/sql_lexer.h"

namespace pgswitch::routing {
namespace {

struct Entry {
  std::string_view name;
  bool sessionLock;
};

// Sorted. Beyond the obvious writers:
//  - currval/lastval read sequence state that exists only in the session that called nextval,
//    which ran on the primary; on a replica they always fail.
//  - advisory lock functions (all of them, including unlock and xact locks): sessions
//    coordinate through one server's lock table, so every call goes to the primary.
//  - txid_current / pg_current_xact_id assign an xid, impossible during recovery.
//  - replication-slot functions change slot state; pg_logical_emit_message writes WAL.
//  - lo_* (prefix-matched below), loread and lowrite: large-object descriptors live in the
//    backend that opened them, and lo_open for writing was on the primary.
//  - set_config: changes session state the way SET does; treated as a write so that it lands on
//    the backend the session is pinned to.
constexpr std::array<Entry, 35> kBuiltin = {{
    {"currval", false},
    {"dblink_exec", false},
    {"lastval", false},
    {"loread", false},
    {"lowrite", false},
    {"nextval", false},
    {"pg_advisory_lock", true},
    {"pg_advisory_lock_shared", true},
    {"pg_advisory_unlock", false},
    {"pg_advisory_unlock_all", false},
    {"pg_advisory_unlock_shared", false},
    {"pg_advisory_xact_lock", false},
    {"pg_advisory_xact_lock_shared", false},
    {"pg_copy_logical_replication_slot", false},
    {"pg_copy_physical_replication_slot", false},
    {"pg_create_logical_replication_slot", false},
    {"pg_create_physical_replication_slot", false},
    {"pg_create_restore_point", false},
    {"pg_current_xact_id", false},
    {"pg_drop_replication_slot", false},
    {"pg_logical_emit_message", false},
    {"pg_logical_slot_get_binary_changes", false},
    {"pg_logical_slot_get_changes", false},
    {"pg_notify", false},
    {"pg_replication_origin_advance", false},
    {"pg_replication_slot_advance", false},
    {"pg_switch_wal", false},
    {"pg_switch_xlog", false},
    {"pg_try_advisory_lock", true},
    {"pg_try_advisory_lock_shared", true},
    {"pg_try_advisory_xact_lock", false},
    {"pg_try_advisory_xact_lock_shared", false},
    {"set_config", false},
    {"setval", false},
    {"txid_current", false},
}};

constexpr bool sorted() {
  for (size_t i = 1; i < kBuiltin.size(); ++i) {
    if (!(kBuiltin[i - 1].name < kBuiltin[i].name)) return false;
  }
  return true;
}
static_assert(sorted(), "kBuiltin must stay sorted for binary search");

constexpr size_t kLongest = 40;

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + ('a' - 'A'));
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + ('a' - 'A'));
    if (x != y) return false;
  }
  return true;
}

}  // namespace

WriteFunctionMatch matchWriteFunction(std::string_view name,
                                      const std::vector<std::string>& extra) {
  WriteFunctionMatch m;
  for (const std::string& e : extra) {
    if (name.size() == e.size() && equalsIgnoreCase(name, e)) {
      m.write = true;
      break;
    }
  }
  if (name.size() < 3 || name.size() > kLongest) return m;
  char lower[kLongest];
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    lower[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
  }
  std::string_view key(lower, name.size());
  if (key.substr(0, 3) == "lo_") {
    m.write = true;
    return m;
  }
  auto it = std::lower_bound(kBuiltin.begin(), kBuiltin.end(), key,
                             [](const Entry& e, std::string_view k) { return e.name < k; });
  if (it != kBuiltin.end() && it->name == key) {
    m.write = true;
    m.sessionAdvisoryLock = it->sessionLock;
    m.setConfig = key == "set_config";
  }
  return m;
}

std::vector<std::string_view> builtinWriteFunctions() {
  std::vector<std::string_view> v;
  for (const Entry& e : kBuiltin) v.push_back(e.name);
  return v;
}

}  // namespace pgswitch::routing
