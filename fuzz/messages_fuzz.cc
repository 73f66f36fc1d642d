// Every message parser of protocol/messages.h and command_tag.h on hostile bodies: the first
// input byte picks the parser, the rest is the body (after type and length). A parser must
// return a value or an error, and every view it returns must lie inside the body.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "fuzz_check.h"
#include "protocol/command_tag.h"
#include "protocol/messages.h"

using namespace pgswitch::protocol;

namespace {

struct Body {
  std::span<const std::byte> b;
  bool holds(std::string_view v) const {
    if (v.empty()) return true;
    auto* lo = reinterpret_cast<const char*>(b.data());
    return v.data() >= lo && v.data() + v.size() <= lo + b.size();
  }
  bool holds(std::span<const std::byte> v) const {
    if (v.empty()) return true;
    return v.data() >= b.data() && v.data() + v.size() <= b.data() + b.size();
  }
};

// Reads the body with a Reader in a fixed pattern; every read stays bounds-checked.
void readAll(std::span<const std::byte> body) {
  Reader r(body);
  size_t left = r.remaining();
  for (int i = 0; !r.atEnd() && i < 64; ++i) {
    switch (i % 5) {
      case 0: (void)r.u8(); break;
      case 1: (void)r.i16(); break;
      case 2: (void)r.i32(); break;
      case 3: (void)r.cstr(); break;
      case 4: (void)r.bytes(i); break;
    }
    FUZZ_CHECK(r.remaining() <= left);
    left = r.remaining();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const char kind = static_cast<char>(data[0]);
  std::span<const std::byte> body(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  Body in{body};
  switch (kind) {
    case '0': {  // startup-phase packet, after its length
      auto r = parseStartup(body);
      if (r) {
        for (auto& [k, v] : r->params) FUZZ_CHECK(in.holds(k) && in.holds(v));
        FUZZ_CHECK(in.holds(r->param("user")));
        FUZZ_CHECK(in.holds(r->param("database")));
      }
      break;
    }
    case 'E':
    case 'N': {
      auto r = parseErrorFields(body);
      if (r) {
        FUZZ_CHECK(in.holds(r->severity) && in.holds(r->code) && in.holds(r->message) &&
                   in.holds(r->detail) && in.holds(r->hint));
      }
      break;
    }
    case 'S': {
      auto r = parseParameterStatus(body);
      if (r) FUZZ_CHECK(in.holds(r->name) && in.holds(r->value));
      break;
    }
    case 'K': (void)parseBackendKeyData(body); break;
    case 'Z': {
      auto r = parseReadyForQuery(body);
      if (r) FUZZ_CHECK(*r == 'I' || *r == 'T' || *r == 'E');
      break;
    }
    case 'R': {
      auto r = parseAuthRequest(body);
      if (r) {
        FUZZ_CHECK(in.holds(r->data));
        for (auto m : r->mechanisms) FUZZ_CHECK(in.holds(m));
      }
      break;
    }
    case 'Q': {
      auto r = parseQuery(body);
      if (r) FUZZ_CHECK(in.holds(r->sql));
      break;
    }
    case 'P': {
      auto r = parseParse(body);
      if (r) {
        FUZZ_CHECK(in.holds(r->name) && in.holds(r->sql) && in.holds(r->paramTypes));
        FUZZ_CHECK(r->paramCount >= 0);
        FUZZ_CHECK(r->paramTypes.size() == size_t(r->paramCount) * 4);
      }
      break;
    }
    case 'B': {
      auto r = parseBindHead(body);
      if (r) {
        FUZZ_CHECK(in.holds(r->portal) && in.holds(r->statement));
        FUZZ_CHECK(r->restOffset <= body.size());
      }
      break;
    }
    case 'D': {
      auto r = parseDescribeClose(body);
      if (r) FUZZ_CHECK(in.holds(r->name));
      break;
    }
    case 'p': {
      auto r = parsePasswordMessage(body);
      if (r) FUZZ_CHECK(in.holds(*r));
      auto s = parseSaslInitial(body);
      if (s) FUZZ_CHECK(in.holds(s->mechanism) && in.holds(s->data));
      break;
    }
    case 'C': {
      auto r = parseCommandComplete(body);
      if (r) {
        FUZZ_CHECK(in.holds(*r));
        (void)commandTagKind(*r);
      }
      break;
    }
    case 'T': {
      RowFields fields(body);
      RowField f;
      int n = 0;
      while (fields.next(f)) {
        FUZZ_CHECK(in.holds(f.name));
        FUZZ_CHECK(++n <= fields.count());
      }
      FUZZ_CHECK(fields.error() != nullptr || n == fields.count());
      break;
    }
    default:
      readAll(body);
      (void)commandTagKind(asText(body));
      break;
  }
  return 0;
}
