// TOML loading with toml++ (Debian libtomlplusplus-dev): the sections' settings through the
// settings table (settings.h), the [[backend]], [[user]] and [[routing.rule]] arrays by hand.
// Unknown keys are errors: a typo in a setting must not silently fall back to a default.
#include "proxy/config/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "proxy/config/settings.h"

namespace pgswitch::proxy {

const char* toString(PoolMode m) {
  switch (m) {
    case PoolMode::Session: return "session";
    case PoolMode::Transaction: return "transaction";
  }
  return "?";
}

const char* toString(AuthMethod m) {
  switch (m) {
    case AuthMethod::ScramSha256: return "scram-sha-256";
    case AuthMethod::Md5: return "md5";
    case AuthMethod::Trust: return "trust";
  }
  return "?";
}

const char* toString(ServerSslMode m) {
  switch (m) {
    case ServerSslMode::Disable: return "disable";
    case ServerSslMode::Prefer: return "prefer";
    case ServerSslMode::Require: return "require";
    case ServerSslMode::VerifyCa: return "verify-ca";
    case ServerSslMode::VerifyFull: return "verify-full";
  }
  return "?";
}

bool UserConfig::passwordIsScram() const { return password.rfind("SCRAM-SHA-256$", 0) == 0; }
bool UserConfig::passwordIsMd5() const {
  return password.size() == 35 && password.rfind("md5", 0) == 0;
}
bool UserConfig::passwordIsPlaintext() const { return !passwordIsScram() && !passwordIsMd5(); }

std::shared_ptr<const UserConfig> lookedUpUser(std::string name, std::string stored) {
  auto u = std::make_shared<UserConfig>();
  u->name = std::move(name);
  u->password = std::move(stored);
  if (u->passwordIsScram()) {
    u->scram = protocol::parseScramSecret(u->password);
    if (!u->scram) return nullptr;
    u->auth = AuthMethod::ScramSha256;
  } else if (u->passwordIsMd5()) {
    u->auth = AuthMethod::Md5;
  } else {
    std::array<std::byte, 16> salt;
    protocol::randomBytes(salt);
    u->scram = protocol::makeScramSecret(
        u->password, std::string_view(reinterpret_cast<const char*>(salt.data()), salt.size()));
    u->auth = AuthMethod::ScramSha256;
  }
  return u;
}

const UserConfig* Config::findUser(std::string_view name) const {
  for (const auto& u : users)
    if (u.name == name) return &u;
  return nullptr;
}

bool Config::isAdmin(std::string_view user) const {
  for (const auto& a : adminUsers)
    if (a == user) return true;
  return false;
}

bool Config::isStatsUser(std::string_view user) const {
  for (const auto& a : statsUsers)
    if (a == user) return true;
  return false;
}

std::string ConfigError::joined() const {
  std::string s;
  for (const auto& m : messages) {
    s += m;
    s += '\n';
  }
  return s;
}

namespace {

class Loader {
 public:
  Loader(const std::string& path) : path_(path) {}

  void error(const toml::node* n, const std::string& msg) {
    std::ostringstream o;
    o << path_ << ":" << (n ? n->source().begin.line : 0) << ": " << msg;
    errors_.push_back(o.str());
  }
  void error(const toml::source_region& r, const std::string& msg) {
    std::ostringstream o;
    o << path_ << ":" << r.begin.line << ": " << msg;
    errors_.push_back(o.str());
  }

  // Reports keys of a table that the loader does not know.
  void checkKeys(const toml::table& t, std::string_view section,
                 const std::vector<std::string_view>& known) {
    for (auto& [k, v] : t) {
      if (std::find(known.begin(), known.end(), k.str()) == known.end())
        error(&v, "unknown key \"" + std::string(k.str()) + "\" in " + std::string(section));
    }
  }

  // The hand-written [[...]] entries read their fields with these. Every read is value_exact:
  // value<int64_t>() would also take a float, and its cast of one out of int64 range (1e300) is
  // undefined behaviour inside toml++.
  template <class T>
  void get(const toml::table& t, std::string_view key, T& out) {
    const toml::node* n = t.get(key);
    if (!n) return;
    if constexpr (std::is_same_v<T, std::string>) {
      if (auto v = n->value_exact<std::string>()) {
        out = *v;
      } else {
        error(n, std::string(key) + " must be a string");
      }
    } else {
      if (auto v = n->value_exact<int64_t>()) {
        if (*v < 0 || *v > INT32_MAX) {
          error(n, std::string(key) + " out of range");
        } else {
          out = static_cast<T>(*v);
        }
      } else {
        error(n, std::string(key) + " must be an integer");
      }
    }
  }

