// Rescaling an image and its head points together before the density is
// made (crop_shards --min-side, --max-side, --max-short-side): the large
// datasets' images are 2-10x ShanghaiTech's, and the peers train on them
// rescaled (docs/datasets.md lists each dataset's rule and its source).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "common/base/cli.h"
#include "common/io/datasets.h"
#include "common/io/point_files.h"

namespace csr {

// Largest side an image may be rescaled to (the shard reader's bound).
constexpr int kMaxRescaledSide = 16384;

// Limits on an image's sides, in pixels; 0 = no limit.
struct SizeLimits {
  int min_side = 0;        // the shorter side is scaled up to at least this
  int max_side = 0;        // the longer side is scaled down to at most this
  int max_short_side = 0;  // the shorter side is scaled down to at most this (Bayesian-Loss's rule for UCF-QNRF)

  bool active() const { return min_side > 0 || max_side > 0 || max_short_side > 0; }
  // Throws csr::UsageError naming the option: each 0..kMaxRescaledSide, and a
  // minimum no larger than a maximum.
  void Check() const;
  bool operator==(const SizeLimits& o) const {
    return min_side == o.min_side && max_side == o.max_side && max_short_side == o.max_short_side;
  }
};

// "min_side=512 max_short_side=2048", or "none".
std::string Describe(const SizeLimits& limits);

// The size an image is rescaled to and the factors that map source
// coordinates to it (x' = x * sx, y' = y * sy).
struct Rescale {
  int width = 0, height = 0;
  double sx = 1.0, sy = 1.0;
  bool identity() const { return sx == 1.0 && sy == 1.0; }
};

// One ratio r for both sides, as the peers compute it: the longer side
// capped by max_side, then the shorter by max_short_side, then raised to
// min_side (the minimum wins); each side becomes round(side * r), at least 1.
// The factors are the exact new/old ratios of each side, so points stay on the
// pixels they annotate. Throws csr::Error naming `file` when a side would
// exceed kMaxRescaledSide.
Rescale RescaleFor(int width, int height, const SizeLimits& limits, const std::string& file);

// The image at `r`'s size: area averaging when it shrinks, bicubic when it
// grows (OpenCV's INTER_AREA / INTER_CUBIC); the image itself when r is the
// identity.
cv::Mat RescaleImage(const cv::Mat& image, const Rescale& r);
// Every point multiplied by the factors.
std::vector<Point> RescalePoints(const std::vector<Point>& points, const Rescale& r);

// The command-line form: each limit a number or "auto" (the dataset's
// default, SizeLimits for DatasetKind via Resolve).
struct SizeChoice {
  std::optional<int> min_side, max_side, max_short_side;  // nullopt = auto

  SizeLimits Resolve(DatasetKind kind) const;
  void Register(ArgParser& parser);
};

// The default limits of a dataset (docs/datasets.md): UCF-QNRF the shorter
// side within [512, 2048] (Bayesian-Loss, DM-Count), JHU-Crowd++ the longer
// side at most 2048 and the shorter at least 512 (FIDTM), NWPU-Crowd inside
// 2048 x 2048 (its official code); none for the others.
SizeLimits DefaultSizeLimits(DatasetKind kind);

}  // namespace csr
