#include "common/eval/report.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <sstream>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/eval/train_log.h"

namespace csr {
namespace {

// Chart geometry (SVG user units): plot area inside the margins.
constexpr double kW = 520, kH = 360, kLeft = 64, kRight = 16, kTop = 16, kBottom = 48;
// Colour-blind-friendly palette (Okabe-Ito) for series and points.
constexpr const char* kColours[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"};

std::string Num(double v, const char* fmt = "%.4g") {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// Maps data coordinates to the plot area.
struct Axes {
  double x0, x1, y0, y1;
  double X(double x) const { return kLeft + (x - x0) / (x1 - x0) * (kW - kLeft - kRight); }
  double Y(double y) const { return kH - kBottom - (y - y0) / (y1 - y0) * (kH - kTop - kBottom); }
};

void Range(const std::vector<double>& v, double* lo, double* hi) {
  *lo = v.empty() ? 0 : *std::min_element(v.begin(), v.end());
  *hi = v.empty() ? 1 : *std::max_element(v.begin(), v.end());
  if (!(*hi > *lo)) {  // a single value (or none): give the axis some width
    const double pad = std::max(1.0, std::abs(*lo) * 0.1);
    *lo -= pad;
    *hi += pad;
  }
}

std::string SvgOpen(const std::string& id, const std::string& label) {
  return StrCat("<svg id=\"", HtmlEscape(id), "\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" ",
                "viewBox=\"0 0 ", kW, " ", kH, "\" width=\"", kW, "\" height=\"", kH, "\" role=\"img\" aria-label=\"",
                HtmlEscape(label), "\">\n");
}

// Grid lines, tick labels and axis titles for `a` with the given ticks.
std::string SvgAxes(const Axes& a, const std::vector<double>& xt, const std::vector<double>& yt,
                    const std::string& x_label, const std::string& y_label) {
  std::ostringstream s;
  s << "<g class=\"grid\">";
  for (double t : xt) {
    s << "<line x1=\"" << Num(a.X(t)) << "\" y1=\"" << kTop << "\" x2=\"" << Num(a.X(t)) << "\" y2=\"" << kH - kBottom
      << "\"/>";
  }
  for (double t : yt) {
    s << "<line x1=\"" << kLeft << "\" y1=\"" << Num(a.Y(t)) << "\" x2=\"" << kW - kRight << "\" y2=\"" << Num(a.Y(t))
      << "\"/>";
  }
  s << "</g>\n<g class=\"ticks\">";
  for (double t : xt) {
    s << "<text x=\"" << Num(a.X(t)) << "\" y=\"" << kH - kBottom + 16 << "\" text-anchor=\"middle\">" << Num(t)
      << "</text>";
  }
  for (double t : yt) {
    s << "<text x=\"" << kLeft - 6 << "\" y=\"" << Num(a.Y(t) + 4) << "\" text-anchor=\"end\">" << Num(t) << "</text>";
  }
  s << "</g>\n<rect class=\"frame\" x=\"" << kLeft << "\" y=\"" << kTop << "\" width=\"" << kW - kLeft - kRight
    << "\" height=\"" << kH - kTop - kBottom << "\"/>\n";
  s << "<text class=\"label\" x=\"" << (kLeft + kW - kRight) / 2 << "\" y=\"" << kH - 8 << "\" text-anchor=\"middle\">"
    << HtmlEscape(x_label) << "</text>\n";
  s << "<text class=\"label\" transform=\"translate(14," << (kTop + kH - kBottom) / 2
    << ") rotate(-90)\" text-anchor=\"middle\">" << HtmlEscape(y_label) << "</text>\n";
  return s.str();
}

const char* kStyle = R"(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1120px;
  color:#222;background:#fff;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{font-size:1.2em;margin-top:28px;border-bottom:1px solid #ddd;
  padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}td,th{padding:4px 12px;border-bottom:1px solid #eee;text-align:left}
td.v{text-align:right;font-variant-numeric:tabular-nums}
#context td:first-child{color:#666}
.charts{display:flex;flex-wrap:wrap;gap:16px}
svg.chart{background:#fcfcfc;border:1px solid #e4e4e4;max-width:100%;height:auto}
svg.chart text{font-size:12px;fill:#333}svg.chart .grid line{stroke:#e8e8e8}
svg.chart rect.frame{fill:none;stroke:#999}svg.chart .label{font-size:13px}
#worst{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:16px}
figure{margin:0;border:1px solid #e4e4e4;padding:8px;background:#fafafa}
figure img{width:100%;height:auto;display:block}figcaption{font-size:.9em;margin-top:6px;word-break:break-all}
.muted{color:#777}footer{margin-top:32px;font-size:.85em;color:#888}
)";

// Two-column rows; `numeric` right-aligns the values (the summary table).
std::string TableRows(const std::vector<std::pair<std::string, std::string>>& rows, bool numeric) {
  std::string s;
  for (const auto& [k, v] : rows) {
    s +=
        "<tr><td>" + HtmlEscape(k) + (numeric ? "</td><td class=\"v\">" : "</td><td>") + HtmlEscape(v) + "</td></tr>\n";
  }
  return s;
}

std::string WorstSection(const std::vector<ReportImage>& worst) {
  std::ostringstream s;
  s << "<h2>Worst images</h2>\n";
  if (worst.empty()) return s.str() + "<p class=\"muted\">No images.</p>\n";
  s << "<p class=\"muted\">Largest absolute count errors first. Heatmap: predicted density, upsampled and "
       "blended on the image.</p>\n<div id=\"worst\">\n";
  for (const ReportImage& im : worst) {
    const std::string name = HtmlEscape(im.name);
    // An image that fails to decode logs a console error, which the report test looks for.
    s << "<figure><img alt=\"" << name << "\" src=\"data:image/png;base64," << Base64(im.png)
      << "\" onerror=\"console.error('report: image failed to decode: ' + this.alt)\">"
      << "<figcaption><b>" << name << "</b><br>true " << Num(im.truth, "%.1f") << ", predicted "
      << Num(im.predicted, "%.1f") << ", error " << Num(im.predicted - im.truth, "%+.1f") << "</figcaption></figure>\n";
  }
  return s.str() + "</div>\n";
}

}  // namespace

std::string Base64(const std::string& bytes) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8) |
                       static_cast<uint8_t>(bytes[i + 2]);
    out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], k[v & 63]};
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    out += {k[v >> 18], k[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8);
    out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], '='};
  }
  return out;
}

std::string HtmlEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::vector<double> NiceTicks(double lo, double hi, int count) {
  if (!(hi > lo) || count < 1) return {lo};
  const double raw = (hi - lo) / count;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  std::vector<double> ticks;
  // k * step, not a running sum: 10 * 0.2 is 2 exactly, 0.2 added ten times is not.
  for (double k = std::ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k += 1) {
    ticks.push_back(k == 0 ? 0.0 : k * step);
  }
  return ticks;
}

std::string SvgScatter(const std::string& id, const std::vector<double>& x, const std::vector<double>& y,
                       const std::vector<std::string>& labels, const std::string& x_label, const std::string& y_label) {
  // One range for both axes so the y = x diagonal is the 45-degree line.
  std::vector<double> all(x);
  all.insert(all.end(), y.begin(), y.end());
  all.push_back(0.0);
  double lo, hi;
  Range(all, &lo, &hi);
  const std::vector<double> ticks = NiceTicks(lo, hi, 6);
  const Axes a{std::min(lo, ticks.front()), std::max(hi, ticks.back()), std::min(lo, ticks.front()),
               std::max(hi, ticks.back())};
  std::ostringstream s;
  s << SvgOpen(id, y_label + " against " + x_label) << SvgAxes(a, ticks, ticks, x_label, y_label);
  s << "<line class=\"diagonal\" x1=\"" << Num(a.X(a.x0)) << "\" y1=\"" << Num(a.Y(a.y0)) << "\" x2=\""
    << Num(a.X(a.x1)) << "\" y2=\"" << Num(a.Y(a.y1)) << "\" stroke=\"#999\" stroke-dasharray=\"5,4\"/>\n";
  s << "<g class=\"points\" fill=\"" << kColours[0] << "\" fill-opacity=\"0.7\">";
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    s << "<circle cx=\"" << Num(a.X(x[i])) << "\" cy=\"" << Num(a.Y(y[i])) << "\" r=\"3.5\"><title>"
      << HtmlEscape(i < labels.size() ? labels[i] : "") << ": true " << Num(x[i], "%.1f") << ", predicted "
      << Num(y[i], "%.1f") << "</title></circle>";
  }
  s << "</g>\n</svg>\n";
  return s.str();
}

