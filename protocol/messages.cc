// Parsers for the message views. Every field read is bounds-checked through Reader; a
// message with trailing garbage or a missing terminator is an error, as in PostgreSQL.
#include "protocol/messages.h"

#include <cstring>

namespace pgswitch::protocol {

std::optional<uint8_t> Reader::u8() {
  if (remaining() < 1) return std::nullopt;
  return static_cast<uint8_t>(b_[pos_++]);
}

std::optional<int16_t> Reader::i16() {
  if (remaining() < 2) return std::nullopt;
  uint16_t v = (uint16_t(b_[pos_]) << 8) | uint16_t(b_[pos_ + 1]);
  pos_ += 2;
  return static_cast<int16_t>(v);
}

std::optional<int32_t> Reader::i32() {
  if (remaining() < 4) return std::nullopt;
  uint32_t v = (uint32_t(b_[pos_]) << 24) | (uint32_t(b_[pos_ + 1]) << 16) |
               (uint32_t(b_[pos_ + 2]) << 8) | uint32_t(b_[pos_ + 3]);
  pos_ += 4;
  return static_cast<int32_t>(v);
}

std::optional<std::string_view> Reader::cstr() {
  if (remaining() == 0) return std::nullopt;
  const char* start = reinterpret_cast<const char*>(b_.data() + pos_);
  const void* nul = std::memchr(start, 0, remaining());
  if (!nul) return std::nullopt;
  size_t len = static_cast<const char*>(nul) - start;
  pos_ += len + 1;
  return std::string_view(start, len);
}

std::optional<std::span<const std::byte>> Reader::bytes(size_t n) {
  if (remaining() < n) return std::nullopt;
  auto s = b_.subspan(pos_, n);
  pos_ += n;
  return s;
}

std::string_view StartupView::param(std::string_view name) const {
  for (auto& [k, v] : params)
    if (k == name) return v;
  return {};
}

Result<StartupView, ParseError> parseStartup(std::span<const std::byte> body) {
  Reader r(body);
  auto code = r.i32();
  if (!code) return Err("invalid startup packet");
  StartupView v;
  v.protocol = static_cast<uint32_t>(*code);
  switch (v.protocol) {
    case kSslRequestCode:
      v.kind = StartupKind::Ssl;
      return v;
    case kGssEncRequestCode:
      v.kind = StartupKind::GssEnc;
      return v;
    case kCancelRequestCode: {
      v.kind = StartupKind::Cancel;
      auto pid = r.i32(), key = r.i32();
      if (!pid || !key) return Err("invalid cancel request");
      v.cancelPid = *pid;
      v.cancelKey = *key;
      return v;
    }
    default:
      break;
  }
  v.kind = StartupKind::Startup;
  // Parameters: name NUL value NUL ... NUL. A missing final terminator is an error, as is a
  // name without a value.
  for (;;) {
    auto name = r.cstr();
    if (!name) return Err("invalid startup packet layout: expected terminator as last byte");
    if (name->empty()) break;
    auto value = r.cstr();
    if (!value) return Err("invalid startup packet layout: expected terminator as last byte");
    v.params.emplace_back(*name, *value);
  }
  if (!r.atEnd()) return Err("invalid startup packet layout: expected terminator as last byte");
  return v;
}

Result<ErrorFields, ParseError> parseErrorFields(std::span<const std::byte> body) {
  Reader r(body);
  ErrorFields f;
  for (;;) {
    auto t = r.u8();
    if (!t) return Err("truncated error fields");
    if (*t == 0) break;
    auto val = r.cstr();
    if (!val) return Err("unterminated error field");
    switch (*t) {
      case 'V': f.severity = *val; break;
      case 'S': if (f.severity.empty()) f.severity = *val; break;
      case 'C': f.code = *val; break;
      case 'M': f.message = *val; break;
      case 'D': f.detail = *val; break;
      case 'H': f.hint = *val; break;
      default: break;
    }
  }
  if (!r.atEnd()) return Err("trailing bytes after error fields");
  return f;
}

Result<ParameterStatusView, ParseError> parseParameterStatus(std::span<const std::byte> body) {
  Reader r(body);
  auto n = r.cstr();
  auto v = n ? r.cstr() : std::nullopt;
  if (!n || !v || !r.atEnd()) return Err("malformed ParameterStatus");
  return ParameterStatusView{*n, *v};
}

Result<BackendKeyView, ParseError> parseBackendKeyData(std::span<const std::byte> body) {
  Reader r(body);
  auto pid = r.i32(), key = r.i32();
  if (!pid || !key || !r.atEnd()) return Err("malformed BackendKeyData");
  return BackendKeyView{*pid, *key};
}

Result<char, ParseError> parseReadyForQuery(std::span<const std::byte> body) {
  if (body.size() != 1) return Err("malformed ReadyForQuery");
  char s = static_cast<char>(body[0]);
  if (s != 'I' && s != 'T' && s != 'E') return Err("invalid transaction status");
  return s;
}

Result<AuthRequestView, ParseError> parseAuthRequest(std::span<const std::byte> body) {
  Reader r(body);
  auto code = r.i32();
  if (!code) return Err("malformed authentication request");
  AuthRequestView v;
  v.code = *code;
  v.data = body.subspan(4);
  if (v.code == auth::MD5Password && v.data.size() != 4) return Err("malformed MD5 request");
  if (v.code == auth::SASL) {
    for (;;) {
      auto m = r.cstr();
      if (!m) return Err("malformed SASL mechanism list");
      if (m->empty()) break;
      v.mechanisms.push_back(*m);
    }
    if (!r.atEnd()) return Err("trailing bytes after SASL mechanism list");
  }
  if ((v.code == auth::Ok || v.code == auth::CleartextPassword) && !v.data.empty())
    return Err("malformed authentication request");
  return v;
}

Result<QueryView, ParseError> parseQuery(std::span<const std::byte> body) {
  Reader r(body);
  auto sql = r.cstr();
  if (!sql || !r.atEnd()) return Err("malformed Query message");
  return QueryView{*sql};
}

Result<ParseView, ParseError> parseParse(std::span<const std::byte> body) {
  Reader r(body);
  ParseView v;
  auto name = r.cstr();
  auto sql = name ? r.cstr() : std::nullopt;
  auto count = sql ? r.i16() : std::nullopt;
  if (!count || *count < 0) return Err("malformed Parse message");
  auto types = r.bytes(size_t(*count) * 4);
  if (!types || !r.atEnd()) return Err("malformed Parse message");
  v.name = *name;
  v.sql = *sql;
  v.paramCount = *count;
  v.paramTypes = *types;
  return v;
}

Result<BindHead, ParseError> parseBindHead(std::span<const std::byte> body) {
  Reader r(body);
  auto portal = r.cstr();
  auto stmt = portal ? r.cstr() : std::nullopt;
  if (!stmt) return Err("malformed Bind message");
  BindHead h{*portal, *stmt, body.size() - r.remaining()};
  return h;
}

Result<DescribeCloseView, ParseError> parseDescribeClose(std::span<const std::byte> body) {
  Reader r(body);
  auto kind = r.u8();
  auto name = kind ? r.cstr() : std::nullopt;
  if (!name || !r.atEnd() || (*kind != 'S' && *kind != 'P'))
    return Err("malformed Describe/Close message");
  return DescribeCloseView{static_cast<char>(*kind), *name};
}

Result<SaslInitialView, ParseError> parseSaslInitial(std::span<const std::byte> body) {
  Reader r(body);
  auto mech = r.cstr();
  auto len = mech ? r.i32() : std::nullopt;
  if (!len) return Err("malformed SASLInitialResponse");
  SaslInitialView v{*mech, {}};
  if (*len >= 0) {
    auto d = r.bytes(size_t(*len));
    if (!d) return Err("malformed SASLInitialResponse");
    v.data = *d;
  }
  if (!r.atEnd()) return Err("malformed SASLInitialResponse");
  return v;
}

Result<std::string_view, ParseError> parsePasswordMessage(std::span<const std::byte> body) {
  Reader r(body);
  auto p = r.cstr();
  if (!p || !r.atEnd()) return Err("malformed password packet");
  return *p;
}

RowFields::RowFields(std::span<const std::byte> body) : r_(body) {
  auto n = r_.i16();
  if (!n || *n < 0) {
    error_ = "malformed RowDescription";
  } else {
    count_ = left_ = *n;
  }
}

bool RowFields::next(RowField& f) {
  if (error_) return false;
  if (left_ == 0) {
    if (!r_.atEnd()) error_ = "malformed RowDescription";
    return false;
  }
  auto name = r_.cstr();
  auto table = r_.i32();
  auto column = r_.i16();
  auto type = r_.i32();
  auto len = r_.i16();
  auto mod = r_.i32();
  auto format = r_.i16();
  if (!name || !table || !column || !type || !len || !mod || !format) {
    error_ = "malformed RowDescription";
    return false;
  }
  f = RowField{*name, *table, *column, *type, *len, *mod, *format};
  --left_;
  return true;
}

}  // namespace pgswitch::protocol
