// The probe statement, connection string quoting and result parsing.
#include "health/probe_query.h"

#include <charconv>
#include <cstdio>

namespace pgswitch::health {

const char* const kProbeQuery =
    "SELECT r.rec,"
    " CASE WHEN r.rec THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver),"
    " (pg_control_checkpoint()).timeline_id)"
    " ELSE greatest((pg_control_checkpoint()).timeline_id,"
    " ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int) END,"
    " CASE WHEN r.rec THEN NULL ELSE pg_current_wal_lsn() END,"
    " pg_last_wal_receive_lsn(),"
    " pg_last_wal_replay_lsn(),"
    " (extract(epoch FROM pg_last_xact_replay_timestamp()) * 1000000)::int8,"
    " (extract(epoch FROM now()) * 1000000)::int8"
    " FROM (SELECT pg_is_in_recovery() AS rec) r";

ProbeResult probeFailure(std::string error) {
  ProbeResult r;
  r.ok = false;
  r.error = std::move(error);
  return r;
}

std::string quoteConnValue(std::string_view v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  out += '\'';
  return out;
}

std::string connectionString(const PgLogin& login, std::string_view host, int port,
                             std::string_view applicationName) {
  std::string out;
  auto add = [&out](std::string_view key, std::string_view value) {
    if (!out.empty()) out += ' ';
    out += key;
    out += '=';
    out += quoteConnValue(value);
  };
  add("host", host);
  add("port", std::to_string(port));
  add("user", login.user);
  if (!login.password.empty()) add("password", login.password);
  add("dbname", login.database);
  add("application_name", applicationName);
  if (!login.sslmode.empty()) add("sslmode", login.sslmode);
  if (!login.sslrootcert.empty()) add("sslrootcert", login.sslrootcert);
  if (!login.sslcert.empty()) add("sslcert", login.sslcert);
  if (!login.sslkey.empty()) add("sslkey", login.sslkey);
  return out;
}

namespace {

bool parseHex32(std::string_view t, uint32_t& out) {
  if (t.empty() || t.size() > 8) return false;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), out, 16);
  return ec == std::errc() && p == t.data() + t.size();
}

template <typename T>
bool parseInt(std::string_view t, T& out) {
  if (t.empty()) return false;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), out);
  return ec == std::errc() && p == t.data() + t.size();
}

}  // namespace

std::optional<uint64_t> parseLsn(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  uint32_t hi = 0, lo = 0;
  if (!parseHex32(text.substr(0, slash), hi) || !parseHex32(text.substr(slash + 1), lo)) {
    return std::nullopt;
  }
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

uint64_t insertLsnAsRecordEnd(uint64_t lsn) {
  constexpr uint64_t kPage = 8192, kShortHeader = 24, kLongHeader = 40;
  uint64_t off = lsn % kPage;
  return off == kShortHeader || off == kLongHeader ? lsn - off : lsn;
}

std::string formatLsn(uint64_t lsn) {
  char buf[24];
  snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(lsn >> 32),
           static_cast<unsigned>(lsn & 0xffffffffu));
  return buf;
}

ProbeResult parseProbeRow(const std::vector<std::optional<std::string>>& cols) {
  if (cols.size() != kProbeColumns) {
    return probeFailure("probe returned " + std::to_string(cols.size()) + " columns, expected " +
                        std::to_string(kProbeColumns));
  }
  ProbeResult r;
  r.ok = true;
  if (!cols[0] || (*cols[0] != "t" && *cols[0] != "f")) {
    return probeFailure("probe: bad pg_is_in_recovery() value");
  }
  r.inRecovery = *cols[0] == "t";
  if (!cols[1] || !parseInt(*cols[1], r.timeline)) {
    return probeFailure("probe: bad timeline value");
  }
  auto lsn = [&](int i, uint64_t& out) -> bool {
    if (!cols[i]) return true;  // NULL → 0
    auto v = parseLsn(*cols[i]);
    if (!v) return false;
    out = *v;
    return true;
  };
  if (!lsn(2, r.currentLsn)) return probeFailure("probe: bad current LSN");
  if (!lsn(3, r.receiveLsn)) return probeFailure("probe: bad receive LSN");
  if (!lsn(4, r.replayLsn)) return probeFailure("probe: bad replay LSN");
  if (!r.inRecovery && cols[2] == std::nullopt) {
    return probeFailure("probe: primary without a current LSN");
  }
  if (cols[5]) {
    if (!parseInt(*cols[5], r.lastReplayUs)) return probeFailure("probe: bad replay timestamp");
    r.hasReplayTimestamp = true;
  }
  if (!cols[6] || !parseInt(*cols[6], r.nowUs)) return probeFailure("probe: bad now() value");
  return r;
}

const char* const kReplayQuery = "SELECT pg_last_wal_replay_lsn()";

ProbeResult parseReplayRow(const std::vector<std::optional<std::string>>& cols) {
  if (cols.size() != 1) return probeFailure("replay position: expected one column");
  if (!cols[0]) return probeFailure("replay position: not a replica (NULL)");
  auto lsn = parseLsn(*cols[0]);
  if (!lsn) return probeFailure("replay position: bad LSN");
  ProbeResult r;
  r.ok = true;
  r.inRecovery = true;
  r.replayLsn = *lsn;
  return r;
}

}  // namespace pgswitch::health
