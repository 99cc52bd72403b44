// gt_gen: ShanghaiTech annotations -> density maps (<gt dir>/IMG_n.h5), in a
// oneTBB pipeline that streams images so memory stays bounded.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/io/datasets.h"
#include "preprocess/density.h"

namespace csr {

struct GtGenOptions {
  DatasetKind dataset = DatasetKind::kShanghaiTech;  // layout under --root (docs/datasets.md)
  std::string root = "ShanghaiTech";                 // dataset root holding part_A_final/ or part_A/
  std::string part = "A";                            // ShanghaiTech: A or B
  std::string split = "all";                         // train, test or all (val too for qnrf, jhu, nwpu)
  std::string val_list;                              // qnrf: Train/ images forming the val split
  int fold = 0;                                      // ucf50: the cross-validation fold 1..5 (0: every image)
  int threads = 0;                                   // worker threads; 0 = all cores
  DensityChoice density;                             // --mode, --kernel, --sigma, --beta, --neighbors, --border
  bool overwrite = false;                            // regenerate maps that are already up to date
  bool strict = false;                               // stop at the first failing image
  bool quiet = false;                                // no progress bar or summary, errors only

  // Throws csr::UsageError naming the option, its value and the rule (the
  // density settings through DensityOptions::Check).
  void Check() const;
};

struct GtGenReport {
  int64_t images = 0;      // images considered
  int64_t written = 0;     // maps written
  int64_t up_to_date = 0;  // maps kept (already current)
  int64_t annotations = 0;
  int64_t head_pixels = 0;
  int64_t merged = 0;              // annotations on an already used pixel
  int64_t outside = 0;             // annotations dropped outside the image
  int64_t pixels = 0;              // image pixels rendered
  int64_t orphan_annotations = 0;  // GT_*.mat without image: warned about, not a failure
  double seconds = 0.0;
  int threads = 0;
  std::vector<std::pair<std::string, std::string>> failures;  // file, reason
};

// Resolves "auto" settings for the part into concrete density options.
DensityOptions ResolveDensityOptions(const GtGenOptions& options);

// Runs the whole job. Per-image failures are collected in the report (and
// logged); errors about the dataset as a whole throw csr::Error.
GtGenReport GenerateGroundTruth(const GtGenOptions& options);

// The command-line tool; returns the exit code.
int RunGtGen(int argc, const char* const* argv);

}  // namespace csr