  bool getStrings(const toml::node& n, std::string_view key, std::vector<std::string>& out) {
    const toml::array* a = n.as_array();
    if (!a) {
      error(&n, std::string(key) + " must be an array of strings");
      return false;
    }
    out.clear();
    bool ok = true;
    for (auto& e : *a) {
      if (auto s = e.value_exact<std::string>()) {
        out.push_back(*s);
      } else {
        error(&e, std::string(key) + " must contain only strings");
        ok = false;
      }
    }
    return ok;
  }

  // The TOML node as the setting's type; false (error reported) when it is another type.
  bool read(const Setting& s, const toml::node& n, SettingValue& out) {
    std::string name(s.name());
    switch (s.type) {
      case SettingType::Integer:
        if (auto v = n.value_exact<int64_t>()) {
          out = *v;
          return true;
        }
        error(&n, name + " must be an integer");
        return false;
      case SettingType::Boolean:
        if (auto v = n.value_exact<bool>()) {
          out = *v;
          return true;
        }
        error(&n, name + " must be true or false");
        return false;
      case SettingType::Text:
      case SettingType::Choice:
        if (auto v = n.value_exact<std::string>()) {
          out = *v;
          return true;
        }
        error(&n, name + " must be a string");
        return false;
      case SettingType::List: {
        std::vector<std::string> items;
        if (!getStrings(n, name, items)) return false;
        out = std::move(items);
        return true;
      }
    }
    return false;
  }

  // A secret may come from a file or an environment variable instead of the config itself:
  // `<key>_file` (the file's content without its final line break, read at each load, so a
  // rotated secret takes effect on RELOAD) or `<key>_env`. At most one of the three. Returns
  // the node that gave the value (nullptr: none of them).
  const toml::node* secretValue(const toml::table& t, std::string_view key, std::string& out) {
    const std::string fileKey = std::string(key) + "_file", envKey = std::string(key) + "_env";
    const toml::node* plain = t.get(key);
    const toml::node* file = t.get(fileKey);
    const toml::node* env = t.get(envKey);
    if ((plain != nullptr) + (file != nullptr) + (env != nullptr) > 1) {
      error(file ? file : env, "set only one of " + std::string(key) + ", " + fileKey + " and " +
                                   envKey);
      return nullptr;
    }
    std::string where;
    if (file) {
      get(t, fileKey, where);
      std::string why = readSecretFile(where, out);
      if (!why.empty()) error(file, fileKey + ": " + why);
      return why.empty() ? file : nullptr;
    }
    if (env) {
      get(t, envKey, where);
      const char* v = where.empty() ? nullptr : std::getenv(where.c_str());
      if (v == nullptr || *v == '\0') {
        error(env, envKey + ": environment variable \"" + where + "\" is not set or empty");
        return nullptr;
      }
      out = v;
      return env;
    }
    return plain;
  }

  static std::string readSecretFile(const std::string& path, std::string& out) {
    if (path.empty()) return "no file named";
    std::ifstream f(path, std::ios::binary);
    if (!f) return "cannot read \"" + path + "\": " + std::strerror(errno);
    constexpr size_t kMaxSecretBytes = 64 * 1024;
    std::string text(kMaxSecretBytes + 1, '\0');
    f.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(f.gcount()));
    if (text.size() > kMaxSecretBytes) return "\"" + path + "\" is larger than 64 KiB";
    if (!text.empty() && text.back() == '\n') text.pop_back();
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.empty()) return "\"" + path + "\" is empty";
    out = std::move(text);
    return "";
  }

