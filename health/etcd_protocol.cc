// etcd's JSON gateway (grpc-gateway): int64 fields travel as strings, fields at their zero
// value are left out (a failed transaction has no "succeeded", an expired lease's keep-alive
// no "TTL"), and bodies come from the network, so every field is type-checked before use.
#include "health/etcd_protocol.h"

#include <openssl/evp.h>

#include <charconv>
#include <nlohmann/json.hpp>

namespace pgswitch::health::etcd {

namespace {

using nlohmann::json;

// An int64 written either as a JSON string (the gateway's way) or a number.
std::optional<int64_t> int64Field(const json& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end()) return std::nullopt;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (!it->is_string()) return std::nullopt;
  const std::string& s = it->get_ref<const std::string&>();
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string stringField(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Parses an object body; etcd's errors come as {"error": "...", "code": N}.
std::optional<json> object(std::string_view body, std::string* error) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    if (error) *error = "not a JSON object";
    return std::nullopt;
  }
  if (auto e = j.find("error"); e != j.end()) {
    if (error) *error = "etcd: " + (e->is_string() ? e->get<std::string>() : e->dump());
    return std::nullopt;
  }
  return j;
}

std::optional<KeyValue> keyValue(const json& kv, std::string* error) {
  KeyValue out;
  auto key = unbase64(stringField(kv, "key"));
  auto value = unbase64(stringField(kv, "value"));
  if (!kv.is_object() || !key || !value) {
    if (error) *error = "malformed key-value";
    return std::nullopt;
  }
  out.key = std::move(*key);
  out.value = std::move(*value);
  out.modRevision = int64Field(kv, "mod_revision").value_or(0);
  out.lease = int64Field(kv, "lease").value_or(0);
  return out;
}

// The first key of a range answer ({"kvs": [...]}); an empty KeyValue when there is none.
std::optional<KeyValue> firstKey(const json& r, std::string* error) {
  auto kvs = r.find("kvs");
  if (kvs == r.end() || !kvs->is_array() || kvs->empty()) return KeyValue{};
  return keyValue(kvs->front(), error);
}

}  // namespace

