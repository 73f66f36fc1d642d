// PAUSE/RESUME state shared by every worker: which databases (or all) hold new requests.
// Read on every server request, so the common case (nothing paused) is one relaxed atomic
// load; the set itself is only touched under its mutex while something is paused.
#pragma once

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

namespace pgswitch::proxy {

class PauseState {
 public:
  // Is a new request for database db to be held?
  bool paused(std::string_view db) const {
    if (!any_.load(std::memory_order_relaxed)) return false;
    std::lock_guard g(mu_);
    return all_ || dbs_.count(std::string(db)) != 0;
  }
  bool any() const { return any_.load(std::memory_order_relaxed); }

  // db "" = every database. Pausing what is paused already is not an error.
  void pause(std::string_view db) {
    std::lock_guard g(mu_);
    if (db.empty()) {
      all_ = true;
    } else {
      dbs_.insert(std::string(db));
    }
    any_.store(true);
  }

  // Returns "" or why nothing was resumed.
  std::string resume(std::string_view db) {
    std::lock_guard g(mu_);
    if (db.empty()) {
      if (!all_ && dbs_.empty()) return "nothing is paused";
      all_ = false;
      dbs_.clear();
    } else if (all_) {
      return "every database is paused: RESUME without a name resumes them";
    } else if (dbs_.erase(std::string(db)) == 0) {
      return "database \"" + std::string(db) + "\" is not paused";
    }
    any_.store(all_ || !dbs_.empty());
    return "";
  }

 private:
  mutable std::mutex mu_;
  std::atomic<bool> any_{false};
  bool all_ = false;
  std::set<std::string> dbs_;
};

}  // namespace pgswitch::proxy
