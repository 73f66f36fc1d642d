// The key the classifier's cache files a text under: the text with its number literals
// folded, so that simple-protocol clients, which send a new text for every value (pgbench -S:
// "... WHERE aid = 48213;"), hit the cache instead of being lexed and classified each time.
//
// Folding is safe only where a number's value cannot change the classification. The rules
// read a number only as a boolean (SET transaction_read_only = 1, EXPLAIN (ANALYZE 0)), where
// PostgreSQL takes any integer whose value is 0 or 1: so a digit run that is exactly "1" or
// starts with '0' is kept as written, and every other one (2-9, or two digits or more from a
// non-zero one) becomes one NUL byte. Digits in strings, quoted identifiers, comments (hints
// live there), identifiers (t1) and parameters ($1) are not numbers and are kept.
//
// No key (false, the caller files the text as it is) when the scan could lose its place: a
// backslash (E'...' escapes), a '$' not followed by a digit (a dollar quote, or a word with a
// '$' in it), a NUL in the text (NUL is the fold's byte, and such a text is not classified by
// its words anyway).
#pragma once

#include <string>
#include <string_view>

namespace pgswitch::routing {

bool foldNumbers(std::string_view sql, std::string& key);

}  // namespace pgswitch::routing
