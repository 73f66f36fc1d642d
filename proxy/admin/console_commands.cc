// Console parsing and dispatch, the command table, and the commands that act on the proxy
// (PAUSE, RELOAD, ENABLE, SET, SHUTDOWN, ...). SHOW commands live in console_show.cc.
#include "proxy/admin/console_commands.h"

#include <algorithm>
#include <cctype>
#include <memory>
#include <set>

#include "protocol/builder.h"
#include "proxy/admin/console_internal.h"
#include "proxy/admin/console_session.h"
#include "proxy/config/settings.h"

namespace pgswitch::proxy {
namespace console {
namespace {

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::toupper(static_cast<unsigned char>(x)) ==
                  std::toupper(static_cast<unsigned char>(y));
         });
}

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& ch : r) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return r;
}

bool isSpace(char ch) {
  return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

bool endsWord(char ch) {
  return isSpace(ch) || ch == ';' || ch == '=' || ch == ',' || ch == '\'' || ch == '"';
}

// ---- arguments ----

std::string joinNames(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) {
    if (!s.empty()) s += ", ";
    s += n;
  }
  return s.empty() ? "(none configured)" : s;
}

// Resolves a backend argument: a quoted name must match exactly; a bare one matches exactly
// or, failing that, ignoring case when that is unambiguous (bare names are often typed in
// whatever case, but "PG1" and "pg1" may both exist).
Outcome backendArg(const Context& c, std::string_view command, std::string& name) {
  if (c.args.empty() || !c.args[0].isName()) {
    return fail(c.out, kSyntaxError, std::string(command) + " needs a backend name",
                "backends: " + joinNames(liveBackendNames(c.snap)));
  }
  if (c.args.size() > 1) {
    return fail(c.out, kSyntaxError,
                "unexpected \"" + c.args[1].text + "\" after the backend name");
  }
  const Token& t = c.args[0];
  std::vector<std::string> names = liveBackendNames(c.snap);
  for (const auto& n : names) {
    if (n == t.text) {
      name = n;
      return Outcome::Ok;
    }
  }
  if (t.kind == Token::Kind::Word) {
    const std::string* found = nullptr;
    int matches = 0;
    for (const auto& n : names) {
      if (equalsIgnoreCase(n, t.text)) {
        found = &n;
        ++matches;
      }
    }
    if (matches == 1) {
      name = *found;
      return Outcome::Ok;
    }
  }
  return fail(c.out, kUndefinedObject, "backend \"" + t.text + "\" does not exist",
              "backends: " + joinNames(names));
}

Outcome actionResult(const Context& c, std::string_view tag, const std::string& err) {
  if (!err.empty()) return fail(c.out, kNotInPrerequisiteState, err);
  protocol::appendCommandComplete(c.out, tag);
  return Outcome::Ok;
}

// ---- commands that act ----

// pgswitch has no list of databases (clients name any their servers have), so a database is
// known once something shows it is used: a pool (pools stay for the life of the process), a
// connected client, or a [[routing.rule]] naming it. The console's own is not one.
std::set<std::string> knownDatabases(const Snapshot& snap) {
  std::set<std::string> dbs;
  for (const PoolInfo& p : snap.pools) dbs.insert(p.database);
  for (const ClientInfo& ci : snap.clients) dbs.insert(ci.database);
  if (snap.config) {
    for (const RouteRule& r : snap.config->routing.rules)
      if (!r.database.empty()) dbs.insert(r.database);
  }
  dbs.erase(std::string(kConsoleDatabase));
  dbs.erase("");  // a client still logging in
  return dbs;
}

std::string knownList(const std::set<std::string>& dbs) {
  constexpr size_t kMax = 20;
  std::string s;
  size_t n = 0;
  for (const auto& d : dbs) {
    if (n++ == kMax) {
      s += ", ...";
      break;
    }
    s += (s.empty() ? "" : ", ") + d;
  }
  return s.empty() ? "known databases: none yet (no client has used one)" : "known databases: " + s;
}

