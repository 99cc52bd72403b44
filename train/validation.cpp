#include "train/validation.h"

#include <cmath>
#include <utility>
#include <vector>

#include "common/eval/metrics.h"

namespace csr {

ValidationResult Validate(CSRNet& model, const ShardDataset& test, const InferenceOptions& opts, int workers,
                          const std::function<bool()>& stop) {
  ValidationResult r;
  const size_t n = test.size().value();
  std::vector<std::vector<size_t>> plan(n);
  for (size_t i = 0; i < n; ++i) plan[i] = {i};
  BatchLoader loader(test, std::move(plan), 0, workers, 2);
  CountErrors counts, density_errors;
  double loss = 0;
  torch::data::Example<> batch;
  for (size_t i = 0; i < n; ++i) {
    if (stop && stop()) {
      r.complete = false;
      break;
    }
    if (!loader.Next(&batch)) break;
    const torch::Tensor density = PredictDensity(model, batch.data, opts);
    const double predicted = density.sum().item<double>();
    const RecordInfo info = test.info(i);
    counts.Add(predicted, static_cast<double>(info.count));
    density_errors.Add(predicted, info.density_sum);
    loss += (density - batch.target[0][0]).pow(2).sum().item<double>();
    ++r.images;
  }
  r.mae = counts.mae();
  r.rmse = counts.rmse();
  r.mae_density = density_errors.mae();
  r.rmse_density = density_errors.rmse();
  if (r.images > 0) r.loss = loss / static_cast<double>(r.images);
  return r;
}

}  // namespace csr
