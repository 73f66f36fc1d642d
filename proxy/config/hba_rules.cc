// pg_hba.conf parsing (tokens as PostgreSQL's next_token reads them: whitespace and commas
// separate, double quotes protect, '#' starts a comment), matching (check_hba) and the
// decision with PostgreSQL 15's own FATAL texts.
#include "proxy/config/hba_rules.h"

#include <arpa/inet.h>

#include <cstring>

#include "proxy/config/config.h"

namespace pgswitch::proxy {

const char* toString(HbaMethod m) {
  switch (m) {
    case HbaMethod::Trust: return "trust";
    case HbaMethod::Reject: return "reject";
    case HbaMethod::Md5: return "md5";
    case HbaMethod::ScramSha256: return "scram-sha-256";
    case HbaMethod::Cert: return "cert";
  }
  return "?";
}

namespace {

using Field = std::vector<HbaName>;

bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

// One line's fields; a field is a comma-separated list ("a, b" and "a,b" are one field).
std::vector<Field> splitFields(std::string_view line) {
  std::vector<Field> fields;
  bool continueField = false;  // the previous token ended with a comma
  size_t i = 0;
  for (;;) {
    while (i < line.size() && isSpace(line[i])) ++i;
    if (i >= line.size() || line[i] == '#') break;
    HbaName tok;
    bool inQuote = false, comma = false;
    for (; i < line.size(); ++i) {
      char c = line[i];
      if (!inQuote && (isSpace(c) || c == '#')) break;
      if (!inQuote && c == ',') {
        comma = true;
        ++i;
        break;
      }
      if (c == '"') {
        inQuote = !inQuote;
        tok.quoted = true;
        continue;
      }
      tok.text += c;
    }
    if (continueField && !fields.empty()) {
      fields.back().push_back(std::move(tok));
    } else {
      fields.push_back(Field{std::move(tok)});
    }
    continueField = comma;
  }
  return fields;
}

// IPv4 or IPv6 text to bytes; family 0 when it is neither.
int parseIp(std::string_view text, std::array<uint8_t, 16>& out) {
  std::string s(text);
  out.fill(0);
  if (inet_pton(AF_INET, s.c_str(), out.data()) == 1) return 4;
  if (inet_pton(AF_INET6, s.c_str(), out.data()) == 1) return 6;
  return 0;
}

std::array<uint8_t, 16> prefixMask(int bits) {
  std::array<uint8_t, 16> m{};
  for (int i = 0; i < 16 && bits > 0; ++i, bits -= 8)
    m[i] = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
  return m;
}

class LineParser {
 public:
  LineParser(std::vector<Field> fields, int line, std::string_view file,
             std::vector<std::string>& errors)
      : fields_(std::move(fields)), line_(line), file_(file), errors_(errors) {}

