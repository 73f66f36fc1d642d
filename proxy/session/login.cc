// Login over bytes: startup packet parsing (with PostgreSQL's own "options" splitting and
// protocol negotiation), then the authentication exchange.
#include "proxy/session/login.h"

#include <algorithm>

#include "protocol/builder.h"
#include "protocol/framing.h"
#include "protocol/md5auth.h"
#include "protocol/messages.h"

namespace pgswitch::proxy {

using namespace protocol;

namespace {

Login::Outcome fatal(std::string sqlstate, std::string message, std::string detail = {},
                     std::string hint = {}) {
  Login::Outcome o;
  o.step = Login::Step::Fatal;
  o.sqlstate = std::move(sqlstate);
  o.message = std::move(message);
  o.detail = std::move(detail);
  o.hint = std::move(hint);
  return o;
}

Login::Outcome step(Login::Step s) {
  Login::Outcome o;
  o.step = s;
  return o;
}

// Parses the startup "options" parameter the way PostgreSQL does (pg_split_opts): words
// separated by spaces, backslash escapes a character; "-c name=value" and "--name=value"
// set GUCs. Other switches are refused, as PostgreSQL refuses them for non-superusers.
bool parseOptions(std::string_view opts, Settings& out, std::string& error) {
  std::vector<std::string> words;
  std::string cur;
  bool have = false;
  for (size_t i = 0; i < opts.size(); ++i) {
    char ch = opts[i];
    if (ch == '\\' && i + 1 < opts.size()) {
      cur += opts[++i];
      have = true;
    } else if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
      if (have) words.push_back(std::move(cur));
      cur.clear();
      have = false;
    } else {
      cur += ch;
      have = true;
    }
  }
  if (have) words.push_back(std::move(cur));
  for (size_t i = 0; i < words.size(); ++i) {
    std::string kv;
    if (words[i] == "-c") {
      if (i + 1 >= words.size()) {
        error = "-c requires a value";
        return false;
      }
      kv = words[++i];
    } else if (words[i].rfind("-c", 0) == 0) {
      kv = words[i].substr(2);
    } else if (words[i].rfind("--", 0) == 0) {
      kv = words[i].substr(2);
    } else {
      error = "invalid command-line argument for server process: " + words[i];
      return false;
    }
    size_t eq = kv.find('=');
    if (eq == std::string::npos) {
      error = "--" + kv + " requires a value";
      return false;
    }
    std::string name = kv.substr(0, eq);
    for (auto& c : name)
      if (c == '-') c = '_';
    out.emplace_back(name, kv.substr(eq + 1));
  }
  return true;
}

}  // namespace

Login::Outcome Login::feed(ByteQueue& in, const Config& cfg, std::string& out) {
  // PostgreSQL 17's direct TLS (sslnegotiation=direct): a TLS handshake record where a
  // startup packet's length would be (0x16 there would mean a length over 369 MB).
  std::byte first[1];
  if (phase_ == Phase::Startup && tls_.offered && !tls_.active && in.copyOut(0, first) &&
      first[0] == std::byte{0x16})
    return step(Step::DirectTls);
  while (phase_ == Phase::Startup) {
    Frame f = readStartupFrame(in, kMaxStartupPacket);
    if (f.status == FrameStatus::NeedMore) return step(Step::NeedMore);
    if (f.status == FrameStatus::Invalid) {
      // PostgreSQL closes without a reply here ("invalid length of startup packet").
      Outcome o = step(Step::Close);
      o.message = f.error;
      return o;
    }
    // Consumed before it is acted on: the session may go on to relay what follows it.
    Outcome o = startup(takeMessage(in, f.total).subspan(4), out);
    if (o.step == Step::StartTls && !in.empty()) {
      // Bytes sent after SSLRequest and before the handshake would otherwise be read as if
      // they had come through TLS (CVE-2021-23214). Refused before 'S' leaves, so the
      // client reads a plain ErrorResponse.
      out.clear();
      return fatal("08P01", "received unencrypted data after SSL request",
                   "This could be either a client-software bug or evidence of an attempted "
                   "man-in-the-middle attack.");
    }
    if (o.step != Step::NeedMore) return o;
  }
  while (phase_ == Phase::AuthFirst || phase_ == Phase::AuthFinal) {
    Frame f = readFrame(in, kMaxStartupPacket);
    if (f.status == FrameStatus::NeedMore) return step(Step::NeedMore);
    if (f.status == FrameStatus::Invalid)
      return fatal("08P01", "invalid message length during authentication");
    if (f.type != fe::Password) {
      if (f.type == fe::Terminate) return step(Step::Close);
      return fatal("08P01",
                   "expected password response, got message type " +
                       std::to_string(static_cast<int>(static_cast<unsigned char>(f.type))));
    }
    Outcome o = password(takeMessage(in, f.total).subspan(5), out);
    if (o.step != Step::NeedMore) return o;
  }
  return step(Step::NeedMore);
}

