#include "deploy/tiling.h"

#include <algorithm>

#include "common/base/error.h"

namespace csr {

void NormalizeImage(const cv::Mat& rgb, bool mirror, float* out) {
  CSR_CHECK(rgb.type() == CV_8UC3, "image", "expected an 8-bit RGB image");
  const int h = rgb.rows, w = rgb.cols;
  const size_t plane = static_cast<size_t>(h) * w;
  float scale[3], shift[3];
  for (int c = 0; c < 3; ++c) {
    scale[c] = 1.0f / (255.0f * kImageNetStd[c]);
    shift[c] = -kImageNetMean[c] / kImageNetStd[c];
  }
  for (int y = 0; y < h; ++y) {
    const uint8_t* row = rgb.ptr<uint8_t>(y);
    for (int x = 0; x < w; ++x) {
      const int sx = mirror ? w - 1 - x : x;
      const size_t o = static_cast<size_t>(y) * w + x;
      for (int c = 0; c < 3; ++c) out[c * plane + o] = row[3 * sx + c] * scale[c] + shift[c];
    }
  }
}

namespace {

// Splits the output cells [0, cells) of an axis of `pixels` input pixels into
// blocks, each with its input window (see PlanTiles).
struct Span {
  int in0, in1, out0, out1;
};
std::vector<Span> PlanAxis(int pixels, int block_cells, int margin) {
  const int cells = pixels / 8;
  std::vector<Span> spans;
  for (int a = 0; a < cells; a += block_cells) {
    const int b = std::min(cells, a + block_cells);
    const int in0 = std::max(0, 8 * a - margin);
    const int in1 = b == cells ? pixels : std::min(pixels, 8 * b + margin);
    spans.push_back({in0, in1, a, b});
  }
  return spans;
}

}  // namespace

std::vector<Tile> PlanTiles(int height, int width, int tile, int margin) {
  const bool whole = tile <= 0 || (height <= tile && width <= tile);
  const int block = whole ? std::max(height, width) / 8 + 1 : std::max(1, tile / 8);
  std::vector<Tile> tiles;
  for (const Span& r : PlanAxis(height, block, margin)) {
    for (const Span& c : PlanAxis(width, block, margin)) {
      tiles.push_back({r.in0, r.in1, c.in0, c.in1, r.out0, r.out1, c.out0, c.out1});
    }
  }
  return tiles;
}

cv::Mat StitchTiles(int height, int width, const std::vector<Tile>& tiles,
                    const std::function<cv::Mat(const Tile&)>& window_density) {
  cv::Mat density = cv::Mat::zeros(height / 8, width / 8, CV_32F);
  for (const Tile& t : tiles) {
    if (t.oy1 <= t.oy0 || t.ox1 <= t.ox0) continue;  // no output cell
    const cv::Mat part = window_density(t);
    const int cy = t.y0 / 8, cx = t.x0 / 8;
    if (part.type() != CV_32F || part.rows < t.oy1 - cy || part.cols < t.ox1 - cx) {
      throw Error("", StrCat("the network gave a ", part.rows, " x ", part.cols, " map for a ", t.y1 - t.y0, " x ",
                             t.x1 - t.x0, " window (expected 1/8 of it: is this a CSRNet density model?)"));
    }
    part(cv::Range(t.oy0 - cy, t.oy1 - cy), cv::Range(t.ox0 - cx, t.ox1 - cx))
        .copyTo(density(cv::Range(t.oy0, t.oy1), cv::Range(t.ox0, t.ox1)));
  }
  return density;
}

int ChainMargin(const std::vector<LayerGeometry>& chain) {
  // Receptive field and spacing of the last layer's outputs, in input pixels.
  long long field = 1, jump = 1;
  for (const LayerGeometry& l : chain) {
    field += static_cast<long long>(l.kernel - 1) * l.dilation * jump;
    jump *= l.stride;
  }
  const long long reach = std::max(0LL, (field - jump + 1) / 2);  // beyond the cell's own block, each side
  return static_cast<int>((reach + 7) / 8 * 8);
}

}  // namespace csr
