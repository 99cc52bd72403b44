#include "train/distributed.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#ifdef C10_USE_GLOG
#include <glog/logging.h>
#endif

#include "common/base/error.h"
#include "common/base/log.h"
#include "train/torch_compat.h"

namespace csr {
namespace {

const char* Env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int EnvInt(const char* name, int fallback, int lo, int hi) {
  const char* v = Env(name);
  if (!v) return fallback;
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || x < lo || x > hi) {
    throw UsageError(name, StrCat("expected a whole number ", lo, "..", hi, ", got '", v, "'"));
  }
  return static_cast<int>(x);
}

// The first line of an exception's text, short enough for one log line.
std::string Reason(const std::string& text) {
  std::string line = FirstLine(text);
  if (line.size() > 240) line = line.substr(0, 240) + "...";
  return line;
}

bool IsLoopback(const std::string& host) { return host == "localhost" || host.rfind("127.", 0) == 0; }

}  // namespace

std::string FirstSlurmHost(const std::string& nodelist) {
  // The first entry: up to a comma outside brackets.
  size_t depth = 0, end = 0;
  for (; end < nodelist.size(); ++end) {
    if (nodelist[end] == '[') ++depth;
    if (nodelist[end] == ']' && depth > 0) --depth;
    if (nodelist[end] == ',' && depth == 0) break;
  }
  const std::string first = nodelist.substr(0, end);
  const size_t open = first.find('[');
  if (open == std::string::npos) return first;
  // "node[01-04,07]" -> "node" + the first number of the range list, as written.
  const size_t stop = first.find_first_of(",-]", open + 1);
  return first.substr(0, open) + first.substr(open + 1, stop - open - 1);
}

DistEnv ReadDistEnv() {
  DistEnv e;
  if (Env("RANK") || Env("WORLD_SIZE")) {
    if (!Env("RANK") || !Env("WORLD_SIZE")) {
      throw UsageError(Env("RANK") ? "WORLD_SIZE" : "RANK", "RANK and WORLD_SIZE must be set together (env://)");
    }
    e.launcher = Env("TORCHELASTIC_RUN_ID") ? "torchrun" : "env:// (RANK, WORLD_SIZE)";
    e.world = EnvInt("WORLD_SIZE", 1, 1, 1 << 16);
    e.rank = EnvInt("RANK", 0, 0, e.world - 1);
    e.local_rank = EnvInt("LOCAL_RANK", e.rank, 0, 1 << 16);
    e.master_addr = Env("MASTER_ADDR") ? Env("MASTER_ADDR") : "";
  } else if (Env("SLURM_PROCID")) {
    e.launcher = "slurm";
    e.world = EnvInt("SLURM_NTASKS", 1, 1, 1 << 16);
    e.rank = EnvInt("SLURM_PROCID", 0, 0, e.world - 1);
    e.local_rank = EnvInt("SLURM_LOCALID", 0, 0, 1 << 16);
    const char* nodes = Env("SLURM_JOB_NODELIST") ? Env("SLURM_JOB_NODELIST") : Env("SLURM_NODELIST");
    e.master_addr = Env("MASTER_ADDR") ? Env("MASTER_ADDR") : nodes ? FirstSlurmHost(nodes) : "";
  } else {
    return e;
  }
  e.master_port = EnvInt("MASTER_PORT", 29500, 1, 65535);
  if (e.active() && e.master_addr.empty()) {
    throw UsageError("MASTER_ADDR", "not set: the host of rank 0, where the ranks meet (env:// rendezvous)");
  }
  return e;
}

struct Distributed::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<compat::CollectiveGroup> group;
  // Each rank bumps its counter in the store twice a second, over its own
  // connection, so that the survivors of a lost rank can tell which it was.
  c10::intrusive_ptr<c10d::Store> beat_store;
  std::atomic<bool> stop{false};
  std::thread beat;
};

