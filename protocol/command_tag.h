// CommandComplete as the proxy reads it: the tag text out of the message, and which of the
// few statements that change session state (SET, DISCARD ALL, PREPARE, ...) it reports.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

#include "protocol/messages.h"
#include "protocol/result.h"

namespace pgswitch::protocol {

// Tags the proxy acts on; everything else (INSERT 0 1, SELECT 3, UNLISTEN, ...) is Other.
enum class CommandTag { Set, DiscardAll, DeallocateAll, Prepare, Listen, Other };

// Kind of a CommandComplete tag. Exact, case-sensitive compare on the whole tag as PostgreSQL
// sends it: "SET", "DISCARD ALL", "DEALLOCATE ALL", "PREPARE", "LISTEN". So "DISCARD PLANS",
// "DEALLOCATE" (one statement), "PREPARE TRANSACTION" and "RESET" are Other.
CommandTag commandTagKind(std::string_view tag);

// The tag text of a CommandComplete body (after type and length): one NUL-terminated string,
// nothing after it. The view points into body.
Result<std::string_view, ParseError> parseCommandComplete(std::span<const std::byte> body);

}  // namespace pgswitch::protocol
