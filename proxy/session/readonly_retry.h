// ReadOnlyRetry: the safety net for a lone autocommit read that writes after all (a user's
// function called as SELECT my_fn()). Armed while such a read runs on a replica; it holds the
// RowDescription PostgreSQL sends before executing (and an extended batch's ParseComplete,
// BindComplete, ParameterDescription and NoData), and when the replica answers 25006 (read-
// only transaction) before anything else reached the client, it says the request must be run
// again on the primary: the error and its ReadyForQuery are never forwarded. A 40001 from the
// replica (its replay cancelled the read: "conflict with recovery") is taken back the same
// way. Pure: fed the messages the relay would forward, it says what to do with each.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace pgswitch::proxy {

class ReadOnlyRetry {
 public:
  // Held messages beyond this are forwarded (and the net given up): holding is a copy.
  static constexpr size_t kHoldLimit = 8 * 1024;

  enum class Step {
    Forward,  // forward it as usual (the net is off)
    Hold,     // keep it (hold()), do not forward
    Release,  // send held() to the client first, then forward this one; the net is now off
    Retry,    // drop it and what is held: the request goes to the primary; the net is off
  };

  void arm() {
    state_ = State::Armed;
    rowDescHeld_ = heldAny_ = false;
    held_.clear();
  }
  void disarm() {
    state_ = State::Off;
    rowDescHeld_ = heldAny_ = false;
    held_.clear();
  }
  bool active() const { return state_ != State::Off; }
  bool armed() const { return state_ == State::Armed && !heldAny_; }
  // After Retry: the replica's error was 40001 (conflict with recovery), not 25006.
  bool recoveryConflict() const { return recoveryConflict_; }

  // A whole-or-partial server message the relay would forward: its type, whether it arrived
  // whole, its length with header, the SQLSTATE of an ErrorResponse (else empty), the status
  // of a ReadyForQuery, and whether, at a ReadyForQuery, nothing else is owed or half-sent
  // (the request can be taken back whole).
  Step onMessage(char type, bool complete, size_t total, std::string_view sqlstate,
                 char readyStatus, bool requestAlone);
  // Keeps a message the last onMessage() said to Hold.
  void hold(std::span<const std::byte> msg) {
    held_.append(reinterpret_cast<const char*>(msg.data()), msg.size());
  }
  const std::string& held() const { return held_; }
  // Off: what held() grew to goes back (a client quiet for a while; issue 14).
  void shrink() {
    if (state_ == State::Off) std::string().swap(held_);
  }

 private:
  enum class State {
    Off,
    Armed,   // nothing forwarded yet (a RowDescription may be held)
    Failed,  // the replica said 25006: the error is held, its ReadyForQuery decides
  };
  Step release();
  State state_ = State::Off;
  bool rowDescHeld_ = false;
  bool heldAny_ = false;  // something is held (what the client has not seen yet)
  bool recoveryConflict_ = false;
  std::string held_;
};

}  // namespace pgswitch::proxy
