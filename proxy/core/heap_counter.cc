#include "proxy/core/heap_counter.h"

namespace pgswitch::proxy {

std::atomic<uint64_t> gWorkerAllocations{0};
thread_local bool tCountAllocations = false;

}  // namespace pgswitch::proxy