std::span<const std::byte> Login::takeMessage(ByteQueue& in, size_t n) {
  // Copied into packet_, whose capacity the three messages of a login share, because
  // consume() may free the chunk the message was read into.
  auto msg = in.contiguous(n, packet_);
  if (msg.data() != packet_.data()) {
    packet_.reserve(std::max<size_t>(n, 256));  // one allocation for a whole SCRAM login
    packet_.assign(msg.begin(), msg.end());
  }
  in.consume(n);
  return std::span<const std::byte>(packet_.data(), n);
}

Login::Outcome Login::startup(std::span<const std::byte> body, std::string& out) {
  auto sv = parseStartup(body);
  if (!sv) return fatal("08P01", sv.error());
  switch (sv->kind) {
    case StartupKind::Ssl:
    case StartupKind::GssEnc:
      return encryptionRequest(sv->kind, out);
    case StartupKind::Cancel: {
      Outcome o = step(Step::Cancel);
      o.cancelPid = sv->cancelPid;
      o.cancelKey = sv->cancelKey;
      return o;
    }
    case StartupKind::Startup:
      break;
  }
  uint32_t major = sv->protocol >> 16, minor = sv->protocol & 0xffff;
  if (major != 3) {
    return fatal("0A000", "unsupported frontend protocol " + std::to_string(major) + "." +
                              std::to_string(minor) + ": server supports 3.0 to 3.0");
  }
  std::vector<std::string_view> unrecognized;
  std::string options;
  for (auto& [k, v] : sv->params) {
    if (k == "user") {
      user_ = v;
    } else if (k == "database") {
      database_ = v;
    } else if (k == "options") {
      options = v;
    } else if (k == "replication") {
      if (v != "false" && v != "off" && v != "no" && v != "0") {
        return fatal("0A000", "pgswitch does not accept replication connections", {},
                     "connect replication clients directly to the PostgreSQL server");
      }
    } else if (k.rfind("_pq_.", 0) == 0) {
      unrecognized.push_back(k);
    } else {
      settings_.emplace_back(std::string(k), std::string(v));
    }
  }
  if (user_.empty()) return fatal("28000", "no PostgreSQL user name specified in startup packet");
  if (database_.empty()) database_ = user_;
  if (tls_.required && !tls_.active) {
    // Worded as PostgreSQL's refusal by a hostssl-only pg_hba.conf.
    return fatal("28000",
                 "no pgswitch entry for host \"" + tls_.peerHost + "\", user \"" + user_ +
                     "\", database \"" + database_ + "\", no encryption",
                 {}, "pgswitch accepts only TLS connections (client_tls = \"require\")");
  }
  if (!options.empty()) {
    std::string err;
    if (!parseOptions(options, settings_, err)) return fatal("42601", err);
  }
  // Like PostgreSQL: a newer minor version or _pq_ options get NegotiateProtocolVersion,
  // and the session continues with 3.0.
  if (minor > 0 || !unrecognized.empty())
    appendNegotiateProtocolVersion(out, kProtocolV3, unrecognized);
  phase_ = Phase::AuthFirst;
  return step(Step::StartupDone);
}

