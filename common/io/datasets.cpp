#include "common/io/datasets.h"

#include <algorithm>
#include <map>
#include <set>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/io/image_io.h"
#include "common/io/mat_io.h"

namespace csr {
namespace {

// One folder of images paired with one folder of annotations (which may be
// the same folder, as in UCF-QNRF).
struct PairSpec {
  std::string split;
  fs::path images;
  fs::path annotations;               // empty: the split has no labels (kNone)
  std::vector<std::string> suffixes;  // annotation name = image stem + suffix, tried in order
  AnnotationFormat format = AnnotationFormat::kPointFile;
  const std::set<std::string>* only = nullptr;  // keep only these image stems (a list file)
  const std::set<std::string>* skip = nullptr;  // leave these out (taken by another split)
  bool count_strays = true;                     // false when another split already scanned these folders
  std::string only_from = "list";               // what `only` came from, for messages
};

// The stem an annotation file belongs to, or "" when its name matches no suffix.
std::string AnnotatedStem(const std::string& name, const std::vector<std::string>& suffixes) {
  for (const std::string& s : suffixes) {
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
      return name.substr(0, name.size() - s.size());
    }
  }
  return "";
}

bool Ignorable(const fs::path& p) {
  const std::string name = p.filename().string();
  return p.extension() == ".h5" || IsAtomicTemp(name) || (!name.empty() && name[0] == '.');
}

void RequireFolder(const fs::path& dir, const std::string& what) {
  if (!fs::is_directory(dir)) throw Error(dir.string(), StrCat(what, " folder not found"));
}

std::vector<fs::path> FilesIn(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file()) files.push_back(e.path());
  }
  return files;
}

void ScanPairs(const PairSpec& spec, Discovery* out) {
  RequireFolder(spec.images, "images");
  if (!spec.annotations.empty()) RequireFolder(spec.annotations, "annotations");
  std::map<std::string, fs::path> annotations;  // by image stem
  std::error_code ec;
  const bool same_dir = !spec.annotations.empty() && fs::equivalent(spec.images, spec.annotations, ec);
  if (!spec.annotations.empty()) {
    for (const fs::path& p : FilesIn(spec.annotations)) {
      const std::string stem = AnnotatedStem(p.filename().string(), spec.suffixes);
      if (!stem.empty()) {
        // The first suffix wins when an image has several annotation files.
        auto it = annotations.find(stem);
        if (it == annotations.end()) annotations[stem] = p;
      } else if (!same_dir && !Ignorable(p) && spec.count_strays) {
        ++out->stray_files;
      }
    }
  }
  std::vector<Sample> found;
  std::vector<fs::path> unannotated;
  std::set<std::string> seen;
  for (const fs::path& p : FilesIn(spec.images)) {
    const std::string name = p.filename().string();
    if (!IsImageFile(name)) {
      const bool annotation = same_dir && !AnnotatedStem(name, spec.suffixes).empty();
      if (!Ignorable(p) && !annotation && spec.count_strays) ++out->stray_files;
      continue;
    }
    const std::string stem = p.stem().string();
    if ((spec.only != nullptr && !spec.only->count(stem)) || (spec.skip != nullptr && spec.skip->count(stem))) {
      annotations.erase(stem);  // belongs to another split: neither orphan nor stray
      continue;
    }
    seen.insert(stem);
    Sample s{spec.split, stem, p, {}, {}, spec.format};
    if (spec.annotations.empty()) {
      s.format = AnnotationFormat::kNone;
      s.density = p.parent_path() / (stem + ".h5");
      found.push_back(std::move(s));
      continue;
    }
    auto it = annotations.find(stem);
    if (it == annotations.end()) {
      unannotated.push_back(p);
      continue;
    }
    s.annotation = it->second;
    s.density = it->second.parent_path() / (stem + ".h5");
    found.push_back(std::move(s));
    annotations.erase(it);
  }
  if (spec.only != nullptr) {
    for (const std::string& stem : *spec.only) {
      if (!seen.count(stem)) {
        throw Error(spec.images.string(),
                    StrCat("the ", spec.split, " split (", spec.only_from, ") names '", stem, "', which is not here"));
      }
    }
  }
  std::sort(found.begin(), found.end(), [](const Sample& a, const Sample& b) { return NaturalLess(a.stem, b.stem); });
  const auto by_name = [](const fs::path& a, const fs::path& b) {
    return NaturalLess(a.filename().string(), b.filename().string());
  };
  std::sort(unannotated.begin(), unannotated.end(), by_name);
  std::vector<fs::path> orphans;
  for (const auto& [stem, path] : annotations) orphans.push_back(path);
  std::sort(orphans.begin(), orphans.end(), by_name);
  out->samples.insert(out->samples.end(), found.begin(), found.end());
  out->unannotated_images.insert(out->unannotated_images.end(), unannotated.begin(), unannotated.end());
  out->orphan_annotations.insert(out->orphan_annotations.end(), orphans.begin(), orphans.end());
}

