// ClientNames: the user and database a client logged in as, one immutable copy per pair on a
// worker, shared by every client of that pair (issue 14: two std::string are 64 bytes of every
// idle client, and a fleet's clients nearly all use the same few pairs). The interner forgets
// pairs no client holds any more.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace pgswitch::proxy {

struct ClientNames {
  std::string user;
  std::string database;
};

class ClientNamesInterner {
 public:
  // The worker's copy of this pair, made on first use. Single-threaded (one worker's).
  std::shared_ptr<const ClientNames> intern(std::string_view user, std::string_view database);
  // Drops pairs only the interner holds (the worker's janitor, once a second).
  void sweep();
  size_t size() const { return table_.size(); }

 private:
  // Keyed by user, NUL, database (neither can hold a NUL: they come from C strings).
  std::unordered_map<std::string, std::shared_ptr<const ClientNames>> table_;
  std::string key_;  // reused for lookups
};

}  // namespace pgswitch::proxy
