// Unit tests for the settings table (proxy/config/settings.h) and its four users: every entry
// loads from TOML and shows in SHOW CONFIG, the loader and SET enforce the same ranges with the
// same reasons, SET refuses what it may not change, and the reload check names restart-only keys.
#include "proxy/config/settings.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "proxy/admin/console_actions.h"
#include "proxy/admin/console_commands.h"

namespace pgswitch::proxy {
namespace {

UserConfig userNamed(std::string name) {
  UserConfig u;
  u.name = std::move(name);
  return u;
}

constexpr const char* kPath = "/etc/pgswitch/settings.toml";
constexpr std::string_view kBackend = "[[backend]]\nhost = \"h\"\n";

// ---- values ----

std::string tomlValue(const SettingValue& v) {
  if (auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  if (auto* s = std::get_if<std::string>(&v)) return "\"" + *s + "\"";
  std::string out = "[";
  for (const auto& e : std::get<std::vector<std::string>>(v))
    out += (out.size() > 1 ? ", \"" : "\"") + e + "\"";
  return out + "]";
}

// What SET is typed with for the value (lists comma-separated, the rest as in TOML unquoted).
std::string typedValue(const SettingValue& v) {
  if (auto* s = std::get_if<std::string>(&v)) return *s;
  if (auto* l = std::get_if<std::vector<std::string>>(&v)) {
    std::string out;
    for (const auto& e : *l) out += (out.empty() ? "" : ", ") + e;
    return out;
  }
  std::string t = tomlValue(v);
  return t;
}

// A valid value other than the default, for each setting.
SettingValue otherValue(const Setting& s) {
  if (s.key == "server.listen") return std::string("[::1]:7000");
  if (s.key == "failover.retry_safe_as") return std::string("40001");
  if (s.key == "auth.query") return std::string("SELECT name, pw FROM users WHERE name = $1");
  switch (s.type) {
    case SettingType::Integer: {
      int64_t d = std::get<int64_t>(s.def);
      return d == s.min ? s.min + 1 : s.min;
    }
    case SettingType::Boolean:
      return !std::get<bool>(s.def);
    case SettingType::Text:
      return std::string("value of ") + std::string(s.name());
    case SettingType::List:
      return std::vector<std::string>{"a", "b c"};
    case SettingType::Choice:
      for (const auto& c : s.choices)
        if (c != std::get<std::string>(s.def)) return c;
  }
  ADD_FAILURE() << "no other value for " << s.key;
  return s.def;
}

// SHOW CONFIG's text for a value, written out independently of showValue().
std::string shownAs(const Setting& s, const SettingValue& v) {
  if (s.secret) return std::get<std::string>(v).empty() ? "" : "********";
  return typedValue(v);
}

std::string fileWith(const Setting& s, const std::string& valueText) {
  return "[" + std::string(s.section()) + "]\n" + std::string(s.name()) + " = " + valueText + "\n" +
         std::string(kBackend);
}

// ---- the console, driven for real: SET goes through applySetting on a config ----

class ConfigActions final : public ConsoleActions {
 public:
  std::shared_ptr<const Config> cfg = std::make_shared<Config>();
  std::string pause(std::string_view) override { return ""; }
  std::string resume(std::string_view) override { return ""; }
  std::string reload() override { return ""; }
  std::string enableBackend(std::string_view) override { return ""; }
  std::string disableBackend(std::string_view) override { return ""; }
  std::string drainBackend(std::string_view) override { return ""; }
  std::string attachBackend(std::string_view) override { return ""; }
  std::string promoteBackend(std::string_view) override { return ""; }
  std::string switchoverTo(std::string_view) override { return ""; }
  SetResult set(std::string_view key, std::string_view value) override {
    auto next = std::make_shared<Config>(*cfg);
    SetResult r = trySetting(*next, key, value);
    if (r.error.empty()) cfg = next;
    return r;
  }
  std::string shutdown(bool) override { return ""; }
};

struct Reply {
  std::vector<std::vector<std::string>> rows;  // DataRows (no NULLs in what is tested here)
  std::string sqlstate, message, tag;
};

uint32_t be32(std::string_view b, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = v << 8 | static_cast<uint8_t>(b[at + i]);
  return v;
}

Reply run(std::string_view query, ConfigActions& actions) {
  Snapshot snap;
  snap.config = actions.cfg;
  std::string out = runConsole(query, snap, actions).messages;
  Reply r;
  for (size_t at = 0; at + 5 <= out.size();) {
    char type = out[at];
    size_t end = at + 1 + be32(out, at + 1);
    std::string_view body(out.data() + at + 5, end - at - 5);
    if (type == 'D') {
      std::vector<std::string> row;
      size_t p = 2;
      for (int n = static_cast<uint8_t>(body[0]) << 8 | static_cast<uint8_t>(body[1]); n > 0; --n) {
        uint32_t len = be32(body, p);
        row.emplace_back(body.substr(p + 4, len));
        p += 4 + len;
      }
      r.rows.push_back(std::move(row));
    } else if (type == 'E') {
      for (size_t p = 0; p < body.size() && body[p];) {
        size_t z = body.find('\0', p + 1);
        std::string value(body.substr(p + 1, z - p - 1));
        if (body[p] == 'C') r.sqlstate = value;
        if (body[p] == 'M') r.message = value;
        p = z + 1;
      }
    } else if (type == 'C') {
      r.tag = std::string(body.substr(0, body.find('\0')));
    }
    at = end;
  }
  return r;
}

// key -> {value, reloadable}
std::map<std::string, std::pair<std::string, std::string>> showConfig(ConfigActions& a) {
  std::map<std::string, std::pair<std::string, std::string>> m;
  for (const auto& row : run("SHOW CONFIG", a).rows) m[row.at(0)] = {row.at(1), row.at(2)};
  return m;
}

// ---- the table itself ----

TEST(Settings, KeysAreUniqueQualifiedAndDescribed) {
  std::set<std::string_view> keys;
  std::set<std::string_view> sections(settingSections().begin(), settingSections().end());
  for (const Setting& s : settings()) {
    EXPECT_TRUE(keys.insert(s.key).second) << "duplicate " << s.key;
    EXPECT_TRUE(sections.count(s.section())) << s.key;
    EXPECT_FALSE(s.name().empty()) << s.key;
    EXPECT_EQ(s.name().find('.'), std::string_view::npos) << s.key;
    EXPECT_FALSE(s.help.empty()) << s.key;
    EXPECT_EQ(findSetting(s.key), &s);
    if (s.type == SettingType::Choice) {
      EXPECT_GE(s.choices.size(), 2u) << s.key;
    }
    if (s.secret) {
      EXPECT_EQ(s.type, SettingType::Text) << s.key;
    }
  }
  EXPECT_EQ(findSetting("pool.nonsense"), nullptr);
  for (const CrossCheck& x : crossChecks()) EXPECT_NE(findSetting(x.key), nullptr) << x.key;
}

TEST(Settings, DefaultsAreValidAndAreWhatConfigStartsWith) {
  Config c;
  for (const Setting& s : settings()) {
    EXPECT_EQ(checkValue(s, s.def), "") << s.key;
    EXPECT_EQ(s.read(c), s.def) << s.key;
  }
  for (const CrossCheck& x : crossChecks()) EXPECT_TRUE(x.holds(c)) << x.key;
  // Spot checks against the documented values.
  EXPECT_EQ(c.listenHost, "127.0.0.1");
  EXPECT_EQ(c.listenPort, 6432);
  EXPECT_EQ(c.poolSize, 20);
  EXPECT_EQ(c.maxMessageBytes, 64u * 1024 * 1024);
  EXPECT_EQ(c.health.user, "postgres");
  EXPECT_EQ(c.failover.maxFailoverLagBytes, 16u * 1024 * 1024);
  EXPECT_TRUE(c.routing.readWriteSplit);
  EXPECT_EQ(c.routing.consistency, Consistency::Strong);
  EXPECT_FALSE(c.routing.fallbackError);
}

// A range wider than its field would wrap silently; both ends must survive a write.
TEST(Settings, IntegerRangesFitTheirFields) {
  for (const Setting& s : settings()) {
    if (s.type != SettingType::Integer) continue;
    for (int64_t v : {s.min, s.max}) {
      Config c;
      s.write(c, v);
      EXPECT_EQ(s.read(c), SettingValue(v)) << s.key << " = " << v;
    }
  }
}

// ---- load -> SHOW CONFIG ----

TEST(Settings, EveryEntryLoadsAndShowsInShowConfig) {
  for (const Setting& s : settings()) {
    SettingValue v = otherValue(s);
    ASSERT_NE(v, s.def) << s.key;
    auto r = parseConfig(fileWith(s, tomlValue(v)), kPath);
    ASSERT_TRUE(r.ok()) << s.key << ": " << r.error().joined();
    const Config& c = **r;
    EXPECT_EQ(s.read(c), v) << s.key;
    // Nothing else moved: two entries writing one field would show here.
    for (const Setting& o : settings()) {
      if (&o != &s) {
        EXPECT_EQ(o.read(c), o.def) << o.key << " changed by loading " << s.key;
      }
    }

    ConfigActions a;
    a.cfg = *r;
    auto shown = showConfig(a);
    ASSERT_TRUE(shown.count(std::string(s.key))) << s.key;
    EXPECT_EQ(shown[std::string(s.key)].first, shownAs(s, v)) << s.key;
    EXPECT_EQ(shown[std::string(s.key)].second, s.apply == Apply::Restart ? "f" : "t") << s.key;
  }
}

TEST(Settings, ShowConfigRowsFollowTheTable) {
  ConfigActions a;
  auto cfg = std::make_shared<Config>();
  cfg->path = kPath;
  cfg->backends = {{"pg1", "10.0.0.1", 5432, 1, {}}};
  a.cfg = cfg;
  auto rows = run("SHOW CONFIG", a).rows;
  ASSERT_EQ(rows.size(), 1 + settings().size() + 4);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"config_file", kPath, "f"}));
  for (size_t i = 0; i < settings().size(); ++i) {
    const Setting& s = settings()[i];
    EXPECT_EQ(rows[i + 1].at(0), s.key);
    EXPECT_EQ(rows[i + 1].at(1), shownAs(s, s.def)) << s.key;
  }
  EXPECT_EQ(rows[1 + settings().size()].at(0), "backend.pg1.host");
}

