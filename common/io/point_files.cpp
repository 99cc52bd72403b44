#include "common/io/point_files.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/base/error.h"
#include "common/base/fs.h"

namespace csr {
namespace {

std::string ReadBounded(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(path, "file not found");
  if (fs::is_regular_file(path, ec)) {
    const uintmax_t size = fs::file_size(path, ec);
    if (!ec && size > static_cast<uintmax_t>(kMaxAnnotationFileBytes)) {
      throw Error(path, StrCat("is ", size, " bytes, more than any annotation file (", kMaxAnnotationFileBytes,
                               "): not an annotation?"));
    }
  }
  return ReadTextFile(path);
}

// The file's lines without their line ends ("\n" or "\r\n").
std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  return lines;
}

bool Skipped(const std::string& line) {
  const size_t first = line.find_first_not_of(" \t");
  return first == std::string::npos || line[first] == '#';
}

// Splits on spaces, tabs and (when `commas`) commas; empty tokens between two
// commas are kept so "1,,2" is caught as malformed.
std::vector<std::string> Tokens(const std::string& line, bool commas) {
  std::vector<std::string> out;
  std::string cur;
  bool have = false;
  for (char c : line) {
    if (c == ' ' || c == '\t') {
      if (have) out.push_back(cur);
      cur.clear();
      have = false;
    } else if (commas && c == ',') {
      out.push_back(cur);  // an empty token is kept
      cur.clear();
      have = false;
    } else {
      cur += c;
      have = true;
    }
  }
  if (have) out.push_back(cur);
  return out;
}

bool ParseNumber(const std::string& text, double* v) {
  if (text.empty()) return false;
  errno = 0;
  char* end = nullptr;
  *v = std::strtod(text.c_str(), &end);
  return *end == '\0' && errno != ERANGE && std::isfinite(*v);
}

bool ParseInt(const std::string& text, int64_t* v) {
  double d = 0;
  if (!ParseNumber(text, &d) || d != std::floor(d) || std::fabs(d) > 9.0e15) return false;
  *v = static_cast<int64_t>(d);
  return true;
}

[[noreturn]] void LineError(const std::string& path, size_t line, const std::string& what) {
  throw Error(path, StrCat("line ", line, ": ", what));
}

nlohmann::json ParseJson(const std::string& path) {
  try {
    return nlohmann::json::parse(ReadBounded(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(path, StrCat("invalid JSON: ", FirstLine(e.what())));
  }
}

// [[x, y], ...] as points; `what` names the array in messages.
std::vector<Point> PointsOf(const nlohmann::json& list, const std::string& path, const std::string& what) {
  if (!list.is_array()) throw Error(path, StrCat(what, " is not an array of [x, y] pairs"));
  std::vector<Point> points;
  points.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const nlohmann::json& p = list[i];
    if (!p.is_array() || p.size() != 2 || !p[0].is_number() || !p[1].is_number()) {
      throw Error(path, StrCat(what, "[", i, "] is not an [x, y] pair of numbers"));
    }
    const double x = p[0].get<double>(), y = p[1].get<double>();
    if (!std::isfinite(x) || !std::isfinite(y)) throw Error(path, StrCat(what, "[", i, "] is not finite"));
    points.push_back({x, y});
  }
  return points;
}

std::string StripImageExtension(const std::string& id) {
  for (const char* ext : {".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG"}) {
    const std::string e = ext;
    if (id.size() > e.size() && id.compare(id.size() - e.size(), e.size(), e) == 0) {
      return id.substr(0, id.size() - e.size());
    }
  }
  return id;
}

}  // namespace

std::vector<JhuHead> ReadJhuHeads(const std::string& path) {
  const std::vector<std::string> lines = Lines(ReadBounded(path));
  std::vector<JhuHead> heads;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (Skipped(lines[i])) continue;
    const std::vector<std::string> t = Tokens(lines[i], false);
    if (t.size() != 6) LineError(path, i + 1, StrCat("expected 6 numbers 'x y w h o b', got ", t.size(), " fields"));
    double v[4];
    for (int k = 0; k < 4; ++k) {
      if (!ParseNumber(t[k], &v[k])) LineError(path, i + 1, StrCat("'", t[k], "' is not a finite number"));
    }
    int64_t occlusion = 0, blur = 0;
    if (!ParseInt(t[4], &occlusion) || occlusion < 1 || occlusion > 3) {
      LineError(path, i + 1, StrCat("occlusion '", t[4], "' is not 1, 2 or 3"));
    }
    if (!ParseInt(t[5], &blur) || blur < 0 || blur > 1)
      LineError(path, i + 1, StrCat("blur '", t[5], "' is not 0 or 1"));
    heads.push_back({v[0], v[1], v[2], v[3], static_cast<int>(occlusion), static_cast<int>(blur)});
  }
  return heads;
}

