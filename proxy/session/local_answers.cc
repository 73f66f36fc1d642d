// Locally answered requests: what the client sees is what one PostgreSQL session would send.
#include "proxy/session/local_answers.h"

#include <array>

#include "protocol/builder.h"
#include "protocol/framing.h"
#include "protocol/messages.h"
#include "routing/session_sql.h"

namespace pgswitch::proxy {

using namespace protocol;

bool answerParse(ByteQueue& in, size_t maxMessage, ClientStatements& stmts,
                 const std::function<bool(uint64_t)>& known, std::vector<std::byte>& scratch,
                 std::string& out) {
  Frame f = readFrame(in, maxMessage);
  if (f.status != FrameStatus::Complete || f.type != fe::Parse) return false;
  std::array<std::byte, 5> hdr;
  if (!in.copyOut(f.total, hdr)) return false;
  Frame sync = readFrame(hdr, 8);
  if (sync.status != FrameStatus::Complete || sync.type != fe::Sync || sync.length != 4)
    return false;
  auto msg = in.contiguous(f.total, scratch);
  auto pv = parseParse(msg.subspan(5));
  if (!pv || pv->name.empty() || stmts.find(pv->name)) return false;
  std::string_view tail = asText(msg.subspan(5 + pv->name.size() + 1));
  uint64_t h = statementHash(asBytes(tail));
  if (!known(h)) return false;
  stmts.put(pv->name, ClientStatement{h, std::string(tail), {}});
  in.consume(f.total + sync.total);
  appendParseComplete(out);
  appendReadyForQuery(out, 'I');
  return true;
}

namespace {

// The rest of an unnamed-statement DEALLOCATE batch must be exactly: Bind "" "" (no
// parameters), optional Describe portal "", Execute "", Sync. Returns the batch's length
// after the Parse (0: not such a batch) and appends the answers.
size_t deallocateBatch(const ByteQueue& in, size_t parseTotal, std::string& out) {
  size_t total = parseTotal;
  bool bound = false, executed = false;
  for (;;) {
    std::array<std::byte, 5> hdr;
    if (!in.copyOut(total, hdr)) return 0;
    Frame g = readFrame(hdr, 512);
    if (g.status == FrameStatus::Invalid || total + g.total > in.size() || g.total > 64) return 0;
    std::array<std::byte, 64> body{};
    in.copyOut(total + 5, std::span(body.data(), g.total - 5));
    if (g.type == fe::Bind && !bound) {
      // "" portal, "" statement, int16 0 formats, int16 0 params, int16 result formats...
      if (g.total < 5 + 2 + 4 || body[0] != std::byte{0} || body[1] != std::byte{0} ||
          body[2] != std::byte{0} || body[3] != std::byte{0} || body[4] != std::byte{0} ||
          body[5] != std::byte{0})
        return 0;
      appendBindComplete(out);
      bound = true;
    } else if (g.type == fe::Describe && bound && !executed) {
      if (body[0] != std::byte{'P'}) return 0;
      appendNoData(out);
    } else if (g.type == fe::Execute && bound && !executed) {
      executed = true;
      appendCommandComplete(out, "DEALLOCATE");
    } else if (g.type == fe::Sync && executed) {
      return total + g.total - parseTotal;
    } else {
      return 0;
    }
    total += g.total;
  }
}

}  // namespace

bool answerDeallocate(ByteQueue& in, size_t maxMessage, ClientStatements& stmts, char txnStatus,
                      std::vector<std::byte>& scratch, std::string& out) {
  Frame f = readFrame(in, maxMessage);
  if (f.status != FrameStatus::Complete || f.total > 512 || f.total < 6) return false;
  if (f.type != fe::Query && f.type != fe::Parse) return false;
  // Most statements are told apart by their first byte, before the message is copied and
  // parsed: a Parse's name must be empty (one 0 byte), then comes its text.
  std::array<std::byte, 2> head{};
  if (!in.copyOut(5, head)) return false;
  const bool parse = f.type == fe::Parse;
  if (parse && head[0] != std::byte{0}) return false;
  if (!routing::mayStartDeallocate(static_cast<char>(head[parse ? 1 : 0]))) return false;
  auto msg = in.contiguous(f.total, scratch);
  std::string_view sql;
  if (f.type == fe::Query) {
    sql = std::string_view(reinterpret_cast<const char*>(msg.data()) + 5, f.total - 6);
  } else {
    auto pv = parseParse(msg.subspan(5));
    if (!pv || !pv->name.empty() || pv->paramCount != 0) return false;
    sql = pv->sql;
  }
  auto name = routing::deallocateTarget(sql);
  if (!name || !stmts.find(*name)) return false;
  std::string answer;
  size_t total = f.total;
  if (f.type == fe::Parse) {
    appendParseComplete(answer);
    size_t rest = deallocateBatch(in, f.total, answer);
    if (rest == 0) return false;
    total += rest;
  } else {
    appendCommandComplete(answer, "DEALLOCATE");
  }
  stmts.erase(*name);
  in.consume(total);
  appendReadyForQuery(answer, txnStatus);
  out += answer;
  return true;
}

bool answerTxnEnd(ByteQueue& in, size_t maxMessage, std::string& out) {
  Frame f = readFrame(in, maxMessage);
  if (f.status != FrameStatus::Complete || f.type != fe::Query || f.total > 64 || f.total < 6)
    return false;
  std::array<char, 64> text{};
  size_t n = f.total - 6;
  if (!in.copyOut(5, std::span(reinterpret_cast<std::byte*>(text.data()), n))) return false;
  routing::TxnEnd end = routing::bareTxnEnd(std::string_view(text.data(), n));
  if (end == routing::TxnEnd::None) return false;
  in.consume(f.total);
  bool rollback = end == routing::TxnEnd::Rollback;
  appendNotice(out, ErrorSpec{"WARNING", "25P01", "there is no transaction in progress"});
  appendCommandComplete(out, rollback ? "ROLLBACK" : "COMMIT");
  appendReadyForQuery(out, 'I');
  return true;
}

bool dropRequest(ByteQueue& in, size_t maxMessage) {
  for (;;) {
    Frame f = readFrame(in, maxMessage);
    if (f.status != FrameStatus::Complete) return false;
    in.consume(f.total);
    if (f.type == fe::Query || f.type == fe::Sync || f.type == fe::FunctionCall) return true;
  }
}

}  // namespace pgswitch::proxy
