#include "preprocess/synthetic.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "common/base/cli.h"
#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/base/random.h"
#include "common/base/tsan.h"
#include "common/io/mat_io.h"
#include "common/io/point_files.h"

namespace csr {
namespace {

using Points = std::vector<std::array<double, 2>>;

constexpr const char* kMarker = ".csrnet-synthetic";  // marks a part folder this generator may overwrite
constexpr double kPi = 3.14159265358979323846;

uint64_t SubSeed(uint64_t seed, uint64_t a, uint64_t b) { return SplitMix64(seed ^ SplitMix64(SplitMix64(a) + b)); }

// mt19937_64's output sequence is fixed by the standard; the std:: distributions
// are not (they differ between standard libraries): the mappings are
// common/base/random.h's.
class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(SplitMix64(seed)) {}
  uint64_t Next() { return gen_(); }
  double Uniform() { return Uniform01(gen_); }  // [0, 1)
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  int Int(int lo, int hi) {  // inclusive
    return lo + static_cast<int>(ModuloDraw(gen_, static_cast<uint64_t>(int64_t{hi} - lo + 1)));
  }
  double Normal() {                     // Box-Muller
    const double u1 = 1.0 - Uniform();  // (0, 1]
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * Uniform());
  }

 private:
  std::mt19937_64 gen_;
};

// y / H for a point drawn with density falling linearly from the top (1) to
// the bottom (1 - a): distant rows of a crowd hold more people per pixel.
double PerspectiveY(Rng& rng, double a) {
  const double u = rng.Uniform();
  return (1.0 - std::sqrt(1.0 - 2.0 * a * u * (1.0 - a / 2.0))) / a;
}

struct Cluster {
  double cx, cy, sx, sy, weight;
};

std::vector<Cluster> MakeClusters(Rng& rng, int width, int height) {
  std::vector<Cluster> clusters(static_cast<size_t>(rng.Int(1, 4)));
  for (Cluster& c : clusters) {
    c.cx = rng.Uniform(0.1, 0.9) * width;
    c.cy = std::clamp(std::pow(rng.Uniform(), 1.5), 0.05, 0.95) * height;  // biased toward the top
    c.sx = rng.Uniform(0.06, 0.18) * width;
    c.sy = c.sx * rng.Uniform(0.4, 0.8) * (0.5 + c.cy / height);  // flatter far away
    c.weight = rng.Uniform(0.5, 1.5);
  }
  return clusters;
}

std::array<double, 2> OnePoint(Rng& rng, const std::vector<Cluster>& clusters, double cluster_share, int width,
                               int height) {
  double total = 0;
  for (const Cluster& c : clusters) total += c.weight;
  const double lo = 0.01, hi_x = width - 0.01, hi_y = height - 0.01;
  for (int attempt = 0; attempt < 50; ++attempt) {
    double x, y;
    if (rng.Uniform() < cluster_share) {
      double pick = rng.Uniform() * total;
      const Cluster* c = &clusters.back();
      for (const Cluster& k : clusters) {
        if ((pick -= k.weight) < 0) {
          c = &k;
          break;
        }
      }
      x = c->cx + c->sx * rng.Normal();
      y = c->cy + c->sy * rng.Normal();
    } else {
      x = rng.Uniform() * width;
      y = PerspectiveY(rng, 0.7) * height;
    }
    if (x > lo && x < hi_x && y > lo && y < hi_y) return {x, y};
  }
  return {rng.Uniform(0.25, 0.75) * width, rng.Uniform(0.25, 0.75) * height};
}

// Radius of a head at row y: perspective makes far (top) heads smaller.
double HeadRadius(double y, int width, int height, size_t count) {
  const double spacing = std::sqrt(static_cast<double>(width) * height / std::max<size_t>(count, 1));
  const double base = std::clamp(0.3 * spacing, 2.5, 3.0 + 0.04 * std::min(width, height));
  return base * (0.45 + 0.9 * y / height);
}

cv::Scalar Jitter(Rng& rng, cv::Scalar c, double amount) {
  for (int i = 0; i < 3; ++i) c[i] = std::clamp(c[i] + rng.Uniform(-amount, amount), 0.0, 255.0);
  return c;
}

