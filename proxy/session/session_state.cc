// Session state tracking: which settings follow the client, what pins it, what to read back.
#include "proxy/session/session_state.h"

#include <algorithm>
#include <cctype>

#include "protocol/builder.h"
#include "routing/session_sql.h"

namespace pgswitch::proxy {

namespace {

std::string lower(std::string_view s) {
  std::string r(s);
  for (auto& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

// Sets name's value in s (names compared as stored: lower case for everything pgswitch
// adds; the startup packet's own spelling for the rest).
void put(Settings& s, const std::string& name, std::string_view value) {
  bool found = false;
  for (auto& [k, v] : s) {
    if (k == name) {
      v = std::string(value);
      found = true;
    }
  }
  if (!found) s.emplace_back(name, std::string(value));
}

}  // namespace

void SessionState::startShared(std::shared_ptr<const Settings> startup) {
  settings_.reset();
  if (startup && !startup->empty()) settings_ = std::move(startup);
  startup_ = settings_;
  hash_ = 0;
}

const Settings& SessionState::settings() const {
  static const Settings kNone;
  return settings_ ? *settings_ : kNone;
}

Settings& SessionState::settingsForWrite() {
  if (!settings_ || settings_.use_count() > 1)
    settings_ = settings_ ? std::make_shared<Settings>(*settings_)
                          : std::make_shared<Settings>();
  return const_cast<Settings&>(*settings_);  // ours alone: made just now, or not shared
}

std::string_view SessionState::setting(std::string_view lowerName) const {
  std::string_view value;  // the last one wins, as when they are applied in order
  for (auto& [k, v] : settings())
    if (k == lowerName) value = v;
  return value;
}

uint64_t SessionState::settingsHash() const {
  if (hash_ != 0) return hash_;
  uint64_t h = 1469598103934665603ull;  // FNV-1a over name=value pairs, in order
  for (auto& [k, v] : settings()) {
    for (char c : k)
      h = (h ^ static_cast<unsigned char>(std::tolower(static_cast<unsigned char>(c)))) *
          1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (char c : v) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    h = (h ^ 0xfe) * 1099511628211ull;
  }
  hash_ = h == 0 ? 1 : h;
  return hash_;
}

SessionState::Pins& SessionState::pins() {
  if (!pins_) pins_ = std::make_unique<Pins>();
  return *pins_;
}

const std::string& SessionState::pinReason() const {
  static const std::string kNone;
  return pins_ ? pins_->reason : kNone;
}

void SessionState::pin(std::string_view reason) {
  if (!lasting_) {
    lasting_ = true;
    pins().lastingReason = std::string(reason);
    pins().readback.clear();  // the settings stay where they are: nothing to carry
  }
  pinRebuildable(reason);
}

void SessionState::pinRebuildable(std::string_view reason) {
  if (pinned_) return;
  pinned_ = true;
  pins().reason = std::string(reason);
}

SessionJournal& SessionState::journal() {
  if (!journal_) journal_ = std::make_unique<SessionJournal>();
  return *journal_;
}

const SessionJournal& SessionState::journal() const {
  static const SessionJournal kEmpty;  // never written: what a journal is before first use
  return journal_ ? *journal_ : kEmpty;
}

std::string SessionState::unmovableReason() const {
  if (lasting_) return pins_->lastingReason;
  return journal().whyIncomplete();
}

void SessionState::linked() {
  if (pinOnLink_) pin(pinOnLink_);
  pinOnLink_ = nullptr;
}

// Transaction-scoped SETs end with their transaction (the SET count at ReadyForQuery leaves
// them out); temporary tables, session advisory locks and WITH HOLD cursors outlive it.
void SessionState::noteStatement(const routing::Classification& c, std::string_view sql,
                                 const ServerParams& reported, bool carrySets) {
  bool txnScoped =
      c.kind == routing::StatementKind::LocalSet ||
      (c.kind == routing::StatementKind::SetTxnReadOnly && c.setName == "transaction_read_only");
  if (txnScoped || routing::isHarmlessSessionSet(c, sql)) {
    ++scoped_;
  } else if (carrySets && c.kind == routing::StatementKind::SessionSet && !c.multiStatement &&
             carryable(c.setName, reported)) {
    // Read back after the transaction and carried to other servers like a reported setting.
    // Only SET tags are counted at ReadyForQuery, so a RESET is not counted here.
    if (!routing::startsWithReset(sql)) ++carried_;
    std::vector<std::string>& due = pins().readback;
    if (std::find(due.begin(), due.end(), c.setName) == due.end()) due.push_back(c.setName);
  }
  if (c.createsTempTable) pin("temporary table");
  if (c.sessionAdvisoryLock) pin("session advisory lock");
  if (c.withHoldCursor) pin("WITH HOLD cursor");
  if (c.changesFunctions) functionsChanged_ = true;
}

SessionState::TagEffect SessionState::onCommandTag(protocol::CommandTag tag,
                                                   bool transactionPooling) {
  using protocol::CommandTag;
  switch (tag) {
    case CommandTag::Set:
      ++setTags_;
      return TagEffect::None;
    case CommandTag::DiscardAll:
      journal().discardAll();
      if (!transactionPooling) return TagEffect::ForgetServerStatements;
      // As on PostgreSQL: back to the startup packet's settings; everything SET since is gone.
      settings_ = startup_;
      hash_ = 0;
      if (pins_) pins_->readback.clear();
      return TagEffect::ForgetAllStatements;
    case CommandTag::DeallocateAll:
      journal().deallocateAll();
      return transactionPooling ? TagEffect::ForgetAllStatements
                                : TagEffect::ForgetServerStatements;
    case CommandTag::Prepare:  // the journal rebuilds it after a failover
      pinRebuildable("SQL-level PREPARE");
      journal().confirm("a PREPARE");
      return TagEffect::None;
    case CommandTag::Listen:
      pinRebuildable("LISTEN");
      journal().confirm("a LISTEN");
      return TagEffect::None;
    case CommandTag::Other:
      return TagEffect::None;
  }
  return TagEffect::None;
}

bool SessionState::onParameterStatus(std::string_view name, std::string_view value) {
  tell(std::string(name), value);
  if (name == "in_hot_standby") return false;  // a property of the server, not the session
  std::string key = lower(name);
  // Unchanged (a server confirming what the client already has): the copy stays shared.
  bool same = false;
  for (auto& [k, v] : settings())
    if (k == key) same = v == value;
  if (!same) put(settingsForWrite(), key, value);
  hash_ = 0;
  ++reported_;
  return key == "application_name";
}

void SessionState::onReadyForQuery() {
  if (setTags_ > reported_ + scoped_ + carried_) {
    // The setting lives only on this server, so the client stays on it.
    pin("SET of a parameter PostgreSQL does not report");
  }
  setTags_ = reported_ = scoped_ = carried_ = 0;
}

void SessionState::onReadback(bool ok, std::string_view value) {
  std::vector<std::string>& due = pins_->readback;
  std::string name = std::move(due.front());
  due.erase(due.begin());
  if (!ok) {
    pin("SET of " + name + " (its value could not be read back)");
    return;
  }
  // Stored under the lower-case name, replacing the client's own spelling of it, if any.
  bool found = false;
  for (auto& [k, v] : settingsForWrite()) {
    if (lower(k) == name) {
      v = std::string(value);
      found = true;
    }
  }
  if (!found) settingsForWrite().emplace_back(name, std::string(value));
  hash_ = 0;
}

void SessionState::readbackLost() {
  if (!readbackDue()) return;
  pin("SET whose value was lost with its server");
}

bool SessionState::carryable(std::string_view name, const ServerParams& reported) const {
  if (name.empty() || name == "all" || name == "role" || name == "session_authorization" ||
      name == "session authorization")
    return false;
  for (auto& [k, v] : reported)  // reported ones follow through ParameterStatus
    if (lower(k) == name) return false;
  return routing::validSettingName(name);
}

bool SessionState::configureSql(std::map<std::string, std::string>& applied,
                                const ServerParams& reported, std::string& sql,
                                std::string& badName) const {
  std::map<std::string, std::string> wanted;
  for (auto& [k, v] : settings()) wanted[lower(k)] = v;
  for (auto& [name, value] : wanted) {
    if (!routing::validSettingName(name)) {  // before `applied` changes: nothing is sent
      badName = name;
      return false;
    }
  }
  for (auto& [name, value] : wanted) {
    auto a = applied.find(name);
    if (a != applied.end() && a->second == value) continue;
    if (a == applied.end()) {
      // Reported parameters (client_encoding, DateStyle, ...) tell us the current value.
      bool same = false;
      for (auto& [pk, pv] : reported)
        if (lower(pk) == name && pv == value) same = true;
      if (same) continue;
    }
    routing::appendSetConfig(sql, name, value);
    applied[name] = value;
  }
  for (auto it = applied.begin(); it != applied.end();) {
    if (!wanted.count(it->first)) {
      routing::appendReset(sql, it->first);
      it = applied.erase(it);
    } else {
      ++it;
    }
  }
  return true;
}

ServerParams& SessionState::toldForWrite() {
  if (!told_) {
    told_ = std::make_shared<ServerParams>();
  } else if (told_.use_count() > 1) {
    told_ = std::make_shared<ServerParams>(*told_);  // others were told the same: ours now
  }
  return *told_;
}

void SessionState::tell(const std::string& name, std::string_view value) {
  if (told_) {
    auto it = told_->find(name);
    if (it != told_->end() && it->second == value) return;  // shared copies stay shared
  }
  toldForWrite()[name] = std::string(value);
  toldDigest_ = toldDigest(*told_);
}

void SessionState::appendAllParams(SharedParams reported, std::string& out) {
  for (auto& [k, v] : *reported) protocol::appendParameterStatus(out, k, v);
  toldDigest_ = toldDigest(*reported);
  told_ = std::move(reported);
}

void SessionState::appendChangedParams(uint64_t serverId, uint64_t generation,
                                       uint64_t digest, const ServerParams& reported,
                                       std::string& out) {
  // This server and generation were compared last, or the client was told exactly these
  // values (the digests agree): nothing differs.
  if (serverId == toldServer_ && generation == toldGeneration_) return;
  toldServer_ = serverId;
  toldGeneration_ = generation;
  if (told_ && digest == toldDigest_) return;
  for (auto& [k, v] : reported) {
    if (k == "in_hot_standby") continue;
    if (told_) {
      auto it = told_->find(k);
      if (it != told_->end() && it->second == v) continue;
    }
    protocol::appendParameterStatus(out, k, v);
    tell(k, v);
  }
}

}  // namespace pgswitch::proxy
