// CommandComplete tag parsing and classification.
#include "protocol/command_tag.h"

namespace pgswitch::protocol {

CommandTag commandTagKind(std::string_view tag) {
  if (tag == "SET") return CommandTag::Set;
  if (tag == "DISCARD ALL") return CommandTag::DiscardAll;
  if (tag == "DEALLOCATE ALL") return CommandTag::DeallocateAll;
  if (tag == "PREPARE") return CommandTag::Prepare;
  if (tag == "LISTEN") return CommandTag::Listen;
  return CommandTag::Other;
}

Result<std::string_view, ParseError> parseCommandComplete(std::span<const std::byte> body) {
  Reader r(body);
  auto tag = r.cstr();
  if (!tag || !r.atEnd()) return Err("malformed CommandComplete message");
  return *tag;
}

}  // namespace pgswitch::protocol
