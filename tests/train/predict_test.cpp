// predict: output format, folders, heatmaps and density files, videos,
// weight formats, tiling, agreement with the PyTorch reference, bad inputs.
// LibTorch first (tests/train/torch_doctest.h): its CHECK macros clash with doctest's.
#include "tests/train/torch_doctest.h"
#include "train/model.h"
#include "train/trainer.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <opencv2/videoio.hpp>

#include "common/base/error.h"
#include "common/io/h5.h"
#include "common/io/image_io.h"
#include "deploy/heatmap.h"
#include "deploy/predict.h"
#include "tests/test_skip.h"
#include "tests/train/predict_test_util.h"

namespace csr {
namespace {

using test::Lines;
using test::Slurp;
using test::TempDir;

using Outcome = test::ToolOutcome;

// Runs the predict tool with `args`, capturing stdout and stderr apart.
// predict's entry point in this process (test::RunCapturedHere); the binary
// itself runs in the usage test below and in predict_slow_test.
Outcome Predict(const TempDir& dir, const std::string& args) {
  return test::RunCapturedHere(dir, RunPredict, "predict", args);
}
Outcome PredictProcess(const TempDir& dir, const std::string& args) { return test::RunCaptured(dir, "predict", args); }

double CountOf(const std::string& line) { return std::stod(line.substr(line.find('\t') + 1)); }

ModelSettings Settings(const fs::path& weights, int tile = 1024) {
  ModelSettings s;
  s.weights = weights.string();
  s.tile = tile;
  s.threads = 2;
  return s;
}

// Shared weights for the file: He-initialised, original layout.
const fs::path& Weights() { return test::SharedRandomWeights(1); }

TEST_CASE("predict prints the path as given, a tab and the count with six decimals") {
  TempDir dir;
  const cv::Mat rgb = test::CrowdImage(96, 80, 1);
  test::WriteRgb(dir / "a.png", rgb);
  const Outcome o = Predict(dir, "--threads 2 --weights " + Weights().string() + " " + (dir / "a.png").string());
  REQUIRE(o.rc == 0);
  const std::vector<std::string> lines = Lines(o.out);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].rfind((dir / "a.png").string() + "\t", 0) == 0);
  const std::string number = lines[0].substr(lines[0].find('\t') + 1);
  REQUIRE(number.find('.') != std::string::npos);
  CHECK(number.size() - number.find('.') - 1 == 6);
  Predictor p(Settings(Weights()));
  const double count = cv::sum(p.Density(rgb))[0];
  CHECK(CountOf(lines[0]) == doctest::Approx(count).epsilon(1e-6));
  CHECK(std::abs(count) > 0.1);  // the fixture's weights do produce people
}

TEST_CASE("predict walks folders recursively in natural sorted order") {
  TempDir dir;
  fs::create_directories(dir / "in" / "sub");
  for (const char* name : {"IMG_10.png", "IMG_2.png", "sub/IMG_1.png", "notes.txt"}) {
    if (std::string(name).find(".png") != std::string::npos) {
      test::WriteRgb(dir / "in" / name, test::CrowdImage(64, 48, 3));
    } else {
      std::ofstream(dir / "in" / name) << "not an image";
    }
  }
  const std::string in = (dir / "in").string();
  const Outcome o = Predict(dir, "--threads 2 --weights " + Weights().string() + " " + in);
  REQUIRE(o.rc == 0);
  const std::vector<std::string> lines = Lines(o.out);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0].rfind(in + "/IMG_2.png\t", 0) == 0);
  CHECK(lines[1].rfind(in + "/IMG_10.png\t", 0) == 0);
  CHECK(lines[2].rfind(in + "/sub/IMG_1.png\t", 0) == 0);
  CHECK(CountOf(lines[0]) == doctest::Approx(CountOf(lines[1])));  // same pixels, same count
}

