#include "common/base/fs.h"

#include <zlib.h>

#include <algorithm>
#include <limits>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/base/error.h"

namespace csr {
namespace {

constexpr const char* kTempMarker = ".tmp-";

void FsyncPath(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return;  // best effort for folders on odd filesystems
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && !directory) throw Error(p.string(), StrCat("cannot flush to disk: ", std::strerror(err)));
}

}  // namespace

AtomicFile::AtomicFile(fs::path final_path) : final_(std::move(final_path)) {
  static std::atomic<unsigned> counter{0};
  temp_ = final_;
  temp_ += StrCat(kTempMarker, ::getpid(), "-", counter++);
}

AtomicFile::~AtomicFile() {
  if (!committed_) {
    std::error_code ec;
    fs::remove(temp_, ec);
  }
}

void AtomicFile::Commit() {
  FsyncPath(temp_, false);
  std::error_code ec;
  fs::rename(temp_, final_, ec);
  if (ec) throw Error(final_.string(), StrCat("cannot move the finished file into place: ", ec.message()));
  committed_ = true;
  FsyncPath(final_.has_parent_path() ? final_.parent_path() : fs::path("."), true);
}

bool IsAtomicTemp(const fs::path& name) { return name.filename().string().find(kTempMarker) != std::string::npos; }

void WriteFileAtomic(const fs::path& path, const void* data, size_t size) {
  AtomicFile out(path);
  {
    std::ofstream f(out.temp_path(), std::ios::binary);
    if (!f) throw Error(path.string(), "cannot open for writing");
    f.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
    f.flush();
    if (!f) throw Error(path.string(), "write failed (disk full?)");
  }
  out.Commit();
}

void WriteTextFileAtomic(const fs::path& path, const std::string& text) {
  WriteFileAtomic(path, text.data(), text.size());
}

std::string ReadTextFile(const fs::path& path) {
  // A folder opens fine as an ifstream on Linux and reads as "": say so instead.
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw Error(path.string(), "is a folder, expected a file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path.string(), "cannot open for reading");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw Error(path.string(), "read failed");
  return ss.str();
}

void MakeDirs(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(dir.string(), StrCat("cannot create folder: ", ec.message()));
}

uint32_t Crc32(const void* data, size_t n, uint32_t crc) {
  // zlib takes a uInt length: feed huge buffers in pieces.
  const auto* p = static_cast<const Bytef*>(data);
  uLong c = crc;
  while (n > 0) {
    const size_t piece = std::min<size_t>(n, std::numeric_limits<uInt>::max());
    c = crc32(c, p, static_cast<uInt>(piece));
    p += piece;
    n -= piece;
  }
  return static_cast<uint32_t>(c);
}

void CheckWritableDir(const std::string& dir) {
  MakeDirs(dir);
  const fs::path probe = fs::path(dir) / ".csrnet-write-probe";
  {
    std::ofstream f(probe);
    f << "x";
    f.flush();
    if (!f) throw Error(dir, "output folder is not writable");
  }
  std::error_code ec;
  fs::remove(probe, ec);
}

void CheckWritableFile(const std::string& path) {
  if (fs::is_directory(path)) throw Error(path, "is a folder (expected an output file name)");
  const fs::path parent = fs::path(path).parent_path();
  CheckWritableDir(parent.empty() ? "." : parent.string());
}

}  // namespace csr
