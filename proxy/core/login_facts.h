// What a client's login said that its session keeps: the user and database, and the settings
// of its startup packet. Each is one shared copy per distinct value on a worker (Interner):
// a fleet's clients nearly all log in as the same few users with the same driver settings,
// and two strings and a list of settings were ~100-400 bytes of every idle client (issue 14).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "proxy/core/interner.h"

namespace pgswitch::proxy {

struct ClientNames {
  std::string user;
  std::string database;
  bool operator==(const ClientNames&) const = default;
};
uint64_t hashNames(const ClientNames& n);
using ClientNamesInterner = Interner<ClientNames, hashNames>;

// Settings as a client gave them (names as sent), in order; the last one for a name wins.
using Settings = std::vector<std::pair<std::string, std::string>>;
uint64_t hashSettings(const Settings& s);
using SettingsInterner = Interner<Settings, hashSettings>;

}  // namespace pgswitch::proxy