std::string SvgHistogram(const std::string& id, const std::vector<double>& values, int bins,
                         const std::string& x_label) {
  double lo, hi;
  Range(values, &lo, &hi);
  bins = std::max(1, bins);
  const double width = (hi - lo) / bins;
  std::vector<int> counts(bins, 0);
  for (double v : values) counts[std::clamp(static_cast<int>((v - lo) / width), 0, bins - 1)]++;
  const int top = std::max(1, *std::max_element(counts.begin(), counts.end()));
  std::vector<double> yt = NiceTicks(0, top, 5);
  yt.erase(std::remove_if(yt.begin(), yt.end(), [](double t) { return std::abs(t - std::round(t)) > 1e-9; }), yt.end());
  const Axes a{lo, hi, 0, std::max<double>(top, yt.back())};
  std::ostringstream s;
  s << SvgOpen(id, "histogram of " + x_label) << SvgAxes(a, NiceTicks(lo, hi, 6), yt, x_label, "images");
  s << "<g class=\"bars\" fill=\"" << kColours[1] << "\" fill-opacity=\"0.8\" stroke=\"#fff\">";
  for (int b = 0; b < bins; ++b) {
    const double x0 = lo + b * width, x1 = x0 + width;
    s << "<rect x=\"" << Num(a.X(x0)) << "\" y=\"" << Num(a.Y(counts[b])) << "\" width=\"" << Num(a.X(x1) - a.X(x0))
      << "\" height=\"" << Num(a.Y(0) - a.Y(counts[b])) << "\"><title>" << Num(x0) << " to " << Num(x1) << ": "
      << counts[b] << "</title></rect>";
  }
  s << "</g>\n";
  if (lo < 0 && hi > 0) {
    s << "<line x1=\"" << Num(a.X(0)) << "\" y1=\"" << kTop << "\" x2=\"" << Num(a.X(0)) << "\" y2=\"" << kH - kBottom
      << "\" stroke=\"#333\" stroke-dasharray=\"4,3\"/>\n";
  }
  return s.str() + "</svg>\n";
}