namespace {

// The rendezvous store, as torch.distributed's env:// makes it: rank 0 hosts
// a TCPStore at MASTER_ADDR:MASTER_PORT and the others connect, except under
// torchrun's agent, which hosts it already (TORCHELASTIC_USE_AGENT_STORE)
// and expects the keys of restart N under /worker/attempt_N.
c10::intrusive_ptr<c10d::Store> ConnectStore(const DistEnv& env, bool host, std::chrono::seconds timeout) {
  const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  const bool agent_store = agent && std::string(agent) == "True";
  c10d::TCPStoreOptions o;
  o.port = static_cast<uint16_t>(env.master_port);
  o.isServer = host && !agent_store;
  o.numWorkers = c10::nullopt;
  o.waitWorkers = false;
  o.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
  c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
  if (agent_store) {
    const char* restart = std::getenv("TORCHELASTIC_RESTART_COUNT");
    store = c10::make_intrusive<c10d::PrefixStore>(StrCat("/worker/attempt_", restart ? restart : "0"), store);
  }
  return c10::make_intrusive<c10d::PrefixStore>("csrnet", store);
}

}  // namespace

DistBackend ResolveDistBackend(DistBackend backend, const c10::Device& device) {
  const bool cuda = device.is_cuda();
  const bool nccl = backend == DistBackend::kNccl || (backend == DistBackend::kAuto && cuda);
  if (nccl && !cuda) {
    throw UsageError("--dist-backend", StrCat("nccl runs collectives on CUDA tensors, but the model is on ",
                                              device.str(), ": use --device cuda, or gloo for the CPU"));
  }
  return nccl ? DistBackend::kNccl : DistBackend::kGloo;
}