  std::optional<HbaRule> parse() {
    HbaRule r;
    r.line = line_;
    const std::string& type = single(0, "connection type");
    if (failed_) return std::nullopt;
    if (type == "local") {
      r.type = HbaConnType::Local;
    } else if (type == "host") {
      r.type = HbaConnType::Host;
    } else if (type == "hostssl") {
      r.type = HbaConnType::HostSsl;
    } else if (type == "hostnossl") {
      r.type = HbaConnType::HostNoSsl;
    } else if (type == "hostgssenc") {
      r.type = HbaConnType::HostGssEnc;
    } else if (type == "hostnogssenc") {
      r.type = HbaConnType::HostNoGssEnc;
    } else {
      return error("invalid connection type \"" + type + "\"");
    }
    if (fields_.size() < 2) return error("end-of-line before database specification");
    r.databases = fields_[1];
    for (const HbaName& n : r.databases) {
      if (!n.quoted && n.text.starts_with("@"))
        return error("@file inclusion (\"" + n.text + "\") is not supported: list the names");
      if (n.isKeyword("samerole") || n.isKeyword("samegroup"))
        return error("\"" + n.text + "\" is not supported: list the databases");
    }
    if (fields_.size() < 3) return error("end-of-line before role specification");
    r.users = fields_[2];
    for (const HbaName& n : r.users) {
      if (!n.quoted && n.text.starts_with("@"))
        return error("@file inclusion (\"" + n.text + "\") is not supported: list the names");
      if (!n.quoted && n.text.starts_with("+"))
        return error("group membership (\"" + n.text + "\") is not supported: list the users");
    }
    size_t next = 3;
    if (r.type != HbaConnType::Local) {
      if (fields_.size() < 4) return error("end-of-line before IP address specification");
      const std::string& a = single(3, "host address");
      if (failed_) return std::nullopt;
      ++next;
      if (a == "all") {
        r.anyAddress = true;
      } else if (a == "samehost" || a == "samenet") {
        return error("\"" + a + "\" is not supported: give an address or CIDR");
      } else if (size_t slash = a.find('/'); slash != std::string::npos) {
        r.family = parseIp(std::string_view(a).substr(0, slash), r.addr);
        if (r.family == 0) return error("invalid IP address \"" + a.substr(0, slash) + "\"");
        std::string bits = a.substr(slash + 1);
        int n = -1, max = r.family == 4 ? 32 : 128;
        if (!bits.empty() && bits.size() <= 3 &&
            bits.find_first_not_of("0123456789") == std::string::npos)
          n = std::stoi(bits);
        if (n < 0 || n > max) return error("invalid CIDR mask in address \"" + a + "\"");
        r.mask = prefixMask(n);
      } else {
        r.family = parseIp(a, r.addr);
        if (r.family == 0)
          return error("host name \"" + a + "\" is not supported: give an IP address or CIDR");
        if (fields_.size() <= next) return error("end-of-line before netmask specification");
        const std::string& m = single(next, "netmask");
        if (failed_) return std::nullopt;
        ++next;
        if (parseIp(m, r.mask) != r.family) return error("invalid IP mask \"" + m + "\"");
      }
      for (size_t i = 0; i < 16; ++i) r.addr[i] &= r.mask[i];
    }
    if (fields_.size() <= next) return error("end-of-line before authentication method");
    const std::string& method = single(next, "authentication method");
    if (failed_) return std::nullopt;
    ++next;
    if (method == "trust") {
      r.method = HbaMethod::Trust;
    } else if (method == "reject") {
      r.method = HbaMethod::Reject;
    } else if (method == "md5") {
      r.method = HbaMethod::Md5;
    } else if (method == "scram-sha-256") {
      r.method = HbaMethod::ScramSha256;
    } else if (method == "cert") {
      if (r.type != HbaConnType::HostSsl)
        return error("cert authentication is only supported on hostssl connections");
      r.method = HbaMethod::Cert;
      r.clientCert = HbaClientCert::VerifyFull;
    } else if (method == "password" || method == "ident" || method == "peer" ||
               method == "gss" || method == "sspi" || method == "pam" || method == "ldap" ||
               method == "radius" || method == "bsd") {
      return error("authentication method \"" + method + "\" is not supported by pgswitch");
    } else {
      return error("invalid authentication method \"" + method + "\"");
    }
    for (; next < fields_.size(); ++next) {
      const std::string& opt = single(next, "authentication option");
      if (failed_) return std::nullopt;
      size_t eq = opt.find('=');
      std::string name = opt.substr(0, eq), value = eq == std::string::npos ? "" : opt.substr(eq + 1);
      if (eq == std::string::npos)
        return error("authentication option not in name=value format: " + opt);
      if (name != "clientcert")
        return error("authentication option \"" + name + "\" is not supported by pgswitch");
      if (r.type != HbaConnType::HostSsl)
        return error("clientcert can only be configured for \"hostssl\" rows");
      if (value == "verify-full") {
        r.clientCert = HbaClientCert::VerifyFull;
      } else if (value == "verify-ca") {
        if (r.method == HbaMethod::Cert)
          return error("clientcert only accepts \"verify-full\" when using \"cert\" "
                       "authentication");
        r.clientCert = HbaClientCert::VerifyCa;
      } else {
        return error("invalid value for clientcert: \"" + value + "\"");
      }
    }
    return r;
  }

 private:
  // A field that must hold one name (type, address, method, option).
  const std::string& single(size_t i, std::string_view what) {
    static const std::string kEmpty;
    if (fields_[i].size() != 1) {
      error("multiple values specified for " + std::string(what));
      return kEmpty;
    }
    return fields_[i][0].text;
  }
  std::nullopt_t error(const std::string& msg) {
    failed_ = true;
    errors_.push_back(std::string(file_) + ":" + std::to_string(line_) + ": " + msg);
    return std::nullopt;
  }

