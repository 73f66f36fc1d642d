// Message builders. Lengths are patched in finish() so callers never count bytes by hand.
#include "protocol/builder.h"

#include <cstdint>

namespace pgswitch::protocol {

MessageBuilder& MessageBuilder::begin(char type) {
  if (type != 0) out_.push_back(type);
  start_ = out_.size();
  out_.append(4, '\0');
  return *this;
}
MessageBuilder& MessageBuilder::u8(uint8_t v) {
  out_.push_back(static_cast<char>(v));
  return *this;
}
MessageBuilder& MessageBuilder::i16(int16_t v) {
  uint16_t u = static_cast<uint16_t>(v);
  out_.push_back(static_cast<char>(u >> 8));
  out_.push_back(static_cast<char>(u & 0xff));
  return *this;
}
MessageBuilder& MessageBuilder::i32(int32_t v) {
  uint32_t u = static_cast<uint32_t>(v);
  for (int s = 24; s >= 0; s -= 8) out_.push_back(static_cast<char>((u >> s) & 0xff));
  return *this;
}
MessageBuilder& MessageBuilder::cstr(std::string_view s) {
  out_.append(s);
  out_.push_back('\0');
  return *this;
}
MessageBuilder& MessageBuilder::raw(std::string_view s) {
  out_.append(s);
  return *this;
}
MessageBuilder& MessageBuilder::raw(std::span<const std::byte> b) {
  out_.append(reinterpret_cast<const char*>(b.data()), b.size());
  return *this;
}
void MessageBuilder::finish() { finishFollowedBy(0); }
void MessageBuilder::finishFollowedBy(size_t following) {
  uint32_t len = static_cast<uint32_t>(out_.size() - start_ + following);
  for (int i = 0; i < 4; ++i) out_[start_ + i] = static_cast<char>((len >> (24 - 8 * i)) & 0xff);
}

namespace {
void appendFields(std::string& out, char type, const ErrorSpec& e) {
  MessageBuilder b(out);
  b.begin(type);
  b.u8('S').cstr(e.severity).u8('V').cstr(e.severity);
  b.u8('C').cstr(e.sqlstate).u8('M').cstr(e.message);
  if (!e.detail.empty()) b.u8('D').cstr(e.detail);
  if (!e.hint.empty()) b.u8('H').cstr(e.hint);
  if (!e.file.empty()) b.u8('F').cstr(e.file);
  if (!e.line.empty()) b.u8('L').cstr(e.line);
  if (!e.routine.empty()) b.u8('R').cstr(e.routine);
  b.u8(0).finish();
}
}  // namespace

void appendError(std::string& out, const ErrorSpec& e) { appendFields(out, 'E', e); }
void appendNotice(std::string& out, const ErrorSpec& e) { appendFields(out, 'N', e); }

void appendReadyForQuery(std::string& out, char status) {
  MessageBuilder(out).begin('Z').u8(static_cast<uint8_t>(status)).finish();
}
void appendParameterStatus(std::string& out, std::string_view name, std::string_view value) {
  MessageBuilder(out).begin('S').cstr(name).cstr(value).finish();
}
void appendBackendKeyData(std::string& out, int32_t pid, int32_t key) {
  MessageBuilder(out).begin('K').i32(pid).i32(key).finish();
}
void appendEncryptionAnswer(std::string& out, bool accept) { out += accept ? 'S' : 'N'; }

void appendAuthOk(std::string& out) { MessageBuilder(out).begin('R').i32(0).finish(); }
void appendAuthCleartext(std::string& out) { MessageBuilder(out).begin('R').i32(3).finish(); }
void appendAuthMd5(std::string& out, std::span<const std::byte, 4> salt) {
  MessageBuilder(out).begin('R').i32(5).raw(salt).finish();
}
void appendAuthSasl(std::string& out, std::span<const std::string_view> mechanisms) {
  MessageBuilder b(out);
  b.begin('R').i32(10);
  for (auto m : mechanisms) b.cstr(m);
  b.u8(0).finish();
}
void appendAuthSaslContinue(std::string& out, std::string_view data) {
  MessageBuilder(out).begin('R').i32(11).raw(data).finish();
}
void appendAuthSaslFinal(std::string& out, std::string_view data) {
  MessageBuilder(out).begin('R').i32(12).raw(data).finish();
}
void appendNegotiateProtocolVersion(std::string& out, int32_t newestMinor,
                                    std::span<const std::string_view> unrecognized) {
  MessageBuilder b(out);
  b.begin('v').i32(newestMinor).i32(static_cast<int32_t>(unrecognized.size()));
  for (auto u : unrecognized) b.cstr(u);
  b.finish();
}

void appendRowDescription(std::string& out, std::span<const Column> columns) {
  MessageBuilder b(out);
  b.begin('T').i16(static_cast<int16_t>(columns.size()));
  for (const Column& c : columns) {
    b.cstr(c.name).i32(0).i16(0).i32(static_cast<int32_t>(c.typeOid)).i16(-1).i32(-1).i16(0);
  }
  b.finish();
}
void appendDataRow(std::string& out, std::span<const std::string_view> values,
                   std::span<const bool> nulls) {
  MessageBuilder b(out);
  b.begin('D').i16(static_cast<int16_t>(values.size()));
  for (size_t i = 0; i < values.size(); ++i) {
    if (i < nulls.size() && nulls[i]) {
      b.i32(-1);
    } else {
      b.i32(static_cast<int32_t>(values[i].size())).raw(values[i]);
    }
  }
  b.finish();
}
void appendCommandComplete(std::string& out, std::string_view tag) {
  MessageBuilder(out).begin('C').cstr(tag).finish();
}
void appendEmptyQueryResponse(std::string& out) { MessageBuilder(out).begin('I').finish(); }

void appendParseComplete(std::string& out) { MessageBuilder(out).begin('1').finish(); }
void appendBindComplete(std::string& out) { MessageBuilder(out).begin('2').finish(); }
void appendCloseComplete(std::string& out) { MessageBuilder(out).begin('3').finish(); }
void appendNoData(std::string& out) { MessageBuilder(out).begin('n').finish(); }

void appendStartup(std::string& out, std::span<const std::pair<std::string, std::string>> params) {
  MessageBuilder b(out);
  b.begin(0).i32(196608);
  for (auto& [k, v] : params) b.cstr(k).cstr(v);
  b.u8(0).finish();
}
void appendSslRequest(std::string& out) { MessageBuilder(out).begin(0).i32(80877103).finish(); }
void appendCancelRequest(std::string& out, int32_t pid, int32_t key) {
  MessageBuilder(out).begin(0).i32(80877102).i32(pid).i32(key).finish();
}
void appendPasswordMessage(std::string& out, std::string_view password) {
  MessageBuilder(out).begin('p').cstr(password).finish();
}
void appendSaslInitial(std::string& out, std::string_view mechanism, std::string_view data) {
  MessageBuilder(out)
      .begin('p')
      .cstr(mechanism)
      .i32(static_cast<int32_t>(data.size()))
      .raw(data)
      .finish();
}
void appendSaslResponse(std::string& out, std::string_view data) {
  MessageBuilder(out).begin('p').raw(data).finish();
}
void appendQuery(std::string& out, std::string_view sql) {
  MessageBuilder(out).begin('Q').cstr(sql).finish();
}
void appendParse(std::string& out, std::string_view name, std::string_view tail) {
  MessageBuilder(out).begin('P').cstr(name).raw(tail).finish();
}
bool appendBindHead(std::string& out, std::string_view portal, std::string_view statement,
                    size_t restLen) {
  // Checked before writing, term by term, so no sum can wrap even for absurd inputs.
  constexpr size_t kMax = INT32_MAX;
  size_t head = 4;
  for (size_t part : {portal.size() + 1, statement.size() + 1, restLen}) {
    if (part > kMax - head) return false;
    head += part;
  }
  MessageBuilder(out).begin('B').cstr(portal).cstr(statement).finishFollowedBy(restLen);
  return true;
}
void appendDescribe(std::string& out, char kind, std::string_view name) {
  MessageBuilder(out).begin('D').u8(static_cast<uint8_t>(kind)).cstr(name).finish();
}
void appendClose(std::string& out, char kind, std::string_view name) {
  MessageBuilder(out).begin('C').u8(static_cast<uint8_t>(kind)).cstr(name).finish();
}
void appendSync(std::string& out) { MessageBuilder(out).begin('S').finish(); }
void appendFlush(std::string& out) { MessageBuilder(out).begin('H').finish(); }
void appendTerminate(std::string& out) { MessageBuilder(out).begin('X').finish(); }

}  // namespace pgswitch::protocol
