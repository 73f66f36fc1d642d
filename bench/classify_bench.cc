// Cost of statement classification: a cached lookup (hash + one cache-line probe + copy) and
// the uncached lexer path, per typical OLTP statement from bench/corpus/oltp.sql; plus the
// libpg_query fallback for scale.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "routing/classifier.h"

using namespace pgswitch::routing;

namespace {

const std::vector<std::string>& corpus() {
  static const std::vector<std::string> statements = [] {
    std::vector<std::string> v;
    const auto path = std::filesystem::path(__FILE__).parent_path() / "corpus" / "oltp.sql";
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      if (line.empty() || line.rfind("--", 0) == 0) continue;
      v.push_back(line);
    }
    return v;
  }();
  return statements;
}

// One iteration = one statement; the corpus is cycled.
void BM_ClassifyCached(benchmark::State& state) {
  const auto& stmts = corpus();
  if (stmts.empty()) return state.SkipWithError("bench/corpus/oltp.sql not found");
  Classifier classifier;
  for (int round = 0; round < 2; ++round)  // warm: a text is cached at its second miss
    for (const auto& s : stmts) classifier.classify(s);
  size_t i = 0;
  for (auto _ : state) {
    Classification c = classifier.classify(stmts[i]);
    benchmark::DoNotOptimize(c);
    if (++i == stmts.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ClassifyCached);

void BM_ClassifyUncached(benchmark::State& state) {
  const auto& stmts = corpus();
  if (stmts.empty()) return state.SkipWithError("bench/corpus/oltp.sql not found");
  ClassifierOptions opts;
  size_t i = 0;
  for (auto _ : state) {
    Classification c = classifyUncached(stmts[i], opts);
    benchmark::DoNotOptimize(c);
    if (++i == stmts.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ClassifyUncached);

// The slowest corpus statement uncached (the longest text), to bound the worst typical case.
void BM_ClassifyUncachedLongestOltp(benchmark::State& state) {
  const auto& stmts = corpus();
  if (stmts.empty()) return state.SkipWithError("bench/corpus/oltp.sql not found");
  const std::string* longest = &stmts[0];
  for (const auto& s : stmts) {
    if (s.size() > longest->size()) longest = &s;
  }
  ClassifierOptions opts;
  for (auto _ : state) {
    Classification c = classifyUncached(*longest, opts);
    benchmark::DoNotOptimize(c);
  }
  state.SetLabel(std::to_string(longest->size()) + " bytes");
}
BENCHMARK(BM_ClassifyUncachedLongestOltp);

void BM_ClassifyUncachedPgbenchSelect(benchmark::State& state) {
  const std::string sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
  ClassifierOptions opts;
  for (auto _ : state) {
    Classification c = classifyUncached(sql, opts);
    benchmark::DoNotOptimize(c);
  }
}
BENCHMARK(BM_ClassifyUncachedPgbenchSelect);

// For scale only: text the lexer rules leave to libpg_query.
void BM_ClassifyParserFallback(benchmark::State& state) {
  const std::string sql =
      "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO log VALUES (new.a); NOTIFY t)";
  ClassifierOptions opts;
  for (auto _ : state) {
    Classification c = classifyUncached(sql, opts);
    benchmark::DoNotOptimize(c);
  }
}
BENCHMARK(BM_ClassifyParserFallback);

}  // namespace
