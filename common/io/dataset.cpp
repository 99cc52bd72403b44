#include "common/io/dataset.h"

#include <algorithm>
#include <cctype>
#include <map>

#include "common/base/error.h"
#include "common/io/image_io.h"

namespace csr {
namespace {

fs::path FirstExisting(const fs::path& dir, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (fs::is_directory(dir / n)) return dir / n;
  }
  return {};
}

void ScanSplit(const fs::path& part_dir, const std::string& split, Discovery* out) {
  const fs::path split_dir = part_dir / (split + "_data");
  if (!fs::is_directory(split_dir)) throw Error(split_dir.string(), "split folder not found");
  const fs::path images_dir = split_dir / "images";
  if (!fs::is_directory(images_dir)) throw Error(images_dir.string(), "images folder not found");
  const fs::path gt_dir = FirstExisting(split_dir, {"ground_truth", "ground-truth"});
  if (gt_dir.empty()) throw Error(split_dir.string(), "no ground_truth (or ground-truth) folder");

  // Annotations by image stem: GT_IMG_12.mat -> IMG_12.
  std::map<std::string, fs::path> annotations;
  for (const auto& e : fs::directory_iterator(gt_dir)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    if (e.path().extension() == ".mat" && name.rfind("GT_", 0) == 0) {
      annotations[e.path().stem().string().substr(3)] = e.path();
    } else if (e.path().extension() != ".h5" && name.find(".tmp-") == std::string::npos) {
      ++out->stray_files;
    }
  }

  std::vector<Sample> found;
  std::vector<fs::path> unannotated;
  for (const auto& e : fs::directory_iterator(images_dir)) {
    if (!e.is_regular_file()) continue;
    const fs::path& p = e.path();
    const std::string stem = p.stem().string();
    auto it = annotations.find(stem);
    if (!IsImageFile(p.filename().string())) {
      ++out->stray_files;  // Thumbs.db, .DS_Store, ...
      continue;
    }
    if (it == annotations.end()) {
      // The mirrored copy ships PNGs without annotations: stray, not a gap.
      if (p.extension() == ".jpg" || p.extension() == ".jpeg") {
        unannotated.push_back(p);
      } else {
        ++out->stray_files;
      }
      continue;
    }
    found.push_back(Sample{split, stem, p, it->second, gt_dir / (stem + ".h5")});
    annotations.erase(it);
  }
  std::vector<fs::path> orphans;
  for (const auto& [stem, path] : annotations) orphans.push_back(path);
  // Directory order is arbitrary: sort every list so logs and --strict name the same file on every run.
  std::sort(found.begin(), found.end(), [](const Sample& a, const Sample& b) { return NaturalLess(a.stem, b.stem); });
  const auto by_name = [](const fs::path& a, const fs::path& b) {
    return NaturalLess(a.filename().string(), b.filename().string());
  };
  std::sort(unannotated.begin(), unannotated.end(), by_name);
  std::sort(orphans.begin(), orphans.end(), by_name);
  out->samples.insert(out->samples.end(), found.begin(), found.end());
  out->unannotated_images.insert(out->unannotated_images.end(), unannotated.begin(), unannotated.end());
  out->orphan_annotations.insert(out->orphan_annotations.end(), orphans.begin(), orphans.end());
}

}  // namespace

bool NaturalLess(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      const std::string na = a.substr(i, ie - i), nb = b.substr(j, je - j);
      const std::string ta = na.substr(std::min(na.find_first_not_of('0'), na.size()));
      const std::string tb = nb.substr(std::min(nb.find_first_not_of('0'), nb.size()));
      if (ta.size() != tb.size()) return ta.size() < tb.size();
      if (ta != tb) return ta < tb;
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

fs::path FindPartDir(const fs::path& root, const std::string& part) {
  if (part != "A" && part != "B") throw UsageError("--part", StrCat("expected A or B, got '", part, "'"));
  if (!fs::is_directory(root)) throw Error(root.string(), "dataset root not found");
  for (const std::string& name : {"part_" + part + "_final", "part_" + part}) {
    if (fs::is_directory(root / name)) return root / name;
  }
  throw Error(root.string(), StrCat("no part_", part, "_final or part_", part, " folder"));
}

Discovery DiscoverPart(const fs::path& root, const std::string& part, const std::string& split) {
  // Usage errors first: a bad --split is reported even when the root is wrong too.
  if (split != "train" && split != "test" && split != "all") {
    throw UsageError("--split", StrCat("expected train, test or all, got '", split, "'"));
  }
  Discovery d;
  d.part_dir = FindPartDir(root, part);
  for (const std::string& s : {std::string("train"), std::string("test")}) {
    // "all" takes the splits that exist; a named split must exist.
    if (split == s || (split == "all" && fs::is_directory(d.part_dir / (s + "_data")))) ScanSplit(d.part_dir, s, &d);
  }
  // Nothing to process is an error, not an empty success: a wrong --root or
  // an emptied images/ folder must not look like a finished run.
  if (d.samples.empty() && d.unannotated_images.empty()) {
    const std::string where =
        split == "all" ? d.part_dir.string() : (d.part_dir / (split + "_data") / "images").string();
    const std::string orphans =
        d.orphan_annotations.empty() ? "" : StrCat(" (", d.orphan_annotations.size(), " annotation(s) without image)");
    throw Error(where, StrCat(split == "all" ? "no images in train_data/images or test_data/images"
                                             : "no images (.jpg, .png) in this folder",
                              orphans));
  }
  return d;
}

}  // namespace csr
