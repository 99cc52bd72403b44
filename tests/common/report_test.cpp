#include "common/eval/report.h"

#include <fstream>
#include <regex>
#include <sstream>

#include <doctest/doctest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "tests/test_skip.h"
#include "tests/test_util.h"

namespace csr {
namespace {

std::string Png(int w, int h, int seed) {
  cv::Mat img(h, w, CV_8UC3);
  cv::randu(img, cv::Scalar(0, 0, 0), cv::Scalar(255, 255, 255));
  cv::circle(img, {w / 2, h / 2}, std::min(w, h) / 3, cv::Scalar(40 * seed % 255, 80, 200), cv::FILLED);
  std::vector<uchar> buf;
  cv::imencode(".png", img, buf);
  return std::string(buf.begin(), buf.end());
}

ReportData SampleReport(int images) {
  ReportData d;
  d.title = "Evaluation of <model_best.h5>";
  d.context = {{"weights", "runs/x/model_best.h5"}, {"data", "shards/test"}};
  d.summary = {{"MAE", "12.3"}, {"RMSE", "20.1"}, {"GAME(3)", "30.2"}};
  for (int i = 0; i < images; ++i) {
    d.names.push_back("IMG_" + std::to_string(i + 1) + ".jpg");
    d.truth.push_back(50.0 + 17.0 * i);
    d.predicted.push_back(50.0 + 17.0 * i + ((i * 37) % 23 - 11));
  }
  for (int i = 0; i < std::min(10, images); ++i) {
    d.worst.push_back({"IMG_" + std::to_string(i + 1) + ".jpg", d.truth[i], d.predicted[i], Png(160, 120, i)});
  }
  Series loss{"train loss", {}}, mae{"MAE", {}}, rmse{"RMSE", {}};
  for (int e = 1; e <= 20; ++e) {
    loss.points.emplace_back(e, 100.0 / e);
    mae.points.emplace_back(e, 80.0 / std::sqrt(e));
    rmse.points.emplace_back(e, 120.0 / std::sqrt(e));
  }
  d.loss_curves = {loss};
  d.error_curves = {mae, rmse};
  return d;
}

int Occurrences(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

TEST_CASE("Base64 encodes the RFC 4648 test vectors") {
  CHECK(Base64("") == "");
  CHECK(Base64("f") == "Zg==");
  CHECK(Base64("fo") == "Zm8=");
  CHECK(Base64("foo") == "Zm9v");
  CHECK(Base64("foob") == "Zm9vYg==");
  CHECK(Base64("foobar") == "Zm9vYmFy");
  CHECK(Base64(std::string("\xff\x00\x80", 3)) == "/wCA");
}

TEST_CASE("HtmlEscape escapes markup characters") {
  CHECK(HtmlEscape("<a href=\"x\">&'</a>") == "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
}

TEST_CASE("NiceTicks cover the range with round steps") {
  const std::vector<double> t = NiceTicks(0, 97, 5);
  REQUIRE(t.size() >= 2);
  CHECK(t.front() == 0.0);
  CHECK(t[1] - t[0] == doctest::Approx(20.0));
  CHECK(t.back() <= 97.0);
  const std::vector<double> n = NiceTicks(-3.2, 4.1, 6);
  CHECK(std::find(n.begin(), n.end(), 0.0) != n.end());
}

TEST_CASE("Line charts of whole epochs have no fractional epoch ticks") {
  const std::string svg = SvgLines("c", {{"loss", {{1, 5.0}, {2, 4.0}}}}, "epoch", "loss");
  CHECK(svg.find(">1.5<") == std::string::npos);
  CHECK(svg.find(">1.2<") == std::string::npos);
  CHECK(svg.find(">2<") != std::string::npos);
  const std::string frac = SvgLines("d", {{"x", {{0.0, 1.0}, {0.5, 2.0}, {1.0, 3.0}}}}, "t", "y");
  CHECK(frac.find(">0.4<") != std::string::npos);
}

TEST_CASE("The report holds every section, escapes names and references nothing outside the page") {
  const std::string html = RenderReportHtml(SampleReport(40));
  CHECK(html.find("<!DOCTYPE html>") == 0);
  for (const char* id : {"id=\"context\"", "id=\"summary\"", "id=\"scatter\"", "id=\"histogram\"", "id=\"worst\"",
                         "id=\"loss\"", "id=\"validation\""}) {
    CHECK_MESSAGE(html.find(id) != std::string::npos, id);
  }
  CHECK(Occurrences(html, "<circle") >= 40);
  CHECK(Occurrences(html, "<img ") == 10);
  CHECK(Occurrences(html, "data:image/png;base64,") == 10);
  CHECK(html.find("&lt;model_best.h5&gt;") != std::string::npos);
  CHECK(html.find("<model_best.h5>") == std::string::npos);
  // Self-contained: no external scripts, styles, fonts or images.
  CHECK(html.find("src=\"http") == std::string::npos);
  CHECK(html.find("<link") == std::string::npos);
  CHECK(html.find("@import") == std::string::npos);
  CHECK(html.find("url(") == std::string::npos);
  CHECK(html.find("<script") == std::string::npos);
}

TEST_CASE("The report leaves out the training curves when there is no log") {
  ReportData d = SampleReport(3);
  d.loss_curves.clear();
  d.error_curves.clear();
  const std::string html = RenderReportHtml(d);
  CHECK(html.find("Training curves") == std::string::npos);
  CHECK(Occurrences(html, "<img ") == 3);
}

TEST_CASE("The report renders with a single image and with none") {
  CHECK(RenderReportHtml(SampleReport(1)).find("id=\"scatter\"") != std::string::npos);
  const std::string empty = RenderReportHtml(SampleReport(0));
  CHECK(empty.find("No images.") != std::string::npos);
  CHECK(empty.find("nan") == std::string::npos);
}

TEST_CASE("ReadTrainingLog keeps the last complete entry per epoch and skips junk") {
  test::TempDir dir;
  const fs::path log = dir / "train_log.jsonl";
  std::ofstream(log) << "{\"epoch\":1,\"train_loss\":5.0,\"mae\":40.0,\"rmse\":50.0}\n"
                     << "{\"epoch\":2,\"train_loss\":4.0,\"mae\":null,\"partial\":true}\n"
                     << "not json\n"
                     << "{\"epoch\":2,\"train_loss\":3.0,\"mae\":30.0,\"rmse\":35.0}\n"
                     << "{\"epoch\":3,\"train_loss\":2.0,\"mae\":null,\"rmse\":null}\n";
  std::vector<Series> loss, errors;
  ReadTrainingLog(log.string(), &loss, &errors);
  REQUIRE(loss.size() == 1);
  REQUIRE(loss[0].points.size() == 3);
  CHECK(loss[0].points[1].second == 3.0);
  REQUIRE(errors.size() == 2);
  CHECK(errors[0].name == "MAE");
  CHECK(errors[0].points.size() == 2);
  CHECK_THROWS_AS(ReadTrainingLog((dir / "missing.jsonl").string(), &loss, &errors), Error);
}

TEST_CASE("WriteReport fails with a clear error in a folder that cannot be written") {
  test::TempDir dir;
  std::ofstream(dir / "file") << "x";
  CHECK_THROWS_AS(WriteReport((dir / "file" / "report.html").string(), SampleReport(2)), Error);
}

// ---- Rendering in headless Chromium ---------------------------------------

std::string ChromiumCommand(const fs::path& profile) {
  return "chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
         "--disable-background-networking --disable-component-update --disable-sync --hide-scrollbars "
         "--user-data-dir=" +
         profile.string() + " --enable-logging=stderr --v=0";
}

bool HaveChromium() { return test::Run("command -v chromium >/dev/null 2>&1") == 0; }

// Lines Chromium logs for the page's console (errors, failed loads).
std::vector<std::string> ConsoleLines(const fs::path& log) {
  std::vector<std::string> lines;
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(":CONSOLE") != std::string::npos) lines.push_back(line);
  }
  return lines;
}

TEST_CASE("The report renders in headless Chromium with every section and no console errors" *
          doctest::test_suite("optional")) {
  CSR_SKIP_UNLESS(HaveChromium(), test::kNeedChromium, "chromium not installed (scripts/deps.sh test installs it)");
  test::TempDir dir;
  const fs::path page = dir / "report.html";
  WriteReport(page.string(), SampleReport(40));
  const std::string base = ChromiumCommand(dir / "profile") + " ";
  REQUIRE(test::Run(base + "--dump-dom file://" + page.string() + " >" + (dir / "dom.html").string() + " 2>" +
                    (dir / "dom.log").string()) == 0);
  const std::string dom = ReadTextFile(dir / "dom.html");
  CHECK(dom.find("id=\"summary\"") != std::string::npos);
  CHECK(dom.find("id=\"scatter\"") != std::string::npos);
  CHECK(dom.find("id=\"histogram\"") != std::string::npos);
  CHECK(dom.find("id=\"loss\"") != std::string::npos);
  CHECK(Occurrences(dom, "<img ") == 10);
  const std::vector<std::string> console = ConsoleLines(dir / "dom.log");
  CHECK_MESSAGE(console.empty(), (console.empty() ? "" : console[0]));

  // The screenshot is a real page: not one flat colour.
  const fs::path shot = dir / "shot.png";
  REQUIRE(test::Run(base + "--window-size=1200,2600 --screenshot=" + shot.string() + " file://" + page.string(),
                    dir / "shot.log") == 0);
  const cv::Mat img = cv::imread(shot.string());
  REQUIRE_FALSE(img.empty());
  cv::Scalar mean, stddev;
  cv::meanStdDev(img, mean, stddev);
  CHECK(stddev[0] > 10.0);
  if (const char* keep = std::getenv("CSR_KEEP_REPORT_SHOT"))
    fs::copy_file(shot, keep, fs::copy_options::overwrite_existing);
}

TEST_CASE("The Chromium check notices an image that does not decode" * doctest::test_suite("optional")) {
  CSR_SKIP_UNLESS(HaveChromium(), test::kNeedChromium, "chromium not installed (scripts/deps.sh test installs it)");
  test::TempDir dir;
  ReportData d = SampleReport(3);
  d.worst[1].png = "not a png";
  const fs::path page = dir / "report.html";
  WriteReport(page.string(), d);
  REQUIRE(test::Run(ChromiumCommand(dir / "profile") + " --dump-dom file://" + page.string(), dir / "dom.log") == 0);
  const std::vector<std::string> console = ConsoleLines(dir / "dom.log");
  REQUIRE(console.size() == 1);
  CHECK(console[0].find("image failed to decode: IMG_2.jpg") != std::string::npos);
}

}  // namespace
}  // namespace csr
