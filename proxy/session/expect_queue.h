// ExpectQueue: the responses a server still owes its client, one entry per request sent,
// in order. It tells when a server connection is idle (nothing owed, so it can go back to
// the pool) and where responses that pgswitch itself must add (ParseComplete for a
// statement the server already had) or swallow (for statements pgswitch prepared on its
// own) belong in the stream.
#pragma once

#include <cstdint>
#include <deque>
#include <string>

namespace pgswitch::proxy {

struct Expect {
  enum class Kind : uint8_t {
    Query,         // simple Query: ends with ReadyForQuery
    FunctionCall,  // ends with ReadyForQuery
    Sync,          // ends with ReadyForQuery
    Parse,         // ParseComplete forwarded
    FakeParse,     // pgswitch sends ParseComplete itself (statement already on the server)
    HiddenParse,   // pgswitch's own Parse: its ParseComplete is swallowed
    Bind,
    Describe,      // ends with RowDescription or NoData
    Execute,       // ends with CommandComplete, EmptyQueryResponse or PortalSuspended
    Close,
    FakeClose,     // pgswitch sends CloseComplete itself (statement kept for others)
    HiddenClose,   // pgswitch's own Close (LRU eviction): swallowed
  };
  Expect(Kind k, uint64_t h = 0, std::string name = {})
      : kind(k), hash(h), clientName(std::move(name)) {}
  Kind kind;
  uint64_t hash = 0;       // named statement of Parse/HiddenParse/Bind/Describe/HiddenClose
  std::string clientName;  // Parse: the client's name, forgotten if the Parse fails
};

using ExpectQueue = std::deque<Expect>;

}  // namespace pgswitch::proxy
