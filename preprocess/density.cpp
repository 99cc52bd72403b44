#include "preprocess/density.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <numeric>

#include <nanoflann.hpp>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "common/base/cli.h"
#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/base/tsan.h"

namespace csr {
namespace {

// nanoflann adaptor over head pixels as (x = col, y = row) points.
struct PixelCloud {
  const std::vector<HeadPixel>* pixels;
  size_t kdtree_get_point_count() const { return pixels->size(); }
  double kdtree_get_pt(size_t i, size_t dim) const { return dim == 0 ? (*pixels)[i].col : (*pixels)[i].row; }
  template <class BBox>
  bool kdtree_get_bbox(BBox&) const {
    return false;
  }
};

using KdTree =
    nanoflann::KDTreeSingleIndexAdaptor<nanoflann::L2_Simple_Adaptor<double, PixelCloud>, PixelCloud, 2, size_t>;

// The normalised 1-D Gaussian of one head, evaluated on demand instead of
// stored: only offsets that land in the image are ever needed, so the cost is
// bounded by the image whatever sigma is (a radius of 4 * 6e8 does not fit an
// int, and a vector of it does not fit memory).
struct Weights {
  double k = 0;              // -1 / (2 sigma^2)
  int64_t radius = 0;        // scipy's int(truncate * sigma + 0.5), saturated
  int64_t reach = 0;         // offsets used: min(radius, cap)
  double sum = 1;            // sum of exp(k x^2) over [-radius, radius]
  bool truncated = false;    // radius > cap: sum is analytic, reflect copies are cut
  std::vector<double> half;  // exp(k x^2) for x in [0, radius] when not truncated (exp dominates small kernels)
  double operator()(int64_t x) const {
    const int64_t a = x < 0 ? -x : x;  // exp(k x^2) is even, bit for bit
    if (!half.empty()) return half[static_cast<size_t>(a)] / sum;
    return std::exp(k * static_cast<double>(a) * static_cast<double>(a)) / sum;
  }
};

// Above this radius the normalising sum is computed in closed form and the
// kernel is cut. `extent` is the image's larger side: for constant borders
// nothing past it can land in the image; 4x leaves the usual cases (one head:
// sigma = (W+H)/8, radius (W+H)/2) on the exact path, bit-identical to scipy's.
int64_t ExactRadiusCap(int extent) { return 4 * static_cast<int64_t>(extent) + 256; }

Weights MakeWeights(double sigma, double truncate, int extent) {
  Weights w;
  const double r = truncate * sigma + 0.5;
  w.radius = r < 4.0e18 ? static_cast<int64_t>(r) : int64_t{4000000000000000000};
  w.k = -0.5 / (sigma * sigma);
  const int64_t cap = ExactRadiusCap(extent);
  w.truncated = w.radius > cap;
  w.reach = std::min(w.radius, cap);
  if (!w.truncated) {
    // The same terms in the same order as GaussianKernel1D, so the weights are
    // bit-identical to it.
    w.half.resize(static_cast<size_t>(w.radius) + 1);
    for (int64_t x = 0; x <= w.radius; ++x) w.half[static_cast<size_t>(x)] = std::exp(w.k * x * x);
    double sum = 0.0;
    for (int64_t x = -w.radius; x <= w.radius; ++x) sum += w.half[static_cast<size_t>(x < 0 ? -x : x)];
    w.sum = sum;
    return w;
  }
  // Euler-Maclaurin: the integral, the two end terms and the first correction;
  // here sigma > cap / truncate is large, so the rest is far below float precision.
  const double R = static_cast<double>(w.radius);
  const double fR = std::exp(w.k * R * R);
  w.sum = sigma * std::sqrt(2.0 * M_PI) * std::erf(R / (sigma * std::sqrt(2.0))) + fR - R * fR / (6.0 * sigma * sigma);
  return w;
}

// Sum of the weights of the mirror copies of an impulse at `centre` that land
// on pixel i (half-sample symmetric extension, period 2*length), within reach.
double ReflectedWeight(const Weights& w, int centre, int length, int i) {
  const int64_t period = 2 * static_cast<int64_t>(length);
  double s = 0.0;
  for (int64_t base : {static_cast<int64_t>(centre), static_cast<int64_t>(-1) - centre}) {
    // Copies q = base + period*m with |q - i| <= reach.
    const int64_t m_lo = static_cast<int64_t>(std::ceil(static_cast<double>(i - w.reach - base) / period));
    const int64_t m_hi = static_cast<int64_t>(std::floor(static_cast<double>(i + w.reach - base) / period));
    for (int64_t m = m_lo; m <= m_hi; ++m) s += w(base + period * m - i);
  }
  return s;
}

// 1-D profile of one kernel over [lo, hi] (image coordinates), honouring the
// border mode. Returns the profile; `lo`/`hi` are set to the clipped range.
std::vector<float> Profile(const Weights& w, int centre, int length, bool reflect, bool renormalise, int* lo, int* hi) {
  *lo = static_cast<int>(std::max<int64_t>(0, centre - w.reach));
  *hi = static_cast<int>(std::min<int64_t>(length - 1, centre + w.reach));
  std::vector<double> acc(static_cast<size_t>(*hi - *lo + 1), 0.0);
  if (!reflect) {
    for (int i = *lo; i <= *hi; ++i) acc[i - *lo] = w(i - centre);
  } else if (!w.truncated) {
    for (int i = *lo; i <= *hi; ++i) acc[i - *lo] = ReflectedWeight(w, centre, length, i);
  } else {
    // Cut kernel (then lo = 0, hi = length - 1): fold a window of whole mirror
    // periods around the head, so every pixel gets the same number of copies
    // and a flat kernel stays flat.
    const int64_t period = 2 * static_cast<int64_t>(length);
    const int64_t half = (w.reach + period - 1) / period * length;  // >= reach, a multiple of length
    for (int64_t d = -half; d < half; ++d) {
      const int64_t q = ((centre + d) % period + period) % period;
      acc[static_cast<size_t>(q < length ? q : period - 1 - q)] += w(d);
    }
  }
  // A reflected kernel keeps all its mass; when it was cut, restore that.
  if (renormalise || (reflect && w.truncated)) {
    const double total = std::accumulate(acc.begin(), acc.end(), 0.0);
    if (total > 0) {
      for (double& v : acc) v /= total;
    }
  }
  return std::vector<float>(acc.begin(), acc.end());
}

}  // namespace

HeadPixels ToHeadPixels(const std::vector<std::array<double, 2>>& points, int width, int height,
                        const std::string& file) {
  HeadPixels out;
  out.annotations = static_cast<int64_t>(points.size());
  std::vector<int64_t> keys;
  keys.reserve(points.size());
  for (size_t i = 0; i < points.size(); ++i) {
    const double x = points[i][0], y = points[i][1];
    if (!std::isfinite(x) || !std::isfinite(y)) {
      throw Error(file, StrCat("annotation ", i + 1, " has a non-finite coordinate (", x, ", ", y, ")"));
    }
    // The original uses int(), truncation toward zero; a negative coordinate
    // is outside the image (numpy would wrap it to the far edge).
    if (x < 0 || y < 0 || x >= width || y >= height) {
      ++out.outside;
      continue;
    }
    const int col = static_cast<int>(x), row = static_cast<int>(y);
    keys.push_back(static_cast<int64_t>(row) * width + col);
  }
  out.inside = static_cast<int64_t>(keys.size());
  std::sort(keys.begin(), keys.end());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i > 0 && keys[i] == keys[i - 1]) {
      ++out.pixels.back().multiplicity;
      ++out.merged;
      continue;
    }
    out.pixels.push_back(HeadPixel{static_cast<int>(keys[i] / width), static_cast<int>(keys[i] % width), 1});
  }
  return out;
}

