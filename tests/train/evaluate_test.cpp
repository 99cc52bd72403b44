// evaluate: shard sets and dataset folders, CSV/JSON/HTML outputs, and bad inputs.
#include "train/evaluate.h"

#include <doctest/doctest.h>

#include <cmath>
#include <set>
#include <sstream>

#include "common/base/error.h"
#include "common/eval/metrics.h"
#include "common/shards/shards.h"
#include "tests/train/predict_test_util.h"

namespace csr {
namespace {

using test::Lines;
using test::Slurp;
using test::TempDir;

using Outcome = test::ToolOutcome;

// evaluate's entry point in this process (test::RunCapturedHere); the binary
// itself runs in the usage test below and in the demo.
Outcome Evaluate(const TempDir& dir, const std::string& args) {
  return test::RunCapturedHere(dir, RunEvaluate, "evaluate", "--threads 2 " + args);
}
Outcome EvaluateProcess(const TempDir& dir, const std::string& args) {
  return test::RunCaptured(dir, "evaluate", "--threads 2 " + args);
}

std::vector<std::string> Split(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream s(line);
  std::string field;
  while (std::getline(s, field, ',')) out.push_back(field);
  return out;
}

// Shared weights (the run folder holds a training log for the report).
const fs::path& Weights() {
  static TempDir dir;
  static const fs::path path = [] {
    const fs::path p = dir / "run" / "model_best.h5";
    fs::create_directories(p.parent_path());
    test::WriteRandomWeights(p, 3);
    std::ofstream(dir / "run" / "train_log.jsonl") << "{\"epoch\":1,\"train_loss\":9.5,\"mae\":40,\"rmse\":52}\n"
                                                      "{\"epoch\":2,\"train_loss\":7.25,\"mae\":31,\"rmse\":44}\n";
    return p;
  }();
  return path;
}
std::string W() { return "--weights " + Weights().string() + " "; }

TEST_CASE("evaluate on a shard set writes per-image rows and a summary that agree with the predictions") {
  TempDir dir;
  test::WriteTestShards(dir / "shards", 4);
  const Outcome o = Evaluate(dir, W() + (dir / "shards").string() + " --csv " + (dir / "e.csv").string() + " --json " +
                                      (dir / "e.json").string());
  REQUIRE_MESSAGE(o.rc == 0, o.err);
  const std::vector<std::string> rows = Lines(Slurp(dir / "e.csv"));
  REQUIRE(rows.size() == 5);
  CHECK(rows[0] == "image,width,height,count,predicted,error,abs_error,density_sum,game0,game1,game2,game3,psnr,ssim");

  // Every row against the records and a direct prediction.
  const ShardSet set(dir / "shards");
  ModelSettings settings;
  settings.weights = Weights().string();
  settings.threads = 2;
  Predictor predictor(settings);
  std::vector<ImageMetrics> expected;
  for (int i = 0; i < 4; ++i) {
    const ShardRecord r = set.Read("test", i);
    const std::vector<std::string> f = Split(rows[i + 1]);
    REQUIRE(f.size() == 14);
    CHECK(f[0] == r.source);
    CHECK(std::stoi(f[1]) == r.image.cols);
    CHECK(std::stoi(f[3]) == r.count);
    const cv::Mat density = predictor.Density(r.image);
    const ImageMetrics m = MeasureImage(density, r.target, double(r.count));
    expected.push_back(m);
    CHECK(std::stod(f[4]) == doctest::Approx(m.predicted).epsilon(1e-6));
    CHECK(std::stod(f[5]) == doctest::Approx(m.predicted - r.count).epsilon(1e-6));
    CHECK(std::stod(f[7]) == doctest::Approx(cv::sum(r.target)[0]).epsilon(1e-6));
    CHECK(std::stod(f[11]) == doctest::Approx(m.game[3]).epsilon(1e-6));
    CHECK(std::stod(f[13]) == doctest::Approx(m.ssim).epsilon(1e-5));
  }
  const MetricsSummary s = Summarize(expected);
  const nlohmann::json j = nlohmann::json::parse(Slurp(dir / "e.json"));
  CHECK(j["images"] == 4);
  CHECK(j["failed"] == 0);
  CHECK(j["mae"].get<double>() == doctest::Approx(s.mae));
  CHECK(j["rmse"].get<double>() == doctest::Approx(s.rmse));
  CHECK(j["nae"].get<double>() == doctest::Approx(s.nae));
  REQUIRE(j["game"].size() == 4);
  CHECK(j["game"][2].get<double>() == doctest::Approx(s.game[2]));
  CHECK(j["psnr"].get<double>() == doctest::Approx(s.psnr));
  CHECK(j["ssim"].get<double>() == doctest::Approx(s.ssim));
  CHECK(j["weights"] == Weights().string());
  // The summary is printed too.
  CHECK(o.out.find("MAE") != std::string::npos);
  CHECK(o.out.find("GAME(3)") != std::string::npos);
}

TEST_CASE("The shard set's test/ subfolder names the same test set") {
  TempDir dir;
  test::WriteTestShards(dir / "shards", 2, /*with_train=*/true);
  const Outcome a = Evaluate(dir, W() + (dir / "shards").string() + " --csv " + (dir / "a.csv").string());
  const Outcome b = Evaluate(dir, W() + (dir / "shards" / "test").string() + "/ --csv " + (dir / "b.csv").string());
  REQUIRE(a.rc == 0);
  REQUIRE(b.rc == 0);
  CHECK(Slurp(dir / "a.csv") == Slurp(dir / "b.csv"));
  CHECK(Lines(Slurp(dir / "a.csv")).size() == 3);
  // A training split holds crops, not whole images: refused per record.
  const Outcome c = Evaluate(dir, W() + (dir / "shards" / "train").string());
  CHECK(c.rc == 1);
  CHECK(c.err.find("is a crop, not a whole image") != std::string::npos);
}

TEST_CASE("evaluate --root reads images, .mat counts and gt_gen density maps") {
  TempDir dir;
  const std::vector<int> counts = test::WriteTinyDataset(dir / "ds", 3);
  const Outcome o = Evaluate(
      dir, W() + "--root " + (dir / "ds").string() + " --part A --split test --csv " + (dir / "r.csv").string());
  REQUIRE_MESSAGE(o.rc == 0, o.err);
  const std::vector<std::string> rows = Lines(Slurp(dir / "r.csv"));
  REQUIRE(rows.size() == 4);
  for (int i = 0; i < 3; ++i) {
    const std::vector<std::string> f = Split(rows[i + 1]);
    CHECK(f[0] == "IMG_" + std::to_string(i + 1) + ".jpg");
    CHECK(std::stoi(f[3]) == counts[i]);
    // Heads sit at least one pixel inside, so only those in the partial
    // 8-px border are outside the 1/8 map: its sum is at most the count.
    CHECK(std::stod(f[7]) <= counts[i] + 1e-4);
    CHECK(std::stod(f[7]) > 0.5 * counts[i]);
  }
}

TEST_CASE("The HTML report holds the summary, plots, worst images and the training curves beside the weights") {
  TempDir dir;
  test::WriteTestShards(dir / "shards", 3);
  const fs::path report = dir / "out" / "report.html";
  const Outcome o = Evaluate(dir, W() + (dir / "shards").string() + " --report " + report.string() + " --worst 2");
  REQUIRE_MESSAGE(o.rc == 0, o.err);
  const std::string html = Slurp(report);
  CHECK(html.find("id=\"summary\"") != std::string::npos);
  CHECK(html.find("id=\"scatter\"") != std::string::npos);
  CHECK(html.find("id=\"histogram\"") != std::string::npos);
  CHECK(html.find("id=\"loss\"") != std::string::npos);  // from run/train_log.jsonl
  size_t images = 0;
  for (size_t p = html.find("<img "); p != std::string::npos; p = html.find("<img ", p + 1)) ++images;
  CHECK(images == 2);
  CHECK(html.find("model_best.h5") != std::string::npos);
}

// ---- Bad input ----------------------------------------------------------------

TEST_CASE("A corrupt image is reported, the others scored, and the exit code is 1") {
  TempDir dir;
  test::WriteTinyDataset(dir / "ds", 3);
  const fs::path bad = dir / "ds" / "part_A_final" / "test_data" / "images" / "IMG_2.jpg";
  const std::string jpeg = Slurp(bad);
  std::ofstream(bad, std::ios::binary | std::ios::trunc) << jpeg.substr(0, jpeg.size() / 3);
  const Outcome o = Evaluate(dir, W() + "--root " + (dir / "ds").string() + " --csv " + (dir / "r.csv").string() +
                                      " --json " + (dir / "r.json").string());
  CHECK(o.rc == 1);
  CHECK(o.err.find("IMG_2.jpg: truncated JPEG") != std::string::npos);
  const std::vector<std::string> rows = Lines(Slurp(dir / "r.csv"));
  REQUIRE(rows.size() == 3);
  CHECK(rows[1].rfind("IMG_1.jpg,", 0) == 0);
  CHECK(rows[2].rfind("IMG_3.jpg,", 0) == 0);
  const nlohmann::json j = nlohmann::json::parse(Slurp(dir / "r.json"));
  CHECK(j["images"] == 2);
  CHECK(j["failed"] == 1);
}

TEST_CASE("A missing density map: the image is scored against its points, PSNR/SSIM over the images with a map") {
  TempDir dir;
  test::WriteTinyDataset(dir / "ds", 2);
  fs::remove(dir / "ds" / "part_A_final" / "test_data" / "ground_truth" / "IMG_1.h5");
  const Outcome o = Evaluate(dir, W() + "--root " + (dir / "ds").string() + " --csv " + (dir / "r.csv").string() +
                                      " --json " + (dir / "r.json").string());
  REQUIRE_MESSAGE(o.rc == 0, o.err);
  CHECK(o.out.find("(1 images with a map)") != std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(Slurp(dir / "r.json"));
  CHECK(j["images"] == 2);
  CHECK(j["map_images"] == 1);
  // IMG_1's row has no PSNR and SSIM (empty fields), IMG_2's has both.
  const std::vector<std::string> rows = Lines(Slurp(dir / "r.csv"));
  REQUIRE(rows.size() == 3);
  CHECK(rows[1].rfind("IMG_1.jpg,", 0) == 0);
  CHECK(rows[1].substr(rows[1].size() - 2) == ",,");
  CHECK(rows[2].substr(rows[2].size() - 2) != ",,");
  // No map at all: PSNR and SSIM are null in the JSON, "n/a" in the table.
  fs::remove(dir / "ds" / "part_A_final" / "test_data" / "ground_truth" / "IMG_2.h5");
  const Outcome none = Evaluate(dir, W() + "--root " + (dir / "ds").string() + " --json " + (dir / "r.json").string());
  REQUIRE_MESSAGE(none.rc == 0, none.err);
  CHECK(none.out.find("n/a: no ground-truth density map") != std::string::npos);
  const nlohmann::json k = nlohmann::json::parse(Slurp(dir / "r.json"));
  CHECK(k["psnr"].is_null());
  CHECK(k["map_images"] == 0);
  CHECK(k["mae"].get<double>() >= 0);
}

TEST_CASE("When every image fails there is no table, a clear error and exit code 1") {
  TempDir dir;
  test::WriteTinyDataset(dir / "ds", 2);
  for (const char* name : {"IMG_1.jpg", "IMG_2.jpg"}) {
    std::ofstream(dir / "ds" / "part_A_final" / "test_data" / "images" / name, std::ios::trunc) << "not a JPEG";
  }
  const Outcome o = Evaluate(dir, W() + "--root " + (dir / "ds").string() + " --json " + (dir / "r.json").string());
  CHECK(o.rc == 1);
  CHECK(o.out.empty());  // no summary table of zeros
  CHECK(o.err.find("MAE") == std::string::npos);
  CHECK(o.err.find("none of the 2 image(s) could be evaluated") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "r.json"));
}

TEST_CASE("NaN weights are refused before any image, naming the file and the tensor") {
  TempDir dir;
  test::WriteTestShards(dir / "shards", 1);
  test::WriteRandomWeights(dir / "nan.h5", 3, "", "", "output_layer.weight");
  const Outcome o = Evaluate(dir, "--weights " + (dir / "nan.h5").string() + " " + (dir / "shards").string());
  CHECK(o.rc == 1);
  CHECK(o.out.empty());
  CHECK(Lines(o.err).size() == 1);
  CHECK(o.err.find("nan.h5: tensor 'output_layer.weight' holds NaN or infinite values") != std::string::npos);
}

TEST_CASE("A folder that is not a shard set, or a missing split, is a clear error") {
  TempDir dir;
  fs::create_directories(dir / "plain");
  Outcome o = Evaluate(dir, W() + (dir / "plain").string());
  CHECK(o.rc == 1);
  CHECK(o.err.find("not a shard set") != std::string::npos);
  o = Evaluate(dir, W() + (dir / "nowhere").string());
  CHECK(o.rc == 1);
  CHECK(o.err.find("no such shard set folder") != std::string::npos);
  test::WriteTestShards(dir / "shards", 1);
  o = Evaluate(dir, W() + (dir / "shards").string() + " --split val");
  CHECK(o.rc == 1);
  CHECK(o.err.find("has no 'val' split") != std::string::npos);
}

TEST_CASE("Weights of another architecture are a one-line error naming the tensor") {
  TempDir dir;
  test::WriteTestShards(dir / "shards", 1);
  test::WriteRandomWeights(dir / "other.h5", 1, "", "frontend.0.weight");
  const Outcome o = Evaluate(dir, "--weights " + (dir / "other.h5").string() + " " + (dir / "shards").string());
  CHECK(o.rc == 1);
  CHECK(o.err.find("tensor 'frontend.0.weight' has shape [128,3,3,3]") != std::string::npos);
  CHECK(Lines(o.err).size() == 1);
}

TEST_CASE("An output that cannot be written fails before any image is scored") {
  TempDir dir;
  test::WriteTestShards(dir / "shards", 1);
  std::ofstream(dir / "file") << "x";
  const Outcome o = Evaluate(dir, W() + (dir / "shards").string() + " --json " + (dir / "file" / "e.json").string());
  CHECK(o.rc == 1);
  CHECK(o.err.find("file") != std::string::npos);
  CHECK(o.out.empty());
}

TEST_CASE("Bad options are usage errors (exit 2)") {
  TempDir dir;
  test::WriteTestShards(dir / "shards", 1);
  const std::string shards = (dir / "shards").string();
  CHECK(EvaluateProcess(dir, shards).rc == 2);                       // no weights
  CHECK(Evaluate(dir, W()).rc == 2);                                 // no test set
  CHECK(Evaluate(dir, W() + shards + " --root " + shards).rc == 2);  // both
  CHECK(Evaluate(dir, W() + "--root x --split val").rc == 2);
  CHECK(Evaluate(dir, W() + shards + " --precision int8").rc == 2);
  CHECK(EvaluateProcess(dir, "--help").rc == 0);
}

}  // namespace
}  // namespace csr

