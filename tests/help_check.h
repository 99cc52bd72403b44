// Checks a built tool's --help against its real options: every option that
// --print-defaults reports (the ArgParser's own list, so nothing here is a
// hard-coded list of names) is listed by --help with exactly its default,
// and --help lists no option that does not exist.
#pragma once

#include <doctest/doctest.h>

#include <map>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "common/base/fs.h"
#include "tests/test_util.h"

namespace csr::test {

// The default as --help prints it (ArgParser::ValueText's rules).
inline std::string HelpText(const nlohmann::json& v) {
  std::ostringstream os;
  if (v.is_string()) {
    const auto s = v.get<std::string>();
    os << (s.empty() ? "\"\"" : s);
  } else if (v.is_boolean()) {
    os << (v.get<bool>() ? "true" : "false");
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) os << (i ? "," : "") << v[i].get<double>();
    if (v.empty()) os << "none";
  } else if (v.is_number_float()) {
    os << v.get<double>();
  } else {
    os << v.get<int64_t>();
  }
  return os.str();
}

// "--name" -> its default text, from --help's two-line entries.
inline std::map<std::string, std::string> HelpDefaults(const std::string& help) {
  std::map<std::string, std::string> out;
  std::istringstream in(help);
  std::string line, name;
  while (std::getline(in, line)) {
    if (line.rfind("  --", 0) == 0) {
      name = line.substr(4, line.find_first_of(" ,", 4) - 4);
    } else if (!name.empty() && line.rfind("      ", 0) == 0) {
      const size_t at = line.rfind("(default: ");
      if (at != std::string::npos && line.back() == ')') out[name] = line.substr(at + 10, line.size() - at - 11);
      name.clear();
    }
  }
  return out;
}

inline void CheckHelpDefaults(const std::string& tool) {
  CAPTURE(tool);
  TempDir tmp;
  REQUIRE(Run(Tool(tool) + " --help", tmp / "help.txt") == 0);
  REQUIRE(Run(Tool(tool) + " --print-defaults", tmp / "defaults.json") == 0);
  const std::map<std::string, std::string> help = HelpDefaults(ReadTextFile(tmp / "help.txt"));
  const nlohmann::json defaults = nlohmann::json::parse(ReadTextFile(tmp / "defaults.json"));
  REQUIRE(defaults.size() >= 3);
  for (const auto& item : defaults.items()) {
    CAPTURE(item.key());
    REQUIRE(help.count(item.key()) == 1);
    CHECK(help.at(item.key()) == HelpText(item.value()));
  }
  for (const auto& entry : help) {
    CAPTURE(entry.first);
    CHECK(defaults.contains(entry.first));
  }
}

}  // namespace csr::test
