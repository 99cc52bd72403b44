#include "common/io/image_io.h"

#include <algorithm>
#include <cctype>

#include <fstream>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/io/dataset.h"

namespace csr {
namespace {

std::vector<unsigned char> ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path, "cannot open image");
  std::vector<unsigned char> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (data.empty()) throw Error(path, "image file is empty");
  return data;
}

// Walks the marker segments and entropy-coded scans from SOI; true when the
// end-of-image marker (FF D9) is reached. Bytes after it (some cameras append
// data) are ignored, as libjpeg does; a cut file runs out before it.
bool JpegReachesEnd(const std::vector<unsigned char>& d) {
  size_t i = 2;
  while (i + 1 < d.size()) {
    if (d[i] != 0xFF) {
      ++i;
      continue;
    }  // extraneous bytes before a marker: decoders skip them
    const unsigned char marker = d[i + 1];
    if (marker == 0xD9) return true;
    if (marker == 0xFF) {
      ++i;
      continue;
    }  // fill byte
    if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) {
      i += 2;
      continue;
    }
    if (i + 4 > d.size()) return false;
    i += 2 + ((static_cast<size_t>(d[i + 2]) << 8) | d[i + 3]);
    if (marker != 0xDA) continue;
    // Scan data runs to the next marker that is not a stuffed FF 00 or a restart marker.
    while (i + 1 < d.size() && !(d[i] == 0xFF && d[i + 1] != 0x00 && (d[i + 1] < 0xD0 || d[i + 1] > 0xD7))) ++i;
  }
  return false;
}

// A size read from a header: positive and within the limits, so that no
// decoder or density map is ever asked for gigabytes by a few forged bytes.
void CheckSize(const std::string& path, const char* format, int64_t width, int64_t height) {
  if (width <= 0 || height <= 0) throw Error(path, StrCat("corrupt ", format, " (size ", width, "x", height, ")"));
  if (width > kMaxImageSide || height > kMaxImageSide || width * height > kMaxImagePixels) {
    throw Error(path, StrCat(format, " header says ", width, "x", height, ", larger than the supported ", kMaxImageSide,
                             " px a side and ", kMaxImagePixels, " pixels"));
  }
}

// BMP (BITMAPINFOHEADER or later): width and height at bytes 18 and 22,
// little-endian int32, a negative height meaning top-down rows.
bool BmpSize(const std::string& path, const std::vector<unsigned char>& d, ImageSize* out) {
  if (d.size() < 2 || d[0] != 'B' || d[1] != 'M') return false;
  if (d.size() < 26) throw Error(path, "truncated BMP");
  const auto le32 = [&](size_t i) {
    return static_cast<int32_t>(static_cast<uint32_t>(d[i]) | (static_cast<uint32_t>(d[i + 1]) << 8) |
                                (static_cast<uint32_t>(d[i + 2]) << 16) | (static_cast<uint32_t>(d[i + 3]) << 24));
  };
  // An OS/2 core header (12 bytes) has 16-bit sizes at 18 and 20.
  const bool core = le32(14) == 12;
  const int64_t w = core ? (d[18] | (d[19] << 8)) : le32(18);
  const int64_t h = core ? (d[20] | (d[21] << 8)) : le32(22);
  CheckSize(path, "BMP", w, h < 0 ? -h : h);
  out->width = static_cast<int>(w);
  out->height = static_cast<int>(h < 0 ? -h : h);
  return true;
}

bool JpegSize(const std::string& path, const std::vector<unsigned char>& d, ImageSize* out) {
  if (d.size() < 4 || d[0] != 0xFF || d[1] != 0xD8) return false;
  if (!JpegReachesEnd(d)) throw Error(path, "truncated JPEG (no end-of-image marker)");
  size_t i = 2;
  while (i + 4 <= d.size()) {
    if (d[i] != 0xFF) {
      // Extraneous bytes before a marker: libjpeg skips them with a "Corrupt
      // JPEG data" warning and decodes the image (some UCF-QNRF files).
      ++i;
      continue;
    }
    const unsigned char marker = d[i + 1];
    if (marker == 0xFF) {
      ++i;
      continue;
    }
    if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) {
      i += 2;
      continue;
    }
    const size_t len = (static_cast<size_t>(d[i + 2]) << 8) | d[i + 3];
    const bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      if (i + 9 > d.size()) break;
      out->height = (d[i + 5] << 8) | d[i + 6];
      out->width = (d[i + 7] << 8) | d[i + 8];
      CheckSize(path, "JPEG", out->width, out->height);
      return true;
    }
    if (marker == 0xDA || len < 2) break;  // scan data before a frame header
    i += 2 + len;
  }
  throw Error(path, "corrupt JPEG (no frame header)");
}

