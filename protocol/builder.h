// Builders for the messages the proxy emits itself: errors and notices with a SQLSTATE,
// authentication requests, ParameterStatus, BackendKeyData, ReadyForQuery, result sets for
// the admin console, the extended-protocol replies the proxy answers itself, and the frontend
// messages pgswitch sends to servers (startup, auth, queries, rewritten Parse/Bind/Describe/
// Close). Each appends one complete wire message to a std::string, except appendBindHead.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgswitch::protocol {

// Writes one message: type byte, length placeholder, fields; finish() patches the length.
class MessageBuilder {
 public:
  explicit MessageBuilder(std::string& out) : out_(out) {}
  MessageBuilder& begin(char type);  // type 0 = startup-phase packet (no type byte)
  MessageBuilder& u8(uint8_t v);
  MessageBuilder& i16(int16_t v);
  MessageBuilder& i32(int32_t v);
  MessageBuilder& cstr(std::string_view s);  // bytes + NUL
  MessageBuilder& raw(std::string_view s);
  MessageBuilder& raw(std::span<const std::byte> b);
  void finish();
  // As finish(), but the length also counts `following` bytes that are not in `out`: the
  // caller sends them right after, e.g. a forwarded tail. Precondition: the total fits int32.
  void finishFollowedBy(size_t following);

 private:
  std::string& out_;
  size_t start_ = 0;
};

struct ErrorSpec {
  std::string_view severity = "ERROR";  // ERROR, FATAL, NOTICE, ...
  std::string_view sqlstate = "XX000";
  std::string_view message;
  std::string_view detail = {};
  std::string_view hint = {};
  // Where PostgreSQL raises it (F, L, R), for errors pgswitch words as PostgreSQL does: a
  // driver may look at them (pgjdbc re-prepares a statement on R = RevalidateCachedQuery).
  std::string_view file = {}, line = {}, routine = {};
};

void appendError(std::string& out, const ErrorSpec& e);   // 'E'
void appendNotice(std::string& out, const ErrorSpec& e);  // 'N'
void appendReadyForQuery(std::string& out, char status);
void appendParameterStatus(std::string& out, std::string_view name, std::string_view value);
void appendBackendKeyData(std::string& out, int32_t pid, int32_t key);
void appendAuthOk(std::string& out);
void appendAuthCleartext(std::string& out);
void appendAuthMd5(std::string& out, std::span<const std::byte, 4> salt);
void appendAuthSasl(std::string& out, std::span<const std::string_view> mechanisms);
void appendAuthSaslContinue(std::string& out, std::string_view data);
void appendAuthSaslFinal(std::string& out, std::string_view data);
// The one-byte answer to SSLRequest and GSSENCRequest: 'S' (TLS handshake follows) or 'N'.
void appendEncryptionAnswer(std::string& out, bool accept);
void appendNegotiateProtocolVersion(std::string& out, int32_t newestMinor,
                                    std::span<const std::string_view> unrecognized);

// Result sets (admin console). Columns are text; a null value is std::nullopt-like: pass
// isNull via the second member.
struct Column {
  std::string_view name;
  uint32_t typeOid = 25;  // text
};
void appendRowDescription(std::string& out, std::span<const Column> columns);
void appendDataRow(std::string& out, std::span<const std::string_view> values,
                   std::span<const bool> nulls = {});
void appendCommandComplete(std::string& out, std::string_view tag);
void appendEmptyQueryResponse(std::string& out);

// Extended-protocol replies the proxy synthesizes (statements it prepared or closed itself).
void appendParseComplete(std::string& out);  // '1'
void appendBindComplete(std::string& out);   // '2'
void appendCloseComplete(std::string& out);  // '3'
void appendNoData(std::string& out);         // 'n'

// Frontend messages pgswitch sends as a client of PostgreSQL.
void appendStartup(std::string& out, std::span<const std::pair<std::string, std::string>> params);
void appendSslRequest(std::string& out);
void appendCancelRequest(std::string& out, int32_t pid, int32_t key);
void appendPasswordMessage(std::string& out, std::string_view password);
void appendSaslInitial(std::string& out, std::string_view mechanism, std::string_view data);
void appendSaslResponse(std::string& out, std::string_view data);
void appendQuery(std::string& out, std::string_view sql);
// Parse under another statement name: tail = the bytes after the name in a Parse body (query
// NUL, int16 n, n x int32 OIDs), copied verbatim. Precondition: the message fits int32 (a
// tail from a framed message under the configured cap, plus a short name, does).
void appendParse(std::string& out, std::string_view name, std::string_view tail);
// Only the head of a Bind: type, length, portal NUL, statement NUL. The length also counts
// restLen bytes (formats, parameters, result formats) that are NOT written here: the caller
// must send exactly restLen bytes right after `out`, e.g. the rest of the client's Bind by
// reference. Returns false and leaves `out` untouched if the length would exceed INT32_MAX.
[[nodiscard]] bool appendBindHead(std::string& out, std::string_view portal,
                                  std::string_view statement, size_t restLen);
void appendDescribe(std::string& out, char kind, std::string_view name);  // kind 'S' or 'P'
void appendClose(std::string& out, char kind, std::string_view name);     // kind 'S' or 'P'
void appendSync(std::string& out);
void appendFlush(std::string& out);
void appendTerminate(std::string& out);

}  // namespace pgswitch::protocol
