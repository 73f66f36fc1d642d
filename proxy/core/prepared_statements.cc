// Statement and result-shape hashing (xxHash, Debian libxxhash), the LRU bookkeeping and stale
// statements.
#include "proxy/core/prepared_statements.h"

#include <xxhash.h>

#include <cstdio>
#include <iterator>

#include "protocol/messages.h"

namespace pgswitch::proxy {

uint64_t statementHash(std::span<const std::byte> parseTail) {
  return XXH3_64bits(parseTail.data(), parseTail.size());
}

std::optional<uint64_t> resultShape(std::span<const std::byte> rowDescriptionBody) {
  protocol::RowFields fields(rowDescriptionBody);
  const int16_t n = fields.count();
  uint64_t h = XXH3_64bits(&n, sizeof(n));
  protocol::RowField f;
  while (fields.next(f)) {
    const int32_t typeAndMod[2] = {f.typeOid, f.typmod};
    h = XXH3_64bits_withSeed(f.name.data(), f.name.size(), h);
    h = XXH3_64bits_withSeed(typeAndMod, sizeof(typeAndMod), h);
  }
  if (fields.error()) return std::nullopt;
  return h <= kNoRowsShape ? h + 2 : h;  // 0 and kNoRowsShape are taken
}

std::string serverStatementName(uint64_t hash) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "pgsw_%016llx", static_cast<unsigned long long>(hash));
  return buf;
}

ClientStatements::Books& ClientStatements::books() {
  if (!books_) books_ = std::make_unique<Books>();
  return *books_;
}

const ClientStatement* ClientStatements::find(std::string_view name) const {
  if (!books_) return nullptr;
  auto it = books_->map.find(name);
  return it == books_->map.end() ? nullptr : &it->second;
}

void ClientStatements::setShape(std::string_view name, uint64_t h, KnownShape shape) {
  if (!books_) return;
  auto it = books_->map.find(name);
  if (it != books_->map.end() && it->second.hash == h) it->second.shape = shape;
}

void ClientStatements::close(std::string_view name) {
  Books& b = books();
  auto it = b.map.find(name);
  if (it == b.map.end()) {
    b.closed.emplace_back(std::string(name), std::nullopt);
    return;
  }
  b.closed.emplace_back(it->first, std::move(it->second));
  b.map.erase(it);
}

void ClientStatements::forgetOldestClose() {
  if (books_ && !books_->closed.empty()) books_->closed.pop_front();
}

void ClientStatements::undoLastClose() {
  if (!books_ || books_->closed.empty()) return;
  auto& [name, stmt] = books_->closed.back();
  if (stmt) books_->map[name] = std::move(*stmt);
  books_->closed.pop_back();
}

void StaleStatements::markStale(uint64_t h) {
  if (since_.size() >= kMax) since_.clear();
  since_[h] = ++epoch_;
}

bool StaleStatements::isStale(uint64_t h, uint64_t preparedAt) const {
  if (since_.empty()) return false;
  auto it = since_.find(h);
  return it != since_.end() && preparedAt < it->second;
}

void ServerStatementCache::touch(uint64_t h) {
  auto it = index_.find(h);
  if (it != index_.end()) lru_.splice(lru_.begin(), lru_, it->second.pos);
}

std::optional<uint64_t> ServerStatementCache::add(uint64_t h, size_t capacity, uint64_t epoch) {
  if (contains(h)) {
    touch(h);
    return std::nullopt;
  }
  std::optional<uint64_t> evicted;
  if (capacity > 0 && index_.size() >= capacity) {
    evicted = lru_.back();
    index_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(h);
  index_[h] = Entry{lru_.begin(), epoch, {}};
  return evicted;
}

uint64_t ServerStatementCache::preparedAt(uint64_t h) const {
  auto it = index_.find(h);
  return it == index_.end() ? 0 : it->second.preparedAt;
}

KnownShape ServerStatementCache::shape(uint64_t h) const {
  auto it = index_.find(h);
  return it == index_.end() ? KnownShape{} : it->second.shape;
}

void ServerStatementCache::setShape(uint64_t h, KnownShape shape) {
  auto it = index_.find(h);
  if (it != index_.end()) it->second.shape = shape;
}

void ServerStatementCache::restore(uint64_t h) {
  if (contains(h)) return;
  lru_.push_back(h);
  index_[h] = Entry{std::prev(lru_.end()), 0, {}};
}

void ServerStatementCache::erase(uint64_t h) {
  auto it = index_.find(h);
  if (it == index_.end()) return;
  lru_.erase(it->second.pos);
  index_.erase(it);
}

}  // namespace pgswitch::proxy
