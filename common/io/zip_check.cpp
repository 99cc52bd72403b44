#include "common/io/zip_check.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <vector>

#include <zlib.h>

#include "common/base/error.h"

namespace csr {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr size_t kEndSize = 22, kZip64EndSize = 56, kLocatorSize = 20, kCentralSize = 46, kLocalSize = 30;
constexpr uint32_t kSat32 = 0xFFFFFFFFu;
constexpr uint16_t kSat16 = 0xFFFFu;
constexpr size_t kBlock = 1 << 20;  // streaming block for the CRC pass

uint16_t U16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t U32(const uint8_t* p) { return static_cast<uint32_t>(U16(p)) | (static_cast<uint32_t>(U16(p + 2)) << 16); }
uint64_t U64(const uint8_t* p) { return static_cast<uint64_t>(U32(p)) | (static_cast<uint64_t>(U32(p + 4)) << 32); }

// Where the bytes come from: memory (tests, fuzzing) or a file read with
// pread, so the same parser serves both.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual uint64_t size() const = 0;
  // Reads exactly n bytes at off; the caller has checked off + n <= size().
  virtual void Read(uint64_t off, size_t n, uint8_t* out) const = 0;
};

class MemorySource : public ByteSource {
 public:
  MemorySource(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint64_t size() const override { return size_; }
  void Read(uint64_t off, size_t n, uint8_t* out) const override {
    if (n > 0) std::memcpy(out, data_ + off, n);
  }

 private:
  const uint8_t* data_;
  size_t size_;
};

class FileSource : public ByteSource {
 public:
  explicit FileSource(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw Error(path, StrCat("cannot open: ", std::strerror(errno)));
    const off_t end = ::lseek(fd_, 0, SEEK_END);
    if (end < 0) {
      ::close(fd_);
      throw Error(path, "cannot read (not a regular file?)");
    }
    size_ = static_cast<uint64_t>(end);
  }
  ~FileSource() override { ::close(fd_); }
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;
  uint64_t size() const override { return size_; }
  void Read(uint64_t off, size_t n, uint8_t* out) const override {
    while (n > 0) {
      const ssize_t got = ::pread(fd_, out, n, static_cast<off_t>(off));
      if (got < 0 && errno == EINTR) continue;
      // A file that shrank under us reads short: as corrupt as a truncated one.
      if (got <= 0)
        throw Error(path_, got < 0 ? StrCat("read error: ", std::strerror(errno)) : "file shrank while read");
      out += got;
      off += static_cast<uint64_t>(got);
      n -= static_cast<size_t>(got);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

struct Entry {
  std::string name;
  uint16_t flags = 0, method = 0;
  uint32_t crc = 0;
  uint64_t comp = 0, uncomp = 0, local = 0;
  uint64_t data_begin = 0, data_end = 0;
};

struct Directory {
  uint64_t entries = 0, offset = 0, size = 0;
};

class Verifier {
 public:
  Verifier(const ByteSource& src, std::string where) : src_(src), where_(std::move(where)) {}

  void Run() {
    const Directory dir = FindDirectory();
    std::vector<Entry> entries = ReadEntries(dir);
    for (Entry& e : entries) ReadLocalHeader(e, dir.offset);
    CheckOverlaps(entries);
    for (const Entry& e : entries) CheckData(e);
  }

 private:
  [[noreturn]] void Fail(const std::string& reason) const { throw Error(where_, reason); }

  // off + n within the file, written so that it cannot overflow.
  bool InFile(uint64_t off, uint64_t n) const { return off <= src_.size() && n <= src_.size() - off; }

  std::vector<uint8_t> Fetch(uint64_t off, uint64_t n, const char* what) const {
    if (!InFile(off, n)) Fail(StrCat(what, " lies past the end of the file (truncated or corrupt)"));
    std::vector<uint8_t> buf(static_cast<size_t>(n));
    src_.Read(off, static_cast<size_t>(n), buf.data());
    return buf;
  }

  Directory FindDirectory() const;
  Directory ReadZip64(uint64_t locator, uint64_t* dir_end) const;
  std::vector<Entry> ReadEntries(const Directory& dir) const;
  void ParseEntry(const uint8_t* p, size_t avail, size_t* used, Entry* e) const;
  void ReadLocalHeader(Entry& e, uint64_t limit) const;
  void CheckOverlaps(std::vector<Entry>& entries) const;
  void CheckData(const Entry& e) const;
  uint32_t StoredCrc(const Entry& e) const;
  uint32_t InflatedCrc(const Entry& e) const;

  const ByteSource& src_;
  std::string where_;
};

Directory Verifier::FindDirectory() const {
  const uint64_t size = src_.size();
  if (size == 0) Fail("empty file (not a torch .pt archive)");
  if (size < kEndSize) Fail("too short for a zip archive (truncated, or not a torch .pt file)");
  // The end record is the last 22 bytes plus its comment (up to 64 KiB);
  // the comment length must reach exactly to the end of the file.
  const uint64_t tail = std::min<uint64_t>(size, kEndSize + 0xFFFF);
  const std::vector<uint8_t> t = Fetch(size - tail, tail, "end record");
  size_t at = tail - kEndSize + 1;
  bool found = false;
  while (at-- > 0) {
    if (U32(&t[at]) == kEndSig && U16(&t[at + 20]) == tail - at - kEndSize) {
      found = true;
      break;
    }
  }
  if (!found) Fail("no zip end-of-central-directory record (truncated, or not a torch .pt file)");
  const uint8_t* e = &t[at];
  const uint64_t end_pos = size - tail + at;
  if (U16(e + 4) != 0 || U16(e + 6) != 0 || U16(e + 8) != U16(e + 10)) Fail("multi-disk zip archive (not supported)");
  Directory dir{U16(e + 10), U32(e + 16), U32(e + 12)};  // entries, offset, size
  uint64_t dir_end = end_pos;
  if (end_pos >= kLocatorSize && U32(Fetch(end_pos - kLocatorSize, 4, "ZIP64 locator").data()) == kZip64LocatorSig) {
    const Directory d64 = ReadZip64(end_pos - kLocatorSize, &dir_end);
    // Fields the 32-bit record could hold must agree with the ZIP64 ones.
    if ((dir.entries != kSat16 && dir.entries != d64.entries) || (dir.size != kSat32 && dir.size != d64.size) ||
        (dir.offset != kSat32 && dir.offset != d64.offset)) {
      Fail("zip end record disagrees with its ZIP64 record (corrupt file)");
    }
    dir = d64;
  }
  if (dir.offset > dir_end || dir.size != dir_end - dir.offset) {
    Fail("zip central directory out of range (truncated or corrupt file)");
  }
  if (dir.entries == 0) Fail("zip archive holds no records (not a torch .pt file)");
  if (dir.entries > dir.size / kCentralSize) Fail("zip central directory too small for its entry count (corrupt file)");
  return dir;
}

Directory Verifier::ReadZip64(uint64_t locator, uint64_t* dir_end) const {
  const std::vector<uint8_t> l = Fetch(locator, kLocatorSize, "ZIP64 locator");
  if (U32(&l[4]) != 0 || U32(&l[16]) != 1) Fail("multi-disk zip archive (not supported)");
  const uint64_t at = U64(&l[8]);
  if (at > locator || locator - at < kZip64EndSize) Fail("ZIP64 end record out of range (corrupt file)");
  const std::vector<uint8_t> r = Fetch(at, kZip64EndSize, "ZIP64 end record");
  const uint64_t record = U64(&r[4]);  // size of the rest of the record
  if (U32(&r[0]) != kZip64EndSig || record < kZip64EndSize - 12 || record > locator - at - 12) {
    Fail("corrupt ZIP64 end record");
  }
  if (U32(&r[16]) != 0 || U32(&r[20]) != 0 || U64(&r[24]) != U64(&r[32]))
    Fail("multi-disk zip archive (not supported)");
  *dir_end = at;
  return Directory{U64(&r[32]), U64(&r[48]), U64(&r[40])};
}

std::vector<Entry> Verifier::ReadEntries(const Directory& dir) const {
  const std::vector<uint8_t> cd = Fetch(dir.offset, dir.size, "zip central directory");
  std::vector<Entry> entries(static_cast<size_t>(dir.entries));
  std::set<std::string> names;
  size_t pos = 0;
  for (Entry& e : entries) {
    size_t used = 0;
    ParseEntry(cd.data() + pos, cd.size() - pos, &used, &e);
    pos += used;
    if (!names.insert(e.name).second) Fail(StrCat("record ", e.name, " appears twice (corrupt file)"));
  }
  if (pos != cd.size()) Fail("zip central directory size does not match its entries (corrupt file)");
  return entries;
}

// One central directory entry at p (avail bytes left in the directory).
void Verifier::ParseEntry(const uint8_t* p, size_t avail, size_t* used, Entry* e) const {
  if (avail < kCentralSize || U32(p) != kCentralSig) Fail("corrupt zip central directory entry");
  const size_t name_len = U16(p + 28), extra_len = U16(p + 30), comment_len = U16(p + 32);
  if (avail - kCentralSize < name_len + extra_len + comment_len) Fail("zip central directory entry out of range");
  *used = kCentralSize + name_len + extra_len + comment_len;
  e->name.assign(reinterpret_cast<const char*>(p + kCentralSize), name_len);
  if (e->name.empty()) Fail("zip record without a name (corrupt file)");
  e->flags = U16(p + 8);
  e->method = U16(p + 10);
  e->crc = U32(p + 16);
  e->comp = U32(p + 20);
  e->uncomp = U32(p + 24);
  e->local = U32(p + 42);
  uint32_t disk = U16(p + 34);
  // ZIP64 extra field: 8-byte values for exactly the saturated 32-bit ones, in this order.
  const uint8_t* x = p + kCentralSize + name_len;
  for (size_t q = 0; q + 4 <= extra_len;) {
    const size_t id = U16(x + q), len = U16(x + q + 2);
    if (len > extra_len - q - 4) Fail(StrCat("malformed extra field in record ", e->name));
    if (id == 0x0001) {
      size_t f = q + 4;
      for (uint64_t* v : {&e->uncomp, &e->comp, &e->local}) {
        if (*v != kSat32) continue;
        if (f + 8 > q + 4 + len) Fail(StrCat("short ZIP64 field in record ", e->name));
        *v = U64(x + f);
        f += 8;
      }
      if (disk == kSat16 && f + 4 <= q + 4 + len) disk = U32(x + f);
    }
    q += 4 + len;
  }
  if (disk != 0) Fail(StrCat("record ", e->name, " on another disk (multi-disk zip, not supported)"));
  if (e->flags & 1) Fail(StrCat("record ", e->name, " is encrypted (not a torch .pt file)"));
  if (e->method == 0 && e->comp != e->uncomp) Fail(StrCat("stored record ", e->name, " has inconsistent sizes"));
  if (e->method != 0 && e->method != 8) {
    Fail(StrCat("record ", e->name, " uses compression method ", e->method, " (only stored and deflate are read)"));
  }
}

void Verifier::ReadLocalHeader(Entry& e, uint64_t limit) const {
  // Records lie before the central directory (`limit`).
  if (e.local > limit || limit - e.local < kLocalSize) Fail(StrCat("record ", e.name, " starts out of range"));
  const std::vector<uint8_t> h = Fetch(e.local, kLocalSize, "local header");
  const size_t name_len = U16(&h[26]), extra_len = U16(&h[28]);
  if (U32(&h[0]) != kLocalSig || name_len != e.name.size() || limit - e.local - kLocalSize < name_len + extra_len) {
    Fail(StrCat("corrupt local header of record ", e.name));
  }
  const std::vector<uint8_t> name = Fetch(e.local + kLocalSize, name_len, "local header");
  if (std::memcmp(name.data(), e.name.data(), name_len) != 0 || U16(&h[8]) != e.method) {
    Fail(StrCat("local header of record ", e.name, " disagrees with the central directory (corrupt file)"));
  }
  // With bit 3 (torch sets it) the local CRC and sizes are zero and a data
  // descriptor follows the data; otherwise they must match.
  if (!(U16(&h[6]) & 8)) {
    const uint32_t crc = U32(&h[14]), comp = U32(&h[18]), uncomp = U32(&h[22]);
    if (crc != e.crc || (comp != kSat32 && comp != e.comp) || (uncomp != kSat32 && uncomp != e.uncomp)) {
      Fail(StrCat("local header of record ", e.name, " disagrees with the central directory (corrupt file)"));
    }
  }
  e.data_begin = e.local + kLocalSize + name_len + extra_len;
  if (e.comp > limit - e.data_begin) Fail(StrCat("record ", e.name, " runs past its bounds (truncated or corrupt)"));
  e.data_end = e.data_begin + e.comp;
}

void Verifier::CheckOverlaps(std::vector<Entry>& entries) const {
  std::vector<const Entry*> order;
  for (const Entry& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) { return a->local < b->local; });
  for (size_t i = 1; i < order.size(); ++i) {
    if (order[i - 1]->data_end > order[i]->local) {
      Fail(StrCat("records ", order[i - 1]->name, " and ", order[i]->name, " overlap (corrupt file)"));
    }
  }
}

void Verifier::CheckData(const Entry& e) const {
  const uint32_t crc = e.method == 0 ? StoredCrc(e) : InflatedCrc(e);
  if (crc != e.crc) Fail(StrCat("checksum mismatch in ", e.name, " (corrupt file)"));
}

uint32_t Verifier::StoredCrc(const Entry& e) const {
  std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(kBlock, e.comp)));
  uLong crc = crc32(0L, Z_NULL, 0);
  for (uint64_t off = e.data_begin; off < e.data_end;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kBlock, e.data_end - off));
    src_.Read(off, n, buf.data());
    crc = crc32(crc, buf.data(), static_cast<uInt>(n));
    off += n;
  }
  return static_cast<uint32_t>(crc);
}