// Gradient sky/ground, a few blended blocks (stands, walls), low-frequency blotches.
cv::Mat RenderBackground(Rng& rng, int width, int height) {
  cv::Mat img(height, width, CV_32FC3);
  cv::Vec3f top, bottom;
  for (int c = 0; c < 3; ++c) {
    top[c] = static_cast<float>(rng.Uniform(90, 210));
    bottom[c] = static_cast<float>(rng.Uniform(50, 170));
  }
  const float tilt = static_cast<float>(rng.Uniform(-30, 30));
  for (int y = 0; y < height; ++y) {
    const float t = static_cast<float>(y) / static_cast<float>(std::max(height - 1, 1));
    auto* row = img.ptr<cv::Vec3f>(y);
    for (int x = 0; x < width; ++x) {
      const float s = static_cast<float>(x) / static_cast<float>(std::max(width - 1, 1)) - 0.5f;
      row[x] = top * (1 - t) + bottom * t + cv::Vec3f::all(tilt * s);
    }
  }
  const int blocks = rng.Int(2, 7);
  for (int b = 0; b < blocks; ++b) {
    const int x0 = rng.Int(0, width - 1), y0 = rng.Int(0, height / 2);
    const int bw = rng.Int(width / 10 + 1, width / 2 + 1), bh = rng.Int(height / 10 + 1, height / 2 + 1);
    const cv::Rect r = cv::Rect(x0, y0, bw, bh) & cv::Rect(0, 0, width, height);
    const cv::Scalar color(rng.Uniform(30, 230), rng.Uniform(30, 230), rng.Uniform(30, 230));
    cv::Mat roi = img(r);
    cv::addWeighted(roi, 0.65, cv::Mat(roi.size(), CV_32FC3, color), 0.35, 0, roi);
  }
  cv::Mat coarse(height / 24 + 2, width / 24 + 2, CV_32FC1);
  for (int y = 0; y < coarse.rows; ++y) {
    for (int x = 0; x < coarse.cols; ++x) coarse.at<float>(y, x) = static_cast<float>(rng.Uniform(-22, 22));
  }
  cv::Mat blotches;
  cv::resize(coarse, blotches, img.size(), 0, 0, cv::INTER_CUBIC);
  cv::Mat blotches3;
  cv::merge(std::vector<cv::Mat>{blotches, blotches, blotches}, blotches3);
  img += blotches3;
  return img;
}

void DrawPerson(cv::Mat& img, Rng& rng, double x, double y, double r) {
  static const cv::Scalar kSkin[] = {{80, 110, 160}, {60, 90, 140}, {100, 140, 200}, {45, 65, 95}, {120, 160, 220}};
  constexpr int kShift = 4;  // sub-pixel drawing: coordinates in 1/16 px
  constexpr double kScale = 1 << kShift;
  auto pt = [&](double px, double py) { return cv::Point(cvRound(px * kScale), cvRound(py * kScale)); };
  auto axes = [&](double ax, double ay) {
    return cv::Size(std::max(1, cvRound(ax * kScale)), std::max(1, cvRound(ay * kScale)));
  };
  r *= rng.Uniform(0.85, 1.15);
  const double shade = rng.Uniform(15, 190);  // mostly muted clothing, a few bright colours
  const double tint = rng.Uniform() < 0.2 ? 80 : 30;
  const cv::Scalar clothes = Jitter(rng, cv::Scalar::all(shade), tint);
  if (rng.Uniform() < 0.85) {  // shoulders, sometimes hidden by the crowd in front
    cv::ellipse(img, pt(x, y + 1.7 * r), axes(1.9 * r, 1.1 * r), 0, 0, 360, clothes, cv::FILLED, cv::LINE_AA, kShift);
  }
  const cv::Scalar skin = Jitter(rng, kSkin[rng.Int(0, 4)], 15);
  const double angle = rng.Uniform(-15, 15);
  cv::ellipse(img, pt(x, y), axes(0.85 * r, r), angle, 0, 360, skin, cv::FILLED, cv::LINE_AA, kShift);
  const double hair = rng.Uniform(10, 70);
  const cv::Scalar hair_color(hair, hair * rng.Uniform(0.9, 1.2), hair * rng.Uniform(0.9, 1.4));
  const double back = rng.Uniform() < 0.3 ? 0 : 180;  // seen from behind: the whole head is hair
  cv::ellipse(img, pt(x, y - 0.1 * r), axes(0.9 * r, 0.95 * r), angle, back, 360, hair_color, cv::FILLED, cv::LINE_AA,
              kShift);
}

