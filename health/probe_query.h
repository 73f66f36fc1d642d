// The health probe as data: the one SQL statement every check runs, the libpq connection
// string, and the parsing of the result row into a ProbeResult. No I/O here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "health/settings.h"

namespace pgswitch::health {

// What one check learned about one backend (or why it failed).
struct ProbeResult {
  bool ok = false;
  std::string error;  // why the check failed, when !ok

  bool inRecovery = false;  // pg_is_in_recovery()
  uint32_t timeline = 0;    // see kProbeQuery
  uint64_t currentLsn = 0;  // pg_current_wal_lsn(), primaries only (0 on replicas)
  uint64_t receiveLsn = 0;  // pg_last_wal_receive_lsn(), 0 when NULL
  uint64_t replayLsn = 0;   // pg_last_wal_replay_lsn(), 0 when NULL
  bool hasReplayTimestamp = false;
  int64_t lastReplayUs = 0;  // pg_last_xact_replay_timestamp(), µs since the Unix epoch
  int64_t nowUs = 0;         // the server's now(), µs since the Unix epoch
};

ProbeResult probeFailure(std::string error);

// One statement, CASE on pg_is_in_recovery() so that primary-only functions never run on a
// replica. Columns: in_recovery, timeline, current_lsn, receive_lsn, replay_lsn,
// replay_ts_us, now_us.
// Timeline on a primary: the greater of pg_control_checkpoint().timeline_id and the timeline
// of the current WAL file; the checkpoint's lags behind right after a promotion until the
// (spread) end-of-recovery checkpoint finishes, the WAL file name's does not.
// Timeline on a replica: pg_stat_wal_receiver.received_tli, falling back to the last
// restartpoint's timeline when no WAL receiver runs (or the health user may not see it).
extern const char* const kProbeQuery;
inline constexpr int kProbeColumns = 7;

// libpq key=value connection string; every value single-quoted with \ and ' escaped.
std::string connectionString(const PgLogin& login, std::string_view host, int port,
                             std::string_view applicationName = "pgswitch_health");
std::string quoteConnValue(std::string_view v);

// "16/B374D848" → 0x16B374D848; nullopt when malformed.
std::optional<uint64_t> parseLsn(std::string_view text);
std::string formatLsn(uint64_t lsn);
// pg_current_wal_insert_lsn() points past the page header when nothing has been inserted on
// the new page yet (after 24 bytes, or 40 on a segment's first page): a replica's replay LSN,
// the end of the last record replayed, stops at the page boundary and would never reach it.
// Such a position is moved back to the boundary; no record can end between the boundary and
// it, so a replica at the boundary has replayed everything before. (8 KiB WAL pages, the
// default XLOG_BLCKSZ, are assumed.)
uint64_t insertLsnAsRecordEnd(uint64_t lsn);

// Parses the probe's row: one text per column, nullopt for NULL. Returns a failed result
// (with the reason) when the row does not have the expected shape.
ProbeResult parseProbeRow(const std::vector<std::optional<std::string>>& cols);

// The replay watcher's question (ReplayWatcher): one column, pg_last_wal_replay_lsn(); its
// row parsed into ProbeResult::replayLsn (NULL, i.e. not a replica, is a failure).
extern const char* const kReplayQuery;
ProbeResult parseReplayRow(const std::vector<std::optional<std::string>>& cols);

}  // namespace pgswitch::health
