// Protocol-level prepared statements across pooled server connections (transaction mode).
// A client's statement names are its own; on servers every statement is named after a hash
// of its text and parameter types, so any client can reuse what any other prepared there.
// ClientStatements: what one client has prepared. ServerStatementCache: what one server
// connection has, bounded (LRU) by max_prepared_statements. StaleStatements: statements
// whose result type changed, to be prepared again on every server.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "proxy/core/fifo_vector.h"

namespace pgswitch::proxy {

// A statement's result shape (resultShape) and when this worker learned it, from the answer
// to a Describe. PostgreSQL answers a Describe of a statement whose columns changed since it
// was prepared with 0A000, so an answer is the shape at the moment it was given; `learned`
// orders such moments (StaleStatements::nextLearned). shape 0: not known.
struct KnownShape {
  uint64_t shape = 0;
  uint64_t learned = 0;
};

struct ClientStatement {
  uint64_t hash = 0;
  std::string parseTail;  // the Parse body after the name: query\0 int16 n, n × int32 OID
  // The result shape the client was told by a Describe of the statement (none until then). A
  // server copy of another shape, learned later (DDL changed the result since), must not run
  // it: PostgreSQL would answer 0A000, and a driver that caches the columns would read rows
  // of another shape.
  KnownShape shape;
};

uint64_t statementHash(std::span<const std::byte> parseTail);

// A RowDescription as far as a prepared statement is held to it: PostgreSQL refuses to run or
// describe a statement whose result columns changed since it was prepared (0A000 "cached plan
// must not change result type"). The columns' names, type OIDs and type modifiers, folded into
// one number; not their source columns or format codes (a Describe of a portal fills the
// latter in). Never 0, which callers keep for "unknown"; NoData is kNoRowsShape. Nothing for
// a malformed body.
inline constexpr uint64_t kNoRowsShape = 1;
std::optional<uint64_t> resultShape(std::span<const std::byte> rowDescriptionBody);
// "pgsw_" + 16 hex digits: fits NAMEDATALEN and cannot collide with a client's unnamed "".
std::string serverStatementName(uint64_t hash);

class ClientStatements {
 public:
  const ClientStatement* find(std::string_view name) const;
  void put(std::string_view name, ClientStatement s) {
    books().map[std::string(name)] = std::move(s);
  }
  void erase(std::string_view name) {
    if (books_) books_->map.erase(std::string(name));
  }
  void clear() {
    if (!books_) return;
    books_->map.clear();
    books_->closed.clear();
  }
  size_t size() const { return books_ ? books_->map.size() : 0; }
  // A Describe of `name` answered with `shape`, if the name still stands for statement h.
  void setShape(std::string_view name, uint64_t h, KnownShape shape);

  // A Close the server has not confirmed yet. PostgreSQL skips a Close that follows an error
  // in the same batch, so the name is kept aside (oldest first) until the Close is answered
  // (forgetOldestClose) or turns out skipped (undoLastClose, newest first).
  void close(std::string_view name);
  void forgetOldestClose();
  void undoLastClose();
  // Drops closes nobody will answer any more (e.g. their server connection was lost).
  void clearCloses() {
    if (books_) books_->closed.clear();
  }

 private:
  // Transparent hash: lookups by string_view (names point into the client's buffer) do not
  // allocate a std::string per Bind/Describe.
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  struct Books {
    std::unordered_map<std::string, ClientStatement, NameHash, std::equal_to<>> map;
    FifoVector<std::pair<std::string, std::optional<ClientStatement>>> closed;
  };
  Books& books();  // made by the first named statement or Close
  // Null until then: most clients never name a statement (issue 14: 88 bytes per client).
  // Kept once made (cleared, not freed), so a client that does allocates nothing per request.
  std::unique_ptr<Books> books_;
};

// Statements PostgreSQL declared unusable. When DDL changes the result type of a prepared
// statement (ALTER TABLE under SELECT *), every server that prepared it earlier answers its
// Bind with 0A000 "cached plan must not change result type" until it is prepared again; and
// since servers share statements by text, a client that prepares it anew would get the old
// copy. One per worker: the epoch at which each hash went stale. A server's copy prepared
// before then is closed and prepared again before its next use. Bounded: when it is full it
// is forgotten wholesale, and a stale copy then reports 0A000 once more and is marked again.
class StaleStatements {
 public:
  uint64_t epoch() const { return epoch_; }
  void markStale(uint64_t h);
  // Whether a copy of h prepared at `preparedAt` (an epoch(); 0 = unknown) predates h going
  // stale.
  bool isStale(uint64_t h, uint64_t preparedAt) const;
  size_t size() const { return since_.size(); }
  // Orders the moments result shapes are learned at (KnownShape::learned).
  uint64_t nextLearned() { return ++learned_; }

 private:
  static constexpr size_t kMax = 4096;
  uint64_t epoch_ = 1;
  uint64_t learned_ = 0;
  std::unordered_map<uint64_t, uint64_t> since_;
};

class ServerStatementCache {
 public:
  bool contains(uint64_t h) const { return index_.count(h) != 0; }
  void touch(uint64_t h);
  // Adds h, prepared at `epoch` (StaleStatements::epoch()); returns the hash evicted to make
  // room, if any (the caller closes it on the server).
  std::optional<uint64_t> add(uint64_t h, size_t capacity, uint64_t epoch = 0);
  // The epoch h was prepared at on this server (0 if unknown or absent).
  uint64_t preparedAt(uint64_t h) const;
  // The result shape of this server's copy of h, once a Describe of it was answered (none
  // until then). A copy's shape never changes: PostgreSQL answers 0A000 instead.
  KnownShape shape(uint64_t h) const;
  void setShape(uint64_t h, KnownShape shape);
  void erase(uint64_t h);
  // Puts back h, which the server still has (its eviction Close was skipped after an
  // error), as the least recently used entry, without evicting anything. Its epoch is
  // unknown (0): if h is stale, it is closed and prepared again before its next use.
  void restore(uint64_t h);
  void clear() {
    lru_.clear();
    index_.clear();
  }
  size_t size() const { return index_.size(); }

 private:
  struct Entry {
    std::list<uint64_t>::iterator pos;
    uint64_t preparedAt = 0;
    KnownShape shape;
  };
  std::list<uint64_t> lru_;  // front = most recently used
  std::unordered_map<uint64_t, Entry> index_;
};

}  // namespace pgswitch::proxy