void AddSensorNoise(cv::Mat& img, Rng& rng) {
  for (int y = 0; y < img.rows; ++y) {
    auto* row = img.ptr<uint8_t>(y);
    for (int i = 0; i < img.cols * img.channels(); ++i) {
      row[i] = cv::saturate_cast<uint8_t>(row[i] + static_cast<int>(rng.Next() % 13) - 6);
    }
  }
}

fs::path PartDir(const SyntheticOptions& o) {
  if (o.like != DatasetKind::kShanghaiTech) return fs::path(o.out);
  return fs::path(o.out) / (o.layout == "official" ? "part_" + o.part + "_final" : "part_" + o.part);
}

}  // namespace

void SyntheticOptions::Check() const {
  CheckThat(!out.empty(), "--out", "\"\"", "required: the dataset root to write into");
  CheckThat(part == "A" || part == "B", "--part", part, "expected A or B");
  CheckThat(layout == "official" || layout == "mirrored", "--layout", layout, "expected official or mirrored");
  // Summed in 64 bits: INT_MAX + INT_MAX wrapped negative and passed, then ran forever.
  const int64_t images = static_cast<int64_t>(train_images) + test_images;
  CheckThat(train_images >= 0 && test_images >= 0 && images >= 1 && images <= 100000, "--images",
            StrCat(train_images, " train and ", test_images, " test"),
            "need 0..100000 train and test images, at least one in all");
  if (min_size != 0 || max_size != 0) {
    CheckThat(min_size >= 16 && max_size <= 8192 && min_size <= max_size, "--min-size",
              StrCat(min_size, " and ", max_size), "need 16 <= min-size <= max-size <= 8192");
  }
  CheckThat(min_heads >= 0 && min_heads <= max_heads && max_heads <= 65535, "--min-heads",
            StrCat(min_heads, " and ", max_heads), "need 0 <= min-heads <= max-heads <= 65535");
  CheckRange("--jpeg-quality", jpeg_quality, 1, 100);
}

