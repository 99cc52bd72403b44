// Structural verification of a MATLAB 5 (v6/v7) MAT-file before matio reads it.
//
// matio trusts the sizes a file claims: a 137-byte compressed variable that
// declares a cell array of ten million elements makes Mat_VarReadInfo
// allocate ten million variables (2.5 GB) before it notices the data is
// missing (found by the fuzz stage). This walk checks every array's claimed
// element count against the bytes that actually follow it, recursively
// through cells and structs, inflating compressed variables (bounded), and
// refuses the file with one line naming the first impossible claim.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace csr {

// Largest inflated size of one compressed variable that is accepted (an
// annotation of 20,000 heads is about 320 kB).
constexpr size_t kMaxMatVariableBytes = size_t{512} << 20;

// Checks the data elements of a MAT5 file body: `body` points just past the
// 128-byte header, `swap` is true for a big-endian ('MI') file. Throws
// csr::Error(where, reason) on the first problem.
void VerifyMat5Body(const uint8_t* body, size_t size, bool swap, const std::string& where);

}  // namespace csr