TEST(Settings, EverySettableEntryRoundTripsThroughSetAndShowConfig) {
  for (const Setting& s : settings()) {
    if (s.apply != Apply::Set) continue;
    ConfigActions a;
    // A [[user]] "a": SET admin_users = 'a, b c' must not lock every admin out.
    auto withUser = std::make_shared<Config>();
    withUser->users.push_back(userNamed("a"));
    a.cfg = withUser;
    SettingValue v = otherValue(s);
    Reply r = run("SET " + std::string(s.key) + " = '" + typedValue(v) + "'", a);
    ASSERT_EQ(r.tag, "SET") << s.key << ": " << r.message;
    EXPECT_EQ(s.read(*a.cfg), v) << s.key;
    EXPECT_EQ(showConfig(a)[std::string(s.key)].first, shownAs(s, v)) << s.key;
  }
}

// ---- the same ranges in the loader and in SET ----

// The reason the loader gives for `valueText` ("" if it loads), without "path:line: name ".
std::string loaderReason(const Setting& s, const std::string& valueText) {
  auto r = parseConfig(fileWith(s, valueText), kPath);
  if (r.ok()) return "";
  std::string prefix = std::string(kPath) + ":2: " + std::string(s.name()) + " ";
  EXPECT_EQ(r.error().messages.size(), 1u) << r.error().joined();
  const std::string& m = r.error().messages.at(0);
  EXPECT_EQ(m.rfind(prefix, 0), 0u) << m;
  return m.substr(prefix.size());
}