namespace {

// An empty (or absent) part folder is used as is; a synthetic one is replaced
// only with `overwrite`; anything else (real data!) is never touched.
void PreparePartDir(const SyntheticOptions& o, const fs::path& part_dir) {
  std::error_code ec;
  if (fs::exists(part_dir) && !fs::is_directory(part_dir)) throw Error(part_dir.string(), "exists and is not a folder");
  if (fs::is_directory(part_dir) && !fs::is_empty(part_dir, ec)) {
    if (!o.overwrite) throw Error(part_dir.string(), "already exists and is not empty (--overwrite replaces it)");
    if (!fs::exists(part_dir / kMarker)) {
      throw Error(part_dir.string(), StrCat("not made by make_synthetic (no ", kMarker,
                                            " file), refusing to overwrite it: remove it yourself"));
    }
    fs::remove_all(part_dir, ec);
    if (ec) throw Error(part_dir.string(), StrCat("cannot remove the old dataset: ", ec.message()));
  }
  MakeDirs(part_dir);
  WriteTextFileAtomic(part_dir / kMarker,
                      StrCat("Synthetic ShanghaiTech-like data written by csrnet-cpp make_synthetic (seed ", o.seed,
                             ", part ", o.part, "). make_synthetic --overwrite may replace this folder.\n"));
}

struct ImagePlan {
  int width, height, heads;
  bool gray;
  uint64_t points_seed, pixels_seed;
};

// Sizes and counts as real_stats draws them: width and aspect ratio around
// the means (log-normal, so the size spread is a factor, not a width), the
// count log-normal around the mean of the non-empty images and clamped to
// the published range.
void PlanRealStats(const SyntheticOptions& o, Rng& rng, int split_id, int index, ImagePlan* p) {
  const DatasetStats st = PublishedStats(o.like, o.part);
  const double spread = 0.25, aspect_spread = 0.15, count_spread = 1.2;
  const double w = st.width * std::exp(spread * rng.Normal() - spread * spread / 2);
  const double aspect =
      st.height / st.width * std::exp(aspect_spread * rng.Normal() - aspect_spread * aspect_spread / 2);
  p->width = static_cast<int>(std::clamp(std::lround(w), 64L, std::lround(2.0 * st.width)));
  p->height = static_cast<int>(std::clamp(std::lround(w * aspect), 64L, std::lround(2.0 * st.height)));
  p->width = std::min(p->width, 8192);
  p->height = std::min(p->height, 8192);
  const double nonempty_mean = st.mean_count / (1.0 - st.empty_share);
  const double c = std::exp(std::log(nonempty_mean) - count_spread * count_spread / 2 + count_spread * rng.Normal());
  p->heads = std::clamp(static_cast<int>(std::lround(c)), std::max(1, st.min_count), st.max_count);
  if (rng.Uniform() < st.empty_share) p->heads = 0;
  if (split_id == 0 && index == 1) p->heads = st.max_count;  // the densest image of the dataset is in every copy
}

ImagePlan PlanImage(const SyntheticOptions& o, int split_id, int index) {
  Rng rng(SubSeed(static_cast<uint64_t>(o.seed), static_cast<uint64_t>(split_id), static_cast<uint64_t>(index)));
  ImagePlan p{};
  const bool default_sizes = o.min_size == 0 && o.max_size == 0;
  if (o.real_stats) {
    PlanRealStats(o, rng, split_id, index, &p);
  } else if (o.part == "B" && default_sizes) {
    p.width = 1024;
    p.height = 768;
  } else {
    const int lo = default_sizes ? 256 : o.min_size, hi = default_sizes ? 512 : o.max_size;
    p.width = rng.Int(lo, hi);
    p.height = rng.Int(lo, hi);
  }
  if (!o.real_stats) {
    const double t = rng.Uniform(std::log(o.min_heads + 1.0), std::log(o.max_heads + 1.0));
    p.heads = std::clamp(static_cast<int>(std::lround(std::exp(t) - 1.0)), o.min_heads, o.max_heads);
  }
  // Part A mixes in grayscale images, as the real one does (20 of 482); the third
  // train image is always one so that small datasets include the case.
  p.gray = o.part == "A" && (rng.Uniform() < 0.1 || (split_id == 0 && index == 3));
  p.points_seed = rng.Next();
  p.pixels_seed = rng.Next();
  return p;
}

}  // namespace

DatasetStats PublishedStats(DatasetKind kind, const std::string& part) {
  // Mean size (width x height), mean and range of the count, share of empty
  // images, from each dataset's paper or release (docs/synthetic.md).
  switch (kind) {
    case DatasetKind::kShanghaiTech:
      return part == "B" ? DatasetStats{1024, 768, 123.6, 9, 578, 0} : DatasetStats{868, 589, 501.4, 33, 3139, 0};
    case DatasetKind::kQnrf:
      return {2902, 2013, 815.4, 49, 12865, 0};
    case DatasetKind::kUcf50:
      return {2888, 2101, 1279.5, 94, 4543, 0};
    case DatasetKind::kJhu:
      return {1450, 900, 346.0, 0, 25791, 0.024};
    case DatasetKind::kNwpu:
      return {3209, 2191, 418.1, 0, 20033, 0.069};
    case DatasetKind::kPoints:
      break;
  }
  return {1280, 720, 100.0, 0, 2000, 0.05};  // custom footage: a 720p camera
}

