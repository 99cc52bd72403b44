// The trainer tool: options, configs, run folder outputs and bad input.
#include "tests/train/train_test_util.h"

#include <fstream>

#include "common/base/fs.h"
#include "common/io/h5.h"
#include "tests/test_skip.h"
#include "tests/test_util.h"
#include "train/trainer.h"

#include <torch/cuda.h>

namespace csr {
namespace {

using test::TempDir;

// Runs the trainer binary; its stderr+stdout land in `log`.
int Trainer(const std::string& args, const fs::path& log) { return test::Run(test::Tool("trainer") + " " + args, log); }
// The same in this process, for runs that stop at an error before training
// (test::RunInProcess: no LibTorch start-up per case).
int TrainerHere(const std::string& args, const fs::path& log) {
  return test::RunInProcess(RunTrainer, "trainer", args, log);
}

std::string Read(const fs::path& p) { return fs::exists(p) ? ReadTextFile(p) : std::string(); }

struct Fixture {
  TempDir tmp;
  fs::path shards = tmp / "shards";
  fs::path log = tmp / "log.txt";
  Fixture() { test::WriteSyntheticShards(shards, {/*train=*/2, /*test=*/1}); }
  // A one-step run with quick settings plus `extra`.
  int Quick(const std::string& out, const std::string& extra = "") { return Trainer(QuickArgs(out, extra), log); }
  // The same in this process: for runs that must stop at an error.
  int QuickHere(const std::string& out, const std::string& extra = "") {
    return TrainerHere(QuickArgs(out, extra), log);
  }
  std::string QuickArgs(const std::string& out, const std::string& extra) const {
    return shards.string() + " --out " + (tmp / out).string() + " --max-steps 1 --threads 2 --lr 1e-6 " + extra;
  }
};

TEST_CASE("--help lists every option with its default") {
  TempDir tmp;
  REQUIRE(Trainer("--help", tmp / "help.txt") == 0);
  const std::string help = Read(tmp / "help.txt");
  for (const char* name : {"--shards",
                           "--config",
                           "--out",
                           "--resume",
                           "--pre",
                           "--vgg16",
                           "--weights",
                           "--backend",
                           "--batch-norm",
                           "--epochs",
                           "--lr",
                           "--lr-steps",
                           "--lr-gamma",
                           "--momentum",
                           "--weight-decay",
                           "--batch-size",
                           "--max-steps",
                           "--checkpoint-every",
                           "--checkpoint-minutes",
                           "--seed",
                           "--workers",
                           "--prefetch",
                           "--threads",
                           "--precision",
                           "--device",
                           "--eval-tile",
                           "--eval-every",
                           "--init",
                           "--optimizer"}) {
    CHECK_MESSAGE(help.find(name) != std::string::npos, name);
  }
  CHECK(help.find("default: 1e-07") != std::string::npos);
  CHECK(help.find("default: 0.95") != std::string::npos);
  CHECK(help.find("default: 400") != std::string::npos);
}

TEST_CASE("a smoke run writes config, log, checkpoint and best model; the command line beats the config") {
  Fixture f;
  const fs::path config = f.tmp / "cfg.json";
  std::ofstream(config) << R"({"epochs": 3, "lr": 5e-6, "seed": 4, "batch-size": 2, "eval_tile": 64})";
  REQUIRE(f.Quick("run", "--config " + config.string() + " --epochs 2") == 0);
  const fs::path run = f.tmp / "run";
  for (const char* file : {"config.json", "train_log.jsonl", "checkpoint.pt", "model_best.pt", "model_best.h5"}) {
    CHECK_MESSAGE(fs::exists(run / file), file);
  }
  const auto cfg = nlohmann::json::parse(Read(run / "config.json"));
  CHECK(cfg["epochs"] == 2);       // command line
  CHECK(cfg["lr"] == 1e-6);        // command line (Quick)
  CHECK(cfg["seed"] == 4);         // config file
  CHECK(cfg["batch-size"] == 2);   // config file
  CHECK(cfg["eval-tile"] == 64);   // config file, underscore spelling
  CHECK(cfg["momentum"] == 0.95);  // default
  CHECK(cfg["shards"] == f.shards.string());
  const auto entry = nlohmann::json::parse(Read(run / "train_log.jsonl"));
  for (const char* key :
       {"epoch", "train_loss", "mae", "rmse", "lr", "seconds", "patches_per_s", "data_wait_fraction"}) {
    CHECK_MESSAGE(entry.contains(key), key);
  }
  CHECK(entry["epoch"] == 1);
  CHECK(entry["partial"] == true);
  CHECK(Read(f.log).find("--max-steps") != std::string::npos);
  CSRNet model = LoadModel((run / "model_best.h5").string());
  CHECK(model->backend_variant() == Backend::kB);

  // The same folder again without --resume is refused.
  CHECK(f.Quick("run") != 0);
  CHECK(Read(f.log).find("--resume") != std::string::npos);
}

TEST_CASE("the shipped Part A and Part B configs are valid and hold the original's settings") {
  Fixture f;
  for (const char* name : {"csrnet_part_a", "csrnet_part_b"}) {
    const std::string config = std::string(CSR_SOURCE_DIR) + "/configs/" + name + ".json";
    // --vgg16 '' : the command line wins, so the test needs no ImageNet file.
    REQUIRE(f.Quick(name, "--config " + config + " --vgg16 ''") == 0);
    const auto cfg = nlohmann::json::parse(Read(f.tmp / name / "config.json"));
    CHECK(cfg["epochs"] == 400);
    CHECK(cfg["momentum"] == 0.95);
    CHECK(cfg["weight-decay"] == 5e-4);
    CHECK(cfg["batch-size"] == 1);
    CHECK(cfg["backend"] == "B");
    CHECK(cfg["init"] == "normal");
    CHECK(cfg["optimizer"] == "sgd");
    CHECK(nlohmann::json::parse(ReadTextFile(config))["lr"] == 1e-7);
  }
}

TEST_CASE("bad configs are refused naming the file and the key") {
  Fixture f;
  const fs::path unknown = f.tmp / "unknown.json", typed = f.tmp / "typed.json", broken = f.tmp / "broken.json";
  std::ofstream(unknown) << R"({"epochs": 2, "learning_rate": 0.1})";
  std::ofstream(typed) << R"({"epochs": "many"})";
  std::ofstream(broken) << R"({"epochs": 2,)";
  CHECK(f.QuickHere("a", "--config " + unknown.string()) == 1);
  CHECK(Read(f.log).find("learning_rate") != std::string::npos);
  CHECK(Read(f.log).find("unknown.json") != std::string::npos);
  CHECK(f.QuickHere("b", "--config " + typed.string()) == 1);
  CHECK(Read(f.log).find("epochs") != std::string::npos);
  CHECK(Read(f.log).find("typed.json") != std::string::npos);
  CHECK(f.QuickHere("c", "--config " + broken.string()) == 1);
  CHECK(Read(f.log).find("broken.json") != std::string::npos);
  CHECK(f.QuickHere("d", "--config " + (f.tmp / "absent.json").string()) == 1);
  CHECK(Read(f.log).find("absent.json") != std::string::npos);
}

TEST_CASE("bad options are usage errors") {
  Fixture f;
  CHECK(f.Quick("a", "--epochs 0") == 2);
  CHECK(Read(f.log).find("--epochs") != std::string::npos);
  CHECK(f.QuickHere("b", "--precision fp16") == 2);
  CHECK(f.QuickHere("c", "--device tpu") == 2);
  CHECK(f.QuickHere("d", "--no-such-option 3") == 2);
  CHECK(TrainerHere("--max-steps 1", f.log) == 2);  // no shard set
  CHECK(Read(f.log).find("SHARDS") != std::string::npos);
}

TEST_CASE("bad inputs: a shard set without manifest, a corrupt checkpoint, mis-shaped weights") {
  Fixture f;
  fs::remove(f.shards / kManifestName);
  CHECK(f.Quick("a") == 1);
  CHECK(Read(f.log).find(f.shards.string()) != std::string::npos);
  CHECK(Read(f.log).find("manifest") != std::string::npos);
  CHECK(Read(f.log).find("\n") == Read(f.log).size() - 1);  // one line
  test::WriteSyntheticShards(f.shards, {2, 1});

  const fs::path ckpt = f.tmp / "checkpoint.pt";
  std::ofstream(ckpt) << "PK\x03\x04 definitely not a zip archive";
  CHECK(f.QuickHere("b", "--resume " + ckpt.string()) == 1);
  CHECK(Read(f.log).find(ckpt.string()) != std::string::npos);

  CSRNet model;
  const fs::path vgg = f.tmp / "vgg16.h5";
  {
    h5::Lock h5_lock;
    const h5::Hid file_file = h5::Create(vgg.string());
    const hid_t file = file_file.get();
    for (const auto& item : model->frontend->named_parameters()) {
      const torch::Tensor t = item.value().detach().contiguous();
      std::vector<hsize_t> shape(t.sizes().begin(), t.sizes().end());
      if (item.key() == "19.weight") shape = {512, 512, 9};
      h5::WriteFloats(file, "features." + item.key(), t.data_ptr<float>(), shape);
    }
  }
  CHECK(f.QuickHere("c", "--vgg16 " + vgg.string()) == 1);
  CHECK(Read(f.log).find("features.19.weight") != std::string::npos);
  CHECK(Read(f.log).find("vgg16.h5") != std::string::npos);
}

TEST_CASE("tools/export_vgg16.py writes a front end the trainer loads" * doctest::test_suite("optional")) {
  TempDir tmp;
  CSR_SKIP_UNLESS(test::Run(test::Python() + " -c 'import torch, h5py'", tmp / "probe.txt") == 0, test::kNeedPython,
                  "Debian's python3-torch / python3-h5py absent (scripts/deps.sh test)");
  // A stand-in torchvision checkpoint: every tensor of conv i filled with i / 1000.
  const fs::path pth = tmp / "vgg16.pth", broken = tmp / "broken.pth", h5 = tmp / "vgg16.h5";
  const std::string make =
      "import torch\n"
      "shapes = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256),\n"
      "          14: (256, 256), 17: (512, 256), 19: (512, 512), 21: (512, 512), 24: (512, 512)}\n"
      "sd = {}\n"
      "for i, (o, c) in shapes.items():\n"
      "    sd[f'features.{i}.weight'] = torch.full((o, c, 3, 3), i / 1000.0)\n"
      "    sd[f'features.{i}.bias'] = torch.full((o,), i / 1000.0)\n"
      "sd['classifier.0.weight'] = torch.zeros(4, 4)\n"
      "torch.save(sd, '" +
      pth.string() +
      "')\n"
      "del sd['features.17.bias']\n"
      "torch.save(sd, '" +
      broken.string() + "')\n";
  std::ofstream(tmp / "make.py") << make;
  REQUIRE(test::Run(test::Python() + " " + (tmp / "make.py").string(), tmp / "make.txt") == 0);
  const std::string tool = std::string(CSR_SOURCE_DIR) + "/tools/export_vgg16.py";
  REQUIRE(test::Run(test::Python() + " " + tool + " --weights " + pth.string() + " --out " + h5.string(),
                    tmp / "export.txt") == 0);
  CSRNet model;
  LoadVgg16H5(model, h5.string());
  for (int i : {0, 2, 5, 7, 10, 12, 14, 17, 19, 21}) {
    const auto* conv = model->frontend[i]->as<torch::nn::Conv2d>();
    CHECK(conv->weight.min().item<float>() == doctest::Approx(i / 1000.0));
    CHECK(conv->bias.max().item<float>() == doctest::Approx(i / 1000.0));
  }
  CHECK(test::Run(test::Python() + " " + tool + " --weights " + broken.string() + " --out " + (tmp / "x.h5").string(),
                  tmp / "broken.txt") != 0);
  CHECK(Read(tmp / "broken.txt").find("features.17.bias") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp / "x.h5"));
}

// Flips 256 bytes in the middle of a file (a bad disk, a bad copy).
void FlipMiddle(const fs::path& path) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  const auto middle = static_cast<std::streamoff>(fs::file_size(path) / 2);
  std::string bytes(256, '\0');
  f.seekg(middle);
  f.read(&bytes[0], 256);
  for (char& c : bytes) c = static_cast<char>(~c);
  f.seekp(middle);
  f.write(bytes.data(), 256);
}