uint32_t Verifier::InflatedCrc(const Entry& e) const {
  z_stream z{};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) Fail("cannot initialise zlib");
  struct End {
    z_stream* z;
    ~End() { inflateEnd(z); }
  } end{&z};
  std::vector<uint8_t> in(kBlock), out(kBlock);
  uLong crc = crc32(0L, Z_NULL, 0);
  uint64_t total = 0, off = e.data_begin;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (z.avail_in == 0) {
      if (off == e.data_end) Fail(StrCat("compressed record ", e.name, " is cut short (corrupt file)"));
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kBlock, e.data_end - off));
      src_.Read(off, n, in.data());
      off += n;
      z.next_in = in.data();
      z.avail_in = static_cast<uInt>(n);
    }
    z.next_out = out.data();
    z.avail_out = static_cast<uInt>(out.size());
    rc = inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) Fail(StrCat("corrupt compressed data in record ", e.name));
    const size_t produced = out.size() - z.avail_out;
    total += produced;
    // Stop a hostile stream as soon as it exceeds its declared size.
    if (total > e.uncomp) Fail(StrCat("record ", e.name, " inflates past its declared size (corrupt file)"));
    crc = crc32(crc, out.data(), static_cast<uInt>(produced));
  }
  if (total != e.uncomp) Fail(StrCat("record ", e.name, " inflates to the wrong size (corrupt file)"));
  return static_cast<uint32_t>(crc);
}

}  // namespace

void VerifyZipFile(const std::string& path) {
  FileSource src(path);
  Verifier(src, path).Run();
}

void VerifyZipBytes(const uint8_t* data, size_t size, const std::string& where) {
  MemorySource src(data, size);
  Verifier(src, where).Run();
}

}  // namespace csr
