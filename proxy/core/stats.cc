// Histogram and counter arithmetic.
#include "proxy/core/stats.h"

#include <algorithm>
#include <bit>

namespace pgswitch::proxy {

void LatencyHistogram::add(uint64_t us) {
  int b = us == 0 ? 0 : std::bit_width(us) - 1;
  if (b >= kBuckets) b = kBuckets - 1;
  ++buckets[b];
  ++count;
  sumUs += us;
}

void LatencyHistogram::merge(const LatencyHistogram& o) {
  for (int i = 0; i < kBuckets; ++i) buckets[i] += o.buckets[i];
  count += o.count;
  sumUs += o.sumUs;
}

uint64_t LatencyHistogram::percentileUs(double p) const {
  if (count == 0) return 0;
  uint64_t target = static_cast<uint64_t>(p * static_cast<double>(count));
  if (target >= count) target = count - 1;
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += buckets[i];
    if (seen > target) return (uint64_t{1} << (i + 1)) - 1;
  }
  return uint64_t{1} << kBuckets;
}

void BackendCounters::merge(const BackendCounters& o) {
  transactions += o.transactions;
  queries += o.queries;
  reads += o.reads;
  writes += o.writes;
  bytesIn += o.bytesIn;
  bytesOut += o.bytesOut;
  latency.merge(o.latency);
}

std::vector<std::string> Snapshot::backendNames() const {
  std::vector<std::string> names;
  if (topology) {
    for (const auto& b : topology->backends) names.push_back(b.name);
  } else if (config) {
    for (const auto& b : config->backends) names.push_back(b.name);
  }
  for (size_t i = names.size(); i < perBackend.size(); ++i)
    names.push_back("#" + std::to_string(i));
  return names;
}

const BackendCounters& Snapshot::counters(size_t i) const {
  static const BackendCounters kNone{};
  return i < perBackend.size() ? perBackend[i] : kNone;
}

uint64_t Snapshot::serversOf(std::string_view backend) const {
  return static_cast<uint64_t>(std::count_if(
      servers.begin(), servers.end(), [&](const ServerInfo& s) { return s.backend == backend; }));
}

}  // namespace pgswitch::proxy