bool PngSize(const std::string& path, const std::vector<unsigned char>& d, ImageSize* out) {
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (d.size() < 8 || !std::equal(sig, sig + 8, d.begin())) return false;
  if (d.size() < 24 + 12) throw Error(path, "truncated PNG");
  // Big-endian uint32 (PNG allows up to 2^31 - 1): read wide, never into a negative int.
  const auto be32 = [&](size_t i) {
    return (static_cast<int64_t>(d[i]) << 24) | (d[i + 1] << 16) | (d[i + 2] << 8) | d[i + 3];
  };
  const int64_t w = be32(16), h = be32(20);
  static const unsigned char iend[8] = {0, 0, 0, 0, 'I', 'E', 'N', 'D'};
  if (!std::equal(iend, iend + 8, d.end() - 12)) throw Error(path, "truncated PNG (no IEND chunk)");
  CheckSize(path, "PNG", w, h);
  out->width = static_cast<int>(w);
  out->height = static_cast<int>(h);
  return true;
}

}  // namespace

ImageSize ReadImageSize(const std::string& path) {
  const std::vector<unsigned char> data = ReadAll(path);
  ImageSize size;
  if (JpegSize(path, data, &size) || PngSize(path, data, &size) || BmpSize(path, data, &size)) return size;
  const cv::Mat img = cv::imdecode(data, cv::IMREAD_UNCHANGED);
  if (img.empty()) throw Error(path, "not a readable image");
  CheckSize(path, "image", img.cols, img.rows);
  return {img.cols, img.rows};
}

cv::Mat ReadImageRGB(const std::string& path) {
  const std::vector<unsigned char> data = ReadAll(path);
  ImageSize header;
  // Detect truncation that libjpeg only warns about, and forged sizes before the decoder allocates.
  if (!JpegSize(path, data, &header) && !PngSize(path, data, &header)) BmpSize(path, data, &header);
  cv::Mat img = cv::imdecode(data, cv::IMREAD_UNCHANGED);
  if (img.empty()) throw Error(path, "not a readable image (corrupt or unsupported format)");
  if (img.depth() != CV_8U) throw Error(path, "only 8-bit images are supported");
  cv::Mat rgb;
  switch (img.channels()) {
    case 1:
      cv::cvtColor(img, rgb, cv::COLOR_GRAY2RGB);
      break;
    case 3:
      cv::cvtColor(img, rgb, cv::COLOR_BGR2RGB);
      break;
    case 4:
      cv::cvtColor(img, rgb, cv::COLOR_BGRA2RGB);
      break;
    default:
      throw Error(path, StrCat("unsupported channel count ", img.channels()));
  }
  return rgb;
}

bool IsImageFile(const std::string& path) {
  const size_t dot = path.find_last_of("./");
  if (dot == std::string::npos || path[dot] != '.') return false;
  std::string ext = path.substr(dot);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* e : {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}) {
    if (ext == e) return true;
  }
  return false;
}

std::vector<std::string> CollectImages(const std::vector<std::string>& inputs, std::vector<std::string>* problems) {
  std::vector<std::string> images;
  for (const std::string& input : inputs) {
    std::error_code ec;
    if (!fs::is_directory(input, ec)) {
      if (fs::exists(input, ec)) {
        images.push_back(input);  // a file named explicitly is tried whatever its extension
      } else {
        problems->push_back(input + ": no such file or folder");
      }
      continue;
    }
    std::vector<std::string> found;
    for (auto it = fs::recursive_directory_iterator(input, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (it->is_regular_file(ec) && IsImageFile(name) && name[0] != '.' && !IsAtomicTemp(name)) {
        found.push_back(it->path().string());
      }
    }
    if (ec) problems->push_back(StrCat(input, ": cannot list folder: ", ec.message()));
    std::sort(found.begin(), found.end(), [](const std::string& a, const std::string& b) {
      return NaturalLess(a, b) || (!NaturalLess(b, a) && a < b);
    });
    if (found.empty() && !ec) problems->push_back(input + ": no images in this folder");
    images.insert(images.end(), found.begin(), found.end());
  }
  return images;
}

}  // namespace csr
