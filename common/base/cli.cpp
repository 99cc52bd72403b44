#include "common/base/cli.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "common/base/error.h"
#include "common/base/log.h"

namespace csr {
namespace {

std::string Normalize(std::string name) {
  for (char& c : name) {
    if (c == '_') c = '-';
  }
  return name;
}

int64_t ParseInt(const std::string& text, const std::string& where) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE) {
    throw UsageError(where, StrCat("expected an integer, got '", text, "'"));
  }
  return v;
}

double ParseDouble(const std::string& text, const std::string& where) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v)) {
    throw UsageError(where, StrCat("expected a finite number, got '", text, "'"));
  }
  return v;
}

}  // namespace

ArgParser::ArgParser(std::string program, std::string usage, std::string summary)
    : program_(std::move(program)), usage_(std::move(usage)), summary_(std::move(summary)) {
  options_.reserve(64);
}

std::string ArgParser::ValueText(const Target& target) {
  return std::visit(
      [](auto* p) -> std::string {
        using T = std::decay_t<decltype(*p)>;
        std::ostringstream os;
        if constexpr (std::is_same_v<T, Typed>) {
          os << p->text();
        } else if constexpr (std::is_same_v<T, std::string>) {
          os << (p->empty() ? "\"\"" : *p);
        } else if constexpr (std::is_same_v<T, bool>) {
          os << (*p ? "true" : "false");
        } else if constexpr (std::is_same_v<T, std::vector<double>>) {
          for (size_t i = 0; i < p->size(); ++i) os << (i ? "," : "") << (*p)[i];
          if (p->empty()) os << "none";
        } else {
          os << *p;
        }
        return os.str();
      },
      target);
}

nlohmann::json ArgParser::ValueJson(const Target& target) {
  return std::visit(
      [](auto* p) -> nlohmann::json {
        if constexpr (std::is_same_v<std::decay_t<decltype(*p)>, Typed>) {
          return p->text();
        } else {
          return *p;
        }
      },
      target);
}

ArgParser::Option& ArgParser::Register(const std::string& name, Target target, const std::string& help) {
  Option opt;
  opt.name = Normalize(name);
  opt.target = target;
  opt.help = help;
  opt.default_text = ValueText(target);
  opt.default_value = ValueJson(target);
  options_.push_back(std::move(opt));
  return options_.back();
}

void ArgParser::Add(const std::string& n, std::string* v, const std::string& h) { Register(n, v, h); }
void ArgParser::Add(const std::string& n, int* v, const std::string& h) { Register(n, v, h); }
void ArgParser::Add(const std::string& n, int64_t* v, const std::string& h) { Register(n, v, h); }
void ArgParser::Add(const std::string& n, double* v, const std::string& h) { Register(n, v, h); }
void ArgParser::Add(const std::string& n, std::vector<double>* v, const std::string& h) { Register(n, v, h); }
void ArgParser::Add(const std::string& n, bool* v, const std::string& h) { Register(n, v, h); }

void ArgParser::AddChoice(const std::string& name, std::string* value, std::vector<std::string> choices,
                          const std::string& help) {
  Register(name, value, help).choices = std::move(choices);
}

void ArgParser::RegisterTyped(const std::string& name, std::unique_ptr<Typed> typed, std::vector<std::string> choices,
                              const std::string& help) {
  typed_.push_back(std::move(typed));
  Register(name, typed_.back().get(), help).choices = std::move(choices);
}

void ArgParser::AddAlias(const std::string& alias, const std::string& name) {
  aliases_[Normalize(alias)] = Normalize(name);
}

void ArgParser::AddPositional(const std::string& name, std::vector<std::string>* values, const std::string& help) {
  positional_name_ = name;
  positional_help_ = help;
  positional_ = values;
}

ArgParser::Option* ArgParser::Find(const std::string& raw) {
  std::string name = Normalize(raw);
  if (auto it = aliases_.find(name); it != aliases_.end()) name = it->second;
  for (auto& opt : options_) {
    if (opt.name == name) return &opt;
  }
  return nullptr;
}

