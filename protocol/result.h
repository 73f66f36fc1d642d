// Result<T, E>: a value or a typed error, for code paths that must not throw (C++20 has no
// std::expected). Errors are values on the data path (CONVENTIONS 8).
#pragma once

#include <utility>
#include <variant>

namespace pgswitch {

// A constructor rather than an aggregate: `Err("text")` would otherwise rely on
// parenthesized aggregate initialization, which clang supports only from version 16.
template <class E>
struct Err {
  constexpr Err(E e) : error(std::move(e)) {}
  E error;
};
template <class E>
Err(E) -> Err<E>;

template <class T, class E>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  template <class E2>
  Result(Err<E2> e) : v_(std::in_place_index<1>, E(std::move(e.error))) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  const T& operator*() const& { return std::get<0>(v_); }
  const E& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, E> v_;
};

}  // namespace pgswitch
