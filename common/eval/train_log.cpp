#include "common/eval/train_log.h"

#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/base/error.h"
#include "common/base/fs.h"

namespace csr {
namespace {

nlohmann::json Optional(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }

// A number field, or nullopt when it is absent, null or not a number.
std::optional<double> Number(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

}  // namespace

std::string FormatEpochLog(const EpochLog& e) {
  nlohmann::json j = {{"epoch", e.epoch},
                      {"train_loss", Optional(e.train_loss)},
                      {"mae", Optional(e.mae)},
                      {"rmse", Optional(e.rmse)},
                      {"mae_density", Optional(e.mae_density)},
                      {"rmse_density", Optional(e.rmse_density)},
                      {"best_mae", Optional(e.best_mae)},
                      {"lr", e.lr},
                      {"seconds", e.seconds},
                      {"patches_per_s", e.patches_per_s},
                      {"data_wait_fraction", e.data_wait_fraction},
                      {"steps", e.steps}};
  if (e.partial) j["partial"] = true;
  return j.dump();
}

std::optional<EpochLog> ParseEpochLog(const std::string& line) {
  const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  const auto epoch = j.find("epoch");
  if (epoch == j.end() || !epoch->is_number_integer() || epoch->get<int64_t>() < 1) return std::nullopt;
  EpochLog e;
  e.epoch = epoch->get<int64_t>();
  e.train_loss = Number(j, "train_loss");
  e.mae = Number(j, "mae");
  e.rmse = Number(j, "rmse");
  e.mae_density = Number(j, "mae_density");
  e.rmse_density = Number(j, "rmse_density");
  e.best_mae = Number(j, "best_mae");
  e.lr = Number(j, "lr").value_or(0.0);
  e.seconds = Number(j, "seconds").value_or(0.0);
  e.patches_per_s = Number(j, "patches_per_s").value_or(0.0);
  e.data_wait_fraction = Number(j, "data_wait_fraction").value_or(0.0);
  const auto steps = j.find("steps");
  if (steps != j.end() && steps->is_number_integer()) e.steps = steps->get<int64_t>();
  e.partial = j.contains("partial");
  return e;
}

std::vector<EpochLog> ReadTrainLog(const std::string& path) {
  std::istringstream lines(ReadTextFile(path));
  std::vector<EpochLog> out;
  for (std::string line; std::getline(lines, line);) {
    if (auto e = ParseEpochLog(line)) out.push_back(*e);
  }
  return out;
}

std::string FormatTrainLog(const std::vector<EpochLog>& entries) {
  std::string text;
  for (const EpochLog& e : entries) text += FormatEpochLog(e) + "\n";
  return text;
}

std::vector<EpochLog> CompleteEpochs(const std::vector<EpochLog>& entries) {
  std::map<int64_t, EpochLog> by_epoch;
  for (const EpochLog& e : entries) {
    if (!e.partial) by_epoch[e.epoch] = e;
  }
  std::vector<EpochLog> out;
  out.reserve(by_epoch.size());
  for (auto& [epoch, e] : by_epoch) out.push_back(e);
  return out;
}

}  // namespace csr