// A typo must not pause something else, nothing, or everything: PAUSE "" is refused as
// PostgreSQL refuses "" anywhere (42601), an unknown name as PostgreSQL answers a connection
// to it (3D000). Only PAUSE without an argument pauses every database.
Outcome pauseOrResume(const Context& c, bool pause) {
  std::string_view cmd = pause ? "PAUSE" : "RESUME";
  std::string db;
  if (!c.args.empty()) {
    if (!c.args[0].isName()) return fail(c.out, kSyntaxError, std::string(cmd) + " [database]");
    if (c.args.size() > 1) {
      return fail(c.out, kSyntaxError,
                  "unexpected \"" + c.args[1].text + "\" after the database name");
    }
    db = c.args[0].text;
    if (db.empty()) {
      return fail(c.out, kSyntaxError, "zero-length delimited identifier at or near \"\"\"\"",
                  std::string(cmd) + " without a name " + (pause ? "pauses" : "resumes") +
                      " every database");
    }
    if (db == kConsoleDatabase) {
      return fail(c.out, kNotInPrerequisiteState,
                  "the admin console \"" + db + "\" cannot be paused");
    }
    std::set<std::string> known = knownDatabases(c.snap);
    if (!known.count(db)) {
      // Whatever is paused can be resumed, known or not (it was known when paused).
      if (!pause && c.actions.resume(db).empty()) {
        protocol::appendCommandComplete(c.out, cmd);
        return Outcome::Ok;
      }
      return fail(c.out, kInvalidCatalogName, "database \"" + db + "\" does not exist",
                  knownList(known));
    }
  }
  return actionResult(c, cmd, pause ? c.actions.pause(db) : c.actions.resume(db));
}
Outcome cmdPause(const Context& c) { return pauseOrResume(c, true); }
Outcome cmdResume(const Context& c) { return pauseOrResume(c, false); }

Outcome cmdReload(const Context& c) {
  if (!noArgs(c, "RELOAD")) return Outcome::Error;
  return actionResult(c, "RELOAD", c.actions.reload());
}

template <std::string (ConsoleActions::*Method)(std::string_view)>
Outcome backendAction(const Context& c, std::string_view tag) {
  std::string name;
  if (backendArg(c, tag, name) != Outcome::Ok) return Outcome::Error;
  return actionResult(c, tag, (c.actions.*Method)(name));
}
Outcome cmdEnable(const Context& c) {
  return backendAction<&ConsoleActions::enableBackend>(c, "ENABLE");
}
Outcome cmdDisable(const Context& c) {
  return backendAction<&ConsoleActions::disableBackend>(c, "DISABLE");
}
Outcome cmdDrain(const Context& c) {
  return backendAction<&ConsoleActions::drainBackend>(c, "DRAIN");
}
Outcome cmdAttach(const Context& c) {
  return backendAction<&ConsoleActions::attachBackend>(c, "ATTACH");
}
Outcome cmdPromote(const Context& c) {
  return backendAction<&ConsoleActions::promoteBackend>(c, "PROMOTE");
}
Outcome cmdSwitchover(const Context& c) {
  Context rest = c;
  if (!c.args.empty() && c.args[0].isKeyword("TO")) rest.args = c.args.subspan(1);
  return backendAction<&ConsoleActions::switchoverTo>(rest, "SWITCHOVER");
}

// Settings drivers send on connect; accepted and ignored (the console has no session state).
bool sessionSetting(std::string_view key) {
  static constexpr std::string_view kSession[] = {
      "client_encoding",    "application_name", "datestyle",   "extra_float_digits",
      "timezone",           "intervalstyle",    "search_path", "standard_conforming_strings",
      "client_min_messages"};
  std::string k = lower(key);
  return std::find(std::begin(kSession), std::end(kSession), k) != std::end(kSession);
}

// The setting SET names: its key as SHOW CONFIG shows it, ignoring case, or its bare name when
// that leaves one setting, or one that SET can change ("user" is health.user, since
// failover.user is changed only through the file). Per-backend and per-user rows are not
// settings.
Outcome findSettingArg(const Context& c, const std::string& key, const Setting*& out) {
  if (equalsIgnoreCase(key, "config_file")) {  // shown by SHOW CONFIG, but not a setting
    return fail(c.out, kNotInPrerequisiteState,
                "setting \"config_file\" cannot be changed without a restart");
  }
  std::vector<const Setting*> named, settable;
  for (const Setting& s : settings()) {
    if (equalsIgnoreCase(s.key, key)) {
      out = &s;
      return Outcome::Ok;
    }
    if (equalsIgnoreCase(s.name(), key)) {
      named.push_back(&s);
      if (s.apply == Apply::Set) settable.push_back(&s);
    }
  }
  if (named.size() == 1 || settable.size() == 1) {
    out = named.size() == 1 ? named[0] : settable[0];
    return Outcome::Ok;
  }
  return fail(c.out, kUndefinedObject,
              named.empty() ? "unrecognized setting \"" + key + "\""
                            : "setting \"" + key + "\" is ambiguous",
              "SHOW CONFIG lists the settings; write them as section.name, e.g. pool.pool_size");
}

