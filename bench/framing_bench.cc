// Cost of the forwarding path's per-message work: reading a frame header out of a
// ByteQueue and moving the message to a SliceQueue by reference.
#include <benchmark/benchmark.h>

#include <string>

#include "protocol/buffer.h"
#include "protocol/builder.h"
#include "protocol/framing.h"

using namespace pgswitch::protocol;

static void BM_FrameAndForwardDataRows(benchmark::State& state) {
  ChunkPool pool;
  std::string rows;
  std::string_view vals[] = {"12345", "some text value", "2026-11-25"};
  for (int i = 0; i < 100; ++i) appendDataRow(rows, vals);
  std::vector<Slice> tmp;
  for (auto _ : state) {
    ByteQueue in(pool);
    SliceQueue out(pool);
    in.append(rows);
    while (!in.empty()) {
      Frame f = readFrame(in, 1 << 20);
      if (f.status != FrameStatus::Complete) break;
      in.sliceFront(f.total, tmp);
      out.pushSlices(tmp);
      in.consume(f.total);
    }
    benchmark::DoNotOptimize(out.bytes());
    out.consume(out.bytes());
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_FrameAndForwardDataRows);
