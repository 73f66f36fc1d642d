// CLOCK within a set: a hit sets the way's reference bit; an insert into a full set sweeps the
// hand past referenced ways (clearing their bits) and replaces the first unreferenced one.
#include "routing/classify_cache.h"

#include <bit>

namespace pgswitch::routing {

ClassifyCache::ClassifyCache(size_t capacity) {
  if (capacity == 0) capacity = 1;
  ways_ = capacity < kWays ? capacity : kWays;
  const size_t sets = std::bit_floor(capacity / ways_);
  setMask_ = sets - 1;
  sets_.resize(sets);
  entries_.resize(sets * ways_);
}

const Classification* ClassifyCache::find(uint64_t hash, uint64_t length) {
  Set& s = sets_[hash & setMask_];
  for (size_t w = 0; w < ways_; ++w) {
    if (s.hashes[w] == hash && s.lengths[w] == length && (s.used >> w & 1u)) {
      s.ref = static_cast<uint8_t>(s.ref | (1u << w));
      return &entries_[(hash & setMask_) * ways_ + w];
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
  s.hashes[way] = hash;
  s.lengths[way] = length;
  s.used = static_cast<uint8_t>(s.used | (1u << way));
  s.ref = static_cast<uint8_t>(s.ref & ~(1u << way));
  entries_[si * ways_ + way] = c;
}

}  // namespace pgswitch::routing