Outcome cmdSet(const Context& c) {
  auto args = c.args;
  if (!args.empty() && (args[0].isKeyword("SESSION") || args[0].isKeyword("LOCAL"))) {
    args = args.subspan(1);
  }
  if (args.empty() || !args[0].isName()) {
    return fail(c.out, kSyntaxError, "SET needs a setting name", "SET key = value");
  }
  const std::string& key = args[0].text;
  if (sessionSetting(key)) {
    protocol::appendCommandComplete(c.out, "SET");
    return Outcome::Ok;
  }
  if (args.size() < 3 || !(args[1].kind == Token::Kind::Equals || args[1].isKeyword("TO"))) {
    return fail(c.out, kSyntaxError, "SET needs a value", "SET key = value");
  }
  if (args.size() > 3 || args[2].kind == Token::Kind::Equals ||
      args[2].kind == Token::Kind::Comma) {
    return fail(c.out, kSyntaxError, "SET takes one value",
                "quote a value that contains spaces or commas: SET key = 'a, b'");
  }
  const Setting* setting = nullptr;
  if (findSettingArg(c, key, setting) != Outcome::Ok) return Outcome::Error;
  if (std::string refused = setRefusal(*setting); !refused.empty()) {
    return fail(c.out, kNotInPrerequisiteState, refused);
  }
  SetResult r = c.actions.set(setting->key, args[2].text);
  if (r.badValue) return fail(c.out, kInvalidParameterValue, r.error);
  return actionResult(c, "SET", r.error);
}

Outcome cmdShutdown(const Context& c) {
  bool wait = false;
  if (!c.args.empty()) {
    if (c.args.size() > 1 || !c.args[0].isKeyword("WAIT")) {
      return fail(c.out, kSyntaxError, "SHUTDOWN takes only WAIT", "SHUTDOWN [WAIT]");
    }
    wait = true;
  }
  std::string err = c.actions.shutdown(wait);
  if (!err.empty()) return fail(c.out, kNotInPrerequisiteState, err);
  protocol::appendCommandComplete(c.out, "SHUTDOWN");
  return Outcome::Close;
}

Outcome cmdHelp(const Context& c);

// The table. Longer keyword sequences first is not needed: matching picks the longest.
constexpr Command kCommands[] = {
    {"SHOW BACKENDS", "SHOW BACKENDS",
     "backends: address, role, state, weight, tags, replication lag, server connections",
     showBackends, true},
    {"SHOW POOLS", "SHOW POOLS",
     "pools (backend, database, user): clients active/waiting, servers by state", showPools, true},
    {"SHOW CLIENTS", "SHOW CLIENTS", "client connections", showClients, true},
    {"SHOW SERVERS", "SHOW SERVERS", "server connections", showServers, true},
    {"SHOW STATS", "SHOW STATS",
     "per backend and total: transactions, queries, bytes, latency (average, p99)", showStats, true},
    {"SHOW TOTALS", "SHOW TOTALS",
     "process-wide counters: clients, logins, refused and stalled connections, pools",
     showTotals, true},
    {"SHOW CONFIG", "SHOW CONFIG", "every setting, its value and whether a reload applies it",
     showConfig, true},
    {"SHOW EVENTS", "SHOW EVENTS", "recent health and failover events", showEvents, true},
    {"SHOW COORDINATION", "SHOW COORDINATION",
     "[coordination]: this instance, whether it holds the etcd leader key and may promote, "
     "the last decision",
     showCoordination, true},
    {"SHOW VERSION", "SHOW VERSION", "the pgswitch version", showVersion, true},
    {"PAUSE", "PAUSE [db]",
     "hold new requests (of one database, or all) until RESUME; running ones finish", cmdPause},
    {"RESUME", "RESUME [db]", "undo PAUSE", cmdResume},
    {"RELOAD", "RELOAD", "re-read the configuration file (like SIGHUP)", cmdReload},
    {"ENABLE", "ENABLE backend", "route to a disabled backend again", cmdEnable},
    {"DISABLE", "DISABLE backend", "stop routing to a backend; its connections close", cmdDisable},
    {"DRAIN", "DRAIN backend", "stop routing new work to a backend; running transactions finish",
     cmdDrain},
    {"ATTACH", "ATTACH backend", "take a backend (e.g. a rebuilt former primary) back in",
     cmdAttach},
    {"PROMOTE", "PROMOTE backend", "promote a replica to primary (failover)", cmdPromote},
    {"SWITCHOVER", "SWITCHOVER TO backend",
     "planned switchover: pause, wait for the replica to catch up, promote it, resume",
     cmdSwitchover},
    {"SET", "SET key = value", "change a reloadable setting (see SHOW CONFIG)", cmdSet},
    {"SHUTDOWN", "SHUTDOWN [WAIT]", "stop pgswitch; WAIT lets running transactions finish first",
     cmdShutdown},
    {"HELP", "HELP", "this list", cmdHelp, true},
};