bool ArgParser::IsSet(const std::string& name) const {
  return const_cast<ArgParser*>(this)->Find(name) != nullptr && const_cast<ArgParser*>(this)->Find(name)->set;
}

void ArgParser::Assign(Option& opt, const std::string& text, const std::string& where) {
  std::visit(
      [&](auto* p) {
        using T = std::decay_t<decltype(*p)>;
        if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, Typed>) {
          if (!opt.choices.empty()) {
            bool ok = false;
            for (const auto& c : opt.choices) ok = ok || c == text;
            if (!ok) {
              std::string list;
              for (const auto& c : opt.choices) list += (list.empty() ? "" : "|") + c;
              throw UsageError(where, StrCat("expected one of ", list, ", got '", text, "'"));
            }
          }
          if constexpr (std::is_same_v<T, Typed>) {
            p->assign(text, where);
          } else {
            *p = text;
          }
        } else if constexpr (std::is_same_v<T, bool>) {
          if (text == "true" || text == "1" || text == "yes") {
            *p = true;
          } else if (text == "false" || text == "0" || text == "no") {
            *p = false;
          } else {
            throw UsageError(where, StrCat("expected true or false, got '", text, "'"));
          }
        } else if constexpr (std::is_same_v<T, int>) {
          const int64_t v = ParseInt(text, where);
          if (v < INT32_MIN || v > INT32_MAX) throw UsageError(where, StrCat("value out of range: ", text));
          *p = static_cast<int>(v);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          *p = ParseInt(text, where);
        } else if constexpr (std::is_same_v<T, double>) {
          *p = ParseDouble(text, where);
        } else {
          p->clear();
          std::stringstream ss(text);
          std::string item;
          while (std::getline(ss, item, ',')) {
            if (!item.empty()) p->push_back(ParseDouble(item, where));
          }
        }
      },
      opt.target);
  opt.set = true;
}

bool ArgParser::Parse(int argc, const char* const* argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << Help();
      return false;
    }
    if (arg == "--print-defaults") {
      std::cout << Defaults().dump(2) << "\n";
      return false;
    }
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      if (arg == "--") {
        for (++i; i < argc; ++i) {
          if (!positional_) throw UsageError(argv[i], "unexpected argument");
          positional_->push_back(argv[i]);
        }
        break;
      }
      if (!positional_) throw UsageError(arg, StrCat("unexpected argument (see ", program_, " --help)"));
      positional_->push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    Option* opt = Find(name);
    if (!opt) throw UsageError("--" + name, StrCat("unknown option (see ", program_, " --help)"));
    const bool is_flag = std::holds_alternative<bool*>(opt->target);
    if (!has_value) {
      if (is_flag) {
        value = "true";
      } else {
        // "--root --part B" must not make "--part" the root: a value never
        // looks like a long option (negative numbers have a single dash).
        const bool next_is_option =
            i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) == 0 && std::string(argv[i + 1]).size() > 2;
        if (i + 1 >= argc || next_is_option) throw UsageError("--" + opt->name, "missing value");
        value = argv[++i];
      }
    }
    Assign(*opt, value, "--" + opt->name);
  }
  return true;
}

