// Every supported dataset layout, discovered into the same Discovery as
// ShanghaiTech's (common/io/dataset.h), and the one function that reads a
// sample's heads whatever its annotation format. The layouts
// (docs/datasets.md):
//
//   shanghaitech  part_A_final/{train,test}_data/{images,ground_truth}/   (DiscoverPart)
//   qnrf          Train/ and Test/: img_XXXX.jpg + img_XXXX_ann.mat (annPoints);
//                 val = the Train images named by --val-list
//   ucf50         N.jpg + N_ann.mat (annPoints), 50 images; --fold K of 5:
//                 test = images 10(K-1)+1 .. 10K, train = the others
//   jhu           {train,val,test}/images/NNNN.jpg + {train,val,test}/gt/NNNN.txt
//   nwpu          images/NNNN.jpg + jsons/NNNN.json (or mats/NNNN.mat);
//                 train.txt, val.txt, test.txt; test has no labels
//   points        images/NAME.ext + points/NAME.{json,csv,txt};
//                 optional train.txt / test.txt (without them: all train)
#pragma once

#include <string>
#include <vector>

#include "common/base/cli.h"
#include "common/io/dataset.h"
#include "common/io/point_files.h"

namespace csr {

enum class DatasetKind { kShanghaiTech, kQnrf, kUcf50, kJhu, kNwpu, kPoints };

// "shanghaitech" | "qnrf" | "ucf50" | "jhu" | "nwpu" | "points".
const char* Name(DatasetKind kind);
// Throws csr::UsageError naming `option` and the names it accepts otherwise.
DatasetKind ParseDatasetKind(const std::string& text, const std::string& option = "--dataset");
// Every kind, in the order above (for --help and error messages).
std::vector<DatasetKind> AllDatasetKinds();

// Registers `name` as a typed option taking every kind's name.
void AddDatasetOption(ArgParser& parser, const std::string& name, DatasetKind* value, const std::string& help);

// The layout found under `root`, by its folders. Throws csr::Error naming
// the root and every layout it looked for when none matches.
DatasetKind DetectDataset(const fs::path& root);

// An aggregate, in member order: DiscoverDataset({kind, root, part, split, val_list, fold}).
struct DatasetQuery {
  DatasetKind kind = DatasetKind::kShanghaiTech;
  fs::path root;
  std::string part = "A";     // ShanghaiTech: A or B
  std::string split = "all";  // train | val | test | all
  std::string val_list;       // UCF-QNRF: a list of Train/ image names that form the val split
  int fold = 0;               // UCF_CC_50: 1..5 (required for train and test)
};

// The samples of the asked split(s), sorted by split then natural name, with
// the unannotated images, orphan annotations and stray files of the folders
// scanned. Throws csr::Error naming the folder or list file for a missing
// folder, a list naming an image that does not exist, or no image at all;
// csr::UsageError for a split the dataset does not have.
Discovery DiscoverDataset(const DatasetQuery& query);

// Every sample of `found` must have labels (NWPU-Crowd's test split has
// none): throws csr::UsageError naming `option`, the split and the first
// unlabelled image, for the tools that score or train on the samples.
void RequireLabels(const Discovery& found, DatasetKind kind, const std::string& option);

// The heads of a sample, read with the reader of its format (the JHU boxes
// and NWPU boxes are not needed for density maps). kNone: throws.
std::vector<Point> ReadHeads(const Sample& sample);

}  // namespace csr
