// CLOCK within a set: a hit sets the way's reference bit; an insert into a full set sweeps the
// hand past referenced ways (clearing their bits) and replaces the first unreferenced one.
#include "routing/classify_cache.h"

#include <bit>
#include <memory>
#include <new>

namespace pgswitch::routing {

ClassifyCache::ClassifyCache(size_t capacity) {
  if (capacity == 0) capacity = 1;
  ways_ = capacity < kWays ? capacity : kWays;
  const size_t sets = std::bit_floor(capacity / ways_);
  setMask_ = sets - 1;
  capacity_ = sets * ways_;
  sets_.reset(static_cast<Set*>(std::calloc(sets, sizeof(Set))));
  entries_.reset(static_cast<Classification*>(std::calloc(capacity_, sizeof(Classification))));
  if (!sets_ || !entries_) throw std::bad_alloc();
}

ClassifyCache::~ClassifyCache() {
  if (!sets_ || !entries_) return;
  for (size_t si = 0; si <= setMask_; ++si) {
    for (size_t w = 0; w < ways_; ++w) {
      if (sets_[si].used >> w & 1u) std::destroy_at(entry(si, w));
    }
  }
}

const Classification* ClassifyCache::find(uint64_t hash, uint64_t length) {
  Set& s = sets_[hash & setMask_];
  for (size_t w = 0; w < ways_; ++w) {
    if (s.hashes[w] == hash && s.lengths[w] == length && (s.used >> w & 1u)) {
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
      ++size_;
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
  if (s.used >> way & 1u) {
    *entry(si, way) = c;
  } else {
    std::construct_at(entry(si, way), c);
    s.used = static_cast<uint8_t>(s.used | (1u << way));
  }
  s.hashes[way] = hash;
  s.lengths[way] = length;
  s.ref = static_cast<uint8_t>(s.ref & ~(1u << way));
}

}  // namespace pgswitch::routing
