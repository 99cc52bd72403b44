#include "common/io/resize.h"

#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "common/base/error.h"

namespace csr {

void SizeLimits::Check() const {
  CheckRange("--min-side", min_side, 0, kMaxRescaledSide, "0 = no limit");
  CheckRange("--max-side", max_side, 0, kMaxRescaledSide, "0 = no limit");
  CheckRange("--max-short-side", max_short_side, 0, kMaxRescaledSide, "0 = no limit");
  CheckThat(max_side == 0 || min_side <= max_side, "--min-side", StrCat(min_side),
            StrCat("larger than --max-side ", max_side));
  CheckThat(max_short_side == 0 || min_side <= max_short_side, "--min-side", StrCat(min_side),
            StrCat("larger than --max-short-side ", max_short_side));
}

std::string Describe(const SizeLimits& l) {
  if (!l.active()) return "none";
  std::string out;
  auto add = [&](const char* name, int v) {
    if (v > 0) out += StrCat(out.empty() ? "" : " ", name, "=", v);
  };
  add("min_side", l.min_side);
  add("max_side", l.max_side);
  add("max_short_side", l.max_short_side);
  return out;
}

Rescale RescaleFor(int width, int height, const SizeLimits& l, const std::string& file) {
  CSR_ASSERT(width > 0 && height > 0, "image size ", width, "x", height);
  Rescale r;
  r.width = width;
  r.height = height;
  const double shorter = std::min(width, height), longer = std::max(width, height);
  double ratio = 1.0;
  if (l.max_side > 0 && longer * ratio > l.max_side) ratio = l.max_side / longer;
  if (l.max_short_side > 0 && shorter * ratio > l.max_short_side) ratio = l.max_short_side / shorter;
  if (l.min_side > 0 && shorter * ratio < l.min_side) ratio = l.min_side / shorter;
  if (ratio == 1.0) return r;
  const double w = std::max(1.0, std::round(width * ratio)), h = std::max(1.0, std::round(height * ratio));
  if (w > kMaxRescaledSide || h > kMaxRescaledSide) {
    throw Error(file, StrCat(width, "x", height, " rescaled by ", ratio, " would be ", w, "x", h, ", over ",
                             kMaxRescaledSide, " px a side; lower --min-side"));
  }
  r.width = static_cast<int>(w);
  r.height = static_cast<int>(h);
  r.sx = w / width;
  r.sy = h / height;
  return r;
}

cv::Mat RescaleImage(const cv::Mat& image, const Rescale& r) {
  if (image.cols == r.width && image.rows == r.height) return image;
  const bool shrinks = static_cast<int64_t>(r.width) * r.height < static_cast<int64_t>(image.cols) * image.rows;
  cv::Mat out;
  cv::resize(image, out, cv::Size(r.width, r.height), 0, 0, shrinks ? cv::INTER_AREA : cv::INTER_CUBIC);
  return out;
}

std::vector<Point> RescalePoints(const std::vector<Point>& points, const Rescale& r) {
  std::vector<Point> out(points);
  if (r.identity()) return out;
  for (Point& p : out) p = {p[0] * r.sx, p[1] * r.sy};
  return out;
}

SizeLimits DefaultSizeLimits(DatasetKind kind) {
  SizeLimits l;
  switch (kind) {
    case DatasetKind::kQnrf:
      l.min_side = 512;
      l.max_short_side = 2048;
      break;
    case DatasetKind::kJhu:
      l.min_side = 512;
      l.max_side = 2048;
      break;
    case DatasetKind::kNwpu:
      l.max_side = 2048;
      break;
    default:
      break;
  }
  return l;
}

SizeLimits SizeChoice::Resolve(DatasetKind kind) const {
  SizeLimits l = DefaultSizeLimits(kind);
  if (min_side) l.min_side = *min_side;
  if (max_side) l.max_side = *max_side;
  if (max_short_side) l.max_short_side = *max_short_side;
  return l;
}

namespace {

std::optional<int> ParseSide(const std::string& text, const std::string& where) {
  if (text == "auto") return std::nullopt;
  size_t used = 0;
  long v = -1;
  try {
    v = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty() || v < 0 || v > kMaxRescaledSide) {
    throw UsageError(where, StrCat("expected auto or a number of pixels 0..", kMaxRescaledSide,
                                   " (0 = no limit), got '", text, "'"));
  }
  return static_cast<int>(v);
}

std::string FormatSide(const std::optional<int>& v) { return v ? StrCat(*v) : std::string("auto"); }

}  // namespace

void SizeChoice::Register(ArgParser& parser) {
  const std::string dflt = "auto = the dataset's default (docs/datasets.md), 0 = no limit";
  parser.AddTyped<std::optional<int>>("min-side", &min_side, ParseSide, FormatSide, "PX|auto",
                                      "rescale images (and their points) so the shorter side is at least PX; " + dflt);
  parser.AddTyped<std::optional<int>>("max-side", &max_side, ParseSide, FormatSide, "PX|auto",
                                      "rescale so the longer side is at most PX; " + dflt);
  parser.AddTyped<std::optional<int>>("max-short-side", &max_short_side, ParseSide, FormatSide, "PX|auto",
                                      "rescale so the shorter side is at most PX; " + dflt);
}

}  // namespace csr
