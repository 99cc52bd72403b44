// Filesystem helpers: atomic output files and small utilities.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace csr {

namespace fs = std::filesystem;

// Writes go to a temporary name beside the final path; Commit() flushes it to
// disk and renames it into place, so readers see the old file or the complete
// new one, never a half-written one. Without Commit() the temporary is removed.
class AtomicFile {
 public:
  explicit AtomicFile(fs::path final_path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  const fs::path& temp_path() const { return temp_; }
  const fs::path& final_path() const { return final_; }
  // fsync the temporary, rename it over the final path, fsync the folder.
  // Throws csr::Error naming the final path on failure.
  void Commit();

 private:
  fs::path final_;
  fs::path temp_;
  bool committed_ = false;
};

// True when `name` is a temporary left by an interrupted AtomicFile.
bool IsAtomicTemp(const fs::path& name);

// Writes `text` atomically to `path`.
void WriteTextFileAtomic(const fs::path& path, const std::string& text);
// The same for any bytes (encoded images, archives): written under a
// temporary name beside `path`, flushed, then renamed into place.
void WriteFileAtomic(const fs::path& path, const void* data, size_t size);
// Reads a whole file; throws csr::Error naming the path.
std::string ReadTextFile(const fs::path& path);

// zlib's CRC-32 of `n` bytes, continuing from `crc` (0 to start).
uint32_t Crc32(const void* data, size_t n, uint32_t crc = 0);

// Creates a folder (and parents); throws csr::Error naming it on failure.
void MakeDirs(const fs::path& dir);

// Fail early, before any work, when an output cannot be written: creates the
// folder (or the file's folder) and writes and removes a probe file there.
// Throw csr::Error naming the path.
void CheckWritableDir(const std::string& dir);
void CheckWritableFile(const std::string& path);

}  // namespace csr
