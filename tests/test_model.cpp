// model/: what a trained model is for the jobs: the statistics an input is normalised with
// (input, model, matching; one tomogram or a pair of halves), and the device it runs on.
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/io/mrc.h"
#include "unwedge/model/model.h"

#include "temp_dir.h"

using namespace unwedge;

namespace {

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("unwedge_test_model") {}
};

// Mean and (population) standard deviation of the central half of each axis of the volumes
// together, computed voxel by voxel.
NormStats central_stats(const std::vector<at::Tensor>& vols) {
  double sum = 0, sq = 0;
  int64_t n = 0;
  for (const auto& v : vols) {
    auto a = v.to(torch::kDouble).contiguous();
    const int64_t Z = a.size(0), Y = a.size(1), X = a.size(2);
    auto acc = a.accessor<double, 3>();
    for (int64_t z = Z / 4; z < Z / 4 + Z / 2; ++z)
      for (int64_t y = Y / 4; y < Y / 4 + Y / 2; ++y)
        for (int64_t x = X / 4; x < X / 4 + X / 2; ++x) {
          sum += acc[z][y][x];
          sq += acc[z][y][x] * acc[z][y][x];
          ++n;
        }
  }
  const double mean = sum / double(n);
  return {mean, std::sqrt(sq / double(n) - mean * mean)};
}

}  // namespace

// The choice of statistics, once for restore, sample and embed: an input's own central-region
// statistics (a pair: both halves' central regions together), the model's first training
// tomogram's, or the stored ones of the training input that is this very file.
TEST(ModelNorm, InputModelAndMatchingStatistics) {
  TempDir dir;
  torch::manual_seed(3);
  const at::Tensor even = 2.0 + 3.0 * torch::randn({16, 12, 8});
  const at::Tensor odd = -1.0 + 0.5 * torch::randn({16, 12, 8});
  mrc_write(dir / "even.mrc", Volume{even, {}}, MrcWriteOptions{});
  mrc_write(dir / "odd.mrc", Volume{odd, {}}, MrcWriteOptions{});
  MrcFile fe(dir / "even.mrc"), fo(dir / "odd.mrc");
  CheckpointInfo info;
  info.norm_mode = "central";
  info.norm_fraction = 0.5;
  info.inputs = {"/elsewhere/first.mrc", dir / "even.mrc"};
  info.norm = {{10.0, 2.0}, {20.0, 4.0}};

  const NormStats one = model_norm_stats(info, NormSource::input, {&fe}, "m.uwm");
  const NormStats want_one = central_stats({even});
  EXPECT_NEAR(one.mean, want_one.mean, 1e-9);
  EXPECT_NEAR(one.std, want_one.std, 1e-9);
  const NormStats pair = model_norm_stats(info, NormSource::input, {&fe, &fo}, "m.uwm");
  const NormStats want_pair = central_stats({even, odd});
  EXPECT_NEAR(pair.mean, want_pair.mean, 1e-9);
  EXPECT_NEAR(pair.std, want_pair.std, 1e-9);

  const NormStats model = model_norm_stats(info, NormSource::model, {&fo}, "m.uwm");
  EXPECT_EQ(model.mean, 10.0);
  EXPECT_EQ(model.std, 2.0);
  const NormStats matched = model_norm_stats(info, NormSource::matching, {&fe}, "m.uwm");
  EXPECT_EQ(matched.mean, 20.0) << "even.mrc is the second training input";
  const NormStats unmatched = model_norm_stats(info, NormSource::matching, {&fo}, "m.uwm");
  EXPECT_NEAR(unmatched.mean, central_stats({odd}).mean, 1e-9);

  CheckpointInfo none = info;
  none.norm.clear();
  EXPECT_THROW(model_norm_stats(none, NormSource::model, {&fe}, "m.uwm"), FormatError);
  EXPECT_THROW(model_norm_stats(info, NormSource::input, {}, "m.uwm"), ValueError);
  EXPECT_EQ(norm_source_parse("model"), NormSource::model);
  EXPECT_THROW(norm_source_parse("median"), ValueError);
}

// "model" runs where the model was trained when that device is here, else on the CPU; other
// names are resolved as everywhere.
TEST(ModelDevice, TrainingDeviceWhenAvailableElseCpu) {
  CheckpointInfo info;
  info.train_options = {{"device", "cpu"}};
  EXPECT_EQ(model_device(info, "model"), "cpu");
  info.train_options = {{"device", "cuda:0"}};
  EXPECT_EQ(model_device(info, "model"), torch::cuda::is_available() ? "cuda:0" : "cpu");
  info.train_options = nlohmann::json::object();  // an old checkpoint without the device
  EXPECT_EQ(model_device(info, "model"), "cpu");
  EXPECT_EQ(model_device(info, "cpu", /*local_rank=*/2), "cpu");
  EXPECT_EQ(model_device(info, "auto"), torch::cuda::is_available() ? "cuda" : "cpu");
}