  // One section's settings from the table: type, then the shared range check.
  void loadSection(const toml::table& t, std::string_view section, Config& c) {
    std::vector<std::string> alternatives;  // secrets' _file and _env keys
    for (const Setting& s : settings()) {
      if (s.section() != section || !s.secret) continue;
      alternatives.push_back(std::string(s.name()) + "_file");
      alternatives.push_back(std::string(s.name()) + "_env");
    }
    std::vector<std::string_view> known(alternatives.begin(), alternatives.end());
    for (const Setting& s : settings())
      if (s.section() == section) known.push_back(s.name());
    if (section == "routing") known.push_back("rule");
    std::string label("[");  // appended, not "[" + ...: GCC 12 warns falsely (-Wrestrict)
    label.append(section).append("]");
    checkKeys(t, label, known);
    for (const Setting& s : settings()) {
      if (s.section() != section) continue;
      const toml::node* n = t.get(s.name());
      SettingValue v;
      if (s.secret) {
        std::string elsewhere;
        n = secretValue(t, s.name(), elsewhere);
        if (!n) continue;
        if (n != t.get(s.name())) {
          v = std::move(elsewhere);
        } else if (!read(s, *n, v)) {
          continue;
        }
      } else if (!n || !read(s, *n, v)) {
        continue;
      }
      std::string why = checkValue(s, v);
      if (!why.empty()) {
        error(n, std::string(s.name()) + " " + why);
        continue;
      }
      s.write(c, v);
    }
  }

  std::shared_ptr<Config> load(const toml::table& root) {
    auto cfg = std::make_shared<Config>();
    cfg->path = path_;
    std::vector<std::string_view> topLevel(settingSections().begin(), settingSections().end());
    topLevel.push_back("backend");
    topLevel.push_back("user");
    checkKeys(root, "top level", topLevel);
    for (std::string_view sec : settingSections()) {
      const toml::node* n = root.get(sec);
      if (!n) continue;
      if (auto* t = n->as_table()) {
        loadSection(*t, sec, *cfg);
      } else {
        std::string name(sec);
        error(n, name + " must be a table ([" + name + "])");
      }
    }
    // Reported on the line of the setting the rule is about (min_pool_size can only break
    // its rule when the file sets it).
    for (const CrossCheck& x : crossChecks()) {
      if (x.holds(*cfg)) continue;
      const Setting* s = findSetting(x.key);
      error(root[s->section()][s->name()].node(),
            std::string(s->name()) + " " + std::string(x.rule));
    }
    if (const toml::node* r = root.get("routing"); r && r->as_table()) {
      if (const toml::node* rules = r->as_table()->get("rule")) loadRules(*rules, *cfg);
    }

    if (const toml::node* b = root.get("backend")) {
      if (auto* arr = b->as_array()) {
        for (auto& e : *arr) {
          if (auto* t = e.as_table()) {
            loadBackend(*t, *cfg);
          } else {
            error(&e, "[[backend]] must be a table");
          }
        }
      } else {
        error(b, "backend must be written as [[backend]] tables");
      }
    }
    if (cfg->backends.empty()) error(static_cast<const toml::node*>(nullptr), "no [[backend]] configured");

    if (const toml::node* u = root.get("user")) {
      if (auto* arr = u->as_array()) {
        for (auto& e : *arr) {
          if (auto* t = e.as_table()) {
            loadUser(*t, *cfg);
          } else {
            error(&e, "[[user]] must be a table");
          }
        }
      } else {
        error(u, "user must be written as [[user]] tables");
      }
    }
    return cfg;
  }

  void loadRules(const toml::node& rules, Config& c) {
    const toml::array* arr = rules.as_array();
    if (!arr) {
      error(&rules, "rules must be written as [[routing.rule]] tables");
      return;
    }
    for (auto& e : *arr) {
      const toml::table* t = e.as_table();
      if (!t) {
        error(&e, "[[routing.rule]] must be a table");
        continue;
      }
      checkKeys(*t, "[[routing.rule]]", {"database", "user", "application_name", "tag"});
      RouteRule rule;
      get(*t, "database", rule.database);
      get(*t, "user", rule.user);
      get(*t, "application_name", rule.applicationName);
      get(*t, "tag", rule.tag);
      if (rule.tag.empty()) error(&e, "[[routing.rule]] needs a tag");
      c.routing.rules.push_back(std::move(rule));
    }
  }

  void loadBackend(const toml::table& t, Config& c) {
    checkKeys(t, "[[backend]]", {"name", "host", "port", "weight", "tags", "priority"});
    BackendConfig b;
    get(t, "name", b.name);
    get(t, "host", b.host);
    get(t, "port", b.port);
    get(t, "weight", b.weight);
    if (const toml::node* tags = t.get("tags")) getStrings(*tags, "tags", b.tags);
    get(t, "priority", b.priority);
    if (b.host.empty()) error(&t, "[[backend]] needs a host");
    if (b.port < 1 || b.port > 65535) error(t.get("port"), "port must be between 1 and 65535");
    if (b.name.empty()) b.name = b.host + ":" + std::to_string(b.port);
    for (auto& o : c.backends)
      if (o.name == b.name) error(&t, "duplicate backend name \"" + b.name + "\"");
    c.backends.push_back(std::move(b));
  }

