// Unit tests for proxy/http_render: every /metrics line is valid text exposition format 0.0.4
// (families declared once, samples grouped, labels escaped), histogram buckets are cumulative
// and end in +Inf == _count, /status parses as JSON with the documented fields and escaping,
// and the status page is self-contained.
#include "proxy/admin/http_render.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace pgswitch::proxy {
namespace {

// ---- the exposition format, parsed strictly ----

struct Sample {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;  // unescaped values
  std::string value;
  std::string label(std::string_view k) const {
    for (const auto& [n, v] : labels) {
      if (n == k) return v;
    }
    return "<none>";
  }
};

bool validName(std::string_view n, bool metric) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = std::isalpha(static_cast<unsigned char>(c)) || c == '_' || (metric && c == ':') ||
              (i > 0 && std::isdigit(static_cast<unsigned char>(c)));
    if (!ok) return false;
  }
  return true;
}

bool validValue(const std::string& v) {
  if (v == "+Inf" || v == "-Inf" || v == "NaN") return true;
  char* end = nullptr;
  std::strtod(v.c_str(), &end);
  return !v.empty() && end == v.c_str() + v.size();
}

// Parses the whole text; records a test failure for any malformed line.
std::vector<Sample> parseExposition(const std::string& text,
                                    std::map<std::string, std::string>* types) {
  std::vector<Sample> out;
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  std::set<std::string> helped, typed, finished;
  std::string current;  // family whose samples are being written
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
      bool help = line[2] == 'H';
      std::string rest = line.substr(7);
      std::string name = rest.substr(0, rest.find(' '));
      EXPECT_TRUE(validName(name, true)) << line;
      EXPECT_TRUE((help ? helped : typed).insert(name).second) << "declared twice: " << line;
      EXPECT_EQ(finished.count(name), 0u) << "family reopened: " << line;
      if (current != name && !current.empty()) finished.insert(current);
      current = name;
      if (!help) {
        std::string type = rest.substr(name.size() + 1);
        EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram" ||
                    type == "summary" || type == "untyped")
            << line;
        (*types)[name] = type;
      }
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    Sample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    EXPECT_TRUE(validName(s.name, true)) << line;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        std::string ln = line.substr(i, eq - i);
        EXPECT_TRUE(validName(ln, false)) << line;
        EXPECT_EQ(line[eq + 1], '"') << line;
        i = eq + 2;
        std::string v;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\') {
            char e = line[i + 1];
            EXPECT_TRUE(e == '\\' || e == '"' || e == 'n') << line;
            v += e == 'n' ? '\n' : e;
            i += 2;
          } else {
            v += line[i++];
          }
        }
        EXPECT_LT(i, line.size()) << "unterminated label value: " << line;
        ++i;  // closing quote
        s.labels.emplace_back(ln, v);
        if (line[i] == ',') ++i;
      }
      EXPECT_EQ(line[i], '}') << line;
      ++i;
    }
    EXPECT_EQ(line[i], ' ') << line;
    s.value = line.substr(i + 1);
    EXPECT_TRUE(validValue(s.value)) << line;
    // The sample belongs to the family being written.
    std::string family = s.name;
    for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
      if (!typed.count(family) && family.size() > suffix.size() &&
          family.compare(family.size() - suffix.size(), suffix.size(), suffix) == 0) {
        family = family.substr(0, family.size() - suffix.size());
      }
    }
    EXPECT_EQ(family, current) << "sample outside its family: " << line;
    EXPECT_TRUE(typed.count(family)) << line;
    out.push_back(std::move(s));
  }
  return out;
}

Snapshot makeSnapshot() {
  auto topo = std::make_shared<routing::Topology>();
  topo->version = 3;
  topo->primary = 0;
  routing::BackendInfo a;
  a.name = "pg1";
  a.host = "10.0.0.1";
  a.port = 5432;
  a.role = routing::Role::Primary;
  a.timeline = 2;
  routing::BackendInfo b = a;
  b.name = "pg2";
  b.role = routing::Role::Replica;
  b.state = routing::BackendState::Draining;
  b.lagBytes = 8192;
  b.lagMs = 1500;
  topo->backends = {a, b};
  Snapshot s;
  s.topology = topo;
  s.pools.push_back(PoolInfo{.backend = "pg1",
                             .database = "appdb",
                             .user = "app",
                             .mode = "transaction",
                             .clientsActive = 2,
                             .clientsWaiting = 1,
                             .serversActive = 2,
                             .serversIdle = 3,
                             .serversConnecting = 1,
                             .serversTotal = 6,
                             .maxWaitMs = 250,
                             .poolSize = 20});
  s.perBackend.resize(2);
  s.perBackend[0].queries = 100;
  s.perBackend[0].transactions = 40;
  s.perBackend[0].reads = 1;
  s.perBackend[0].writes = 99;
  s.perBackend[0].bytesIn = 5000;
  s.perBackend[0].bytesOut = 70000;
  for (uint64_t us : {0, 1, 3, 100, 1000000}) s.perBackend[0].latency.add(us);
  s.perBackend[1].queries = 7;
  s.clientsTotal = 3;
  s.failovers = 1;
  s.authFailures = 4;
  s.paused = true;
  s.uptimeMs = 61500;
  ServerInfo si;
  si.backend = "pg1";
  s.servers = {si, si};
  s.events.push_back({1714564800123, "role_changed", "pg2", "replica -> \"primary\"\n"});
  return s;
}