// The reason SET gives ("" if it applies), without "invalid value for key: ".
std::string setReason(const Setting& s, const std::string& typed) {
  Config c;
  std::string err = applySetting(c, s.key, typed);
  std::string prefix = "invalid value for " + std::string(s.key) + ": ";
  if (err.empty()) return "";
  EXPECT_EQ(err.rfind(prefix, 0), 0u) << err;
  return err.substr(prefix.size());
}

// An allowed value that breaks a rule between settings when the others are at their defaults.
bool breaksARule(const Setting& s, const SettingValue& v) {
  if (!checkValue(s, v).empty()) return false;
  Config c;
  s.write(c, v);
  for (const CrossCheck& x : crossChecks())
    if (!x.holds(c)) return true;
  return false;
}

TEST(Settings, LoaderAndSetEnforceTheSameRanges) {
  int compared = 0;
  for (const Setting& s : settings()) {
    std::vector<std::pair<std::string, std::string>> cases;  // {TOML text, typed text}
    if (s.type == SettingType::Integer) {
      for (int64_t v : {s.min - 1, s.min, s.max}) cases.push_back({std::to_string(v), ""});
      if (s.max < INT64_MAX) cases.push_back({std::to_string(s.max + 1), ""});
      for (auto& c : cases) c.second = c.first;
    } else if (s.type == SettingType::Choice) {
      for (const auto& c : s.choices) cases.push_back({"\"" + c + "\"", c});
      cases.push_back({"\"bogus\"", "bogus"});
    } else if (s.extraCheck) {
      cases.push_back({"\"" + typedValue(otherValue(s)) + "\"", typedValue(otherValue(s))});
      cases.push_back({"\"x:y:z:w\"", "x:y:z:w"});
      cases.push_back({"\"\"", ""});
      cases.push_back({"\"   \"", "   "});
    }
    for (const auto& [toml, typed] : cases) {
      SettingValue v;
      if (s.type == SettingType::Integer) {
        v = std::stoll(typed);
      } else {
        v = typed;
      }
      if (breaksARule(s, v)) continue;  // min_pool_size = max: RulesBetweenSettings... covers it
      std::string loaded = loaderReason(s, toml);
      if (s.apply == Apply::Set) {
        EXPECT_EQ(loaded, setReason(s, typed)) << s.key << " = " << toml;
        ++compared;
      }
      // And both say what the table's check says.
      EXPECT_EQ(loaded, checkValue(s, v)) << s.key << " = " << toml;
    }
  }
  EXPECT_GT(compared, 50);
}