bool OneLine(const std::string& text) { return !text.empty() && text.find('\n') == text.size() - 1; }

TEST_CASE("--resume of a checkpoint with flipped bytes is refused in one line naming the file") {
  Fixture f;
  REQUIRE(f.Quick("run") == 0);
  const fs::path ckpt = f.tmp / "run" / "checkpoint.pt";
  FlipMiddle(ckpt);
  const std::string corrupted = Read(ckpt);
  CHECK(Trainer("--resume " + ckpt.string() + " --max-steps 2", f.log) == 1);
  const std::string text = Read(f.log);
  INFO(text);
  CHECK(OneLine(text));
  CHECK(text.find(ckpt.string() + ": checksum mismatch in ") != std::string::npos);
  CHECK(Read(ckpt) == corrupted);  // nothing was written over it
}

TEST_CASE("--weights of another back end: followed by default, refused against an explicit --backend") {
  Fixture f;
  REQUIRE(f.Quick("a", "--backend A") == 0);
  const fs::path weights = f.tmp / "a" / "model_best.pt";
  REQUIRE(fs::exists(weights));
  REQUIRE(f.Quick("b", "--weights " + weights.string()) == 0);
  CHECK(nlohmann::json::parse(Read(f.tmp / "b" / "config.json"))["backend"] == "A");
  CHECK(Read(f.log).find("back end A (recorded in the file)") != std::string::npos);
  CHECK(f.QuickHere("c", "--weights " + weights.string() + " --backend B") == 1);
  const std::string text = Read(f.log);
  INFO(text);
  CHECK(OneLine(text));
  CHECK(text.find(weights.string() + ": holds back end A weights, but --backend B was asked for") != std::string::npos);
  // The .h5 twin records its variant too.
  CHECK(f.QuickHere("d", "--weights " + (f.tmp / "a" / "model_best.h5").string() + " --backend C") == 1);
  CHECK(Read(f.log).find("holds back end A weights") != std::string::npos);
}

