// Full verification of a ZIP archive (a torch .pt file) before anything reads
// it. LibTorch 1.13's reader trusts the archive: it never checks the CRC-32
// of a record, so flipped bytes inside a tensor load silently. These
// functions walk the whole archive (end of central directory, ZIP64 records,
// every central directory entry and local header), check every offset, size
// and name against the file's bounds and against each other, and compute
// each entry's CRC-32 over its data (STORED entries as torch writes them,
// DEFLATE entries inflated). Hostile input never reads out of bounds.
//
// No LibTorch here: common/ is the library without it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace csr {

// Verifies the archive at `path`, streaming it in 1 MiB blocks (constant
// memory; a 200 MB checkpoint is read once more by torch after this, from the
// page cache). Throws csr::Error(path, reason) on the first problem, e.g.
// "checksum mismatch in archive/data/12 (corrupt file)".
void VerifyZipFile(const std::string& path);

// The same over bytes in memory; `where` names them in errors.
void VerifyZipBytes(const uint8_t* data, size_t size, const std::string& where);

}  // namespace csr
