// The classification cache: set-associative, 8 ways per set, CLOCK replacement within a set.
// Keyed by the XXH3_64bits hash and the length of the text; values are whole Classifications
// (which own their strings), so a hit is a hash, one cache-line scan and a copy.
//
// Its memory (about 2.5 MiB at the default 16,384 entries) is an anonymous mapping of its own:
// the kernel's zero pages, touched only as entries on them are first used, so building a
// worker's cache costs no zero-fill on its first query (about 15 ms at this size), and an idle
// or lightly used worker does not hold all of it. (Not calloc: once glibc's dynamic mmap
// threshold has risen past this size, as freeing a previous cache makes it, calloc zero-fills
// heap memory.) An entry is constructed at its way's first insert (its `used` bit) and
// destroyed with the cache.
#pragma once

#include <cstddef>
#include <cstdint>

#include "routing/classifier.h"

namespace pgswitch::routing {

class ClassifyCache {
 public:
  static constexpr size_t kWays = 8;

  // Holds at most `capacity` entries (rounded down to ways x a power of two of sets; at least 1).
  explicit ClassifyCache(size_t capacity);
  ~ClassifyCache();
  ClassifyCache(const ClassifyCache&) = delete;
  ClassifyCache& operator=(const ClassifyCache&) = delete;

  // The cached entry or nullptr; a hit marks the entry recently used. The pointer is valid until
  // the next insert().
  const Classification* find(uint64_t hash, uint64_t length);
  void insert(uint64_t hash, uint64_t length, const Classification& c);

  size_t capacity() const { return capacity_; }
  size_t size() const { return size_; }

 private:
  // All zero is its empty state: calloc's memory is a valid array of them.
  struct Set {
    uint64_t hashes[kWays];
    uint64_t lengths[kWays];
    uint8_t used;   // bit per way: the entry is constructed
    uint8_t valid;  // bit per way: the entry holds what hashes/lengths name (used, not mid-copy)
    uint8_t ref;    // CLOCK reference bit per way
    uint8_t hand;
  };
  Classification* entry(size_t set, size_t way) { return entries_ + set * ways_ + way; }

  size_t ways_;
  size_t setMask_;
  size_t capacity_;
  void* mapping_ = nullptr;  // the sets, then the entries' storage
  size_t mappingBytes_ = 0;
  Set* sets_ = nullptr;
  Classification* entries_ = nullptr;  // set s, way w at s * ways_ + w
  size_t size_ = 0;
};

}  // namespace pgswitch::routing
