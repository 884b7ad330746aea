// Tiled restoration: plans, blend windows, and equality with a whole-volume pass; the restore
// job on files (normalisation, tiles, the output in the input's scale and header, its checks).
#include <filesystem>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/infer/restore.h"
#include "unwedge/infer/restore_job.h"
#include "unwedge/infer/tiling.h"
#include "unwedge/io/mrc.h"
#include "unwedge/methods/method.h"
#include "unwedge/model/checkpoint.h"

using namespace unwedge;

namespace {

// A tiny network: depth 2, 4 channels, one convolution per level (receptive field ~ 20 voxels).
std::unique_ptr<Method> tiny_method(uint64_t seed) {
  torch::manual_seed(seed);
  return method_create("n2n", {{"depth", 2}, {"base_channels", 4}, {"convs_per_level", 1}});
}

}  // namespace

TEST(TileAxis, StartsAlignedCoverAndWeightsPositive) {
  for (int64_t dim : {1, 7, 32, 33, 100, 257}) {
    TileAxis a = tile_axis_make(dim, /*tile=*/40, /*overlap=*/16, /*align=*/8, /*halo=*/5);
    EXPECT_EQ(a.padded % 8, 0);
    EXPECT_GE(a.padded, dim);
    EXPECT_EQ(a.tile % 8, 0);
    EXPECT_EQ(a.starts.front(), 0);
    EXPECT_EQ(a.starts.back() + a.tile, a.padded);
    for (size_t i = 0; i < a.starts.size(); ++i) {
      EXPECT_EQ(a.starts[i] % 8, 0) << "dim " << dim;
      if (i) {
        EXPECT_GE(a.starts[i - 1] + a.tile - a.starts[i], 16) << "overlap shrank, dim " << dim;
      }
    }
    at::Tensor s = a.weight_sum();
    EXPECT_GT(s.min().item<float>(), 0.0f) << "uncovered voxel, dim " << dim;
  }
}