TEST_CASE("hostile option values are usage errors, never a crash") {
  Fixture f;
  for (const char* bad : {"--lr nan", "--lr inf", "--momentum nan", "--weight-decay nan", "--lr-gamma inf",
                          "--lr-steps nan", "--batch-size 2147483647", "--batch-size -1", "--workers 100000",
                          "--prefetch 99999999", "--threads 1000000", "--eval-tile 1", "--epochs 99999999999",
                          "--checkpoint-every -3", "--checkpoint-minutes nan", "--max-steps -1"}) {
    INFO(std::string(bad));
    CHECK(f.QuickHere("x", bad) == 2);
    CHECK(OneLine(Read(f.log)));
    CHECK(Read(f.log).find(std::string(bad).substr(0, std::string(bad).find(' '))) != std::string::npos);
  }
}

TEST_CASE("configs with values of the wrong type are one-line errors naming the file") {
  Fixture f;
  int n = 0;
  for (const char* json :
       {R"({"momentum": "fast"})", R"({"lr-steps": "x"})", R"({"backend": 3})", R"([1, 2])", R"({"epochs": 1.5})",
        R"({"epochs": null})", R"({"seed": {"a": 1}})", R"("text")", R"({"batch_size": 1e300})"}) {
    INFO(std::string(json));
    const fs::path config = f.tmp / ("cfg" + std::to_string(++n) + ".json");
    std::ofstream(config) << json;
    std::string run = "x";  // appended, not "x" + ...: GCC 12's -Wrestrict false positive in C++20
    run += std::to_string(n);
    const int rc = f.QuickHere(run, "--config " + config.string());
    CHECK((rc == 1 || rc == 2));
    CHECK(OneLine(Read(f.log)));
    CHECK(Read(f.log).find(config.string()) != std::string::npos);
  }
}

