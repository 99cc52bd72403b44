// Data-parallel training over several processes on PyTorch's own engine,
// c10d: a TCPStore for the rendezvous and a ProcessGroupGloo (CPU) or
// ProcessGroupNCCL (CUDA, when LibTorch was built with it) for the
// collectives. The processes are started by a standard launcher (torchrun,
// Slurm's srun, or by hand with the env:// variables); nothing here starts
// processes or moves bytes itself. docs/training.md has the semantics.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

namespace c10d {
class Work;
}  // namespace c10d

#include "train/choices.h"

namespace csr {

// Who this process is in the job, from the launcher's environment.
struct DistEnv {
  int rank = 0;
  int world = 1;
  int local_rank = 0;
  std::string master_addr;  // the rendezvous host (rank 0's TCPStore)
  int master_port = 0;
  std::string launcher;  // "torchrun", "env:// (RANK, WORLD_SIZE)" set by hand, "slurm", or "" (none)
  bool active() const { return world > 1; }
};

// torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT) when RANK or WORLD_SIZE is set; else Slurm's (SLURM_PROCID,
// SLURM_NTASKS, SLURM_LOCALID, the first host of SLURM_JOB_NODELIST, port
// MASTER_PORT or 29500) when SLURM_PROCID is set; else a single process.
// Throws csr::UsageError naming the variable for a malformed or inconsistent
// value (a rank outside 0..WORLD_SIZE-1, no MASTER_ADDR).
DistEnv ReadDistEnv();

// The first host of a Slurm node list: "node[01-04,07],gpu2" -> "node01".
std::string FirstSlurmHost(const std::string& nodelist);

// The collective back end `backend` resolves to for a model on `device`
// (auto: NCCL for CUDA, Gloo otherwise). Throws csr::UsageError naming
// --dist-backend for NCCL with a model that is not on a GPU.
DistBackend ResolveDistBackend(DistBackend backend, const c10::Device& device);

// One process's membership of the job. Constructed by every rank; the
// constructor returns when all ranks have joined (or throws csr::Error naming
// the rendezvous address after `timeout`).
class Distributed {
 public:
  Distributed(const DistEnv& env, DistBackend backend, const c10::Device& device, std::chrono::seconds timeout);
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  int rank() const { return env_.rank; }
  int world() const { return env_.world; }
  // "gloo" or "nccl".
  const std::string& backend() const { return backend_name_; }

  // Sums `tensors` over the ranks, in place (one collective per tensor, all
  // in flight at once). A lost rank or a timeout throws
  // csr::Error naming the lost rank(s) when they can be told.
  void AllReduceSum(std::vector<torch::Tensor>& tensors);
  // Replaces `tensors` on every rank by rank 0's.
  void Broadcast(std::vector<torch::Tensor>& tensors);
  // Every rank's `value` must be the same: throws csr::Error naming `what`
  // and the ranks that differ (the shard set or the configuration, say).
  void CheckSame(const std::string& what, const std::string& value);
  // Rank 0's string (e.g. the checkpoint to resume), handed to every rank.
  std::string ShareFromRank0(const std::string& key, const std::string& value);

 private:
  [[noreturn]] void Lost(const std::string& during, const std::string& reason);
  // Starts `start` on each tensor, waits for all; a failure is Lost(during).
  void Collective(const char* during, std::vector<torch::Tensor>& tensors,
                  const std::function<c10::intrusive_ptr<c10d::Work>(std::vector<torch::Tensor>&)>& start);
  std::string LostRanks();

  DistEnv env_;
  std::string backend_name_;
  std::chrono::seconds timeout_;
  struct Impl;  // the c10d objects (their headers stay out of this one)
  std::unique_ptr<Impl> impl_;
};

}  // namespace csr
