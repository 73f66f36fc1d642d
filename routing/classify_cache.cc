// CLOCK within a set: a hit sets the way's reference bit; an insert into a full set sweeps the
// hand past referenced ways (clearing their bits) and replaces the first unreferenced one.
#include "routing/classify_cache.h"

#include <sys/mman.h>

#include <bit>
#include <cstddef>
#include <memory>
#include <new>

namespace pgswitch::routing {

ClassifyCache::ClassifyCache(size_t capacity) {
  if (capacity == 0) capacity = 1;
  ways_ = capacity < kWays ? capacity : kWays;
  const size_t sets = std::bit_floor(capacity / ways_);
  setMask_ = sets - 1;
  capacity_ = sets * ways_;
  constexpr size_t kAlign = alignof(Classification);
  const size_t setBytes = (sets * sizeof(Set) + kAlign - 1) / kAlign * kAlign;
  mappingBytes_ = setBytes + capacity_ * sizeof(Classification);
  mapping_ = mmap(nullptr, mappingBytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                  -1, 0);
  if (mapping_ == MAP_FAILED) throw std::bad_alloc();
  sets_ = static_cast<Set*>(mapping_);  // zero bytes: every set empty
  entries_ = reinterpret_cast<Classification*>(static_cast<std::byte*>(mapping_) + setBytes);
}

ClassifyCache::~ClassifyCache() {
  for (size_t si = 0; si <= setMask_; ++si) {
    for (size_t w = 0; w < ways_; ++w) {
      if (sets_[si].used >> w & 1u) std::destroy_at(entry(si, w));
    }
  }
  munmap(mapping_, mappingBytes_);
}

const Classification* ClassifyCache::find(uint64_t hash, uint64_t length) {
  Set& s = sets_[hash & setMask_];
  for (size_t w = 0; w < ways_; ++w) {
    if (s.hashes[w] == hash && s.lengths[w] == length && (s.valid >> w & 1u)) {
      s.ref = static_cast<uint8_t>(s.ref | (1u << w));
      return entry(hash & setMask_, w);
    }
  }
  return nullptr;
}

void ClassifyCache::insert(uint64_t hash, uint64_t length, const Classification& c) {
  const size_t si = hash & setMask_;
  Set& s = sets_[si];
  size_t way = ways_;
  for (size_t w = 0; w < ways_; ++w) {
    if (!(s.used >> w & 1u)) {
      way = w;
      break;
    }
  }
  if (way == ways_) {
    while (s.ref >> s.hand & 1u) {
      s.ref = static_cast<uint8_t>(s.ref & ~(1u << s.hand));
      s.hand = static_cast<uint8_t>((s.hand + 1) % ways_);
    }
    way = s.hand;
    s.hand = static_cast<uint8_t>((s.hand + 1) % ways_);
  }
  // A copy that throws (bad_alloc, caught by the classifier) leaves the way invalid, never
  // a half-copied entry under a hash.
  const auto bit = static_cast<uint8_t>(1u << way);
  s.valid = static_cast<uint8_t>(s.valid & ~bit);
  if (s.used & bit) {
    *entry(si, way) = c;
  } else {
    std::construct_at(entry(si, way), c);
    s.used = static_cast<uint8_t>(s.used | bit);
    ++size_;
  }
  s.hashes[way] = hash;
  s.lengths[way] = length;
  s.valid = static_cast<uint8_t>(s.valid | bit);
  s.ref = static_cast<uint8_t>(s.ref & ~bit);
}

}  // namespace pgswitch::routing
