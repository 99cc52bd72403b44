// Finds the images and annotations of one ShanghaiTech part, in the official
// layout (part_A_final/train_data/ground_truth) or the widely mirrored one
// (part_A/train_data/ground-truth).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace csr {

namespace fs = std::filesystem;

// How a sample's annotation is stored (ReadHeads in common/io/datasets.h
// reads each).
enum class AnnotationFormat {
  kShanghaiTechMat,  // GT_IMG_n.mat: image_info{1}.location
  kAnnPointsMat,     // a top-level N x 2 `annPoints` (UCF-QNRF, UCF_CC_50, NWPU-Crowd mats)
  kJhuTxt,           // JHU-Crowd++ gt/NNNN.txt
  kNwpuJson,         // NWPU-Crowd jsons/NNNN.json
  kPointFile,        // a custom .json, .csv or .txt point list
  kNone,             // no labels (NWPU-Crowd's test set: predicted, never evaluated)
};

// One image with its annotation. `density` is where gt_gen writes its map:
// <gt dir>/IMG_n.h5, as the original make_dataset step did.
struct Sample {
  std::string split;    // "train", "val" or "test"
  std::string stem;     // "IMG_12"
  fs::path image;       // .../images/IMG_12.jpg
  fs::path annotation;  // .../ground_truth/GT_IMG_12.mat (empty for kNone)
  fs::path density;     // .../ground_truth/IMG_12.h5
  AnnotationFormat format = AnnotationFormat::kShanghaiTechMat;
};

struct Discovery {
  fs::path part_dir;                         // e.g. ShanghaiTech/part_A_final
  std::vector<Sample> samples;               // sorted by split, then image number
  std::vector<fs::path> unannotated_images;  // image without GT_*.mat (by split, natural order)
  std::vector<fs::path> orphan_annotations;  // GT_*.mat without image (by split, natural order)
  int stray_files = 0;                       // Thumbs.db, stray *.png, ...
};

// `part` is "A" or "B"; `split` is "train", "test" or "all". Throws
// csr::Error naming the root when the part or a split folder is missing, and
// naming the images folder (or the part for "all") when there is no image at all.
Discovery DiscoverPart(const fs::path& root, const std::string& part, const std::string& split);

// The part's folder under root ("part_A_final" or "part_A"); throws if absent.
fs::path FindPartDir(const fs::path& root, const std::string& part);

// Sorts "IMG_2" before "IMG_10".
bool NaturalLess(const std::string& a, const std::string& b);

}  // namespace csr
