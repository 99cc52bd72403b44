#include "common/base/cli.h"

#include <doctest/doctest.h>

#include <unistd.h>
#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <initializer_list>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/base/error.h"
#include "common/base/log.h"

#include "tests/test_expect.h"

namespace csr {
namespace {

// A typical tool's options: in-class defaults are what --help reports.
struct Opts {
  std::string root = "ShanghaiTech";
  std::string part = "A";
  int threads = 0;
  int64_t seed = 42;
  double sigma = 15.0;
  std::vector<double> scales = {0.5, 1.0};
  bool overwrite = false;
  std::string empty;
  std::vector<std::string> inputs;
};

// Binds every field of `o` to `p`.
void Bind(ArgParser& p, Opts& o, bool positional = true) {
  p.Add("root", &o.root, "Dataset root");
  p.AddChoice("part", &o.part, {"A", "B"}, "ShanghaiTech part");
  p.Add("threads", &o.threads, "Worker threads");
  p.Add("seed", &o.seed, "Random seed");
  p.Add("sigma", &o.sigma, "Kernel sigma");
  p.Add("scales", &o.scales, "Scales");
  p.Add("overwrite", &o.overwrite, "Regenerate outputs");
  p.Add("empty_default", &o.empty, "A string whose default is empty");
  if (positional) p.AddPositional("FILE", &o.inputs, "Input files");
}

// Parses `args` (program name prepended) into a fresh Opts.
struct Parsed {
  Opts opts;
  bool ok = false;
};
Parsed ParseArgs(std::initializer_list<const char*> args) {
  Parsed r;
  ArgParser p("tool", "[options] FILE...", "Test tool.");
  Bind(p, r.opts);
  std::vector<const char*> argv = {"tool"};
  argv.insert(argv.end(), args.begin(), args.end());
  r.ok = p.Parse(static_cast<int>(argv.size()), argv.data());
  return r;
}

// `args` must fail with a UsageError whose text contains `fragment`.
void ExpectUsage(std::initializer_list<const char*> args, const std::string& fragment) {
  try {
    ParseArgs(args);
    FAIL("no UsageError; expected one containing: " << fragment);
  } catch (const UsageError& e) {
    INFO("message: " << e.what());
    CHECK(std::string(e.what()).find(fragment) != std::string::npos);
  }
}

// What `fn` prints on std::cout (--help goes there, for piping into less).
template <typename Fn>
std::string CaptureStdout(Fn&& fn) {
  std::ostringstream captured;
  std::streambuf* old = std::cout.rdbuf(captured.rdbuf());
  try {
    fn();
  } catch (...) {
    std::cout.rdbuf(old);
    throw;
  }
  std::cout.rdbuf(old);
  return captured.str();
}

// `fn` must throw csr::Error (not only UsageError) containing all `fragments`.
using test::ExpectError;

TEST_CASE("cli: options not given keep their in-class defaults") {
  const Parsed r = ParseArgs({});
  CHECK(r.ok);
  CHECK(r.opts.root == "ShanghaiTech");
  CHECK(r.opts.part == "A");
  CHECK(r.opts.threads == 0);
  CHECK(r.opts.seed == 42);
  CHECK(r.opts.sigma == 15.0);
  CHECK(r.opts.scales == std::vector<double>{0.5, 1.0});
  CHECK_FALSE(r.opts.overwrite);
  CHECK(r.opts.inputs.empty());
}

TEST_CASE("cli: --name value and --name=value both assign, underscores and dashes are one name") {
  const Parsed r = ParseArgs({"--root", "/data/st", "--threads=3", "--seed", "-7", "--sigma=2.5", "--scales",
                              "1,2,0.25", "--empty-default=x"});
  CHECK(r.ok);
  CHECK(r.opts.root == "/data/st");
  CHECK(r.opts.threads == 3);
  CHECK(r.opts.seed == -7);
  CHECK(r.opts.sigma == 2.5);
  CHECK(r.opts.scales == std::vector<double>{1, 2, 0.25});
  CHECK(r.opts.empty == "x");
}

TEST_CASE("cli: a flag is true when present and accepts an explicit =false") {
  CHECK(ParseArgs({"--overwrite"}).opts.overwrite);
  CHECK_FALSE(ParseArgs({"--overwrite=false"}).opts.overwrite);
  CHECK(ParseArgs({"--overwrite=true"}).opts.overwrite);
  ExpectUsage({"--overwrite=maybe"}, "--overwrite");
}

TEST_CASE("cli: a choice rejects values outside its list with a UsageError naming the option") {
  CHECK(ParseArgs({"--part", "B"}).opts.part == "B");
  ExpectUsage({"--part", "C"}, "--part");
  ExpectUsage({"--part=a"}, "'a'");
}

TEST_CASE("cli: integers reject junk, empty text and out-of-range values") {
  for (const char* bad : {"12x", "", "nan", "1.5", "x"}) {
    INFO("value: '" << bad << "'");
    ExpectUsage({"--threads", bad}, "--threads");
    ExpectUsage({"--seed", bad}, "--seed");
  }
  ExpectUsage({"--threads", "3000000000"}, "--threads");
  ExpectUsage({"--seed", "99999999999999999999"}, "--seed");
}

TEST_CASE("cli: doubles reject junk, empty text, nan and inf") {
  for (const char* bad : {"12x", "", "nan", "inf", "-inf", "1.0.0"}) {
    INFO("value: '" << bad << "'");
    ExpectUsage({"--sigma", bad}, "--sigma");
  }
  ExpectUsage({"--scales", "1,nan"}, "--scales");
}

TEST_CASE("cli: an unknown option is a UsageError naming it") {
  ExpectUsage({"--no-such-option", "1"}, "--no-such-option");
  ExpectUsage({"--no-such-option=1"}, "--no-such-option");
}

TEST_CASE("cli: an option without its value is a UsageError saying so") {
  ExpectUsage({"--threads"}, "missing value");
  ExpectUsage({"--root"}, "--root");
  // The next option is not swallowed as the value.
  ExpectUsage({"--root", "--overwrite"}, "missing value");
}

TEST_CASE("cli: --help returns false and lists every option with its default") {
  Opts o;
  ArgParser p("tool", "[options] FILE...", "Test tool.");
  Bind(p, o);
  p.AddAlias("workers", "threads");
  const char* argv[] = {"tool", "--threads", "5", "--help"};
  const std::string printed = CaptureStdout([&] { CHECK_FALSE(p.Parse(4, argv)); });
  const std::string help = p.Help();
  CHECK(printed == help);
  INFO(help);
  for (const char* line :
       {"--root VALUE", "(default: ShanghaiTech)", "--part A|B", "(default: A)", "--threads VALUE, --workers",
        "(default: 0)", "--seed VALUE", "(default: 42)", "--sigma VALUE", "(default: 15)", "--scales VALUE",
        "(default: 0.5,1)", "--overwrite\n", "(default: false)", "--empty-default VALUE", "(default: \"\")", "--help",
        "FILE", "Input files"}) {
    CHECK_MESSAGE(help.find(line) != std::string::npos, "help lacks: " << line);
  }
  // Defaults are the values at registration, not what the command line set.
  CHECK(help.find("(default: 5)") == std::string::npos);
  const char* argv_h[] = {"tool", "-h"};
  CHECK(CaptureStdout([&] { CHECK_FALSE(p.Parse(2, argv_h)); }) == help);
}

TEST_CASE("cli: arguments that are not options are collected in order, also after --") {
  const Parsed r = ParseArgs({"a.jpg", "--threads", "2", "b.jpg", "--", "--c.jpg", "-d"});
  CHECK(r.opts.inputs == std::vector<std::string>{"a.jpg", "b.jpg", "--c.jpg", "-d"});
  CHECK(r.opts.threads == 2);
}

TEST_CASE("cli: a positional argument is a UsageError when the tool takes none") {
  Opts o;
  ArgParser p("tool", "[options]", "Test tool.");
  Bind(p, o, /*positional=*/false);
  const char* argv[] = {"tool", "stray"};
  CHECK_THROWS_AS(p.Parse(2, argv), UsageError);
}

TEST_CASE("cli: an alias sets the option it names") {
  Opts o;
  ArgParser p("tool", "", "");
  Bind(p, o);
  p.AddAlias("pre", "root");
  const char* argv[] = {"tool", "--pre=/x"};
  REQUIRE(p.Parse(2, argv));
  CHECK(o.root == "/x");
  CHECK(p.IsSet("root"));
  CHECK(p.IsSet("pre"));
  CHECK_FALSE(p.IsSet("threads"));
}

TEST_CASE("cli: ApplyJson fills options from a config, the command line wins") {
  Opts o;
  ArgParser p("tool", "", "");
  Bind(p, o);
  const char* argv[] = {"tool", "--threads", "2"};
  REQUIRE(p.Parse(3, argv));
  const auto config = nlohmann::json::parse(R"({"threads": 8, "seed": 7, "sigma": 4, "part": "B",
      "overwrite": true, "scales": [1.5, 3], "empty_default": "z"})");
  p.ApplyJson(config, "cfg.json");
  CHECK(o.threads == 2);  // the command line
  CHECK(o.seed == 7);
  CHECK(o.sigma == 4.0);
  CHECK(o.part == "B");
  CHECK(o.overwrite);
  CHECK(o.scales == std::vector<double>{1.5, 3});
  CHECK(o.empty == "z");
  CHECK(p.IsSet("seed"));
}

TEST_CASE("cli: a config value of the wrong type is an error even when the command line sets that option") {
  Opts o;
  ArgParser p("tool", "", "");
  Bind(p, o);
  const char* argv[] = {"tool", "--sigma", "2"};
  REQUIRE(p.Parse(3, argv));
  ExpectError([&] { p.ApplyJson(nlohmann::json::parse(R"({"sigma": "fast"})"), "cfg.json"); }, {"cfg.json", "sigma"});
  p.ApplyJson(nlohmann::json::parse(R"({"sigma": 9})"), "cfg.json");
  CHECK(o.sigma == 2.0);  // a valid config value still loses to the command line
}

TEST_CASE("cli: ApplyJson rejects an unknown key naming the file and the key") {
  Opts o;
  ArgParser p("tool", "", "");
  Bind(p, o);
  ExpectError([&] { p.ApplyJson(nlohmann::json::parse(R"({"thread": 3})"), "configs/x.json"); },
              {"configs/x.json", "thread"});
  ExpectError([&] { p.ApplyJson(nlohmann::json::parse("[1, 2]"), "configs/y.json"); }, {"configs/y.json"});
}

TEST_CASE("cli: ApplyJson rejects values of the wrong type naming the file and the key") {
  struct Case {
    const char* json;
    const char* key;
  };
  for (const Case& c : {Case{R"({"threads": "4"})", "threads"}, Case{R"({"threads": 2.5})", "threads"},
                        Case{R"({"threads": 5000000000})", "threads"}, Case{R"({"seed": true})", "seed"},
                        Case{R"({"sigma": "15"})", "sigma"}, Case{R"({"overwrite": 1})", "overwrite"},
                        Case{R"({"overwrite": "true"})", "overwrite"}, Case{R"({"root": 3})", "root"},
                        Case{R"({"scales": 1.0})", "scales"}, Case{R"({"scales": [1, "2"]})", "scales"},
                        Case{R"({"part": "C"})", "part"}}) {
    INFO("config: " << c.json);
    Opts o;
    ArgParser p("tool", "", "");
    Bind(p, o);
    ExpectError([&] { p.ApplyJson(nlohmann::json::parse(c.json), "bad.json"); }, {"bad.json", c.key});
  }
}

TEST_CASE("cli: ToJson output applied to a fresh parser reproduces every value") {
  Opts a;
  ArgParser pa("tool", "", "");
  Bind(pa, a);
  const char* argv[] = {"tool",   "--root", "/r",      "--part", "B",        "--threads", "3",
                        "--seed", "-9",     "--sigma", "0.1",    "--scales", "0.3,7",     "--overwrite"};
  REQUIRE(pa.Parse(14, argv));
  const nlohmann::json j = pa.ToJson();
  CHECK(j.at("threads") == 3);
  CHECK(j.at("empty-default") == "");
  CHECK_FALSE(j.contains("FILE"));

  Opts b;
  ArgParser pb("tool", "", "");
  Bind(pb, b);
  pb.ApplyJson(nlohmann::json::parse(j.dump()), "effective.json");
  CHECK(b.root == "/r");
  CHECK(b.part == "B");
  CHECK(b.threads == 3);
  CHECK(b.seed == -9);
  CHECK(b.sigma == 0.1);
  CHECK(b.scales == std::vector<double>{0.3, 7});
  CHECK(b.overwrite);
  CHECK(pb.ToJson() == j);
}

// A typed option: an enum, an optional enum with "auto", and a value with its
// own grammar ("N x" for a count), as the tools register theirs.
enum class Colour { kRed, kGreen };
struct TypedOpts {
  Colour colour = Colour::kGreen;
  std::optional<Colour> accent;  // "auto" = nullopt
  int count = 2;
};
void BindTyped(ArgParser& p, TypedOpts& o) {
  p.AddEnum<Colour>("colour", &o.colour, {{"red", Colour::kRed}, {"green", Colour::kGreen}}, "Colour");
  p.AddEnum<std::optional<Colour>>(
      "accent", &o.accent, {{"auto", std::nullopt}, {"red", Colour::kRed}, {"green", Colour::kGreen}}, "Accent");
  p.AddTyped<int>(
      "count", &o.count,
      [](const std::string& text, const std::string& where) {
        if (text.size() < 2 || text.substr(text.size() - 2) != " x") throw UsageError(where, "expected 'N x'");
        return std::stoi(text);
      },
      [](const int& n) { return StrCat(n, " x"); }, "N x", "Count");
}

TEST_CASE("cli: typed options parse once, list their names in --help and round-trip through JSON") {
  TypedOpts o;
  ArgParser p("tool", "", "");
  BindTyped(p, o);
  const std::string help = p.Help();
  CHECK(help.find("--colour red|green") != std::string::npos);
  CHECK(help.find("(default: green)") != std::string::npos);
  CHECK(help.find("--accent auto|red|green") != std::string::npos);
  CHECK(help.find("--count N x") != std::string::npos);
  CHECK(help.find("(default: 2 x)") != std::string::npos);
  CHECK(p.Defaults() == nlohmann::json{{"colour", "green"}, {"accent", "auto"}, {"count", "2 x"}});

  const char* argv[] = {"tool", "--colour", "red", "--accent=green", "--count", "7 x"};
  REQUIRE(p.Parse(6, argv));
  CHECK(o.colour == Colour::kRed);
  CHECK(o.accent == Colour::kGreen);
  CHECK(o.count == 7);
  const nlohmann::json j = p.ToJson();
  CHECK(j == nlohmann::json{{"colour", "red"}, {"accent", "green"}, {"count", "7 x"}});

  TypedOpts b;
  ArgParser pb("tool", "", "");
  BindTyped(pb, b);
  pb.ApplyJson(j, "effective.json");
  CHECK(b.colour == Colour::kRed);
  CHECK(b.accent == Colour::kGreen);
  CHECK(b.count == 7);
}

TEST_CASE("cli: a typed option refuses other spellings naming the option, and a bad config value is still caught") {
  TypedOpts o;
  ArgParser p("tool", "", "");
  BindTyped(p, o);
  const char* bad_enum[] = {"tool", "--colour", "blue"};
  test::ExpectError([&] { p.Parse(3, bad_enum); }, {"--colour", "expected one of red|green, got 'blue'"});
  const char* bad_typed[] = {"tool", "--count", "7"};
  test::ExpectError([&] { p.Parse(3, bad_typed); }, {"--count", "expected 'N x'"});
  CHECK(o.colour == Colour::kGreen);

  // The command line wins over the config, but the config's value is checked.
  const char* argv[] = {"tool", "--colour", "red"};
  REQUIRE(p.Parse(3, argv));
  test::ExpectError([&] { p.ApplyJson({{"colour", "blue"}}, "c.json"); }, {"c.json", "colour", "'blue'"});
  test::ExpectError([&] { p.ApplyJson({{"colour", 3}}, "c.json"); }, {"c.json", "expected a string"});
  p.ApplyJson({{"colour", "green"}, {"accent", "red"}}, "c.json");
  CHECK(o.colour == Colour::kRed);
  CHECK(o.accent == Colour::kRed);
}

TEST_CASE("cli: RunTool returns 2 for a UsageError, 1 for other errors and the body's code otherwise") {
  CHECK(RunTool("cli_test", [] { return 0; }) == 0);
  CHECK(RunTool("cli_test", [] { return 3; }) == 3);
  CHECK(RunTool("cli_test", []() -> int { throw UsageError("--x", "bad"); }) == 2);
  CHECK(RunTool("cli_test", []() -> int { throw Error("f.txt", "bad"); }) == 1);
  CHECK(RunTool("cli_test", []() -> int { throw std::runtime_error("boom"); }) == 1);
  // A usage error reached through the parser, as a real tool meets it.
  CHECK(RunTool("cli_test", [] {
          Parsed r = ParseArgs({"--part", "Z"});
          return r.ok ? 0 : 5;
        }) == 2);
}

}  // namespace
}  // namespace csr