// The image stems a list file names: its first token, without folders and
// extension ("img_0042.jpg", "images/0001.jpg", "0001" all name the image's stem).
std::set<std::string> ListedStems(const fs::path& list) {
  std::set<std::string> stems;
  for (const ListEntry& e : ReadListFile(list.string())) {
    const std::string stem = fs::path(e.id).stem().string();
    if (!stems.insert(stem).second) {
      throw Error(list.string(), StrCat("line ", e.line, ": '", stem, "' is listed twice"));
    }
  }
  return stems;
}

bool Wants(const std::string& split, const std::string& s) { return split == "all" || split == s; }

void CheckSplit(const std::string& split, std::initializer_list<const char*> allowed, DatasetKind kind) {
  if (split == "all") return;
  std::string list;
  for (const char* a : allowed) {
    if (split == a) return;
    list += StrCat(list.empty() ? "" : ", ", a);
  }
  throw UsageError("--split", StrCat(Name(kind), " has the splits ", list, ", all; got '", split, "'"));
}

void DiscoverQnrf(const DatasetQuery& q, Discovery* d) {
  CheckSplit(q.split, {"train", "val", "test"}, q.kind);
  const std::vector<std::string> suffix = {"_ann.mat"};
  std::set<std::string> val;
  if (!q.val_list.empty()) val = ListedStems(q.val_list);
  if (q.split == "val" && q.val_list.empty()) {
    throw UsageError("--val-list", "UCF-QNRF has no official val split: give --val-list FILE");
  }
  if (Wants(q.split, "train")) {
    ScanPairs({"train", q.root / "Train", q.root / "Train", suffix, AnnotationFormat::kAnnPointsMat, nullptr, &val}, d);
  }
  if (Wants(q.split, "val") && !val.empty()) {
    ScanPairs({"val", q.root / "Train", q.root / "Train", suffix, AnnotationFormat::kAnnPointsMat, &val, nullptr,
               /*count_strays=*/!Wants(q.split, "train")},
              d);
  }
  if (Wants(q.split, "test")) {
    ScanPairs({"test", q.root / "Test", q.root / "Test", suffix, AnnotationFormat::kAnnPointsMat, nullptr, nullptr}, d);
  }
}

void DiscoverUcf50(const DatasetQuery& q, Discovery* d) {
  CheckSplit(q.split, {"train", "test"}, q.kind);
  if (q.split != "all" && (q.fold < 1 || q.fold > 5)) {
    throw UsageError("--fold",
                     StrCat("UCF_CC_50 is evaluated by 5-fold cross-validation: give --fold 1..5, got ", q.fold));
  }
  // Fold K tests images 10(K-1)+1 .. 10K (docs/datasets.md); without a fold, "all" is every image.
  std::set<std::string> test;
  for (int i = 10 * (q.fold - 1) + 1; q.fold >= 1 && i <= 10 * q.fold; ++i) test.insert(std::to_string(i));
  const std::vector<std::string> suffix = {"_ann.mat"};
  if (q.fold == 0) {
    ScanPairs({"train", q.root, q.root, suffix, AnnotationFormat::kAnnPointsMat, nullptr, nullptr}, d);
    return;
  }
  if (Wants(q.split, "train")) {
    ScanPairs({"train", q.root, q.root, suffix, AnnotationFormat::kAnnPointsMat, nullptr, &test}, d);
  }
  if (Wants(q.split, "test")) {
    ScanPairs({"test", q.root, q.root, suffix, AnnotationFormat::kAnnPointsMat, &test, nullptr,
               /*count_strays=*/!Wants(q.split, "train"), StrCat("fold ", q.fold)},
              d);
  }
}

