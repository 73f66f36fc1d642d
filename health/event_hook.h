// Runs the configured on_event command for health events: `/bin/sh -c CMD` spawned with
// uv_spawn on the health loop (never waited for synchronously), the event in PGSWITCH_*
// environment variables. Bounded: a few children at a time, a short queue, the rest dropped.
#pragma once

#include <uv.h>

#include <deque>
#include <string>

#include "health/events.h"

namespace pgswitch::health {

class EventHookRunner {
 public:
  static constexpr size_t kMaxRunning = 4;
  static constexpr size_t kMaxQueued = 64;

  EventHookRunner(uv_loop_t* loop, std::string command);
  ~EventHookRunner();  // close() must have run and the loop must have run its close callbacks
  EventHookRunner(const EventHookRunner&) = delete;
  EventHookRunner& operator=(const EventHookRunner&) = delete;

  bool enabled() const { return !command_.empty(); }
  void run(const Event& e);
  // Stops watching running children (they are left to finish on their own) and drops the
  // queue.
  void close();
  size_t running() const { return running_; }
  uint64_t dropped() const { return dropped_; }

 private:
  struct Child;
  void spawn(const Event& e);
  void childGone(Child* c);

  uv_loop_t* loop_;
  std::string command_;
  std::deque<Event> queue_;
  Child* children_ = nullptr;  // intrusive list of running children
  size_t running_ = 0;
  uint64_t dropped_ = 0;
  bool closed_ = false;
};

}  // namespace pgswitch::health