void ArgParser::AssignJson(Option& opt, const nlohmann::json& v, const std::string& where) {
  std::visit(
      [&](auto* p) {
        using T = std::decay_t<decltype(*p)>;
        if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, Typed>) {
          if (!v.is_string()) throw Error(where, "expected a string");
          Assign(opt, v.get<std::string>(), where);
        } else if constexpr (std::is_same_v<T, bool>) {
          if (!v.is_boolean()) throw Error(where, "expected true or false");
          *p = v.get<bool>();
        } else if constexpr (std::is_same_v<T, int> || std::is_same_v<T, int64_t>) {
          if (!v.is_number_integer()) throw Error(where, "expected an integer");
          const int64_t x = v.get<int64_t>();
          if (std::is_same_v<T, int> && (x < INT32_MIN || x > INT32_MAX)) throw Error(where, "out of range");
          *p = static_cast<T>(x);
        } else if constexpr (std::is_same_v<T, double>) {
          if (!v.is_number() || !std::isfinite(v.get<double>())) throw Error(where, "expected a finite number");
          *p = v.get<double>();
        } else {
          if (!v.is_array()) throw Error(where, "expected an array of numbers");
          p->clear();
          for (const auto& x : v) {
            if (!x.is_number() || !std::isfinite(x.get<double>()))
              throw Error(where, "expected an array of finite numbers");
            p->push_back(x.get<double>());
          }
        }
      },
      opt.target);
  opt.set = true;
}

void ArgParser::ApplyJson(const nlohmann::json& config, const std::string& source) {
  if (!config.is_object()) throw Error(source, "a config must be a JSON object");
  for (const auto& item : config.items()) {
    // Named references, not a structured binding: lambdas may not capture
    // those before C++20, and clang (the fuzz stage's compiler) refuses it.
    const std::string& key = item.key();
    const nlohmann::json& value = item.value();
    Option* opt = Find(key);
    if (!opt) throw Error(source, StrCat("unknown key '", key, "'"));
    const std::string where = StrCat(source, ": key '", key, "'");
    if (opt->set) {
      // The command line wins, but a wrong value in the config is still an
      // error: check it by assigning, then put the command line's value back.
      std::visit(
          [&](auto* p) {
            if constexpr (std::is_same_v<std::decay_t<decltype(*p)>, Typed>) {
              const std::string given = p->text();
              AssignJson(*opt, value, where);
              p->assign(given, where);
            } else {
              const auto given = *p;
              AssignJson(*opt, value, where);
              *p = given;
            }
          },
          opt->target);
      continue;
    }
    AssignJson(*opt, value, where);
  }
}

nlohmann::json ArgParser::ToJson() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& opt : options_) {
    out[opt.name] = ValueJson(opt.target);
  }
  return out;
}

nlohmann::json ArgParser::Defaults() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& opt : options_) out[opt.name] = opt.default_value;
  return out;
}

std::string ArgParser::Help() const {
  std::ostringstream os;
  os << "Usage: " << program_ << " " << usage_ << "\n\n" << summary_ << "\n\nOptions:\n";
  for (const auto& opt : options_) {
    std::string head = "  --" + opt.name;
    if (!std::holds_alternative<bool*>(opt.target)) {
      if (!opt.choices.empty()) {
        std::string list;
        for (const auto& c : opt.choices) list += (list.empty() ? "" : "|") + c;
        head += " " + list;
      } else if (const auto* typed = std::get_if<Typed*>(&opt.target)) {
        head += " " + (*typed)->metavar;
      } else {
        head += " VALUE";
      }
    }
    for (const auto& [alias, target] : aliases_) {
      if (target == opt.name) head += ", --" + alias;
    }
    os << head << "\n      " << opt.help << " (default: " << opt.default_text << ")\n";
  }
  os << "  --help\n      Print this help and exit.\n";
  os << "  --print-defaults\n      Print every option's default as a JSON config (a --config template) and exit.\n";
  if (positional_) os << "\nArguments:\n  " << positional_name_ << "\n      " << positional_help_ << "\n";
  return os.str();
}

void InitTool(const char* name) { log::SetProgram(name); }

int ReportFailure(const std::exception& e, bool usage) {
  log::Error(FirstLine(e.what()));
  return usage ? 2 : 1;
}

int ReportUnknownFailure() {
  // Every library error is converted into csr::Error naming the file; an
  // exception of another kind still gets its one line instead of std::terminate.
  log::Error("unexpected non-standard exception (a bug: please report it)");
  return 1;
}

}  // namespace csr