TEST(Settings, RangeReasonsKeepTheirWording) {
  Config c;
  EXPECT_EQ(applySetting(c, "pool.pool_size", "0"),
            "invalid value for pool.pool_size: must be at least 1");
  EXPECT_EQ(applySetting(c, "health.period_ms", "5"),
            "invalid value for health.period_ms: must be at least 10");
  EXPECT_EQ(applySetting(c, "server.max_message_bytes", "100"),
            "invalid value for server.max_message_bytes: must be at least 8192");
  EXPECT_EQ(applySetting(c, "pool.pool_size", "many"),
            "invalid value for pool.pool_size: must be an integer");
  EXPECT_EQ(applySetting(c, "server.pool_mode", "statement"),
            "invalid value for server.pool_mode: must be \"session\" or \"transaction\"");
  EXPECT_EQ(applySetting(c, "failover.retry_safe_as", "4000"),
            "invalid value for failover.retry_safe_as: must be a 5-character SQLSTATE such as "
            "\"40001\"");
  auto errs = [](std::string_view text) {
    auto r = parseConfig(std::string(text) + std::string(kBackend), kPath);
    return r.ok() ? std::string() : r.error().joined();
  };
  EXPECT_EQ(errs("[server]\nworkers = 300\n"),
            std::string(kPath) + ":2: workers must be between 0 and 256\n");
  EXPECT_EQ(errs("[pool]\npool_size = 0\n"),
            std::string(kPath) + ":2: pool_size must be at least 1\n");
  EXPECT_EQ(errs("[server]\nlog_level = \"loud\"\n"),
            std::string(kPath) +
                ":2: log_level must be one of trace, debug, info, warn, error, critical, off\n");
  EXPECT_EQ(errs("[health]\nmax_lag_bytes = -1\n"),
            std::string(kPath) + ":2: max_lag_bytes must not be negative\n");
  EXPECT_EQ(errs("[routing]\nfallback = \"nowhere\"\n"),
            std::string(kPath) + ":2: fallback must be \"primary\" or \"error\"\n");
}

