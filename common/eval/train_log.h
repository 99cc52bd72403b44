// The trainer's per-epoch log, RUN/train_log.jsonl: one JSON object per
// line, written by `trainer` after every epoch (and rewritten whole,
// atomically) and read by `evaluate --report` for its curves. This is the
// one definition of its fields; docs/training.md lists them for users.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace csr {

struct EpochLog {
  int64_t epoch = 0;                   // 1-based
  std::optional<double> train_loss;    // mean loss per training patch
  std::optional<double> mae, rmse;     // validation against annotation counts (none: not validated)
  std::optional<double> mae_density;   // ... against the ground-truth density sums
  std::optional<double> rmse_density;  //
  std::optional<double> best_mae;      // best validation MAE so far
  double lr = 0;                       // learning rate of the epoch
  double seconds = 0;                  // training and validation time
  double patches_per_s = 0;            // training throughput
  double data_wait_fraction = 0;       // share of the training time spent waiting for data
  int64_t steps = 0;                   // optimizer steps in total at the end of the entry
  bool partial = false;                // the epoch stopped early (--max-steps); redone on resume
};

// One line of the file (no newline).
std::string FormatEpochLog(const EpochLog& e);
// The entry of one line; nullopt for a line that is not an entry (blank,
// damaged by a crash, or not JSON): such lines are skipped, never fatal.
std::optional<EpochLog> ParseEpochLog(const std::string& line);

// Every readable entry of `path` in file order. Throws csr::Error naming the
// file when it cannot be read.
std::vector<EpochLog> ReadTrainLog(const std::string& path);
// The whole file's text for `entries`.
std::string FormatTrainLog(const std::vector<EpochLog>& entries);
// The complete (non-partial) entries by ascending epoch; when an epoch is
// logged twice (a resumed run), the later entry wins.
std::vector<EpochLog> CompleteEpochs(const std::vector<EpochLog>& entries);

}  // namespace csr
