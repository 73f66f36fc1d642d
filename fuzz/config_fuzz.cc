// The config loader on arbitrary text: parseConfig (TOML -> validated Config, what loadConfig
// and RELOAD run) must return a Config or errors, never throw: an exception escaping it would
// end the process on RELOAD. Every error names the file and a line. The same text is also read
// as an hba_file (HbaRules::parse, then matched against a few connections).
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "proxy/config/config.h"
#include "proxy/config/hba_rules.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = pgswitch::proxy::parseConfig(text, "/fuzz/pgswitch.toml");
  if (!r) {
    FUZZ_CHECK(!r.error().messages.empty());
    for (const std::string& m : r.error().messages)
      FUZZ_CHECK(m.rfind("/fuzz/pgswitch.toml:", 0) == 0);
  } else {
    FUZZ_CHECK(*r != nullptr);
  }
  auto hba = pgswitch::proxy::HbaRules::parse(text, "/fuzz/hba.conf");
  FUZZ_CHECK((hba.rules == nullptr) == !hba.errors.empty());
  for (const std::string& m : hba.errors) FUZZ_CHECK(m.rfind("/fuzz/hba.conf:", 0) == 0);
  if (hba.rules) {
    for (const char* addr : {"127.0.0.1", "::1", "::ffff:10.0.0.1", "?"}) {
      pgswitch::proxy::HbaConnection c{addr, addr[0] == ':', "appdb", "app"};
      pgswitch::proxy::decideAccess(hba.rules.get(), c, nullptr, {});
    }
  }
  return 0;
}
