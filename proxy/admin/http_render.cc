// Metrics and /status rendering. Integer microseconds and milliseconds are printed as decimal
// seconds with integer arithmetic, so bucket bounds and sums are exact.
#include "proxy/admin/http_render.h"

#include <algorithm>
#include <cstdio>
#include <initializer_list>
#include <utility>

#include "health/events.h"
#include "proxy/admin/console_commands.h"
#include "proxy/admin/totals.h"

namespace pgswitch::proxy {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid UTF-8 sequence at s[i], or 0 when it is not one (overlong forms,
// surrogates and code points above U+10FFFF are invalid).
size_t utf8Length(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  unsigned char c = b(0);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(k) & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return n;
}

// Calls plain(i, len) for valid UTF-8 runs' characters one at a time and bad() per invalid
// byte.
template <class Char, class Bad>
void forEachChar(std::string_view s, Char onChar, Bad onBad) {
  size_t i = 0;
  while (i < s.size()) {
    size_t n = utf8Length(s, i);
    if (n == 0) {
      onBad();
      ++i;
    } else {
      onChar(s.substr(i, n));
      i += n;
    }
  }
}

// Microseconds as seconds: 1500 -> "0.0015", 2000000 -> "2".
std::string usToSeconds(uint64_t us) {
  std::string s = std::to_string(us / 1000000);
  uint64_t frac = us % 1000000;
  if (frac) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%06llu", static_cast<unsigned long long>(frac));
    std::string f(buf);
    while (!f.empty() && f.back() == '0') f.pop_back();
    s += '.';
    s += f;
  }
  return s;
}

using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

// Writes one family at a time: HELP and TYPE once, then its samples.
class Exposition {
 public:
  explicit Exposition(std::string& out) : out_(out) {}
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    for (char ch : help) {
      if (ch == '\\') {
        out_ += "\\\\";
      } else if (ch == '\n') {
        out_ += "\\n";
      } else {
        out_ += ch;
      }
    }
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(std::string_view name, Labels labels, std::string_view value) {
    out_ += name;
    if (labels.size()) {
      out_ += '{';
      bool first = true;
      for (const auto& [k, v] : labels) {
        if (!first) out_ += ',';
        first = false;
        out_ += k;
        out_ += "=\"";
        out_ += escapeLabelValue(v);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  void sample(std::string_view name, Labels labels, uint64_t value) {
    sample(name, labels, std::string_view(std::to_string(value)));
  }

 private:
  std::string& out_;
};

}  // namespace

std::string escapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  forEachChar(
      v,
      [&](std::string_view ch) {
        if (ch[0] == '\\') {
          out += "\\\\";
        } else if (ch[0] == '"') {
          out += "\\\"";
        } else if (ch[0] == '\n') {
          out += "\\n";
        } else {
          out += ch;
        }
      },
      [&] { out += kReplacement; });
  return out;
}

void appendJsonString(std::string& out, std::string_view v) {
  out += '"';
  forEachChar(
      v,
      [&](std::string_view ch) {
        unsigned char c = static_cast<unsigned char>(ch[0]);
        switch (c) {
          case '"':
            out += "\\\"";
            break;
          case '\\':
            out += "\\\\";
            break;
          case '\n':
            out += "\\n";
            break;
          case '\r':
            out += "\\r";
            break;
          case '\t':
            out += "\\t";
            break;
          case '\b':
            out += "\\b";
            break;
          case '\f':
            out += "\\f";
            break;
          default:
            if (c < 0x20) {
              char buf[8];
              std::snprintf(buf, sizeof buf, "\\u%04x", c);
              out += buf;
            } else {
              out += ch;
            }
        }
      },
      [&] { out += "\\ufffd"; });
  out += '"';
}

std::string renderMetrics(const Snapshot& snap) {
  std::string out;
  Exposition e(out);
  const std::string version(kPgswitchVersion);
  e.family("pgswitch_info", "gauge", "pgswitch build information.");
  e.sample("pgswitch_info", {{"version", version}}, uint64_t{1});
  e.family("pgswitch_uptime_seconds", "gauge", "Seconds since pgswitch started.");
  e.sample("pgswitch_uptime_seconds", {}, usToSeconds(snap.uptimeMs * 1000));

  // Backend facts from the health checks (absent before the first topology).
  static constexpr routing::Role kRoles[] = {routing::Role::Primary, routing::Role::Replica,
                                             routing::Role::Unknown};
  static constexpr routing::BackendState kStates[] = {
      routing::BackendState::Up, routing::BackendState::Down, routing::BackendState::Fenced,
      routing::BackendState::Draining, routing::BackendState::Disabled};
  // A backend removed by a reload has no facts to report (its counters stay, below).
  std::vector<routing::BackendInfo> bs;
  if (snap.topology) {
    for (const auto& b : snap.topology->backends)
      if (b.state != routing::BackendState::Removed) bs.push_back(b);
  }
  e.family("pgswitch_backend_up", "gauge", "1 when the backend is up and routable.");
  for (const auto& b : bs) {
    e.sample("pgswitch_backend_up", {{"backend", b.name}},
             uint64_t{b.state == routing::BackendState::Up});
  }
  e.family("pgswitch_backend_role", "gauge", "1 for the backend's current role, else 0.");
  for (const auto& b : bs) {
    for (auto r : kRoles) {
      e.sample("pgswitch_backend_role", {{"backend", b.name}, {"role", routing::toString(r)}},
               uint64_t{b.role == r});
    }
  }
  e.family("pgswitch_backend_state", "gauge", "1 for the backend's current state, else 0.");
  for (const auto& b : bs) {
    for (auto s : kStates) {
      e.sample("pgswitch_backend_state", {{"backend", b.name}, {"state", routing::toString(s)}},
               uint64_t{b.state == s});
    }
  }
  e.family("pgswitch_backend_lag_bytes", "gauge", "Replication lag behind the primary, bytes.");
  for (const auto& b : bs)
    e.sample("pgswitch_backend_lag_bytes", {{"backend", b.name}}, b.lagBytes);
  e.family("pgswitch_backend_lag_seconds", "gauge", "Replication replay lag, seconds.");
  for (const auto& b : bs) {
    e.sample("pgswitch_backend_lag_seconds", {{"backend", b.name}}, usToSeconds(b.lagMs * 1000));
  }
  e.family("pgswitch_backend_timeline", "gauge", "The backend's timeline ID.");
  for (const auto& b : bs) {
    e.sample("pgswitch_backend_timeline", {{"backend", b.name}}, uint64_t{b.timeline});
  }

  // Pools.
  e.family("pgswitch_pool_servers", "gauge", "Server connections of a pool by state.");
  for (const PoolInfo& p : snap.pools) {
    const std::pair<const char*, int> states[] = {
        {"active", p.serversActive}, {"idle", p.serversIdle}, {"connecting", p.serversConnecting}};
    for (const auto& [st, n] : states) {
      e.sample("pgswitch_pool_servers",
               {{"database", p.database}, {"user", p.user}, {"backend", p.backend}, {"state", st}},
               static_cast<uint64_t>(std::max(n, 0)));
    }
  }
  e.family("pgswitch_pool_clients", "gauge", "Clients of a pool: served (active) or waiting.");
  for (const PoolInfo& p : snap.pools) {
    const std::pair<const char*, int> states[] = {{"active", p.clientsActive},
                                                  {"waiting", p.clientsWaiting}};
    for (const auto& [st, n] : states) {
      e.sample("pgswitch_pool_clients",
               {{"database", p.database}, {"user", p.user}, {"backend", p.backend}, {"state", st}},
               static_cast<uint64_t>(std::max(n, 0)));
    }
  }
  e.family("pgswitch_pool_max_wait_seconds", "gauge",
           "How long the longest-waiting client of a pool has waited.");
  for (const PoolInfo& p : snap.pools) {
    e.sample("pgswitch_pool_max_wait_seconds",
             {{"database", p.database}, {"user", p.user}, {"backend", p.backend}},
             usToSeconds(p.maxWaitMs * 1000));
  }
  for (const Total& t : totals(snap)) {
    e.family(t.metric, t.counter ? "counter" : "gauge", t.help);
    e.sample(t.metric, {}, t.value);
  }

  // Per-backend counters.
  std::vector<std::string> names = snap.backendNames();
  auto perBackend = [&](std::string_view metric, std::string_view help, auto field) {
    e.family(metric, "counter", help);
    for (size_t i = 0; i < names.size(); ++i) {
      e.sample(metric, {{"backend", names[i]}}, field(snap.counters(i)));
    }
  };
  perBackend("pgswitch_queries_total", "Requests completed (ReadyForQuery).",
             [](const BackendCounters& k) { return k.queries; });
  perBackend("pgswitch_transactions_total", "Transactions completed.",
             [](const BackendCounters& k) { return k.transactions; });
  e.family("pgswitch_routed_total", "counter", "Requests routed, as reads or writes.");
  for (size_t i = 0; i < names.size(); ++i) {
    const BackendCounters& k = snap.counters(i);
    e.sample("pgswitch_routed_total", {{"backend", names[i]}, {"route", "read"}}, k.reads);
    e.sample("pgswitch_routed_total", {{"backend", names[i]}, {"route", "write"}}, k.writes);
  }
  e.family("pgswitch_bytes_total", "counter",
           "Bytes relayed: in = client to server, out = server to client.");
  for (size_t i = 0; i < names.size(); ++i) {
    const BackendCounters& k = snap.counters(i);
    e.sample("pgswitch_bytes_total", {{"backend", names[i]}, {"direction", "in"}}, k.bytesIn);
    e.sample("pgswitch_bytes_total", {{"backend", names[i]}, {"direction", "out"}}, k.bytesOut);
  }

  // Bucket i of LatencyHistogram holds [2^i, 2^(i+1)) whole microseconds, i.e. values up to
  // 2^(i+1)-1 µs: that is its exact "le". The last bucket also takes everything larger, so it
  // has no finite bound and is folded into +Inf.
  const char* hist = "pgswitch_query_duration_seconds";
  e.family(hist, "histogram", "Time from request to ReadyForQuery.");
  for (size_t i = 0; i < names.size(); ++i) {
    const LatencyHistogram& h = snap.counters(i).latency;
    uint64_t cumulative = 0;
    for (int b = 0; b + 1 < LatencyHistogram::kBuckets; ++b) {
      cumulative += h.buckets[b];
      std::string le = usToSeconds((uint64_t{1} << (b + 1)) - 1);
      e.sample("pgswitch_query_duration_seconds_bucket", {{"backend", names[i]}, {"le", le}},
               cumulative);
    }
    e.sample("pgswitch_query_duration_seconds_bucket", {{"backend", names[i]}, {"le", "+Inf"}},
             h.count);
    e.sample("pgswitch_query_duration_seconds_sum", {{"backend", names[i]}}, usToSeconds(h.sumUs));
    e.sample("pgswitch_query_duration_seconds_count", {{"backend", names[i]}}, h.count);
  }

  e.family("pgswitch_paused", "gauge", "1 while PAUSE is in effect.");
  e.sample("pgswitch_paused", {}, uint64_t{snap.paused});
  return out;
}

namespace {

// A JSON object or array written in order; commas are handled here.
class Json {
 public:
  explicit Json(std::string& out) : out_(out) {}
  Json& open(char c) {
    sep();
    out_ += c;
    first_ = true;
    return *this;
  }
  Json& close(char c) {
    out_ += c;
    first_ = false;
    return *this;
  }
  Json& key(std::string_view k) {
    sep();
    appendJsonString(out_, k);
    out_ += ':';
    first_ = true;  // the value follows without a comma
    return *this;
  }
  Json& str(std::string_view v) {
    sep();
    appendJsonString(out_, v);
    return *this;
  }
  Json& num(uint64_t v) {
    sep();
    out_ += std::to_string(v);
    return *this;
  }
  Json& boolean(bool v) {
    sep();
    out_ += v ? "true" : "false";
    return *this;
  }
  Json& null() {
    sep();
    out_ += "null";
    return *this;
  }
  Json& kv(std::string_view k, std::string_view v) { return key(k).str(v); }
  Json& kv(std::string_view k, const char* v) { return key(k).str(v); }
  Json& kv(std::string_view k, const std::string& v) { return key(k).str(v); }
  Json& kv(std::string_view k, uint64_t v) { return key(k).num(v); }
  Json& kv(std::string_view k, int v) { return key(k).num(static_cast<uint64_t>(std::max(v, 0))); }
  Json& kv(std::string_view k, bool v) { return key(k).boolean(v); }

