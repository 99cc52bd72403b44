// The text and JSON annotation formats of the modern crowd datasets, and
// their list files (docs/datasets.md has each layout):
//   JHU-Crowd++   gt/NNNN.txt: one head per line "x y w h o b"; image_labels.txt
//   NWPU-Crowd    jsons/NNNN.json {"img_id", "human_num", "points", "boxes"};
//                 train.txt / val.txt / test.txt: "id illumination level"
//   custom        points/NAME.json {"points": [[x, y], ...]}, .csv or .txt
//                 ("x y" or "x,y" per line, P2PNet's layout)
// Every reader throws csr::Error naming the file, and the line where there
// is one, for a malformed entry; a file with no heads is valid (zero heads).
// Coordinates are returned as stored (finite is checked here; inside the
// image is the caller's check: it knows the image).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace csr {

// The largest annotation text or JSON file read (NWPU's densest image, 20,033
// heads with boxes, is a few MB).
inline constexpr int64_t kMaxAnnotationFileBytes = int64_t{256} << 20;

using Point = std::array<double, 2>;  // (x, y), pixels

// One JHU-Crowd++ head: centre, box size, occlusion (1 visible, 2 partly, 3
// fully occluded) and blur (0 or 1).
struct JhuHead {
  double x = 0, y = 0, w = 0, h = 0;
  int occlusion = 1;
  int blur = 0;
};
// gt/NNNN.txt: six whitespace-separated numbers per line.
std::vector<JhuHead> ReadJhuHeads(const std::string& path);

// One row of JHU-Crowd++'s image_labels.txt: "id,count,scene,weather,distractor".
struct JhuLabel {
  int64_t count = 0;
  std::string scene;
  int weather = 0;     // 0 none, 1 fog/haze, 2 rain, 3 snow
  int distractor = 0;  // 0 or 1
};
// Keyed by the image id as written in the file without an image extension
// ("0001" for "0001" or "0001.jpg").
std::map<std::string, JhuLabel> ReadJhuLabels(const std::string& path);

// An NWPU-Crowd jsons/NNNN.json: its `points`; `human_num`, when present,
// must equal their number.
std::vector<Point> ReadNwpuJson(const std::string& path);

// A custom annotation, by extension: .json ({"points": [[x, y], ...]} or a
// bare [[x, y], ...]), .csv or .txt (one "x y" or "x,y" per line; a first
// line that is not numeric is a header; blank lines and lines starting with
// '#' are skipped).
std::vector<Point> ReadPointFile(const std::string& path);

// One line of a split list file: its first whitespace- or comma-separated
// token (an image id or file name) and the rest (NWPU: illumination, level).
struct ListEntry {
  std::string id;
  std::vector<std::string> fields;
  int line = 0;  // 1-based, for messages
};
// Blank lines and '#' comments are skipped; an entry listed twice is an error.
std::vector<ListEntry> ReadListFile(const std::string& path);

}  // namespace csr
