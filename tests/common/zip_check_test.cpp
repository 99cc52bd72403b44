// csr::VerifyZipFile / VerifyZipBytes on archives built here byte by byte
// (torch's layout: STORED records with data descriptors, optionally ZIP64
// records, or DEFLATE), then broken in every way a disk or an attacker can.
#include "common/io/zip_check.h"

#include <doctest/doctest.h>

#include <zlib.h>

#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/base/error.h"
#include "tests/test_expect.h"
#include "tests/test_util.h"

namespace csr {
namespace {

using test::ExpectError;
using test::TempDir;

void Put16(std::string& s, uint32_t v) {
  s += static_cast<char>(v & 0xFF);
  s += static_cast<char>((v >> 8) & 0xFF);
}
void Put32(std::string& s, uint32_t v) {
  Put16(s, v & 0xFFFF);
  Put16(s, v >> 16);
}
void Put64(std::string& s, uint64_t v) {
  Put32(s, static_cast<uint32_t>(v));
  Put32(s, static_cast<uint32_t>(v >> 32));
}

uint32_t Crc(const std::string& data) {
  return static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
}

std::string RawDeflate(const std::string& data) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&z, data.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(&out[0]);
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

struct Options {
  bool zip64 = false;    // ZIP64 end records and saturated 32-bit fields with ZIP64 extras
  bool deflate = false;  // DEFLATE instead of STORED
};

// A zip archive as torch (miniz) writes it: local header with zero CRC and
// sizes (bit 3), data, data descriptor; central directory; end records.
std::string BuildZip(const std::vector<std::pair<std::string, std::string>>& files, Options o = {}) {
  struct Rec {
    std::string name;
    uint32_t crc;
    uint64_t comp, uncomp, offset;
  };
  std::vector<Rec> recs;
  std::string z;
  for (const auto& [name, data] : files) {
    const std::string stored = o.deflate ? RawDeflate(data) : data;
    recs.push_back({name, Crc(data), stored.size(), data.size(), z.size()});
    Put32(z, 0x04034b50);
    Put16(z, 20);
    Put16(z, 0x808);
    Put16(z, o.deflate ? 8 : 0);
    Put32(z, 0);  // time, date
    Put32(z, 0);
    Put32(z, 0);
    Put32(z, 0);
    Put16(z, static_cast<uint32_t>(name.size()));
    Put16(z, 4);
    z += name;
    z += std::string("FB\0\0", 4);  // an empty padding extra, like torch's
    z += stored;
    Put32(z, 0x08074b50);
    Put32(z, recs.back().crc);
    Put32(z, static_cast<uint32_t>(stored.size()));
    Put32(z, static_cast<uint32_t>(data.size()));
  }
  const uint64_t cd_offset = z.size();
  for (const Rec& r : recs) {
    Put32(z, 0x02014b50);
    Put16(z, 20);
    Put16(z, 20);
    Put16(z, 0x808);
    Put16(z, o.deflate ? 8 : 0);
    Put32(z, 0);
    Put32(z, r.crc);
    Put32(z, o.zip64 ? 0xFFFFFFFFu : static_cast<uint32_t>(r.comp));
    Put32(z, o.zip64 ? 0xFFFFFFFFu : static_cast<uint32_t>(r.uncomp));
    Put16(z, static_cast<uint32_t>(r.name.size()));
    Put16(z, o.zip64 ? 28 : 0);
    Put16(z, 0);  // comment
    Put16(z, 0);  // disk
    Put16(z, 0);
    Put32(z, 0);
    Put32(z, o.zip64 ? 0xFFFFFFFFu : static_cast<uint32_t>(r.offset));
    z += r.name;
    if (o.zip64) {
      Put16(z, 1);
      Put16(z, 24);
      Put64(z, r.uncomp);
      Put64(z, r.comp);
      Put64(z, r.offset);
    }
  }
  const uint64_t cd_size = z.size() - cd_offset;
  if (o.zip64) {
    const uint64_t at = z.size();
    Put32(z, 0x06064b50);
    Put64(z, 44);
    Put16(z, 45);
    Put16(z, 45);
    Put32(z, 0);
    Put32(z, 0);
    Put64(z, recs.size());
    Put64(z, recs.size());
    Put64(z, cd_size);
    Put64(z, cd_offset);
    Put32(z, 0x07064b50);
    Put32(z, 0);
    Put64(z, at);
    Put32(z, 1);
  }
  Put32(z, 0x06054b50);
  Put32(z, 0);
  Put16(z, o.zip64 ? 0xFFFF : static_cast<uint32_t>(recs.size()));
  Put16(z, o.zip64 ? 0xFFFF : static_cast<uint32_t>(recs.size()));
  Put32(z, o.zip64 ? 0xFFFFFFFFu : static_cast<uint32_t>(cd_size));
  Put32(z, o.zip64 ? 0xFFFFFFFFu : static_cast<uint32_t>(cd_offset));
  Put16(z, 0);
  return z;
}

std::vector<std::pair<std::string, std::string>> SampleFiles() {
  std::string tensor;
  for (int i = 0; i < 5000; ++i) tensor += static_cast<char>(i * 7 % 251);
  return {{"archive/data.pkl", "\x80\x02}q\x00." + std::string(100, 'p')},
          {"archive/data/0", tensor},
          {"archive/version", "3\n"}};
}

void Verify(const std::string& bytes, const std::string& where = "test.pt") {
  VerifyZipBytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), where);
}