Distributed::Distributed(const DistEnv& env, DistBackend backend, const c10::Device& device,
                         std::chrono::seconds timeout)
    : env_(env), timeout_(timeout), impl_(std::make_unique<Impl>()) {
  const bool cuda = device.is_cuda();
  const bool nccl = ResolveDistBackend(backend, device) == DistBackend::kNccl;
  backend_name_ = nccl ? "nccl" : "gloo";
  const std::string where = StrCat(env.master_addr, ":", env.master_port);
#ifdef C10_USE_GLOG
  // c10d logs its connection retries and failures through glog on stderr;
  // the errors below say what failed in one line of their own.
  FLAGS_minloglevel = google::GLOG_FATAL;
#endif
  try {
    impl_->store = ConnectStore(env, env.rank == 0, timeout);
  } catch (const std::exception& e) {
    throw Error(where, StrCat("rank ", env.rank, ": cannot ", env.rank == 0 ? "host" : "reach",
                              " the rendezvous store (MASTER_ADDR:MASTER_PORT) within ", timeout.count(),
                              " s: ", Reason(e.what())));
  }
  try {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
    if (nccl) {
#ifdef USE_C10D_NCCL
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = ms;
      impl_->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, env.rank, env.world, opts);
#else
      throw UsageError("--dist-backend",
                       "nccl: this LibTorch has no NCCL: build against a CUDA LibTorch "
                       "(scripts/build.sh --libtorch pip), or use gloo");
#endif
    } else {
      if (cuda && backend == DistBackend::kGloo)
        log::Warn("--dist-backend gloo with ", device.str(), ": slower than nccl");
      auto opts = c10d::ProcessGroupGloo::Options::create(ms);
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname && *ifname) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (IsLoopback(env.master_addr)) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank, env.world, opts);
    }
  } catch (const UsageError&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(where, StrCat("rank ", env.rank, ": the ", env.world, " ranks did not all join within ",
                              timeout.count(), " s (", backend_name_, "): ", Reason(e.what())));
  }
  // The heartbeat, on a connection of its own.
  try {
    impl_->beat_store = ConnectStore(env, false, timeout);
  } catch (const std::exception& e) {
    throw Error(where, StrCat("rank ", env.rank, ": cannot open a second store connection: ", Reason(e.what())));
  }
  const std::string key = StrCat("beat/", env.rank);
  impl_->beat = std::thread([this, key] {
    while (!impl_->stop.load()) {
      try {
        impl_->beat_store->add(key, 1);
      } catch (...) {
        return;  // the store is gone: the main thread will find out
      }
      for (int i = 0; i < 5 && !impl_->stop.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
}

Distributed::~Distributed() {
  impl_->stop.store(true);
  if (impl_->beat.joinable()) impl_->beat.join();
}

std::string Distributed::LostRanks() {
  // Ranks whose heartbeat stands still over 1.5 s.
  try {
    std::vector<int64_t> before(static_cast<size_t>(env_.world));
    for (int r = 0; r < env_.world; ++r) before[static_cast<size_t>(r)] = impl_->store->add(StrCat("beat/", r), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    std::string lost;
    for (int r = 0; r < env_.world; ++r) {
      if (r == env_.rank) continue;
      if (impl_->store->add(StrCat("beat/", r), 0) == before[static_cast<size_t>(r)]) {
        lost += StrCat(lost.empty() ? "" : ", ", r);
      }
    }
    return lost.empty() ? "a rank (all heartbeats still run: a network fault?)" : StrCat("rank ", lost);
  } catch (const std::exception&) {
    return StrCat("rank 0 (its rendezvous store at ", env_.master_addr, ":", env_.master_port, " is gone)");
  }
}

void Distributed::Lost(const std::string& during, const std::string& reason) {
  throw Error("distributed",
              StrCat("rank ", env_.rank, ": lost ", LostRanks(), " during ", during, " (", Reason(reason),
                     "); stopping. The last checkpoint is intact: rerun the same "
                     "command with --resume auto to continue from it"));
}

void Distributed::Collective(const char* during, std::vector<torch::Tensor>& tensors,
                             const std::function<c10::intrusive_ptr<c10d::Work>(std::vector<torch::Tensor>&)>& start) {
  try {
    // One collective per tensor, all in flight, then every one waited for.
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (torch::Tensor& t : tensors) {
      std::vector<torch::Tensor> one = {t};
      works.push_back(start(one));
    }
    for (auto& w : works) w->wait(std::chrono::duration_cast<std::chrono::milliseconds>(timeout_));
  } catch (const std::exception& e) {
    Lost(during, e.what());
  }
}

void Distributed::AllReduceSum(std::vector<torch::Tensor>& tensors) {
  Collective("an all-reduce", tensors,
             [&](std::vector<torch::Tensor>& one) { return impl_->group->allreduce(one, c10d::AllreduceOptions{}); });
}

void Distributed::Broadcast(std::vector<torch::Tensor>& tensors) {
  Collective("a broadcast from rank 0", tensors,
             [&](std::vector<torch::Tensor>& one) { return impl_->group->broadcast(one, c10d::BroadcastOptions{}); });
}

void Distributed::CheckSame(const std::string& what, const std::string& value) {
  std::vector<int> differ;
  try {
    impl_->store->set(StrCat("same/", what, "/", env_.rank), std::vector<uint8_t>(value.begin(), value.end()));
    const std::vector<uint8_t> first = impl_->store->get(StrCat("same/", what, "/0"));
    for (int r = 1; r < env_.world; ++r) {
      if (impl_->store->get(StrCat("same/", what, "/", r)) != first) differ.push_back(r);
    }
  } catch (const std::exception& e) {
    Lost(StrCat("the start-up check of the ", what), e.what());
  }
  if (!differ.empty()) {
    std::string ranks;
    for (int r : differ) ranks += StrCat(ranks.empty() ? "" : ", ", r);
    throw Error("distributed", StrCat("rank ", env_.rank, ": the ", what, " of rank ", ranks,
                                      " differs from rank 0's: every rank must be given the same shard set and "
                                      "options"));
  }
}

std::string Distributed::ShareFromRank0(const std::string& key, const std::string& value) {
  try {
    if (env_.rank == 0) impl_->store->set(StrCat("share/", key), std::vector<uint8_t>(value.begin(), value.end()));
    const std::vector<uint8_t> v = impl_->store->get(StrCat("share/", key));
    return std::string(v.begin(), v.end());
  } catch (const std::exception& e) {
    Lost(StrCat("the start-up exchange of ", key), e.what());
  }
}

}  // namespace csr
