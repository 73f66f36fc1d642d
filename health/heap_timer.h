// A libuv timer whose owner may be destroyed before the loop runs the handle's close
// callback: the handle lives on the heap and frees itself there. One owner, one handle.
#pragma once

#include <uv.h>

#include <cstdint>

namespace pgswitch::health {

class HeapTimer {
 public:
  HeapTimer(uv_loop_t* loop, void* data) : t_(new uv_timer_t) {
    uv_timer_init(loop, t_);
    t_->data = data;
  }
  HeapTimer(const HeapTimer&) = delete;
  HeapTimer& operator=(const HeapTimer&) = delete;
  ~HeapTimer() { close(); }

  void start(uv_timer_cb cb, uint64_t timeoutMs, uint64_t repeatMs = 0) {
    if (t_) uv_timer_start(t_, cb, timeoutMs, repeatMs);
  }
  void stop() {
    if (t_) uv_timer_stop(t_);
  }
  // Stops it and hands the handle to the loop, which frees it. Idempotent.
  void close() {
    if (!t_) return;
    uv_timer_stop(t_);
    uv_close(reinterpret_cast<uv_handle_t*>(t_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    t_ = nullptr;
  }

 private:
  uv_timer_t* t_;
};

}  // namespace pgswitch::health