void DiscoverJhu(const DatasetQuery& q, Discovery* d) {
  CheckSplit(q.split, {"train", "val", "test"}, q.kind);
  for (const char* s : {"train", "val", "test"}) {
    if (!Wants(q.split, s)) continue;
    if (q.split == "all" && !fs::is_directory(q.root / s)) continue;  // "all" takes the splits that exist
    ScanPairs({s, q.root / s / "images", q.root / s / "gt", {".txt"}, AnnotationFormat::kJhuTxt, nullptr, nullptr}, d);
  }
}

void DiscoverNwpu(const DatasetQuery& q, Discovery* d) {
  CheckSplit(q.split, {"train", "val", "test"}, q.kind);
  const bool json = fs::is_directory(q.root / "jsons");
  const fs::path labels = json ? q.root / "jsons" : q.root / "mats";
  if (!json && !fs::is_directory(labels)) throw Error(q.root.string(), "no jsons/ or mats/ folder (NWPU-Crowd)");
  const AnnotationFormat format = json ? AnnotationFormat::kNwpuJson : AnnotationFormat::kAnnPointsMat;
  const std::vector<std::string> suffix = {json ? ".json" : ".mat"};
  std::vector<std::set<std::string>> lists;  // kept alive for the specs' pointers
  lists.reserve(3);
  for (const char* s : {"train", "val", "test"}) {
    if (!Wants(q.split, s)) continue;
    const fs::path list = q.root / StrCat(s, ".txt");
    if (!fs::exists(list))
      throw Error(list.string(), "split list not found (NWPU-Crowd ships train.txt, val.txt, test.txt)");
    lists.push_back(ListedStems(list));
    const bool labelled = std::string(s) != "test";  // the test labels are withheld
    ScanPairs({s, q.root / "images", labelled ? labels : fs::path(), suffix, format, &lists.back(), nullptr,
               /*count_strays=*/lists.size() == 1},
              d);
  }
}

void DiscoverPoints(const DatasetQuery& q, Discovery* d) {
  CheckSplit(q.split, {"train", "test"}, q.kind);
  const std::vector<std::string> suffixes = {".json", ".csv", ".txt"};
  const fs::path train_list = q.root / "train.txt", test_list = q.root / "test.txt";
  const bool lists = fs::exists(train_list) || fs::exists(test_list);
  std::vector<std::set<std::string>> keep;
  keep.reserve(2);
  for (const char* s : {"train", "test"}) {
    if (!Wants(q.split, s)) continue;
    const fs::path list = std::string(s) == "train" ? train_list : test_list;
    if (!lists) {
      if (std::string(s) == "test") {
        if (q.split == "test") throw Error(q.root.string(), "no test.txt: without lists every image is training data");
        continue;
      }
      ScanPairs({s, q.root / "images", q.root / "points", suffixes, AnnotationFormat::kPointFile, nullptr, nullptr}, d);
      continue;
    }
    if (!fs::exists(list)) {
      if (q.split == s) throw Error(list.string(), "split list not found");
      continue;
    }
    keep.push_back(ListedStems(list));
    ScanPairs({s, q.root / "images", q.root / "points", suffixes, AnnotationFormat::kPointFile, &keep.back(), nullptr,
               /*count_strays=*/keep.size() == 1},
              d);
  }
}

}  // namespace

const char* Name(DatasetKind kind) {
  switch (kind) {
    case DatasetKind::kShanghaiTech:
      return "shanghaitech";
    case DatasetKind::kQnrf:
      return "qnrf";
    case DatasetKind::kUcf50:
      return "ucf50";
    case DatasetKind::kJhu:
      return "jhu";
    case DatasetKind::kNwpu:
      return "nwpu";
    case DatasetKind::kPoints:
      return "points";
  }
  return "shanghaitech";
}

std::vector<DatasetKind> AllDatasetKinds() {
  return {DatasetKind::kShanghaiTech, DatasetKind::kQnrf, DatasetKind::kUcf50,
          DatasetKind::kJhu,          DatasetKind::kNwpu, DatasetKind::kPoints};
}

void AddDatasetOption(ArgParser& parser, const std::string& name, DatasetKind* value, const std::string& help) {
  std::vector<std::pair<std::string, DatasetKind>> names;
  for (DatasetKind k : AllDatasetKinds()) names.emplace_back(Name(k), k);
  parser.AddEnum<DatasetKind>(name, value, names, help);
}