Points SyntheticHeads(int width, int height, int count, uint64_t seed) {
  if (count <= 0 || width < 1 || height < 1) return {};
  Rng rng(seed);
  const std::vector<Cluster> clusters = MakeClusters(rng, width, height);
  const double cluster_share = rng.Uniform(0.4, 0.75);
  const int duplicates = count >= 10 ? std::max(1, count / 100) : 0;
  const int edge = count >= 5 ? 1 : 0;
  Points pts;
  pts.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count - duplicates - edge; ++i)
    pts.push_back(OnePoint(rng, clusters, cluster_share, width, height));
  const size_t base = pts.size();
  for (int i = 0; i < duplicates; ++i) {
    // Another point in the same pixel: both truncate to one head pixel, as in the real annotations.
    const auto& p = pts[static_cast<size_t>(rng.Next() % base)];
    pts.push_back({std::floor(p[0]) + rng.Uniform(0.05, 0.95), std::floor(p[1]) + rng.Uniform(0.05, 0.95)});
  }
  for (int i = 0; i < edge; ++i) {
    // A fraction of a pixel from the right edge (real Part A has x ~ 1023.8 on 1024-wide images).
    const double x = width - rng.Uniform(0.1, 0.3);
    pts.push_back({std::max(x, width * 0.5), std::clamp(PerspectiveY(rng, 0.7) * height, 0.01, height - 0.01)});
  }
  for (size_t i = pts.size(); i > 1; --i) std::swap(pts[i - 1], pts[static_cast<size_t>(rng.Next() % i)]);
  return pts;
}

cv::Mat RenderCrowd(int width, int height, const Points& points, uint64_t seed) {
  Rng rng(seed);
  cv::Mat background = RenderBackground(rng, width, height);
  cv::Mat img;
  background.convertTo(img, CV_8UC3);
  // Back rows first, so nearer people overlap farther ones.
  std::vector<size_t> order(points.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return points[a][1] < points[b][1]; });
  for (size_t i : order) {
    const double r = HeadRadius(points[i][1], width, height, points.size());
    DrawPerson(img, rng, points[i][0], points[i][1], r);
  }
  cv::GaussianBlur(img, img, cv::Size(3, 3), 0.7);
  AddSensorNoise(img, rng);
  return img;
}

