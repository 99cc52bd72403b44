#include "common/io/density_map.h"

#include <algorithm>
#include <vector>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/io/h5.h"

namespace csr {

void WriteDensityFormat(hid_t f) {
  h5::SetAttr(f, "format", std::string(kDensityFormat));
  h5::SetAttr(f, "format_version", kDensityFormatVersion);
}

void CheckDensityFormat(hid_t f, const std::string& path) {
  if (h5::HasAttr(f, "format")) {
    const std::string format = h5::GetAttrString(f, "format", path);
    if (format != kDensityFormat) {
      throw Error(path, StrCat("not a density map (its format is '", format, "', not '", kDensityFormat, "')"));
    }
  }
  if (h5::HasAttr(f, "format_version")) {
    const int64_t version = h5::GetAttrInt(f, "format_version", path);
    if (version < 1 || version > kDensityFormatVersion) {
      throw Error(path, StrCat("density map format version ", version, " (this build reads 1..", kDensityFormatVersion,
                               "): written by a newer csrnet-cpp, or corrupt"));
    }
  }
}

namespace {

template <typename T>
cv::Mat SumBlocks(const cv::Mat& density, const cv::Rect& box, double* covered) {
  const int rows = box.height / 8, cols = box.width / 8;
  cv::Mat out(rows, cols, CV_32F);
  std::vector<double> acc(static_cast<size_t>(cols));
  double total = 0.0;
  for (int r = 0; r < rows; ++r) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int dy = 0; dy < 8; ++dy) {
      const T* p = density.ptr<T>(box.y + 8 * r + dy) + box.x;
      for (int c = 0; c < cols; ++c) {
        double s = 0.0;
        for (int k = 0; k < 8; ++k) s += p[8 * c + k];
        acc[static_cast<size_t>(c)] += s;
      }
    }
    float* o = out.ptr<float>(r);
    double row = 0.0;
    for (int c = 0; c < cols; ++c) {
      o[c] = static_cast<float>(acc[static_cast<size_t>(c)]);
      row += acc[static_cast<size_t>(c)];
    }
    total += row;
  }
  if (covered) *covered = total;
  return out;
}

}  // namespace

cv::Mat SumBlocks8(const cv::Mat& density, const cv::Rect& box, double* covered) {
  CSR_ASSERT(density.channels() == 1 && (density.depth() == CV_32F || density.depth() == CV_64F),
             "density map must be one float channel, got type ", density.type());
  CSR_ASSERT((box & cv::Rect(0, 0, density.cols, density.rows)) == box, "box outside the density map");
  return density.depth() == CV_32F ? SumBlocks<float>(density, box, covered) : SumBlocks<double>(density, box, covered);
}

cv::Mat SumBlocks8(const cv::Mat& density) { return SumBlocks8(density, cv::Rect(0, 0, density.cols, density.rows)); }

void WritePredictedDensity(const std::string& path, const cv::Mat& density, const std::string& image, int width,
                           int height) {
  AtomicFile out(path);
  {
    h5::Lock lock;  // HDF5 is not thread-safe; held for the file's whole life
    h5::Hid file = h5::Create(out.temp_path().string());
    const hid_t f = file.get();
    h5::WriteMat(f, "density", density);
    h5::SetAttr(f, "count", cv::sum(density)[0]);
    h5::SetAttr(f, "scale", int64_t{8});
    h5::SetAttr(f, "image", image);
    h5::SetAttr(f, "width", int64_t{width});
    h5::SetAttr(f, "height", int64_t{height});
    if (!file.Close()) throw Error(path, StrCat("cannot finish writing: ", h5::LastError()));
  }
  out.Commit();
}

}  // namespace csr
