// Builders for the messages the proxy emits itself: errors and notices with a SQLSTATE,
// authentication requests, ParameterStatus, BackendKeyData, ReadyForQuery, result sets for
// the admin console, and the frontend messages pgswitch sends to servers (startup, auth,
// queries). Each appends one complete wire message to a std::string.
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
  MessageBuilder& begin(char type);    // type 0 = startup-phase packet (no type byte)
  MessageBuilder& u8(uint8_t v);
  MessageBuilder& i16(int16_t v);
  MessageBuilder& i32(int32_t v);
  MessageBuilder& cstr(std::string_view s);  // bytes + NUL
  MessageBuilder& raw(std::string_view s);
  MessageBuilder& raw(std::span<const std::byte> b);
  void finish();

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

// Frontend messages pgswitch sends as a client of PostgreSQL.
void appendStartup(std::string& out,
                   std::span<const std::pair<std::string, std::string>> params);
void appendSslRequest(std::string& out);
void appendCancelRequest(std::string& out, int32_t pid, int32_t key);
void appendPasswordMessage(std::string& out, std::string_view password);
void appendSaslInitial(std::string& out, std::string_view mechanism, std::string_view data);
void appendSaslResponse(std::string& out, std::string_view data);
void appendQuery(std::string& out, std::string_view sql);
void appendSync(std::string& out);
void appendTerminate(std::string& out);

}  // namespace pgswitch::protocol
