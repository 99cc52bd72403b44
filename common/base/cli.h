// Command-line parsing shared by every tool. Options are bound to fields of a
// plain options struct whose in-class initialisers are the defaults; --help
// lists each option with its default. The same names serve JSON configs
// (ApplyJson) and the effective configuration written next to outputs (ToJson).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/base/error.h"

namespace csr {

class ArgParser {
 public:
  ArgParser(std::string program, std::string usage, std::string summary);

  // `name` is the long option without dashes, e.g. "threads".
  void Add(const std::string& name, std::string* value, const std::string& help);
  void Add(const std::string& name, int* value, const std::string& help);
  void Add(const std::string& name, int64_t* value, const std::string& help);
  void Add(const std::string& name, double* value, const std::string& help);
  void Add(const std::string& name, std::vector<double>* value, const std::string& help);
  // A flag: present means true. Values may still be given as --name=false.
  void Add(const std::string& name, bool* value, const std::string& help);
  void AddChoice(const std::string& name, std::string* value, std::vector<std::string> choices,
                 const std::string& help);
  // Another spelling of an existing option (e.g. "pre" for "resume").
  void AddAlias(const std::string& alias, const std::string& name);
  // Collects the arguments that are not options, in order.
  void AddPositional(const std::string& name, std::vector<std::string>* values, const std::string& help);

  // Parses argv. Returns false if --help was given (help printed to stdout)
  // or --print-defaults (every option's default as a JSON config, the
  // template for --config files, printed to stdout).
  // Throws csr::UsageError naming the option on an unknown flag or bad value.
  bool Parse(int argc, const char* const* argv);

  // Was this option given on the command line (or by ApplyJson)?
  bool IsSet(const std::string& name) const;

  // Applies a JSON object of option values by name, skipping options already
  // set on the command line (the command line wins). Unknown keys and values
  // of the wrong type throw csr::Error naming `source` and the key.
  void ApplyJson(const nlohmann::json& config, const std::string& source);
  // The value of every option (positionals excluded) as a JSON object.
  nlohmann::json ToJson() const;

  std::string Help() const;
  // {"name": default, ...} for every option, as --print-defaults prints it.
  nlohmann::json Defaults() const;

 private:
  using Target = std::variant<std::string*, int*, int64_t*, double*, std::vector<double>*, bool*>;
  struct Option {
    std::string name;
    Target target;
    std::string help;
    nlohmann::json default_value;  // the target's value when registered
    std::string default_text;
    std::vector<std::string> choices;
    bool set = false;
  };
  Option& Register(const std::string& name, Target target, const std::string& help);
  Option* Find(const std::string& name);
  void Assign(Option& opt, const std::string& text, const std::string& where);
  void AssignJson(Option& opt, const nlohmann::json& value, const std::string& where);
  static std::string ValueText(const Target& target);

  std::string program_, usage_, summary_;
  std::vector<Option> options_;
  std::map<std::string, std::string> aliases_;
  std::string positional_name_, positional_help_;
  std::vector<std::string>* positional_ = nullptr;
};

// Runs a tool body, turning csr::Error and every other exception (including
// HDF5's H5::Exception, which is not a std::exception) into one line on stderr
// ("tool: error: file: reason") and an exit code: 2 for usage errors, 1 for
// everything else. `body` returns the tool's own exit code.
template <typename Fn>
int RunTool(const char* name, Fn&& body);

// Non-template parts of RunTool. Only the first line of a message is printed:
// LibTorch's c10::Error appends a C++ backtrace to what().
int ReportFailure(const std::exception& e, bool usage);
int ReportUnknownFailure();
void InitTool(const char* name);

template <typename Fn>
int RunTool(const char* name, Fn&& body) {
  InitTool(name);
  try {
    return body();
  } catch (const UsageError& e) {
    return ReportFailure(e, true);
  } catch (const std::exception& e) {
    return ReportFailure(e, false);
  } catch (...) {
    return ReportUnknownFailure();
  }
}

}  // namespace csr
