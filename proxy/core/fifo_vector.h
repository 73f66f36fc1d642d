// FifoVector: a first-in first-out queue in one vector with a moving head. Unlike std::deque
// (libstdc++ allocates ~600 bytes on construction, even empty) it holds no memory until the
// first push, and steady push/pop reuses the same block. For the per-connection queues that
// are empty most of the time (issue 14: memory per idle client).
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

namespace pgswitch::proxy {

template <class T>
class FifoVector {
 public:
  using iterator = typename std::vector<T>::iterator;
  using const_iterator = typename std::vector<T>::const_iterator;

  bool empty() const { return head_ == items_.size(); }
  size_t size() const { return items_.size() - head_; }

  template <class... Args>
  T& emplace_back(Args&&... args) {
    if (empty()) {
      items_.clear();  // keeps the capacity
      head_ = 0;
    }
    return items_.emplace_back(std::forward<Args>(args)...);
  }
  void push_back(T v) { emplace_back(std::move(v)); }

  T& front() { return items_[head_]; }
  const T& front() const { return items_[head_]; }
  T& back() { return items_.back(); }
  const T& back() const { return items_.back(); }
  T& operator[](size_t i) { return items_[head_ + i]; }
  const T& operator[](size_t i) const { return items_[head_ + i]; }

  void pop_front() { erase_front(1); }
  void pop_back() {
    items_.pop_back();
    if (empty()) clear();
  }
  // Drops the first n (at most size()).
  void erase_front(size_t n) {
    head_ += std::min(n, size());  // popped items are destroyed when the vector is reused
    if (empty()) {
      clear();
    } else if (head_ > 32 && head_ * 2 > items_.size()) {
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  // Drops the i-th (i < size()); rare, so it shifts the rest.
  void erase(size_t i) {
    items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(head_ + i));
    if (empty()) clear();
  }
  void clear() {
    items_.clear();
    head_ = 0;
  }
  // An empty queue gives its block back (a connection idle for a while).
  void shrink() {
    if (empty()) {
      std::vector<T>().swap(items_);
      head_ = 0;
    }
  }

  iterator begin() { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  iterator end() { return items_.end(); }
  const_iterator begin() const { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  const_iterator end() const { return items_.end(); }

 private:
  std::vector<T> items_;
  size_t head_ = 0;
};

}  // namespace pgswitch::proxy