Outcome cmdHelp(const Context& c) {
  if (!noArgs(c, "HELP")) return Outcome::Error;
  ResultSet rs({{"command", ResultSet::kText}, {"description", ResultSet::kText}});
  for (const Command& cmd : kCommands) rs.row().add(cmd.syntax).add(cmd.help);
  rs.write(c.out);
  return Outcome::Ok;
}

// Number of leading tokens that spell `words`, or 0.
size_t matchWords(std::string_view words, std::span<const Token> tokens) {
  size_t n = 0;
  while (!words.empty()) {
    size_t sp = words.find(' ');
    std::string_view w = words.substr(0, sp);
    if (n >= tokens.size() || !tokens[n].isKeyword(w)) return 0;
    ++n;
    words = sp == std::string_view::npos ? std::string_view{} : words.substr(sp + 1);
  }
  return n;
}

std::string statementText(std::span<const Token> tokens) {
  std::string s;
  for (size_t i = 0; i < tokens.size() && i < 4; ++i) {
    if (!s.empty()) s += ' ';
    s += tokens[i].text;
  }
  if (tokens.size() > 4) s += " ...";
  return s;
}

Outcome runStatement(std::span<const Token> tokens, const Snapshot& snap, ConsoleActions& actions,
                     ConsoleRole role, std::string& out) {
  const Command* best = nullptr;
  size_t bestLen = 0;
  for (const Command& cmd : kCommands) {
    size_t n = matchWords(cmd.words, tokens);
    if (n > bestLen) {
      best = &cmd;
      bestLen = n;
    }
  }
  if (!best) {
    if (tokens[0].isKeyword("SELECT")) {
      return fail(out, kSyntaxError, "the pgswitch admin console does not run SQL",
                  "try HELP; connect to a real database to run queries");
    }
    return fail(out, kSyntaxError, "unknown command \"" + statementText(tokens) + "\"", "try HELP");
  }
  if (role == ConsoleRole::Stats && !best->readOnly) {
    return fail(out, kInsufficientPrivilege, "permission denied to run " + std::string(best->words),
                "Only the users listed in server.admin_users may; server.stats_users may run "
                "SHOW commands and HELP.");
  }
  return best->handler(Context{tokens.subspan(bestLen), snap, actions, out});
}

}  // namespace

bool Token::isKeyword(std::string_view upper) const {
  return kind == Kind::Word && equalsIgnoreCase(text, upper);
}

