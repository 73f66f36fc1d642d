// Parsing Patroni's /cluster with nlohmann::json, without exceptions: the body comes from the
// network, so every field is checked for its type before it is read.
#include "health/patroni_view.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

namespace pgswitch::health {

const char* toString(PatroniRole r) {
  switch (r) {
    case PatroniRole::Other:
      return "other";
    case PatroniRole::Leader:
      return "leader";
    case PatroniRole::StandbyLeader:
      return "standby_leader";
    case PatroniRole::Replica:
      return "replica";
  }
  return "?";
}

namespace {

using nlohmann::json;

std::string stringField(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Tags are whatever the operator wrote in YAML: true, "true", 1.
bool truthy(const json& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end()) return false;
  if (it->is_boolean()) return it->get<bool>();
  if (it->is_number_integer()) return it->get<int64_t>() != 0;
  if (it->is_string()) {
    std::string s = it->get<std::string>();
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s == "true" || s == "on" || s == "yes" || s == "1";
  }
  return false;
}

PatroniRole roleOf(const std::string& r) {
  if (r == "leader" || r == "master" || r == "primary") return PatroniRole::Leader;
  if (r == "standby_leader") return PatroniRole::StandbyLeader;
  if (r == "replica" || r == "sync_standby" || r == "quorum_standby") return PatroniRole::Replica;
  return PatroniRole::Other;
}

bool sameHost(const std::string& a, const std::string& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

std::optional<std::vector<PatroniMember>> parsePatroniCluster(std::string_view body,
                                                              std::string* error) {
  json doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  auto fail = [&](const char* why) -> std::optional<std::vector<PatroniMember>> {
    if (error) *error = why;
    return std::nullopt;
  };
  if (doc.is_discarded()) return fail("not valid JSON");
  if (!doc.is_object()) return fail("not a JSON object");
  auto ms = doc.find("members");
  if (ms == doc.end() || !ms->is_array()) return fail("no \"members\" array");
  std::vector<PatroniMember> out;
  for (const json& m : *ms) {
    if (!m.is_object()) continue;
    PatroniMember p;
    p.name = stringField(m, "name");
    p.host = stringField(m, "host");
    auto port = m.find("port");
    if (port != m.end() && port->is_number_integer()) p.port = port->get<int>();
    if (p.name.empty() || p.host.empty() || p.port <= 0 || p.port > 65535) continue;
    p.role = roleOf(stringField(m, "role"));
    p.state = stringField(m, "state");
    p.apiUrl = stringField(m, "api_url");
    auto tl = m.find("timeline");
    if (tl != m.end() && tl->is_number_unsigned()) p.timeline = tl->get<uint32_t>();
    auto lag = m.find("lag");  // bytes, or "unknown"
    if (lag != m.end() && lag->is_number_unsigned()) p.lagBytes = lag->get<uint64_t>();
    auto tags = m.find("tags");
    if (tags != m.end() && tags->is_object()) {
      p.noFailover = truthy(*tags, "nofailover");
      p.noLoadBalance = truthy(*tags, "noloadbalance");
    }
    out.push_back(std::move(p));
  }
  return out;
}

PatroniView matchPatroniMembers(std::vector<PatroniMember> members,
                                const std::vector<BackendSpec>& backends) {
  PatroniView v;
  v.members = std::move(members);
  v.memberOf.assign(backends.size(), -1);
  for (size_t m = 0; m < v.members.size(); ++m) {
    const PatroniMember& p = v.members[m];
    if (p.role == PatroniRole::Leader) {
      v.leaderName = p.name;
    }
    bool matched = false;
    for (size_t b = 0; b < backends.size(); ++b) {
      const BackendSpec& s = backends[b];
      if (s.removed || s.port != p.port || !sameHost(s.host, p.host)) continue;
      v.memberOf[b] = static_cast<int>(m);
      if (p.role == PatroniRole::Leader) v.leader = static_cast<int>(b);
      matched = true;
    }
    if (!matched) v.unmatched.push_back(p.name);
  }
  return v;
}

std::string patroniSwitchoverBody(const std::string& leader, const std::string& candidate) {
  json j = json::object();
  j["leader"] = leader;
  if (!candidate.empty()) j["candidate"] = candidate;
  return j.dump();
}

}  // namespace pgswitch::health
