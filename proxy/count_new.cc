// The counting global operator new of the pgswitch executable (proxy/core/heap_counter.h):
// the replaceable allocation functions, each a thread-local test (and on worker threads a
// relaxed increment) and then malloc, which the default operator delete frees. Not in sanitizer builds: their runtime replaces these
// functions itself to check every allocation.
#include <cstdlib>
#include <new>

#include "proxy/core/heap_counter.h"

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)

namespace {

void* counted(std::size_t n) noexcept {
  if (pgswitch::proxy::tCountAllocations)
    pgswitch::proxy::gWorkerAllocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}

void* countedAligned(std::size_t n, std::align_val_t a) noexcept {
  if (pgswitch::proxy::tCountAllocations)
    pgswitch::proxy::gWorkerAllocations.fetch_add(1, std::memory_order_relaxed);
  std::size_t align = static_cast<std::size_t>(a);
  if (align < sizeof(void*)) align = sizeof(void*);
  std::size_t size = (n + align - 1) / align * align;  // aligned_alloc wants a multiple
  return std::aligned_alloc(align, size == 0 ? align : size);
}

void* orThrow(void* p) {
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(std::size_t n) { return orThrow(counted(n)); }
void* operator new[](std::size_t n) { return orThrow(counted(n)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted(n); }
void* operator new(std::size_t n, std::align_val_t a) { return orThrow(countedAligned(n, a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return orThrow(countedAligned(n, a)); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return countedAligned(n, a);
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return countedAligned(n, a);
}

#endif