DatasetKind ParseDatasetKind(const std::string& text, const std::string& option) {
  std::string list;
  for (DatasetKind k : AllDatasetKinds()) {
    if (text == Name(k)) return k;
    list += StrCat(list.empty() ? "" : "|", Name(k));
  }
  throw UsageError(option, StrCat("expected one of ", list, ", got '", text, "'"));
}

DatasetKind DetectDataset(const fs::path& root) {
  if (!fs::is_directory(root)) throw Error(root.string(), "dataset root not found");
  const auto dir = [&](const char* n) { return fs::is_directory(root / n); };
  if (dir("part_A_final") || dir("part_B_final") || dir("part_A") || dir("part_B")) return DatasetKind::kShanghaiTech;
  if (dir("Train") && dir("Test")) return DatasetKind::kQnrf;
  if (dir("train") && fs::is_directory(root / "train" / "gt")) return DatasetKind::kJhu;
  if (dir("images") && (dir("jsons") || dir("mats"))) return DatasetKind::kNwpu;
  if (dir("images") && dir("points")) return DatasetKind::kPoints;
  if (fs::exists(root / "1_ann.mat")) return DatasetKind::kUcf50;
  throw Error(root.string(),
              "no known dataset layout here; looked for ShanghaiTech (part_A_final/ or part_A/), UCF-QNRF (Train/ and "
              "Test/), JHU-Crowd++ (train/gt/), NWPU-Crowd (images/ with jsons/ or mats/), a point list (images/ "
              "with points/) and UCF_CC_50 (1_ann.mat); see docs/datasets.md");
}

void RequireLabels(const Discovery& found, DatasetKind kind, const std::string& option) {
  for (const Sample& s : found.samples) {
    if (s.format == AnnotationFormat::kNone) {
      throw UsageError(option, StrCat(Name(kind), "'s ", s.split, " split has no labels (", s.image.filename().string(),
                                      "): it can be predicted, not evaluated"));
    }
  }
}

Discovery DiscoverDataset(const DatasetQuery& q) {
  if (q.kind == DatasetKind::kShanghaiTech) {
    if (q.split == "val") throw UsageError("--split", "ShanghaiTech has the splits train, test, all; got 'val'");
    return DiscoverPart(q.root, q.part, q.split);
  }
  if (!fs::is_directory(q.root)) throw Error(q.root.string(), "dataset root not found");
  Discovery d;
  d.part_dir = q.root;
  switch (q.kind) {
    case DatasetKind::kQnrf:
      DiscoverQnrf(q, &d);
      break;
    case DatasetKind::kUcf50:
      DiscoverUcf50(q, &d);
      break;
    case DatasetKind::kJhu:
      DiscoverJhu(q, &d);
      break;
    case DatasetKind::kNwpu:
      DiscoverNwpu(q, &d);
      break;
    case DatasetKind::kPoints:
      DiscoverPoints(q, &d);
      break;
    case DatasetKind::kShanghaiTech:
      break;
  }
  // Splits that share folders (NWPU-Crowd, UCF-QNRF's val) see the same orphans.
  std::sort(d.orphan_annotations.begin(), d.orphan_annotations.end());
  d.orphan_annotations.erase(std::unique(d.orphan_annotations.begin(), d.orphan_annotations.end()),
                             d.orphan_annotations.end());
  if (d.samples.empty() && d.unannotated_images.empty()) {
    throw Error(q.root.string(), StrCat("no images for split '", q.split, "' in this ", Name(q.kind), " dataset"));
  }
  return d;
}

std::vector<Point> ReadHeads(const Sample& s) {
  switch (s.format) {
    case AnnotationFormat::kShanghaiTechMat:
      return ReadAnnotation(s.annotation.string()).points;
    case AnnotationFormat::kAnnPointsMat:
      return ReadPointsVariable(s.annotation.string(), "annPoints");
    case AnnotationFormat::kJhuTxt: {
      std::vector<Point> points;
      for (const JhuHead& h : ReadJhuHeads(s.annotation.string())) points.push_back({h.x, h.y});
      return points;
    }
    case AnnotationFormat::kNwpuJson:
      return ReadNwpuJson(s.annotation.string());
    case AnnotationFormat::kPointFile:
      return ReadPointFile(s.annotation.string());
    case AnnotationFormat::kNone:
      break;
  }
  throw Error(s.image.string(), "has no labels (a withheld test set): it can be predicted, not trained or evaluated");
}

}  // namespace csr