namespace {

// A number as text that reads back to the same double.
std::string Exact(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

std::string Id4(int n) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d", n);
  return buf;
}

void WriteJpeg(const fs::path& path, const cv::Mat& img, int quality) {
  std::vector<uint8_t> jpeg;
  if (!cv::imencode(".jpg", img, jpeg, {cv::IMWRITE_JPEG_QUALITY, quality})) {
    throw Error(path.string(), "JPEG encoding failed");
  }
  WriteFileAtomic(path, jpeg.data(), jpeg.size());
}

// One image of a --like layout: where it goes and how its heads are stored.
struct LikeItem {
  fs::path image, annotation;
  std::string stem;
};

LikeItem PlaceLike(const SyntheticOptions& o, const std::string& split, int index, int number) {
  const fs::path root(o.out);
  LikeItem it;
  switch (o.like) {
    case DatasetKind::kQnrf: {
      it.stem = "img_" + Id4(index);
      const fs::path dir = root / (split == "train" ? "Train" : "Test");
      it.image = dir / (it.stem + ".jpg");
      it.annotation = dir / (it.stem + "_ann.mat");
      break;
    }
    case DatasetKind::kUcf50:
      it.stem = std::to_string(number);
      it.image = root / (it.stem + ".jpg");
      it.annotation = root / (it.stem + "_ann.mat");
      break;
    case DatasetKind::kJhu:
      it.stem = Id4(index);
      it.image = root / split / "images" / (it.stem + ".jpg");
      it.annotation = root / split / "gt" / (it.stem + ".txt");
      break;
    case DatasetKind::kNwpu:
      it.stem = Id4(number);
      it.image = root / "images" / (it.stem + ".jpg");
      if (split != "test") it.annotation = root / "jsons" / (it.stem + ".json");  // the test labels are withheld
      break;
    case DatasetKind::kPoints: {
      it.stem = StrCat(split == "train" ? "cam1_" : "cam2_", Id4(index));
      static const char* const kExt[] = {".txt", ".csv", ".json"};
      it.image = root / "images" / (it.stem + ".jpg");
      it.annotation = root / "points" / (it.stem + kExt[index % 3]);
      break;
    }
    case DatasetKind::kShanghaiTech:
      break;
  }
  return it;
}

// Writes the heads of `it` in its layout's format; returns them as written
// (JHU-Crowd++ stores integer pixels).
Points WriteLikeAnnotation(const SyntheticOptions& o, const LikeItem& it, Points pts, int width, int height,
                           uint64_t seed) {
  if (it.annotation.empty()) return pts;
  MakeDirs(it.annotation.parent_path());
  switch (o.like) {
    case DatasetKind::kQnrf:
    case DatasetKind::kUcf50:
      WritePointsVariable(it.annotation.string(), "annPoints", pts);
      break;
    case DatasetKind::kJhu: {
      Rng rng(seed);
      std::string text;
      for (auto& p : pts) {
        p = {std::clamp(std::round(p[0]), 0.0, width - 1.0), std::clamp(std::round(p[1]), 0.0, height - 1.0)};
        const int size = std::max(2, static_cast<int>(std::lround(2 * HeadRadius(p[1], width, height, pts.size()))));
        text += StrCat(static_cast<int>(p[0]), " ", static_cast<int>(p[1]), " ", size, " ", size, " ", rng.Int(1, 3),
                       " ", rng.Int(0, 1), "\n");
      }
      WriteTextFileAtomic(it.annotation, text);
      break;
    }
    case DatasetKind::kNwpu: {
      nlohmann::json points = nlohmann::json::array(), boxes = nlohmann::json::array();
      for (const auto& p : pts) {
        const double r = HeadRadius(p[1], width, height, pts.size());
        points.push_back({p[0], p[1]});
        boxes.push_back({std::max(0.0, p[0] - r), std::max(0.0, p[1] - r), std::min(width - 1.0, p[0] + r),
                         std::min(height - 1.0, p[1] + r)});
      }
      const nlohmann::json j = {
          {"img_id", it.stem + ".jpg"}, {"human_num", pts.size()}, {"points", points}, {"boxes", boxes}};
      WriteTextFileAtomic(it.annotation, j.dump() + "\n");
      const fs::path mat = it.annotation.parent_path().parent_path() / "mats" / (it.stem + ".mat");
      MakeDirs(mat.parent_path());
      WritePointsVariable(mat.string(), "annPoints", pts);
      break;
    }
    case DatasetKind::kPoints: {
      const std::string ext = it.annotation.extension().string();
      std::string text = ext == ".csv" ? "x,y\n" : "";
      if (ext == ".json") {
        nlohmann::json points = nlohmann::json::array();
        for (const auto& p : pts) points.push_back({p[0], p[1]});
        text = nlohmann::json{{"points", points}}.dump() + "\n";
      } else {
        for (const auto& p : pts) text += StrCat(Exact(p[0]), ext == ".csv" ? "," : " ", Exact(p[1]), "\n");
      }
      WriteTextFileAtomic(it.annotation, text);
      break;
    }
    case DatasetKind::kShanghaiTech:
      break;
  }
  return pts;
}

// Every layout but ShanghaiTech's: --out is the dataset root.
SyntheticSummary GenerateLike(const SyntheticOptions& o) {
  SyntheticSummary summary;
  summary.part_dir = PartDir(o);
  PreparePartDir(o, summary.part_dir);
  const bool three = o.like == DatasetKind::kJhu || o.like == DatasetKind::kNwpu;
  std::vector<std::pair<std::string, int>> splits = {{"train", o.train_images}, {"test", o.test_images}};
  if (three) splits = {{"train", o.train_images}, {"val", o.test_images}, {"test", o.test_images}};
  struct Slot {
    std::string split;
    int k = 0, index = 0, number = 0;  // split number, index in the split, running number (UCF_CC_50, NWPU ids)
    ImagePlan plan{};
    LikeItem item;
    bool gray = false;
    Points pts;
  };
  std::vector<Slot> slots;
  int number = 0;
  for (size_t k = 0; k < splits.size(); ++k) {
    for (int i = 1; i <= splits[k].second; ++i) {
      Slot slot;
      slot.split = splits[k].first;
      slot.k = static_cast<int>(k);
      slot.index = i;
      slot.number = ++number;
      slot.item = PlaceLike(o, slot.split, i, slot.number);
      // The folders first, here: the parallel writers below find them.
      MakeDirs(slot.item.image.parent_path());
      if (!slot.item.annotation.empty()) MakeDirs(slot.item.annotation.parent_path());
      if (o.like == DatasetKind::kNwpu && !slot.item.annotation.empty()) MakeDirs(summary.part_dir / "mats");
      slots.push_back(std::move(slot));
    }
  }
  // Every image is planned by its own seed, so they render in parallel and
  // the files do not depend on the thread count.
  const auto render = [&](Slot& slot) {
    slot.plan = PlanImage(o, slot.k, slot.index);
    if (three && slot.k == 0 && slot.index == 2) slot.plan.heads = 0;  // both datasets have images without anyone
    const ImagePlan& plan = slot.plan;
    slot.pts = SyntheticHeads(plan.width, plan.height, plan.heads, plan.points_seed);
    cv::Mat img = RenderCrowd(plan.width, plan.height, slot.pts, plan.pixels_seed);
    slot.gray = o.like == DatasetKind::kUcf50 || plan.gray;
    if (slot.gray) cv::cvtColor(img, img, cv::COLOR_BGR2GRAY);
    WriteJpeg(slot.item.image, img, o.jpeg_quality);
    slot.pts =
        WriteLikeAnnotation(o, slot.item, slot.pts, plan.width, plan.height, plan.points_seed ^ 0x9e3779b97f4a7c15ULL);
  };
  const char handoff = 0;  // the slots pass to the tasks and back inside libtbb: see common/base/tsan.h
  tsan::Release(&handoff);
  tbb::parallel_for(tbb::blocked_range<size_t>(0, slots.size()),
                    tsan::Task(&handoff, [&](const tbb::blocked_range<size_t>& range) {
                      for (size_t n = range.begin(); n != range.end(); ++n) render(slots[n]);
                    }));
  tsan::Acquire(&handoff);
  std::map<std::string, std::string> lists, labels;  // by split: list file and JHU image_labels text
  for (Slot& slot : slots) {
    const std::string& split = slot.split;
    const LikeItem& it = slot.item;
    const int n = slot.number;
    const int64_t count = static_cast<int64_t>(slot.pts.size());
    if (o.like == DatasetKind::kJhu) {
      labels[split] +=
          StrCat(it.stem, ",", count, ",", n % 2 ? "street" : "stadium", ",", n % 4, ",", n % 5 == 0 ? 1 : 0, "\n");
    } else if (o.like == DatasetKind::kNwpu) {
      const int level = count == 0 ? 0 : count < 100 ? 1 : count < 500 ? 2 : count < 5000 ? 3 : 4;
      lists[split] += split == "test" ? it.stem + "\n" : StrCat(it.stem, " ", n % 4, " ", level, "\n");
    } else if (o.like == DatasetKind::kPoints) {
      lists[split] += it.stem + "\n";
    }
    summary.heads += count;
    (slot.k == 0 ? summary.train_images : summary.test_images) += 1;
    summary.items.push_back(SyntheticImage{split, it.image, it.annotation, slot.plan.width, slot.plan.height, slot.gray,
                                           std::move(slot.pts)});
  }
  for (const auto& [split, text] : lists) WriteTextFileAtomic(summary.part_dir / (split + ".txt"), text);
  for (const auto& [split, text] : labels) WriteTextFileAtomic(summary.part_dir / split / "image_labels.txt", text);
  summary.images = summary.train_images + summary.test_images;
  return summary;
}

}  // namespace

