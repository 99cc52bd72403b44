#include "common/image_io.h"

#include <fstream>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/error.h"

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
    if (d[i] != 0xFF) { ++i; continue; }  // extraneous bytes before a marker: decoders skip them
    const unsigned char marker = d[i + 1];
    if (marker == 0xD9) return true;
    if (marker == 0xFF) { ++i; continue; }  // fill byte
    if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) { i += 2; continue; }
    if (i + 4 > d.size()) return false;
    i += 2 + ((static_cast<size_t>(d[i + 2]) << 8) | d[i + 3]);
    if (marker != 0xDA) continue;
    // Scan data runs to the next marker that is not a stuffed FF 00 or a restart marker.
    while (i + 1 < d.size() && !(d[i] == 0xFF && d[i + 1] != 0x00 && (d[i + 1] < 0xD0 || d[i + 1] > 0xD7))) ++i;
  }
  return false;
}

bool JpegSize(const std::string& path, const std::vector<unsigned char>& d, ImageSize* out) {
  if (d.size() < 4 || d[0] != 0xFF || d[1] != 0xD8) return false;
  if (!JpegReachesEnd(d)) throw Error(path, "truncated JPEG (no end-of-image marker)");
  size_t i = 2;
  while (i + 4 <= d.size()) {
    if (d[i] != 0xFF) throw Error(path, "corrupt JPEG (bad marker sequence)");
    const unsigned char marker = d[i + 1];
    if (marker == 0xFF) { ++i; continue; }
    if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) { i += 2; continue; }
    const size_t len = (static_cast<size_t>(d[i + 2]) << 8) | d[i + 3];
    const bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      if (i + 9 > d.size()) break;
      out->height = (d[i + 5] << 8) | d[i + 6];
      out->width = (d[i + 7] << 8) | d[i + 8];
      if (out->width <= 0 || out->height <= 0) throw Error(path, "corrupt JPEG (zero size)");
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
  out->width = static_cast<int>((d[16] << 24) | (d[17] << 16) | (d[18] << 8) | d[19]);
  out->height = static_cast<int>((d[20] << 24) | (d[21] << 16) | (d[22] << 8) | d[23]);
  static const unsigned char iend[8] = {0, 0, 0, 0, 'I', 'E', 'N', 'D'};
  if (!std::equal(iend, iend + 8, d.end() - 12)) throw Error(path, "truncated PNG (no IEND chunk)");
  if (out->width <= 0 || out->height <= 0) throw Error(path, "corrupt PNG (zero size)");
  return true;
}

}  // namespace

ImageSize ReadImageSize(const std::string& path) {
  const std::vector<unsigned char> data = ReadAll(path);
  ImageSize size;
  if (JpegSize(path, data, &size) || PngSize(path, data, &size)) return size;
  const cv::Mat img = cv::imdecode(data, cv::IMREAD_UNCHANGED);
  if (img.empty()) throw Error(path, "not a readable image");
  return {img.cols, img.rows};
}

cv::Mat ReadImageRGB(const std::string& path) {
  const std::vector<unsigned char> data = ReadAll(path);
  ImageSize header;
  JpegSize(path, data, &header);  // detects truncation that libjpeg only warns about
  PngSize(path, data, &header);
  cv::Mat img = cv::imdecode(data, cv::IMREAD_UNCHANGED);
  if (img.empty()) throw Error(path, "not a readable image (corrupt or unsupported format)");
  if (img.depth() != CV_8U) throw Error(path, "only 8-bit images are supported");
  cv::Mat rgb;
  switch (img.channels()) {
    case 1: cv::cvtColor(img, rgb, cv::COLOR_GRAY2RGB); break;
    case 3: cv::cvtColor(img, rgb, cv::COLOR_BGR2RGB); break;
    case 4: cv::cvtColor(img, rgb, cv::COLOR_BGRA2RGB); break;
    default: throw Error(path, StrCat("unsupported channel count ", img.channels()));
  }
  return rgb;
}

}  // namespace csr
