// The replay log and its free list, the taps, and the digest comparison.
#include "proxy/session/txn_replay.h"

#define XXH_STATIC_LINKING_ONLY  // XXH64_state_t by value: no allocation per log
#include <xxhash.h>

#include <algorithm>

namespace pgswitch::proxy {

namespace {

// Past this many client-bound bytes a transaction is not replayed: its answer would have to be
// produced and hashed again in full before the client saw anything new.
constexpr uint64_t kMaxOutBytes = 16u << 20;

}  // namespace

struct TxnReplay::Log {
  std::vector<std::byte> in;
  XXH64_state_t hash{};
  uint64_t outBytes = 0;
  void reset() {
    in.clear();
    XXH64_reset(&hash, 0);
    outBytes = 0;
  }
};

namespace {

// Logs are lent to sessions while they record and come back when they stop: as many exist
// as sessions of this worker record at once, and none is allocated in the steady state.
std::vector<std::unique_ptr<TxnReplay::Log>>& freeLogs() {
  thread_local std::vector<std::unique_ptr<TxnReplay::Log>> logs;
  return logs;
}

// Puts `front` before what `in` holds (the taps are detached: nothing is recorded).
void prepend(protocol::ByteQueue& in, std::span<const std::byte> front) {
  thread_local std::vector<std::byte> rest;
  rest.resize(in.size());
  in.copyOut(0, rest);
  in.clear();
  in.append(front);
  in.append(rest);
}

}  // namespace

TxnReplay::~TxnReplay() { giveBack(); }

TxnReplay::Log& TxnReplay::log() {
  if (!log_) {
    auto& logs = freeLogs();
    if (logs.empty()) {
      log_ = new Log;
    } else {
      log_ = logs.back().release();
      logs.pop_back();
    }
    log_->reset();
  }
  return *log_;
}

void TxnReplay::giveBack() {
  if (!log_) return;
  freeLogs().emplace_back(log_);
  log_ = nullptr;
}

void TxnReplay::start() {
  if (!enabled()) return;
  recording_ = true;
  if (replaying()) return;  // the log was emptied by replay(); it fills again as it runs
  spoiled_ = Spoiled::No;
  startsWithBegin_ = false;
  if (log_) log_->reset();
}

void TxnReplay::restart() {
  if (verifying()) return;  // diverged on the way: the verdict says so
  startsWithBegin_ = false;
  expect_.reset();
  verdict_ = Verdict::Pending;
  attempts_ = 0;
  spoiled_ = Spoiled::No;
  giveBack();
}

void TxnReplay::stop() {
  recording_ = false;
  startsWithBegin_ = false;
  spoiled_ = Spoiled::No;
  expect_.reset();
  verdict_ = Verdict::Pending;
  attempts_ = 0;
  giveBack();
}

void TxnReplay::replay(protocol::ByteQueue& in) {
  Log& l = log();
  expect_ = Expect{l.outBytes, XXH64_digest(&l.hash)};
  prepend(in, l.in);
  inputLeft_ = l.in.size();
  l.reset();
  recording_ = false;  // until the next server is configured
  verified_ = 0;
  verdict_ = expect_->bytes == 0 ? Verdict::Match : Verdict::Pending;
  ++attempts_;  // since the transaction began: a server that dies at the same point each
                // time is not given the same transaction forever
}

void TxnReplay::again(protocol::ByteQueue& in) {
  Log& l = log();
  prepend(in, l.in);
  inputLeft_ += l.in.size();
  l.reset();
  recording_ = false;
  verified_ = 0;
  verdict_ = expect_->bytes == 0 ? Verdict::Match : Verdict::Pending;
  ++attempts_;
}

void TxnReplay::finish(protocol::ByteQueue& in) {
  if (!replaying()) return;
  if (verdict_ != Verdict::Match) {
    in.consume(std::min(inputLeft_, in.size()));
    if (log_) log_->reset();
    spoiled_ = Spoiled::Diverged;
  }
  expect_.reset();
  verdict_ = Verdict::Pending;
}

void TxnReplay::spoil(Spoiled why) {
  if (spoiled_ == Spoiled::No) spoiled_ = why;
  if (log_) log_->in.clear();
}

void TxnReplay::consumed(std::span<const std::byte> bytes) {
  if (!recording_) return;
  if (verifying()) inputLeft_ -= std::min(inputLeft_, bytes.size());
  if (spoiled_ != Spoiled::No) return;
  Log& l = log();
  if (l.in.size() + bytes.size() > limit_) {
    spoil(Spoiled::TooLarge);
    return;
  }
  l.in.insert(l.in.end(), bytes.begin(), bytes.end());
}

void TxnReplay::hashOut(std::span<const std::byte> bytes) {
  if (bytes.empty() || spoiled_ != Spoiled::No) return;
  Log& l = log();
  l.outBytes += bytes.size();
  if (l.outBytes > kMaxOutBytes && !verifying()) {
    spoil(Spoiled::TooLarge);
    return;
  }
  XXH64_update(&l.hash, bytes.data(), bytes.size());
}

size_t TxnReplay::pushing(std::span<const std::byte> bytes) {
  if (!recording_) return 0;
  size_t drop = 0;
  if (verifying()) {
    size_t take = static_cast<size_t>(std::min<uint64_t>(bytes.size(), expect_->bytes - verified_));
    hashOut(bytes.first(take));
    verified_ += take;
    if (verified_ == expect_->bytes)
      verdict_ = digest() == expect_->digest ? Verdict::Match : Verdict::Mismatch;
    // Nothing of a replay that diverged reaches the client.
    if (verdict_ == Verdict::Mismatch) return bytes.size();
    drop = take;
    bytes = bytes.subspan(take);
  } else if (replaying() && verdict_ == Verdict::Mismatch) {
    return bytes.size();
  }
  hashOut(bytes);
  return drop;
}

uint64_t TxnReplay::digest() const {
  return log_ ? XXH64_digest(&log_->hash) : XXH64(nullptr, 0, 0);
}

uint64_t TxnReplay::outBytes() const { return log_ ? log_->outBytes : 0; }

size_t TxnReplay::inBytes() const { return log_ ? log_->in.size() : 0; }

}  // namespace pgswitch::proxy
