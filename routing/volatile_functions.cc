// The lookup is by name only: pg_proc can hold f(int) volatile and f(text) immutable, and
// the text does not say which one a call resolves to. Volatile wins (the primary is safe).
#include "routing/volatile_functions.h"

namespace pgswitch::routing {

bool callsVolatileFunction(const Classification& c, const VolatileFunctions* fns) {
  if (fns == nullptr || fns->names.empty()) return false;
  if (c.calledFunctionsTruncated) return true;
  for (const std::string& f : c.calledFunctions) {
    if (fns->names.count(f) != 0) return true;
  }
  return false;
}

}  // namespace pgswitch::routing
