// Typed read-only views of the protocol messages the proxy must look inside. Each parse
// function takes the whole message body (after the type byte and length) and returns a view
// whose string_views point into those bytes: valid only while the bytes are.
// Malformed input yields an error value, never a crash.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/result.h"

namespace pgswitch::protocol {

// Startup-phase request codes (PostgreSQL pqcomm.h).
inline constexpr uint32_t kProtocolV3 = 196608;  // 3.0
inline constexpr uint32_t kCancelRequestCode = 80877102;
inline constexpr uint32_t kSslRequestCode = 80877103;
inline constexpr uint32_t kGssEncRequestCode = 80877104;

// Frontend message types.
namespace fe {
inline constexpr char Query = 'Q', Parse = 'P', Bind = 'B', Describe = 'D', Execute = 'E',
                      Close = 'C', Sync = 'S', Flush = 'H', Terminate = 'X', CopyData = 'd',
                      CopyDone = 'c', CopyFail = 'f', FunctionCall = 'F', Password = 'p';
// A message a client may send once logged in. PostgreSQL ends the session with FATAL 08P01
// "invalid frontend message type N" for anything else (a late PasswordMessage included).
constexpr bool validAfterLogin(char t) {
  switch (t) {
    case Query: case Parse: case Bind: case Describe: case Execute: case Close: case Sync:
    case Flush: case Terminate: case CopyData: case CopyDone: case CopyFail: case FunctionCall:
      return true;
    default:
      return false;
  }
}
}
// Backend message types.
namespace be {
inline constexpr char Authentication = 'R', BackendKeyData = 'K', ParameterStatus = 'S',
                      ReadyForQuery = 'Z', ErrorResponse = 'E', NoticeResponse = 'N',
                      CommandComplete = 'C', RowDescription = 'T', DataRow = 'D',
                      EmptyQuery = 'I', ParseComplete = '1', BindComplete = '2',
                      CloseComplete = '3', NoData = 'n', ParameterDescription = 't',
                      PortalSuspended = 's', CopyInResponse = 'G', CopyOutResponse = 'H',
                      CopyBothResponse = 'W', CopyData = 'd', CopyDone = 'c',
                      NotificationResponse = 'A', NegotiateProtocolVersion = 'v',
                      FunctionCallResponse = 'V';
// A message a server may send on an established session. Authentication requests,
// BackendKeyData and NegotiateProtocolVersion belong to the login only.
constexpr bool validAfterLogin(char t) {
  switch (t) {
    case ParameterStatus: case ReadyForQuery: case ErrorResponse: case NoticeResponse:
    case CommandComplete: case RowDescription: case DataRow: case EmptyQuery: case ParseComplete:
    case BindComplete: case CloseComplete: case NoData: case ParameterDescription:
    case PortalSuspended: case CopyInResponse: case CopyOutResponse: case CopyBothResponse:
    case CopyData: case CopyDone: case NotificationResponse: case FunctionCallResponse:
      return true;
    default:
      return false;
  }
}
}
// Authentication request codes.
namespace auth {
inline constexpr int32_t Ok = 0, CleartextPassword = 3, MD5Password = 5, GSS = 7, SSPI = 9,
                         SASL = 10, SASLContinue = 11, SASLFinal = 12;
}

using ParseError = const char*;

// Sequential reader over a message body; every read is bounds-checked.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> b) : b_(b) {}
  std::optional<uint8_t> u8();
  std::optional<int16_t> i16();
  std::optional<int32_t> i32();
  std::optional<std::string_view> cstr();  // up to and excluding the NUL
  std::optional<std::span<const std::byte>> bytes(size_t n);
  size_t remaining() const { return b_.size() - pos_; }
  bool atEnd() const { return pos_ == b_.size(); }

 private:
  std::span<const std::byte> b_;
  size_t pos_ = 0;
};

enum class StartupKind { Startup, Ssl, GssEnc, Cancel };

struct StartupView {
  StartupKind kind = StartupKind::Startup;
  uint32_t protocol = 0;
  std::vector<std::pair<std::string_view, std::string_view>> params;  // Startup only
  int32_t cancelPid = 0, cancelKey = 0;                               // Cancel only
  std::string_view param(std::string_view name) const;
};
// body = the packet after its 4-byte length.
Result<StartupView, ParseError> parseStartup(std::span<const std::byte> body);

struct ErrorFields {  // ErrorResponse / NoticeResponse
  std::string_view severity, code, message, detail, hint;
};
Result<ErrorFields, ParseError> parseErrorFields(std::span<const std::byte> body);

struct ParameterStatusView {
  std::string_view name, value;
};
Result<ParameterStatusView, ParseError> parseParameterStatus(std::span<const std::byte> body);

struct BackendKeyView {
  int32_t pid = 0, key = 0;
};
Result<BackendKeyView, ParseError> parseBackendKeyData(std::span<const std::byte> body);

Result<char, ParseError> parseReadyForQuery(std::span<const std::byte> body);  // 'I','T','E'

struct AuthRequestView {
  int32_t code = 0;
  std::span<const std::byte> data;          // MD5 salt, SASL data
  std::vector<std::string_view> mechanisms;  // for SASL
};
Result<AuthRequestView, ParseError> parseAuthRequest(std::span<const std::byte> body);

struct QueryView {
  std::string_view sql;
};
Result<QueryView, ParseError> parseQuery(std::span<const std::byte> body);

struct ParseView {
  std::string_view name, sql;
  std::span<const std::byte> paramTypes;  // int32 OIDs, network order
  int16_t paramCount = 0;
};
Result<ParseView, ParseError> parseParse(std::span<const std::byte> body);

struct BindHead {  // only the names; the rest is forwarded untouched
  std::string_view portal, statement;
  size_t restOffset = 0;  // where the bytes after the two names start in body
};
Result<BindHead, ParseError> parseBindHead(std::span<const std::byte> body);

struct DescribeCloseView {  // Describe and Close share a layout
  char kind = 0;            // 'S' statement, 'P' portal
  std::string_view name;
};
Result<DescribeCloseView, ParseError> parseDescribeClose(std::span<const std::byte> body);

struct SaslInitialView {
  std::string_view mechanism;
  std::span<const std::byte> data;  // empty if length -1
};
Result<SaslInitialView, ParseError> parseSaslInitial(std::span<const std::byte> body);

// The columns of a RowDescription body, one at a time (no allocation).
struct RowField {
  std::string_view name;
  int32_t tableOid = 0;
  int16_t column = 0;
  int32_t typeOid = 0;
  int16_t typeLen = 0;
  int32_t typmod = 0;
  int16_t format = 0;
};
class RowFields {
 public:
  explicit RowFields(std::span<const std::byte> body);
  // The next column into f; false after the last one or on malformed bytes (error() says).
  bool next(RowField& f);
  int16_t count() const { return count_; }
  ParseError error() const { return error_; }

 private:
  Reader r_;
  int16_t count_ = 0;
  int16_t left_ = 0;
  ParseError error_ = nullptr;
};

// Password ('p') message with a NUL-terminated string (cleartext or md5).
Result<std::string_view, ParseError> parsePasswordMessage(std::span<const std::byte> body);

inline std::string_view asText(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
inline std::span<const std::byte> asBytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

}  // namespace pgswitch::protocol