SyntheticSummary GenerateSynthetic(const SyntheticOptions& o) {
  o.Check();
  if (o.like != DatasetKind::kShanghaiTech) return GenerateLike(o);
  SyntheticSummary summary;
  summary.part_dir = PartDir(o);
  PreparePartDir(o, summary.part_dir);
  const char* gt_name = o.layout == "official" ? "ground_truth" : "ground-truth";
  const std::vector<int> jpeg_params = {cv::IMWRITE_JPEG_QUALITY, o.jpeg_quality};
  for (int split_id = 0; split_id < 2; ++split_id) {
    const int n = split_id == 0 ? o.train_images : o.test_images;
    const fs::path split_dir = summary.part_dir / (split_id == 0 ? "train_data" : "test_data");
    MakeDirs(split_dir / "images");
    MakeDirs(split_dir / gt_name);
    for (int i = 1; i <= n; ++i) {
      const ImagePlan plan = PlanImage(o, split_id, i);
      const Points pts = SyntheticHeads(plan.width, plan.height, plan.heads, plan.points_seed);
      cv::Mat img = RenderCrowd(plan.width, plan.height, pts, plan.pixels_seed);
      if (plan.gray) cv::cvtColor(img, img, cv::COLOR_BGR2GRAY);
      std::vector<uint8_t> jpeg;
      const std::string stem = "IMG_" + std::to_string(i);
      const fs::path image_path = split_dir / "images" / (stem + ".jpg");
      if (!cv::imencode(".jpg", img, jpeg, jpeg_params)) throw Error(image_path.string(), "JPEG encoding failed");
      WriteFileAtomic(image_path, jpeg.data(), jpeg.size());
      const fs::path gt_path = split_dir / gt_name / ("GT_" + stem + ".mat");
      // The real files' `number` is uint8 or uint16 as scipy sees it, by size.
      WriteAnnotation(gt_path.string(), pts, pts.size() > 255 ? "uint16" : "uint8");
      summary.heads += static_cast<int64_t>(pts.size());
      summary.items.push_back(SyntheticImage{split_id == 0 ? "train" : "test", image_path, gt_path, plan.width,
                                             plan.height, plan.gray, pts});
    }
    (split_id == 0 ? summary.train_images : summary.test_images) = n;
  }
  summary.images = summary.train_images + summary.test_images;
  return summary;
}

