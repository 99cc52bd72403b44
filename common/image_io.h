// Image reading with one clear error per bad file.
#pragma once

#include <string>

#include <opencv2/core.hpp>

namespace csr {

struct ImageSize {
  int width = 0;
  int height = 0;
};

// The size of a JPEG or PNG from its header alone (no decoding), after
// checking that the file is complete (JPEG: ends with the EOI marker; PNG:
// ends with the IEND chunk). Other formats are decoded. Throws csr::Error
// naming the file when it is missing, unreadable, truncated or not an image.
ImageSize ReadImageSize(const std::string& path);

// Decodes an image as 8-bit RGB (grayscale replicated to three channels,
// alpha dropped). Throws csr::Error naming the file on failure.
cv::Mat ReadImageRGB(const std::string& path);

}  // namespace csr
