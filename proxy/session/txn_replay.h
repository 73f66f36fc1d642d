// TxnReplay: what it takes to run a transaction again on another server after its server was
// lost (docs/failover.md, "Transaction replay"). Recording, it keeps a copy of every client
// byte the relay consumed since the server was last idle and a running xxHash64 of every byte
// queued for the client since then; it sees them through the two buffer taps the relay
// attaches while linked (ByteQueue::setConsumeTap on the client's input, SliceQueue::setPushTap
// on its output), whichever path forwarded, rewrote or answered them. Replaying, the copy is
// put back in front of the client's input; the first bytes then queued for the client are
// hashed and dropped instead of sent, and once there are as many as the client had already
// got, the digests decide: equal, the client goes on as if nothing happened; different (now(),
// random(), rows changed meanwhile, a commit lost with asynchronous replication), the replay
// is refused. Pure: no I/O; the session decides when.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "protocol/buffer.h"

namespace pgswitch::proxy {

class TxnReplay final : public protocol::ConsumeTap, public protocol::PushTap {
 public:
  // limit: the most client bytes kept (failover.replay_buffer_bytes); 0: never recorded.
  explicit TxnReplay(size_t limit) : limit_(limit) {}
  ~TxnReplay();
  TxnReplay(const TxnReplay&) = delete;
  TxnReplay& operator=(const TxnReplay&) = delete;

  bool enabled() const { return limit_ > 0; }

  // Recording, from a request start on an idle server (the taps are attached now).
  void start();
  // The server is idle again and nothing is owed: what came before can no longer be needed.
  void restart();
  // Not linked any more (released): the log goes back to the worker's free list.
  void stop();
  bool recording() const { return recording_; }
  // Why what was recorded since the server was last idle cannot be replayed.
  enum class Spoiled {
    No,
    TooLarge,         // over the limit (client bytes, or 16 MiB of answer)
    StatementNames,   // it defined or closed a named prepared statement (the client's names
                      // would not mean the same the second time)
    Diverged,         // a replay of it was refused: what follows is not from its start
    SeveralStatements,  // a Query with several statements: one may have been a COMMIT
    CommitSent,         // a COMMIT (END, PREPARE TRANSACTION) went to the server
    Pipelined,          // a transaction ended while more requests were in flight behind it
  };
  Spoiled spoiled() const { return spoiled_; }
  void spoil(Spoiled why);
  // The first statement sent since the server was idle, when it is a lone BEGIN: lost before
  // its answer, the server was still outside a transaction, yet nothing can have committed.
  void firstStatement(bool loneBegin) { startsWithBegin_ = loneBegin; }
  bool startsWithBegin() const { return startsWithBegin_; }

  // The server was lost. Puts the recorded client bytes back in front of `in` and expects the
  // replay's first client-bound bytes to equal what the client already got. The taps must be
  // detached until the next server is linked and configured (start()).
  void replay(protocol::ByteQueue& in);
  bool replaying() const { return expect_.has_value(); }
  // Replayed client bytes not consumed again yet: the relay sends nothing beyond them while
  // the replay is being verified.
  size_t inputLeft() const { return replaying() ? inputLeft_ : SIZE_MAX; }
  bool holdsInput() const { return verifying() && inputLeft_ == 0; }
  enum class Verdict { Pending, Match, Mismatch };
  // Pending until as many bytes as the client had got were produced again.
  Verdict verdict() const { return verdict_; }
  bool verifying() const { return replaying() && verdict_ == Verdict::Pending; }
  // The replay is over (matched and carried on, or given up): a Match goes back to plain
  // recording; otherwise the replayed bytes still unread are dropped from the front of `in`
  // (they were the client's, already answered with the error it gets instead).
  void finish(protocol::ByteQueue& in);
  // Lost again while verifying: the bytes consumed since replay() are put back (the verdict
  // is still owed against the original answer). Counts the attempt.
  void again(protocol::ByteQueue& in);
  // Replays (and their repetitions) since the transaction began (restart(), stop()).
  int attempts() const { return attempts_; }

  // The taps.
  void consumed(std::span<const std::byte> bytes) override;
  size_t pushing(std::span<const std::byte> bytes) override;

  // For tests: the digest and count of the client-bound bytes recorded so far.
  uint64_t digest() const;
  uint64_t outBytes() const;
  size_t inBytes() const;

  struct Log;  // the recorded bytes and digest (txn_replay.cc)

 private:
  struct Expect {
    uint64_t bytes = 0;
    uint64_t digest = 0;
  };
  Log& log();  // taken from the worker thread's free list when first needed
  void giveBack();
  void hashOut(std::span<const std::byte> bytes);

  const size_t limit_;
  Log* log_ = nullptr;
  bool recording_ = false;
  Spoiled spoiled_ = Spoiled::No;
  bool startsWithBegin_ = false;
  std::optional<Expect> expect_;
  uint64_t verified_ = 0;  // client-bound bytes hashed (and dropped) while verifying
  size_t inputLeft_ = 0;
  Verdict verdict_ = Verdict::Pending;
  int attempts_ = 0;
};

}  // namespace pgswitch::proxy
