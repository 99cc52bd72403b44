// The heatmap overlay of predict's --out, its --annotate video and
// evaluate's report, and PNG encoding.
#pragma once

#include <string>

#include <opencv2/core.hpp>

namespace csr {

// The density upsampled to the image, colour-mapped (JET, scaled to the
// map's maximum but at least 0.05 people per 8 x 8 cell) and blended with
// opacity growing with the density up to `alpha`, the count (and `caption`)
// written in the top-left corner. `rgb` is 8-bit RGB; returns BGR.
cv::Mat RenderHeatmap(const cv::Mat& rgb, const cv::Mat& density, double count, double alpha = 0.5,
                      const std::string& caption = "");
// PNG bytes of a BGR image. Throws csr::Error when OpenCV cannot encode it.
std::string EncodePng(const cv::Mat& bgr);

}  // namespace csr
