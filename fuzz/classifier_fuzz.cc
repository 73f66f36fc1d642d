// The statement classifier (lexer, hint comments, libpg_query fallback, cache) and the
// session's SQL scanners (routing/session_sql.h) on arbitrary text. Checks: the cached and
// uncached answers agree, views point into the input, quoted literals stay one statement.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "routing/classifier.h"
#include "routing/session_sql.h"

using namespace pgswitch::routing;

namespace {

bool inside(std::string_view v, std::string_view s) {
  return v.empty() || (v.data() >= s.data() && v.data() + v.size() <= s.data() + s.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view sql(reinterpret_cast<const char*>(data), size);
  static Classifier classifier(
      ClassifierOptions{.extraWriteFunctions = {"my_writer"}, .readOnlyFunctions = {"my_reader"},
                        .cacheCapacity = 64});

  Classification c = classifier.classify(sql);
  Classification last = classifier.classify(sql);  // the last text's answer (up to 1 KiB)
  classifier.classify("SELECT 1");                 // another text between: the cache answers
  Classification again = classifier.classify(sql);  // cached now (at its second miss)
  classifier.classify("SELECT 1");
  Classification hit = classifier.classify(sql);  // from the cache when it fits
  Classification plain = classifyUncached(sql, classifier.options());
  FUZZ_CHECK(c == last);
  FUZZ_CHECK(c == again);
  FUZZ_CHECK(c == hit);
  FUZZ_CHECK(c == plain);

  std::string_view kw = firstKeyword(sql);
  FUZZ_CHECK(inside(kw, sql));
  (void)firstKeywordIs(sql, "set");
  (void)isCommit(sql);
  (void)mayTouchSessionState(sql);
  (void)startsWithSet(sql);
  (void)startsWithReset(sql);
  (void)isSqlExecute(sql);
  if (auto target = deallocateTarget(sql)) FUZZ_CHECK(!target->empty());
  (void)bareTxnEnd(sql);
  (void)isHarmlessSessionSet(c, sql);

  if (validSettingName(sql)) {
    FUZZ_CHECK(!sql.empty() && sql.size() <= 127);
    std::string reset;
    appendReset(reset, sql);
    Classification r = classifyUncached(reset, {});
    FUZZ_CHECK(!r.multiStatement);
  }
  std::string quoted = quoteLiteral(sql);
  FUZZ_CHECK(quoted.size() >= sql.size() + 2 && quoted.front() == '\'' && quoted.back() == '\'');
  if (sql.find('\0') == std::string_view::npos) {
    // A client's value inside pgswitch's own SQL must stay one literal.
    std::string setConfig;
    appendSetConfig(setConfig, "search_path", sql);
    Classification s = classifyUncached(setConfig, {});
    FUZZ_CHECK(!s.multiStatement);
    (void)currentSettingQuery(sql);
  }
  return 0;
}
