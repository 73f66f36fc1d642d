// The SHOW CONFIG table: the config file, every setting of the settings table
// (proxy/config/settings.h) in its order, then each backend's and user's fields, with the
// current value and whether a reload (RELOAD, SIGHUP, SET) applies it without a restart.
#include <string>
#include <vector>

#include "proxy/admin/console_internal.h"
#include "proxy/config/settings.h"

namespace pgswitch::proxy::console {
namespace {

std::string joinList(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& e : v) {
    if (!s.empty()) s += ", ";
    s += e;
  }
  return s;
}

std::string secret(const std::string& pw) { return pw.empty() ? "" : "********"; }

}  // namespace

std::vector<ConfigEntry> configEntries(const Config& c) {
  std::vector<ConfigEntry> e;
  auto num = [](auto v) { return std::to_string(v); };

  // Not a setting: where the settings came from.
  e.push_back({"config_file", c.path, false, false});
  for (const Setting& s : settings()) {
    e.push_back(
        {std::string(s.key), showValue(s, c), s.apply != Apply::Restart, s.apply == Apply::Set});
  }

  // Backends and users change through the file (RELOAD), not through SET.
  for (const BackendConfig& b : c.backends) {
    std::string p = "backend." + b.name + ".";
    e.push_back({p + "host", b.host, false, false});
    e.push_back({p + "port", num(b.port), false, false});
    e.push_back({p + "weight", num(b.weight), true, false});
    e.push_back({p + "tags", joinList(b.tags), true, false});
  }
  for (const UserConfig& u : c.users) {
    std::string p = "user." + u.name + ".";
    e.push_back({p + "password", secret(u.password), true, false});
    e.push_back({p + "auth", toString(u.auth), true, false});
  }
  return e;
}

}  // namespace pgswitch::proxy::console
