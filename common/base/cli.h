// Command-line parsing shared by every tool. Options are bound to fields of a
// plain options struct whose in-class initialisers are the defaults; --help
// lists each option with its default. The same names serve JSON configs
// (ApplyJson) and the effective configuration written next to outputs (ToJson).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
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
  // A typed option with a fixed set of spellings: an enum, or any type with
  // ==, such as std::optional<E> with "auto" for nullopt. --help lists the
  // names; the command line and JSON configs take them; ToJson and
  // --print-defaults write them. The value is typed from the parser on, so
  // no tool compares option strings.
  template <typename T>
  void AddEnum(const std::string& name, T* value, std::vector<std::pair<std::string, T>> names,
               const std::string& help);
  // A typed option with its own grammar (e.g. a device "cuda:1"): `parse`
  // turns a spelling into a T or throws csr::UsageError naming `where`;
  // `format` spells a T. `metavar` stands for the value in --help.
  template <typename T>
  void AddTyped(const std::string& name, T* value, std::function<T(const std::string&, const std::string&)> parse,
                std::function<std::string(const T&)> format, const std::string& metavar, const std::string& help);
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
  // A typed option, erased: assigns from a spelling, spells the value.
  struct Typed {
    std::function<void(const std::string& text, const std::string& where)> assign;
    std::function<std::string()> text;
    std::string metavar;
  };
  using Target = std::variant<std::string*, int*, int64_t*, double*, std::vector<double>*, bool*, Typed*>;
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
  void RegisterTyped(const std::string& name, std::unique_ptr<Typed> typed, std::vector<std::string> choices,
                     const std::string& help);
  static std::string ValueText(const Target& target);
  static nlohmann::json ValueJson(const Target& target);

  std::string program_, usage_, summary_;
  std::vector<Option> options_;
  std::vector<std::unique_ptr<Typed>> typed_;  // owned here; Option::target points into it
  std::map<std::string, std::string> aliases_;
  std::string positional_name_, positional_help_;
  std::vector<std::string>* positional_ = nullptr;
};

template <typename T>
void ArgParser::AddTyped(const std::string& name, T* value,
                         std::function<T(const std::string&, const std::string&)> parse,
                         std::function<std::string(const T&)> format, const std::string& metavar,
                         const std::string& help) {
  auto typed = std::make_unique<Typed>();
  typed->assign = [value, parse](const std::string& text, const std::string& where) { *value = parse(text, where); };
  typed->text = [value, format] { return format(*value); };
  typed->metavar = metavar;
  RegisterTyped(name, std::move(typed), {}, help);
}

template <typename T>
void ArgParser::AddEnum(const std::string& name, T* value, std::vector<std::pair<std::string, T>> names,
                        const std::string& help) {
  std::vector<std::string> choices;
  for (const auto& entry : names) choices.push_back(entry.first);
  auto typed = std::make_unique<Typed>();
  // Only a listed name reaches `assign` (Assign checks the choices first).
  typed->assign = [value, names](const std::string& text, const std::string&) {
    for (const auto& entry : names) {
      if (entry.first == text) *value = entry.second;
    }
  };
  typed->text = [value, names] {
    for (const auto& entry : names) {
      if (entry.second == *value) return entry.first;
    }
    return std::string("?");  // a value the names do not list: a bug in the caller's table
  };
  RegisterTyped(name, std::move(typed), std::move(choices), help);
}

// Checks for the option structs' Check(): each throws csr::UsageError
// naming the option, the rule and the value given. Written so that NaN fails
// every bound. `meaning` explains a special value ("0 = every core").
template <typename T>
void CheckRange(const std::string& option, T value, T lo, T hi, const std::string& meaning = "") {
  if (!(value >= lo && value <= hi)) {
    throw UsageError(option, StrCat("must be in [", lo, ", ", hi, "]", meaning.empty() ? "" : " (" + meaning + ")",
                                    ", got ", value));
  }
}
// UsageError(option, "<rule>, got <value>") unless `ok`.
template <typename T>
void CheckThat(bool ok, const std::string& option, const T& value, const std::string& rule) {
  if (!ok) throw UsageError(option, StrCat(rule, ", got ", value));
}

// Runs a tool body, turning csr::Error and every other exception (including
// exceptions that do not derive from std::exception) into one line on stderr
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
