#include "common/base/fs.h"

#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include "common/base/error.h"
#include "tests/test_expect.h"
#include "tests/test_util.h"

namespace csr {
namespace {

void WritePlain(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
}

std::string Slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Every entry of `dir`, by file name.
std::vector<std::string> Entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  return out;
}

using test::ExpectError;

TEST_CASE("fs: AtomicFile leaves the old file intact until Commit, then replaces it and leaves no temp") {
  test::TempDir dir;
  const fs::path target = dir / "out.txt";
  WritePlain(target, "old");
  {
    AtomicFile out(target);
    CHECK(out.final_path() == target);
    CHECK(out.temp_path().parent_path() == target.parent_path());
    CHECK(out.temp_path() != target);
    CHECK(IsAtomicTemp(out.temp_path()));
    WritePlain(out.temp_path(), "new content");
    CHECK(Slurp(target) == "old");
    CHECK(Entries(dir.path()).size() == 2);
    out.Commit();
    CHECK(Slurp(target) == "new content");
    CHECK_FALSE(fs::exists(out.temp_path()));
  }
  CHECK(Slurp(target) == "new content");
  CHECK(Entries(dir.path()) == std::vector<std::string>{"out.txt"});
}

TEST_CASE("fs: AtomicFile destroyed without Commit removes its temp and keeps the old file") {
  test::TempDir dir;
  const fs::path target = dir / "keep.txt";
  WritePlain(target, "old");
  fs::path temp;
  {
    AtomicFile out(target);
    temp = out.temp_path();
    WritePlain(temp, "half-written");
    REQUIRE(fs::exists(temp));
  }
  CHECK_FALSE(fs::exists(temp));
  CHECK(Slurp(target) == "old");
  CHECK(Entries(dir.path()) == std::vector<std::string>{"keep.txt"});
}

TEST_CASE("fs: AtomicFile without Commit creates no final file where none existed") {
  test::TempDir dir;
  {
    AtomicFile out(dir / "new.txt");
    WritePlain(out.temp_path(), "x");
  }
  CHECK(Entries(dir.path()).empty());
}

TEST_CASE("fs: two AtomicFiles for one path use different temporaries") {
  test::TempDir dir;
  AtomicFile a(dir / "x.txt");
  AtomicFile b(dir / "x.txt");
  CHECK(a.temp_path() != b.temp_path());
}

TEST_CASE("fs: Commit with nothing written throws an Error naming the final path") {
  test::TempDir dir;
  AtomicFile out(dir / "never.txt");
  ExpectError([&] { out.Commit(); }, "never.txt");
}

TEST_CASE("fs: IsAtomicTemp recognises temporaries only") {
  test::TempDir dir;
  AtomicFile out(dir / "IMG_1.h5");
  CHECK(IsAtomicTemp(out.temp_path()));
  CHECK(IsAtomicTemp(out.temp_path().filename()));
  CHECK_FALSE(IsAtomicTemp(dir / "IMG_1.h5"));
  CHECK_FALSE(IsAtomicTemp("manifest.json"));
  CHECK_FALSE(IsAtomicTemp("a.tmp/IMG_1.h5"));
}

TEST_CASE("fs: WriteTextFileAtomic writes and overwrites the whole text, leaving no temp") {
  test::TempDir dir;
  const fs::path p = dir / "config.json";
  WriteTextFileAtomic(p, "first, a long line of text\n");
  CHECK(Slurp(p) == "first, a long line of text\n");
  WriteTextFileAtomic(p, std::string("b\0c", 3));
  CHECK(Slurp(p) == std::string("b\0c", 3));
  CHECK(ReadTextFile(p) == std::string("b\0c", 3));
  CHECK(Entries(dir.path()) == std::vector<std::string>{"config.json"});
}

TEST_CASE("fs: WriteTextFileAtomic into a missing folder throws an Error naming the file") {
  test::TempDir dir;
  ExpectError([&] { WriteTextFileAtomic(dir / "no_such_dir" / "x.txt", "x"); }, "x.txt");
}

TEST_CASE("fs: ReadTextFile on a missing file throws an Error naming the path") {
  test::TempDir dir;
  const fs::path p = dir / "missing.json";
  ExpectError([&] { ReadTextFile(p); }, p.string());
}

TEST_CASE("fs: ReadTextFile on a folder throws an Error naming it") {
  test::TempDir dir;
  ExpectError([&] { ReadTextFile(dir.path()); }, dir.path().string());
}

TEST_CASE("fs: MakeDirs creates nested folders and accepts existing ones") {
  test::TempDir dir;
  const fs::path p = dir / "a" / "b" / "c";
  MakeDirs(p);
  CHECK(fs::is_directory(p));
  MakeDirs(p);
  CHECK(fs::is_directory(p));
}

TEST_CASE("fs: MakeDirs below or onto a regular file throws an Error naming the folder") {
  test::TempDir dir;
  const fs::path file = dir / "plain.txt";
  WritePlain(file, "x");
  const fs::path below = file / "sub";
  ExpectError([&] { MakeDirs(below); }, below.string());
  ExpectError([&] { MakeDirs(file); }, file.string());
}

}  // namespace
TEST_CASE("fs: Crc32 is the standard CRC-32 (zlib.crc32), and continues across pieces") {
  const std::string s = "123456789";
  CHECK(Crc32(s.data(), s.size()) == 0xCBF43926u);
  CHECK(Crc32(s.data() + 4, 5, Crc32(s.data(), 4)) == 0xCBF43926u);
  CHECK(Crc32(nullptr, 0) == 0u);
}

}  // namespace csr
