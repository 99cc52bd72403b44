// The evaluation report: one self-contained HTML page (no scripts, styles,
// fonts or images fetched from anywhere) with the summary table, a scatter
// plot of predicted against true counts, the error histogram, the worst
// images with their heatmaps (PNG embedded as base64) and, when a training
// log is available, the training curves. Plots are inline SVG drawn here.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace csr {

// One image of the "worst images" section.
struct ReportImage {
  std::string name;  // shown as the caption (escaped)
  double truth = 0;
  double predicted = 0;
  std::string png;  // encoded PNG bytes of the heatmap overlay
};

// One line of a chart: (x, y) points in order of x.
struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;
};

struct ReportData {
  std::string title = "CSRNet evaluation";
  // Context rows shown above the summary (weights file, data, precision...).
  std::vector<std::pair<std::string, std::string>> context;
  // Summary table rows: metric name and its value already formatted.
  std::vector<std::pair<std::string, std::string>> summary;
  // Per image, in the same order: names, annotation counts, predictions.
  std::vector<std::string> names;
  std::vector<double> truth;
  std::vector<double> predicted;
  std::vector<ReportImage> worst;  // worst first
  // Training curves (empty: the section is left out).
  std::vector<Series> loss_curves;   // x = epoch
  std::vector<Series> error_curves;  // x = epoch
};

// The complete HTML page.
std::string RenderReportHtml(const ReportData& data);
// Writes it atomically; throws csr::Error naming the path.
void WriteReport(const std::string& path, const ReportData& data);

// Reads the trainer's train_log.jsonl (one JSON object per epoch) into the
// curves the report draws: train loss, and validation MAE / RMSE per epoch.
// Lines that are not objects or lack an epoch are skipped; an unreadable
// file throws csr::Error naming it.
void ReadTrainingLog(const std::string& path, std::vector<Series>* loss, std::vector<Series>* errors);

// ---- Building blocks (exposed for tests) -----------------------------------
std::string Base64(const std::string& bytes);
// Escapes &, <, >, " and ' for HTML text and attribute values.
std::string HtmlEscape(const std::string& text);
// Inline SVG charts; `id` becomes the element's id.
std::string SvgScatter(const std::string& id, const std::vector<double>& x, const std::vector<double>& y,
                       const std::vector<std::string>& labels, const std::string& x_label, const std::string& y_label);
std::string SvgHistogram(const std::string& id, const std::vector<double>& values, int bins,
                         const std::string& x_label);
std::string SvgLines(const std::string& id, const std::vector<Series>& series, const std::string& x_label,
                     const std::string& y_label);
// "Nice" axis ticks covering [lo, hi] (about `count` of them).
std::vector<double> NiceTicks(double lo, double hi, int count);

}  // namespace csr
