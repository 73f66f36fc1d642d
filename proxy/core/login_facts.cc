#include "proxy/core/login_facts.h"

namespace pgswitch::proxy {

uint64_t hashNames(const ClientNames& n) {
  const std::pair<const std::string&, const std::string&> pair[] = {{n.user, n.database}};
  return hashPairs(pair);
}

uint64_t hashSettings(const Settings& s) { return hashPairs(s); }

}  // namespace pgswitch::proxy
