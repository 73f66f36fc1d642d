// Read/write routing of a transaction-mode request: the buffered messages up to the first
// Sync (or Flush, or the Query) are classified, and the request goes to the primary if any of
// them must. Session rules (tags) and read-your-writes add their constraints.
#include "proxy/session/request_route.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <utility>

#include "protocol/framing.h"
#include "protocol/messages.h"
#include "proxy/session/session_state.h"
#include "routing/session_sql.h"

namespace pgswitch::proxy {

using namespace protocol;

namespace {

// A request that has not ended within this many buffered bytes goes to the primary
// unclassified: it is almost certainly a bulk write, and waiting longer would only buffer.
constexpr size_t kRouteScanLimit = 1024 * 1024;

// Where a request is copied to be read whole: one per worker thread, used only within one call
// (issue 14: not a buffer in every session). It keeps the size of the largest request it held
// (at most kRouteScanLimit, or a lost request's input for a retry): per worker, not per client.
std::vector<std::byte>& scratchBuf() {
  thread_local std::vector<std::byte> buf;
  return buf;
}

// Two health rounds and a margin: the primary's LSN in the snapshot published after that was
// read after the commit.
uint64_t untrackedBlindMs(const Config& cfg) { return 2 * uint64_t(cfg.health.periodMs) + 1000; }

std::string_view untilNul(std::string_view s) {
  size_t z = s.find('\0');
  return z == std::string_view::npos ? s : s.substr(0, z);
}

}  // namespace

void RequestRoute::resolveSessionTag(const Config& cfg, std::string_view database,
                                     std::string_view user, std::string_view applicationName) {
  sessionTag_ = nullptr;
  for (const RouteRule& r : cfg.routing.rules) {
    if (!r.database.empty() && r.database != database) continue;
    if (!r.user.empty() && r.user != user) continue;
    if (!r.applicationName.empty() && r.applicationName != applicationName) continue;
    sessionTag_ = r.tag.empty() ? nullptr : &r.tag;
    return;
  }
}

void RequestRoute::replayOnPrimary() {
  toPrimary();
  routedWrite_ = true;  // its commit's LSN is asked for, as for the original
}

void RequestRoute::toPrimary() {
  if (pending_) pending_->route = {};  // none is the same as the default
  retryable_ = false;
  retryPending_ = false;
  hasRetryCopy_ = false;
  forcePrimary_ = false;
  avoid_ = -1;
  routedWrite_ = false;  // login or session mode: no commit LSN is asked for
}

bool RequestRoute::decide(const ByteQueue& in, const Config& cfg, routing::Classifier& classifier,
                          const ClientStatements& names, SessionState& state, uint64_t nowMs,
                          const routing::VolatileFunctions* volatileFns) {
  if (pending_) pending_->route = {};  // the primary; a read on a replica fills it in below
  retryable_ = false;
  hasRetryCopy_ = false;
  const bool isRetry = retryPending_;
  retryPending_ = false;
  const bool forcePrimary = std::exchange(forcePrimary_, false);
  if (!isRetry) avoid_ = -1;
  routedWrite_ = true;
  state.pinOnLink(nullptr);
  if (!cfg.routesRequests()) return true;
  functionNotes_.catalogChanged |= std::exchange(functionDdlBefore_, false);

  const bool readOnlySession = state.setting("default_transaction_read_only") == "on";
  bool primary = false, ended = false, unnamedParsed = false, callsVolatile = false;
  // An extended batch can be taken back whole (retry copy) unless it names a statement or
  // closes one: the client's names would already have changed.
  bool namesChange = false, endedBySync = false;
  int frames = 0;
  char firstType = 0;
  std::string hintTagOwned;
  size_t off = 0;
  auto consider = [&](std::string_view sql) {
    const routing::Classification& c = classifier.classify(sql);
    const routing::Target t = cfg.sessionReads()
                                  ? routing::sessionReadsTargetFor(c, readOnlySession)
                                  : routing::targetFor(c, readOnlySession);
    if (t == routing::Target::Primary) primary = true;
    // A volatile function may write; in a read-only session it could not on the primary
    // either, and an explicit replica hint is the client's call.
    if (c.kind == routing::StatementKind::Read && !readOnlySession &&
        c.hint != routing::Classification::Hint::Replica &&
        routing::callsVolatileFunction(c, volatileFns)) {
      callsVolatile = true;
    }
    if (c.changesFunctions) functionNotes_.catalogChanged = functionDdlBefore_ = true;
    // Session state the command tags do not reveal: pin the client to the server it gets.
    if (c.createsTempTable) state.pinOnLink("temporary table");
    if (c.sessionAdvisoryLock) state.pinOnLink("session advisory lock");
    if (c.withHoldCursor) state.pinOnLink("WITH HOLD cursor");
    // session_reads: the value set_config() gives is neither reported nor read back, so the
    // session stays where it ran (the primary: set_config is a write function).
    if (c.callsSetConfig && cfg.sessionReads()) state.pinOnLink("set_config()");
    if (!c.hintTag.empty() && hintTagOwned.empty()) hintTagOwned = c.hintTag;
  };
  while (!ended) {
    std::array<std::byte, 5> hdr;
    if (!in.copyOut(off, hdr)) break;
    Frame f = readFrame(hdr, cfg.maxMessageBytes);
    if (f.status == FrameStatus::Invalid) {
      primary = true;  // the relay reports the bad message; no need to decide anything
      break;
    }
    // Not all here: wait for it (below), even for a message larger than the scan limit,
    // until the limit's worth has arrived. A client that sends the header of a huge message
    // and then nothing must not hold a server meanwhile.
    if (off + f.total > in.size()) break;
    switch (f.type) {
      case fe::Query:
      case fe::Parse: {
        // The first message (almost always the only one to classify) is read in place
        // unless it spans chunks; later ones are copied out.
        std::span<const std::byte> bytes;
        if (off == 0) {
          bytes = in.contiguous(f.total, scratchBuf()).subspan(5);
        } else {
          scratchBuf().resize(f.total - 5);
          in.copyOut(off + 5, scratchBuf());
          bytes = scratchBuf();
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
            namesChange |= !pv->name.empty();
          }
        }
        break;
      }
      case fe::Bind: {
        // Only the names are needed: parameters (possibly megabytes) are not copied. Names
        // longer than the prefix make parseBindHead fail, which routes to the primary.
        scratchBuf().resize(std::min<size_t>(f.total - 5, 1024));
        in.copyOut(off + 5, scratchBuf());
        auto bh = parseBindHead(scratchBuf());
        const ClientStatement* cs =
            bh && !bh->statement.empty() ? names.find(bh->statement) : nullptr;
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
        endedBySync = f.type == fe::Sync;
        break;
      case fe::Close:
        namesChange = true;
        break;
      case fe::Describe:
      case fe::Execute:
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
  if (!cfg.routing.readWriteSplit || forcePrimary) primary = true;
  if (callsVolatile && !primary) {
    primary = true;
    functionNotes_.toPrimary = true;
  }
  routedWrite_ = primary;
  // A lone autocommit read (a Query, or an extended batch up to its Sync) can be sent again
  // elsewhere if its replica dies or refuses it before answering: keep a copy (the
  // buffer's capacity is reused, so no allocation per request).
  const bool loneRead = (frames == 1 && firstType == fe::Query) ||
                        (firstType != fe::Query && endedBySync && !namesChange);
  if (!primary && !isRetry && loneRead && off <= kRetryCopyLimit) {
    pending().retryBuf.resize(off);
    in.copyOut(0, pending().retryBuf);
    pending().consumedAtCopy = in.consumedTotal();
    retryable_ = true;
    hasRetryCopy_ = true;
  }
  if (!primary) {
    routing::RouteRequest& route = pending().route;
    route.target = routing::Target::Replica;
    std::string& tag = pending().tag;
    if (!hintTagOwned.empty()) {
      tag = std::move(hintTagOwned);
    } else if (sessionTag_) {
      tag = *sessionTag_;
    } else {
      tag.clear();
    }
    route.tag = tag;
    // What the read must see is fixed now, when it starts: a commit acknowledged to anyone
    // before this point has already raised the floor (strong).
    switch (cfg.routing.consistency) {
      case Consistency::Eventual:
        break;
      case Consistency::ReadYourWrites:
        if (blind_ && nowMs - blindSinceMs_ > kBlindMs) {
          blind_ = false;
          floorLsn_ = 0;
        }
        route.minReplayLsn = blind_ ? UINT64_MAX : floorLsn_;
        break;
      case Consistency::Strong:
        if (floor_) route.minReplayLsn = floor_->blind(nowMs) ? UINT64_MAX : floor_->lsn();
        break;
    }
  }
  return true;
}

routing::RoutePick RequestRoute::pick(const routing::Topology& topo, const Config& cfg,
                                      const ReplayPositions& learned,
                                      std::span<const int> outstanding, uint64_t random) {
  routing::RouteRequest primaryRoute;  // no Pending: the default route, without making one
  routing::RouteRequest& route = pending_ ? pending_->route : primaryRoute;
  routing::RoutePolicy policy;
  policy.maxLagBytes = cfg.routing.maxLagBytes;
  policy.maxLagMs = cfg.routing.maxLagMs;
  policy.fallback =
      cfg.routing.fallbackError ? routing::Fallback::Error : routing::Fallback::Primary;
  route.avoid = avoid_;
  route.learnedReplayLsn = {};
  if (route.target == routing::Target::Replica && route.minReplayLsn) {
    // A floor left by a commit whose LSN was not known is settled by the primary's LSN from
    // a health check taken after the blind period began.
    if (cfg.routing.consistency == Consistency::Strong && floor_ && topo.usable(topo.primary) &&
        route.minReplayLsn != UINT64_MAX) {
      floor_->caughtUp(topo.backends[topo.primary].replayLsn);
      route.minReplayLsn = std::max(route.minReplayLsn, floor_->lsn());
    }
    // Copied for this pick only: one array per worker thread, not 512 bytes in every session.
    thread_local std::array<uint64_t, 64> learnedNow;
    size_t n = std::min(topo.backends.size(), learnedNow.size());
    for (size_t i = 0; i < n; ++i) learnedNow[i] = learned.get(static_cast<int>(i));
    route.learnedReplayLsn = std::span<const uint64_t>(learnedNow.data(), n);
    policy.verifyMaxLagMs = static_cast<int64_t>(cfg.routing.maxWaitMs);
  }
  if (std::exchange(readOnPrimary_, false) && route.target == routing::Target::Replica) {
    // A read no replica could serve in time: the primary, counted as a read there.
    routing::RouteRequest onPrimary = route;
    onPrimary.target = routing::Target::Primary;
    routing::RoutePick p = routing::pickBackend(topo, policy, onPrimary, outstanding, random);
    p.fellBack = true;
    routedWrite_ = false;
    return p;
  }
  routing::RoutePick p = routing::pickBackend(topo, policy, route, outstanding, random);
  if (p.fellBack) routedWrite_ = false;  // a read on the primary: no LSN to record
  return p;
}

void RequestRoute::readOnPrimary() {
  readOnPrimary_ = true;
  routedWrite_ = false;
}

int RequestRoute::firstStatementWrites(const ByteQueue& in, const Config& cfg,
                                       routing::Classifier& classifier,
                                       const ClientStatements& names,
                                       const routing::VolatileFunctions* volatileFns) {
  std::array<std::byte, 5> hdr;
  if (!in.copyOut(0, hdr)) return -1;
  Frame f = readFrame(hdr, cfg.maxMessageBytes);
  if (f.status == FrameStatus::Invalid) return 0;  // the relay reports it
  if (f.type != fe::Query && f.type != fe::Parse && f.type != fe::Bind) return 0;
  if (f.total > kRouteScanLimit) return 0;
  if (in.size() < f.total) return -1;
  auto bytes = in.contiguous(f.total, scratchBuf()).subspan(5);
  std::string_view sql;
  if (f.type == fe::Query) {
    sql = untilNul(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  } else if (f.type == fe::Parse) {
    auto pv = parseParse(bytes);
    if (!pv) return 0;
    sql = pv->sql;
  } else {
    auto bh = parseBindHead(bytes);
    const ClientStatement* cs = bh && !bh->statement.empty() ? names.find(bh->statement) : nullptr;
    if (!cs) return 0;
    sql = untilNul(cs->parseTail);
  }
  // SQL EXECUTE counts as a write for routing (the prepared text is not known), but here the
  // statement was prepared on this very server: let it run; the server knows what it does.
  if (routing::isSqlExecute(sql)) return 0;
  const routing::Classification& c = classifier.classify(sql);
  if (c.kind == routing::StatementKind::Read && routing::callsVolatileFunction(c, volatileFns)) {
    return 1;
  }
  // session_reads: a transaction or session state pipelined behind a read must not start on
  // the replica (the session's own primary server keeps those).
  if (cfg.sessionReads() && routing::sessionReadsTargetFor(c, false) == routing::Target::Primary)
    return 1;
  return c.write || c.kind == routing::StatementKind::Write ? 1 : 0;
}

bool RequestRoute::continuesBatch(const ByteQueue& in) {
  std::array<std::byte, 5> hdr;
  if (!in.copyOut(0, hdr)) return true;
  switch (static_cast<char>(hdr[0])) {
    case fe::Query:
    case fe::Parse:
      return false;
    case fe::Bind: {
      scratchBuf().resize(std::min<size_t>(in.size(), 1024 + 5));
      in.copyOut(0, scratchBuf());
      auto bh = parseBindHead(std::span<const std::byte>(scratchBuf()).subspan(5));
      return !bh || bh->statement.empty();
    }
    default:  // Execute (the next rows of a portal), Describe, Close, ...
      return true;
  }
}

bool RequestRoute::retryLostRead(ByteQueue& in, int lostBackend) {
  if (!retryable_) return false;
  retryable_ = hasRetryCopy_ = false;
  retryPending_ = true;
  putBackCopy(in);
  avoid_ = lostBackend;
  return true;
}

void RequestRoute::putBackCopy(ByteQueue& in) {
  const std::vector<std::byte>& copy = pending().retryBuf;
  const uint64_t sent = in.consumedTotal() - pending().consumedAtCopy;
  if (sent < copy.size()) in.consume(copy.size() - sent);  // the unsent rest of the request
  scratchBuf().resize(in.size());
  in.copyOut(0, scratchBuf());
  in.clear();
  in.append(copy);
  in.append(scratchBuf());
}

bool RequestRoute::retryOnPrimary(ByteQueue& in) {
  if (!hasRetryCopy_) return false;
  hasRetryCopy_ = retryable_ = false;
  retryPending_ = true;
  forcePrimary_ = true;
  putBackCopy(in);
  avoid_ = -1;
  return true;
}

void RequestRoute::shrinkIdle() {
  if (retryable_ || retryPending_) return;
  hasRetryCopy_ = false;
  pending_.reset();  // the next request's decide() starts from the default route anyway
}

RequestRoute::Pending& RequestRoute::pending() {
  if (!pending_) pending_ = std::make_unique<Pending>();
  return *pending_;
}

const routing::RouteRequest RequestRoute::kNoRoute{};

void RequestRoute::retryElsewhere(int backend) {
  avoid_ = backend;
  retryPending_ = true;
}

bool RequestRoute::wantsCommitLsn(const Config& cfg) const {
  return cfg.routing.consistency != Consistency::Eventual && cfg.routing.readWriteSplit &&
         routedWrite_;
}

bool RequestRoute::holdsReady(const Config& cfg) const {
  return cfg.routing.consistency == Consistency::Strong && wantsCommitLsn(cfg);
}

void RequestRoute::commitLsn(std::optional<uint64_t> lsn, uint64_t nowMs, const Config& cfg) {
  routedWrite_ = false;
  if (floor_) {
    if (lsn) {
      floor_->raise(*lsn);
    } else {
      floor_->unknownCommit(nowMs + std::max(kStrongBlindMs, untrackedBlindMs(cfg)));
    }
  }
  if (!lsn) {
    blind_ = true;  // unknown: read from the primary for a while
    blindSinceMs_ = nowMs;
  } else if (blind_ || *lsn > floorLsn_) {
    blind_ = false;
    floorLsn_ = *lsn;
  }
}

void RequestRoute::untrackedCommit(uint64_t nowMs, const Config& cfg) {
  routedWrite_ = false;
  if (floor_) floor_->unknownCommit(nowMs + untrackedBlindMs(cfg));
}

}  // namespace pgswitch::proxy
