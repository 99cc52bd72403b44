// The parts of running CSRNet on an image that are not the network, shared
// by both engines (deploy/engine.h) and the trainer's validation: input
// normalisation, the tiling plan, the tile margin a layer chain needs, and
// the one stitching rule.
#pragma once

#include <functional>
#include <vector>

#include <opencv2/core.hpp>

namespace csr {

// ImageNet statistics applied to RGB in [0, 1] (the original's Normalize).
constexpr float kImageNetMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kImageNetStd[3] = {0.229f, 0.224f, 0.225f};

// RGB uint8 (CV_8UC3, h x w) -> normalised float 3 x h x w, optionally
// mirrored left-right. Writes into `out` (3*h*w floats), no allocation.
void NormalizeImage(const cv::Mat& rgb, bool mirror, float* out);

// One tile of a tiled pass: the input window [y0, y1) x [x0, x1) and the
// output cells [oy0, oy1) x [ox0, ox1) of the whole map it is responsible for.
struct Tile {
  int y0 = 0, y1 = 0, x0 = 0, x1 = 0;
  int oy0 = 0, oy1 = 0, ox0 = 0, ox1 = 0;
};
// Splits an image's output grid (floor(h/8) x floor(w/8)) into blocks of at
// most `tile` input pixels a side, each read with `margin` extra pixels
// around it (clipped at the image). Windows start on multiples of 8 so the
// pooling grid matches the whole image; a window reaching the image's last
// full cell extends to the image edge. `tile` <= 0 or larger than the image:
// one tile.
std::vector<Tile> PlanTiles(int height, int width, int tile, int margin);

// The whole map (floor(h/8) x floor(w/8), CV_32F) of an h x w image from its
// tiles: `window_density` gives the 1/8 map (CV_32F) of a tile's input
// window, and each tile's own cells are copied out of it (its margin cells,
// which see the window's edge, are dropped). Throws csr::Error when a
// window's map is smaller than the window's cells.
cv::Mat StitchTiles(int height, int width, const std::vector<Tile>& tiles,
                    const std::function<cv::Mat(const Tile&)>& window_density);

// One layer of a convolutional chain, as far as its reach is concerned.
struct LayerGeometry {
  int kernel = 1;
  int stride = 1;
  int dilation = 1;
};
// How far (input pixels, rounded up to a multiple of 8) an output cell of the
// chain sees beyond its own 8 x 8 block: a tile margin this wide makes tiled
// inference equal whole-image inference. For CSRNet this is 8 * (3 + sum of
// the back end's dilations) + 18 pixels before rounding (train/model.h).
int ChainMargin(const std::vector<LayerGeometry>& chain);

}  // namespace csr
