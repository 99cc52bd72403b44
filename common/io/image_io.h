// Image reading with one clear error per bad file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace csr {

struct ImageSize {
  int width = 0;
  int height = 0;
};

// The largest image the tools accept: a side of 65535 (JPEG's own limit) and
// 2^27 pixels (a 512 MB float density map; ShanghaiTech's largest is 1024 x
// 1024). A header claiming more is refused before anything is allocated.
inline constexpr int kMaxImageSide = 65535;
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 27;

// The size of a JPEG or PNG from its header alone (no decoding), after
// checking that the file is complete (JPEG: ends with the EOI marker; PNG:
// ends with the IEND chunk). Other formats are decoded. Throws csr::Error
// naming the file when it is missing, unreadable, truncated, not an image, or
// larger than the limits above.
ImageSize ReadImageSize(const std::string& path);

// Whether a file name has one of the image extensions the tools read
// (case-insensitive): .jpg .jpeg .png .bmp .tif .tiff .webp .ppm .pgm .pnm.
// The one list: dataset discovery and predict's folder walk both use it.
bool IsImageFile(const std::string& path);

// The image files named by `inputs`: a file as given (whatever its
// extension), a folder walked recursively (files IsImageFile accepts, hidden
// files and AtomicFile temporaries skipped, in natural sorted order of their
// paths: IMG_2 before IMG_10). Problems (a missing path, a folder without
// images, one that cannot be listed) are appended to `problems` as
// "path: reason".
std::vector<std::string> CollectImages(const std::vector<std::string>& inputs, std::vector<std::string>* problems);

// Decodes an image as 8-bit RGB (grayscale replicated to three channels,
// alpha dropped). Throws csr::Error naming the file on failure.
cv::Mat ReadImageRGB(const std::string& path);

}  // namespace csr
