#include "deploy/predict.h"

#include <algorithm>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "common/base/error.h"
#include "common/base/fs.h"
#include "common/base/log.h"
#include "deploy/heatmap.h"
#include "deploy/predictor.h"

namespace csr {
namespace {

// Redirects the process's stderr to /dev/null while it lives: FFmpeg and
// GStreamer print their own diagnostics straight to fd 2 (seven lines for a
// file that is not a video), before the one line this tool prints itself.
class SilenceStderr {
 public:
  SilenceStderr() {
    std::fflush(stderr);
    saved_ = ::dup(STDERR_FILENO);
    const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (saved_ >= 0 && null >= 0) ::dup2(null, STDERR_FILENO);
    if (null >= 0) ::close(null);
  }
  ~SilenceStderr() {
    std::fflush(stderr);
    if (saved_ >= 0) {
      ::dup2(saved_, STDERR_FILENO);
      ::close(saved_);
    }
  }
  SilenceStderr(const SilenceStderr&) = delete;
  SilenceStderr& operator=(const SilenceStderr&) = delete;

 private:
  int saved_ = -1;
};

// Opens a video through FFmpeg, with OpenCV's and FFmpeg's logging silenced;
// our own error names the file instead. Only FFmpeg: OpenCV's other back ends
// (GStreamer, camera probes through libusb) are tried in turn on a file they
// cannot read, print their own lines and keep state they never free.
bool OpenQuietly(cv::VideoCapture& cap, const std::string& path) {
  const auto level = cv::utils::logging::getLogLevel();
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
  bool opened = false;
  {
    SilenceStderr quiet;
    opened = cap.open(path, cv::CAP_FFMPEG) && cap.isOpened();
  }
  cv::utils::logging::setLogLevel(level);
  return opened;
}

}  // namespace

int PredictVideo(const PredictOptions& o) {
  if (!fs::is_regular_file(o.video)) throw Error(o.video, "no such video file");
  std::string csv_path = o.csv;
  const std::string stem = fs::path(o.video).stem().string();
  if (csv_path.empty() && !o.out.empty()) csv_path = (fs::path(o.out) / (stem + "_counts.csv")).string();
  if (!o.out.empty()) CheckWritableDir(o.out);
  if (!csv_path.empty()) CheckWritableFile(csv_path);
  if (!o.annotate.empty()) CheckWritableFile(o.annotate);

  cv::VideoCapture cap;
  if (!OpenQuietly(cap, o.video)) {
    throw Error(o.video, "cannot open video (not a video, or a format OpenCV cannot read)");
  }
  const double fps = cap.get(cv::CAP_PROP_FPS);
  Predictor predictor(o.model);
  log::Info(o.video, ": every ", o.every, " frame(s) at ", fps > 0 ? FormatCount(fps) : std::string("unknown"),
            " fps; ", predictor.Describe());

  // OpenCV picks the container from the file name's extension, so the
  // temporary keeps it: ".name.tmp-PID.avi", renamed when complete.
  const fs::path annotate(o.annotate);
  const fs::path video_temp = annotate.parent_path() /
                              StrCat(".", annotate.stem().string(), ".tmp-", ::getpid(), annotate.extension().string());
  struct RemoveTemp {
    fs::path path;
    ~RemoveTemp() {
      std::error_code ec;
      if (!path.empty()) fs::remove(path, ec);
    }
  } cleanup;
  cv::VideoWriter writer;
  std::ostringstream csv;
  csv << "frame,time,count\n";
  if (csv_path.empty()) std::cout << "frame,time,count\n" << std::flush;
  int64_t frame = 0, counted = 0;
  cv::Mat bgr, rgb;
  for (; cap.grab(); ++frame) {
    if (frame % o.every != 0) continue;
    if (!cap.retrieve(bgr) || bgr.empty()) throw Error(o.video, StrCat("cannot decode frame ", frame));
    cv::cvtColor(bgr, rgb, bgr.channels() == 1 ? cv::COLOR_GRAY2RGB : cv::COLOR_BGR2RGB);
    const cv::Mat density = predictor.Density(rgb);
    const double count = FiniteCount(density, StrCat(o.video, " frame ", frame));
    const std::string time = fps > 0 ? FormatCount(static_cast<double>(frame) / fps) : std::string();
    const std::string line = StrCat(frame, ",", time, ",", FormatCount(count), "\n");
    csv << line;
    if (csv_path.empty()) std::cout << line << std::flush;
    if (!o.annotate.empty()) {
      if (!writer.isOpened()) {
        const double out_fps = fps > 0 ? std::max(1.0, fps / o.every) : 5.0;
        cleanup.path = video_temp;
        writer.open(video_temp.string(), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), out_fps, rgb.size());
        if (!writer.isOpened()) throw Error(o.annotate, "cannot write video (use an .avi name: MJPG in AVI)");
      }
      writer.write(RenderHeatmap(rgb, density, count, o.alpha, StrCat("frame ", frame)));
    }
    ++counted;
  }
  if (counted == 0) throw Error(o.video, "no frame could be read (empty or corrupt video)");
  if (writer.isOpened()) {
    writer.release();
    std::error_code ec;
    fs::rename(video_temp, annotate, ec);
    if (ec) throw Error(o.annotate, StrCat("cannot move the finished video into place: ", ec.message()));
    cleanup.path.clear();
  }
  if (!csv_path.empty()) WriteTextFileAtomic(csv_path, csv.str());
  log::Info(o.video, ": counted ", counted, " of ", frame, " frames",
            csv_path.empty() ? std::string() : " -> " + csv_path,
            o.annotate.empty() ? std::string() : ", " + o.annotate);
  return 0;
}

}  // namespace csr
