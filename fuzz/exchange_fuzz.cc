// The pure parts of the transaction-mode relay: client messages through StatementMap
// (Parse/Bind/Describe/Close renamed to pgsw_<hash>, prepared lazily, answered locally) and
// ServerExchange (what the server owes), then server responses in any order, as relay.cc
// drives them. A server that answers out of turn is dropped (Desync) and the books reset.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "protocol/buffer.h"
#include "protocol/messages.h"
#include "proxy/session/server_exchange.h"
#include "proxy/session/statement_map.h"

using namespace pgswitch;
using namespace pgswitch::proxy;

namespace {

constexpr const char* kStates[] = {"42601", "0A000", "26000", "25P02", "57014", "XX000"};

void checkBooks(const ServerExchange& x) {
  if (x.idle()) FUZZ_CHECK(x.quiet() && !x.owesReadyForQuery() && !x.discarding());
  FUZZ_CHECK(x.quiet() == !x.owed());
  if (x.quiet()) FUZZ_CHECK(x.pending() == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  protocol::ChunkPool pool(4);
  protocol::ByteQueue in(pool);
  std::string toServer, toClient;
  ServerStatementCache cache;
  StaleStatements stale;
  ServerExchange exchange;
  StatementMap map;
  std::vector<std::byte> scratch;
  StatementTarget target{toServer, cache, stale, fdp.ConsumeIntegralInRange<size_t>(1, 4),
                         exchange, scratch};

  for (int steps = 0; steps < 200 && fdp.remaining_bytes() > 0; ++steps) {
    switch (fdp.ConsumeIntegralInRange<int>(0, 3)) {
      case 0: {  // a client message
        char type = fdp.PickValueInArray({'P', 'B', 'D', 'C', 'Q', 'S', 'H', 'E', 'F', 'd'});
        std::string body = fdp.ConsumeRandomLengthString(300);
        uint32_t len = static_cast<uint32_t>(body.size() + 4);
        std::string msg(1, type);
        for (int s = 24; s >= 0; s -= 8) msg.push_back(static_cast<char>(len >> s));
        msg += body;
        in.clear();
        in.append(msg);
        StatementMap::Result r;
        switch (type) {
          case 'P': r = map.parse(in, msg.size(), target); break;
          case 'B': r = map.bind(in, msg.size(), target); break;
          case 'D': r = map.describe(in, msg.size(), target); break;
          case 'C': r = map.close(in, msg.size(), target); break;
          default: r.outcome = StatementMap::Outcome::Forward; break;
        }
        if (r.outcome == StatementMap::Outcome::Invalid) {
          FUZZ_CHECK(r.error != nullptr);
          return 0;  // the session ends with a protocol error
        }
        if (r.outcome == StatementMap::Outcome::Partial) FUZZ_CHECK(r.passthrough <= msg.size());
        if (r.outcome == StatementMap::Outcome::Forward) exchange.forwarded(type);
        toServer.clear();
        break;
      }
      case 1: {  // a server response
        char type = fdp.ConsumeBool() ? fdp.ConsumeIntegral<char>()
                                      : fdp.PickValueInArray({'Z', '1', '2', '3', 'n', 'T', 'C',
                                                              'I', 's', 'E', 'G', 'H', 'c'});
        if (type == 'E') {
          exchange.error(fdp.PickValueInArray(kStates),
                         StatementBooks{map.names(), &cache, &stale});
          break;
        }
        auto resp = exchange.onResponse(type);
        if (resp.verdict == ServerExchange::Verdict::Desync) {
          exchange.reset();  // the server is dropped; the client gets another
          cache.clear();
        }
        exchange.appendFakes(toClient, map.names());
        toClient.clear();
        break;
      }
      case 2:
        if (exchange.answeredUnsynced()) exchange.syncedByUs();
        break;
      case 3:
        exchange.commitSent(fdp.ConsumeBool());
        break;
    }
    checkBooks(exchange);
  }
  return 0;
}
