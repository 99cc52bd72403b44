// Density maps for crowd counting: each head becomes a 2-D Gaussian whose
// integral is 1 (less what falls outside the image, in reference mode), so
// the map sums to the count. Reproduces the original CSRNet preprocessing
// (scipy.ndimage.gaussian_filter of unit impulses) at O(r^2) per head.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace csr {

// A head pixel: the annotation (x, y) truncated toward zero.
struct HeadPixel {
  int row = 0;
  int col = 0;
  int multiplicity = 1;  // annotations that fell on this pixel
};

// Annotations turned into distinct head pixels, row-major order (the order
// of numpy.nonzero in the original).
struct HeadPixels {
  std::vector<HeadPixel> pixels;
  int64_t annotations = 0;  // points given
  int64_t inside = 0;       // points whose pixel lies inside the image
  int64_t merged = 0;       // inside points that landed on an already used pixel
  int64_t outside = 0;      // points dropped: negative or past the image edge
};

// Throws csr::Error(`file`, ...) if a coordinate is NaN or infinite.
HeadPixels ToHeadPixels(const std::vector<std::array<double, 2>>& points, int width, int height,
                        const std::string& file = "");

struct DensityOptions {
  // "adaptive": sigma = beta * mean distance to the `neighbors` nearest other
  // heads (Part A); "fixed": sigma = `sigma` for every head (Part B).
  std::string kernel = "adaptive";
  double sigma = 15.0;    // fixed kernel width in pixels
  double beta = 0.3;      // adaptive scale; 0.3 with 3 neighbours = 0.1 * (d1+d2+d3)
  int neighbors = 3;      // adaptive: nearest other heads averaged
  double truncate = 4.0;  // kernel radius = int(truncate * sigma + 0.5), as scipy
  // "constant": mass past the border is lost (Part A reference);
  // "reflect": half-sample symmetric mirror, mass kept (Part B reference).
  std::string border = "constant";
  // "reference": one unit impulse per distinct pixel, as the original;
  // "exact-count": every annotation contributes exactly 1 inside the image.
  std::string mode = "reference";
};

// scipy's 1-D Gaussian weights for `sigma`, radius int(truncate*sigma+0.5),
// normalised to sum 1. Index i is offset i - radius.
std::vector<double> GaussianKernel1D(double sigma, double truncate = 4.0);

// Per-pixel sigma for `pixels` under `options` (k-NN with nanoflann for the
// adaptive kernel). One head: (H + W) / 8 as the original. Fewer than
// neighbors+1 heads: beta times the mean of the distances that exist.
std::vector<double> HeadSigmas(const std::vector<HeadPixel>& pixels, int width, int height,
                               const DensityOptions& options);

// Renders the density map (CV_32F, height x width). Rows are processed in
// parallel bands (oneTBB), so one large image uses every core too.
cv::Mat RenderDensity(const std::vector<HeadPixel>& pixels, const std::vector<double>& sigmas, int width,
                      int height, const DensityOptions& options);

// The attribute gt_gen stores the density's CRC-32 in (maps from older
// versions and from the Python script have none), and the CRC-32 of a
// CV_32F map's bytes in row-major order, as written to the file.
inline constexpr const char* kDensityCrcAttr = "density_crc32";
uint32_t DensityCrc32(const cv::Mat& density);

// A one-line description of the settings, stored with each map to decide
// whether an existing output is up to date.
std::string DescribeSettings(const DensityOptions& options);

}  // namespace csr