std::string ErrorOf(const std::string& bytes) {
  return test::ErrorOf([&] { Verify(bytes); });
}

// Offset of the central directory entry of the n-th record.
size_t CentralEntry(const std::string& z, int n) {
  size_t at = z.find("PK\x01\x02");
  for (int i = 0; i < n; ++i) at = z.find("PK\x01\x02", at + 1);
  REQUIRE(at != std::string::npos);
  return at;
}

void Set32(std::string& z, size_t at, uint32_t v) {
  std::string b;
  Put32(b, v);
  z.replace(at, 4, b);
}

TEST_CASE("valid archives pass: stored, ZIP64 records, deflate") {
  for (Options o : {Options{false, false}, Options{true, false}, Options{false, true}, Options{true, true}}) {
    INFO("zip64 " << o.zip64 << ", deflate " << o.deflate);
    const std::string z = BuildZip(SampleFiles(), o);
    CHECK(ErrorOf(z).empty());
  }
  // A file on disk, through the streaming reader.
  TempDir tmp;
  const std::string path = (tmp / "ok.pt").string();
  std::ofstream(path, std::ios::binary) << BuildZip(SampleFiles(), {true, false});
  CHECK_NOTHROW(VerifyZipFile(path));
}

TEST_CASE("flipped bytes inside a record are a checksum mismatch naming the record") {
  for (bool zip64 : {false, true}) {
    std::string z = BuildZip(SampleFiles(), {zip64, false});
    const size_t middle = z.find("archive/data/0") + 14 + 4 + 2500;
    for (size_t i = 0; i < 256; ++i) z[middle - 128 + i] = static_cast<char>(~z[middle - 128 + i]);
    ExpectError([&] { Verify(z); }, {"test.pt: ", "checksum mismatch in archive/data/0 (corrupt file)"});
  }
  // A wrong CRC in the central directory.
  std::string z = BuildZip(SampleFiles());
  const size_t e = CentralEntry(z, 2);
  z[e + 16] ^= 1;
  ExpectError([&] { Verify(z); }, "checksum mismatch in archive/version");
  // Deflated data corrupted: either zlib or the CRC notices.
  std::string d = BuildZip(SampleFiles(), {false, true});
  d[d.find("archive/data/0") + 14 + 4 + 20] ^= 0x55;
  CHECK_FALSE(ErrorOf(d).empty());
}

TEST_CASE("empty, garbage, truncated and padded files are refused") {
  CHECK(ErrorOf("").find("empty file") != std::string::npos);
  CHECK(ErrorOf("PK").find("too short") != std::string::npos);
  CHECK(ErrorOf(std::string(5000, 'x')).find("no zip end-of-central-directory") != std::string::npos);
  const std::string z = BuildZip(SampleFiles(), {true, false});
  // Every truncation fails (the end record is at the very end).
  for (size_t n = 0; n < z.size(); ++n) {
    INFO("truncated to " << n);
    CHECK_FALSE(ErrorOf(z.substr(0, n)).empty());
  }
  CHECK_FALSE(ErrorOf(z + "trailing").empty());
  CHECK_FALSE(ErrorOf("junk" + z).empty());  // every offset is off by 4
}

