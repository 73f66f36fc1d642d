// The client's login (proxy/session/login.h) on a hostile byte stream: startup packets
// (SSL/GSS requests, cancel, protocol versions, "options"), then password, md5 and SCRAM
// messages, fed in pieces. The first input byte sets the piece size (0: all at once); the
// rest is what the client sends. Login must end in one of its steps, never crash or loop.
#include <cstdint>
#include <memory>
#include <string>

#include "fuzz_check.h"
#include "protocol/buffer.h"
#include "proxy/config/config.h"
#include "proxy/session/login.h"

using namespace pgswitch;
using pgswitch::proxy::Login;

namespace {

const proxy::Config& config() {
  static const std::shared_ptr<const proxy::Config> cfg = [] {
    auto r = proxy::parseConfig(R"toml([server]
listen = "127.0.0.1:6432"
admin_users = ["admin"]
[[backend]]
name = "pg1"
host = "127.0.0.1"
port = 5432
[[user]]
name = "scram"
password = "secret"
[[user]]
name = "md5"
password = "pw"
auth = "md5"
[[user]]
name = "trusted"
auth = "trust"
)toml",
                                "/fuzz/login.toml");
    FUZZ_CHECK(r.ok());
    return *r;
  }();
  return *cfg;
}

bool ends(Login::Step s) {
  return s != Login::Step::NeedMore && s != Login::Step::StartupDone;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const proxy::Config& cfg = config();
  size_t piece = data[0];
  ++data;
  --size;

  protocol::ChunkPool pool(4);
  protocol::ByteQueue in(pool);
  Login login;
  std::string out;
  size_t fed = 0;
  Login::Outcome o;
  while (true) {
    size_t n = piece == 0 ? size - fed : std::min(piece, size - fed);
    if (n == 0) break;
    in.append(std::as_bytes(std::span(data + fed, n)));
    fed += n;
    o = login.feed(in, cfg, out);
    while (o.step == Login::Step::StartupDone) {  // as ClientSession::onLogin does
      FUZZ_CHECK(!login.user().empty());
      o = login.begin(cfg, out);
      if (o.step == Login::Step::NeedMore) o = login.feed(in, cfg, out);
    }
    if (o.step == Login::Step::Fatal) FUZZ_CHECK(o.sqlstate.size() == 5 && !o.message.empty());
    if (o.step == Login::Step::AuthFailed) FUZZ_CHECK(!login.user().empty());
    if (ends(o.step)) break;
    out.clear();
    piece = piece * 7 % 251;  // vary the split
  }
  (void)login.clientKey();
  return 0;
}
