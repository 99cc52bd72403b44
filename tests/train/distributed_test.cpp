// Multi-process training on c10d (train/distributed.h): the ranks run as
// local processes over 127.0.0.1, launched with the env:// variables as
// torchrun sets them (and by torchrun itself where it is installed). Checks
// the equivalence of W ranks x batch B with one process x batch W*B, exact
// resumes, and the faults: a killed rank, an unreachable rendezvous, ranks
// given different options.
#include "tests/train/train_test_util.h"

#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "common/base/fs.h"
#include "tests/test_skip.h"
#include "tests/test_util.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/model.h"

namespace csr {
namespace {

using test::TempDir;

// A port nobody listens on now (the kernel's pick for an ephemeral bind).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

std::string Read(const fs::path& p) { return fs::exists(p) ? ReadTextFile(p) : std::string(); }

// The shell line that starts rank `rank` of `world` in the background,
// its output in <dir>/rank<r>.log and its exit status in <dir>/rank<r>.rc.
std::string RankLine(const fs::path& dir, int rank, int world, int port, const std::string& args) {
  const std::string r = std::to_string(rank);
  return StrCat("(RANK=", r, " WORLD_SIZE=", world, " LOCAL_RANK=", r, " MASTER_ADDR=127.0.0.1 MASTER_PORT=", port, " ",
                test::Tool("trainer"), " ", args, " > ", (dir / ("rank" + r + ".log")).string(), " 2>&1; echo $? > ",
                (dir / ("rank" + r + ".rc")).string(), ") &");
}

// Runs `world` ranks with the same arguments (plus per-rank extras) and waits.
struct Ranks {
  std::vector<int> rc;
  std::vector<std::string> log;
};
Ranks RunRanks(const fs::path& dir, int world, const std::string& args, const std::vector<std::string>& extra = {}) {
  fs::create_directories(dir);
  const int port = FreePort();
  std::string script;
  for (int r = 0; r < world; ++r) {
    script += RankLine(dir, r, world, port, args + (r < static_cast<int>(extra.size()) ? " " + extra[r] : "")) + "\n";
  }
  script += "wait\n";
  const fs::path sh = dir / "ranks.sh";
  std::ofstream(sh) << script;
  test::Run("bash " + sh.string());
  Ranks out;
  for (int r = 0; r < world; ++r) {
    const std::string rc = Read(dir / StrCat("rank", r, ".rc"));
    out.rc.push_back(rc.empty() ? -1 : std::atoi(rc.c_str()));
    out.log.push_back(Read(dir / StrCat("rank", r, ".log")));
  }
  return out;
}

// Every parameter of a saved model, in one vector.
std::vector<float> Weights(const fs::path& file) {
  CSRNet model(Backend::kB);
  LoadWeights(model, file.string());
  std::vector<float> out;
  for (const torch::Tensor& p : model->parameters()) {
    const torch::Tensor c = p.detach().contiguous().to(torch::kFloat32);
    out.insert(out.end(), c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  }
  return out;
}

// ||a - b|| / ||a|| over the whole weight vector.
double RelativeDifference(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    n += double(a[i]) * a[i];
  }
  return std::sqrt(d / std::max(n, 1e-300));
}

// Quick settings: equal-size crops, one compute thread per rank.
const char* kQuick = " --lr 1e-5 --seed 3 --threads 1 --workers 1 --eval-tile 0 --checkpoint-minutes 0";

TEST_CASE("ReadDistEnv: torchrun's variables, Slurm's, none; malformed values are refused naming the variable") {
  const auto with = [](std::vector<std::pair<const char*, const char*>> vars, auto check) {
    for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
                          "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_JOB_NODELIST", "SLURM_NODELIST"}) {
      unsetenv(v);
    }
    for (const auto& [k, v] : vars) setenv(k, v, 1);
    check();
    for (const auto& kv : vars) unsetenv(kv.first);
  };
  with({}, [] { CHECK_FALSE(ReadDistEnv().active()); });
  with({{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "1234"}},
       [] {
         const DistEnv e = ReadDistEnv();
         CHECK(e.rank == 1);
         CHECK(e.world == 4);
         CHECK(e.master_addr == "10.0.0.1");
         CHECK(e.master_port == 1234);
       });
  with({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"}, {"SLURM_JOB_NODELIST", "gpu[07-10],x"}},
       [] {
         const DistEnv e = ReadDistEnv();
         CHECK(e.launcher == "slurm");
         CHECK(e.rank == 3);
         CHECK(e.local_rank == 1);
         CHECK(e.master_addr == "gpu07");
         CHECK(e.master_port == 29500);
       });
  with({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}},
       [] { CHECK_THROWS_WITH_AS(ReadDistEnv(), doctest::Contains("RANK"), UsageError); });
  with({{"RANK", "0"}, {"WORLD_SIZE", "2"}},
       [] { CHECK_THROWS_WITH_AS(ReadDistEnv(), doctest::Contains("MASTER_ADDR"), UsageError); });
  with({{"RANK", "0"}}, [] { CHECK_THROWS_WITH_AS(ReadDistEnv(), doctest::Contains("WORLD_SIZE"), UsageError); });
  CHECK(FirstSlurmHost("node1") == "node1");
  CHECK(FirstSlurmHost("a[3,5-6]") == "a3");
  CHECK(FirstSlurmHost("n1,n2") == "n1");
}

