// How many times the worker threads (the forwarding path) allocated from the heap since
// start: operator new from pgswitch's own code (C libraries' malloc is not counted; nor are
// the health, catalog and lookup threads). SHOW TOTALS shows it so that a benchmark or a test
// can check that forwarding allocates nothing per message in the steady state (issue 14).
// The counting operator new lives in the pgswitch executable only (proxy/count_new.cc);
// elsewhere, and in sanitizer builds, nothing counts.
#pragma once

#include <atomic>
#include <cstdint>

namespace pgswitch::proxy {

extern std::atomic<uint64_t> gWorkerAllocations;
extern thread_local bool tCountAllocations;  // set by each worker thread for itself

}  // namespace pgswitch::proxy
