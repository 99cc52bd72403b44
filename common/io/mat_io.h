// Reading and writing annotation files (.mat). ShanghaiTech's is a MATLAB 5
// MAT-file whose variable `image_info` is a 1x1 cell holding a 1x1 struct
// with fields `location` (N x 2 double: x, y in pixels) and `number` (1x1
// integer, N); UCF-QNRF's, UCF_CC_50's and NWPU-Crowd's hold a top-level
// N x 2 `annPoints`.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace csr {

// The most points an annotation may hold (ShanghaiTech's densest image has
// 3138): a header claiming more is refused before anything is allocated.
inline constexpr int64_t kMaxAnnotationPoints = int64_t{1} << 24;

struct Annotation {
  std::vector<std::array<double, 2>> points;  // (x, y), continuous image coordinates
  int64_t number = -1;                        // the file's `number` field; -1 when absent
};

// Reads `image_info{1}.location` (and `number`). Throws csr::Error naming the
// file for: a missing, empty, truncated or corrupt file, a file that is not a
// MAT-file, a missing image_info/location, or a location that is not an N x 2
// real numeric array, or more than kMaxAnnotationPoints claimed. MATLAB v7.3
// (HDF5-based) files are read too, directly with the HDF5 C API (MATLAB's and
// h5py's layouts alike). Tolerated: location of any real numeric class (converted to
// double), an empty location (no points), a missing `number` (-1), and a bare
// 1x1 struct not wrapped in a cell. Values are returned as stored; NaN/negative
// checks belong to the caller (it knows the image size). Thread-safe: every
// matio and HDF5 call runs under h5::Lock, and matio's own messages are captured
// (they become the reason of the csr::Error) instead of printed.
Annotation ReadAnnotation(const std::string& path);

// A top-level N x 2 real numeric variable as points: UCF-QNRF's, UCF_CC_50's
// and NWPU-Crowd's `annPoints` (x column, then y). The same checks as
// ReadAnnotation (file kind, truncation, every array's claimed size, at most
// kMaxAnnotationPoints) and the same tolerances (any real numeric class, an
// empty array = no points); MAT5 and v7.3 alike. Throws csr::Error naming
// the file and, for a missing variable, the variables it has.
std::vector<std::array<double, 2>> ReadPointsVariable(const std::string& path, const std::string& name);
// Writes one such variable as a MAT5 file (zlib-compressed), atomically.
void WritePointsVariable(const std::string& path, const std::string& name,
                         const std::vector<std::array<double, 2>>& points);

// Writes a MAT5 file (zlib-compressed) with the structure above, atomically
// (temporary name, then rename). `number_class` is "uint16" or "uint8" or "double".
void WriteAnnotation(const std::string& path, const std::vector<std::array<double, 2>>& points,
                     const std::string& number_class = "uint16");

}  // namespace csr