std::vector<double> GaussianKernel1D(double sigma, double truncate) {
  // The whole kernel as a vector: only for kernels that fit (RenderDensity
  // never builds it, so any sigma renders).
  CSR_ASSERT(sigma > 0 && truncate * sigma < 1e8, "GaussianKernel1D: sigma ", sigma, " too wide to store");
  const int radius = static_cast<int>(truncate * sigma + 0.5);
  std::vector<double> w(static_cast<size_t>(2 * radius + 1));
  const double k = -0.5 / (sigma * sigma);
  double sum = 0.0;
  for (int x = -radius; x <= radius; ++x) {
    w[x + radius] = std::exp(k * x * x);
    sum += w[x + radius];
  }
  for (double& v : w) v /= sum;
  return w;
}

std::vector<double> HeadSigmas(const std::vector<HeadPixel>& pixels, int width, int height,
                               const DensityOptions& options) {
  const size_t n = pixels.size();
  if (options.kernel == KernelRule::kFixed) return std::vector<double>(n, options.sigma);
  std::vector<double> sigmas(n);
  if (n == 1) {
    sigmas[0] = (width + height) / 8.0;
    return sigmas;
  }
  if (n == 0) return sigmas;
  PixelCloud cloud{&pixels};
  KdTree tree(2, cloud, nanoflann::KDTreeSingleIndexAdaptorParams(16));
  tree.buildIndex();
  // The head itself comes back first at distance 0 (pixels are distinct).
  const size_t k = std::min(static_cast<size_t>(options.neighbors) + 1, n);
  std::vector<size_t> idx(k);
  std::vector<double> dist2(k);
  for (size_t i = 0; i < n; ++i) {
    const double query[2] = {static_cast<double>(pixels[i].col), static_cast<double>(pixels[i].row)};
    const size_t found = tree.knnSearch(query, k, idx.data(), dist2.data());
    double sum = 0.0;
    for (size_t j = 1; j < found; ++j) sum += std::sqrt(dist2[j]);
    // 0.3 * (d1+d2+d3)/3 written as beta/k * sum to match the original's
    // 0.1 * (d1+d2+d3) rounding for the default k = 3.
    sigmas[i] = sum * (options.beta / static_cast<double>(found - 1));
  }
  return sigmas;
}

