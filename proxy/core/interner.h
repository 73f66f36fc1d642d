// Interner<T>: one immutable copy of each distinct value on a worker, shared by every client
// that holds an equal one (issue 14: what a fleet's clients say and are told is nearly always
// the same few values, and a copy per client was most of an idle client's memory). Forgets
// the copies no client holds any more. Single-threaded (one worker's).
#pragma once

#include <xxhash.h>

#include <cstdint>
#include <memory>
#include <string_view>
#include <unordered_map>

namespace pgswitch::proxy {

// A key for a list of (name, value) strings, in order (XXH3, 64 bits); the name `skip` is left
// out. What the interners of settings and ParameterStatus sets hash by.
template <class Pairs>
uint64_t hashPairs(const Pairs& pairs, std::string_view skip = {}) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (const auto& [k, v] : pairs) {
    if (!skip.empty() && k == skip) continue;
    h = XXH3_64bits_withSeed(k.data(), k.size(), h);
    h = XXH3_64bits_withSeed(v.data(), v.size(), h ^ 0x5bd1e995ull);
  }
  return h;
}

// Hash: uint64_t(const T&). Equal values must hash equal; equal hashes are compared in full.
template <class T, auto Hash>
class Interner {
 public:
  // The worker's copy of `v`, made on first use; the same object for equal values. A holder
  // never writes it while anyone else holds it (use_count() > 1): it copies first.
  std::shared_ptr<T> intern(const T& v) {
    const uint64_t h = Hash(v);
    auto [first, last] = table_.equal_range(h);
    for (auto it = first; it != last; ++it)
      if (*it->second == v) return it->second;
    auto copy = std::make_shared<T>(v);
    table_.emplace(h, copy);
    return copy;
  }
  // Drops copies only the interner holds (the worker's janitor, once a second).
  void sweep() {
    for (auto it = table_.begin(); it != table_.end();)
      it = it->second.use_count() == 1 ? table_.erase(it) : std::next(it);
  }
  size_t size() const { return table_.size(); }

 private:
  std::unordered_multimap<uint64_t, std::shared_ptr<T>> table_;
};

}  // namespace pgswitch::proxy
