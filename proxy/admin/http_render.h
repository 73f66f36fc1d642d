// What the HTTP endpoint serves, as pure functions of a Snapshot: Prometheus metrics (text
// exposition format 0.0.4), the /status JSON document and the self-contained status page.
#pragma once

#include <string>
#include <string_view>

#include "proxy/core/stats.h"

namespace pgswitch::proxy {

// GET /metrics, Content-Type "text/plain; version=0.0.4; charset=utf-8".
std::string renderMetrics(const Snapshot& snap);

// GET /status, Content-Type "application/json". The document is described in docs/console.md.
std::string renderStatusJson(const Snapshot& snap);

// GET /, Content-Type "text/html; charset=utf-8": polls /status every second.
std::string_view statusPageHtml();

// Escaping, exposed for tests. Invalid UTF-8 (client-supplied user, database and application
// names are arbitrary bytes) becomes U+FFFD, since both formats require UTF-8.
std::string escapeLabelValue(std::string_view v);             // Prometheus: \ " and newline
void appendJsonString(std::string& out, std::string_view v);  // with the quotes

}  // namespace pgswitch::proxy
