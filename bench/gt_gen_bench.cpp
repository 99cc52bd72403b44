// gt_gen benchmark: a dataset the size of ShanghaiTech Part A (482 images,
// ~241,000 heads, ~259 Mpixel) is synthesised, then gt_gen runs on it with
// HDF5 writes included. Prints wall time, throughput and peak memory against
// the targets (3.5 s, 1 GB on 2 cores), and the ratio to the original Python
// algorithm (bench/original_gt.py, timed on a few images and extrapolated by
// the original's cost model: per head, image pixels x kernel length).
//
// Usage: gt_gen_bench [--threads N] [--work DIR] [--python-images K] [--keep]
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "common/base/cli.h"
#include "common/base/fs.h"
#include "common/io/mat_io.h"
#include "preprocess/gt_gen.h"

namespace {

using csr::fs::path;

struct BenchImage {
  path image, mat;
  int64_t heads = 0, pixels = 0;
  // The original's work for this image: per head, a full-image separable
  // filter whose cost is pixels x kernel length (2r + 1).
  double original_cost = 0;
};

double OriginalCost(const std::vector<std::array<double, 2>>& pts, int w, int h) {
  const csr::HeadPixels hp = csr::ToHeadPixels(pts, w, h);
  double cost = 0;
  for (double sigma : csr::HeadSigmas(hp.pixels, w, h, csr::DensityOptions{})) {
    cost += static_cast<double>(w) * h * (2 * static_cast<int>(4 * sigma + 0.5) + 1);
  }
  return cost;
}

double Uniform(std::mt19937_64& rng) { return (rng() >> 11) * (1.0 / 9007199254740992.0); }

// Part A statistics: 300 train + 182 test images, sides 182..1024, mean
// ~537,000 px, 33..3138 heads (mean ~500), crowds clustered.
std::vector<BenchImage> MakeDataset(const path& root, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<BenchImage> out;
  std::vector<uchar> jpeg;
  for (int i = 0; i < 482; ++i) {
    const std::string split = i < 300 ? "train" : "test";
    const int n = i < 300 ? i + 1 : i - 299;
    const path dir = root / "part_A_final" / (split + "_data");
    csr::MakeDirs(dir / "images");
    csr::MakeDirs(dir / "ground_truth");
    // Widths 576..1024 and aspect 0.65..1.0 give Part A's ~537 kpx mean.
    const int w = 576 + static_cast<int>(Uniform(rng) * 449);
    const int h = std::max(182, static_cast<int>(w * (0.65 + 0.35 * Uniform(rng))));
    // Log-uniform head counts 33..3138 (mean ~ 680), scaled to Part A's ~241k total.
    const int heads = static_cast<int>(33 * std::pow(3138.0 / 33.0, Uniform(rng)) * 0.76);
    std::vector<std::array<double, 2>> pts;
    const int clusters = 1 + static_cast<int>(Uniform(rng) * 4);
    for (int k = 0; k < heads; ++k) {
      const int c = k % clusters;
      std::mt19937_64 crng(seed * 1000 + static_cast<uint64_t>(i * 10 + c));
      const double cx = Uniform(crng) * w, cy = Uniform(crng) * h, spread = 0.1 + 0.3 * Uniform(crng);
      const double x = cx + (Uniform(rng) - 0.5) * spread * w * 2, y = cy + (Uniform(rng) - 0.5) * spread * h * 2;
      pts.push_back({std::clamp(x, 0.01, w - 0.01), std::clamp(y, 0.01, h - 0.01)});
    }
    BenchImage b{dir / "images" / csr::StrCat("IMG_", n, ".jpg"),
                 dir / "ground_truth" / csr::StrCat("GT_IMG_", n, ".mat"), heads, static_cast<int64_t>(w) * h,
                 OriginalCost(pts, w, h)};
    cv::Mat img(h, w, CV_8UC3, cv::Scalar(40 + i % 100, 90, 120));
    cv::imwrite(b.image.string(), img);
    csr::WriteAnnotation(b.mat.string(), pts);
    out.push_back(b);
  }
  return out;
}

double PeakRssMb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

}  // namespace

