// Who may log in: hba_file's decision for a client whose startup packet was read (which
// method, or PostgreSQL's FATAL 28000), the admin console's two kinds of users, and the one
// log line every refused login writes (address, user, database, reason; never a secret).
#include <spdlog/spdlog.h>

#include "proxy/config/settings.h"
#include "proxy/session/client_session.h"

namespace pgswitch::proxy {

namespace {

std::string hostOf(const std::string& peer) { return peer.substr(0, peer.rfind(':')); }

}  // namespace

void ClientSession::loginFailed(std::string_view reason) {
  spdlog::info("login failed: address {} user \"{}\" database \"{}\": {}",
               hostOf(client_.peerName()), logValue(user()), logValue(database()), reason);
}

bool ClientSession::checkAccess(std::optional<AuthMethod>& method, const UserConfig* user) {
  if (!cfg_->hba) return true;  // no hba_file: each user's own `auth`, as before
  HbaPeerCert cert;
  if (const TlsStream* t = client_.tls()) {
    cert.present = t->peerVerified();
    if (cert.present) cert.cn = t->peerCommonName();
  }
  const std::string host = hostOf(client_.peerName());
  HbaConnection c{host, client_.encrypted(), database(), this->user()};
  HbaDecision d = decideAccess(cfg_->hba.get(), c, user, cert);
  if (d.kind == HbaDecision::Kind::Authenticate) {
    method = d.method;
    spdlog::debug("client {}: {}", client_.peerName(), d.reason);
    return true;
  }
  if (d.authFailure) {
    ++worker_.runtime().authFailures;
  } else {
    ++worker_.runtime().accessRefused;
  }
  loginFailed(d.reason);
  fatal(d.sqlstate, d.message);
  return false;
}

bool ClientSession::admitToConsole() {
  if (cfg_->isAdmin(user())) {
    consoleRole_ = ConsoleRole::Admin;
    return true;
  }
  if (cfg_->isStatsUser(user())) {
    consoleRole_ = ConsoleRole::Stats;
    return true;
  }
  ++worker_.runtime().accessRefused;
  loginFailed("not in admin_users or stats_users: console refused");
  fatal("42501", "permission denied for database \"" + std::string(kConsoleDatabase) + "\"",
        "Only the users listed in server.admin_users or server.stats_users may use the pgswitch "
        "admin console.");
  return false;
}

}  // namespace pgswitch::proxy
