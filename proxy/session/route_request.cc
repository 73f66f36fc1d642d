// Read/write routing of a transaction-mode request, decided before a server is asked for:
// the buffered messages up to the first Sync (or Flush, or the Query) are classified, and
// the request goes to the primary if any of them must. Session rules (tags by database,
// user, application_name) and read-your-writes add their constraints; routing/route_policy
// picks the backend.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <strings.h>

#include "protocol/framing.h"
#include "protocol/messages.h"
#include "health/probe_query.h"
#include "proxy/session/client_session.h"
#include "routing/route_policy.h"

namespace pgswitch::proxy {

using namespace protocol;

namespace {

// A request that has not ended within this many buffered bytes goes to the primary
// unclassified: it is almost certainly a bulk write, and waiting longer would only buffer.
constexpr size_t kRouteScanLimit = 1024 * 1024;

std::string_view untilNul(std::string_view s) {
  size_t z = s.find('\0');
  return z == std::string_view::npos ? s : s.substr(0, z);
}

}  // namespace

std::string_view ClientSession::settingValue(std::string_view name) const {
  for (auto& [k, v] : gucs_)
    if (k == name) return v;
  return {};
}

// The tag of the first rule this session matches ("" = none).
void ClientSession::resolveSessionTag() {
  sessionTag_.clear();
  std::string_view app = settingValue("application_name");
  for (const RouteRule& r : cfg_->routing.rules) {
    if (!r.database.empty() && r.database != database_) continue;
    if (!r.user.empty() && r.user != user_) continue;
    if (!r.applicationName.empty() && r.applicationName != app) continue;
    sessionTag_ = r.tag;
    return;
  }
}

bool ClientSession::decideRoute() {
  route_ = {};
  retryable_ = false;
  const bool isRetry = retryPending_;
  retryPending_ = false;
  if (!isRetry) avoidBackend_ = -1;
  routedWrite_ = true;
  pinOnServer_ = nullptr;
  if (!loggedIn_ || !transactionPooling_) return true;

  ByteQueue& in = client_->in();
  routing::Classifier& classifier = worker_.classifier(*cfg_);
  const bool readOnlySession = settingValue("default_transaction_read_only") == "on";
  bool primary = false, ended = false, unnamedParsed = false;
  int frames = 0;
  char firstType = 0;
  std::string hintTagOwned;
  size_t off = 0;
  auto consider = [&](std::string_view sql) {
    routing::Classification c = classifier.classify(sql);
    if (routing::targetFor(c, readOnlySession) == routing::Target::Primary) primary = true;
    // Session state the command tags do not reveal: pin the client to the server it gets.
    if (c.createsTempTable) pinOnServer_ = "temporary table";
    if (c.sessionAdvisoryLock) pinOnServer_ = "session advisory lock";
    if (c.withHoldCursor) pinOnServer_ = "WITH HOLD cursor";
    if (!c.hintTag.empty() && hintTagOwned.empty()) hintTagOwned = c.hintTag;
  };
  while (!ended) {
    std::array<std::byte, 5> hdr;
    if (!in.copyOut(off, hdr)) break;
    Frame f = readFrame(hdr, cfg_->maxMessageBytes);
    if (f.status == FrameStatus::Invalid) {
      primary = true;  // the relay reports the bad message; no need to decide anything
      break;
    }
    if (off + f.total > in.size()) {
      if (off + f.total > kRouteScanLimit) primary = true;
      break;
    }
    switch (f.type) {
      case fe::Query:
      case fe::Parse: {
        // The first message (almost always the only one to classify) is read in place
        // unless it spans chunks; later ones are copied out.
        std::span<const std::byte> bytes;
        if (off == 0) {
          bytes = in.contiguous(f.total, routeScratch_).subspan(5);
        } else {
          routeScratch_.resize(f.total - 5);
          in.copyOut(off + 5, routeScratch_);
          bytes = routeScratch_;
        }
        std::string_view body(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        if (f.type == fe::Query) {
          consider(untilNul(body));
          ended = true;
        } else {
          auto pv = parseParse(bytes);
          if (!pv) {
            primary = true;
          } else {
            consider(pv->sql);
            unnamedParsed |= pv->name.empty();
          }
        }
        break;
      }
      case fe::Bind: {
        // Only the names are needed: parameters (possibly megabytes) are not copied. Names
        // longer than the prefix make parseBindHead fail, which routes to the primary.
        routeScratch_.resize(std::min<size_t>(f.total - 5, 1024));
        in.copyOut(off + 5, routeScratch_);
        auto bh = parseBindHead(routeScratch_);
        const ClientStatement* cs = bh && !bh->statement.empty() ? stmts_.find(bh->statement)
                                                                 : nullptr;
        // The unnamed statement of an earlier batch is not tracked: play safe.
        if (cs) {
          consider(untilNul(cs->parseTail));
        } else if (!bh || !bh->statement.empty() || !unnamedParsed) {
          primary = true;
        }
        break;
      }
      case fe::Sync:
      case fe::Flush:
        ended = true;
        break;
      case fe::Describe:
      case fe::Execute:
      case fe::Close:
        break;
      default:  // FunctionCall, COPY data outside COPY, Terminate, unknown: the primary
        primary = true;
        break;
    }
    if (frames++ == 0) firstType = f.type;
    off += f.total;
  }
  if (!primary && !ended) {
    if (in.size() <= kRouteScanLimit) return false;  // the request is not complete yet
    primary = true;
  }
  if (!cfg_->routing.readWriteSplit) primary = true;
  route_.target = primary ? routing::Target::Primary : routing::Target::Replica;
  routedWrite_ = primary;
  // A lone autocommit read Query can be sent again elsewhere if its replica dies before
  // answering: keep a copy (the buffer's capacity is reused, so no allocation per request).
  retryable_ = false;
  if (!primary && !isRetry && frames == 1 && firstType == fe::Query && off <= kRetryCopyLimit) {
    retryBuf_.resize(off);
    in.copyOut(0, retryBuf_);
    retryable_ = true;
  }
  if (!primary) {
    routeTag_ = !hintTagOwned.empty() ? std::move(hintTagOwned) : sessionTag_;
    route_.tag = routeTag_;
    if (cfg_->routing.consistency == Consistency::ReadYourWrites) {
      if (rywLsn_ == UINT64_MAX && worker_.nowMs() - rywSetMs_ > kRywBlindMs) rywLsn_ = 0;
      route_.minReplayLsn = rywLsn_;
    }
  }
  return true;
}

int ClientSession::firstStatementWrites() {
  ByteQueue& in = client_->in();
  std::array<std::byte, 5> hdr;
  if (!in.copyOut(0, hdr)) return -1;
  Frame f = readFrame(hdr, cfg_->maxMessageBytes);
  if (f.status == FrameStatus::Invalid) return 0;  // the relay reports it
  if (f.type != fe::Query && f.type != fe::Parse && f.type != fe::Bind) return 0;
  if (f.total > kRouteScanLimit) return 0;
  if (in.size() < f.total) return -1;
  auto bytes = in.contiguous(f.total, routeScratch_).subspan(5);
  std::string_view sql;
  if (f.type == fe::Query) {
    sql = untilNul(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  } else if (f.type == fe::Parse) {
    auto pv = parseParse(bytes);
    if (!pv) return 0;
    sql = pv->sql;
  } else {
    auto bh = parseBindHead(bytes);
    const ClientStatement* cs =
        bh && !bh->statement.empty() ? stmts_.find(bh->statement) : nullptr;
    if (!cs) return 0;
    sql = untilNul(cs->parseTail);
  }
  // SQL EXECUTE counts as a write for routing (the prepared text is not known), but here the
  // statement was prepared on this very server: let it run; the server knows what it does.
  size_t i = sql.find_first_not_of(" \t\r\n");
  if (i != sql.npos && sql.size() >= i + 8 && strncasecmp(sql.data() + i, "execute", 7) == 0 &&
      std::isspace(static_cast<unsigned char>(sql[i + 7])))
    return 0;
  routing::Classification c = worker_.classifier(*cfg_).classify(sql);
  return c.write || c.kind == routing::StatementKind::Write ? 1 : 0;
}

bool ClientSession::pinnedOnReplica() const {
  if (!server_ || !pool_) return false;
  auto topo = worker_.runtime().topology();
  int b = pool_->backend();
  return b >= 0 && b < static_cast<int>(topo->backends.size()) &&
         topo->backends[b].role == routing::Role::Replica;
}

void ClientSession::trackOutstanding(int backend) {
  if (outstandingBackend_ >= 0) worker_.addOutstanding(outstandingBackend_, -1);
  outstandingBackend_ = backend;
  if (backend >= 0) worker_.addOutstanding(backend, +1);
}

// Read-your-writes: right after the ReadyForQuery of a write transaction went to the client,
// ask the same server for its WAL position. The client is not waiting for this; only a
// request it sends within that round trip waits for the server to be released.
bool ClientSession::needCommitLsn() const {
  if (cfg_->routing.consistency != Consistency::ReadYourWrites || !routedWrite_ || !server_ ||
      !pool_ || lsnPending_)
    return false;
  return pool_->backend() == worker_.runtime().topology()->primary;
}

void ClientSession::fetchCommitLsn() {
  lsnPending_ = true;
  client_->stopReading();
  server_->runInternal("SELECT pg_current_wal_insert_lsn()");
}

void ClientSession::onCommitLsn() {
  lsnPending_ = false;
  routedWrite_ = false;
  std::optional<uint64_t> parsed =
      server_ ? health::parseLsn(server_->internalValue()) : std::nullopt;
  uint64_t lsn = parsed.value_or(0);
  if (!parsed) {
    rywLsn_ = UINT64_MAX;  // unknown: read from the primary for a while
    rywSetMs_ = worker_.nowMs();
  } else if (rywLsn_ == UINT64_MAX || lsn > rywLsn_) {
    rywLsn_ = lsn;
  }
  client_->startReading();
  maybeReleaseAfterTransaction();
}

// The replica running a lone read Query died before a byte of the answer reached the
// client: put the Query back in front of the client's input and route it again, avoiding that
// backend (the health thread has not marked it down yet). Once per request.
bool ClientSession::retryLostRead(int lostBackend) {
  if (!retryable_ || !transactionPooling_) return false;
  retryable_ = false;
  retryPending_ = true;
  ByteQueue& in = client_->in();
  routeScratch_.resize(in.size());
  in.copyOut(0, routeScratch_);
  in.clear();
  in.append(retryBuf_);
  in.append(routeScratch_);
  avoidBackend_ = lostBackend;
  spdlog::info("client {}: read lost with backend {}; retrying it on another backend",
               client_->peerName(), lostBackend);
  return true;
}

int ClientSession::chooseBackend() {
  auto topo = worker_.runtime().topology();
  routing::RoutePolicy policy;
  policy.maxLagBytes = cfg_->routing.maxLagBytes;
  policy.maxLagMs = cfg_->routing.maxLagMs;
  policy.fallback = cfg_->routing.fallbackError ? routing::Fallback::Error
                                                : routing::Fallback::Primary;
  route_.avoid = avoidBackend_;
  routing::RoutePick pick =
      routing::pickBackend(*topo, policy, route_, worker_.outstanding(), worker_.random());
  switch (pick.outcome) {
    case routing::RoutePick::Outcome::Backend: {
      if (pick.fellBack) routedWrite_ = false;  // a read on the primary: no LSN to record
      BackendCounters& c = worker_.counters(pick.index);
      if (route_.target == routing::Target::Primary) {
        ++c.writes;
      } else {
        ++c.reads;
      }
      return pick.index;
    }
    case routing::RoutePick::Outcome::Hold:
      return -1;
    case routing::RoutePick::Outcome::Refuse:
      return -2;
  }
  return -1;
}

}  // namespace pgswitch::proxy
