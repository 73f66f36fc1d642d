// The client's side of login: startup packet (SSL/GSS negotiation, cancel requests,
// protocol version), then SCRAM-SHA-256, md5 or trust against pgswitch's own user list.
// Unknown users go through the same exchange as known ones with a mock secret, so the
// answer never reveals whether a user exists (as PostgreSQL does).
#include <spdlog/spdlog.h>

#include "protocol/builder.h"
#include "protocol/framing.h"
#include "protocol/md5auth.h"
#include "protocol/messages.h"
#include "proxy/core/cancel_forwarder.h"
#include "proxy/session/client_session.h"

namespace pgswitch::proxy {

using namespace protocol;

namespace {

// Parses the startup "options" parameter the way PostgreSQL does (pg_split_opts): words
// separated by spaces, backslash escapes a character; "-c name=value" and "--name=value"
// set GUCs. Other switches are refused, as PostgreSQL refuses them for non-superusers.
bool parseOptions(std::string_view opts, std::vector<std::pair<std::string, std::string>>& out,
                  std::string& error) {
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

void ClientSession::fatal(std::string_view sqlstate, std::string_view message,
                          std::string_view detail, std::string_view hint) {
  std::string out;
  appendError(out, ErrorSpec{"FATAL", sqlstate, message, detail, hint});
  client_->send(out);
  transitionTo(State::Closing);
  client_->closeAfterFlush();
}

void ClientSession::handleStartup() {
  ByteQueue& in = client_->in();
  while (state_ == State::Startup) {
    Frame f = readStartupFrame(in, kMaxStartupPacket);
    if (f.status == FrameStatus::NeedMore) return;
    if (f.status == FrameStatus::Invalid) {
      // PostgreSQL closes without a reply here ("invalid length of startup packet").
      spdlog::info("client {}: {}", client_->peerName(), f.error);
      transitionTo(State::Closing);
      client_->close();
      return;
    }
    // Consumed before it is acted on: with trust auth and an idle server, the session can
    // go all the way to relaying within processStartup, and must not relay this packet.
    auto msg = in.contiguous(f.total, scratch_);
    std::vector<std::byte> packet(msg.begin(), msg.end());
    in.consume(f.total);
    if (!processStartup(std::span<const std::byte>(packet).subspan(4))) return;
  }
  if (state_ == State::Auth && !in.empty()) handleAuthMessage();
}

bool ClientSession::processStartup(std::span<const std::byte> body) {
  auto sv = parseStartup(body);
  if (!sv) {
    fatal("08P01", sv.error());
    return false;
  }
  switch (sv->kind) {
    case StartupKind::Ssl:
    case StartupKind::GssEnc:
      // No TLS/GSS yet: 'N' tells the client to go on in plaintext (or give up).
      client_->send("N");
      client_->flush();
      return true;
    case StartupKind::Cancel:
      handleCancel(sv->cancelPid, sv->cancelKey);
      transitionTo(State::Closing);
      client_->close();
      return false;
    case StartupKind::Startup:
      break;
  }
  uint32_t major = sv->protocol >> 16, minor = sv->protocol & 0xffff;
  if (major != 3) {
    fatal("0A000", "unsupported frontend protocol " + std::to_string(major) + "." +
                       std::to_string(minor) + ": server supports 3.0 to 3.0");
    return false;
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
        fatal("0A000", "pgswitch does not accept replication connections",
              {}, "connect replication clients directly to the PostgreSQL server");
        return false;
      }
    } else if (k.rfind("_pq_.", 0) == 0) {
      unrecognized.push_back(k);
    } else {
      gucs_.emplace_back(std::string(k), std::string(v));
    }
  }
  if (user_.empty()) {
    fatal("28000", "no PostgreSQL user name specified in startup packet");
    return false;
  }
  if (database_.empty()) database_ = user_;
  if (!options.empty()) {
    std::string err;
    if (!parseOptions(options, gucs_, err)) {
      fatal("42601", err);
      return false;
    }
  }
  startupGucs_ = gucs_;
  // Like PostgreSQL: a newer minor version or _pq_ options get NegotiateProtocolVersion,
  // and the session continues with 3.0.
  if (minor > 0 || !unrecognized.empty()) {
    std::string out;
    appendNegotiateProtocolVersion(out, kProtocolV3, unrecognized);
    client_->send(out);
  }
  auto& rt = worker_.runtime();
  int n = ++rt.clients;
  counted_ = true;
  if (n > cfg_->maxClientConn) {
    fatal("53300", "sorry, too many clients already");
    return false;
  }
  beginAuth();
  return true;  // the loop in handleStartup ends: the state is no longer Startup
}

void ClientSession::beginAuth() {
  transitionTo(State::Auth);
  userCfg_ = cfg_->findUser(user_);
  AuthMethod method = userCfg_ ? userCfg_->auth : AuthMethod::ScramSha256;
  std::string out;
  switch (method) {
    case AuthMethod::Trust:
      authSucceeded();
      return;
    case AuthMethod::Md5:
      randomBytes(md5Salt_);
      appendAuthMd5(out, md5Salt_);
      break;
    case AuthMethod::ScramSha256: {
      std::string_view mech[] = {"SCRAM-SHA-256"};
      appendAuthSasl(out, mech);
      ScramSecret secret = (userCfg_ && userCfg_->scram)
                               ? *userCfg_->scram
                               : mockScramSecret(user_, "pgswitch-mock-" + cfg_->path);
      scram_.emplace(std::move(secret), makeNonce());
      break;
    }
  }
  authStep_ = 0;
  client_->send(out);
  client_->flush();
}

void ClientSession::handleAuthMessage() {
  ByteQueue& in = client_->in();
  while (state_ == State::Auth) {
    Frame f = readFrame(in, kMaxStartupPacket);
    if (f.status == FrameStatus::NeedMore) return;
    if (f.status == FrameStatus::Invalid) {
      fatal("08P01", "invalid message length during authentication");
      return;
    }
    if (f.type != fe::Password) {
      if (f.type == fe::Terminate) {
        transitionTo(State::Closing);
        client_->close();
        return;
      }
      fatal("08P01", "expected password response, got message type " +
                         std::to_string(static_cast<int>(static_cast<unsigned char>(f.type))));
      return;
    }
    auto msg = in.contiguous(f.total, scratch_);
    auto body = msg.subspan(5);
    AuthMethod method = userCfg_ ? userCfg_->auth : AuthMethod::ScramSha256;
    if (method == AuthMethod::Md5) {
      auto pw = parsePasswordMessage(body);
      bool ok = pw && userCfg_ &&
                constantTimeEquals(*pw, md5SaltedResponse(userCfg_->password, user_, md5Salt_));
      in.consume(f.total);
      if (ok) {
        authSucceeded();
      } else {
        authFailed();
      }
      return;
    }
    // SCRAM: step 0 is SASLInitialResponse, step 1 the client-final-message.
    std::string out;
    if (authStep_ == 0) {
      auto init = parseSaslInitial(body);
      if (!init) {
        in.consume(f.total);
        fatal("08P01", init.error());
        return;
      }
      if (init->mechanism != "SCRAM-SHA-256") {
        in.consume(f.total);
        fatal("08P01", "client selected an invalid SASL authentication mechanism");
        return;
      }
      auto r = scram_->handleClientFirst(asText(init->data));
      in.consume(f.total);
      if (!r) {
        fatal("08P01", "malformed SCRAM message", r.error());
        return;
      }
      appendAuthSaslContinue(out, *r);
      authStep_ = 1;
      client_->send(out);
      client_->flush();
      continue;
    }
    auto r = scram_->handleClientFinal(asText(body));
    in.consume(f.total);
    if (!r || !userCfg_) {
      authFailed();
      return;
    }
    appendAuthSaslFinal(out, *r);
    client_->send(out);
    authSucceeded();
    return;
  }
}

void ClientSession::authFailed() {
  ++worker_.runtime().authFailures;
  spdlog::info("client {}: password authentication failed for user \"{}\"", client_->peerName(),
               user_);
  fatal("28P01", "password authentication failed for user \"" + user_ + "\"");
}

void ClientSession::authSucceeded() {
  std::string out;
  appendAuthOk(out);
  client_->send(out);
  client_->flush();
  auto entry = worker_.runtime().cancels().allocate();
  cancelPid_ = entry.pid;
  cancelKey_ = entry.key;
  cancelSlot_ = std::move(entry.slot);
  if (database_ == "pgswitch") {  // the admin console: no server (console_session.cc)
    startConsole();
    return;
  }
  requestServer();
}

void ClientSession::handleCancel(int32_t pid, int32_t key) {
  auto slot = worker_.runtime().cancels().find(pid, key);
  int backend = -1;
  CancelTarget t;
  auto topo = worker_.runtime().topology();
  if (!slot || !slot->get(backend, t.pid, t.key) || backend < 0 ||
      backend >= static_cast<int>(topo->backends.size())) {
    // Unknown key or nothing running: drop it silently, as PostgreSQL does.
    spdlog::debug("cancel request for unknown key {}", pid);
    return;
  }
  t.host = topo->backends[backend].host;
  t.port = topo->backends[backend].port;
  CancelForwarder::start(worker_, t);
}

}  // namespace pgswitch::proxy
