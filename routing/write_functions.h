// The functions whose call makes a query primary-only: they write (nextval, lo_*), take locks
// that other sessions coordinate on (advisory locks), or need an xid (txid_current).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace pgswitch::routing {

struct WriteFunctionMatch {
  bool write = false;
  bool sessionAdvisoryLock = false;  // pg_advisory_lock[_shared], pg_try_advisory_lock[_shared]
  bool setConfig = false;            // set_config: a SET whose value no command tag reveals
};

// `name` is the last component of the called name (no schema), as written (any case).
// `extra` holds user-supplied names, compared case-insensitively.
WriteFunctionMatch matchWriteFunction(std::string_view name, const std::vector<std::string>& extra);

// The built-in list, for documentation and tests.
std::vector<std::string_view> builtinWriteFunctions();

}  // namespace pgswitch::routing
