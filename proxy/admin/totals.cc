#include "proxy/admin/totals.h"

namespace pgswitch::proxy {

std::vector<Total> totals(const Snapshot& s) {
  return {
      {"clients", "pgswitch_clients", false, "Client connections.", s.clientsTotal},
      {"login_clients", "pgswitch_login_clients", false,
       "Client sockets accepted that have not logged in yet.", s.loginClients},
      {"pools", "pgswitch_pools", false, "Server pools (backend, database, user).",
       s.pools.size()},
      {"failovers", "pgswitch_failovers_total", true, "Failovers and switchovers performed.",
       s.failovers},
      {"auth_failures", "pgswitch_auth_failures_total", true,
       "Failed client authentications: wrong password, or a client certificate hba_file "
       "refused.",
       s.authFailures},
      {"access_refused", "pgswitch_access_refused_total", true,
       "Logins refused before authentication: no hba_file line matched, a reject line, or a "
       "console user in neither admin_users nor stats_users.",
       s.accessRefused},
      {"rate_limited", "pgswitch_rate_limited_total", true,
       "Connections answered with 53300 and closed: over "
       "max_connections_per_second_per_address.",
       s.rateLimited},
      {"clients_handed_over", "pgswitch_clients_handed_over_total", true,
       "New clients one worker accepted and passed to another (worker_fill).",
       s.clientsHandedOver},
      {"login_refused", "pgswitch_login_refused_total", true,
       "Sockets turned away because max_login_clients were still logging in.", s.loginRefused},
      {"login_timeouts", "pgswitch_login_timeouts_total", true,
       "Clients closed for not logging in within client_login_timeout_ms.", s.loginTimeouts},
      {"stalled_clients", "pgswitch_stalled_clients_total", true,
       "Clients closed for stopping mid-message longer than client_stall_timeout_ms.",
       s.stalledClients},
      {"accept_fd_exhausted", "pgswitch_accept_fd_exhausted_total", true,
       "Times accepting failed for lack of file descriptors (accepting paused briefly).",
       s.acceptFdExhausted},
      {"accept_turned_away", "pgswitch_accept_turned_away_total", true,
       "Connections answered with 53300 and closed at once (descriptors or login limit).",
       s.acceptTurnedAway},
      {"pools_dropped", "pgswitch_pools_dropped_total", true,
       "Pools removed: unused, or for a database or user the backend refused.", s.poolsDropped},
      {"readonly_retries", "pgswitch_readonly_retries_total", true,
       "Lone reads that wrote on a replica (25006) and were run again on the primary.",
       s.readonlyRetries},
      {"recovery_conflict_retries", "pgswitch_recovery_conflict_retries_total", true,
       "Lone reads a replica cancelled for a conflict with recovery (40001) before answering, "
       "run again on the primary.",
       s.recoveryConflictRetries},
      {"replica_waits", "pgswitch_replica_waits_total", true,
       "Reads that waited for their replica to replay far enough before running there "
       "(strong consistency: it was not known to have the latest acknowledged commit).",
       s.replicaWaits},
      {"replica_wait_fallbacks", "pgswitch_replica_wait_fallbacks_total", true,
       "Of those, reads that went to the primary because no replica caught up within "
       "routing.max_wait_ms.",
       s.replicaWaitFallbacks},
      {"reads_on_primary", "pgswitch_reads_on_primary_total", true,
       "Reads that went to the primary at once because no replica could take them: none up, "
       "all over the lag limits, or (strong, read_your_writes) none known to have the "
       "writes the read must see and close enough to wait for (fallback = \"primary\").",
       s.readsOnPrimary},
      {"replica_position_questions", "pgswitch_replica_position_questions_total", true,
       "Questions the replay watcher asked replicas about their replay position, each on "
       "behalf of every read then waiting for that replica.",
       s.replicaPositionQuestions},
      {"replays_attempted", "pgswitch_replays_attempted_total", true,
       "Transactions whose server was lost, run again on the new primary (failover."
       "replay_buffer_bytes).",
       s.replays.attempted},
      {"replays_succeeded", "pgswitch_replays_succeeded_total", true,
       "Of those, replays that gave the client the answers it had already seen: it went on as "
       "if nothing had happened.",
       s.replays.succeeded},
      {"replays_refused_mismatch", "pgswitch_replays_refused_mismatch_total", true,
       "Replays that gave other answers (now(), random(), rows changed meanwhile): rolled back, "
       "the client got the retryable error.",
       s.replays.mismatched},
      {"replays_abandoned", "pgswitch_replays_abandoned_total", true,
       "Replays given up: no primary within failover_wait_ms, or the server lost again three "
       "times.",
       s.replays.abandoned},
      {"replays_refused_too_large", "pgswitch_replays_refused_too_large_total", true,
       "Transactions not replayed: more client bytes than failover.replay_buffer_bytes (or "
       "over 16 MiB of answers).",
       s.replays.tooLarge},
      {"replays_refused_commit_in_flight", "pgswitch_replays_refused_commit_in_flight_total",
       true,
       "Transactions not replayed because their COMMIT was in flight: the client got 08007 "
       "(outcome unknown).",
       s.replays.commitInFlight},
      {"replays_refused_other", "pgswitch_replays_refused_other_total", true,
       "Work lost with its server and not replayed for another reason: an autocommit statement "
       "in flight (08007), a prepared-statement name defined in the transaction, session state.",
       s.replays.notReplayable},
      {"sessions_rebuilt", "pgswitch_sessions_rebuilt_total", true,
       "Sessions whose LISTEN channels and prepared statements were created again on a new "
       "server after theirs was lost.",
       s.sessionsRebuilt},
      {"sessions_unmovable", "pgswitch_sessions_unmovable_total", true,
       "Sessions ended (FATAL 08006) when their server was lost because they had state no "
       "other server can be given: temporary table, advisory lock, WITH HOLD cursor.",
       s.sessionsUnmovable},
      {"session_reads", "pgswitch_session_reads_total", true,
       "Session-mode requests (routing.session_reads) served by a replica instead of the "
       "session's own primary connection.",
       s.sessionReads},
      {"session_reads_fallbacks", "pgswitch_session_reads_fallbacks_total", true,
       "Session-mode clients (routing.session_reads) that made session state a replica cannot "
       "share (temporary table, LISTEN, SQL PREPARE, ...) and use only the primary from then on.",
       s.sessionReadsFallbacks},
      {"volatile_function_routes", "pgswitch_volatile_function_routes_total", true,
       "Reads sent to the primary because they call a function the database's catalog says is "
       "volatile (it may write).",
       s.volatileFunctionRoutes},
      {"function_catalog_reads", "pgswitch_function_catalog_reads_total", true,
       "Reads of a database's volatile functions (pg_proc) from the primary.",
       s.functionCatalogReads},
      {"auth_lookups", "pgswitch_auth_lookups_total", true,
       "Passwords read from the database with auth.query (cache misses).",
       s.authLookups},
      {"auth_lookup_failures", "pgswitch_auth_lookup_failures_total", true,
       "Logins refused (FATAL 08006) because auth.query could not run.",
       s.authLookupFailures},
      {"servers_opened", "pgswitch_servers_opened_total", true,
       "Server connections opened since start (a steady pool opens none).", s.serversOpened},
      {"worker_allocations", "pgswitch_worker_allocations_total", true,
       "Heap allocations (operator new) on the worker threads since start; 0 in sanitizer "
       "builds. Flat under steady load: forwarding allocates nothing per message.",
       s.workerAllocations},
      {"io_uring_workers", "pgswitch_io_uring_workers", false,
       "Worker threads whose connections read and write through io_uring (server.io_uring); "
       "the others use epoll.",
       s.ioUringWorkers},
  };
}

}  // namespace pgswitch::proxy