TEST(TileAxis, WindowZeroInsideMarginAndRampIsComplementary) {
  // overlap 16 >= 2 * halo 5: margin 5, ramp 6; regular tiles' ramps sum to exactly 1.
  TileAxis a = tile_axis_make(/*dim=*/200, /*tile=*/48, /*overlap=*/16, /*align=*/8, /*halo=*/5);
  EXPECT_EQ(a.margin, 5);
  EXPECT_EQ(a.ramp, 6);
  at::Tensor w1 = a.window(1);
  EXPECT_EQ(w1.slice(0, 0, 5).abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(w1.slice(0, 43, 48).abs().sum().item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(w1[24].item<float>(), 1.0f);
  at::Tensor w0 = a.window(0);
  EXPECT_FLOAT_EQ(w0[0].item<float>(), 1.0f);  // volume border: full weight
  // Overlap of tiles 0 and 1 (stride 32): w0[32 + i] + w1[i] == 1 for i in [0, 16).
  at::Tensor sum = w0.slice(0, 32, 48) + w1.slice(0, 0, 16);
  EXPECT_TRUE(torch::allclose(sum, torch::ones({16}), 1e-6, 1e-6)) << sum;
}

TEST(TileAxis, RejectsBadOverlap) {
  EXPECT_THROW(tile_axis_make(64, 32, 32, 8, 4), ValueError);
  EXPECT_THROW(tile_axis_make(64, 32, -1, 8, 4), ValueError);
}

TEST(Restore, TiledEqualsWholeVolumeWhenOverlapCoversReceptiveField) {
  auto m = tiny_method(3);
  auto rf = m->receptive_field();
  auto mult = m->size_multiple();
  int64_t rf_max = std::max({rf[0], rf[1], rf[2]});
  torch::manual_seed(11);
  at::Tensor vol = torch::randn({44, 57, 70});  // not multiples of the size multiple
  RestoreOptions whole;
  whole.precision = "fp32";  // bf16 (auto on some CPUs) rounds tiles and the whole differently
  whole.tile = 128;  // one tile covers every axis
  whole.overlap = 0;
  whole.flips = 1;   // the network once (flip averaging: the next test)
  at::Tensor ref = restore_volume(*m, vol, whole);
  // Reference from the network directly on the zero-padded volume (independent of tiling).
  auto up = [&](int64_t n, int a) { return (n + mult[a] - 1) / mult[a] * mult[a]; };
  at::Tensor padded = torch::zeros({up(44, 0), up(57, 1), up(70, 2)});
  padded.slice(0, 0, 44).slice(1, 0, 57).slice(2, 0, 70).copy_(vol);
  at::Tensor direct = m->restore(padded.unsqueeze(0).unsqueeze(0))[0][0];
  EXPECT_TRUE(torch::allclose(ref, direct.slice(0, 0, 44).slice(1, 0, 57).slice(2, 0, 70),
                              1e-5, 1e-5));

  RestoreOptions tiled;
  tiled.precision = "fp32";
  tiled.flips = 1;
  tiled.overlap = (rf_max + 1) / 2 * 2 + 2 * mult[0];  // >= receptive field, plus a ramp
  tiled.tile = tiled.overlap + 16;
  tiled.batch = 3;
  TilePlan plan = restore_plan(*m, {44, 57, 70}, tiled);
  ASSERT_GT(plan.num_tiles(), 1) << "the test needs several tiles";
  at::Tensor out = restore_volume(*m, vol, tiled);
  double err = (out - ref).abs().max().item<double>();
  EXPECT_LT(err, 1e-5) << "tile " << tiled.tile << " overlap " << tiled.overlap << " rf "
                       << rf_max;

  // Without overlap the tile borders show: the comparison above can fail.
  RestoreOptions seams = tiled;
  seams.overlap = 0;
  at::Tensor bad = restore_volume(*m, vol, seams);
  EXPECT_GT((bad - ref).abs().max().item<double>(), 1e-3);
}

// flips = N averages the network's restorations of the first N wedge-keeping flips, each
// flipped back: against the network run by hand on one unpadded tile (the dims written out here,
// not taken from wedge_keeping_flips), and with 4 the restoration turns with its input under
// every flip of the group. Other counts are refused.
TEST(Restore, FlipsAverageTheFlippedRestorations) {
  auto m = tiny_method(7);
  m->train(false);
  torch::NoGradGuard no_grad;
  const auto mult = m->size_multiple();
  const int64_t z = 2 * mult[0], y = 3 * mult[1], x = 4 * mult[2];  // no padding
  torch::manual_seed(17);
  const at::Tensor vol = torch::randn({z, y, x});
  auto net = [&](const at::Tensor& v) { return m->restore(v.unsqueeze(0).unsqueeze(0))[0][0]; };
  const at::Tensor r0 = net(vol), r1 = net(vol.flip({1})).flip({1}),
                   r2 = net(vol.flip({0, 2})).flip({0, 2}),
                   r3 = net(vol.flip({0, 1, 2})).flip({0, 1, 2});
  RestoreOptions o;
  o.precision = "fp32";
  o.tile = 128;
  o.overlap = 0;
  EXPECT_EQ(o.flips, 4);  // the default
  EXPECT_TRUE(torch::allclose(restore_volume(*m, vol, o), (r0 + r1 + r2 + r3) / 4, 1e-5, 1e-5));
  for (const std::vector<int64_t>& d :
       std::vector<std::vector<int64_t>>{{1}, {0, 2}, {0, 1, 2}}) {
    EXPECT_TRUE(torch::allclose(restore_volume(*m, vol.flip(d), o),
                                restore_volume(*m, vol, o).flip(d), 1e-5, 1e-5));
  }
  o.flips = 2;
  EXPECT_TRUE(torch::allclose(restore_volume(*m, vol, o), (r0 + r1) / 2, 1e-5, 1e-5));
  o.flips = 1;
  EXPECT_TRUE(torch::allclose(restore_volume(*m, vol, o), r0, 1e-5, 1e-5));
  EXPECT_FALSE(torch::allclose(r0, r1, 1e-3, 1e-3)) << "the network is not flip-invariant";
  for (int64_t bad : {0, 3, 8}) {
    o.flips = bad;
    EXPECT_THROW(restore_volume(*m, vol, o), ValueError) << bad;
  }
}

// A batch of tiles that does not fit the device is halved and retried, and the smaller batch is
// kept; every tile is consumed exactly once, in order; one tile that does not fit is an error.
TEST(Restore, BatchesShrinkWhenTheDeviceRunsOutOfMemory) {
  std::vector<std::pair<int64_t, int64_t>> tried, consumed;
  std::vector<std::pair<int64_t, int64_t>> shrinks;
  auto compute = [&](int64_t j0, int64_t j1) {
    tried.push_back({j0, j1});
    TORCH_CHECK_WITH(OutOfMemoryError, j1 - j0 <= 2, "CUDA out of memory (test: ", j1 - j0,
                     " tiles)");
    return std::vector<at::Tensor>{torch::arange(j0, j1)};
  };
  auto consume = [&](int64_t j0, int64_t j1, std::vector<at::Tensor>& res) {
    ASSERT_EQ(res.size(), 1u);
    EXPECT_TRUE(torch::equal(res[0], torch::arange(j0, j1)));
    consumed.push_back({j0, j1});
  };
  auto shrink = [&](int64_t from, int64_t to) { shrinks.emplace_back(from, to); };
  EXPECT_EQ(batches_shrinking_on_oom(9, 8, compute, consume, shrink, "test"), 2);
  const std::vector<std::pair<int64_t, int64_t>> want_tried{{0, 8}, {0, 4}, {0, 2}, {2, 4},
                                                            {4, 6}, {6, 8}, {8, 9}};
  const std::vector<std::pair<int64_t, int64_t>> want_consumed{{0, 2}, {2, 4}, {4, 6}, {6, 8},
                                                               {8, 9}};
  EXPECT_EQ(tried, want_tried);
  EXPECT_EQ(consumed, want_consumed);
  EXPECT_EQ(shrinks, (std::vector<std::pair<int64_t, int64_t>>{{8, 4}, {4, 2}}));

  // Batches that fit are not touched.
  consumed.clear();
  EXPECT_EQ(batches_shrinking_on_oom(5, 2, compute, consume, nullptr, "test"), 2);
  EXPECT_EQ(consumed.size(), 3u);

  // Not even one tile fits: an error that says what to change.
  auto never = [](int64_t, int64_t) -> std::vector<at::Tensor> {
    TORCH_CHECK_WITH(OutOfMemoryError, false, "CUDA out of memory (test)");
    return {};
  };
  try {
    batches_shrinking_on_oom(3, 4, never, consume, nullptr, "one tile of 96x96x96 on cuda:0");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("one tile of 96x96x96 on cuda:0: give a smaller --tile"),
              std::string::npos) << e.what();
  }
  // Other errors pass through untouched.
  auto broken = [](int64_t, int64_t) -> std::vector<at::Tensor> { throw ValueError("broken"); };
  EXPECT_THROW(batches_shrinking_on_oom(3, 4, broken, consume, nullptr, "x"), ValueError);
}

TEST(Restore, PairWithSavedHalvesAveragesThem) {
  auto m = tiny_method(5);
  torch::manual_seed(12);
  at::Tensor even = torch::randn({20, 24, 28}), odd = torch::randn({20, 24, 28});
  std::array<at::Tensor, 3> outs;
  std::vector<int64_t> order;
  for (auto& o : outs) o = torch::full({20, 24, 28}, NAN);
  auto reader = [](const at::Tensor& v) -> TileReader {
    return [v](int64_t z0, int64_t z1, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
      return v.slice(0, z0, z1).slice(1, y0, y1).slice(2, x0, x1);
    };
  };
  std::vector<SlabSink> sinks;
  for (int k = 0; k < 3; ++k) {
    sinks.push_back([&, k](int64_t z0, const at::Tensor& s) {
      if (k == 0) order.push_back(z0);
      outs[size_t(k)].slice(0, z0, z0 + s.size(0)).copy_(s);
    });
  }
  RestoreOptions o;
  o.tile = 16;
  o.overlap = 8;
  o.save_halves = true;
  restore_stream(*m, {20, 24, 28}, {reader(even), reader(odd)}, sinks, o);
  for (auto& t : outs) EXPECT_FALSE(torch::isnan(t).any().item<bool>()) << "section not written";
  EXPECT_TRUE(torch::allclose(outs[0], (outs[1] + outs[2]) * 0.5, 1e-6, 1e-6));
  for (size_t i = 1; i < order.size(); ++i) EXPECT_GT(order[i], order[i - 1]);
}

// The restore job on files, against the same restoration done by hand: the input's central-half
// statistics (computed here), the network on the normalised volume, the result back in the
// input's scale; the header's voxel size kept and the command's label added. Bad requests fail
// before anything is written.
TEST(RestoreFiles, RestoresInTheInputsScaleAndRefusesBadRequests) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("unwedge_test_restore_job_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto at_dir = [&](const std::string& f) { return (dir / f).string(); };
  auto m = tiny_method(8);
  CheckpointInfo info;
  info.norm_mode = "central";
  info.norm_fraction = 0.5;
  info.train_options = {{"patch", 16}, {"device", "cpu"}};
  checkpoint_save(at_dir("m.uwm"), *m, nullptr, info, /*overwrite=*/false);
  torch::manual_seed(13);
  const at::Tensor vol = 5.0 + 2.0 * torch::randn({20, 24, 28});
  VolumeMeta meta;
  meta.voxel_size = {3.5, 3.5, 3.5};
  mrc_write(at_dir("in.mrc"), Volume{vol, meta}, MrcWriteOptions{});

  RestoreFilesOptions o;
  o.model = at_dir("m.uwm");
  o.in = {at_dir("in.mrc")};
  o.out = {at_dir("out.mrc")};
  o.restore.tile = 16;
  o.restore.overlap = 8;
  o.device = "model";
  o.label = "restore job test";
  const RestoreFilesResult r = restore_files(o);
  EXPECT_EQ(r.method, "n2n");
  EXPECT_EQ(r.device, "cpu");
  ASSERT_EQ(r.written, std::vector<std::string>{at_dir("out.mrc")});

  const at::Tensor c = vol.slice(0, 5, 15).slice(1, 6, 18).slice(2, 7, 21).to(torch::kDouble);
  const double mean = c.mean().item<double>(), sd = c.std(/*unbiased=*/false).item<double>();
  RestoreOptions ro;
  ro.tile = 16;
  ro.overlap = 8;
  const at::Tensor want = restore_volume(*m, (vol - mean) / sd, ro) * sd + mean;
  MrcFile f(at_dir("out.mrc"));
  EXPECT_TRUE(torch::allclose(f.read().data, want, 1e-4, 1e-4));
  EXPECT_FLOAT_EQ(f.meta().voxel_size[0], 3.5);
  EXPECT_NE(f.meta().labels.back().find("restore job test"), std::string::npos);

  auto fails = [&](RestoreFilesOptions bad, const std::string& text) {
    try {
      restore_files(bad);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  fails(o, "exists");  // out.mrc is there and overwrite is off
  RestoreFilesOptions two = o;
  two.in.push_back(at_dir("in.mrc"));
  two.overwrite = true;
  fails(two, "--out lists 1 files for 2 inputs");
  RestoreFilesOptions mixed = o;
  mixed.even = {at_dir("in.mrc")};
  fails(mixed, "not both");
  info.domain = "tilt-series";
  checkpoint_save(at_dir("ts.uwm"), *m, nullptr, info, false);
  RestoreFilesOptions ts = o;
  ts.model = at_dir("ts.uwm");
  ts.out = {at_dir("ts_out.mrc")};
  fails(ts, "tilt-series-domain model");
  EXPECT_FALSE(std::filesystem::exists(at_dir("ts_out.mrc")));
  std::filesystem::remove_all(dir);
}

// The streaming accumulator moves the sections it keeps to its front in place (no second buffer
// of a large tomogram's slab): the same values as a fresh copy, for shifts shorter and longer than
// the part kept, and for the first row (undefined) and a shape change.
TEST(Restore, AccumulatorRebaseInPlaceMatchesAFreshCopy) {
  torch::manual_seed(3);
  for (int64_t shift : {0, 1, 2, 3, 5, 6, 9}) {
    at::Tensor acc = torch::randn({6, 3, 4});
    const at::Tensor before = acc.clone();
    at::Tensor expect = torch::zeros({6, 3, 4});
    for (int64_t i = 0; i + shift < 6; ++i) expect[i] = before[i + shift];
    const void* storage = acc.data_ptr();
    at::Tensor out = tile_accumulator_rebase(acc, 10, 10 + shift, 6, 3, 4);
    EXPECT_TRUE(torch::equal(out, expect)) << "shift " << shift;
    EXPECT_EQ(out.data_ptr(), storage) << "shift " << shift << ": not rebased in place";
  }
  EXPECT_TRUE(torch::equal(tile_accumulator_rebase({}, 0, 4, 2, 3, 4), torch::zeros({2, 3, 4})));
  at::Tensor small = torch::randn({4, 3, 4});
  at::Tensor grown = tile_accumulator_rebase(small, 0, 1, 6, 3, 4);
  ASSERT_EQ(grown.sizes(), at::IntArrayRef({6, 3, 4}));
  EXPECT_TRUE(torch::equal(grown.slice(0, 0, 3), small.slice(0, 1, 4)));
  EXPECT_TRUE(torch::equal(grown.slice(0, 3, 6), torch::zeros({3, 3, 4})));
}