std::string base64(std::string_view raw) {
  std::string out(4 * ((raw.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(raw.data()),
                          static_cast<int>(raw.size()));
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

std::optional<std::string> unbase64(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  if (text.empty()) return std::string();
  std::string out(3 * (text.size() / 4), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the padding as zero bytes.
  size_t len = static_cast<size_t>(n);
  if (text.back() == '=') --len;
  if (text.size() >= 2 && text[text.size() - 2] == '=') --len;
  out.resize(len);
  return out;
}

Call leaseGrant(int ttlSeconds) {
  return {"/v3/lease/grant", json{{"TTL", std::to_string(ttlSeconds)}}.dump()};
}

Call leaseKeepAlive(int64_t lease) {
  return {"/v3/lease/keepalive", json{{"ID", std::to_string(lease)}}.dump()};
}

Call leaseRevoke(int64_t lease) {
  return {"/v3/lease/revoke", json{{"ID", std::to_string(lease)}}.dump()};
}

Call campaign(const std::string& key, const std::string& value, int64_t lease) {
  const std::string k = base64(key);
  json body = {
      {"compare",
       json::array(
           {{{"key", k}, {"result", "EQUAL"}, {"target", "CREATE"}, {"create_revision", "0"}}})},
      {"success",
       json::array({{{"request_put",
                      {{"key", k}, {"value", base64(value)}, {"lease", std::to_string(lease)}}}}})},
      {"failure", json::array({{{"request_range", {{"key", k}}}}})},
  };
  return {"/v3/kv/txn", body.dump()};
}

Call putIfHolder(const std::string& guardKey, int64_t lease, const std::string& key,
                 const std::string& value) {
  json body = {
      {"compare", json::array({{{"key", base64(guardKey)},
                                {"result", "EQUAL"},
                                {"target", "LEASE"},
                                {"lease", std::to_string(lease)}}})},
      {"success",
       json::array({{{"request_put", {{"key", base64(key)}, {"value", base64(value)}}}}})},
  };
  return {"/v3/kv/txn", body.dump()};
}

Call range(const std::string& key) { return {"/v3/kv/range", json{{"key", base64(key)}}.dump()}; }

std::optional<int64_t> parseLeaseGrant(std::string_view body, std::string* error) {
  auto j = object(body, error);
  if (!j) return std::nullopt;
  auto id = int64Field(*j, "ID");
  if (!id || *id == 0) {
    if (error) *error = "no lease ID in the answer";
    return std::nullopt;
  }
  return id;
}

std::optional<int64_t> parseKeepAlive(std::string_view body, std::string* error) {
  auto j = object(body, error);
  if (!j) return std::nullopt;
  // A streaming call: each answer is wrapped in {"result": ...}.
  const json* r = &*j;
  if (auto it = j->find("result"); it != j->end()) {
    if (!it->is_object()) {
      if (error) *error = "malformed keep-alive answer";
      return std::nullopt;
    }
    r = &*it;
  }
  return int64Field(*r, "TTL").value_or(0);
}

std::optional<CampaignAnswer> parseCampaign(std::string_view body, std::string* error) {
  auto j = object(body, error);
  if (!j) return std::nullopt;
  CampaignAnswer a;
  auto s = j->find("succeeded");
  a.won = s != j->end() && s->is_boolean() && s->get<bool>();
  if (a.won) return a;
  auto rs = j->find("responses");
  if (rs == j->end() || !rs->is_array() || rs->empty() || !rs->front().is_object()) return a;
  auto rr = rs->front().find("response_range");
  if (rr == rs->front().end() || !rr->is_object()) return a;
  auto kv = firstKey(*rr, error);
  if (!kv) return std::nullopt;
  a.holder = std::move(*kv);
  return a;
}

std::optional<bool> parseTxnSucceeded(std::string_view body, std::string* error) {
  auto j = object(body, error);
  if (!j) return std::nullopt;
  auto s = j->find("succeeded");
  return s != j->end() && s->is_boolean() && s->get<bool>();
}

std::optional<KeyValue> parseRange(std::string_view body, std::string* error) {
  auto j = object(body, error);
  if (!j) return std::nullopt;
  return firstKey(*j, error);
}

std::string toJson(const Decision& d) {
  return json{{"seq", d.seq},
              {"primary", d.primary},
              {"host", d.host},
              {"port", d.port},
              {"timeline", d.timeline},
              {"fenced", d.fenced},
              {"fenced_host", d.fencedHost},
              {"fenced_port", d.fencedPort},
              {"by", d.by},
              {"time_ms", d.timeMs}}
      .dump();
}

std::optional<Decision> parseDecision(std::string_view text, std::string* error) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    if (error) *error = "decision is not a JSON object";
    return std::nullopt;
  }
  Decision d;
  auto num = [&](const char* k) -> int64_t {
    auto it = j.find(k);
    return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
  };
  d.seq = static_cast<uint64_t>(std::max<int64_t>(0, num("seq")));
  d.primary = stringField(j, "primary");
  d.host = stringField(j, "host");
  d.port = static_cast<int>(num("port"));
  d.timeline = static_cast<uint32_t>(std::max<int64_t>(0, num("timeline")));
  d.fenced = stringField(j, "fenced");
  d.fencedHost = stringField(j, "fenced_host");
  d.fencedPort = static_cast<int>(num("fenced_port"));
  d.by = stringField(j, "by");
  d.timeMs = num("time_ms");
  if (d.host.empty() || d.port <= 0) {
    if (error) *error = "decision names no primary host and port";
    return std::nullopt;
  }
  return d;
}

}  // namespace pgswitch::health::etcd
