// README.md documents every setting: the TOML example under "## Configuration (TOML)" names
// each key of the settings table in its section, and it loads as a valid configuration (so it
// names no key the loader does not know, with no value it would refuse).
#include <gtest/gtest.h>
#include <toml++/toml.h>

#include <fstream>
#include <sstream>
#include <string>

#include "proxy/config/config.h"
#include "proxy/config/settings.h"

#ifndef PGSWITCH_SOURCE_DIR
#error "tests/CMakeLists.txt defines PGSWITCH_SOURCE_DIR, the repository root"
#endif

namespace pgswitch::proxy {
namespace {

// The first ```toml block of README.md's configuration section, or "" (and a failure).
std::string readmeExample() {
  std::string path = std::string(PGSWITCH_SOURCE_DIR) + "/README.md";
  std::ifstream f(path);
  if (!f) {
    ADD_FAILURE() << "cannot read " << path;
    return "";
  }
  std::stringstream ss;
  ss << f.rdbuf();
  std::string text = ss.str();
  size_t section = text.find("\n## Configuration (TOML)");
  size_t open = text.find("```toml\n", section == std::string::npos ? 0 : section);
  size_t close = open == std::string::npos ? open : text.find("\n```", open);
  if (section == std::string::npos || close == std::string::npos) {
    ADD_FAILURE() << path << " has no ```toml block under \"## Configuration (TOML)\"";
    return "";
  }
  open += 8;
  return text.substr(open, close + 1 - open);
}

TEST(Readme, ConfigurationExampleLoads) {
  std::string example = readmeExample();
  ASSERT_FALSE(example.empty());
  auto r = parseConfig(example, "README.md");
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().joined());
}

TEST(Readme, EverySettingIsInTheConfigurationExample) {
  std::string example = readmeExample();
  ASSERT_FALSE(example.empty());
  toml::table root;
  try {
    root = toml::parse(std::string_view(example), std::string_view("README.md"));
  } catch (const toml::parse_error& e) {
    FAIL() << "README.md's example is not TOML: " << e.description();
  }
  std::string missing;
  for (const Setting& s : settings()) {
    if (!root[s.section()][s.name()]) missing += "\n  " + std::string(s.key);
  }
  EXPECT_TRUE(missing.empty())
      << "README.md's configuration example does not document (add each under its [section], "
         "with a comment saying what it does):"
      << missing;
}

}  // namespace
}  // namespace pgswitch::proxy
