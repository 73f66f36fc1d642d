// Listener: the process's listening socket, on worker 0 (Worker::listen says why only there).
// SO_REUSEPORT lets a second pgswitch instance bind the same port for a restart.
//
// It accepts by hand (accept4 on a uv_poll) instead of through uv_listen because libuv's
// accept loop cannot be paused: when the process runs out of descriptors it retries
// accept4 forever inside one callback once its single reserve descriptor has been taken by
// another thread, and the loop never gets back to its timers or signals. Here, EMFILE or
// ENFILE turns away the waiting connections with PostgreSQL's "too many clients" error
// (through a reserve descriptor of this listener), pauses accepting for kPauseMs while the
// existing clients go on being served, and is logged once per kLogEveryMs.
// On a worker with a Ring the same listener accepts through one multishot accept in the ring
// instead of the uv_poll (useRing): no epoll wake-up and no accept4 that finds nothing, per
// login; the errors and the pause are the same.
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace pgswitch::proxy {

class Ring;

// Process-wide accept counters, shared by every worker's listener.
struct AcceptCounters {
  std::atomic<uint64_t> fdExhausted{0};  // accept4 failed with EMFILE/ENFILE
  std::atomic<uint64_t> turnedAway{0};   // connections closed with "too many clients"
};

// Answers fd with FATAL 53300 "sorry, too many clients already" and closes it (also used
// for sockets over max_login_clients).
void refuseConnection(int fd, AcceptCounters& counters);
// Sends `errorResponse` (whole wire messages) without waiting and closes fd.
void refuseWith(int fd, std::string_view errorResponse);
// The client's IP address as text ("127.0.0.1", "::1"); "?" when the socket has none.
std::string peerHost(int fd);

class Listener {
 public:
  // Called for every accepted socket (non-blocking, close-on-exec): the callee owns fd.
  using OnAccept = void (*)(void* ctx, int fd);

  Listener(uv_loop_t* loop, AcceptCounters& counters, OnAccept onAccept, void* ctx);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener();

  // Binds and listens (throws std::runtime_error on failure). deferAcceptS > 0: a connection
  // is accepted only once its first bytes are in, or after that many seconds
  // (TCP_DEFER_ACCEPT): PostgreSQL clients speak first, so accept and read become one wake-up.
  void open(const std::string& host, int port, int deferAcceptS = 0);
  // Stops accepting and closes the socket; the handles close on the loop's next turn.
  void close();
  bool open() const { return fd_ >= 0; }
  int boundPort() const;
  bool paused() const { return paused_; }
  // From now on (ring non-null) accept through the worker's ring; call on the worker's thread.
  void useRing(Ring* ring);
  // A completion of the ring's multishot accept: a new socket or an error.
  void onRingAccept(int res, uint32_t flags) noexcept;

  static constexpr uint64_t kPauseMs = 250;
  static constexpr uint64_t kLogEveryMs = 10000;
  // Accepted per wake-up on epoll: the loop returns to its other work between batches (the
  // ring's multishot accept hands over what one turn's completions hold, at most the backlog).
  static constexpr int kBatch = 64;

 private:
  static void onReadable(uv_poll_t* p, int status, int events);
  static void onResume(uv_timer_t* t);
  void acceptBatch();
  // accept4's error e (the ring's too): true when accepting can go on at once.
  bool acceptFailed(int e);
  void outOfDescriptors(int err);
  bool turnAwayOne();
  void pause();
  void armRing();

  uv_loop_t* loop_;
  AcceptCounters& counters_;
  OnAccept onAccept_;
  void* ctx_;
  int fd_ = -1;
  int reserveFd_ = -1;  // given up for a moment to accept and refuse one connection
  uv_poll_t poll_;
  uv_timer_t resume_;
  bool handlesInit_ = false;
  bool paused_ = false;
  Ring* ring_ = nullptr;
  bool ringArmed_ = false;  // the multishot accept is in the ring (until its last completion)
  int closeAfterAccept_ = -1;  // closed: the descriptor, until the accept's last completion
  uint64_t lastLogMs_ = 0;
  uint64_t failuresSinceLog_ = 0;
};

}  // namespace pgswitch::proxy