TEST_CASE("A grayscale image counts as its RGB replication") {
  TempDir dir;
  cv::Mat gray;
  cv::cvtColor(test::CrowdImage(80, 64, 4), gray, cv::COLOR_RGB2GRAY);
  cv::imwrite((dir / "g.png").string(), gray);
  cv::Mat rgb;
  cv::cvtColor(gray, rgb, cv::COLOR_GRAY2RGB);
  test::WriteRgb(dir / "c.png", rgb);
  const Outcome o = Predict(dir, "--threads 2 --weights " + Weights().string() + " " + (dir / "g.png").string() + " " +
                                     (dir / "c.png").string());
  REQUIRE(o.rc == 0);
  const std::vector<std::string> lines = Lines(o.out);
  REQUIRE(lines.size() == 2);
  CHECK(CountOf(lines[0]) == doctest::Approx(CountOf(lines[1])).epsilon(1e-9));
}

TEST_CASE("--out writes a heatmap overlay PNG of the image's size and the 1/8 density map as .h5") {
  TempDir dir;
  test::WriteRgb(dir / "IMG_7.jpg", test::CrowdImage(130, 99, 5));
  const Outcome o = Predict(dir, "--threads 2 --weights " + Weights().string() + " --out " + (dir / "out").string() +
                                     " " + (dir / "IMG_7.jpg").string());
  REQUIRE(o.rc == 0);
  const cv::Mat heat = cv::imread((dir / "out" / "IMG_7_heatmap.png").string());
  REQUIRE_FALSE(heat.empty());
  CHECK(heat.cols == 130);
  CHECK(heat.rows == 99);
  // The count box in the top-left corner is black with white text.
  CHECK(heat.at<cv::Vec3b>(1, 1) == cv::Vec3b(0, 0, 0));
  const std::string h5path = (dir / "out" / "IMG_7_density.h5").string();
  h5::Lock h5_lock;
  const h5::Hid f_file = h5::OpenRead(h5path);
  const hid_t f = f_file.get();
  const cv::Mat d = h5::ReadMat2f(f, "density", h5path);
  CHECK(d.cols == 130 / 8);
  CHECK(d.rows == 99 / 8);
  const double count = CountOf(Lines(o.out).at(0));
  CHECK(cv::sum(d)[0] == doctest::Approx(count).epsilon(1e-6));
  CHECK(h5::GetAttrDouble(f, "count", h5path) == doctest::Approx(count).epsilon(1e-6));
  CHECK(h5::GetAttrInt(f, "width", h5path) == 130);
}

TEST_CASE("RenderHeatmap keeps the image size, colours dense areas and writes the count") {
  const cv::Mat rgb(64, 72, CV_8UC3, cv::Scalar(128, 128, 128));
  cv::Mat density = cv::Mat::zeros(8, 9, CV_32F);
  density.at<float>(6, 6) = 3.0f;
  const cv::Mat out = RenderHeatmap(rgb, density, 3.0, 0.6);
  CHECK(out.size() == rgb.size());
  const cv::Vec3b hot = out.at<cv::Vec3b>(6 * 8 + 4, 6 * 8 + 4);  // JET maximum is red (BGR)
  CHECK(hot[2] > hot[0] + 40);
  CHECK(out.at<cv::Vec3b>(2, 2) == cv::Vec3b(0, 0, 0));  // count box
}

TEST_CASE("Tiled inference equals whole-image inference") {
  // 96-px tiles: the 272 x 208 image runs as 3 x 3 tiles whose margins
  // (144 px) are wider than the tiles themselves. The large-image case is
  // in predict_slow_test.
  const cv::Mat rgb = test::CrowdImage(272, 208, 8);
  Predictor whole(Settings(Weights(), 0));
  Predictor tiled(Settings(Weights(), 96));
  const cv::Mat a = whole.Density(rgb), b = tiled.Density(rgb);
  REQUIRE(a.size() == b.size());
  double lo, hi;
  cv::minMaxLoc(cv::abs(a), &lo, &hi);
  CHECK(cv::norm(a, b, cv::NORM_INF) <= 1e-4 * hi);
  const double ca = cv::sum(a)[0], cb = cv::sum(b)[0];
  CHECK(std::abs(ca - cb) <= 1e-3 * std::abs(ca));
}