namespace csr {
namespace {

TEST_CASE("NWPU-Crowd and JHU-Crowd++ shard sets are also scored by the groups their benchmarks report") {
  for (const std::string like : {"nwpu", "jhu"}) {
    CAPTURE(like);
    TempDir dir;
    const std::string data = (dir / "data").string(), shards = (dir / "shards").string();
    REQUIRE(
        test::RunCaptured(dir, "make_synthetic",
                          "--like " + like + " --out " + data +
                              " --images 2 --test-images 3 --min-size 64 --max-size 96 --min-heads 1 --max-heads 60")
            .rc == 0);
    const test::ToolOutcome c = test::RunCaptured(
        dir, "crop_shards", "--dataset " + like + " --root " + data + " --out " + shards + " --quiet --min-side 0");
    REQUIRE_MESSAGE(c.rc == 0, c.err);
    const Outcome o = Evaluate(dir, W() + shards + " --json " + (dir / "e.json").string());
    REQUIRE_MESSAGE(o.rc == 0, o.err);
    const nlohmann::json j = nlohmann::json::parse(Slurp(dir / "e.json"));
    REQUIRE(j.contains("groups"));
    std::set<std::string> attributes;
    int64_t images = 0;
    for (const auto& g : j["groups"]) {
      attributes.insert(g["attribute"].get<std::string>());
      if (g["attribute"] == (like == "nwpu" ? "scene level" : "count range")) images += g["images"].get<int64_t>();
    }
    // Every image is in exactly one group of each attribute.
    CHECK(images == 3);
    if (like == "nwpu") {
      CHECK(attributes == std::set<std::string>{"illumination", "scene level"});
    } else {
      CHECK(attributes == std::set<std::string>{"count range", "weather"});
    }
    CHECK(o.out.find("by group") != std::string::npos);
  }
}

TEST_CASE("evaluate --root --dataset scores a layout straight from its annotations, as its shard set scores") {
  TempDir dir;
  const std::string data = (dir / "data").string(), shards = (dir / "shards").string();
  REQUIRE(test::RunCaptured(dir, "make_synthetic",
                            "--like qnrf --out " + data +
                                " --images 1 --test-images 2 --min-size 64 --max-size 96 --min-heads 1 --max-heads 40")
              .rc == 0);
  // UCF-QNRF's default rescaling (shorter side >= 512) in both routes.
  const test::ToolOutcome c =
      test::RunCaptured(dir, "crop_shards", "--dataset qnrf --root " + data + " --out " + shards + " --quiet");
  REQUIRE_MESSAGE(c.rc == 0, c.err);
  const Outcome a = Evaluate(dir, W() + shards + " --csv " + (dir / "a.csv").string());
  REQUIRE_MESSAGE(a.rc == 0, a.err);
  const Outcome b = Evaluate(dir, W() + "--root " + data + " --dataset qnrf --csv " + (dir / "b.csv").string());
  REQUIRE_MESSAGE(b.rc == 0, b.err);
  CHECK(b.err.find("rescaled min_side=512") != std::string::npos);
  // Same images, same counts, same predictions: the first six columns
  // (name, size, count, predicted, error, |error|) agree.
  const std::vector<std::string> x = Lines(Slurp(dir / "a.csv")), y = Lines(Slurp(dir / "b.csv"));
  REQUIRE(x.size() == 3);
  REQUIRE(y.size() == 3);
  for (size_t i = 1; i < x.size(); ++i) {
    auto head = [](const std::string& row) {
      size_t at = 0;
      for (int k = 0; k < 6; ++k) at = row.find(',', at) + 1;
      return row.substr(0, at);
    };
    CHECK(head(x[i]) == head(y[i]));
  }
  // NWPU-Crowd: val is labelled and reported by its groups; test is not.
  const std::string nwpu = (dir / "nwpu").string();
  REQUIRE(test::RunCaptured(dir, "make_synthetic",
                            "--like nwpu --out " + nwpu +
                                " --images 1 --test-images 2 --min-size 64 --max-size 96 --min-heads 1 --max-heads 40")
              .rc == 0);
  const Outcome v = Evaluate(dir, W() + "--root " + nwpu + " --dataset nwpu --split val");
  REQUIRE_MESSAGE(v.rc == 0, v.err);
  CHECK(v.out.find("scene level") != std::string::npos);
  const Outcome t = Evaluate(dir, W() + "--root " + nwpu + " --dataset nwpu --split test");
  CHECK(t.rc == 2);
  CHECK(t.err.find("no labels") != std::string::npos);
}

}  // namespace
}  // namespace csr