std::map<std::string, JhuLabel> ReadJhuLabels(const std::string& path) {
  const std::vector<std::string> lines = Lines(ReadBounded(path));
  std::map<std::string, JhuLabel> labels;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (Skipped(lines[i])) continue;
    std::vector<std::string> t;
    std::string cell;
    std::istringstream row(lines[i]);
    while (std::getline(row, cell, ',')) t.push_back(cell);
    if (t.size() != 5) {
      LineError(path, i + 1,
                StrCat("expected 5 comma-separated fields 'id,count,scene,weather,distractor', got ", t.size()));
    }
    for (std::string& s : t) {
      const size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
      s = a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
    }
    JhuLabel l;
    int64_t weather = 0, distractor = 0;
    if (t[0].empty()) LineError(path, i + 1, "empty image id");
    if (!ParseInt(t[1], &l.count) || l.count < 0) LineError(path, i + 1, StrCat("count '", t[1], "' is not >= 0"));
    l.scene = t[2];
    if (!ParseInt(t[3], &weather) || weather < 0 || weather > 3) {
      LineError(path, i + 1, StrCat("weather '", t[3], "' is not 0..3"));
    }
    if (!ParseInt(t[4], &distractor) || distractor < 0 || distractor > 1) {
      LineError(path, i + 1, StrCat("distractor '", t[4], "' is not 0 or 1"));
    }
    l.weather = static_cast<int>(weather);
    l.distractor = static_cast<int>(distractor);
    if (!labels.emplace(StripImageExtension(t[0]), l).second) {
      LineError(path, i + 1, StrCat("image '", t[0], "' is listed twice"));
    }
  }
  return labels;
}

std::vector<Point> ReadNwpuJson(const std::string& path) {
  const nlohmann::json j = ParseJson(path);
  if (!j.is_object() || !j.contains("points")) throw Error(path, "not an NWPU-Crowd annotation (no 'points')");
  std::vector<Point> points = PointsOf(j["points"], path, "points");
  if (j.contains("human_num")) {
    const nlohmann::json& n = j["human_num"];
    if (!n.is_number_integer() || n.get<int64_t>() != static_cast<int64_t>(points.size())) {
      throw Error(path, StrCat("human_num is ", n.dump(), " but 'points' holds ", points.size(), " heads"));
    }
  }
  return points;
}

std::vector<Point> ReadPointFile(const std::string& path) {
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".json") {
    const nlohmann::json j = ParseJson(path);
    if (j.is_object()) {
      if (!j.contains("points")) throw Error(path, "a JSON annotation needs a 'points' array of [x, y] pairs");
      return PointsOf(j["points"], path, "points");
    }
    return PointsOf(j, path, "the file");
  }
  if (ext != ".csv" && ext != ".txt") {
    throw Error(path, StrCat("unknown annotation type '", ext, "' (expected .json, .csv or .txt)"));
  }
  const std::vector<std::string> lines = Lines(ReadBounded(path));
  std::vector<Point> points;
  bool first = true;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (Skipped(lines[i])) continue;
    const std::vector<std::string> t = Tokens(lines[i], true);
    double x = 0, y = 0;
    const bool numeric = t.size() == 2 && ParseNumber(t[0], &x) && ParseNumber(t[1], &y);
    if (!numeric && first && !t.empty() && !ParseNumber(t[0], &x)) {  // a header such as "x,y"
      first = false;
      continue;
    }
    first = false;
    if (!numeric) LineError(path, i + 1, StrCat("expected 'x y' or 'x,y' (two finite numbers): '", lines[i], "'"));
    points.push_back({x, y});
  }
  return points;
}

std::vector<ListEntry> ReadListFile(const std::string& path) {
  const std::vector<std::string> lines = Lines(ReadBounded(path));
  std::vector<ListEntry> entries;
  std::set<std::string> seen;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (Skipped(lines[i])) continue;
    std::vector<std::string> t = Tokens(lines[i], true);
    t.erase(std::remove(t.begin(), t.end(), std::string()), t.end());
    if (t.empty()) continue;
    ListEntry e;
    e.id = t[0];
    e.fields.assign(t.begin() + 1, t.end());
    e.line = static_cast<int>(i + 1);
    if (!seen.insert(e.id).second) LineError(path, i + 1, StrCat("'", e.id, "' is listed twice"));
    entries.push_back(std::move(e));
  }
  return entries;
}

}  // namespace csr