TEST_CASE(".h5, model .pt and checkpoint .pt weights give the same counts") {
  TempDir dir;
  CSRNet model = LoadModel(Weights().string());
  SaveModelPt(model, (dir / "model.pt").string(), ModelFileInfo{});
  auto optimizer = MakeOptimizer(model, TrainOptions{});
  SaveCheckpoint((dir / "checkpoint.pt").string(), model, optimizer, TrainState{}, nlohmann::json::object());
  const cv::Mat rgb = test::CrowdImage(88, 64, 9);
  const double h5 = cv::sum(Predictor(Settings(Weights())).Density(rgb))[0];
  CHECK(cv::sum(Predictor(Settings(dir / "model.pt")).Density(rgb))[0] == doctest::Approx(h5).epsilon(1e-6));
  CHECK(cv::sum(Predictor(Settings(dir / "checkpoint.pt")).Density(rgb))[0] == doctest::Approx(h5).epsilon(1e-6));
}

TEST_CASE("The forward pass equals PyTorch's on the reference vectors" * doctest::test_suite("optional")) {
  const fs::path ref = test::SharedData() / "reference";
  CSR_SKIP_UNLESS(!test::SharedData().empty() && fs::exists(ref / "csrnet_forward.h5"), test::kNeedShared,
                  "no ../shared/data/reference/csrnet_forward.h5");
  Predictor p(Settings(ref / "csrnet_weights.h5"));
  const std::string file = (ref / "csrnet_forward.h5").string();
  h5::Lock h5_lock;
  const h5::Hid f_file = h5::OpenRead(file);
  const hid_t f = f_file.get();
  std::vector<hsize_t> in_shape, out_shape;
  const std::vector<float> input = h5::ReadFloats(f, "input", file, &in_shape);
  const std::vector<float> output = h5::ReadFloats(f, "output", file, &out_shape);
  REQUIRE(in_shape.size() == 4);
  const int n = int(in_shape[0]), h = int(in_shape[2]), w = int(in_shape[3]);
  const size_t in_size = 3 * size_t(h) * w, out_size = out_shape[2] * out_shape[3];
  for (int i = 0; i < n; ++i) {
    const cv::Mat d = p.DensityNormalized(input.data() + i * in_size, h, w);
    REQUIRE(size_t(d.rows) == out_shape[2]);
    REQUIRE(size_t(d.cols) == out_shape[3]);
    const cv::Mat expected(d.rows, d.cols, CV_32F, const_cast<float*>(output.data() + i * out_size));
    double lo, hi;
    cv::minMaxLoc(cv::abs(expected), &lo, &hi);
    CHECK(cv::norm(d, expected, cv::NORM_INF) <= 1e-4 * hi);
    const double ours = cv::sum(d)[0], theirs = cv::sum(expected)[0];
    MESSAGE("image ", i, ": largest cell difference / peak ", cv::norm(d, expected, cv::NORM_INF) / hi,
            ", count difference (relative) ", std::abs(ours - theirs) / std::abs(theirs));
    CHECK(std::abs(ours - theirs) <= 1e-4 * std::abs(theirs));
  }
}

// ---- Videos ------------------------------------------------------------------------

fs::path WriteVideo(const TempDir& dir, int frames) {
  const fs::path path = dir / "clip.avi";
  cv::VideoWriter w(path.string(), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 5.0, cv::Size(96, 72));
  REQUIRE(w.isOpened());
  for (int i = 0; i < frames; ++i) {
    cv::Mat bgr;
    cv::cvtColor(test::CrowdImage(96, 72, 50 + i), bgr, cv::COLOR_RGB2BGR);
    w.write(bgr);
  }
  return path;
}

TEST_CASE("--video counts every N-th frame into a CSV and writes the annotated frames") {
  TempDir dir;
  const fs::path video = WriteVideo(dir, 10);
  const fs::path csv = dir / "counts.csv", annotated = dir / "annotated.avi";
  const Outcome o = Predict(dir, "--threads 2 --weights " + Weights().string() + " --video " + video.string() +
                                     " --every 3 --csv " + csv.string() + " --annotate " + annotated.string());
  REQUIRE_MESSAGE(o.rc == 0, o.err);
  const std::vector<std::string> rows = Lines(Slurp(csv));
  REQUIRE(rows.size() == 5);
  CHECK(rows[0] == "frame,time,count");
  // The counts are those of the decoded frames 0, 3, 6, 9 at 5 fps.
  cv::VideoCapture cap(video.string());
  Predictor p(Settings(Weights()));
  cv::Mat bgr, rgb;
  for (int frame = 0, row = 1; cap.read(bgr); ++frame) {
    if (frame % 3) continue;
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    std::istringstream line(rows[row++]);
    std::string f, t, c;
    std::getline(line, f, ',');
    std::getline(line, t, ',');
    std::getline(line, c, ',');
    CHECK(std::stoi(f) == frame);
    CHECK(std::stod(t) == doctest::Approx(frame / 5.0));
    CHECK(std::stod(c) == doctest::Approx(cv::sum(p.Density(rgb))[0]).epsilon(1e-6));
  }
  cv::VideoCapture out(annotated.string());
  REQUIRE(out.isOpened());
  int n = 0;
  while (out.read(bgr)) {
    CHECK(bgr.cols == 96);
    ++n;
  }
  CHECK(n == 4);
}