Login::Outcome Login::encryptionRequest(StartupKind kind, std::string& out) {
  if (tls_.active) {
    // A second negotiation inside TLS: PostgreSQL refuses it as an unknown protocol.
    return fatal("08P01", "unexpected encryption request on an encrypted connection");
  }
  // GSSAPI encryption is not supported: 'N' tells the client to go on (or give up).
  bool accept = kind == StartupKind::Ssl && tls_.offered;
  appendEncryptionAnswer(out, accept);
  return step(accept ? Step::StartTls : Step::NeedMore);
}

Login::Outcome Login::begin(const Config& cfg, std::string& out, const UserConfig* lookedUp,
                            std::optional<AuthMethod> method) {
  userCfg_ = cfg.findUser(user_);
  if (!userCfg_) userCfg_ = lookedUp;
  method_ = method.value_or(userCfg_ ? userCfg_->auth : AuthMethod::ScramSha256);
  switch (method_) {
    case AuthMethod::Trust:
      phase_ = Phase::Done;
      appendAuthOk(out);
      return step(Step::Authenticated);
    case AuthMethod::Md5:
      randomBytes(md5Salt_);
      appendAuthMd5(out, md5Salt_);
      break;
    case AuthMethod::ScramSha256: {
      // As PostgreSQL: -PLUS first, and only on a TLS connection whose certificate has a
      // usable hash.
      bool plus = tls_.active && !tls_.cbindData.empty();
      std::string_view withPlus[] = {kScramSha256Plus, kScramSha256};
      std::string_view plain[] = {kScramSha256};
      if (plus) {
        appendAuthSasl(out, withPlus);
      } else {
        appendAuthSasl(out, plain);
      }
      ScramSecret secret = (userCfg_ && userCfg_->scram)
                               ? *userCfg_->scram
                               : mockScramSecret(user_, "pgswitch-mock-" + cfg.path);
      scram_.emplace(std::move(secret), makeNonce());
      if (plus) scram_->offerChannelBinding(tls_.cbindData);
      break;
    }
  }
  return step(Step::NeedMore);
}

Login::Outcome Login::password(std::span<const std::byte> body, std::string& out) {
  if (method_ == AuthMethod::Md5) {
    auto pw = parsePasswordMessage(body);
    bool ok = pw && userCfg_ &&
              constantTimeEquals(*pw, md5SaltedResponse(userCfg_->password, user_, md5Salt_));
    if (!ok) return step(Step::AuthFailed);
    phase_ = Phase::Done;
    appendAuthOk(out);
    return step(Step::Authenticated);
  }
  if (phase_ == Phase::AuthFirst) {  // SASLInitialResponse
    auto init = parseSaslInitial(body);
    if (!init) return fatal("08P01", init.error());
    bool plusOffered = tls_.active && !tls_.cbindData.empty();
    bool plus = plusOffered && init->mechanism == kScramSha256Plus;
    if (init->mechanism != kScramSha256 && !plus)
      return fatal("08P01", "client selected an invalid SASL authentication mechanism");
    auto r = scram_->handleClientFirst(asText(init->data), plus);
    if (!r) return fatal("08P01", "malformed SCRAM message", r.error());
    appendAuthSaslContinue(out, *r);
    phase_ = Phase::AuthFinal;
    return step(Step::NeedMore);
  }
  auto r = scram_->handleClientFinal(asText(body));  // the client-final-message
  if (!r || !userCfg_) return step(Step::AuthFailed);
  appendAuthSaslFinal(out, *r);
  appendAuthOk(out);
  phase_ = Phase::Done;
  return step(Step::Authenticated);
}

std::optional<std::array<uint8_t, 32>> Login::clientKey() const {
  if (userCfg_ && userCfg_->passwordIsScram() && scram_) return scram_->clientKey();
  return std::nullopt;
}

}  // namespace pgswitch::proxy