std::string SvgLines(const std::string& id, const std::vector<Series>& series, const std::string& x_label,
                     const std::string& y_label) {
  std::vector<double> xs, ys;
  for (const Series& se : series) {
    for (const auto& [x, y] : se.points) {
      xs.push_back(x);
      ys.push_back(y);
    }
  }
  double x0, x1, y0, y1;
  Range(xs, &x0, &x1);
  Range(ys, &y0, &y1);
  std::vector<double> xt = NiceTicks(x0, x1, 6);
  const std::vector<double> yt = NiceTicks(y0, y1, 5);
  // Whole-number x (epochs): no ticks between them.
  auto whole = [](double v) { return std::abs(v - std::round(v)) < 1e-9; };
  if (std::all_of(xs.begin(), xs.end(), whole)) {
    xt.erase(std::remove_if(xt.begin(), xt.end(), [&](double t) { return !whole(t); }), xt.end());
  }
  const Axes a{x0, x1, std::min(y0, yt.front()), std::max(y1, yt.back())};
  std::ostringstream s;
  s << SvgOpen(id, y_label + " per " + x_label) << SvgAxes(a, xt, yt, x_label, y_label);
  for (size_t k = 0; k < series.size(); ++k) {
    const char* colour = kColours[k % std::size(kColours)];
    s << "<polyline class=\"series\" fill=\"none\" stroke=\"" << colour << "\" stroke-width=\"2\" points=\"";
    for (const auto& [x, y] : series[k].points) s << Num(a.X(x)) << "," << Num(a.Y(y)) << " ";
    s << "\"><title>" << HtmlEscape(series[k].name) << "</title></polyline>\n";
    if (series[k].points.size() == 1) {  // a lone point draws no line
      const auto& [x, y] = series[k].points[0];
      s << "<circle cx=\"" << Num(a.X(x)) << "\" cy=\"" << Num(a.Y(y)) << "\" r=\"3\" fill=\"" << colour << "\"/>";
    }
    // Legend, top right.
    const double ly = kTop + 14 + 16 * static_cast<double>(k);
    s << "<line x1=\"" << kW - kRight - 110 << "\" y1=\"" << ly - 4 << "\" x2=\"" << kW - kRight - 90 << "\" y2=\""
      << ly - 4 << "\" stroke=\"" << colour << "\" stroke-width=\"2\"/><text x=\"" << kW - kRight - 84 << "\" y=\""
      << ly << "\">" << HtmlEscape(series[k].name) << "</text>\n";
  }
  return s.str() + "</svg>\n";
}