  void loadUser(const toml::table& t, Config& c) {
    checkKeys(t, "[[user]]", {"name", "password", "password_file", "password_env", "auth"});
    UserConfig u;
    get(t, "name", u.name);
    const toml::node* pw = secretValue(t, "password", u.password);
    if (pw && pw == t.get("password")) get(t, "password", u.password);
    std::string auth = "scram-sha-256";
    get(t, "auth", auth);
    if (auth == "scram-sha-256") {
      u.auth = AuthMethod::ScramSha256;
    } else if (auth == "md5") {
      u.auth = AuthMethod::Md5;
    } else if (auth == "trust") {
      u.auth = AuthMethod::Trust;
    } else {
      error(t.get("auth"), "auth must be \"scram-sha-256\", \"md5\" or \"trust\"");
    }
    if (u.name.empty()) error(&t, "[[user]] needs a name");
    for (auto& o : c.users)
      if (o.name == u.name) error(&t, "duplicate user \"" + u.name + "\"");
    if (u.passwordIsScram()) {
      u.scram = protocol::parseScramSecret(u.password);
      if (!u.scram) error(t.get("password"), "password is not a valid SCRAM-SHA-256 secret");
      if (u.auth == AuthMethod::Md5)
        error(t.get("auth"), "auth = \"md5\" needs a plaintext or md5 password, not a SCRAM secret");
    } else if (u.passwordIsMd5()) {
      if (u.auth == AuthMethod::ScramSha256)
        error(t.get("auth") ? t.get("auth") : static_cast<const toml::node*>(&t),
              "auth = \"scram-sha-256\" (the default) needs a plaintext or SCRAM password, "
              "not md5; set auth = \"md5\"");
    } else if (u.auth == AuthMethod::ScramSha256) {
      std::array<std::byte, 16> salt;
      protocol::randomBytes(salt);
      u.scram = protocol::makeScramSecret(
          u.password, std::string_view(reinterpret_cast<const char*>(salt.data()), salt.size()));
    }
    if (u.auth != AuthMethod::Trust && u.password.empty())
      error(&t, "user \"" + u.name + "\" needs a password (or auth = \"trust\")");
    c.users.push_back(std::move(u));
  }

  std::vector<std::string> errors_;

 private:
  std::string path_;
};

// hba_file is read with the configuration, so that a reload that cannot read or parse it is
// refused whole (PostgreSQL keeps its old pg_hba.conf the same way). A relative name is taken
// from the configuration file's directory.
void loadHbaFile(Config& c, std::vector<std::string>& errors) {
  if (c.hbaFile.empty()) return;
  std::filesystem::path p(c.hbaFile);
  if (p.is_relative() && !c.path.empty())
    p = std::filesystem::path(c.path).parent_path() / p;
  std::ifstream f(p);
  if (!f) {
    errors.push_back(c.path + ": hba_file \"" + p.string() + "\": cannot open file");
    return;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  auto parsed = HbaRules::parse(ss.str(), p.string());
  errors.insert(errors.end(), parsed.errors.begin(), parsed.errors.end());
  c.hba = std::move(parsed.rules);
}

}  // namespace

Result<std::shared_ptr<const Config>, ConfigError> parseConfig(std::string_view text,
                                                               const std::string& path) {
  Loader l(path);
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    l.error(e.source(), std::string(e.description()));
    return Err(ConfigError{l.errors_});
  }
  auto cfg = l.load(root);
  if (!l.errors_.empty()) return Err(ConfigError{l.errors_});
  return std::shared_ptr<const Config>(std::move(cfg));
}

Result<std::shared_ptr<const Config>, ConfigError> loadConfig(const std::string& path) {
  std::ifstream f(path);
  if (!f) return Err(ConfigError{{path + ":0: cannot open file"}});
  std::stringstream ss;
  ss << f.rdbuf();
  auto parsed = parseConfig(ss.str(), path);
  if (!parsed.ok() || (*parsed)->hbaFile.empty()) return parsed;
  auto cfg = std::make_shared<Config>(**parsed);
  std::vector<std::string> errors;
  loadHbaFile(*cfg, errors);
  if (!errors.empty()) return Err(ConfigError{errors});
  return std::shared_ptr<const Config>(std::move(cfg));
}

}  // namespace pgswitch::proxy