TEST_CASE("--video without --csv or --out prints the CSV to stdout") {
  TempDir dir;
  const fs::path video = WriteVideo(dir, 3);
  const Outcome o = Predict(dir, "--threads 2 --weights " + Weights().string() + " --video " + video.string());
  REQUIRE(o.rc == 0);
  const std::vector<std::string> rows = Lines(o.out);
  REQUIRE(rows.size() == 4);
  CHECK(rows[0] == "frame,time,count");
  CHECK(rows[3].rfind("2,0.400000,", 0) == 0);
}

// ---- Bad input -----------------------------------------------------------------------

TEST_CASE("Unreadable and truncated images are reported, the others counted, and the exit code is 1") {
  TempDir dir;
  fs::create_directories(dir / "in");
  test::WriteRgb(dir / "in" / "IMG_1.jpg", test::CrowdImage(96, 80, 11));
  test::WriteRgb(dir / "in" / "IMG_3.png", test::CrowdImage(96, 80, 12));
  test::WriteRgb(dir / "full.jpg", test::CrowdImage(96, 80, 13));
  const std::string jpeg = Slurp(dir / "full.jpg");
  std::ofstream(dir / "in" / "IMG_2.jpg", std::ios::binary) << jpeg.substr(0, jpeg.size() / 2);  // truncated
  std::ofstream(dir / "in" / "IMG_4.png") << "this is text";
  const Outcome o = Predict(dir, "--threads 2 --weights " + Weights().string() + " " + (dir / "in").string() + " " +
                                     (dir / "missing.jpg").string());
  CHECK(o.rc == 1);
  const std::vector<std::string> lines = Lines(o.out);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].find("IMG_1.jpg\t") != std::string::npos);
  CHECK(lines[1].find("IMG_3.png\t") != std::string::npos);
  CHECK(o.err.find("IMG_2.jpg: truncated JPEG") != std::string::npos);
  CHECK(o.err.find("IMG_4.png: ") != std::string::npos);
  CHECK(o.err.find("missing.jpg: no such file") != std::string::npos);
  CHECK(o.err.find("3 input(s) failed") != std::string::npos);
}

TEST_CASE("An empty folder is a one-line error") {
  TempDir dir;
  fs::create_directories(dir / "empty");
  std::ofstream(dir / "empty" / "notes.txt") << "no pictures here";
  const Outcome o = Predict(dir, "--weights " + Weights().string() + " " + (dir / "empty").string());
  CHECK(o.rc == 1);
  CHECK(o.out.empty());
  CHECK(Lines(o.err).size() == 1);
  CHECK(o.err.find("empty: no images in this folder") != std::string::npos);
}

TEST_CASE("NaN weights, and a corrupt .pt, are one-line errors naming the file; no count is printed") {
  TempDir dir;
  test::WriteRgb(dir / "a.png", test::CrowdImage(64, 48, 17));
  const std::string image = (dir / "a.png").string();
  test::WriteRandomWeights(dir / "nan.h5", 2, "", "", "backend.2.weight");
  Outcome o = Predict(dir, "--weights " + (dir / "nan.h5").string() + " " + image);
  CHECK(o.rc == 1);
  CHECK(o.out.empty());
  CHECK(Lines(o.err).size() == 1);
  CHECK(o.err.find("nan.h5: tensor 'backend.2.weight' holds NaN or infinite values") != std::string::npos);

  // A .pt with 256 bytes flipped in the middle.
  CSRNet model = LoadModel(Weights().string());
  const fs::path pt = dir / "model_best.pt";
  SaveModelPt(model, pt.string(), {});
  {
    std::fstream f(pt, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(pt) / 2));
    f.write(std::string(256, '\x33').data(), 256);
  }
  o = Predict(dir, "--weights " + pt.string() + " " + image);
  CHECK(o.rc == 1);
  CHECK(o.out.empty());
  CHECK(Lines(o.err).size() == 1);
  CHECK(o.err.find(pt.string() + ": checksum mismatch in ") != std::string::npos);
}