std::string RenderReportHtml(const ReportData& data) {
  std::ostringstream s;
  s << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" << HtmlEscape(data.title)
    << "</title>\n<style>" << kStyle << "</style>\n</head>\n<body>\n<h1>" << HtmlEscape(data.title) << "</h1>\n";
  s << "<table id=\"context\">\n" << TableRows(data.context, false) << "</table>\n";
  s << "<h2>Summary</h2>\n<table id=\"summary\">\n<tr><th>Measure</th><th>Value</th></tr>\n"
    << TableRows(data.summary, true) << "</table>\n";
  std::vector<double> errors;
  for (size_t i = 0; i < data.truth.size() && i < data.predicted.size(); ++i) {
    errors.push_back(data.predicted[i] - data.truth[i]);
  }
  s << "<h2>Counts</h2>\n<div class=\"charts\">\n"
    << SvgScatter("scatter", data.truth, data.predicted, data.names, "true count", "predicted count")
    << SvgHistogram("histogram", errors, std::clamp(static_cast<int>(std::sqrt(errors.size())) + 1, 5, 30),
                    "error (predicted - true)")
    << "</div>\n";
  s << WorstSection(data.worst);
  if (!data.loss_curves.empty() || !data.error_curves.empty()) {
    s << "<h2>Training curves</h2>\n<div class=\"charts\">\n";
    if (!data.loss_curves.empty()) s << SvgLines("loss", data.loss_curves, "epoch", "training loss");
    if (!data.error_curves.empty()) s << SvgLines("validation", data.error_curves, "epoch", "validation error");
    s << "</div>\n";
  }
  s << "<footer>csrnet-cpp " << CSR_VERSION << "</footer>\n</body>\n</html>\n";
  return s.str();
}

void WriteReport(const std::string& path, const ReportData& data) { WriteTextFileAtomic(path, RenderReportHtml(data)); }

void ReadTrainingLog(const std::string& path, std::vector<Series>* loss, std::vector<Series>* errors) {
  Series train{"train loss", {}}, mae{"MAE", {}}, rmse{"RMSE", {}};
  for (const EpochLog& e : CompleteEpochs(ReadTrainLog(path))) {
    const double x = static_cast<double>(e.epoch);
    if (e.train_loss) train.points.emplace_back(x, *e.train_loss);
    if (e.mae) mae.points.emplace_back(x, *e.mae);
    if (e.rmse) rmse.points.emplace_back(x, *e.rmse);
  }
  loss->clear();
  errors->clear();
  if (!train.points.empty()) loss->push_back(train);
  if (!mae.points.empty()) errors->push_back(mae);
  if (!rmse.points.empty()) errors->push_back(rmse);
}

}  // namespace csr
