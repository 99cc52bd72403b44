// crop_shards benchmark: a synthetic dataset the size of ShanghaiTech Part A
// (300 train + 182 test images, sides drawn uniformly in 442..1024 px, so
// ~537,000 px per image on average like Part A) gets gt_gen density maps, then
// the crop_shards tool runs on it as a child process. Prints its wall time
// against the 20 s target on 2 cores, its own peak RSS against 1 GB, the MB/s
// it wrote, and what `dd ... conv=fdatasync` writes to the same folder; then
// the same set straight from the annotations in one command (--density
// annotations) next to gt_gen + crop_shards.
//
// Usage: crop_shards_bench [--threads 2] [--work DIR] [--compress L] [--keep]
// The inputs are in the page cache when crop_shards runs (they were just
// written); its outputs are fsync'ed, as in normal use.
#include <iomanip>
#include <iostream>

#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "common/base/cli.h"
#include "common/base/fs.h"
#include "common/shards/shards.h"
#include "preprocess/gt_gen.h"
#include "preprocess/synthetic.h"

namespace {

namespace fs = std::filesystem;
using bench::ChildResult;
using bench::Clock;
using bench::DdMegabytesPerSecond;
using bench::RunChild;
using bench::Seconds;

struct Options {
  int threads = 2;    // crop_shards --threads
  std::string work;   // working folder (default: a fresh one under the system temp folder)
  int compress = 0;   // crop_shards --compress
  bool keep = false;  // keep the working folder
  int train = 300;    // train images (Part A: 300)
  int test = 182;     // test images (Part A: 182)
};

}  // namespace

int main(int argc, char** argv) {
  return csr::RunTool("crop_shards_bench", [&] {
    Options o;
    csr::ArgParser p("crop_shards_bench", "[options]", "Times crop_shards on a Part-A-sized synthetic dataset.");
    p.Add("threads", &o.threads, "crop_shards --threads");
    p.Add("work", &o.work, "working folder (default: fresh, under the temp folder, removed afterwards)");
    p.Add("compress", &o.compress, "crop_shards --compress");
    p.Add("keep", &o.keep, "keep the working folder");
    p.Add("train", &o.train, "train images");
    p.Add("test", &o.test, "test images");
    if (!p.Parse(argc, argv)) return 0;
    const fs::path work = bench::WorkFolder("crop_shards_bench", o.work);
    const fs::path tool = bench::SiblingTool("crop_shards");

    auto t = Clock::now();
    csr::SyntheticOptions syn;
    syn.out = (work / "data").string();
    syn.train_images = o.train;
    syn.test_images = o.test;
    syn.min_size = 442;  // uniform sides 442..1024: mean area 733^2 = 537,289 px, as Part A
    syn.max_size = 1024;
    syn.min_heads = 33;
    syn.max_heads = 3138;
    syn.overwrite = true;
    const csr::SyntheticSummary made = csr::GenerateSynthetic(syn);
    std::cout << "dataset: " << made.images << " images (" << made.train_images << " train, " << made.test_images
              << " test), " << made.heads << " heads, made in " << std::fixed << std::setprecision(1) << Seconds(t)
              << " s\n";
    t = Clock::now();
    csr::GtGenOptions gt;
    gt.root = syn.out;
    gt.quiet = true;
    const csr::GtGenReport g = csr::GenerateGroundTruth(gt);
    const double gt_seconds = Seconds(t);
    std::cout << "gt_gen: " << g.written << " density maps, " << g.pixels / 1e6 << " Mpixel (" << std::setprecision(0)
              << g.pixels / double(g.images) << " px per image), " << std::setprecision(1) << Seconds(t) << " s\n";
    sync();  // crop_shards' fsyncs should not pay for the generator's dirty pages

    const fs::path out = work / "shards";
    const ChildResult r =
        RunChild({tool.string(), "--root", syn.out, "--part", "A", "--out", out.string(), "--threads",
                  std::to_string(o.threads), "--compress", std::to_string(o.compress), "--overwrite", "--quiet"});
    if (r.status != 0) throw csr::Error(tool.string(), csr::StrCat("exited with status ", r.status));
    const auto manifest = nlohmann::json::parse(csr::ReadTextFile(out / csr::kManifestName));
    const double mb = manifest["totals"]["bytes"].get<double>() / 1e6;
    const double dd = DdMegabytesPerSecond(work);
    sync();
    // The same set straight from the annotations: one command, no maps read.
    const ChildResult one =
        RunChild({tool.string(), "--root", syn.out, "--part", "A", "--out", (work / "shards_annotations").string(),
                  "--threads", std::to_string(o.threads), "--compress", std::to_string(o.compress), "--density",
                  "annotations", "--overwrite", "--quiet"});
    if (one.status != 0) throw csr::Error(tool.string(), csr::StrCat("exited with status ", one.status));

    std::cout << std::setprecision(2);
    std::cout << "crop_shards --threads " << o.threads << " --compress " << o.compress << ": "
              << manifest["splits"]["train"]["records"] << " train + " << manifest["splits"]["test"]["records"]
              << " test records, " << manifest["totals"]["shards"] << " shards, " << mb << " MB\n";
    std::cout << "  time      " << r.seconds << " s    target 20 s     ratio " << r.seconds / 20.0 << "\n";
    std::cout << "  peak RSS  " << r.max_rss_mb << " MB   target 1024 MB  ratio " << r.max_rss_mb / 1024.0 << "\n";
    std::cout << "  written   " << mb / r.seconds << " MB/s  dd (1 GiB, fdatasync, same folder) " << dd
              << " MB/s  ratio " << (mb / r.seconds) / dd << "\n";
    const double two = gt_seconds + r.seconds;
    std::cout << "annotations -> shards in one command (--density annotations): " << one.seconds << " s, peak RSS "
              << one.max_rss_mb << " MB\n"
              << "  vs gt_gen + crop_shards " << two << " s (" << gt_seconds << " + " << r.seconds << ")  ratio "
              << one.seconds / two << "\n";
    bench::Finish(work, o.keep);
    return 0;
  });
}