int main(int argc, char** argv) {
  return csr::RunTool("gt_gen_bench", [&] {
    int threads = 2, python_images = 3;
    std::string work;
    bool keep = false;
    csr::ArgParser args("gt_gen_bench", "[options]", "Times gt_gen on a Part-A-sized synthetic dataset.");
    args.Add("threads", &threads, "Threads for gt_gen");
    args.Add("work", &work, "Folder for the synthetic dataset (default: a new temporary folder)");
    args.Add("python-images", &python_images, "Images timed with the original Python algorithm (0 = skip)");
    args.Add("keep", &keep, "Keep the work folder");
    if (!args.Parse(argc, argv)) return 0;
    const path root = work.empty() ? csr::fs::temp_directory_path() / "csrnet-gt-bench" : path(work);
    csr::fs::remove_all(root);

    std::printf("Synthesising a Part-A-sized dataset in %s ...\n", root.c_str());
    const auto images = MakeDataset(root, 7);
    int64_t heads = 0, pixels = 0;
    for (const auto& b : images) heads += b.heads, pixels += b.pixels;
    std::printf("  %zu images, %lld heads, %.1f Mpixel\n", images.size(), static_cast<long long>(heads), pixels / 1e6);

    csr::GtGenOptions o;
    o.root = root.string();
    o.threads = threads;
    o.quiet = true;
    o.overwrite = true;
    double best = 1e30;
    for (int run = 1; run <= 3; ++run) {
      const csr::GtGenReport r = csr::GenerateGroundTruth(o);
      if (!r.failures.empty()) throw csr::Error(r.failures[0].first, r.failures[0].second);
      std::printf("  run %d: %.3f s wall (%lld maps written, %.0f Mpixel/s, %.0f heads/s)\n", run, r.seconds,
                  static_cast<long long>(r.written), r.pixels / r.seconds / 1e6, r.annotations / r.seconds);
      best = std::min(best, r.seconds);
    }
    const double rss = PeakRssMb();
    std::printf("\ngt_gen, all of a Part-A-sized dataset on %d threads, HDF5 writes included:\n", threads);
    std::printf("  best wall time  %.3f s   target <= 3.5 s   -> %s (%.2fx of the budget)\n", best,
                best <= 3.5 ? "MET" : "MISSED", best / 3.5);
    std::printf("  peak memory     %.0f MB   target <= 1024 MB -> %s\n", rss, rss <= 1024 ? "MET" : "MISSED");

    if (python_images > 0) {
      // Time the original algorithm on the first K train images.
      std::string cmd = "/usr/bin/python3 " + std::string(CSR_SOURCE_DIR) + "/bench/original_gt.py";
      double cost_units = 0, py_seconds = 0;
      int timed = 0;
      for (int i = 0; i < python_images && i < static_cast<int>(images.size()); ++i) {
        cmd += " " + images[i].image.string() + " " + images[i].mat.string();
      }
      std::printf("\nOriginal Python algorithm (scipy) on %d images:\n", python_images);
      FILE* p = popen(cmd.c_str(), "r");
      if (!p) throw csr::Error("bench/original_gt.py", "cannot start /usr/bin/python3");
      char line[4096];
      while (fgets(line, sizeof(line), p)) {
        const auto j = nlohmann::json::parse(line);
        const double s = j["seconds"], h = j["heads"], px = j["pixels"];
        std::printf("  %s: %.0f heads, %.0f px: %.2f s\n", j["image"].get<std::string>().c_str(), h, px, s);
        py_seconds += s;
        cost_units += images[static_cast<size_t>(timed++)].original_cost;
      }
      if (pclose(p) != 0 || cost_units == 0) {
        std::printf("  (python3 with scipy/h5py/cv2 not available: skipped)\n");
      } else {
        double all_units = 0;
        for (const auto& b : images) all_units += b.original_cost;
        const double estimate = py_seconds / cost_units * all_units;
        std::printf("  original, extrapolated to the whole dataset: %.0f s (%.1f min)\n", estimate, estimate / 60);
        std::printf("  speed-up of gt_gen: %.0fx   target >= 1000x -> %s\n", estimate / best,
                    estimate / best >= 1000 ? "MET" : "MISSED");
      }
    }
    if (!keep) csr::fs::remove_all(root);
    return 0;
  });
}