TEST(Settings, RulesBetweenSettingsHoldInTheLoaderAndInSet) {
  auto r = parseConfig("[pool]\npool_size = 5\nmin_pool_size = 6\n" + std::string(kBackend), kPath);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().joined(),
            std::string(kPath) + ":3: min_pool_size must not exceed pool_size\n");

  Config c;
  c.poolSize = 5;
  EXPECT_EQ(applySetting(c, "pool.min_pool_size", "6"),
            "invalid value for pool.min_pool_size: min_pool_size must not exceed pool_size");
  EXPECT_EQ(c.minPoolSize, 0);  // left as it was
  EXPECT_EQ(applySetting(c, "pool.min_pool_size", "5"), "");
  EXPECT_EQ(applySetting(c, "pool.pool_size", "4"),
            "invalid value for pool.pool_size: min_pool_size must not exceed pool_size");
  EXPECT_EQ(c.poolSize, 5);
}

// ---- what SET refuses ----

// Guard rails: a SET must not leave the process stuck until a restart.
TEST(Settings, SetRefusesToLockEveryAdminOut) {
  ConfigActions a;
  auto c = std::make_shared<Config>();
  c->users.push_back(userNamed("admin"));
  c->adminUsers = {"admin"};
  a.cfg = c;
  Reply empty = run("SET admin_users = ''", a);
  EXPECT_EQ(empty.sqlstate, "22023");
  EXPECT_EQ(empty.message,
            "invalid value for server.admin_users: must name at least one user: an empty list "
            "would lock every admin out of the console until a restart");
  Reply nobody = run("SET admin_users = 'nobody, ghost'", a);
  EXPECT_EQ(nobody.sqlstate, "22023");
  EXPECT_NE(nobody.message.find("names no configured [[user]]"), std::string::npos);
  EXPECT_EQ(a.cfg->adminUsers, (std::vector<std::string>{"admin"}));  // unchanged
  EXPECT_EQ(run("SET admin_users = 'ops, admin'", a).tag, "SET");
  EXPECT_EQ(a.cfg->adminUsers, (std::vector<std::string>{"ops", "admin"}));
  // In the file an empty list is the default (no console) and stays allowed.
  auto r = parseConfig("[server]\nadmin_users = []\n" + std::string(kBackend), kPath);
  EXPECT_TRUE(r.ok()) << r.error().joined();
}

TEST(Settings, CheckQueryMustNotBeBlankInSetOrFile) {
  ConfigActions a;
  for (std::string_view v : {"''", "'   '", "' \t '"}) {
    Reply r = run("SET server_check_query = " + std::string(v), a);
    EXPECT_EQ(r.sqlstate, "22023") << v;
    EXPECT_EQ(r.message,
              "invalid value for pool.server_check_query: must not be empty or blank "
              "(server_check_delay = 0 turns the check off)")
        << v;
  }
  EXPECT_EQ(a.cfg->serverCheckQuery, "SELECT 1");
  auto r = parseConfig("[pool]\nserver_check_query = \" \"\n" + std::string(kBackend), kPath);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().joined(), std::string(kPath) +
                                    ":2: server_check_query must not be empty or blank "
                                    "(server_check_delay = 0 turns the check off)\n");
  EXPECT_EQ(run("SET server_check_query = ';'", a).tag, "SET");
  EXPECT_EQ(run("SET server_check_delay = 0", a).tag, "SET");
  // Any other value the setting does not allow is 22023 as well; what SET cannot change, 55000.
  EXPECT_EQ(run("SET pool_size = 0", a).sqlstate, "22023");
  EXPECT_EQ(run("SET listen = '0.0.0.0:1'", a).sqlstate, "55000");
}