const Sample* find(const std::vector<Sample>& all, std::string_view name,
                   std::initializer_list<std::pair<std::string_view, std::string_view>> labels) {
  for (const Sample& s : all) {
    if (s.name != name) continue;
    bool ok = true;
    for (const auto& [k, v] : labels) ok = ok && s.label(k) == v;
    if (ok) return &s;
  }
  return nullptr;
}

std::string value(
    const std::vector<Sample>& all, std::string_view name,
    std::initializer_list<std::pair<std::string_view, std::string_view>> labels = {}) {
  const Sample* s = find(all, name, labels);
  return s ? s->value : "<missing>";
}

TEST(Metrics, EveryLineIsValidExposition) {
  std::map<std::string, std::string> types;
  auto samples = parseExposition(renderMetrics(makeSnapshot()), &types);
  EXPECT_FALSE(samples.empty());
  for (const auto& [name, type] : types) {
    if (type == "counter") {
      EXPECT_TRUE(name.ends_with("_total")) << name;
    }
  }
  EXPECT_EQ(types["pgswitch_query_duration_seconds"], "histogram");
  EXPECT_EQ(types["pgswitch_backend_up"], "gauge");
  // An empty snapshot is valid too.
  std::map<std::string, std::string> t2;
  parseExposition(renderMetrics(Snapshot{}), &t2);
  EXPECT_EQ(t2.size(), types.size());
}

TEST(Metrics, Values) {
  std::map<std::string, std::string> types;
  auto m = parseExposition(renderMetrics(makeSnapshot()), &types);
  EXPECT_EQ(value(m, "pgswitch_backend_up", {{"backend", "pg1"}}), "1");
  EXPECT_EQ(value(m, "pgswitch_backend_up", {{"backend", "pg2"}}), "0");
  EXPECT_EQ(value(m, "pgswitch_backend_role", {{"backend", "pg1"}, {"role", "primary"}}), "1");
  EXPECT_EQ(value(m, "pgswitch_backend_role", {{"backend", "pg1"}, {"role", "replica"}}), "0");
  EXPECT_EQ(value(m, "pgswitch_backend_state", {{"backend", "pg2"}, {"state", "draining"}}), "1");
  EXPECT_EQ(value(m, "pgswitch_backend_state", {{"backend", "pg2"}, {"state", "up"}}), "0");
  EXPECT_EQ(value(m, "pgswitch_backend_lag_bytes", {{"backend", "pg2"}}), "8192");
  EXPECT_EQ(value(m, "pgswitch_backend_lag_seconds", {{"backend", "pg2"}}), "1.5");
  EXPECT_EQ(value(m, "pgswitch_pool_servers",
                  {{"database", "appdb"}, {"user", "app"}, {"backend", "pg1"}, {"state", "idle"}}),
            "3");
  EXPECT_EQ(value(m, "pgswitch_pool_servers", {{"state", "connecting"}}), "1");
  EXPECT_EQ(value(m, "pgswitch_pool_clients", {{"state", "waiting"}}), "1");
  EXPECT_EQ(value(m, "pgswitch_pool_clients", {{"state", "active"}}), "2");
  EXPECT_EQ(value(m, "pgswitch_clients"), "3");
  EXPECT_EQ(value(m, "pgswitch_queries_total", {{"backend", "pg1"}}), "100");
  EXPECT_EQ(value(m, "pgswitch_queries_total", {{"backend", "pg2"}}), "7");
  EXPECT_EQ(value(m, "pgswitch_transactions_total", {{"backend", "pg1"}}), "40");
  EXPECT_EQ(value(m, "pgswitch_routed_total", {{"backend", "pg1"}, {"route", "write"}}), "99");
  EXPECT_EQ(value(m, "pgswitch_routed_total", {{"backend", "pg1"}, {"route", "read"}}), "1");
  EXPECT_EQ(value(m, "pgswitch_bytes_total", {{"backend", "pg1"}, {"direction", "out"}}), "70000");
  EXPECT_EQ(value(m, "pgswitch_failovers_total"), "1");
  EXPECT_EQ(value(m, "pgswitch_auth_failures_total"), "4");
  EXPECT_EQ(value(m, "pgswitch_paused"), "1");
  EXPECT_EQ(value(m, "pgswitch_uptime_seconds"), "61.5");
  EXPECT_EQ(value(m, "pgswitch_info", {{"version", "0.1.0"}}), "1");
}