namespace {

// One head's separable profiles, clipped to the image.
struct Kernel {
  int row_lo = 0, row_hi = -1, col_lo = 0, col_hi = -1;
  std::vector<float> rows, cols;
};

// Profiles of heads [begin, end), in parallel.
std::vector<Kernel> MakeKernels(const std::vector<HeadPixel>& pixels, const std::vector<double>& sigmas, size_t begin,
                                size_t end, int width, int height, const DensityOptions& options) {
  const bool reflect = options.border == Border::kReflect;
  const bool exact = options.mode == DensityMode::kExactCount;
  std::vector<Kernel> kernels(end - begin);
  const char handoff = 0;  // tasks start and join inside libtbb: see common/base/tsan.h
  const auto body = tsan::Task(&handoff, [&](const tbb::blocked_range<size_t>& r) {
    for (size_t i = r.begin(); i != r.end(); ++i) {
      CSR_ASSERT(sigmas[i] > 0 && std::isfinite(sigmas[i]), "head ", i, " has sigma ", sigmas[i]);
      const Weights w = MakeWeights(sigmas[i], options.truncate, std::max(width, height));
      Kernel& k = kernels[i - begin];
      k.rows = Profile(w, pixels[i].row, height, reflect, exact, &k.row_lo, &k.row_hi);
      k.cols = Profile(w, pixels[i].col, width, reflect, exact, &k.col_lo, &k.col_hi);
      if (exact) {
        const float m = static_cast<float>(pixels[i].multiplicity);
        for (float& v : k.rows) v *= m;
      }
    }
  });
  tsan::Release(&handoff);
  tbb::parallel_for(tbb::blocked_range<size_t>(begin, end, 64), body);
  tsan::Acquire(&handoff);
  return kernels;
}

// Adds the kernels to the map. Bands of rows are independent, so no two
// threads write the same pixel, and each pixel adds its heads in head order.
void AddKernels(const std::vector<Kernel>& kernels, cv::Mat& density) {
  constexpr int kBand = 16;
  const int height = density.rows;
  const int bands = (height + kBand - 1) / kBand;
  const char handoff = 0;
  const auto body = tsan::Task(&handoff, [&](const tbb::blocked_range<int>& br) {
    for (int b = br.begin(); b != br.end(); ++b) {
      const int lo = b * kBand, hi = std::min(height, lo + kBand) - 1;
      for (const Kernel& k : kernels) {
        const int r0 = std::max(lo, k.row_lo), r1 = std::min(hi, k.row_hi);
        const int cols = k.col_hi - k.col_lo + 1;
        for (int r = r0; r <= r1; ++r) {
          const float a = k.rows[r - k.row_lo];
          float* out = density.ptr<float>(r) + k.col_lo;
          const float* c = k.cols.data();
          for (int j = 0; j < cols; ++j) out[j] += a * c[j];
        }
      }
    }
  });
  tsan::Release(&handoff);
  tbb::parallel_for(tbb::blocked_range<int>(0, bands), body);
  tsan::Acquire(&handoff);
}

}  // namespace

cv::Mat RenderDensity(const std::vector<HeadPixel>& pixels, const std::vector<double>& sigmas, int width, int height,
                      const DensityOptions& options) {
  CSR_ASSERT(sigmas.size() == pixels.size(), "one sigma per head pixel");
  cv::Mat density(height, width, CV_32F, cv::Scalar(0));
  // Heads go in batches whose profiles fit in about 64 MB: millions of heads
  // with image-wide kernels would otherwise need terabytes at once. Batching
  // keeps every pixel's order of additions, so the map is the same bits.
  constexpr double kBudget = 16.0 * 1024 * 1024;  // floats
  const size_t n = pixels.size();
  for (size_t begin = 0; begin < n;) {
    double floats = 0;
    size_t end = begin;
    while (end < n && (end == begin || floats < kBudget)) {
      const double span = 2.0 * options.truncate * sigmas[end] + 2.0;
      floats += std::min<double>(span, height) + std::min<double>(span, width);
      ++end;
    }
    AddKernels(MakeKernels(pixels, sigmas, begin, end, width, height, options), density);
    begin = end;
  }
  return density;
}