int RunMakeSynthetic(int argc, const char* const* argv) {
  return RunTool("make_synthetic", [&] {
    SyntheticOptions o;
    ArgParser p("make_synthetic", "--out DIR [options]",
                "Writes a synthetic ShanghaiTech-like dataset (crowd-like JPEGs and GT_IMG_n.mat head annotations in "
                "the official folder layout), fully determined by --seed.");
    p.Add("out", &o.out, "dataset root to write into (the part folder is created inside)");
    p.AddChoice("part", &o.part, {"A", "B"}, "A: varied sizes, some grayscale; B: 1024x768 RGB");
    p.Add("images", &o.train_images, "number of train images");
    p.Add("test-images", &o.test_images, "number of test images");
    p.Add("seed", &o.seed, "random seed; the same seed gives byte-identical files");
    p.Add("min-size", &o.min_size, "smallest image side in px (0: part default, A 256, B fixed 1024x768)");
    p.Add("max-size", &o.max_size, "largest image side in px (0: part default, A 512)");
    p.Add("min-heads", &o.min_heads, "fewest heads per image");
    p.Add("max-heads", &o.max_heads, "most heads per image (log-uniform in between)");
    p.Add("jpeg-quality", &o.jpeg_quality, "JPEG quality 1..100");
    p.AddChoice("layout", &o.layout, {"official", "mirrored"},
                "official: part_X_final/.../ground_truth; mirrored: part_X/.../ground-truth");
    p.Add("overwrite", &o.overwrite, "replace an existing synthetic part folder (never touches other data)");
    p.Add("real-stats", &o.real_stats,
          "image sizes and head counts drawn to match the dataset's published statistics (e.g. NWPU-Crowd: "
          "3209x2191 on average, 0..20033 heads, mean 418); replaces --min/max-size and --min/max-heads");
    AddDatasetOption(p, "like", &o.like,
                     "dataset layout to write (docs/datasets.md); all but shanghaitech write into --out itself");
    if (!p.Parse(argc, argv)) return 0;
    if (p.IsSet("min-size") != p.IsSet("max-size") && (o.min_size == 0) != (o.max_size == 0)) {
      // One bound given: the other takes the part default (Part B then varies too).
      if (o.min_size == 0) o.min_size = std::min(256, o.max_size);
      if (o.max_size == 0) o.max_size = std::max(512, o.min_size);
    }
    const SyntheticSummary s = GenerateSynthetic(o);
    const std::string layout =
        o.like == DatasetKind::kShanghaiTech ? StrCat("part ", o.part, ", ", o.layout, " layout") : Name(o.like);
    std::cout << "make_synthetic: wrote " << s.images << " images (" << s.train_images << " train, " << s.test_images
              << " test) with " << s.heads << " heads, " << layout << ", seed " << o.seed << ", to "
              << s.part_dir.string() << std::endl;
    return 0;
  });
}

}  // namespace csr