TEST_CASE("a checkpoint whose position lies outside the epoch is refused, not indexed") {
  Fixture f;
  REQUIRE(f.Quick("run") == 0);
  const std::string ckpt = (f.tmp / "run" / "checkpoint.pt").string();
  for (int64_t batch : {int64_t{1000}, int64_t{-5}}) {
    TrainOptions opts;
    CSRNet model;
    FusedSGD opt = MakeOptimizer(model, opts);
    TrainState state = LoadCheckpoint(ckpt, model, opt);
    const nlohmann::json config = ReadCheckpointConfig(ckpt);
    state.batch = batch;
    SaveCheckpoint(ckpt, model, opt, state, config);
    CHECK(TrainerHere("--resume " + ckpt + " --max-steps 3", f.log) == 1);
    const std::string text = Read(f.log);
    INFO(text);
    CHECK(text.find(ckpt + ": ") != std::string::npos);
    CHECK((text.find("lies beyond the epoch") != std::string::npos || text.find("is negative") != std::string::npos));
  }
}

TEST_CASE("--optimizer adam --init he: resumed mid-epoch equals straight; the checkpoint's optimizer is kept") {
  Fixture f;
  const std::string args = f.shards.string() + " --threads 2 --lr 1e-4 --optimizer adam --init he --epochs 2 --out ";
  REQUIRE(Trainer(args + (f.tmp / "straight").string(), f.log) == 0);
  REQUIRE(Trainer(args + (f.tmp / "split").string() + " --max-steps 3", f.log) == 0);
  // Resumed without naming the optimizer: the checkpoint's config says adam.
  REQUIRE(Trainer("--resume " + (f.tmp / "split/checkpoint.pt").string() + " --max-steps 0", f.log) == 0);
  TrainOptions opts;
  opts.optimizer = OptimizerKind::kAdam;
  CSRNet a, b;
  auto oa = MakeRunOptimizer(a, opts), ob = MakeRunOptimizer(b, opts);
  const TrainState sa = LoadCheckpoint((f.tmp / "straight/checkpoint.pt").string(), a, *oa);
  const TrainState sb = LoadCheckpoint((f.tmp / "split/checkpoint.pt").string(), b, *ob);
  CHECK(sa.step == 8);
  CHECK(sb.step == 8);
  double diff = 0;
  for (const auto& item : a->named_parameters()) {
    diff = std::max(diff, (item.value() - b->named_parameters()[item.key()]).abs().max().item<double>());
  }
  CHECK(diff <= 1e-6);
  // He init: the hidden convolutions start far wider than N(0, 0.01).
  CHECK(a->frontend[0]->as<torch::nn::Conv2d>()->weight.std().item<double>() > 0.1);

  // Overriding the optimizer of a checkpoint is refused in one line.
  CHECK(Trainer("--resume " + (f.tmp / "split/checkpoint.pt").string() + " --optimizer sgd --epochs 3", f.log) == 1);
  const std::string text = Read(f.log);
  INFO(text);
  CHECK(OneLine(text));
  CHECK(text.find("optimizer 'adam'") != std::string::npos);
}

