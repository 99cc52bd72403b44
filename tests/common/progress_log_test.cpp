#include <fcntl.h>
#include <unistd.h>
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/base/log.h"
#include "common/base/progress.h"
#include "tests/test_skip.h"
#include "tests/test_util.h"

namespace csr {
namespace {

namespace fs = std::filesystem;

// Points file descriptor 2 at `target` (a file or a terminal) for its
// lifetime. Progress decides tty or not when it is constructed, so construct
// it inside the redirection.
class StderrTo {
 public:
  explicit StderrTo(int target_fd) {
    std::cerr.flush();
    std::fflush(stderr);
    saved_ = ::dup(STDERR_FILENO);
    REQUIRE(saved_ >= 0);
    REQUIRE(::dup2(target_fd, STDERR_FILENO) >= 0);
  }
  ~StderrTo() {
    std::cerr.flush();
    std::fflush(stderr);
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
  }

 private:
  int saved_ = -1;
};

// Runs `fn` with stderr going to a temporary file; returns what it wrote.
template <typename Fn>
std::string CaptureStderr(Fn&& fn) {
  test::TempDir dir;
  const fs::path p = dir / "stderr.txt";
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(fd >= 0);
  {
    StderrTo redirect(fd);
    fn();
  }
  ::close(fd);
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream ss(text);
  for (std::string line; std::getline(ss, line);) out.push_back(line);
  return out;
}

bool Contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST_CASE("progress: off a terminal it prints one plain line per tenth, then a final line saying done") {
  const std::string out = CaptureStderr([] {
    Progress p("density maps", 100);
    for (int i = 0; i < 100; ++i) p.Tick();
    p.Finish();
  });
  INFO("stderr:\n" << out);
  CHECK_FALSE(Contains(out, "\r"));
  CHECK_FALSE(Contains(out, "\033"));
  const std::vector<std::string> lines = Lines(out);
  REQUIRE(lines.size() == 11);
  for (const std::string& line : lines) CHECK(line.rfind("density maps: ", 0) == 0);
  CHECK(Contains(lines[0], "1/100"));
  CHECK(Contains(lines[1], "10/100 ( 10%)"));
  CHECK(Contains(lines[5], "50/100 ( 50%)"));
  CHECK(Contains(lines.back(), "100/100 done"));
  CHECK(out.back() == '\n');
}

TEST_CASE("progress: Finish is idempotent and the destructor finishes an unfinished bar once") {
  const std::string twice = CaptureStderr([] {
    Progress p("maps", 4);
    p.Tick(4);
    p.Finish();
    p.Finish();
    p.Tick();  // ignored after Finish
  });
  INFO("stderr:\n" << twice);
  CHECK(Lines(twice).size() == 1);
  CHECK(Contains(twice, "4/4 done"));

  const std::string by_destructor = CaptureStderr([] { Progress p("maps", 0); });
  CHECK(Lines(by_destructor).size() == 1);
  CHECK(Contains(by_destructor, "maps: 0/0 done"));
}

TEST_CASE("progress: ticks from several threads are all counted") {
  const std::string out = CaptureStderr([] {
    Progress p("crops", 4000);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 1000; ++i) p.Tick();
      });
    }
    for (auto& t : threads) t.join();
    p.Finish();
  });
  INFO("stderr:\n" << out);
  const std::vector<std::string> lines = Lines(out);
  REQUIRE_FALSE(lines.empty());
  CHECK(lines.size() <= 11);
  CHECK(Contains(lines.back(), "4000/4000 done"));
}

TEST_CASE("log: Warn, Error and Info lines start with the program name and their tag") {
  log::SetProgram("gt_gen");
  log::SetLevel(log::Level::kInfo);
  const std::string out = CaptureStderr([] {
    log::Warn("skipped ", 3, " stray file(s)");
    log::Error("IMG_1.jpg: truncated");
    log::Info("wrote ", 2.5, " MB");
    log::Debug("hidden at the default level");
  });
  CHECK(Lines(out) == std::vector<std::string>{"gt_gen: warning: skipped 3 stray file(s)",
                                               "gt_gen: error: IMG_1.jpg: truncated", "gt_gen: wrote 2.5 MB"});
  CHECK(log::Program() == "gt_gen");
}

TEST_CASE("log: the level hides lower messages but never errors") {
  log::SetProgram("crop_shards");
  const std::string out = CaptureStderr([] {
    log::SetLevel(log::Level::kWarning);
    log::Info("info hidden");
    log::Warn("warning shown");
    log::SetLevel(log::Level::kQuiet);
    log::Warn("warning hidden");
    log::Error("error shown");
    log::SetLevel(log::Level::kDebug);
    log::Debug("debug shown");
    log::SetLevel(log::Level::kInfo);
  });
  CHECK(Lines(out) == std::vector<std::string>{"crop_shards: warning: warning shown", "crop_shards: error: error shown",
                                               "crop_shards: debug: debug shown"});
}

TEST_CASE("progress: a log message between progress lines stays on its own line") {
  log::SetProgram("gt_gen");
  const std::string out = CaptureStderr([] {
    Progress p("maps", 2);
    p.Tick();
    log::Warn("IMG_7.jpg: no annotation");
    p.Tick();
    p.Finish();
  });
  const std::vector<std::string> lines = Lines(out);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0].rfind("maps: 1/2 ( 50%) ", 0) == 0);
  CHECK(lines[1] == "gt_gen: warning: IMG_7.jpg: no annotation");
  CHECK(Contains(lines[2], "maps: 2/2 done"));
}

TEST_CASE("progress: on a terminal the bar redraws in place and a log message erases it first" *
          doctest::test_suite("optional")) {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  const bool have_pty = master >= 0 && ::grantpt(master) == 0 && ::unlockpt(master) == 0;
  if (!have_pty && master >= 0) ::close(master);
  CSR_SKIP_UNLESS(have_pty, test::kNeedPty, "no pseudo-terminal available");
  const int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY);
  REQUIRE(slave >= 0);
  log::SetProgram("gt_gen");
  {
    StderrTo redirect(slave);
    Progress p("maps", 2);
    p.Tick(2);  // reaching the total always draws
    log::Warn("late warning");
    p.Finish();
  }
  ::close(slave);
  std::string out;
  char buf[4096];
  ::fcntl(master, F_SETFL, O_NONBLOCK);
  for (ssize_t n; (n = ::read(master, buf, sizeof(buf))) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(master);
  INFO("terminal output: " << out);
  const size_t bar = out.find("\r\033[Kmaps: 2/2 (100%)");
  const size_t erase = out.find("\r\033[Kgt_gen: warning: late warning");
  const size_t done = out.find("\r\033[Kmaps: 2/2 done");
  CHECK(bar != std::string::npos);
  CHECK(erase != std::string::npos);
  CHECK(done != std::string::npos);
  CHECK(bar < erase);
  CHECK(erase < done);
  CHECK(out.back() == '\n');
}

}  // namespace
}  // namespace csr
