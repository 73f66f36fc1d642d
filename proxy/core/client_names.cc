#include "proxy/core/client_names.h"

namespace pgswitch::proxy {

std::shared_ptr<const ClientNames> ClientNamesInterner::intern(std::string_view user,
                                                               std::string_view database) {
  key_.assign(user);
  key_.push_back('\0');
  key_.append(database);
  auto it = table_.find(key_);
  if (it != table_.end()) return it->second;
  auto names = std::make_shared<const ClientNames>(ClientNames{std::string(user), std::string(database)});
  table_.emplace(key_, names);
  return names;
}

void ClientNamesInterner::sweep() {
  for (auto it = table_.begin(); it != table_.end();)
    it = it->second.use_count() == 1 ? table_.erase(it) : std::next(it);
}

}  // namespace pgswitch::proxy
