// Process-wide totals: one list, shown by SHOW TOTALS and exported by /metrics, so a counter
// is named and explained in one place.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "proxy/core/stats.h"

namespace pgswitch::proxy {

struct Total {
  std::string_view name;    // SHOW TOTALS row
  std::string_view metric;  // Prometheus name
  bool counter;             // false: a gauge
  std::string_view help;
  uint64_t value;
};

std::vector<Total> totals(const Snapshot& snap);

}  // namespace pgswitch::proxy