TEST(Settings, LogValueCutsLongValues) {
  EXPECT_EQ(logValue("SELECT 1"), "SELECT 1");
  std::string big(1 << 20, 'x');
  std::string cut = logValue(big);
  EXPECT_EQ(cut, std::string(200, 'x') + "... (1048576 bytes)");
  EXPECT_EQ(logValue(std::string(200, 'y')), std::string(200, 'y'));
  // Never half a character, never a line break.
  std::string utf = std::string(199, 'a') + "\xc3\xa9" + "tail";
  EXPECT_EQ(logValue(utf), std::string(199, 'a') + "... (205 bytes)");
  EXPECT_EQ(logValue("a\nb\rc"), "a?b?c");
  EXPECT_EQ(logValue("abcdef", 3), "abc... (6 bytes)");
}

TEST(Settings, SetRefusesWhatOnlyARestartOrTheFileChanges) {
  int restartOnly = 0;
  for (const Setting& s : settings()) {
    if (s.apply == Apply::Set) continue;
    std::string expect = "setting \"" + std::string(s.key) + "\" cannot be changed ";
    expect += s.apply == Apply::Restart ? "without a restart"
                                        : "with SET: edit the configuration file and RELOAD";
    ConfigActions a;
    Reply r = run("SET " + std::string(s.key) + " = '" + typedValue(otherValue(s)) + "'", a);
    EXPECT_EQ(r.sqlstate, "55000") << s.key;
    EXPECT_EQ(r.message, expect) << s.key;
    EXPECT_EQ(s.read(*a.cfg), s.def) << s.key;  // nothing applied
    Config c;
    EXPECT_EQ(applySetting(c, s.key, typedValue(otherValue(s))), expect) << s.key;
    restartOnly += s.apply == Apply::Restart;
  }
  // listen, workers, io_uring, tcp_defer_accept, log_file, metrics_listen
  EXPECT_EQ(restartOnly, 6);
  ConfigActions a;
  Reply r = run("SET config_file = '/tmp/x.toml'", a);
  EXPECT_EQ(r.sqlstate, "55000");
  EXPECT_EQ(r.message, "setting \"config_file\" cannot be changed without a restart");
}

TEST(Settings, BareNamesPreferTheSettingSetChanges) {
  ConfigActions a;
  EXPECT_EQ(run("SET user = 'checker'", a).tag, "SET");
  EXPECT_EQ(a.cfg->health.user, "checker");
  EXPECT_EQ(a.cfg->failover.user, "");
  EXPECT_EQ(run("SET max_lag_bytes = 10", a).tag, "SET");
  EXPECT_EQ(a.cfg->health.maxLagBytes, 10u);
  EXPECT_EQ(a.cfg->routing.maxLagBytes, 16u * 1024 * 1024);
  Reply split = run("SET read_write_split = off", a);
  EXPECT_EQ(split.sqlstate, "55000");
  EXPECT_NE(split.message.find("routing.read_write_split"), std::string::npos);
  EXPECT_EQ(run("SET poolsize = 3", a).sqlstate, "42704");
  EXPECT_EQ(run("SET POOL.POOL_SIZE = 3", a).tag, "SET");
  EXPECT_EQ(a.cfg->poolSize, 3);
}

// Above INT32_MAX is fine for the uint64 byte counts, in SET as in the file.
TEST(Settings, ByteCountsAcceptLargeValuesInSet) {
  Config c;
  EXPECT_EQ(applySetting(c, "failover.max_failover_lag_bytes", "10000000000"), "");
  EXPECT_EQ(c.failover.maxFailoverLagBytes, 10000000000u);
  EXPECT_NE(applySetting(c, "pool.pool_size", "10000000000"), "");
}

// ---- the reload check ----

TEST(Settings, ReloadCheckNamesOnlyRestartSettingsThatChanged) {
  Config running;
  for (const Setting& s : settings()) {
    Config loaded;
    s.write(loaded, otherValue(s));
    auto changed = restartOnlyChanges(running, loaded);
    if (s.apply == Apply::Restart) {
      ASSERT_EQ(changed.size(), 1u) << s.key;
      EXPECT_EQ(changed[0], &s);
    } else {
      EXPECT_TRUE(changed.empty()) << s.key;
    }
  }
  EXPECT_TRUE(restartOnlyChanges(running, running).empty());
}

}  // namespace
}  // namespace pgswitch::proxy