TEST_CASE("Images of 1x1, 7x9, 1x60000 and 60000x1 pixels count 0 (no 8x8 cell); 100000x1 is a clean error") {
  TempDir dir;
  std::vector<std::string> paths;
  for (auto [w, h] : {std::pair{1, 1}, {7, 9}, {1, 60000}, {60000, 1}, {100000, 1}, {9, 3000}}) {
    const fs::path p = dir / ("img_" + std::to_string(w) + "x" + std::to_string(h) + ".png");
    test::WriteRgb(p, cv::Mat(h, w, CV_8UC3, cv::Scalar(90, 120, 200)));
    paths.push_back(p.string());
  }
  std::string args = "--threads 2 --weights " + Weights().string() + " --out " + (dir / "out").string();
  for (const auto& p : paths) args += " " + p;
  const Outcome o = Predict(dir, args);
  INFO(o.err);
  CHECK(o.rc == 1);  // the 100000 px one
  CHECK(o.err.find("img_100000x1.png: PNG header says 100000x1, larger than the supported") != std::string::npos);
  const std::vector<std::string> lines = Lines(o.out);
  REQUIRE(lines.size() == paths.size() - 1);
  for (size_t i = 0; i < 4; ++i) CHECK(lines[i] == paths[i] + "\t0.000000");
  CHECK(lines[4].rfind(paths[5] + "\t", 0) == 0);
  CHECK(fs::exists(dir / "out" / "img_60000x1_heatmap.png"));
  CHECK(fs::exists(dir / "out" / "img_1x1_density.h5"));
}

TEST_CASE("A video that cannot be opened is a one-line error") {
  TempDir dir;
  std::ofstream(dir / "fake.avi") << "not a video at all";
  std::ofstream(dir / "fake.mp4") << std::string(4096, 'm');
  Outcome o = Predict(dir, "--weights " + Weights().string() + " --video " + (dir / "fake.avi").string());
  CHECK(o.rc == 1);
  CHECK(o.err.find("fake.avi: ") != std::string::npos);
  CHECK(Lines(o.err).size() == 1);  // no FFmpeg/GStreamer/OpenCV chatter before it
  o = Predict(dir, "--weights " + Weights().string() + " --video " + (dir / "fake.mp4").string());
  CHECK(o.rc == 1);
  INFO(o.err);
  CHECK(Lines(o.err).size() == 1);
  o = Predict(dir, "--weights " + Weights().string() + " --video " + (dir / "none.avi").string());
  CHECK(o.rc == 1);
  CHECK(o.err.find("none.avi: no such video file") != std::string::npos);
}

TEST_CASE("Weights of another architecture name the missing or mis-shaped tensor") {
  TempDir dir;
  test::WriteRgb(dir / "a.png", test::CrowdImage(64, 48, 14));
  const std::string image = (dir / "a.png").string();
  test::WriteRandomWeights(dir / "missing.h5", 1, "output_layer.bias");
  Outcome o = Predict(dir, "--weights " + (dir / "missing.h5").string() + " " + image);
  CHECK(o.rc == 1);
  CHECK(o.out.empty());
  CHECK(o.err.find("missing tensor 'output_layer.bias'") != std::string::npos);
  CHECK(Lines(o.err).size() == 1);

  test::WriteRandomWeights(dir / "shape.h5", 1, "", "backend.4.weight");
  o = Predict(dir, "--weights " + (dir / "shape.h5").string() + " " + image);
  CHECK(o.rc == 1);
  CHECK(o.err.find("tensor 'backend.4.weight' has shape [1024,512,3,3], expected [512,512,3,3]") != std::string::npos);

  std::ofstream(dir / "junk.pt") << "not weights";
  o = Predict(dir, "--weights " + (dir / "junk.pt").string() + " " + image);
  CHECK(o.rc == 1);
  CHECK(o.err.find("junk.pt: ") != std::string::npos);
}

