// predict on large inputs: tiled against whole-image inference on a large
// synthetic image, peak memory for a 3072 x 2304 image, and counts on real
// images against a PyTorch CSRNet. Minutes on a small CPU: labelled slow.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "deploy/predict.h"
#include "tests/test_skip.h"
#include "tests/train/predict_test_util.h"

extern char** environ;

namespace csr {
namespace {

using test::Lines;
using test::Slurp;
using test::TempDir;

// Shared weights for the file: He-initialised, original layout.
const fs::path& Weights() { return test::SharedRandomWeights(2); }

ModelSettings Settings(const fs::path& weights, int tile) {
  ModelSettings s;
  s.weights = weights.string();
  s.tile = tile;
  s.threads = 0;
  return s;
}

double CountOf(const std::string& line) { return std::stod(line.substr(line.find('\t') + 1)); }

TEST_CASE("Tiled inference equals whole-image inference on a large image") {
  // 1536 x 1152 in 512-px tiles: 3 x 3 tiles, interior ones cropped on all sides.
  const cv::Mat rgb = test::CrowdImage(1536, 1152, 21);
  const cv::Mat whole = Predictor(Settings(Weights(), 0)).Density(rgb);
  const cv::Mat tiled = Predictor(Settings(Weights(), 512)).Density(rgb);
  REQUIRE(whole.size() == tiled.size());
  double lo, hi;
  cv::minMaxLoc(cv::abs(whole), &lo, &hi);
  CHECK(cv::norm(whole, tiled, cv::NORM_INF) <= 1e-4 * hi);
  const double a = cv::sum(whole)[0], b = cv::sum(tiled)[0];
  MESSAGE("whole ", a, ", tiled ", b, ", relative difference ", std::abs(a - b) / std::abs(a));
  CHECK(std::abs(a - b) <= 1e-3 * std::abs(a));
}

// Runs `args` (argv[0] first) as a child process, stdout to `out`; returns
// the exit code and the child's peak resident memory in bytes.
int SpawnMeasured(const std::vector<std::string>& args, const fs::path& out, long* peak_bytes) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  struct rusage usage {};
  if (wait4(pid, &status, 0, &usage) != pid) return -1;
  *peak_bytes = usage.ru_maxrss * 1024L;  // Linux reports kilobytes
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_CASE("A 3072 x 2304 image counts within 2.5 GB of peak memory (fp32, default tiles)") {
  TempDir dir;
  const fs::path image = dir / "big.jpg";
  test::WriteRgb(image, test::CrowdImage(3072, 2304, 22));
  long peak = 0;
  const int rc =
      SpawnMeasured({test::Tool("predict"), "--weights", Weights().string(), image.string()}, dir / "out.txt", &peak);
  REQUIRE(rc == 0);
  const std::vector<std::string> lines = Lines(Slurp(dir / "out.txt"));
  REQUIRE(lines.size() == 1);
  CHECK(std::isfinite(CountOf(lines[0])));
  MESSAGE("peak resident memory: ", peak / (1024.0 * 1024.0), " MiB");
  CHECK(peak < 2500L * 1000 * 1000);
}

TEST_CASE("Counts on real images equal a PyTorch CSRNet's within 1e-4 in fp32" * doctest::test_suite("optional")) {
  const fs::path data = test::SharedData();
  CSR_SKIP_UNLESS(!data.empty() && fs::exists(data / "reference" / "csrnet_weights.h5"), test::kNeedShared,
                  "no ../shared/data");
  CSR_SKIP_UNLESS(test::HavePythonTorch(), test::kNeedPython,
                  "Debian's python3-torch/h5py/opencv not installed (scripts/deps.sh test)");
  TempDir dir;
  const fs::path a = data / "ShanghaiTech" / "part_A_final", b = data / "ShanghaiTech" / "part_B_final";
  const std::string images = (a / "test_data" / "images" / "IMG_34.jpg").string() + " " +
                             (a / "train_data" / "images" / "IMG_135.jpg").string() + " " +
                             (a / "train_data" / "images" / "IMG_40.jpg").string() + " " +  // grayscale
                             (b / "test_data" / "images" / "IMG_1.jpg").string();           // 1024 x 768
  const std::string weights = (data / "reference" / "csrnet_weights.h5").string();
  const fs::path ours = dir / "ours.txt", py = dir / "py.txt";
  REQUIRE(test::Run(test::Tool("predict") + " --weights " + weights + " " + images + " >" + ours.string()) == 0);
  REQUIRE(test::Run(test::Python() + " " CSR_SOURCE_DIR "/tools/csrnet_pytorch.py count --weights " + weights + " " +
                    images + " >" + py.string()) == 0);
  const std::vector<std::string> x = Lines(Slurp(ours)), y = Lines(Slurp(py));
  REQUIRE(x.size() == 4);
  REQUIRE(y.size() == 4);
  for (size_t i = 0; i < x.size(); ++i) {
    CHECK(x[i].substr(0, x[i].find('\t')) == y[i].substr(0, y[i].find('\t')));
    const double ours_count = CountOf(x[i]), theirs = CountOf(y[i]);
    CHECK_MESSAGE(std::abs(ours_count - theirs) <= 1e-4 * std::abs(theirs), x[i], " vs PyTorch ", theirs);
  }
}

TEST_CASE("A CSRNet-pytorch checkpoint converted by tools/convert_checkpoint.py counts as in PyTorch, both ways" *
          doctest::test_suite("optional")) {
  CSR_SKIP_UNLESS(test::HavePythonTorch(), test::kNeedPython,
                  "Debian's python3-torch/h5py/opencv not installed (scripts/deps.sh test)");
  TempDir dir;
  // A checkpoint as CSRNet-pytorch saves it, from nn.DataParallel ("module." keys),
  // and a broken one without the output layer's bias.
  std::ofstream(dir / "make.py")
      << "import sys, torch\n"
         "sys.path.insert(0, '" CSR_SOURCE_DIR
         "/tools')\n"
         "from csrnet_pytorch import CSRNet\n"
         "torch.manual_seed(3)\n"
         "m = CSRNet()\n"
         "for p in m.parameters():\n"
         "    torch.nn.init.kaiming_normal_(p) if p.dim() == 4 else torch.nn.init.normal_(p, 0, 0.01)\n"
         "sd = {'module.' + k: v for k, v in m.state_dict().items()}\n"
         "torch.save({'epoch': 7, 'arch': 'x', 'state_dict': sd, 'best_prec1': 70.5}, sys.argv[1])\n"
         "del sd['module.output_layer.bias']\n"
         "torch.save({'state_dict': sd}, sys.argv[2])\n";
  const std::string ck = (dir / "ck.pth.tar").string(), broken = (dir / "broken.pth.tar").string();
  REQUIRE(test::Run(test::Python() + " " + (dir / "make.py").string() + " " + ck + " " + broken) == 0);
  const std::string convert = test::Python() + " " CSR_SOURCE_DIR "/tools/convert_checkpoint.py ";
  const std::string h5 = (dir / "ck.h5").string(), back = (dir / "back.pth.tar").string();
  REQUIRE(test::Run(convert + ck + " " + h5, dir / "convert.log") == 0);
  REQUIRE(test::Run(convert + h5 + " " + back, dir / "convert.log") == 0);

  const fs::path image = dir / "img.png";
  test::WriteRgb(image, test::CrowdImage(200, 152, 31));
  const fs::path ours = dir / "ours.txt", a = dir / "a.txt", b = dir / "b.txt";
  REQUIRE(test::Run(test::Tool("predict") + " --weights " + h5 + " " + image.string() + " >" + ours.string()) == 0);
  const std::string count = test::Python() + " " CSR_SOURCE_DIR "/tools/csrnet_pytorch.py count --weights ";
  REQUIRE(test::Run(count + ck + " " + image.string() + " >" + a.string()) == 0);
  REQUIRE(test::Run(count + back + " " + image.string() + " >" + b.string()) == 0);
  const double x = CountOf(Lines(Slurp(ours)).at(0)), y = CountOf(Lines(Slurp(a)).at(0)),
               z = CountOf(Lines(Slurp(b)).at(0));
  CHECK(std::abs(x - y) <= 1e-4 * std::abs(y));
  CHECK(z == doctest::Approx(y).epsilon(1e-9));  // the round trip is lossless

  const fs::path log = dir / "broken.log";
  CHECK(test::Run(convert + broken + " " + (dir / "broken.h5").string(), log) == 1);
  CHECK(Slurp(log).find("missing tensor 'output_layer.bias'") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "broken.h5"));
}

}  // namespace
}  // namespace csr