bool tokenize(std::string_view q, std::vector<Token>& out, ParseError& err) {
  size_t i = 0;
  while (i < q.size()) {
    char ch = q[i];
    if (isSpace(ch)) {
      ++i;
    } else if (ch == '-' && i + 1 < q.size() && q[i + 1] == '-') {
      size_t nl = q.find('\n', i);
      i = nl == std::string_view::npos ? q.size() : nl + 1;
    } else if (ch == '/' && i + 1 < q.size() && q[i + 1] == '*') {
      size_t end = q.find("*/", i + 2);
      if (end == std::string_view::npos) {
        err.message = "unterminated /* comment";
        return false;
      }
      i = end + 2;
    } else if (ch == ';' || ch == '=' || ch == ',') {
      out.push_back({ch == ';'   ? Token::Kind::Semicolon
                     : ch == '=' ? Token::Kind::Equals
                                 : Token::Kind::Comma,
                     std::string(1, ch)});
      ++i;
    } else if (ch == '\'' || ch == '"') {
      // Quoted: a doubled quote stands for one.
      Token t{ch == '\'' ? Token::Kind::String : Token::Kind::QuotedIdent, {}};
      size_t j = i + 1;
      bool closed = false;
      while (j < q.size()) {
        if (q[j] == ch) {
          if (j + 1 < q.size() && q[j + 1] == ch) {
            t.text.push_back(ch);
            j += 2;
            continue;
          }
          closed = true;
          ++j;
          break;
        }
        t.text.push_back(q[j++]);
      }
      if (!closed) {
        err.message = ch == '\'' ? "unterminated quoted string" : "unterminated quoted identifier";
        return false;
      }
      out.push_back(std::move(t));
      i = j;
    } else {
      size_t j = i;
      while (j < q.size() && !endsWord(q[j])) ++j;
      out.push_back({Token::Kind::Word, std::string(q.substr(i, j - i))});
      i = j;
    }
  }
  return true;
}

Outcome fail(std::string& out, std::string_view sqlstate, std::string_view message,
             std::string_view hint, std::string_view detail) {
  protocol::appendError(out, protocol::ErrorSpec{.severity = "ERROR",
                                                 .sqlstate = sqlstate,
                                                 .message = message,
                                                 .detail = detail,
                                                 .hint = hint});
  return Outcome::Error;
}

bool noArgs(const Context& c, std::string_view command) {
  if (c.args.empty()) return true;
  fail(c.out, kSyntaxError,
       std::string(command) + " takes no arguments (got \"" + c.args[0].text + "\")");
  return false;
}

void ResultSet::write(std::string& out, std::string_view tag) const {
  std::vector<protocol::Column> cols;
  cols.reserve(cols_.size());
  for (const Col& c : cols_) cols.push_back({c.name, c.typeOid});
  protocol::appendRowDescription(out, cols);
  std::vector<std::string_view> values(cols_.size());
  auto nulls = std::make_unique<bool[]>(cols_.size());
  for (const auto& r : rows_) {
    for (size_t i = 0; i < cols_.size(); ++i) {
      nulls[i] = i >= r.size() || !r[i].has_value();
      values[i] = nulls[i] ? std::string_view{} : std::string_view(*r[i]);
    }
    protocol::appendDataRow(out, values, std::span<const bool>(nulls.get(), cols_.size()));
  }
  protocol::appendCommandComplete(out, tag);
}

std::vector<std::string> liveBackendNames(const Snapshot& snap) {
  std::vector<std::string> names;
  if (snap.topology) {
    for (const auto& b : snap.topology->backends)
      if (b.state != routing::BackendState::Removed) names.push_back(b.name);
  } else if (snap.config) {
    for (const auto& b : snap.config->backends) names.push_back(b.name);
  }
  return names;
}

}  // namespace console

ConsoleReply runConsole(std::string_view query, const Snapshot& snap, ConsoleActions& actions,
                        ConsoleRole role) {
  using namespace console;
  ConsoleReply reply;
  std::vector<Token> tokens;
  ParseError perr;
  if (!tokenize(query, tokens, perr)) {
    fail(reply.messages, kSyntaxError, perr.message);
    return reply;
  }
  bool ranAny = false;
  size_t start = 0;
  while (start <= tokens.size()) {
    size_t end = start;
    while (end < tokens.size() && tokens[end].kind != Token::Kind::Semicolon) ++end;
    if (end > start) {
      ranAny = true;
      std::span<const Token> stmt(tokens.data() + start, end - start);
      Outcome o = runStatement(stmt, snap, actions, role, reply.messages);
      if (o == Outcome::Error) break;  // as PostgreSQL: an error ends the query string
      if (o == Outcome::Close) {
        reply.closeAfter = true;
        break;
      }
    }
    start = end + 1;
  }
  if (!ranAny) protocol::appendEmptyQueryResponse(reply.messages);
  return reply;
}

std::span<const ConsoleCommandHelp> consoleHelp() {
  static const std::vector<ConsoleCommandHelp> help = [] {
    std::vector<ConsoleCommandHelp> h;
    for (const auto& c : console::kCommands) h.push_back({c.syntax, c.help});
    return h;
  }();
  return help;
}

}  // namespace pgswitch::proxy