TEST_CASE("An output folder that cannot be written fails before any image is counted") {
  TempDir dir;
  test::WriteRgb(dir / "a.png", test::CrowdImage(64, 48, 15));
  std::ofstream(dir / "file") << "x";
  const Outcome o = Predict(dir, "--weights " + Weights().string() + " --out " + (dir / "file" / "out").string() + " " +
                                     (dir / "a.png").string());
  CHECK(o.rc == 1);
  CHECK(o.out.empty());
  CHECK(o.err.find("file/out") != std::string::npos);
}

TEST_CASE("Bad options are usage errors (exit 2)") {
  TempDir dir;
  test::WriteRgb(dir / "a.png", test::CrowdImage(64, 48, 16));
  const std::string image = (dir / "a.png").string(), w = " --weights " + Weights().string();
  CHECK(PredictProcess(dir, image).rc == 2);  // no weights
  CHECK(Predict(dir, w).rc == 2);             // nothing to count
  CHECK(Predict(dir, w + " --precision fp16 " + image).rc == 2);
  CHECK(Predict(dir, w + " --tile 20 " + image).rc == 2);
  CHECK(Predict(dir, w + " --alpha nan " + image).rc == 2);
  CHECK(Predict(dir, w + " --threads 1000000 " + image).rc == 2);
  CHECK(Predict(dir, w + " --tile 99999999999 " + image).rc == 2);
  CHECK(Predict(dir, w + " --video x.avi --every 0").rc == 2);
  CHECK(Predict(dir, w + " --csv c.csv " + image).rc == 2);  // --csv needs --video
  CHECK(PredictProcess(dir, "--help").rc == 0);
}

TEST_CASE("CollectImages reports missing paths and keeps explicit files of any extension") {
  TempDir dir;
  std::ofstream(dir / "x.data") << "x";
  std::vector<std::string> problems;
  const std::vector<std::string> found = CollectImages({(dir / "x.data").string(), (dir / "nope").string()}, &problems);
  CHECK(found.size() == 1);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("nope: no such file or folder") != std::string::npos);
}

}  // namespace
}  // namespace csr

namespace csr {
namespace {

TEST_CASE("--nwpu-submission writes 'id count' per test image of an NWPU-Crowd root, sorted by id") {
  TempDir dir;
  const std::string data = (dir / "nwpu").string(), sub = (dir / "sub.txt").string();
  REQUIRE(test::RunCaptured(dir, "make_synthetic",
                            "--like nwpu --out " + data + " --images 1 --test-images 2 --min-size 64 --max-size 96")
              .rc == 0);
  // Train 0001, val 0002-0003, test 0004-0005 (labels withheld).
  const Outcome o =
      Predict(dir, "--threads 2 --weights " + Weights().string() + " --nwpu-submission " + sub + " " + data);
  REQUIRE_MESSAGE(o.rc == 0, o.err);
  const std::vector<std::string> lines = Lines(test::Slurp(sub));
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].rfind("4 ", 0) == 0);
  CHECK(lines[1].rfind("5 ", 0) == 0);
  const std::vector<std::string> printed = Lines(o.out);
  REQUIRE(printed.size() == 2);
  // The same count as printed, with four decimals.
  char expect[64];
  std::snprintf(expect, sizeof expect, "4 %.4f", CountOf(printed[0]));
  CHECK(lines[0] == expect);
  CHECK(o.err.find("the benchmark's test set has 1,500") != std::string::npos);
  // An image that is not an NWPU id: one error, no file.
  const cv::Mat rgb = test::CrowdImage(64, 64, 2);
  test::WriteRgb(dir / "street.png", rgb);
  const Outcome bad = Predict(dir, "--weights " + Weights().string() + " --nwpu-submission " +
                                       (dir / "b.txt").string() + " " + (dir / "street.png").string());
  CHECK(bad.rc == 1);
  CHECK(bad.err.find("numeric ids") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "b.txt"));
}

}  // namespace
}  // namespace csr