uint32_t DensityCrc32(const cv::Mat& density) {
  CSR_ASSERT(density.type() == CV_32F, "DensityCrc32 wants a CV_32F map, got type ", density.type());
  uint32_t crc = 0;
  for (int r = 0; r < density.rows; ++r) crc = Crc32(density.ptr<float>(r), density.cols * sizeof(float), crc);
  return crc;
}

std::string DescribeSettings(const DensityOptions& o) {
  std::string s = StrCat("mode=", Name(o.mode), " kernel=", Name(o.kernel));
  if (o.kernel == KernelRule::kFixed) {
    s += StrCat(" sigma=", o.sigma);
  } else {
    s += StrCat(" beta=", o.beta, " neighbors=", o.neighbors);
  }
  return s + StrCat(" truncate=", o.truncate, " border=", Name(o.border));
}

const char* Name(KernelRule v) { return v == KernelRule::kFixed ? "fixed" : "adaptive"; }
const char* Name(Border v) { return v == Border::kReflect ? "reflect" : "constant"; }
const char* Name(DensityMode v) { return v == DensityMode::kExactCount ? "exact-count" : "reference"; }

namespace {
template <typename E>
E ParseName(const std::string& text, const std::string& option, std::initializer_list<E> values) {
  std::string list;
  for (E v : values) {
    if (text == Name(v)) return v;
    list += StrCat(list.empty() ? "" : " or ", Name(v));
  }
  throw UsageError(option, StrCat("expected ", list, ", got '", text, "'"));
}

}  // namespace

KernelRule ParseKernelRule(const std::string& text, const std::string& option) {
  return ParseName(text, option, {KernelRule::kAdaptive, KernelRule::kFixed});
}
Border ParseBorder(const std::string& text, const std::string& option) {
  return ParseName(text, option, {Border::kConstant, Border::kReflect});
}
DensityMode ParseDensityMode(const std::string& text, const std::string& option) {
  return ParseName(text, option, {DensityMode::kReference, DensityMode::kExactCount});
}

void DensityOptions::Check() const {
  CheckRange("--sigma", sigma, kMinSigma, kMaxSigma);
  CheckRange("--beta", beta, kMinBeta, kMaxBeta);
  CheckRange("--neighbors", neighbors, 1, kMaxNeighbors);
  CheckRange("truncate", truncate, kMinTruncate, kMaxTruncate);
}

DensityOptions DensityChoice::Resolve(DatasetKind kind, const std::string& part) const {
  // The sparse sets default to the fixed kernel, the dense ones to the adaptive one.
  const bool sparse = (kind == DatasetKind::kShanghaiTech && part == "B") || kind == DatasetKind::kPoints;
  DensityOptions d;
  d.mode = mode;
  d.kernel = kernel.value_or(sparse ? KernelRule::kFixed : KernelRule::kAdaptive);
  d.border = border.value_or(sparse ? Border::kReflect : Border::kConstant);
  d.sigma = sigma;
  d.beta = beta;
  d.neighbors = neighbors;
  return d;
}

void DensityChoice::Register(ArgParser& args, const std::string& auto_rule) {
  args.AddEnum<DensityMode>("mode", &mode,
                            {{"reference", DensityMode::kReference}, {"exact-count", DensityMode::kExactCount}},
                            "reference: identical to the original; exact-count: every annotation sums to exactly 1");
  args.AddEnum<std::optional<KernelRule>>(
      "kernel", &kernel, {{"auto", std::nullopt}, {"adaptive", KernelRule::kAdaptive}, {"fixed", KernelRule::kFixed}},
      StrCat("Kernel width rule; auto = ", auto_rule));
  args.Add("sigma", &sigma, StrCat("Sigma of the fixed kernel, pixels (", kMinSigma, "..", kMaxSigma, ")"));
  args.Add(
      "beta", &beta,
      StrCat("Adaptive kernel: sigma = beta * mean distance to the nearest heads (", kMinBeta, "..", kMaxBeta, ")"));
  args.Add("neighbors", &neighbors, StrCat("Adaptive kernel: number of nearest other heads (1..", kMaxNeighbors, ")"));
  args.AddEnum<std::optional<Border>>(
      "border", &border, {{"auto", std::nullopt}, {"constant", Border::kConstant}, {"reflect", Border::kReflect}},
      StrCat("Image border; auto = constant with the adaptive default, reflect with the fixed one (as the original)"));
}

}  // namespace csr
