// Which called functions a Classification reports (Classification::calledFunctions): the
// names the proxy looks up in a database's catalog of volatile functions. Shared by the lexer
// rules and the parser fallback so that both report the same names the same way.
#pragma once

#include <cstddef>
#include <string_view>

#include "routing/classifier.h"

namespace pgswitch::routing {

// Beyond this many distinct names a statement only says it calls more (a lookup then treats
// it as calling a volatile function whenever the database has any).
inline constexpr size_t kMaxCalledFunctions = 16;

// Adds `name` (the last component of a called name, as written, without quotes) to
// out.calledFunctions, lower-cased, unless it is trusted as read-only or already there.
void noteCalledFunction(std::string_view name, const ClassifierOptions& opts, Classification& out);

// Lexer path: whether an unquoted word followed by '(' cannot be a function call — a
// keyword that takes a parenthesised list (IN, EXISTS, VALUES, OVER, FILTER, ...) or a type
// name with modifiers (numeric(10,2), varchar(20), timestamp(3)). `w` is as written.
bool notAFunctionName(std::string_view w);

// OR-s the call facts of `from` into `to` (multi-statement texts, CTE bodies, EXPLAIN ANALYZE).
void mergeCalledFunctions(Classification& to, const Classification& from);

}  // namespace pgswitch::routing