TEST_CASE("2 ranks x batch 1 take the steps of 1 process x batch 2; a 2-rank resume equals the straight run") {
  TempDir tmp;
  test::WriteSyntheticShards(tmp / "shards", {/*train=*/8, /*test=*/2});
  const std::string shards = (tmp / "shards").string();
  const Ranks two = RunRanks(tmp / "two", 2, shards + kQuick + " --max-steps 6 --out " + (tmp / "two/run").string());
  REQUIRE_MESSAGE(two.rc[0] == 0, two.log[0]);
  REQUIRE_MESSAGE(two.rc[1] == 0, two.log[1]);
  CHECK(two.log[0].find("rank 0 of 2") != std::string::npos);
  CHECK(two.log[1].find("rank 1 of 2") != std::string::npos);
  CHECK(two.log[1].find("epoch 1") == std::string::npos);  // only rank 0 reports
  REQUIRE(test::Run(test::Tool("trainer") + " " + shards + kQuick + " --max-steps 6 --batch-size 2 --out " +
                        (tmp / "one").string(),
                    tmp / "one.log") == 0);
  const auto w2 = Weights(tmp / "two/run/model_best.pt"), w1 = Weights(tmp / "one/model_best.pt");
  CHECK(RelativeDifference(w1, w2) < 1e-5);
  CHECK(RelativeDifference(w1, Weights(tmp / "two/run/checkpoint.pt")) >= 0);  // the checkpoint loads

  // Stopped after 3 steps (mid-epoch), then the same command with --resume auto.
  const std::string run = (tmp / "split/run").string();
  const Ranks first = RunRanks(tmp / "split", 2, shards + kQuick + " --max-steps 3 --out " + run);
  REQUIRE_MESSAGE(first.rc[0] == 0, first.log[0]);
  const Ranks rest = RunRanks(tmp / "split2", 2, shards + kQuick + " --max-steps 6 --resume auto --out " + run);
  REQUIRE_MESSAGE(rest.rc[0] == 0, rest.log[0]);
  CHECK(rest.log[0].find("resuming") != std::string::npos);
  CHECK(RelativeDifference(w2, Weights(fs::path(run) / "checkpoint.pt")) < 1e-7);
  // One process cannot continue an epoch two ranks were half-way through
  // (step 6 of the epoch's 8).
  CHECK(test::Run(test::Tool("trainer") + " --resume " + run + "/checkpoint.pt --max-steps 9", tmp / "mixed.log") == 1);
  CHECK(Read(tmp / "mixed.log").find("part-way through an epoch by 2 rank(s)") != std::string::npos);
}