TEST(Metrics, HistogramBucketsAreCumulative) {
  std::map<std::string, std::string> types;
  auto m = parseExposition(renderMetrics(makeSnapshot()), &types);
  std::vector<const Sample*> buckets;
  for (const Sample& s : m) {
    if (s.name == "pgswitch_query_duration_seconds_bucket" && s.label("backend") == "pg1") {
      buckets.push_back(&s);
    }
  }
  ASSERT_EQ(buckets.size(), static_cast<size_t>(LatencyHistogram::kBuckets));
  double prevLe = -1;
  uint64_t prevCount = 0;
  for (const Sample* b : buckets) {
    uint64_t n = std::stoull(b->value);
    EXPECT_GE(n, prevCount) << b->label("le");
    prevCount = n;
    if (b != buckets.back()) {
      double le = std::stod(b->label("le"));
      EXPECT_GT(le, prevLe);
      prevLe = le;
    }
  }
  EXPECT_EQ(buckets.back()->label("le"), "+Inf");
  // Observations 0, 1, 3, 100 µs and 1 s; le bounds are exact whole microseconds.
  EXPECT_EQ(
      value(m, "pgswitch_query_duration_seconds_bucket", {{"backend", "pg1"}, {"le", "0.000001"}}),
      "2");
  EXPECT_EQ(
      value(m, "pgswitch_query_duration_seconds_bucket", {{"backend", "pg1"}, {"le", "0.000003"}}),
      "3");
  EXPECT_EQ(
      value(m, "pgswitch_query_duration_seconds_bucket", {{"backend", "pg1"}, {"le", "0.000063"}}),
      "3");
  EXPECT_EQ(
      value(m, "pgswitch_query_duration_seconds_bucket", {{"backend", "pg1"}, {"le", "0.000127"}}),
      "4");
  EXPECT_EQ(
      value(m, "pgswitch_query_duration_seconds_bucket", {{"backend", "pg1"}, {"le", "0.524287"}}),
      "4");
  EXPECT_EQ(
      value(m, "pgswitch_query_duration_seconds_bucket", {{"backend", "pg1"}, {"le", "1.048575"}}),
      "5");
  EXPECT_EQ(
      value(m, "pgswitch_query_duration_seconds_bucket", {{"backend", "pg1"}, {"le", "+Inf"}}),
      "5");
  EXPECT_EQ(value(m, "pgswitch_query_duration_seconds_count", {{"backend", "pg1"}}), "5");
  EXPECT_EQ(value(m, "pgswitch_query_duration_seconds_sum", {{"backend", "pg1"}}), "1.000104");
  EXPECT_EQ(value(m, "pgswitch_query_duration_seconds_count", {{"backend", "pg2"}}), "0");
}