 private:
  void sep() {
    if (!first_) out_ += ',';
    first_ = false;
  }
  std::string& out_;
  bool first_ = true;
};

constexpr size_t kStatusEvents = 50;

}  // namespace

std::string renderStatusJson(const Snapshot& snap) {
  std::string out;
  Json j(out);
  j.open('{');
  j.kv("version", kPgswitchVersion);
  j.kv("uptime_ms", snap.uptimeMs);
  j.kv("paused", snap.paused);

  j.key("topology").open('{');
  if (snap.topology) {
    const routing::Topology& t = *snap.topology;
    j.kv("known", true).kv("version", t.version);
    j.key("primary");
    if (t.primary >= 0 && t.primary < static_cast<int>(t.backends.size())) {
      j.str(t.backends[t.primary].name);
    } else {
      j.null();
    }
    j.kv("writes_refused", t.writesRefused);
  } else {
    j.kv("known", false).kv("version", uint64_t{0}).key("primary").null();
    j.kv("writes_refused", false);
  }
  j.close('}');

  std::vector<std::string> names = snap.backendNames();
  BackendCounters total;
  j.key("backends").open('[');
  for (size_t i = 0; i < names.size(); ++i) {
    const BackendCounters& k = snap.counters(i);
    total.merge(k);
    if (snap.topology && i < snap.topology->backends.size() &&
        snap.topology->backends[i].state == routing::BackendState::Removed) {
      continue;  // a reload took it out; its counters are in the totals
    }
    j.open('{').kv("name", names[i]);
    if (snap.topology && i < snap.topology->backends.size()) {
      const routing::BackendInfo& b = snap.topology->backends[i];
      j.kv("host", b.host).kv("port", b.port);
      j.kv("role", routing::toString(b.role)).kv("state", routing::toString(b.state));
      j.kv("weight", b.weight);
      j.key("tags").open('[');
      for (const auto& t : b.tags) j.str(t);
      j.close(']');
      j.kv("lag_bytes", b.lagBytes).kv("lag_ms", b.lagMs).kv("timeline", uint64_t{b.timeline});
    } else if (snap.config && i < snap.config->backends.size()) {
      const BackendConfig& b = snap.config->backends[i];
      j.kv("host", b.host).kv("port", b.port).kv("role", "unknown").kv("state", "unknown");
      j.kv("weight", b.weight);
      j.key("tags").open('[');
      for (const auto& t : b.tags) j.str(t);
      j.close(']');
      j.key("lag_bytes").null().key("lag_ms").null().key("timeline").null();
    } else {
      j.kv("role", "unknown").kv("state", "unknown");
    }
    j.kv("server_connections", snap.serversOf(names[i]));
    j.kv("queries", k.queries).kv("transactions", k.transactions);
    j.kv("reads", k.reads).kv("writes", k.writes);
    j.kv("bytes_in", k.bytesIn).kv("bytes_out", k.bytesOut);
    j.kv("avg_latency_us", k.latency.averageUs());
    j.kv("p99_latency_us", k.latency.percentileUs(0.99));
    j.close('}');
  }
  j.close(']');

  j.key("pools").open('[');
  for (const PoolInfo& p : snap.pools) {
    j.open('{');
    j.kv("database", p.database).kv("user", p.user).kv("backend", p.backend).kv("mode", p.mode);
    j.kv("clients_active", p.clientsActive).kv("clients_waiting", p.clientsWaiting);
    j.kv("servers_active", p.serversActive).kv("servers_idle", p.serversIdle);
    j.kv("servers_connecting", p.serversConnecting).kv("servers_total", p.serversTotal);
    j.kv("pool_size", p.poolSize).kv("max_wait_ms", p.maxWaitMs);
    j.close('}');
  }
  j.close(']');

  j.key("totals").open('{');
  j.kv("clients", snap.clientsTotal).kv("servers", static_cast<uint64_t>(snap.servers.size()));
  j.kv("queries", total.queries).kv("transactions", total.transactions);
  j.kv("reads", total.reads).kv("writes", total.writes);
  j.kv("bytes_in", total.bytesIn).kv("bytes_out", total.bytesOut);
  j.kv("avg_latency_us", total.latency.averageUs());
  j.kv("p99_latency_us", total.latency.percentileUs(0.99));
  j.close('}');

  j.key("counters").open('{');
  j.kv("failovers", snap.failovers).kv("auth_failures", snap.authFailures);
  j.kv("access_refused", snap.accessRefused).kv("rate_limited", snap.rateLimited);
  j.close('}');

  j.key("events").open('[');
  size_t from = snap.events.size() > kStatusEvents ? snap.events.size() - kStatusEvents : 0;
  for (size_t i = from; i < snap.events.size(); ++i) {
    const EventRecord& ev = snap.events[i];
    j.open('{');
    j.kv("time", health::formatTimeUtc(static_cast<int64_t>(ev.unixMs)));
    j.kv("unix_ms", ev.unixMs).kv("type", ev.type).kv("backend", ev.backend);
    j.kv("detail", ev.detail);
    j.close('}');
  }
  j.close(']');
  j.close('}');
  out += '\n';
  return out;
}

std::string_view statusPageHtml() {
  static constexpr std::string_view kPage =
#include "proxy/admin/status_page.html.inc"
      ;
  return kPage;
}

}  // namespace pgswitch::proxy