TEST_CASE("ranks of crops of different sizes line up: every rank takes the same number of steps") {
  TempDir tmp;
  // Three sizes of crops, 5 + 3 + 2 of them: batches of equal size per rank,
  // padded from the epoch's start so that both ranks step together.
  ShardSetWriter set(tmp / "shards", {"train", "test"}, 64, 0);
  std::mt19937 rng(5);
  int index = 0;
  for (const auto& [w, h, n] : std::vector<std::tuple<int, int, int>>{{64, 48, 5}, {48, 64, 3}, {80, 40, 2}}) {
    for (int i = 0; i < n; ++i) set.split("train").Add(EncodeRecord(SyntheticRecord(rng, w, h, 10, index++), 0));
  }
  set.split("test").Add(EncodeRecord(SyntheticRecord(rng, 100, 75, 10, index++), 0));
  set.Finish();
  const std::string shards = (tmp / "shards").string();
  const Ranks r =
      RunRanks(tmp / "r", 2, shards + kQuick + " --epochs 2 --batch-size 2 --out " + (tmp / "r/run").string());
  REQUIRE_MESSAGE(r.rc[0] == 0, r.log[0]);
  REQUIRE_MESSAGE(r.rc[1] == 0, r.log[1]);
  // 20 mirrored examples: 5+3+2 sizes x2 -> batches 5 + 3 + 2 = 10 of 2, 5 steps per rank per epoch.
  const std::string log = Read(tmp / "r/run/train_log.jsonl");
  CHECK(log.find("\"steps\":10") != std::string::npos);
}

TEST_CASE("a rank killed mid-run: the other exits within the timeout naming it; the same command continues") {
  TempDir tmp;
  test::WriteSyntheticShards(tmp / "shards", {/*train=*/8, /*test=*/1});
  const std::string run = (tmp / "run").string();
  const std::string args = (tmp / "shards").string() + kQuick +
                           " --max-steps 100000 --epochs 100000 --checkpoint-every 2 --dist-timeout 30 --resume auto "
                           "--out " +
                           run;
  fs::create_directories(tmp / "k");
  const int port = FreePort();
  const std::string line0 = RankLine(tmp / "k", 0, 2, port, args), line1 = RankLine(tmp / "k", 1, 2, port, args);
  // Rank 1 runs under its own pid file, so that it can be killed.
  const fs::path sh = tmp / "k" / "ranks.sh";
  std::ofstream(sh) << line0 << "\n"
                    << "RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=" << port << " exec "
                    << test::Tool("trainer") << " " << args << " > " << (tmp / "k/rank1.log").string() << " 2>&1 &\n"
                    << "echo $! > " << (tmp / "k/rank1.pid").string() << "\n"
                    << "for i in $(seq 300); do [ -f " << run << "/checkpoint.pt ] && break; sleep 0.1; done\n"
                    << "sleep 1; kill -9 $(cat " << (tmp / "k/rank1.pid").string() << ")\n"
                    << "wait\n";
  (void)line1;
  const auto start = std::chrono::steady_clock::now();
  test::Run("bash " + sh.string());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(seconds < 60);
  CHECK(Read(tmp / "k/rank0.rc") == "1\n");
  const std::string log0 = Read(tmp / "k/rank0.log");
  CHECK_MESSAGE(log0.find("lost rank 1") != std::string::npos, log0);
  CHECK(log0.find("--resume auto") != std::string::npos);
  CHECK(log0.find("terminate called") == std::string::npos);  // no C++ abort
  // The checkpoint is intact and the same command continues from it.
  CHECK(fs::exists(fs::path(run) / "checkpoint.pt"));
  const std::string again = (tmp / "shards").string() + kQuick +
                            " --max-steps 12 --epochs 100000 --checkpoint-every 2 --resume auto --out " + run;
  const Ranks r = RunRanks(tmp / "again", 2, again);
  REQUIRE_MESSAGE(r.rc[0] == 0, r.log[0]);
  CHECK(r.log[0].find("resuming") != std::string::npos);
}

