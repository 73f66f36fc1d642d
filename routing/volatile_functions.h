// The volatile functions of each database, as the catalog watcher (health/function_catalog.h)
// last read them, and the routing rule built on them: a read that calls one goes to the
// primary, since a volatile function may write (a plpgsql function that INSERTs is one) and
// nothing in the SQL text says so. Snapshots are immutable once published, like Topology.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_set>

#include "routing/classifier.h"

namespace pgswitch::routing {

// One database: the lower-cased names of its volatile functions outside pg_catalog and
// information_schema (overloads and schemas folded together: the lookup is by name).
struct VolatileFunctions {
  std::unordered_set<std::string> names;
};

// Every database read so far. A database that is missing has not been read yet (or its
// lookup failed from the start): its reads are routed as if no function were volatile.
struct FunctionCatalog {
  uint64_t version = 0;
  std::map<std::string, std::shared_ptr<const VolatileFunctions>, std::less<>> databases;

  const VolatileFunctions* find(std::string_view database) const {
    auto it = databases.find(database);
    return it == databases.end() ? nullptr : it->second.get();
  }
};

using FunctionCatalogPtr = std::shared_ptr<const FunctionCatalog>;

// Whether `c` calls a function `fns` lists (fns null: not known, false). A classification
// that kept only some of the names it saw counts as calling one whenever `fns` is not empty.
bool callsVolatileFunction(const Classification& c, const VolatileFunctions* fns);

}  // namespace pgswitch::routing