  std::vector<Field> fields_;
  int line_;
  std::string_view file_;
  std::vector<std::string>& errors_;
  bool failed_ = false;
};

bool addressMatches(const HbaRule& r, std::string_view address) {
  if (r.anyAddress) return true;
  std::array<uint8_t, 16> a{};
  int family = parseIp(address, a);
  if (family == 6 && r.family == 4) {
    // An IPv4 client on an IPv6 socket (::ffff:a.b.c.d) matches IPv4 lines, as in PostgreSQL.
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(a.data(), kMapped, 12) != 0) return false;
    std::memmove(a.data(), a.data() + 12, 4);
    std::memset(a.data() + 4, 0, 12);
    family = 4;
  }
  if (family != r.family) return false;
  for (size_t i = 0; i < 16; ++i)
    if ((a[i] & r.mask[i]) != r.addr[i]) return false;
  return true;
}

bool databaseMatches(const HbaRule& r, const HbaConnection& c) {
  for (const HbaName& n : r.databases) {
    if (n.isKeyword("all")) return true;
    if (n.isKeyword("sameuser")) {
      if (c.database == c.user) return true;
      continue;
    }
    if (n.isKeyword("replication")) continue;  // pgswitch refuses replication connections
    if (n.text == c.database) return true;
  }
  return false;
}

bool userMatches(const HbaRule& r, const HbaConnection& c) {
  for (const HbaName& n : r.users)
    if (n.isKeyword("all") || n.text == c.user) return true;
  return false;
}

HbaDecision refuse(std::string message, std::string reason, bool authFailure = false) {
  HbaDecision d;
  d.kind = HbaDecision::Kind::Refuse;
  d.sqlstate = "28000";
  d.message = std::move(message);
  d.reason = std::move(reason);
  d.authFailure = authFailure;
  return d;
}

HbaDecision authenticate(AuthMethod m, std::string reason) {
  HbaDecision d;
  d.method = m;
  d.reason = std::move(reason);
  return d;
}

}  // namespace

HbaRules::Parsed HbaRules::parse(std::string_view text, std::string_view fileName) {
  Parsed out;
  auto rules = std::make_shared<HbaRules>();
  int lineNo = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++lineNo;
    auto fields = splitFields(line);
    if (fields.empty()) continue;
    LineParser p(std::move(fields), lineNo, fileName, out.errors);
    if (auto r = p.parse()) rules->rules_.push_back(std::move(*r));
  }
  if (out.errors.empty()) out.rules = std::move(rules);
  return out;
}

const HbaRule* HbaRules::match(const HbaConnection& c) const {
  for (const HbaRule& r : rules_) {
    switch (r.type) {
      case HbaConnType::Local:
      case HbaConnType::HostGssEnc:
        continue;
      case HbaConnType::HostSsl:
        if (!c.ssl) continue;
        break;
      case HbaConnType::HostNoSsl:
        if (c.ssl) continue;
        break;
      case HbaConnType::Host:
      case HbaConnType::HostNoGssEnc:
        break;
    }
    if (addressMatches(r, c.address) && databaseMatches(r, c) && userMatches(r, c)) return &r;
  }
  return nullptr;
}

HbaDecision decideAccess(const HbaRules* rules, const HbaConnection& c, const UserConfig* user,
                         const HbaPeerCert& cert) {
  if (!rules) return authenticate(user ? user->auth : AuthMethod::ScramSha256, "");
  const std::string who = "host \"" + std::string(c.address) + "\", user \"" +
                          std::string(c.user) + "\", database \"" + std::string(c.database) +
                          "\", " + (c.ssl ? "SSL encryption" : "no encryption");
  const HbaRule* r = rules->match(c);
  if (!r) return refuse("no pg_hba.conf entry for " + who, "no hba_file line matches");
  const std::string line = "hba_file line " + std::to_string(r->line);
  if (r->method == HbaMethod::Reject)
    return refuse("pg_hba.conf rejects connection for " + who, line + " rejects");
  if (r->clientCert != HbaClientCert::Off && !cert.present)
    return refuse("connection requires a valid client certificate",
                  line + ": no verified client certificate", true);
  const std::string u(c.user);
  const bool cnMatches = cert.cn && *cert.cn == c.user;
  if (r->method == HbaMethod::Cert) {
    if (!cnMatches)
      return refuse("certificate authentication failed for user \"" + u + "\"",
                    line + (cert.cn ? ": certificate CN \"" + *cert.cn + "\" is not the user"
                                    : ": client certificate contains no user name"),
                    true);
    return authenticate(AuthMethod::Trust, line + ": cert");
  }
  if (r->clientCert == HbaClientCert::VerifyFull && !cnMatches)
    return refuse("certificate validation (clientcert=verify-full) failed for user \"" + u +
                      "\": CN mismatch",
                  line + ": certificate CN is not the user", true);
  switch (r->method) {
    case HbaMethod::Trust:
      return authenticate(AuthMethod::Trust, line + ": trust");
    case HbaMethod::Md5:
      // As PostgreSQL: md5 lines run SCRAM for a password stored as a SCRAM secret.
      return authenticate(user && user->passwordIsScram() ? AuthMethod::ScramSha256
                                                          : AuthMethod::Md5,
                          line + ": md5");
    case HbaMethod::ScramSha256:
      return authenticate(AuthMethod::ScramSha256, line + ": scram-sha-256");
    case HbaMethod::Reject:
    case HbaMethod::Cert:
      break;  // handled above
  }
  return refuse("pg_hba.conf rejects connection for " + who, line);
}

}  // namespace pgswitch::proxy
