// Client session: logging in. Drives Login (pure) over the client's socket: TLS, the
// password lookup for users without a [[user]] entry ([auth], docs/auth.md), cancel requests,
// and the step into the console or the first server.
#include <spdlog/spdlog.h>

#include "protocol/builder.h"
#include "proxy/core/cancel_forwarder.h"
#include "proxy/session/client_session.h"

namespace pgswitch::proxy {

using namespace protocol;

namespace {

void forwardCancel(Worker& w, int32_t pid, int32_t key) {
  CancelRegistry::Busy busy;
  auto topo = w.runtime().topology();
  if (!w.runtime().cancels().read(pid, key, busy) || busy.backend < 0 ||
      busy.backend >= static_cast<int>(topo->backends.size())) {
    // Unknown key or nothing running: dropped silently, as PostgreSQL does.
    spdlog::debug("cancel request for unknown key {}", pid);
    return;
  }
  if (busy.request == 0) {
    // Linked (session mode) but idle: PostgreSQL ignores a cancel for an idle backend.
    spdlog::debug("cancel request for idle client {}: ignored", pid);
    return;
  }
  int backend = busy.backend;
  CancelTarget t;
  t.pid = busy.serverPid;
  t.key = busy.serverKey;
  t.request = busy.request;
  t.clientPid = pid;
  t.clientKey = key;
  t.host = topo->backends[backend].host;
  t.port = topo->backends[backend].port;
  CancelForwarder::start(w, t);
}

}  // namespace

bool ClientSession::startTls(bool direct) {
  std::string err = client_.startTls(
      login_->tls->clients.get(), direct ? TlsStream::Role::AcceptDirect : TlsStream::Role::Accept);
  if (!err.empty()) {
    spdlog::info("client {}: TLS not started: {}", client_.peerName(), err);
    end(false);
    return false;
  }
  LoginTls t = login_->login.tls();
  t.active = true;
  t.cbindData = login_->tls->cbindData;
  login_->login.setTls(std::move(t));
  return true;
}

void ClientSession::onLogin() {
  // While the password is looked up the client has nothing to send; what it sends anyway
  // waits in its input until the answer arrives.
  if (login_->secretToken) return;
  std::string& out = loginOut();
  Login::Outcome o = login_->login.feed(client_.in(), *cfg_, out);
  continueLogin(o, out);
}

std::string& ClientSession::loginOut() {
  std::string& out = worker_.scratch().login;
  out.clear();
  return out;
}

bool ClientSession::needsSecretLookup() const {
  if (!cfg_->auth.enabled() || !worker_.runtime().secrets) return false;
  if (cfg_->findUser(user())) return false;
  // The console database exists only in pgswitch: auth.query can run there only when
  // auth.database names a real one.
  return database() != kConsoleDatabase || !cfg_->auth.database.empty();
}

// The answer comes on the lookup thread: it is posted to this worker, and dropped there when
// the session has ended meanwhile (the token is gone with it).
void ClientSession::lookUpSecret() {
  login_->secretToken = std::make_shared<int>(0);
  std::weak_ptr<int> token = login_->secretToken;
  Worker* w = &worker_;
  worker_.runtime().secrets->lookup(
      database(), user(), [w, token, this](const health::SecretAnswer& a) {
        w->post([token, this, a] {
          if (token.lock()) onSecret(a);
        });
      });
}

void ClientSession::onSecret(const health::SecretAnswer& a) {
  login_->secretToken.reset();
  if (state_ == State::Closing) return;
  if (a.kind == health::SecretAnswer::Kind::Failed) {
    ++worker_.runtime().authLookupFailures;
    fatal("08006", "could not look up the password of user \"" + user() + "\"", a.error,
          "pgswitch reads passwords of users without a [[user]] entry with auth.query.");
    return;
  }
  if (a.kind == health::SecretAnswer::Kind::Found) {
    login_->lookedUpUser = lookedUpUser(user(), a.secret);
    if (!login_->lookedUpUser)
      spdlog::warn("auth: the stored password of user \"{}\" is in a format pgswitch cannot use",
                   user());
  }
  // The method an hba_file line gives may depend on the stored password (md5 lines use SCRAM
  // for SCRAM secrets): decided again now that it is known.
  const UserConfig* found = login_->lookedUpUser.get();
  if (found && !checkAccess(login_->hbaMethod, found)) return;
  // No password (or an unusable one): the exchange runs with a mock secret and fails like a
  // wrong password, as for an unknown user.
  std::string& out = loginOut();
  Login::Outcome o = login_->login.begin(*cfg_, out, found, login_->hbaMethod);
  if (o.step == Login::Step::NeedMore) o = login_->login.feed(client_.in(), *cfg_, out);
  continueLogin(o, out);
}

void ClientSession::continueLogin(Login::Outcome o, std::string& out) {
  for (;;) {
    if (!out.empty()) {
      client_.send(out);
      // AuthenticationOk waits for the ParameterStatus, BackendKeyData and ReadyForQuery that
      // follow (configure(), the console, or an error flush it): one write, not two.
      if (o.step != Login::Step::Authenticated) client_.flush();
      out.clear();
      if (state_ == State::Closing) return;  // the write failed: the client is gone
    }
    switch (o.step) {
      case Login::Step::NeedMore:
        return;
      case Login::Step::StartupDone: {
        transitionTo(State::Auth);
        names_ = worker_.clientNames().intern({login_->login.user(), login_->login.database()});
        const Settings& startup = login_->login.settings();
        settings_.startShared(startup.empty() ? nullptr : worker_.startupSettings().intern(startup));
        counted_ = true;
        if (++worker_.runtime().clients > cfg_->maxClientConn) {
          fatal("53300", "sorry, too many clients already");
          return;
        }
        // Refusals first: a client hba_file turns away costs no password lookup.
        if (!checkAccess(login_->hbaMethod, cfg_->findUser(user()))) return;
        if (needsSecretLookup()) {
          lookUpSecret();
          return;
        }
        o = login_->login.begin(*cfg_, out, nullptr, login_->hbaMethod);
        if (o.step == Login::Step::NeedMore) o = login_->login.feed(client_.in(), *cfg_, out);
        continue;
      }
      case Login::Step::StartTls:
      case Login::Step::DirectTls:
        if (!startTls(o.step == Login::Step::DirectTls)) return;
        o = login_->login.feed(client_.in(), *cfg_, out);
        continue;
      case Login::Step::Authenticated:
        // Only the ClientKey outlives the exchange, in the worker (for SCRAM passthrough);
        // the rest of Login is not kept.
        if (auto key = login_->login.clientKey()) worker_.noteClientKey(user(), *key);
        if (login_->lookedUpUser) {
          worker_.noteLookedUpUser(user(), std::move(login_->lookedUpUser));
          lookedUp_ = true;
        }
        login_.reset();
        break;
      case Login::Step::Cancel:
        forwardCancel(worker_, o.cancelPid, o.cancelKey);
        end(false);
        return;
      case Login::Step::Close:
        if (!o.message.empty()) spdlog::info("client {}: {}", client_.peerName(), o.message);
        end(false);
        return;
      case Login::Step::Fatal:
        fatal(o.sqlstate, o.message, o.detail, o.hint);
        return;
      case Login::Step::AuthFailed:
        ++worker_.runtime().authFailures;
        // The client is told the same either way; the log may say which.
        loginFailed(cfg_->findUser(user()) || login_->lookedUpUser ? "wrong password"
                    : cfg_->auth.enabled()                 ? "no such user (auth.query)"
                                                           : "no such [[user]]");
        fatal("28P01", "password authentication failed for user \"" + user() + "\"");
        return;
    }
    break;
  }
  auto entry = worker_.runtime().cancels().add(&cancelSlot_);
  cancelPid_ = entry.pid;
  cancelKey_ = entry.key;
  relay_.setCancelSlot(&cancelSlot_);
  if (database() != kConsoleDatabase) {
    route_.toPrimary();
    requestServer();
    return;
  }
  if (!admitToConsole()) return;
  transitionTo(State::Console);
  console_ = std::make_unique<ConsoleSession>(*this, worker_, client_);
  console_->start(user(), settings_.setting("application_name"),
                  settings_.setting("client_encoding"), cancelPid_, cancelKey_, consoleRole_);
}

}  // namespace pgswitch::proxy