TEST_CASE("--batch-norm with --vgg16 is a one-line usage error (its training: trainer_slow_test)") {
  Fixture f;
  CHECK(f.QuickHere("v", "--batch-norm --vgg16 " + (f.tmp / "vgg.h5").string()) == 2);
  const std::string text = Read(f.log);
  INFO(text);
  CHECK(OneLine(text));
  CHECK(text.find("--batch-norm") != std::string::npos);
}

TEST_CASE("fp16 or nccl on the CPU, and --device cuda without CUDA or a GPU, are one-line usage errors") {
  Fixture f;
  CHECK(f.QuickHere("h", "--device cpu --precision fp16") == 2);
  CHECK(OneLine(Read(f.log)));
  CHECK(Read(f.log).find("fp16 runs on CUDA GPUs") != std::string::npos);
  CHECK(f.QuickHere("n", "--device cpu --dist-backend nccl") == 2);
  std::string text = Read(f.log);
  INFO(text);
  CHECK(OneLine(text));
  CHECK(text.find("nccl runs collectives on CUDA tensors") != std::string::npos);
  if (!torch::cuda::is_available()) {
    CHECK(f.QuickHere("g", "--device cuda") == 2);
    text = Read(f.log);
    CHECK(OneLine(text));
    CHECK(text.find("CUDA was asked for, but") != std::string::npos);
    CHECK(f.QuickHere("g", "--device cuda:1") == 2);
  }
}

}  // namespace
}  // namespace csr
