// EtcdCoordination: on the health thread's loop, agrees with the other pgswitch instances
// through etcd (v3 JSON gateway, via HttpClient): keeps a lease, tries to hold
// <prefix>/leader with it, reads <prefix>/decision every period and hands decisions written
// by another instance to its host; the leader writes its own with a compare on the leader key.
// Only the leader whose lease was renewed less than a TTL ago may promote (blocker()).
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "health/etcd_protocol.h"
#include "health/events.h"
#include "health/heap_timer.h"
#include "health/http_client.h"
#include "health/settings.h"

namespace pgswitch::health {

class EtcdCoordination {
 public:
  class Host {
   public:
    virtual ~Host() = default;
    virtual void report(Event e) = 0;
    // A decision another instance wrote since this one started (health thread).
    virtual void onDecision(const etcd::Decision& d) = 0;
  };

  EtcdCoordination(uv_loop_t* loop, CoordinationSettings settings, Host& host);
  ~EtcdCoordination();
  EtcdCoordination(const EtcdCoordination&) = delete;
  EtcdCoordination& operator=(const EtcdCoordination&) = delete;

  void start();  // the first round at once, then one every periodMs
  void close();  // timer and HTTP client; the lease expires by itself after its TTL

  // "" when this instance may promote now; otherwise why not ("coordination: ...").
  std::string blocker() const;
  bool leader() const { return leader_; }
  const std::string& name() const { return s_.name; }
  // The newest decision known here (written by any instance), if any.
  const std::optional<etcd::Decision>& lastDecision() const { return last_; }
  // Writes d (seq and by filled in) while this instance still holds the leader key. Retried
  // each round while it stays the leader; dropped (logged) once it is not.
  void writeDecision(etcd::Decision d);

 private:
  using Answer = std::function<void(std::optional<std::string> body, const std::string& why)>;
  static void onTimer(uv_timer_t* t) noexcept;
  void round();
  void keepLease();
  void campaign();
  void readDecision();
  void endRound(bool ok, const std::string& why);
  void sendPending();
  void setLeader(bool on, const std::string& detail);
  void call(etcd::Call c, Answer done, size_t attempt = 0);
  Event event(EventType t, std::string detail) const;
  uint64_t now() const { return uv_now(loop_); }

  uv_loop_t* loop_;
  CoordinationSettings s_;
  Host& host_;
  std::string leaderKey_, decisionKey_;
  std::unique_ptr<HttpClient> http_;
  HeapTimer timer_;
  size_t cur_ = 0;     // the endpoint that answered last: tried first
  bool closed_ = false;
  bool busy_ = false;  // a round is running

  int64_t lease_ = 0;
  uint64_t renewedAt_ = 0;  // uv_now() when the last successful grant/keep-alive was sent
  bool leader_ = false;
  std::string holder_;  // who holds the leader key, as last read
  bool unreachable_ = false;
  std::string lastError_;
  bool haveBaseline_ = false;
  int64_t seenRevision_ = 0;  // decisions at or below it are not news
  uint64_t lastSeq_ = 0;
  std::optional<etcd::Decision> last_;
  std::optional<etcd::Decision> pending_;  // to write while leader
  bool writing_ = false;
};

}  // namespace pgswitch::health