TEST_CASE("out-of-range offsets, sizes and lengths in a hand-built zip are refused") {
  const std::string good = BuildZip(SampleFiles());
  const size_t eocd = good.size() - 22;
  auto broken = [&](size_t at, uint32_t value, bool wide = true) {
    std::string z = good;
    if (wide) {
      Set32(z, at, value);
    } else {
      z[at] = static_cast<char>(value & 0xFF);
      z[at + 1] = static_cast<char>(value >> 8);
    }
    return ErrorOf(z);
  };
  const size_t e1 = CentralEntry(good, 1);
  CHECK(broken(eocd + 16, 0xFFFFFFF0u).find("central directory out of range") != std::string::npos);  // cd offset
  CHECK(broken(eocd + 12, 0x7FFFFFFFu).find("central directory out of range") != std::string::npos);  // cd size
  CHECK_FALSE(broken(eocd + 8, 0xFFFF, false).empty());                                               // entry count
  CHECK_FALSE(broken(eocd + 10, 0xFFFF, false).empty());
  CHECK_FALSE(broken(eocd + 10, 0, false).empty());
  CHECK(broken(e1 + 42, 0xFFFFFF00u).find("archive/data/0 starts out of range") != std::string::npos);
  CHECK(broken(e1 + 42, 0).find("archive/data/0") != std::string::npos);                // points at record 0
  CHECK(broken(e1 + 20, 0x7FFFFFF0u).find("inconsistent sizes") != std::string::npos);  // comp size
  {
    std::string z = good;  // both sizes huge and equal: past the directory
    Set32(z, e1 + 20, 0x7FFFFFF0u);
    Set32(z, e1 + 24, 0x7FFFFFF0u);
    CHECK(ErrorOf(z).find("runs past its bounds") != std::string::npos);
  }
  {
    std::string z = good;  // record 1 grown over record 2: overlap
    Set32(z, e1 + 20, 5030);
    Set32(z, e1 + 24, 5030);
    CHECK(ErrorOf(z).find("overlap") != std::string::npos);
  }
  CHECK_FALSE(broken(e1 + 28, 0xFFFF, false).empty());  // name length
  CHECK_FALSE(broken(e1 + 30, 0xFFFF, false).empty());  // extra length
  CHECK_FALSE(broken(e1 + 32, 0xFFFF, false).empty());  // comment length
  CHECK(broken(e1 + 10, 12, false).find("compression method 12") != std::string::npos);
  CHECK(broken(e1 + 8, 0x809, false).find("encrypted") != std::string::npos);
  CHECK(broken(0, 0x12345678u).find("corrupt local header of record archive/data.pkl") != std::string::npos);
  CHECK(ErrorOf(BuildZip({{"a/x", "1"}, {"a/x", "2"}})).find("a/x appears twice") != std::string::npos);
}

TEST_CASE("broken ZIP64 records are refused") {
  const std::string good = BuildZip(SampleFiles(), {true, false});
  const size_t locator = good.size() - 22 - 20, record = good.size() - 22 - 20 - 56;
  auto broken = [&](size_t at, uint64_t value) {
    std::string z = good;
    std::string b;
    Put64(b, value);
    z.replace(at, 8, b);
    return ErrorOf(z);
  };
  CHECK_FALSE(broken(locator + 8, 0xFFFFFFFFFFFFull).empty());  // record offset
  CHECK_FALSE(broken(locator + 8, locator - 10).empty());
  CHECK_FALSE(broken(record + 4, 0xFFFFFFFFFFFFFFFFull).empty());   // record size
  CHECK_FALSE(broken(record + 40, 0xFFFFFFFFFFFFFFF0ull).empty());  // cd size
  CHECK_FALSE(broken(record + 48, 0xFFFFFFFFFFFFFFF0ull).empty());  // cd offset
  CHECK_FALSE(broken(record + 32, 1ull << 60).empty());             // entries
  const size_t e1 = CentralEntry(good, 1);
  CHECK_FALSE(broken(e1 + 46 + 14 + 4 + 16, 1ull << 62).empty());  // ZIP64 local header offset
  CHECK_FALSE(broken(e1 + 46 + 14 + 4, 1ull << 62).empty());       // ZIP64 uncompressed size
}

// A cheap in-process fuzz pass (the real one is libFuzzer + ASan over
// VerifyZipBytes): random byte edits must give a clean csr::Error or pass,
// never a crash or an out-of-bounds read (run under CSR_SANITIZE to see those).
TEST_CASE("random corruption never crashes") {
  std::mt19937 rng(7);
  int refused = 0;
  for (Options o : {Options{false, false}, Options{true, false}, Options{false, true}}) {
    const std::string good = BuildZip(SampleFiles(), o);
    for (int round = 0; round < 1500; ++round) {
      std::string z = good;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < edits; ++k) {
        // Mostly the metadata at the ends, where the offsets live.
        const size_t at = rng() % 2 ? z.size() - 1 - rng() % std::min<size_t>(z.size(), 400) : rng() % z.size();
        z[at] = static_cast<char>(rng() % 3 == 0 ? 0xFF : rng());
      }
      if (rng() % 8 == 0) z.resize(rng() % z.size());
      try {
        Verify(z);
      } catch (const Error&) {
        ++refused;
      }
    }
  }
  MESSAGE(refused << " of 4500 corrupted archives refused (the rest changed nothing torch reads)");
  CHECK(refused > 3000);
}

TEST_CASE("missing or unreadable files name the path") {
  TempDir tmp;
  ExpectError([&] { VerifyZipFile((tmp / "absent.pt").string()); }, {"absent.pt", "cannot open"});
  const std::string empty = (tmp / "empty.pt").string();
  std::ofstream(empty).close();
  ExpectError([&] { VerifyZipFile(empty); }, {"empty.pt", "empty file"});
}

}  // namespace
}  // namespace csr