TEST_CASE("SIGTERM to one rank stops every rank after the same step; rank 0 checkpoints; all exit 143") {
  TempDir tmp;
  test::WriteSyntheticShards(tmp / "shards", {/*train=*/8, /*test=*/1});
  const std::string run = (tmp / "run").string();
  const std::string args =
      (tmp / "shards").string() + kQuick + " --max-steps 100000 --epochs 100000 --checkpoint-every 2 --out " + run;
  fs::create_directories(tmp / "t");
  const int port = FreePort();
  const fs::path sh = tmp / "t" / "ranks.sh";
  // Only rank 1 gets the signal: its request reaches rank 0 with the next all-reduce.
  std::ofstream(sh) << RankLine(tmp / "t", 0, 2, port, args) << "\n"
                    << "(RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=" << port << " exec "
                    << test::Tool("trainer") << " " << args << " > " << (tmp / "t/rank1.log").string() << " 2>&1) &\n"
                    << "pid=$!\n"
                    << "for i in $(seq 300); do [ -f " << run << "/checkpoint.pt ] && break; sleep 0.1; done\n"
                    << "kill -TERM $pid; wait $pid; echo $? > " << (tmp / "t/rank1.rc").string() << "\n"
                    << "wait\n";
  test::Run("bash " + sh.string());
  CHECK(Read(tmp / "t/rank0.rc") == "143\n");
  CHECK(Read(tmp / "t/rank1.rc") == "143\n");
  const std::string log0 = Read(tmp / "t/rank0.log");
  CHECK_MESSAGE(log0.find("stopped by SIGTERM") != std::string::npos, log0);
  CHECK(log0.find("--resume") != std::string::npos);
  // The checkpoint holds the step both ranks stopped after.
  const nlohmann::json cfg = ReadCheckpointConfig(run + "/checkpoint.pt");
  CHECK(cfg["world_size"] == 2);
}

TEST_CASE("an unreachable rendezvous fails within the timeout; ranks given different options are refused") {
  TempDir tmp;
  test::WriteSyntheticShards(tmp / "shards", {/*train=*/2, /*test=*/1});
  const std::string shards = (tmp / "shards").string();
  const int port = FreePort();
  const auto start = std::chrono::steady_clock::now();
  const int rc =
      test::Run(StrCat("RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=", port, " ", test::Tool("trainer"), " ",
                       shards, kQuick, " --dist-timeout 2 --out ", (tmp / "x").string()),
                tmp / "x.log");
  CHECK(rc == 1);
  CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 30);
  const std::string log = Read(tmp / "x.log");
  CHECK(log.find("cannot reach the rendezvous") != std::string::npos);
  CHECK(log.find(StrCat("127.0.0.1:", port)) != std::string::npos);

  const Ranks r =
      RunRanks(tmp / "m", 2, shards + kQuick + " --max-steps 1 --dist-timeout 30 --out " + (tmp / "m/run").string(),
               {"--lr 1e-5", "--lr 2e-5"});
  CHECK(r.rc[0] == 1);
  CHECK(r.rc[1] == 1);
  CHECK_MESSAGE(r.log[0].find("configuration of rank 1 differs from rank 0's") != std::string::npos, r.log[0]);
}

TEST_CASE("torchrun --nproc_per_node 2 --no_python launches the trainer" * doctest::test_suite("optional")) {
  // The torchrun of the torch the trainer links (Debian's 1.13, or the wheel's
  // with CSR_TEST_PYTHON): 2.x's TCPStore client does not speak to 1.13's
  // store server, which torchrun hosts.
  const std::string torchrun = test::Python() + " -m torch.distributed.run";
  CSR_SKIP_UNLESS(test::Run(test::Python() + " -c 'import torch.distributed.run' 2> /dev/null") == 0, test::kNeedPython,
                  "torchrun (torch.distributed.run) not installed");
  TempDir tmp;
  test::WriteSyntheticShards(tmp / "shards", {/*train=*/4, /*test=*/1});
  const int rc = test::Run(StrCat(torchrun, " --nproc_per_node 2 --no_python --redirects 2 --tee 2 --master_port ",
                                  FreePort(), " ", test::Tool("trainer"), " ", (tmp / "shards").string(), kQuick,
                                  " --max-steps 2 --out ", (tmp / "run").string()),
                           tmp / "torchrun.log");
  CHECK_MESSAGE(rc == 0, Read(tmp / "torchrun.log"));
  CHECK(Read(tmp / "torchrun.log").find("launched by torchrun") != std::string::npos);
  CHECK(fs::exists(tmp / "run" / "checkpoint.pt"));
}

}  // namespace
}  // namespace csr