TEST(Metrics, LabelValuesAreEscaped) {
  EXPECT_EQ(escapeLabelValue("plain"), "plain");
  EXPECT_EQ(escapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(escapeLabelValue("caf\xC3\xA9"), "caf\xC3\xA9");            // valid UTF-8 kept
  EXPECT_EQ(escapeLabelValue("x\xFFy"), "x\xEF\xBF\xBDy");              // invalid byte replaced
  EXPECT_EQ(escapeLabelValue("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong form
  EXPECT_EQ(escapeLabelValue("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate

  Snapshot s = makeSnapshot();
  s.pools[0].database = "we\"ird\\db\nname";
  s.pools[0].user = "bad\xFE";
  std::map<std::string, std::string> types;
  auto m = parseExposition(renderMetrics(s), &types);
  const Sample* p = find(m, "pgswitch_pool_servers", {{"state", "idle"}});
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->label("database"), "we\"ird\\db\nname");
  EXPECT_EQ(p->label("user"), "bad\xEF\xBF\xBD");
}

// ---- a small JSON parser (RFC 8259 syntax, strict) ----

struct JsonValue;
using JsonObject = std::map<std::string, std::shared_ptr<JsonValue>>;
using JsonArray = std::vector<std::shared_ptr<JsonValue>>;
struct JsonValue {
  std::variant<std::nullptr_t, bool, double, std::string, JsonArray, JsonObject> v;
  const JsonValue& operator[](const std::string& k) const {
    static const JsonValue kNull{nullptr};
    const auto* o = std::get_if<JsonObject>(&v);
    if (!o || !o->count(k)) return kNull;
    return *o->at(k);
  }
  const JsonValue& operator[](size_t i) const { return *std::get<JsonArray>(v).at(i); }
  size_t size() const { return std::get<JsonArray>(v).size(); }
  double num() const { return std::get<double>(v); }
  const std::string& str() const { return std::get<std::string>(v); }
  bool isNull() const { return std::holds_alternative<std::nullptr_t>(v); }
};

class JsonParser {
 public:
  explicit JsonParser(std::string_view s) : s_(s) {}
  bool parse(JsonValue& out) {
    if (!value(out)) return false;
    ws();
    return i_ == s_.size();
  }

 private:
  void ws() {
    while (i_ < s_.size() &&
           (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) {
      ++i_;
    }
  }
  bool lit(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) return false;
    i_ += w.size();
    return true;
  }
  bool value(JsonValue& out) {
    ws();
    if (i_ >= s_.size()) return false;
    char c = s_[i_];
    if (c == '{') {
      ++i_;
      JsonObject o;
      ws();
      if (i_ < s_.size() && s_[i_] == '}') {
        ++i_;
        out.v = std::move(o);
        return true;
      }
      while (true) {
        ws();
        std::string k;
        if (!string(k)) return false;
        ws();
        if (!lit(":")) return false;
        auto v = std::make_shared<JsonValue>();
        if (!value(*v)) return false;
        if (o.count(k)) return false;  // duplicate key
        o[k] = v;
        ws();
        if (lit("}")) break;
        if (!lit(",")) return false;
      }
      out.v = std::move(o);
      return true;
    }
    if (c == '[') {
      ++i_;
      JsonArray a;
      ws();
      if (lit("]")) {
        out.v = std::move(a);
        return true;
      }
      while (true) {
        auto v = std::make_shared<JsonValue>();
        if (!value(*v)) return false;
        a.push_back(v);
        ws();
        if (lit("]")) break;
        if (!lit(",")) return false;
      }
      out.v = std::move(a);
      return true;
    }
    if (c == '"') {
      std::string s;
      if (!string(s)) return false;
      out.v = std::move(s);
      return true;
    }
    if (lit("true")) return out.v = true, true;
    if (lit("false")) return out.v = false, true;
    if (lit("null")) return out.v = nullptr, true;
    size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    while (i_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[i_])) || s_[i_] == '.' ||
                              s_[i_] == 'e' || s_[i_] == 'E' || s_[i_] == '+' || s_[i_] == '-')) {
      ++i_;
    }
    if (i_ == start) return false;
    out.v = std::stod(std::string(s_.substr(start, i_ - start)));
    return true;
  }
  bool string(std::string& out) {
    if (!lit("\"")) return false;
    while (i_ < s_.size()) {
      unsigned char c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return true;
      if (c < 0x20) return false;  // raw control characters are not allowed
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      if (i_ >= s_.size()) return false;
      char e = s_[i_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          if (i_ + 4 > s_.size()) return false;
          unsigned cp = std::stoul(std::string(s_.substr(i_, 4)), nullptr, 16);
          i_ += 4;
          if (cp < 0x80) {
            out += static_cast<char>(cp);
          } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
          } else {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
          }
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }
  std::string_view s_;
  size_t i_ = 0;
};

JsonValue parseJson(const std::string& text) {
  JsonValue v;
  EXPECT_TRUE(JsonParser(text).parse(v)) << text;
  return v;
}

TEST(StatusJson, DocumentParsesWithTheDocumentedFields) {
  JsonValue j = parseJson(renderStatusJson(makeSnapshot()));
  EXPECT_EQ(j["version"].str(), "0.1.0");
  EXPECT_EQ(j["uptime_ms"].num(), 61500);
  EXPECT_EQ(std::get<bool>(j["paused"].v), true);
  EXPECT_EQ(j["topology"]["primary"].str(), "pg1");
  EXPECT_EQ(j["topology"]["version"].num(), 3);
  EXPECT_EQ(std::get<bool>(j["topology"]["writes_refused"].v), false);
  ASSERT_EQ(j["backends"].size(), 2u);
  const JsonValue& pg1 = j["backends"][0];
  EXPECT_EQ(pg1["name"].str(), "pg1");
  EXPECT_EQ(pg1["role"].str(), "primary");
  EXPECT_EQ(pg1["state"].str(), "up");
  EXPECT_EQ(pg1["queries"].num(), 100);
  EXPECT_EQ(pg1["transactions"].num(), 40);
  EXPECT_EQ(pg1["server_connections"].num(), 2);
  const JsonValue& pg2 = j["backends"][1];
  EXPECT_EQ(pg2["state"].str(), "draining");
  EXPECT_EQ(pg2["lag_bytes"].num(), 8192);
  EXPECT_EQ(pg2["lag_ms"].num(), 1500);
  EXPECT_EQ(pg2["tags"].size(), 0u);
  ASSERT_EQ(j["pools"].size(), 1u);
  EXPECT_EQ(j["pools"][0]["clients_waiting"].num(), 1);
  EXPECT_EQ(j["pools"][0]["servers_idle"].num(), 3);
  EXPECT_EQ(j["totals"]["queries"].num(), 107);
  EXPECT_EQ(j["totals"]["clients"].num(), 3);
  EXPECT_EQ(j["totals"]["servers"].num(), 2);
  EXPECT_EQ(j["counters"]["failovers"].num(), 1);
  EXPECT_EQ(j["counters"]["auth_failures"].num(), 4);
  EXPECT_EQ(j["counters"]["access_refused"].num(), 0);
  EXPECT_EQ(j["counters"]["rate_limited"].num(), 0);
  ASSERT_EQ(j["events"].size(), 1u);
  EXPECT_EQ(j["events"][0]["time"].str(), "2024-05-01T12:00:00.123Z");
  EXPECT_EQ(j["events"][0]["detail"].str(), "replica -> \"primary\"\n");
}

TEST(StatusJson, EmptySnapshot) {
  JsonValue j = parseJson(renderStatusJson(Snapshot{}));
  EXPECT_TRUE(j["topology"]["primary"].isNull());
  EXPECT_EQ(std::get<bool>(j["topology"]["known"].v), false);
  EXPECT_EQ(j["backends"].size(), 0u);
  EXPECT_EQ(j["events"].size(), 0u);
}

TEST(StatusJson, StringEscaping) {
  auto esc = [](std::string_view s) {
    std::string out;
    appendJsonString(out, s);
    return out;
  };
  EXPECT_EQ(esc("plain"), "\"plain\"");
  EXPECT_EQ(esc("q\"b\\s/"), "\"q\\\"b\\\\s/\"");
  EXPECT_EQ(esc("\n\r\t\b\f"), "\"\\n\\r\\t\\b\\f\"");
  EXPECT_EQ(esc(std::string_view("\x01\x1f\0", 3)), "\"\\u0001\\u001f\\u0000\"");
  EXPECT_EQ(esc("caf\xC3\xA9 \xF0\x9F\x98\x80"), "\"caf\xC3\xA9 \xF0\x9F\x98\x80\"");
  EXPECT_EQ(esc("bad\xFF"), "\"bad\\ufffd\"");
  EXPECT_EQ(esc("\xE2\x82"), "\"\\ufffd\\ufffd\"");  // truncated sequence

  // Hostile names survive the round trip through a strict parser.
  Snapshot s = makeSnapshot();
  s.pools[0].database = std::string("d\"b\\\n\x01\x7f", 7);
  s.pools[0].user = "</script><b>";
  JsonValue j = parseJson(renderStatusJson(s));
  EXPECT_EQ(j["pools"][0]["database"].str(), std::string("d\"b\\\n\x01\x7f", 7));
  EXPECT_EQ(j["pools"][0]["user"].str(), "</script><b>");
}

TEST(StatusPage, SelfContained) {
  std::string_view page = statusPageHtml();
  EXPECT_EQ(page.substr(0, 15), "<!DOCTYPE html>");
  EXPECT_TRUE(page.ends_with("</html>\n"));
  EXPECT_NE(page.find("fetch(\"/status\""), std::string_view::npos);
  EXPECT_NE(page.find("<style>"), std::string_view::npos);
  EXPECT_NE(page.find("<script>"), std::string_view::npos);
  for (std::string_view external : {"http://", "https://", "src=", "<link", "@import", "//cdn"}) {
    EXPECT_EQ(page.find(external), std::string_view::npos) << external;
  }
}

}  // namespace
}  // namespace pgswitch::proxy
