// The classification cache: set-associative, 8 ways per set, CLOCK replacement within a set.
// Keyed by the XXH3_64bits hash and the length of the text; values are whole Classifications
// (which own their strings), so a hit is a hash, one cache-line scan and a copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "routing/classifier.h"

namespace pgswitch::routing {

class ClassifyCache {
 public:
  static constexpr size_t kWays = 8;

  // Holds at most `capacity` entries (rounded down to ways x a power of two of sets; at least 1).
  explicit ClassifyCache(size_t capacity);

  // The cached entry or nullptr; a hit marks the entry recently used. The pointer is valid until
  // the next insert().
  const Classification* find(uint64_t hash, uint64_t length);
  void insert(uint64_t hash, uint64_t length, const Classification& c);

  size_t capacity() const { return entries_.size(); }
  size_t size() const { return size_; }

 private:
  struct Set {
    uint64_t hashes[kWays] = {};
    uint64_t lengths[kWays] = {};
    uint8_t used = 0;  // bit per way
    uint8_t ref = 0;   // CLOCK reference bit per way
    uint8_t hand = 0;
  };

  size_t ways_;
  size_t setMask_;
  std::vector<Set> sets_;
  std::vector<Classification> entries_;  // set s, way w at s * ways_ + w
  size_t size_ = 0;
};

}  // namespace pgswitch::routing
