// The config loader on arbitrary text: parseConfig (TOML -> validated Config, what loadConfig
// and RELOAD run) must return a Config or errors, never throw: an exception escaping it would
// end the process on RELOAD. Every error names the file and a line.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "proxy/config/config.h"

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
  return 0;
}
