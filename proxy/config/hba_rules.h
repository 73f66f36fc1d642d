// HbaRules: client access rules in pg_hba.conf syntax ([server] hba_file), parsed from text and
// matched against one connection's facts, and the decision PostgreSQL would take for it (which
// authentication method, or which FATAL with which exact text). Pure: no files, sockets or
// clocks, so every rule is unit-tested on strings (tests/unit/proxy/hba_rules_test.cc).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgswitch::proxy {

enum class AuthMethod;
struct UserConfig;

// The first column. pgswitch listens only on TCP, so `local` lines parse but never match;
// it has no GSSAPI encryption, so `hostgssenc` never matches and `hostnogssenc` is `host`.
enum class HbaConnType { Local, Host, HostSsl, HostNoSsl, HostGssEnc, HostNoGssEnc };
enum class HbaMethod { Trust, Reject, Md5, ScramSha256, Cert };
// The clientcert option: a certificate must be sent and verify against ca_file (VerifyCa),
// and its CN must also equal the user name (VerifyFull; implied by `cert`).
enum class HbaClientCert { Off, VerifyCa, VerifyFull };

const char* toString(HbaMethod m);

// One name of a database or user column. A keyword (all, sameuser, replication) counts only
// unquoted, as in PostgreSQL: "all" in double quotes is a database named all.
struct HbaName {
  std::string text;
  bool quoted = false;
  bool isKeyword(std::string_view k) const { return !quoted && text == k; }
};

struct HbaRule {
  int line = 0;  // in the file, for logs and errors
  HbaConnType type = HbaConnType::Host;
  std::vector<HbaName> databases;
  std::vector<HbaName> users;
  // Address: `all`, or an IPv4/IPv6 network (CIDR, or address plus mask column).
  bool anyAddress = false;
  int family = 0;                  // 4 or 6
  std::array<uint8_t, 16> addr{};  // network bytes (the first 4 for IPv4)
  std::array<uint8_t, 16> mask{};
  HbaMethod method = HbaMethod::Reject;
  HbaClientCert clientCert = HbaClientCert::Off;
};

// What is known of a connection when its startup packet has been read.
struct HbaConnection {
  std::string_view address;  // the client's IP as text ("127.0.0.1", "::1")
  bool ssl = false;          // TLS is active
  std::string_view database, user;
};

class HbaRules {
 public:
  // Parses a whole file. Every bad line is reported ("file:line: reason"); a file with errors
  // yields no rules (as PostgreSQL, which refuses to load such a file at all).
  struct Parsed {
    std::shared_ptr<const HbaRules> rules;  // null when errors is not empty
    std::vector<std::string> errors;
  };
  static Parsed parse(std::string_view text, std::string_view fileName);

  // The first rule that matches (PostgreSQL's check_hba), or null: no entry.
  const HbaRule* match(const HbaConnection& c) const;
  const std::vector<HbaRule>& rules() const { return rules_; }

 private:
  std::vector<HbaRule> rules_;
};

// The client's certificate as the TLS layer saw it (verified against ca_file when present).
struct HbaPeerCert {
  bool present = false;            // sent and verified
  std::optional<std::string> cn;   // its subject's CN; nullopt: none (or not a clean string)
};

// What the session does with a logging-in client once its startup packet is read.
struct HbaDecision {
  enum class Kind { Authenticate, Refuse } kind = Kind::Authenticate;
  // Authenticate: the method Login runs (cert and a good certificate: Trust).
  AuthMethod method{};
  bool authFailure = false;  // Refuse for a failed certificate check (counted as auth failure)
  std::string sqlstate, message;  // Refuse: the FATAL, worded as PostgreSQL 15 words it
  std::string reason;             // for the log line: which rule, what went wrong
};

// No rules (no hba_file): the user's configured method, as before hba_file existed. With
// rules: the first matching line decides, as PostgreSQL's ClientAuthentication does: no line
// or `reject` refuse with 28000; `cert` and clientcert check the certificate; `md5` runs SCRAM
// for a user whose password is stored as a SCRAM secret.
HbaDecision decideAccess(const HbaRules* rules, const HbaConnection& c, const UserConfig* user,
                         const HbaPeerCert& cert);

}  // namespace pgswitch::proxy
