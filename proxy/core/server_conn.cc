// Server connection login and bookkeeping. Login errors from PostgreSQL are kept as whole
// ErrorResponse messages so the client sees exactly what PostgreSQL said (e.g. 3D000).
#include "proxy/core/server_conn.h"

#include <spdlog/spdlog.h>

#include "protocol/builder.h"
#include "protocol/framing.h"
#include "protocol/md5auth.h"
#include "protocol/messages.h"
#include "proxy/core/pool.h"

namespace pgswitch::proxy {

using namespace protocol;

namespace {
std::string fatal(std::string_view sqlstate, std::string_view msg) {
  std::string out;
  appendError(out, ErrorSpec{"FATAL", sqlstate, msg});
  return out;
}
}  // namespace

ServerConn::ServerConn(Worker& w, Pool& pool, LoginInfo login, uint64_t id)
    : worker_(w), pool_(pool), login_(std::move(login)), id_(id) {
  conn_ = std::make_unique<Conn>(w, this);
  createdMs_ = lastUsedMs_ = w.nowMs();
}

ServerConn::~ServerConn() = default;

void ServerConn::connect(const sockaddr* addr) {
  state_ = State::Connecting;
  int rc = conn_->connect(addr);
  if (rc != 0) {
    loginFailed(fatal("08006", std::string("could not connect to server: ") + uv_strerror(rc)));
  }
}

void ServerConn::onConnConnected(Conn& c, int status) noexcept {
  if (status != 0) {
    loginFailed(fatal("08006", std::string("could not connect to server: ") + uv_strerror(status)));
    return;
  }
  if (login_.tls && login_.tls->backends) {
    std::string out;
    appendSslRequest(out);
    conn_->send(out);
    conn_->flush();
    state_ = State::Tls;
    conn_->startReading();
    return;
  }
  sendStartup();
}

void ServerConn::sendStartup() {
  std::vector<std::pair<std::string, std::string>> params{{"user", login_.user},
                                                          {"database", login_.database}};
  std::string out;
  appendStartup(out, params);
  // With TLS the Conn keeps it until the handshake is done, then sends it encrypted.
  conn_->send(out);
  conn_->flush();
  state_ = State::Login;
  conn_->startReading();
}

void ServerConn::handleTlsAnswer() {
  ByteQueue& in = conn_->in();
  std::byte b[1];
  if (!in.copyOut(0, b)) return;
  char answer = static_cast<char>(b[0]);
  ServerSslMode mode = login_.tls->serverSslMode;
  if (answer == 'E') {
    // A server that cannot even answer (too many connections, or older than 7.0) sends an
    // ErrorResponse: read it as a login error.
    state_ = State::Login;
    handleLogin();
    return;
  }
  in.consume(1);
  if (answer == 'S') {
    // startTls refuses bytes after the 'S' (a man in the middle injecting plaintext that
    // would be read as if it came through TLS: CVE-2021-23222).
    std::string host = mode == ServerSslMode::VerifyFull ? login_.host : std::string();
    std::string err =
        conn_->startTls(login_.tls->backends.get(), TlsStream::Role::Connect, host, login_.host);
    if (!err.empty()) {
      loginFailed(fatal("08006", "TLS with the server failed: " + err));
      return;
    }
    if (state_ == State::Closing) return;  // the ClientHello's write failed: already reported
    sendStartup();
    return;
  }
  if (answer == 'N' && mode == ServerSslMode::Prefer) {
    sendStartup();
    return;
  }
  if (answer == 'N') {
    loginFailed(fatal("08006", std::string("server does not support SSL, but server_sslmode = ") +
                                   toString(mode) + " requires it"));
    return;
  }
  loginFailed(fatal("08P01", "received invalid response to SSL negotiation from server"));
}

void ServerConn::onConnRead(Conn& c) noexcept {
  switch (state_) {
    case State::Connecting:
    case State::Login:
      handleLogin();
      return;
    case State::Tls:
      handleTlsAnswer();
      return;
    case State::Idle:
      handleIdle();
      return;
    case State::Active:
      if (user_) user_->onServerRead(*this);
      return;
    case State::Internal:
      handleInternal();
      return;
    case State::Closing:
      conn_->in().clear();
      return;
  }
}

void ServerConn::handleLogin() {
  ByteQueue& in = conn_->in();
  for (;;) {
    Frame f = readFrame(in, 1024 * 1024);
    if (f.status == FrameStatus::NeedMore) return;
    if (f.status == FrameStatus::Invalid) {
      loginFailed(fatal("08P01", "invalid message from server during login"));
      return;
    }
    auto msg = in.contiguous(f.total, scratch_);
    auto body = msg.subspan(5);
    switch (f.type) {
      case be::Authentication:
        if (!handleAuth(body)) return;
        break;
      case be::ParameterStatus: {
        auto ps = parseParameterStatus(body);
        if (ps) setParam(ps->name, ps->value);
        break;
      }
      case be::BackendKeyData: {
        auto k = parseBackendKeyData(body);
        if (k) {
          pid_ = k->pid;
          key_ = k->key;
        }
        break;
      }
      case be::ErrorResponse: {
        std::string err(reinterpret_cast<const char*>(msg.data()), msg.size());
        in.consume(f.total);
        loginFailed(std::move(err));
        return;
      }
      case be::ReadyForQuery:
        in.consume(f.total);
        txnStatus_ = 'I';
        state_ = State::Idle;
        touch(worker_.nowMs());
        pool_.onLoginDone(*this);
        // Anything after ReadyForQuery is unexpected while idle.
        if (state_ == State::Idle && !in.empty()) handleIdle();
        return;
      default:  // NoticeResponse, NegotiateProtocolVersion: nothing to do
        break;
    }
    in.consume(f.total);
  }
}

bool ServerConn::handleAuth(std::span<const std::byte> body) {
  auto req = parseAuthRequest(body);
  if (!req) {
    loginFailed(fatal("08P01", "invalid authentication request from server"));
    return false;
  }
  std::string out;
  switch (req->code) {
    case auth::Ok:
      scram_.reset();
      return true;
    case auth::CleartextPassword:
      if (login_.password.rfind("SCRAM-SHA-256$", 0) == 0 ||
          (login_.password.size() == 35 && login_.password.rfind("md5", 0) == 0)) {
        loginFailed(fatal("28P01", "server asked for a cleartext password but pgswitch only "
                                   "has a hashed password for user \"" + login_.user + "\""));
        return false;
      }
      appendPasswordMessage(out, login_.password);
      break;
    case auth::MD5Password: {
      if (login_.password.empty() || login_.password.rfind("SCRAM-SHA-256$", 0) == 0) {
        loginFailed(fatal("28P01", "server asked for md5 authentication but pgswitch has no "
                                   "plaintext or md5 password for user \"" + login_.user + "\""));
        return false;
      }
      std::span<const std::byte, 4> salt(req->data.data(), 4);
      appendPasswordMessage(out, md5SaltedResponse(login_.password, login_.user, salt));
      break;
    }
    case auth::SASL: {
      bool offered = false;
      for (auto m : req->mechanisms) offered |= (m == "SCRAM-SHA-256");
      if (!offered) {
        loginFailed(fatal("28000", "server offered no supported SASL mechanism"));
        return false;
      }
      if (login_.password.rfind("SCRAM-SHA-256$", 0) == 0) {
        if (!login_.clientKey || !login_.scram) {
          loginFailed(fatal("28P01", "no SCRAM client key yet for user \"" + login_.user +
                                         "\": a client must log in first"));
          return false;
        }
        scram_ = ScramClient::withKeys(*login_.clientKey, *login_.scram, makeNonce());
      } else if (login_.password.empty() ||
                 (login_.password.size() == 35 && login_.password.rfind("md5", 0) == 0)) {
        loginFailed(fatal("28P01", "server asked for SCRAM authentication but pgswitch has no "
                                   "usable password for user \"" + login_.user + "\""));
        return false;
      } else {
        scram_ = ScramClient::withPassword(login_.password, makeNonce());
      }
      appendSaslInitial(out, "SCRAM-SHA-256", scram_->clientFirst());
      break;
    }
    case auth::SASLContinue: {
      if (!scram_) {
        loginFailed(fatal("08P01", "unexpected SASL continue from server"));
        return false;
      }
      auto r = scram_->handleServerFirst(asText(req->data));
      if (!r) {
        loginFailed(fatal("28P01", "SCRAM authentication with server failed: " + r.error()));
        return false;
      }
      appendSaslResponse(out, *r);
      break;
    }
    case auth::SASLFinal: {
      if (!scram_) {
        loginFailed(fatal("08P01", "unexpected SASL final from server"));
        return false;
      }
      auto r = scram_->handleServerFinal(asText(req->data));
      if (!r) {
        loginFailed(fatal("28P01", "SCRAM server signature check failed: " + r.error()));
        return false;
      }
      return true;
    }
    default:
      loginFailed(fatal("28000", "server asked for an authentication method pgswitch does not "
                                 "support (code " + std::to_string(req->code) + ")"));
      return false;
  }
  conn_->send(out);
  conn_->flush();
  return true;
}

void ServerConn::handleIdle() {
  // An idle server may report a changed setting, or say it is going away (e.g. FATAL on
  // admin shutdown). Anything else is a protocol error: drop the connection.
  ByteQueue& in = conn_->in();
  for (;;) {
    Frame f = readFrame(in, 1024 * 1024);
    if (f.status == FrameStatus::NeedMore) return;
    if (f.status == FrameStatus::Invalid) {
      close();
      return;
    }
    auto msg = in.contiguous(f.total, scratch_);
    if (f.type == be::ParameterStatus) {
      auto ps = parseParameterStatus(msg.subspan(5));
      if (ps) setParam(ps->name, ps->value);
    } else if (f.type != be::NoticeResponse && f.type != be::NotificationResponse) {
      in.consume(f.total);
      close();
      return;
    }
    in.consume(f.total);
  }
}

void ServerConn::runInternal(std::string_view sql) {
  // Built straight into the output queue's copy space would need the length first; a reused
  // buffer per worker thread does as well: no allocation per internal query (issue 14).
  thread_local std::string out;
  out.clear();
  appendQuery(out, sql);
  runInternalMessages(out);
}

void ServerConn::runInternalMessages(std::string_view messages) {
  conn_->send(messages);
  conn_->flush();
  internalError_.clear();
  internalValue_.clear();
  state_ = State::Internal;
  conn_->startReading();
}

void ServerConn::handleInternal() {
  ByteQueue& in = conn_->in();
  for (;;) {
    Frame f = readFrame(in, 64 * 1024 * 1024);
    if (f.status == FrameStatus::NeedMore) return;
    if (f.status == FrameStatus::Invalid) {
      close();
      return;
    }
    if (f.type == be::DataRow && f.status == FrameStatus::Complete && internalValue_.empty()) {
      // The first column of the first row, for internal queries that ask for a value.
      auto msg = in.contiguous(f.total, scratch_);
      if (msg.size() >= 5 + 2 + 4) {
        const auto* p = reinterpret_cast<const unsigned char*>(msg.data()) + 7;
        int32_t len = static_cast<int32_t>((uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) |
                                           (uint32_t(p[2]) << 8) | uint32_t(p[3]));
        if (len > 0 && size_t(len) <= msg.size() - 11)
          internalValue_.assign(reinterpret_cast<const char*>(p + 4), size_t(len));
      }
    }
    if (f.type == be::ErrorResponse || f.type == be::ParameterStatus ||
        f.type == be::ReadyForQuery) {
      auto msg = in.contiguous(f.total, scratch_);
      auto body = msg.subspan(5);
      if (f.type == be::ErrorResponse) {
        if (internalError_.empty())
          internalError_.assign(reinterpret_cast<const char*>(msg.data()), msg.size());
      } else if (f.type == be::ParameterStatus) {
        auto ps = parseParameterStatus(body);
        if (ps) setParam(ps->name, ps->value);
      } else {
        auto st = parseReadyForQuery(body);
        txnStatus_ = st ? *st : 'E';
        in.consume(f.total);
        bool ok = internalError_.empty();
        std::string err = std::move(internalError_);
        internalError_.clear();
        state_ = user_ ? State::Active : State::Idle;
        if (user_) {
          user_->onInternalDone(*this, ok, err);
        } else {
          pool_.onInternalDone(*this, ok, err);
        }
        return;
      }
    }
    in.consume(f.total);
  }
}

void ServerConn::loginFailed(std::string errorMessage) {
  if (state_ == State::Closing) return;
  // A refused connection is news for the health checks; an ErrorResponse (bad password,
  // missing database) is not about the backend's health.
  if (errorMessage.empty() || errorMessage.find("08006") != std::string::npos)
    worker_.runtime().backendTrouble(pool_.backend());
  close();
  pool_.onLoginFailed(*this, errorMessage);
}

void ServerConn::onConnError(Conn& c, int status) noexcept {
  spdlog::debug("server {}: connection error in state {}: {}", id(), int(state_),
                uv_strerror(status));
  switch (state_) {
    case State::Connecting:
    case State::Tls:
    case State::Login:
      if (status == UV_EPROTO && c.tls() && !c.tls()->error().empty()) {
        loginFailed(fatal("08006", "TLS with the server failed: " + c.tls()->error()));
        return;
      }
      loginFailed(fatal("08006", std::string("server closed the connection during login: ") +
                                     uv_strerror(status)));
      return;
    case State::Active:
    case State::Internal: {
      worker_.runtime().backendTrouble(pool_.backend());
      ServerUser* u = user_;
      close();
      if (u) u->onServerLost(*this, status);
      return;
    }
    case State::Idle:
      close();
      return;
    case State::Closing:
      return;
  }
}

void ServerConn::abandon(int status) {
  if (state_ != State::Active) return;
  worker_.runtime().backendTrouble(pool_.backend());
  ServerUser* u = user_;
  close();
  if (u) u->onServerLost(*this, status);
}

void ServerConn::onConnDrained(Conn& c) noexcept {
  if (user_) user_->onServerDrained(*this);
}

void ServerConn::close() {
  if (state_ == State::Closing) return;
  state_ = State::Closing;
  if (!conn_->closing()) {
    std::string out;
    appendTerminate(out);
    conn_->send(out);
    conn_->flush();
  }
  conn_->close();
}

void ServerConn::onConnClosed(Conn& c) noexcept {
  state_ = State::Closing;
  pool_.onServerClosed(*this);
}

}  // namespace pgswitch::proxy
