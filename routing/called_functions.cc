// Called-function names for the volatility lookup. Reporting a name that is not a function is
// harmless (the lookup finds nothing); the keyword list only keeps the classify cache small
// and the lookups few.
#include "routing/called_functions.h"

#include <algorithm>
#include <array>
#include <string>

#include "routing/sql_lexer.h"

namespace pgswitch::routing {
namespace {

// Sorted, lower-case. Reserved words PostgreSQL never reads as a function name before '(' and
// type names that take modifiers (seen after CAST ... AS or '::' too, but not only there:
// "character varying(10)", "double precision").
constexpr std::array<std::string_view, 66> kNotFunctions = {
    "all",     "and",      "any",     "array",     "as",      "between",   "bit",       "by",
    "case",    "cast",     "char",    "character", "check",   "collate",   "dec",       "decimal",
    "default", "distinct", "else",    "escape",    "except",  "exists",    "filter",    "float",
    "from",    "group",    "having",  "ilike",     "in",      "intersect", "interval",  "into",
    "is",      "join",     "lateral", "like",      "limit",   "nchar",     "not",       "numeric",
    "offset",  "on",       "only",    "or",        "over",    "overlaps",  "returning", "rollup",
    "row",     "select",   "sets",    "similar",   "some",    "then",      "time",      "timestamp",
    "union",   "using",    "values",  "varbit",    "varchar", "varying",   "when",      "where",
    "window",  "within",
};

constexpr bool sorted() {
  for (size_t i = 1; i < kNotFunctions.size(); ++i) {
    if (!(kNotFunctions[i - 1] < kNotFunctions[i])) return false;
  }
  return true;
}
static_assert(sorted(), "kNotFunctions must stay sorted for binary search");

}  // namespace

bool notAFunctionName(std::string_view w) {
  if (w.size() > 16) return false;
  char buf[16];
  for (size_t i = 0; i < w.size(); ++i) {
    char c = w[i];
    buf[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
  }
  const std::string_view key(buf, w.size());
  return std::binary_search(kNotFunctions.begin(), kNotFunctions.end(), key);
}

void noteCalledFunction(std::string_view name, const ClassifierOptions& opts, Classification& out) {
  if (name.empty()) return;
  std::string lower(name);
  for (char& ch : lower) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch + ('a' - 'A'));
  }
  for (const std::string& trusted : opts.readOnlyFunctions) {
    if (equalsLower(trusted, lower)) return;  // `trusted` may be in any case: compare folded
  }
  auto& v = out.calledFunctions;
  if (std::find(v.begin(), v.end(), lower) != v.end()) return;
  if (v.size() >= kMaxCalledFunctions) {
    out.calledFunctionsTruncated = true;
    return;
  }
  v.push_back(std::move(lower));
}

void mergeCalledFunctions(Classification& to, const Classification& from) {
  to.changesFunctions |= from.changesFunctions;
  to.calledFunctionsTruncated |= from.calledFunctionsTruncated;
  for (const std::string& f : from.calledFunctions) {
    auto& v = to.calledFunctions;
    if (std::find(v.begin(), v.end(), f) != v.end()) continue;
    if (v.size() >= kMaxCalledFunctions) {
      to.calledFunctionsTruncated = true;
      break;
    }
    v.push_back(f);
  }
}

}  // namespace pgswitch::routing
