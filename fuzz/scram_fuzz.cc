// SCRAM-SHA-256 both ways on hostile messages. The first byte picks the side; the rest is
// the peer's messages separated by '\n'. Server side (pgswitch checking a client):
// client-first then client-final. Client side (pgswitch logging in to a backend):
// server-first then server-final, with keys or with a password. Also pg_authid secrets and
// base64. Fixed nonces and secret, so seeds can carry valid exchanges (fuzz/README.md).
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "protocol/scram.h"

using namespace pgswitch::protocol;

namespace {

constexpr std::string_view kServerNonce = "SERVERNONCE0123456789abc";
constexpr std::string_view kClientNonce = "CLIENTNONCE0123456789abc";

const ScramSecret& secret() {  // password "pencil", salt "pgswitch-fuzz-salt", 4096
  static const ScramSecret s = makeScramSecret("pencil", "pgswitch-fuzz-salt", 4096);
  return s;
}

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> parts;
  for (;;) {
    size_t nl = s.find('\n');
    parts.push_back(s.substr(0, nl));
    if (nl == std::string_view::npos) return parts;
    s.remove_prefix(nl + 1);
  }
}

// With a password the client runs PBKDF2 at the server's iteration count: a hostile server
// can ask for 2^31 - 1, which is slow by design (PostgreSQL's libpq does the same). Keep the
// fuzzer on inputs that finish.
bool cheapIterations(std::string_view serverFirst) {
  size_t at = serverFirst.find(",i=");
  if (at == std::string_view::npos) return true;
  std::string_view digits = serverFirst.substr(at + 3);
  digits = digits.substr(0, digits.find(','));
  unsigned long v = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  return ec == std::errc() && v <= 10000;
}

void server(const std::vector<std::string_view>& msgs) {
  ScramServer s(secret(), std::string(kServerNonce));
  bool failed = false;
  for (size_t i = 0; i < msgs.size() && i < 3; ++i) {
    auto r = i == 0 ? s.handleClientFirst(msgs[i]) : s.handleClientFinal(msgs[i]);
    if (failed) FUZZ_CHECK(!r.ok());  // after any error every later call fails too
    if (!r) {
      FUZZ_CHECK(!r.error().empty());
      failed = true;
    }
    if (i == 0 && r) FUZZ_CHECK(r->rfind("r=", 0) == 0);
  }
  if (s.succeeded()) {
    // Only the real password's proof verifies; the recovered ClientKey must then log in.
    ScramClient c = ScramClient::withKeys(s.clientKey(), secret(), std::string(kClientNonce));
    (void)c.clientFirst();
  }
}

void client(const std::vector<std::string_view>& msgs, bool withPassword) {
  if (withPassword && !cheapIterations(msgs[0])) return;
  ScramClient c = withPassword
                      ? ScramClient::withPassword("pencil", std::string(kClientNonce))
                      : ScramClient::withKeys(ScramKey{}, secret(), std::string(kClientNonce));
  std::string first = c.clientFirst();
  FUZZ_CHECK(first == "n,,n=,r=" + std::string(kClientNonce));
  auto r = c.handleServerFirst(msgs[0]);
  if (!r) {
    FUZZ_CHECK(!r.error().empty());
    if (msgs.size() > 1) FUZZ_CHECK(!c.handleServerFinal(msgs[1]).ok());
    return;
  }
  FUZZ_CHECK(r->rfind("c=biws,r=", 0) == 0);
  if (msgs.size() > 1) {
    auto f = c.handleServerFinal(msgs[1]);
    if (f) FUZZ_CHECK(*f);
  }
}

void secrets(std::string_view text) {
  if (auto s = parseScramSecret(text)) {
    FUZZ_CHECK(s->iterations >= 1 && !s->salt.empty());
    auto again = parseScramSecret(formatScramSecret(*s));
    FUZZ_CHECK(again && again->salt == s->salt && again->iterations == s->iterations &&
               again->storedKey == s->storedKey && again->serverKey == s->serverKey);
  }
  if (auto d = base64Decode(text)) {
    FUZZ_CHECK(base64Encode(std::as_bytes(std::span(d->data(), d->size()))) == text);
  }
  std::string enc = base64Encode(std::as_bytes(std::span(text.data(), text.size())));
  auto back = base64Decode(enc);
  FUZZ_CHECK(back && *back == text);
  if (!text.empty() && text.size() < 64) (void)mockScramSecret(text, "seed");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: server(split(text)); break;
    case 1: client(split(text), false); break;
    case 2: client(split(text), true); break;
    case 3: secrets(text); break;
  }
  return 0;
}
