// The slow path: classification from libpg_query's parse tree (JSON), for text the lexer rules
// are unsure about. Applies the same rules as the lexer path, node by node.
#pragma once

#include <string_view>

#include "routing/classifier.h"

namespace pgswitch::routing {

// Parses `sql` with libpg_query and fills the statement fields of `out` (not the hints), with
// usedParser = true and multiStatement from the parser's statement count. Returns false when
// PostgreSQL's grammar rejects the text (or its parse tree is too deep to walk); `out` is then
// untouched.
bool classifyWithParser(std::string_view sql, const ClassifierOptions& opts, Classification& out);

}  // namespace pgswitch::routing
