// Routing hints in the comments that lead a query: /* pgswitch: primary */,
// /* pgswitch: replica */, /* pgswitch: tag=reporting */ (combinable: /* pgswitch: replica,
// tag=reporting */). Case-insensitive, whitespace-tolerant; only comments before the first token.
#pragma once

#include <string>
#include <string_view>

#include "routing/classifier.h"

namespace pgswitch::routing {

// Applies every hint comment before the first token of `sql` to `out.hint` / `out.hintTag`.
// A comment that starts with "pgswitch:" but does not parse is ignored as a whole. When both
// primary and replica are asked for, primary wins (the safe side); the last tag wins.
void parseLeadingHints(std::string_view sql, Classification& out);

}  // namespace pgswitch::routing
