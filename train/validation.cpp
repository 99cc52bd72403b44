#include "train/validation.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

namespace csr {

void ValidationResult::Finish() {
  const double n = static_cast<double>(std::max<int64_t>(images, 1));
  mae = sums[0] / n;
  rmse = std::sqrt(sums[1] / n);
  mae_density = sums[2] / n;
  rmse_density = std::sqrt(sums[3] / n);
  loss = sums[4] / n;
  if (images == 0) mae = rmse = mae_density = rmse_density = loss = 0;
}

ValidationResult Validate(CSRNet& model, const ShardDataset& test, const InferenceOptions& opts, int workers,
                          const std::function<bool()>& stop, size_t offset, size_t stride) {
  ValidationResult r;
  const size_t n = test.size().value();
  std::vector<std::vector<size_t>> plan;
  for (size_t i = offset; i < n; i += std::max<size_t>(stride, 1)) plan.push_back({i});
  const std::vector<std::vector<size_t>> order = plan;
  BatchLoader loader(test, std::move(plan), 0, workers, 2);
  torch::data::Example<> batch;
  for (const auto& item : order) {
    if (stop && stop()) {
      r.complete = false;
      break;
    }
    if (!loader.Next(&batch)) break;
    const torch::Tensor density = PredictDensity(model, batch.data, opts);
    const double predicted = density.sum().item<double>();
    const RecordInfo info = test.info(item[0]);
    const double e = predicted - static_cast<double>(info.count), d = predicted - info.density_sum;
    r.sums[0] += std::abs(e);
    r.sums[1] += e * e;
    r.sums[2] += std::abs(d);
    r.sums[3] += d * d;
    r.sums[4] += (density - batch.target[0][0]).pow(2).sum().item<double>();
    ++r.images;
  }
  r.Finish();
  return r;
}

}  // namespace csr