namespace csr {
namespace {

// Runs `fn` in a child process with stderr captured: its exit status (or
// 128 + the signal that ended it) and what it printed.
struct ChildResult {
  int status = -1;
  std::string stderr_text;
};

template <typename Fn>
ChildResult InChild(Fn&& fn) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::signal(SIGABRT, SIG_DFL);  // doctest's crash handler is not for an expected abort
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    ::close(fds[1]);
    const int rc = fn();
    std::fflush(nullptr);
    ::_exit(rc);
  }
  ::close(fds[1]);
  ChildResult r;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) r.stderr_text.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

TEST_CASE("cli: RunTool turns a non-standard exception into one line, exit 1") {
  const ChildResult r = InChild([] { return RunTool("cli_test", []() -> int { throw 42; }); });
  CHECK(r.status == 1);
  CHECK(r.stderr_text.find("cli_test: error: unexpected non-standard exception") == 0);
  CHECK(std::count(r.stderr_text.begin(), r.stderr_text.end(), '\n') == 1);
}

TEST_CASE("cli: RunTool prints only the first line of a message (LibTorch appends a backtrace)") {
  const ChildResult r = InChild([] {
    return RunTool("cli_test", []() -> int {
      throw std::runtime_error("weights.pt: bad tensor\nException raised from load at x.cpp:1\nframe #0: ...");
    });
  });
  CHECK(r.status == 1);
  CHECK(r.stderr_text == "cli_test: error: weights.pt: bad tensor\n");
}

TEST_CASE("CSR_ASSERT aborts with file:line and the condition in every build type, and is quiet when it holds") {
  const ChildResult r = InChild([] {
    log::SetProgram("cli_test");
    const int rows = 3;
    CSR_ASSERT(rows == 4, "rows is ", rows);
    return 0;
  });
  CHECK(r.status == 128 + SIGABRT);
  CHECK(r.stderr_text.find("cli_test: internal error at ") == 0);
  CHECK(r.stderr_text.find("cli_test.cpp:") != std::string::npos);
  CHECK(r.stderr_text.find("`rows == 4` does not hold: rows is 3") != std::string::npos);
  CHECK(InChild([] {
          CSR_ASSERT(1 + 1 == 2, "arithmetic");
          return 0;
        }).status == 0);
}

}  // namespace
}  // namespace csr
