// The console's SET: one setting of a Config copy changed from text. Only the reading of the
// typed text and the lock-out guard are SET's own; the range check and the rules between
// settings are the settings table's (proxy/config/settings.h), the same the file loader
// applies, so a SET can never produce a config that a RELOAD of the same values would refuse.
#include <cctype>
#include <charconv>
#include <string>

#include "proxy/admin/console_actions.h"
#include "proxy/config/settings.h"

namespace pgswitch::proxy {

namespace {

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::vector<std::string> parseList(std::string_view v) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= v.size()) {
    size_t comma = v.find(',', start);
    if (comma == std::string_view::npos) comma = v.size();
    std::string item = trim(v.substr(start, comma - start));
    if (!item.empty()) out.push_back(std::move(item));
    start = comma + 1;
  }
  return out;
}

// The typed text as the setting's type; "" or why it is not one. Typed values are forgiving
// where a TOML file is strict (on/off, any case for a choice), since psql users type them.
std::string parseText(const Setting& s, std::string_view text, SettingValue& out) {
  switch (s.type) {
    case SettingType::Integer: {
      std::string t = trim(text);
      int64_t n = 0;
      auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
      if (ec == std::errc::result_out_of_range) return "must be at most " + std::to_string(s.max);
      if (t.empty() || ec != std::errc() || end != t.data() + t.size()) return "must be an integer";
      out = n;
      return "";
    }
    case SettingType::Boolean: {
      std::string t = lower(trim(text));
      if (t == "true" || t == "on" || t == "yes" || t == "1") {
        out = true;
      } else if (t == "false" || t == "off" || t == "no" || t == "0") {
        out = false;
      } else {
        return "must be true or false";
      }
      return "";
    }
    case SettingType::Text:
      out = std::string(text);
      return "";
    case SettingType::List:
      out = parseList(text);
      return "";
    case SettingType::Choice:
      out = lower(trim(text));
      return "";
  }
  return "unknown setting type";
}

// Rules only SET applies. The file may hold these values (admin_users = [] is the default:
// no console), but typed into the console they would lock every admin out of it until a
// restart, since the console is the only way to SET back. "" or why not.
std::string lockOut(const Setting& s, const Config& next) {
  if (s.key != "server.admin_users") return "";
  if (next.adminUsers.empty()) {
    return "must name at least one user: an empty list would lock every admin out of the "
           "console until a restart";
  }
  for (const std::string& a : next.adminUsers)
    if (next.findUser(a)) return "";
  return "names no configured [[user]]: that would lock every admin out of the console until "
         "a restart";
}

}  // namespace

SetResult trySetting(Config& cfg, std::string_view key, std::string_view text) {
  const Setting* s = findSetting(key);
  if (!s) {
    return {"setting \"" + std::string(key) +
            "\" cannot be changed with SET: edit the configuration file and RELOAD"};
  }
  if (std::string refused = setRefusal(*s); !refused.empty()) return {refused};
  auto invalid = [&](const std::string& why) {
    return SetResult{"invalid value for " + std::string(key) + ": " + why, true};
  };
  SettingValue v;
  std::string why = parseText(*s, text, v);
  if (why.empty()) why = checkValue(*s, v);
  if (!why.empty()) return invalid(why);

  // A rule between settings may fail only in combination: change, check, and undo on failure
  // so that `cfg` is never left invalid.
  SettingValue before = s->read(cfg);
  s->write(cfg, v);
  for (const CrossCheck& x : crossChecks()) {
    if (x.holds(cfg)) continue;
    s->write(cfg, before);
    return invalid(std::string(findSetting(x.key)->name()) + " " + std::string(x.rule));
  }
  if (std::string locked = lockOut(*s, cfg); !locked.empty()) {
    s->write(cfg, before);
    return invalid(locked);
  }
  return {};
}

}  // namespace pgswitch::proxy
