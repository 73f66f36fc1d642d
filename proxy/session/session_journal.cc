// Following LISTEN/UNLISTEN, PREPARE/DEALLOCATE and named Parse/Close, in order.
#include "proxy/session/session_journal.h"

#include <algorithm>

#include "routing/session_sql.h"

namespace pgswitch::proxy {

void SessionJournal::statement(std::string_view sql) {
  bool unsure = false;
  routing::SessionObject o = routing::sessionObject(sql, unsure);
  using K = routing::SessionObject::Kind;
  switch (o.kind) {
    case K::None:
      if (unsure) incomplete("a LISTEN, PREPARE or DEALLOCATE pgswitch could not read");
      return;
    case K::Listen:
      ++unconfirmed_;
      drop(Entry::Kind::Listen, o.name);
      add({Entry::Kind::Listen, o.name, std::string(sql)});
      return;
    case K::Unlisten:
      drop(Entry::Kind::Listen, o.name);
      return;
    case K::UnlistenAll:
      entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                    [](const Entry& e) { return e.kind == Entry::Kind::Listen; }),
                     entries_.end());
      recount();
      return;
    case K::Prepare:
      ++unconfirmed_;
      // PostgreSQL refuses a name in use (42P05): the first one stays.
      for (const Entry& e : entries_)
        if (e.kind != Entry::Kind::Listen && e.name == o.name) return;
      add({Entry::Kind::Prepare, o.name, std::string(sql)});
      return;
    case K::Deallocate:
      dropStatement(o.name);
      return;
    case K::DeallocateAll:
      deallocateAll();
      return;
  }
}

void SessionJournal::parse(std::string_view name, std::span<const std::byte> message) {
  for (const Entry& e : entries_)
    if (e.kind != Entry::Kind::Listen && e.name == name) return;  // 42P05 on the server
  add({Entry::Kind::Parse, std::string(name),
       std::string(reinterpret_cast<const char*>(message.data()), message.size())});
}

void SessionJournal::confirm(std::string_view what) {
  if (unconfirmed_ > 0) {
    --unconfirmed_;
    return;
  }
  incomplete(std::string(what) + " that pgswitch could not read");
}

void SessionJournal::closeStatement(std::string_view name) { dropStatement(name); }

void SessionJournal::discardAll() {
  entries_.clear();
  bytes_ = 0;
}

void SessionJournal::deallocateAll() {
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                [](const Entry& e) { return e.kind != Entry::Kind::Listen; }),
                 entries_.end());
  recount();
}

bool SessionJournal::listens() const {
  return std::any_of(entries_.begin(), entries_.end(),
                     [](const Entry& e) { return e.kind == Entry::Kind::Listen; });
}

void SessionJournal::drop(Entry::Kind kind, std::string_view name) {
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                [&](const Entry& e) { return e.kind == kind && e.name == name; }),
                 entries_.end());
  recount();
}

void SessionJournal::recount() {
  bytes_ = 0;
  for (const Entry& e : entries_) bytes_ += e.bytes.size();
}

void SessionJournal::dropStatement(std::string_view name) {
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                [&](const Entry& e) {
                                  return e.kind != Entry::Kind::Listen && e.name == name;
                                }),
                 entries_.end());
  recount();
}

void SessionJournal::add(Entry e) {
  bytes_ += e.bytes.size();
  if (bytes_ > kLimit) {
    incomplete("more than 1 MiB of prepared statements and LISTENs");
    return;
  }
  entries_.push_back(std::move(e));
}

void SessionJournal::incomplete(std::string why) {
  if (incomplete_.empty()) incomplete_ = std::move(why);
}

}  // namespace pgswitch::proxy
