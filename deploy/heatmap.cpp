#include "deploy/heatmap.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/base/error.h"

namespace csr {

cv::Mat RenderHeatmap(const cv::Mat& rgb, const cv::Mat& density, double count, double alpha,
                      const std::string& caption) {
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  if (density.rows > 0 && density.cols > 0) {
    // The map covers floor(h/8)*8 x floor(w/8)*8 pixels; the remainder at the
    // right and bottom edges (under 8 px) has no prediction and stays bare.
    cv::Mat d;
    cv::max(density, 0.0, d);  // negative outputs carry no people
    // Colours scale with the map's peak, but at least 0.05 people per 8 x 8
    // cell: a faint, nearly even map (a sparse scene, an untrained model)
    // stays cool instead of being stretched into a red wash.
    double lo = 0, hi = 0;
    cv::minMaxLoc(d, &lo, &hi);
    d /= std::max(hi, 0.05);
    const cv::Size covered(density.cols * 8, density.rows * 8);
    cv::Mat up, up8, colour;
    cv::resize(d, up, covered, 0, 0, cv::INTER_LINEAR);
    up.convertTo(up8, CV_8U, 255.0);
    cv::applyColorMap(up8, colour, cv::COLORMAP_JET);
    // Opacity grows with the density, so empty areas keep the photo visible.
    cv::Mat weight;
    up.convertTo(weight, CV_32F, alpha * 0.75, alpha * 0.25);
    cv::Mat roi = bgr(cv::Rect(cv::Point(0, 0), covered));
    for (int y = 0; y < roi.rows; ++y) {
      cv::Vec3b* p = roi.ptr<cv::Vec3b>(y);
      const cv::Vec3b* c = colour.ptr<cv::Vec3b>(y);
      const float* w = weight.ptr<float>(y);
      for (int x = 0; x < roi.cols; ++x) {
        for (int k = 0; k < 3; ++k) p[x][k] = cv::saturate_cast<uchar>(p[x][k] * (1 - w[x]) + c[x][k] * w[x]);
      }
    }
  }
  // The count in a dark box in the top-left corner, scaled with the image.
  char text[64];
  std::snprintf(text, sizeof text, "count %.1f", count);
  const std::string label = caption.empty() ? text : caption + "  " + text;
  const double scale = std::max(0.4, std::min(bgr.cols, bgr.rows) / 600.0);
  const int thick = std::max(1, static_cast<int>(std::lround(scale * 1.5)));
  int base = 0;
  const cv::Size ts = cv::getTextSize(label, cv::FONT_HERSHEY_SIMPLEX, scale, thick, &base);
  const int pad = static_cast<int>(6 * scale);
  cv::rectangle(bgr, cv::Rect(0, 0, ts.width + 2 * pad, ts.height + base + 2 * pad), cv::Scalar(0, 0, 0), cv::FILLED);
  cv::putText(bgr, label, cv::Point(pad, pad + ts.height), cv::FONT_HERSHEY_SIMPLEX, scale, cv::Scalar(255, 255, 255),
              thick, cv::LINE_AA);
  return bgr;
}

std::string EncodePng(const cv::Mat& bgr) {
  std::vector<uchar> buf;
  if (!cv::imencode(".png", bgr, buf)) throw Error("png", "cannot encode image");
  return std::string(buf.begin(), buf.end());
}

}  // namespace csr
