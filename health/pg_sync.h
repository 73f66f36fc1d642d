// SyncConn: one libpq connection used synchronously by the failover runner's helper thread,
// never by the health loop. Every call has a hard deadline and gives up when the shared
// cancel flag is set (shutdown), so joining the helper thread is always bounded.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct pg_conn;

namespace pgswitch::health {

class SyncConn {
 public:
  using Clock = std::chrono::steady_clock;

  struct Result {
    bool ok = false;
    std::string error;
    std::vector<std::vector<std::optional<std::string>>> rows;  // of the last result set
    // Row r, column c as text; nullopt when NULL or absent.
    std::optional<std::string> at(size_t r = 0, size_t c = 0) const;
  };

  explicit SyncConn(const std::atomic<bool>& cancel) : cancel_(cancel) {}
  ~SyncConn();
  SyncConn(const SyncConn&) = delete;
  SyncConn& operator=(const SyncConn&) = delete;

  // Connects (non-blocking libpq, polled) before the deadline. On failure error() says why.
  bool connect(const std::string& conninfo, Clock::time_point deadline);
  bool connected() const { return conn_ != nullptr; }
  // Runs one simple-protocol query string. The connection is dropped on timeout, cancel or a
  // broken connection.
  Result exec(const std::string& sql, Clock::time_point deadline);
  // The same with text parameters $1, $2, ... (extended protocol: values never enter the SQL).
  Result exec(const std::string& sql, const std::vector<std::string>& params,
              Clock::time_point deadline);
  // A SQL string literal for `v` (PQescapeLiteral); empty when not connected.
  std::string literal(std::string_view v);
  const std::string& error() const { return error_; }
  void close();

 private:
  // Waits until the socket is ready; false on deadline, cancel or poll error (error_ set).
  bool wait(bool forWrite, Clock::time_point deadline);
  bool fail(std::string why);
  // After a query was sent: flushes it and reads every result before the deadline.
  Result finish(Clock::time_point deadline);

  const std::atomic<bool>& cancel_;
  pg_conn* conn_ = nullptr;
  std::string error_;
};

}  // namespace pgswitch::health
