// The settings table (one entry per setting, in SHOW CONFIG order), the range check and the
// value formatting every front end shares, and Config's defaults, which come from the table.
#include "proxy/config/settings.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <utility>

namespace pgswitch::proxy {
namespace {

// Where a setting lives in Config: a member, or a member of one of its sections.
template <class T>
using Ref = std::function<T&(Config&)>;

template <class T>
Ref<T> field(T Config::*m) {
  return [m](Config& c) -> T& { return c.*m; };
}

template <class S, class T>
Ref<T> field(S Config::*section, T S::*m) {
  return [section, m](Config& c) -> T& { return (c.*section).*m; };
}

// One path serves reading and writing; the reference is only read through.
template <class T>
const T& get(const Ref<T>& ref, const Config& c) {
  return ref(const_cast<Config&>(c));
}

// Integer ranges. The default upper bound is int's (most fields are int); byte counts and
// their like are uint64_t fields that accept any non-negative int64.
struct Range {
  int64_t min = 0;
  int64_t max = INT32_MAX;
};
constexpr Range kBytes{0, INT64_MAX};

// The fields every kind of setting has.
Setting base(std::string_view key, SettingType type, Apply a, SettingValue def,
             std::string_view help) {
  Setting s;
  s.key = key;
  s.type = type;
  s.apply = a;
  s.def = std::move(def);
  s.help = help;
  return s;
}

template <class T>
Setting integer(std::string_view key, Ref<T> ref, int64_t def, Range r, Apply a,
                std::string_view help) {
  Setting s = base(key, SettingType::Integer, a, def, help);
  s.min = r.min;
  s.max = r.max;
  s.read = [ref](const Config& c) -> SettingValue { return static_cast<int64_t>(get(ref, c)); };
  s.write = [ref](Config& c, const SettingValue& v) {
    ref(c) = static_cast<T>(std::get<int64_t>(v));
  };
  return s;
}

Setting boolean(std::string_view key, Ref<bool> ref, bool def, Apply a, std::string_view help) {
  Setting s = base(key, SettingType::Boolean, a, def, help);
  s.read = [ref](const Config& c) -> SettingValue { return get(ref, c); };
  s.write = [ref](Config& c, const SettingValue& v) { ref(c) = std::get<bool>(v); };
  return s;
}

struct TextOptions {
  bool secret = false;
  std::string (*check)(const SettingValue&) = nullptr;
};

Setting text(std::string_view key, Ref<std::string> ref, std::string_view def, Apply a,
             std::string_view help, TextOptions o = {}) {
  Setting s = base(key, SettingType::Text, a, std::string(def), help);
  s.secret = o.secret;
  s.extraCheck = o.check;
  s.read = [ref](const Config& c) -> SettingValue { return get(ref, c); };
  s.write = [ref](Config& c, const SettingValue& v) { ref(c) = std::get<std::string>(v); };
  return s;
}

Setting list(std::string_view key, Ref<std::vector<std::string>> ref, Apply a,
             std::string_view help) {
  Setting s = base(key, SettingType::List, a, std::vector<std::string>{}, help);
  s.read = [ref](const Config& c) -> SettingValue { return get(ref, c); };
  s.write = [ref](Config& c, const SettingValue& v) {
    ref(c) = std::get<std::vector<std::string>>(v);
  };
  return s;
}

// A choice stored as something other than its text (an enum, a bool): `options` maps each
// allowed text to the stored value and back.
template <class T>
Setting choice(std::string_view key, Ref<T> ref, std::string_view def,
               std::vector<std::pair<std::string, T>> options, Apply a, std::string_view help) {
  Setting s = base(key, SettingType::Choice, a, std::string(def), help);
  for (const auto& [name, value] : options) s.choices.push_back(name);
  s.read = [ref, options](const Config& c) -> SettingValue {
    for (const auto& [name, value] : options)
      if (get(ref, c) == value) return name;
    return std::string("?");
  };
  s.write = [ref, options](Config& c, const SettingValue& v) {
    for (const auto& [name, value] : options)
      if (name == std::get<std::string>(v)) ref(c) = value;
  };
  return s;
}

// A choice stored as its text.
Setting oneOf(std::string_view key, Ref<std::string> ref, std::string_view def,
              std::vector<std::string> options, Apply a, std::string_view help) {
  Setting s = text(key, std::move(ref), def, a, help);
  s.type = SettingType::Choice;
  s.choices = std::move(options);
  return s;
}

// "host:port", the host of an IPv6 address in brackets.
bool parseHostPort(std::string_view s, std::string& host, int& port) {
  size_t colon = s.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view h = s.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  std::string_view p = s.substr(colon + 1);
  if (h.empty() || p.empty()) return false;
  int n = 0;
  for (char ch : p) {
    if (ch < '0' || ch > '9') return false;
    n = n * 10 + (ch - '0');
    if (n > 65535) return false;
  }
  host = std::string(h);
  port = n;
  return true;
}

Setting listenSetting() {
  Setting s =
      base("server.listen", SettingType::Text, Apply::Restart, std::string("127.0.0.1:6432"),
           "address clients connect to; \"[::1]:6432\" for IPv6");
  s.read = [](const Config& c) -> SettingValue {
    bool v6 = c.listenHost.find(':') != std::string::npos;
    return (v6 ? "[" + c.listenHost + "]" : c.listenHost) + ":" + std::to_string(c.listenPort);
  };
  s.write = [](Config& c, const SettingValue& v) {
    parseHostPort(std::get<std::string>(v), c.listenHost, c.listenPort);
  };
  s.extraCheck = [](const SettingValue& v) -> std::string {
    std::string host;
    int port = 0;
    if (parseHostPort(std::get<std::string>(v), host, port)) return "";
    return "must be \"host:port\" (IPv6 as \"[::1]:port\")";
  };
  return s;
}

std::string checkSqlstate(const SettingValue& v) {
  const std::string& s = std::get<std::string>(v);
  if (s.empty() || s.size() == 5) return "";
  return "must be a 5-character SQLSTATE such as \"40001\"";
}

// The check query is what proves an idle server connection alive before a client depends on
// it: an empty one would skip the check, a blank one proves nothing. Off is
// server_check_delay = 0, which says so.
std::string checkNotBlank(const SettingValue& v) {
  const std::string& s = std::get<std::string>(v);
  if (std::any_of(s.begin(), s.end(),
                  [](char ch) { return !std::isspace(static_cast<unsigned char>(ch)); }))
    return "";
  return "must not be empty or blank (server_check_delay = 0 turns the check off)";
}

// The user name reaches the query only as its parameter, never spliced into the text.
std::string checkAuthQuery(const SettingValue& v) {
  if (std::get<std::string>(v).find("$1") != std::string::npos) return "";
  return "must take the user name as $1";
}

constexpr Apply kRestart = Apply::Restart, kReload = Apply::Reload, kSet = Apply::Set;
constexpr int64_t kMiB = 1024 * 1024;

// Sections of Config, for field(section, member).
constexpr auto kHealth = &Config::health;
constexpr auto kFailover = &Config::failover;
constexpr auto kPatroni = &Config::patroni;
constexpr auto kCoordination = &Config::coordination;
constexpr auto kRouting = &Config::routing;
constexpr auto kTls = &Config::tls;
constexpr auto kAuth = &Config::auth;

// The table. Order is SHOW CONFIG's. Settings that shape sockets and threads are read once at
// start-up (kRestart). kReload marks settings a RELOAD applies but SET does not offer; keeping
// them out of SET also keeps bare names such as "user" meaning health.user there.
std::vector<Setting> makeTable() {
  using HC = HealthConfig;
  using FC = FailoverConfig;
  using PC = PatroniConfig;
  using CC = CoordinationConfig;
  using RC = RoutingConfig;
  using TC = TlsConfig;
  using AC = AuthConfig;
  return {
      // [server]
      listenSetting(),
      choice("server.pool_mode", field(&Config::poolMode), "session",
             {{"session", PoolMode::Session}, {"transaction", PoolMode::Transaction}}, kSet,
             "session: a client keeps its server connection; transaction: per transaction"),
      list("server.admin_users", field(&Config::adminUsers), kSet,
           "users allowed into the admin console (the database \"pgswitch\")"),
      list("server.stats_users", field(&Config::statsUsers), kSet,
           "users allowed into the admin console for SHOW commands only"),
      text("server.hba_file", field(&Config::hbaFile), "", kReload,
           "client access rules in pg_hba.conf syntax (docs/access.md); empty = [[user]] only"),
      integer("server.workers", field(&Config::workers), 0, {.max = 256}, kRestart,
              "event-loop threads; 0 = number of CPUs"),
      integer("server.worker_fill", field(&Config::workerFill), 16, {.max = 1000000}, kSet,
              "a new client goes to the first worker with fewer clients than this that is not "
              "busy (else to the one with the fewest), so a light load keeps one thread awake, "
              "not all; 0 = spread clients evenly over every worker"),
      choice("server.io_uring", field(&Config::ioUring), "auto", {{"auto", true}, {"off", false}},
             kRestart,
             "auto: client and server sockets read and write through io_uring where the kernel "
             "allows it (one system call per loop turn); off: through epoll (libuv)"),
      integer("server.tcp_defer_accept", field(&Config::tcpDeferAcceptS), 45, {.max = 3600},
              kRestart,
              "seconds the kernel holds a new connection until its first bytes (the startup "
              "packet) arrive, so accepting it and reading them is one wake-up; 0 = off"),
      integer("server.max_client_conn", field(&Config::maxClientConn), 10000, {}, kSet,
              "client connections beyond this get FATAL 53300"),
      integer("server.max_login_clients", field(&Config::maxLoginClients), 1000, {.min = 1}, kSet,
              "sockets still logging in beyond this get FATAL 53300 at once"),
      integer("server.client_login_timeout_ms", field(&Config::clientLoginTimeoutMs), 60000,
              {.min = 100}, kSet, "a client that has not logged in by then is closed"),
      integer("server.client_stall_timeout_ms", field(&Config::clientStallTimeoutMs), 30000,
              {.min = 100}, kSet,
              "a client that stops in the middle of a message this long is closed"),
      integer("server.max_connections_per_second_per_address",
              field(&Config::maxConnectionsPerSecondPerAddress), 0, {}, kSet,
              "new connections from one client address beyond this rate get FATAL 53300; 0 = "
              "no limit"),
      oneOf("server.log_level", field(&Config::logLevel), "info",
            {"trace", "debug", "info", "warn", "error", "critical", "off"}, kSet, "log verbosity"),
      text("server.log_file", field(&Config::logFile), "", kRestart,
           "file to log to; empty = stderr"),
      integer("server.max_message_bytes", field(&Config::maxMessageBytes), 64 * kMiB, {.min = 8192},
              kSet, "larger client messages are refused (08P01)"),
      text("server.metrics_listen", field(&Config::metricsListen), "", kRestart,
           "\"host:port\" for /metrics, /status and the status page; empty = off"),

      // [pool]
      integer("pool.pool_size", field(&Config::poolSize), 20, {.min = 1}, kSet,
              "server connections per (backend, database, user), over all workers"),
      integer("pool.min_pool_size", field(&Config::minPoolSize), 0, {}, kSet,
              "server connections kept open once a pool is used"),
      integer("pool.reserve_pool_size", field(&Config::reservePoolSize), 0, {}, kSet,
              "extra connections once a client waited reserve_pool_timeout_ms"),
      integer("pool.reserve_pool_timeout_ms", field(&Config::reservePoolTimeoutMs), 5000, {}, kSet,
              "wait before the reserve pool is used"),
      integer("pool.query_wait_timeout_ms", field(&Config::queryWaitTimeoutMs), 120000, {}, kSet,
              "a request waiting longer for a server gets ERROR 53300"),
      integer("pool.server_connect_timeout_ms", field(&Config::serverConnectTimeoutMs), 5000, {},
              kSet, "connecting and logging in to a backend"),
      integer("pool.server_login_retry_ms", field(&Config::serverLoginRetryMs), 1000, {}, kSet,
              "after a failed server login, wait this long before trying again"),
      integer("pool.server_lifetime", field(&Config::serverLifetimeS), 3600, {}, kSet,
              "seconds; older idle server connections are closed"),
      integer("pool.server_idle_timeout", field(&Config::serverIdleTimeoutS), 600, {}, kSet,
              "seconds an unused server connection stays open"),
      integer("pool.client_idle_timeout", field(&Config::clientIdleTimeoutS), 0, {}, kSet,
              "seconds; idle clients get FATAL 57P05; 0 = off"),
      integer("pool.idle_transaction_timeout", field(&Config::idleTransactionTimeoutS), 0, {}, kSet,
              "seconds idle in a transaction before FATAL 25P03; 0 = off"),
      integer("pool.server_check_delay", field(&Config::serverCheckDelayS), 30, {}, kSet,
              "seconds idle before a server connection is checked before reuse"),
      text("pool.server_reset_query", field(&Config::serverResetQuery), "DISCARD ALL", kSet,
           "session mode: run before a server connection is reused"),
      text("pool.server_check_query", field(&Config::serverCheckQuery), "SELECT 1", kSet,
           "the check run on a server connection idle for server_check_delay",
           {.check = checkNotBlank}),
      integer("pool.max_prepared_statements", field(&Config::maxPreparedStatements), 200, {}, kSet,
              "prepared statements cached per server connection (LRU)"),

      // [health]
      integer("health.period_ms", field(kHealth, &HC::periodMs), 1000, {.min = 10}, kSet,
              "time between two checks of a backend"),
      integer("health.connect_timeout_ms", field(kHealth, &HC::connectTimeoutMs), 2000, {}, kSet,
              "a check's connection attempt"),
      integer("health.query_timeout_ms", field(kHealth, &HC::queryTimeoutMs), 2000, {}, kSet,
              "a check's query"),
      integer("health.fall", field(kHealth, &HC::fall), 3, {.min = 1}, kSet,
              "consecutive failed checks before an up backend is down"),
      integer("health.rise", field(kHealth, &HC::rise), 2, {.min = 1}, kSet,
              "consecutive successful checks before a down backend is up"),
      text("health.user", field(kHealth, &HC::user), "postgres", kSet, "the checks' login"),
      text("health.password", field(kHealth, &HC::password), "", kSet, "the checks' password",
           {.secret = true}),
      text("health.database", field(kHealth, &HC::database), "postgres", kSet,
           "the database the checks connect to"),
      integer("health.max_lag_bytes", field(kHealth, &HC::maxLagBytes), 0, kBytes, kSet,
              "replay lag that raises a lag_exceeded event; 0 = off"),
      integer("health.max_lag_ms", field(kHealth, &HC::maxLagMs), 0, kBytes, kSet,
              "replay delay that raises a lag_exceeded event; 0 = off"),
      text("health.on_event", field(kHealth, &HC::onEvent), "", kSet,
           "shell command run for every health or failover event"),

      // [failover]
      boolean("failover.auto_failover", field(kFailover, &FC::autoFailover), false, kSet,
              "pgswitch promotes the best replica itself when the primary fails"),
      integer("failover.failover_after", field(kFailover, &FC::failoverAfter), 3, {.min = 1}, kSet,
              "consecutive failed checks of the primary before an automatic failover"),
      integer("failover.max_failover_lag_bytes", field(kFailover, &FC::maxFailoverLagBytes),
              16 * kMiB, kBytes, kSet, "refuse to promote a replica further behind; 0 = no limit"),
      integer("failover.failover_wait_ms", field(kFailover, &FC::failoverWaitMs), 30000, {}, kSet,
              "how long work that needs a primary waits for one"),
      boolean("failover.repoint_replicas", field(kFailover, &FC::repointReplicas), false, kSet,
              "point the other replicas at the new primary (ALTER SYSTEM SET primary_conninfo)"),
      integer("failover.replay_buffer_bytes", field(kFailover, &FC::replayBufferBytes), 64 * 1024,
              {.max = 16 * kMiB}, kSet,
              "client bytes of a transaction kept to replay it on a new primary; 0 = no replay"),
      text("failover.retry_safe_as", field(kFailover, &FC::retrySafeAs), "", kSet,
           "SQLSTATE for \"failed before COMMIT, safe to retry\"; empty = 08006",
           {.check = checkSqlstate}),
      text("failover.user", field(kFailover, &FC::user), "", kReload,
           "login that runs pg_promote() and ALTER SYSTEM; empty = the health user"),
      text("failover.password", field(kFailover, &FC::password), "", kReload,
           "that login's password; empty = the health password", {.secret = true}),
      integer("failover.promote_timeout_ms", field(kFailover, &FC::promoteTimeoutMs), 10000, {},
              kReload, "how long a promotion may take"),
      integer("failover.switchover_timeout_ms", field(kFailover, &FC::switchoverTimeoutMs), 10000,
              {}, kReload, "how long SWITCHOVER waits for the replica to catch up"),

      // [patroni]: a RELOAD that changes one restarts the health thread
      list("patroni.url", field(kPatroni, &PC::urls), kReload,
           "Patroni REST API base URLs, tried in turn; set = Patroni decides the primary"),
      integer("patroni.period_ms", field(kPatroni, &PC::periodMs), 1000, {.min = 50}, kReload,
              "how often Patroni's /cluster is read"),
      integer("patroni.timeout_ms", field(kPatroni, &PC::timeoutMs), 2000, {.min = 1}, kReload,
              "deadline of one /cluster request, connect included"),
      integer("patroni.switchover_timeout_ms", field(kPatroni, &PC::switchoverTimeoutMs), 60000,
              {.min = 1}, kReload, "how long SWITCHOVER waits for Patroni's /switchover answer"),
      text("patroni.username", field(kPatroni, &PC::username), "", kReload,
           "REST API user (restapi.authentication) for /switchover; empty = none"),
      text("patroni.password", field(kPatroni, &PC::password), "", kReload, "that user's password",
           {.secret = true}),
      text("patroni.ca_file", field(kPatroni, &PC::caFile), "", kReload,
           "CA bundle for https URLs; empty = the system's"),

      // [coordination]: a RELOAD that changes one restarts the health thread
      list("coordination.etcd", field(kCoordination, &CC::etcd), kReload,
           "etcd client URLs, tried in turn; set = only the instance holding the etcd leader "
           "key promotes, and the others adopt its decision (docs/deploy.md)"),
      text("coordination.prefix", field(kCoordination, &CC::prefix), "", kReload,
           "etcd key prefix shared by the instances in front of one cluster; empty = "
           "/pgswitch/default"),
      text("coordination.name", field(kCoordination, &CC::name), "", kReload,
           "this instance's id in etcd; empty = hostname:listen port"),
      integer("coordination.lease_ttl_ms", field(kCoordination, &CC::leaseTtlMs), 3000,
              {.min = 1000, .max = 600000}, kReload,
              "the leader's lease; a leader that cannot renew it this long stops promoting, "
              "and another instance may take over once it expires"),
      integer("coordination.timeout_ms", field(kCoordination, &CC::timeoutMs), 1000,
              {.min = 1, .max = 60000}, kReload, "deadline of one etcd request, connect included"),

      // [routing]
      boolean("routing.read_write_split", field(kRouting, &RC::readWriteSplit), true, kReload,
              "transaction mode: reads to replicas, writes to the primary"),
      boolean("routing.session_reads", field(kRouting, &RC::sessionReads), false, kReload,
              "session mode: each client's reads outside transactions go to replicas, the "
              "rest to its own primary connection (docs/routing.md)"),
      integer("routing.max_lag_bytes", field(kRouting, &RC::maxLagBytes), 16 * kMiB, kBytes,
              kReload, "replicas further behind get no reads; 0 = no limit"),
      integer("routing.max_lag_ms", field(kRouting, &RC::maxLagMs), 0, kBytes, kReload,
              "replay delay beyond which a replica gets no reads; 0 = no limit"),
      choice("routing.fallback", field(kRouting, &RC::fallbackError), "primary",
             {{"primary", false}, {"error", true}}, kReload,
             "no replica qualifies: read from the primary, or answer an error (57P03)"),
      choice("routing.consistency", field(kRouting, &RC::consistency), "strong",
             {{"strong", Consistency::Strong},
              {"read_your_writes", Consistency::ReadYourWrites},
              {"eventual", Consistency::Eventual}},
             kReload,
             "strong: a read sees every write acknowledged to any client of its database "
             "before it started; read_your_writes: only its own connection's; eventual: no "
             "guarantee"),
      integer("routing.max_wait_ms", field(kRouting, &RC::maxWaitMs), 10, {.max = 10000},
              kReload,
              "strong / read_your_writes: how long a read may wait for a replica to replay "
              "what it must see before it goes to the primary (0 = do not wait)"),
      list("routing.write_functions", field(kRouting, &RC::writeFunctions), kReload,
           "your functions that write, besides the built-in list"),
      list("routing.read_only_functions", field(kRouting, &RC::readOnlyFunctions), kReload,
           "volatile functions trusted not to write: reads calling them may use replicas"),
      integer("routing.function_refresh_ms", field(kRouting, &RC::functionRefreshMs), 30000,
              {.max = 86400000}, kReload,
              "how often each database's volatile functions are read from the primary; reads "
              "calling one go to the primary; 0 = off"),

      // [tls]: files are read at start-up and at each RELOAD (new connections get the new
      // certificate; connections already encrypted keep theirs). docs/tls.md.
      text("tls.cert_file", field(kTls, &TC::certFile), "", kReload,
           "pgswitch's certificate for clients (PEM, may hold the chain)"),
      text("tls.key_file", field(kTls, &TC::keyFile), "", kReload, "its private key (PEM)"),
      text("tls.ca_file", field(kTls, &TC::caFile), "", kReload,
           "CA that client certificates are verified against, when a client sends one"),
      choice("tls.client_tls", field(kTls, &TC::clientTls), "allow",
             {{"disable", ClientTls::Disable},
              {"allow", ClientTls::Allow},
              {"require", ClientTls::Require}},
             kReload,
             "allow: TLS for clients that ask (once cert_file and key_file are set); require: "
             "plaintext clients get FATAL 28000; disable: SSLRequest is answered 'N'"),
      choice("tls.server_sslmode", field(kTls, &TC::serverSslMode), "disable",
             {{"disable", ServerSslMode::Disable},
              {"prefer", ServerSslMode::Prefer},
              {"require", ServerSslMode::Require},
              {"verify-ca", ServerSslMode::VerifyCa},
              {"verify-full", ServerSslMode::VerifyFull}},
             kReload, "TLS to backends (pool, health checks, failover), as libpq's sslmode"),
      text("tls.server_ca_file", field(kTls, &TC::serverCaFile), "", kReload,
           "CA that backend certificates are verified against (verify-ca, verify-full)"),
      text("tls.server_cert_file", field(kTls, &TC::serverCertFile), "", kReload,
           "client certificate pgswitch shows backends (optional)"),
      text("tls.server_key_file", field(kTls, &TC::serverKeyFile), "", kReload, "its private key"),

      // [auth]: users without a [[user]] entry, looked up in the database. docs/auth.md.
      text("auth.user", field(kAuth, &AC::user), "", kReload,
           "login that runs auth.query for users not in [[user]]; empty = off"),
      text("auth.password", field(kAuth, &AC::password), "", kReload, "that login's password",
           {.secret = true}),
      text("auth.query", field(kAuth, &AC::query),
           "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1", kReload,
           "returns the user's name and stored password (SCRAM secret or md5 hash); $1 = the user",
           {.check = checkAuthQuery}),
      text("auth.database", field(kAuth, &AC::database), "", kReload,
           "database auth.query runs in; empty = the database the client asked for"),
      integer("auth.cache_ms", field(kAuth, &AC::cacheMs), 60000, {.max = INT32_MAX}, kReload,
              "a looked-up password is reused this long before it is read again"),
  };
}

constexpr std::string_view kSections[] = {
    "server", "pool", "health", "failover", "patroni", "coordination", "routing", "tls", "auth"};

bool unboundedAbove(int64_t max) { return max == INT32_MAX || max == INT64_MAX; }

std::string checkInteger(const Setting& s, int64_t v) {
  if (v >= s.min && v <= s.max) return "";
  if (!unboundedAbove(s.max))
    return "must be between " + std::to_string(s.min) + " and " + std::to_string(s.max);
  if (v > s.max) return "must be at most " + std::to_string(s.max);
  return s.min == 0 ? "must not be negative" : "must be at least " + std::to_string(s.min);
}

// Two choices read as a sentence, more as a list (log_level's error says which exist).
std::string describeChoices(const std::vector<std::string>& choices) {
  if (choices.size() == 2) return "must be \"" + choices[0] + "\" or \"" + choices[1] + "\"";
  std::string s = "must be one of ";
  for (size_t i = 0; i < choices.size(); ++i) s += (i ? ", " : "") + choices[i];
  return s;
}

}  // namespace

std::span<const Setting> settings() {
  static const std::vector<Setting> table = makeTable();
  return table;
}

const Setting* findSetting(std::string_view key) {
  for (const Setting& s : settings())
    if (s.key == key) return &s;
  return nullptr;
}

std::span<const std::string_view> settingSections() { return kSections; }

std::string checkValue(const Setting& s, const SettingValue& v) {
  switch (s.type) {
    case SettingType::Integer:
      if (!std::holds_alternative<int64_t>(v)) return "must be an integer";
      return checkInteger(s, std::get<int64_t>(v));
    case SettingType::Boolean:
      if (!std::holds_alternative<bool>(v)) return "must be true or false";
      return "";
    case SettingType::Text:
      if (!std::holds_alternative<std::string>(v)) return "must be a string";
      return s.extraCheck ? s.extraCheck(v) : "";
    case SettingType::List:
      if (!std::holds_alternative<std::vector<std::string>>(v)) return "must be a list of strings";
      return "";
    case SettingType::Choice: {
      if (!std::holds_alternative<std::string>(v)) return "must be a string";
      const std::string& t = std::get<std::string>(v);
      if (std::find(s.choices.begin(), s.choices.end(), t) == s.choices.end())
        return describeChoices(s.choices);
      return "";
    }
  }
  return "unknown setting type";
}

std::span<const CrossCheck> crossChecks() {
  static const CrossCheck checks[] = {
      {"pool.min_pool_size", "must not exceed pool_size",
       [](const Config& c) { return c.minPoolSize <= c.poolSize; }},
      {"tls.client_tls", "= \"require\" needs cert_file and key_file",
       [](const Config& c) {
         return c.tls.clientTls != ClientTls::Require || c.tls.clientTlsOffered();
       }},
      {"tls.server_ca_file", "must be set for server_sslmode verify-ca and verify-full",
       [](const Config& c) {
         return !c.tls.serverCaFile.empty() || (c.tls.serverSslMode != ServerSslMode::VerifyCa &&
                                                c.tls.serverSslMode != ServerSslMode::VerifyFull);
       }},
  };
  return checks;
}

std::string showValue(const Setting& s, const Config& c) {
  SettingValue v = s.read(c);
  switch (s.type) {
    case SettingType::Integer:
      return std::to_string(std::get<int64_t>(v));
    case SettingType::Boolean:
      return std::get<bool>(v) ? "true" : "false";
    case SettingType::Text:
    case SettingType::Choice: {
      const std::string& t = std::get<std::string>(v);
      return s.secret && !t.empty() ? "********" : t;
    }
    case SettingType::List: {
      std::string joined;
      for (const std::string& e : std::get<std::vector<std::string>>(v))
        joined += (joined.empty() ? "" : ", ") + e;
      return joined;
    }
  }
  return "?";
}

std::string setRefusal(const Setting& s) {
  std::string name = "setting \"" + std::string(s.key) + "\" cannot be changed ";
  switch (s.apply) {
    case Apply::Restart:
      return name + "without a restart";
    case Apply::Reload:
      return name + "with SET: edit the configuration file and RELOAD";
    case Apply::Set:
      return "";
  }
  return name;
}

std::vector<const Setting*> restartOnlyChanges(const Config& running, const Config& loaded) {
  std::vector<const Setting*> changed;
  for (const Setting& s : settings())
    if (s.apply == Apply::Restart && s.read(running) != s.read(loaded)) changed.push_back(&s);
  return changed;
}

std::string logValue(std::string_view v, size_t limit) {
  size_t keep = v.size();
  if (keep > limit) {
    keep = limit;
    // Do not split a multi-byte character: back up over continuation bytes (10xxxxxx).
    while (keep > 0 && (static_cast<unsigned char>(v[keep]) & 0xC0) == 0x80) --keep;
  }
  std::string out(v.substr(0, keep));
  for (char& ch : out)
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = '?';
  if (keep < v.size()) out += "... (" + std::to_string(v.size()) + " bytes)";
  return out;
}

// Defaults live in the table only; a Config starts from them.
Config::Config() {
  for (const Setting& s : settings()) s.write(*this, s.def);
}

}  // namespace pgswitch::proxy
