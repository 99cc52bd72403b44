// Density maps for crowd counting: each head becomes a 2-D Gaussian whose
// integral is 1 (less what falls outside the image, in reference mode), so
// the map sums to the count. Reproduces the original CSRNet preprocessing
// (scipy.ndimage.gaussian_filter of unit impulses) at O(r^2) per head.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "common/base/cli.h"
#include "common/io/datasets.h"

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

// The kernel width rule: "adaptive" (sigma = beta * mean distance to the
// `neighbors` nearest other heads, Part A) or "fixed" (sigma = `sigma` for
// every head, Part B).
enum class KernelRule { kAdaptive, kFixed };
// What happens at the image border: "constant" (mass past it is lost, the
// Part A reference) or "reflect" (half-sample symmetric mirror, mass kept,
// the Part B reference).
enum class Border { kConstant, kReflect };
// "reference": one unit impulse per distinct pixel, as the original;
// "exact-count": every annotation contributes exactly 1 inside the image.
enum class DensityMode { kReference, kExactCount };

// The names used on the command line, in configs and in the maps' attributes.
const char* Name(KernelRule v);
const char* Name(Border v);
const char* Name(DensityMode v);
// Parses those names; throws csr::UsageError(option, "expected a or b, got 'x'").
KernelRule ParseKernelRule(const std::string& text, const std::string& option = "--kernel");
Border ParseBorder(const std::string& text, const std::string& option = "--border");
DensityMode ParseDensityMode(const std::string& text, const std::string& option = "--mode");

// Bounds of the numeric settings: what can make sense for an image (sides up
// to kMaxImageSide) and keeps the kernel arithmetic finite. Listed in
// gt_gen's --help.
inline constexpr double kMinSigma = 0.1, kMaxSigma = 10000.0;     // a sigma past the image side is a flat map
inline constexpr double kMinBeta = 0.001, kMaxBeta = 10.0;        // the paper uses 0.3
inline constexpr int kMaxNeighbors = 100;                         // the paper uses 3
inline constexpr double kMinTruncate = 0.5, kMaxTruncate = 20.0;  // scipy's default is 4

struct DensityOptions {
  KernelRule kernel = KernelRule::kAdaptive;
  double sigma = 15.0;    // fixed kernel width in pixels
  double beta = 0.3;      // adaptive scale; 0.3 with 3 neighbours = 0.1 * (d1+d2+d3)
  int neighbors = 3;      // adaptive: nearest other heads averaged
  double truncate = 4.0;  // kernel radius = int(truncate * sigma + 0.5), as scipy
  Border border = Border::kConstant;
  DensityMode mode = DensityMode::kReference;

  // Throws csr::UsageError naming the option, its value and the rule:
  // the bounds above.
  void Check() const;
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
cv::Mat RenderDensity(const std::vector<HeadPixel>& pixels, const std::vector<double>& sigmas, int width, int height,
                      const DensityOptions& options);

// The attribute gt_gen stores the density's CRC-32 in (maps from older
// versions and from the Python script have none), and the CRC-32 of a
// CV_32F map's bytes in row-major order, as written to the file.
inline constexpr const char* kDensityCrcAttr = "density_crc32";
uint32_t DensityCrc32(const cv::Mat& density);

// A one-line description of the settings, stored with each map to decide
// whether an existing output is up to date.
std::string DescribeSettings(const DensityOptions& options);

// The density settings as gt_gen and crop_shards take them: kernel and
// border "auto" (nullopt) follow the dataset. The dense sets (ShanghaiTech A,
// UCF-QNRF, UCF_CC_50, JHU-Crowd++, NWPU-Crowd) get the CSRNet paper's
// geometry-adaptive kernel (beta 0.3, 3 neighbours) with a constant border,
// as the original did for Part A; the sparse ones (ShanghaiTech B, custom
// point lists) a fixed sigma of 15 px with a reflected border, as the
// original did for Part B.
struct DensityChoice {
  DensityMode mode = DensityMode::kReference;  // reference | exact-count
  std::optional<KernelRule> kernel;            // adaptive | fixed; nullopt = auto
  double sigma = 15.0;                         // fixed kernel sigma (pixels)
  double beta = 0.3;                           // adaptive: sigma = beta * mean distance to the neighbours
  int neighbors = 3;                           // adaptive: nearest other heads used
  std::optional<Border> border;                // constant | reflect; nullopt = auto

  // Auto resolved for `kind` (and ShanghaiTech's `part`), as described above.
  DensityOptions Resolve(DatasetKind kind, const std::string& part) const;
  // --mode, --kernel, --sigma, --beta, --neighbors, --border.
  void Register(ArgParser& parser, const std::string& auto_rule);
};

}  // namespace csr
