// ReplayWatcher: how far each replica has replayed, fresher than the health period, asked
// only while reads wait for it (consistency "strong" and "read_your_writes", docs/routing.md).
//
// A read that must see an LSN its replica is not known to have replayed does not ask the
// replica itself: it waits in its worker and calls want() (a commit that moves the floor does
// too, so that the answer is on its way before the reads come). The watcher asks that replica
// on its own connection for its replay position as soon as it has replayed the newest LSN
// wanted (routing::replayWaitQuery: the wait runs on the server, in 1 ms steps, up to
// kWaitMs), and again while some wanted LSN is beyond the last answer; every answer goes to
// `Learned`, which shares it with all workers (they wake their waiting reads). One question
// thus serves every read waiting for that replica, and none is asked while the replicas are
// known to be far enough.
//
// Its own thread and libuv loop, one persistent libpq connection per backend it is given
// (PgProbe with kReplayQuery; the controller gives none with consistency = "eventual"), made
// at once, since a login takes longer than a read may wait. A replica the watcher cannot reach
// is simply never learned: its waiting reads go to the primary after max_wait_ms.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace pgswitch::health {

class ReplayWatcher {
 public:
  // Called on the watcher's thread with every answer. Must be quick.
  using Learned = std::function<void(int backend, uint64_t replayLsn)>;

  static constexpr int kSlots = 256;      // backend slots watched (as ReplayPositions)
  static constexpr uint64_t kWaitMs = 20;  // longest wait of one question on the server
  static constexpr int kRetryMs = 200;    // after a failed question
  static constexpr int kTimeoutMs = 2000;  // connect and query

  explicit ReplayWatcher(Learned learned);
  ~ReplayWatcher();  // stop()
  ReplayWatcher(const ReplayWatcher&) = delete;
  ReplayWatcher& operator=(const ReplayWatcher&) = delete;

  void start();
  void stop();  // closes every connection, joins the thread; want() is ignored afterwards

  // Thread-safe. The libpq connection string of each backend slot ("" = never asked). A slot
  // whose string changed is reconnected.
  void setBackends(std::vector<std::string> conninfos);
  // Thread-safe and cheap (a few atomics when the LSN is already wanted): a read waits, until
  // `untilMs` (nowMs()'s clock), for `backend` to have replayed `lsn`.
  void want(int backend, uint64_t lsn, uint64_t untilMs);
  // The clock of untilMs: milliseconds of uv_hrtime() (libuv's uv_now() counts the same).
  static uint64_t nowMs();
  // Thread-safe: the slot holds another server now (or none); its last answer says nothing.
  void forget(int backend);
  uint64_t questions() const { return questions_.load(std::memory_order_relaxed); }

 private:
  class Loop;
  Learned learned_;
  std::atomic<uint64_t> wanted_[kSlots] = {};
  std::atomic<uint64_t> wantedUntil_[kSlots] = {};
  std::atomic<uint64_t> answered_[kSlots] = {};  // the last answer (0: none that counts)
  std::atomic<bool> asking_[kSlots] = {};        // a question or its retry timer runs
  std::atomic<uint64_t> questions_{0};
  std::mutex mu_;  // guards loop_ against stop() (want() signals the loop under it)
  std::unique_ptr<Loop> loop_;
  bool stopped_ = false;
  std::thread thread_;
};

}  // namespace pgswitch::health
