// Trainer pieces: sampler (validation band, masks, shape errors), normalisation, schedule,
// budget, training log, checkpoints (round trip, corrupt and truncated files), the Trainer's
// step/validate/save and exact resume.
#include <chrono>
#include <csignal>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"
#include "unwedge/io/mrc.h"
#include "unwedge/model/checkpoint.h"
#include "unwedge/model/normalize.h"
#include "unwedge/train/budget.h"
#include "unwedge/train/sampler.h"
#include "unwedge/train/schedule.h"
#include "unwedge/train/train_job.h"
#include "unwedge/train/train_log.h"
#include "unwedge/train/trainer.h"

#include "temp_dir.h"

using namespace unwedge;
namespace fs = std::filesystem;

namespace {

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("unwedge_test_train") {}
};

std::string read_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

SampleSource pair_source(int64_t z, int64_t y, int64_t x) {
  SampleSource s;
  s.a = torch::randn({z, y, x});
  s.b = torch::randn({z, y, x});
  s.name = "test";
  return s;
}

TrainInput train_pair(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  at::Tensor clean = torch::randn({n, n, n});
  TrainInput t;
  t.a.data = clean + 0.5 * torch::randn({n, n, n});
  t.b.data = clean + 0.5 * torch::randn({n, n, n});
  t.name = "pair";
  return t;
}

TrainOptions tiny_train_options() {
  TrainOptions o;
  o.method = "n2n";
  o.method_options = {{"depth", 1}, {"base_channels", 4}, {"convs_per_level", 1}};
  o.steps = 6;
  o.batch = 2;
  o.sampler.patch = 8;
  o.sampler.val_fraction = 0.25;
  o.val_every = 2;
  o.val_batches = 1;
  o.log_every = 1;
  o.checkpoint_every = 0;
  o.schedule.warmup = 2;
  o.seed = 42;
  return o;
}

}  // namespace

TEST(Sampler, ValidationBandNeverOverlapsTrainingPatches) {
  torch::manual_seed(1);
  SamplerOptions so;
  so.patch = 16;
  so.val_fraction = 0.2;
  SubtomoSampler s({pair_source(40, 90, 50), pair_source(32, 64, 48)}, so);
  at::Generator gen = at::detail::createCPUGenerator(7);
  auto train = s.draw(4000, Split::train, gen);
  auto val = s.draw(500, Split::val, gen);
  std::vector<int64_t> ny{90, 64}, nz{40, 32}, nx{50, 48};
  int64_t seen_tomo1 = 0, max_end = 0;
  for (const auto& p : train) {
    YBand b = s.val_band(p.tomo);
    ASSERT_LE(p.y + 16, b.y0) << "training patch reaches into the validation band";
    ASSERT_GE(p.y, 0);
    ASSERT_LE(p.z + 16, nz[size_t(p.tomo)]);
    ASSERT_LE(p.x + 16, nx[size_t(p.tomo)]);
    seen_tomo1 += p.tomo == 1;
    max_end = std::max(max_end, p.y + 16 - (p.tomo == 0 ? s.val_band(0).y0 : 1000));
  }
  EXPECT_GT(seen_tomo1, 0);
  EXPECT_EQ(max_end, 0) << "training patches should reach the band's edge";
  for (const auto& p : val) {
    YBand b = s.val_band(p.tomo);
    ASSERT_GE(p.y, b.y0);
    ASSERT_LE(p.y + 16, b.y1);
  }
  // Band height: max(patch, 0.2 * Y) at the top of Y.
  EXPECT_EQ(s.val_band(0).y0, 90 - 18);
  EXPECT_EQ(s.val_band(1).y0, 64 - 16);
}

TEST(Sampler, SameGeneratorStateSamePositions) {
  SamplerOptions so;
  so.patch = 8;
  SubtomoSampler s({pair_source(20, 30, 20)}, so);
  at::Generator g1 = at::detail::createCPUGenerator(3), g2 = at::detail::createCPUGenerator(3);
  auto a = s.draw(50, Split::train, g1), b = s.draw(50, Split::train, g2);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].z, b[i].z);
    EXPECT_EQ(a[i].y, b[i].y);
    EXPECT_EQ(a[i].x, b[i].x);
  }
}

TEST(Sampler, ExtractCutsTheRightBoxes) {
  SamplerOptions so;
  so.patch = 6;
  so.val_fraction = 0;
  SampleSource src = pair_source(12, 13, 14);
  SubtomoSampler s({src}, so);
  std::vector<PatchPos> pos{{0, 1, 2, 3}, {0, 6, 7, 8}};
  PatchBatch b = s.extract(pos);
  ASSERT_EQ(b.a.sizes(), (std::vector<int64_t>{2, 1, 6, 6, 6}));
  auto A = src.a.accessor<float, 3>();
  auto B = src.b.accessor<float, 3>();
  for (size_t i = 0; i < pos.size(); ++i) {
    for (int z = 0; z < 6; ++z)
      for (int y = 0; y < 6; ++y)
        for (int x = 0; x < 6; ++x) {
          ASSERT_EQ(b.a[int64_t(i)][0][z][y][x].item<float>(),
                    A[pos[i].z + z][pos[i].y + y][pos[i].x + x]);
          ASSERT_EQ(b.b[int64_t(i)][0][z][y][x].item<float>(),
                    B[pos[i].z + z][pos[i].y + y][pos[i].x + x]);
        }
  }
}

TEST(Sampler, MaskRestrictsPatchCentres) {
  SamplerOptions so;
  so.patch = 8;
  so.val_fraction = 0;
  SampleSource src = pair_source(24, 24, 40);
  src.mask = torch::zeros({24, 24, 40}, torch::kBool);
  src.mask.slice(2, 24, 40).fill_(true);  // specimen only at x >= 24
  SubtomoSampler s({src}, so);
  at::Generator gen = at::detail::createCPUGenerator(9);
  for (const auto& p : s.draw(1000, Split::train, gen)) {
    // Corners lie on a grid (spacing 1 here) plus jitter: the centre must be in the mask.
    ASSERT_GE(p.x + 4, 24) << "patch centre outside the mask";
  }
}

TEST(Sampler, ClearErrors) {
  SamplerOptions so;
  so.patch = 16;
  SampleSource bad = pair_source(20, 40, 20);
  bad.b = torch::randn({20, 40, 21});
  try {
    SubtomoSampler s({bad}, so);
    FAIL() << "mismatched halves accepted";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("20 x 40 x 21"), std::string::npos) << e.what();
  }
  so.patch = 32;
  try {
    SubtomoSampler s({pair_source(20, 40, 40)}, so);
    FAIL() << "patch larger than the volume accepted";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("patch 32"), std::string::npos) << e.what();
  }
  so.patch = 16;
  so.val_fraction = 0.1;
  EXPECT_THROW(SubtomoSampler({pair_source(20, 24, 20)}, so), ShapeError);  // no room for band
}

TEST(Normalize, CentralAndPercentile) {
  torch::manual_seed(2);
  at::Tensor v = torch::randn({40, 40, 40}, torch::kDouble) * 3.0 + 5.0;
  v.slice(0, 0, 5).fill_(1000.0);  // outside the central half: ignored
  NormStats s = norm_stats_compute(v.to(torch::kFloat), NormMode::central, 0.5, "v");
  // Independent reference: plain sums over the central box [10, 30)^3 in double.
  auto a = v.accessor<double, 3>();
  double sum = 0, sum2 = 0, n = 0;
  for (int z = 10; z < 30; ++z)
    for (int y = 10; y < 30; ++y)
      for (int x = 10; x < 30; ++x) {
        sum += a[z][y][x];
        sum2 += a[z][y][x] * a[z][y][x];
        n += 1;
      }
  double mean = sum / n, sd = std::sqrt(sum2 / n - mean * mean);
  EXPECT_NEAR(s.mean, mean, 1e-4);
  EXPECT_NEAR(s.std, sd, 1e-4);
  NormStats p = norm_stats_compute(v.to(torch::kFloat), NormMode::percentile, 0.5, "v");
  EXPECT_NEAR(p.mean, 5.0, 0.1);  // 8000 normal samples: median within 0.1 of 5
  EXPECT_NEAR(p.std, 3.0, 0.15);
  EXPECT_THROW(norm_stats_compute(torch::ones({8, 8, 8}), NormMode::central, 0.5, "c"),
               ValueError);
  at::Tensor x = torch::randn({4, 4, 4});
  EXPECT_TRUE(torch::allclose(norm_invert(norm_apply(x, s), s), x, 1e-5, 1e-5));
}

TEST(Schedule, WarmupThenCosine) {
  LrSchedule s{/*lr=*/1.0, /*warmup=*/10, /*final_fraction=*/0.1};
  EXPECT_DOUBLE_EQ(lr_at(s, 0, 200), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(s, 9, 200), 1.0);
  EXPECT_NEAR(lr_at(s, 199, 200), 0.1, 1e-12);
  // Midpoint of the cosine: (1 + 0.1) / 2.
  EXPECT_NEAR(lr_at(s, 10 + 189 / 2, 200), 0.55, 0.01);
  for (int64_t i = 10; i < 199; ++i) EXPECT_GE(lr_at(s, i, 200), lr_at(s, i + 1, 200));
}

TEST(Train, ResumedRunMatchesUninterruptedRun) {
  TempDir dir;
  std::vector<TrainInput> in{train_pair(32, 5)};
  TrainOptions o = tiny_train_options();
  train_run(o, in, dir / "a.uwm", dir / "a.jsonl", /*resume=*/false, /*overwrite=*/false);
  TrainOptions first = o;
  first.stop_after = 3;
  train_run(first, in, dir / "b.uwm", dir / "b.jsonl", false, false);
  LoadedCheckpoint mid = checkpoint_load(dir / "b.uwm");
  EXPECT_EQ(mid.info.step, 3);
  EXPECT_FALSE(mid.info.finished);
  train_run(o, in, dir / "b.uwm", dir / "b.jsonl", /*resume=*/true, false);

  LoadedCheckpoint a = checkpoint_load(dir / "a.uwm"), b = checkpoint_load(dir / "b.uwm");
  EXPECT_EQ(a.info.step, 6);
  EXPECT_EQ(b.info.step, 6);
  EXPECT_TRUE(b.info.finished);
  auto pa = a.method->parameters(), pb = b.method->parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i << " differs after resume";
  }
  // The weights moved (so equality above is not trivially true).
  LoadedCheckpoint m2 = checkpoint_load(dir / "a.uwm");
  EXPECT_FALSE(torch::equal(mid.method->parameters()[0], pa[0]));
  // History and log: one point per step, validation every 2 steps.
  ASSERT_EQ(b.info.history.size(), 6u);
  EXPECT_GE(b.info.history[1].val_loss, 0);
  for (size_t i = 0; i < 6; ++i) EXPECT_DOUBLE_EQ(a.info.history[i].loss, b.info.history[i].loss) << "step " << i + 1;
  std::ifstream log(dir / "b.jsonl");
  int lines = 0;
  for (std::string l; std::getline(log, l);) ++lines;
  EXPECT_EQ(lines, 6);
}

// One stop request for every caller (core/atomic_file.h): set during a run (here from the
// progress report, as the Python package's Ctrl-C does), the run ends at that step boundary with
// its checkpoint, and the result names the request.
TEST(Train, StopRequestEndsTheRunAtAStepBoundaryWithACheckpoint) {
  TempDir dir;
  std::vector<TrainInput> in{train_pair(32, 5)};
  TrainOptions o = tiny_train_options();
  o.steps = 20;
  stop_request_clear();
  ProgressFn progress = [](const ProgressReport& r) {
    if (!r.final && r.done >= 3) stop_request(SIGINT);
  };
  Trainer t(o, in, TrainOutputs{dir / "m.uwm", dir / "m.jsonl"}, nullptr, progress);
  const TrainResult r = t.run();
  const int flag = stop_requested();
  stop_request_clear();
  EXPECT_EQ(r.stopped_by_signal, SIGINT);
  EXPECT_EQ(flag, SIGINT);
  EXPECT_EQ(r.steps, 3);
  LoadedCheckpoint ck = checkpoint_load(dir / "m.uwm");
  EXPECT_EQ(ck.info.step, 3);
  EXPECT_FALSE(ck.info.finished);
  // The first request wins; clearing it lets the next run go to its end.
  stop_request(SIGTERM);
  stop_request(SIGINT);
  EXPECT_EQ(stop_requested(), SIGTERM);
  stop_request_clear();
  Trainer t2(o, in, TrainOutputs{dir / "m.uwm", dir / "m.jsonl", /*resume=*/true}, nullptr, {});
  EXPECT_EQ(t2.run().steps, 20);
}

// Methods with auxiliary networks (a discriminator, an encoder) get a validation loss too: their
// loss() is pure, so the fixed validation set is scored with the same call.
TEST(Train, ValidationLossForMethodsWithAuxiliaryNetworks) {
  const std::vector<std::pair<std::string, nlohmann::json>> cases{
      {"cryogen-map", {{"d_channels", 4}, {"d_levels", 2}}},
      {"cryogen-ot", {{"encoder_channels", 4}, {"encoder_features", 8}, {"ot_points", 128}}}};
  for (const auto& [name, aux_options] : cases) {
    TempDir dir;
    std::vector<TrainInput> in{train_pair(48, 8)};
    TrainOptions o = tiny_train_options();
    o.method = name;
    o.method_options = {{"depth", 1}, {"base_channels", 4}, {"convs_per_level", 1}};
    o.method_options.update(aux_options);
    o.sampler.patch = 24;
    o.steps = 4;
    TrainResult r = train_run(o, in, dir / "m.uwm", dir / "m.jsonl", false, false);
    EXPECT_TRUE(std::isfinite(r.last_val_loss) && r.last_val_loss >= 0) << name;
    LoadedCheckpoint ck = checkpoint_load(dir / "m.uwm");
    ASSERT_EQ(ck.info.history.size(), 4u) << name;
    EXPECT_LT(ck.info.history[0].val_loss, 0) << name << ": validated off the val_every grid";
    for (size_t i : {1, 3}) EXPECT_GE(ck.info.history[i].val_loss, 0) << name << " step " << i + 1;
  }
}

TEST(Train, CheckpointRoundTripAndCorruptFiles) {
  TempDir dir;
  std::vector<TrainInput> in{train_pair(32, 6)};
  TrainOptions o = tiny_train_options();
  o.steps = 2;
  train_run(o, in, dir / "m.uwm", dir / "m.jsonl", false, false);
  LoadedCheckpoint ck = checkpoint_load(dir / "m.uwm");
  EXPECT_EQ(ck.method->name(), "n2n");
  EXPECT_EQ(ck.info.seed, 42u);
  ASSERT_EQ(ck.info.norm.size(), 1u);
  EXPECT_GT(ck.info.norm[0].std, 0.5);
  EXPECT_EQ(ck.info.train_options.at("patch"), 8);
  EXPECT_TRUE(ck.has_optimizer);

  std::string bytes = read_bytes(dir / "m.uwm");
  {
    std::ofstream f(dir / "trunc.uwm", std::ios::binary);
    f << bytes.substr(0, bytes.size() / 2);
  }
  {
    std::ofstream f(dir / "junk.uwm", std::ios::binary);
    f << "this is not a model";
  }
  EXPECT_THROW(checkpoint_load(dir / "trunc.uwm"), FormatError);
  EXPECT_THROW(checkpoint_load(dir / "junk.uwm"), FormatError);
  EXPECT_THROW(checkpoint_load(dir / "absent.uwm"), IoError);
  // Resuming from a corrupt file fails and leaves it as it was.
  std::string before = read_bytes(dir / "trunc.uwm");
  EXPECT_THROW(train_run(o, in, dir / "trunc.uwm", dir / "t.jsonl", true, false), FormatError);
  EXPECT_EQ(read_bytes(dir / "trunc.uwm"), before);
}

// A checkpoint written before the network options lowpass_skip and zero_head existed (its options
// lack them) loads as the identity-skip network it holds, although n2n's default skip is now a
// low-pass; a cryowgen-langevin one from before denoiser_noise keeps its absolute noise level;
// options this version does not know give a FormatError naming the file.
TEST(Checkpoint, OptionsAddedLaterTakeTheValueThatRebuildsAnOldNetwork) {
  TempDir dir;
  torch::manual_seed(1);
  auto old = method_create("n2n", {{"depth", 1}, {"base_channels", 4}, {"lowpass_skip", 0.0}});
  // A checkpoint of `method` (its weights) with the given options, as an older version wrote it.
  auto write_legacy = [&](const std::string& path, nlohmann::json options, Method* method = nullptr) {
    if (method == nullptr) method = old.get();
    torch::serialize::OutputArchive ar, ms;
    ar.write("format", c10::IValue(std::string(kCheckpointFormat)));
    ar.write("format_version", c10::IValue(kCheckpointVersion));
    ar.write("method", c10::IValue(method->name()));
    ar.write("method_options", c10::IValue(options.dump()));
    ar.write("info", c10::IValue(checkpoint_info_to_json(CheckpointInfo{}).dump()));
    method->save(ms);
    ar.write("method_state", ms);
    ar.save_to(path);
  };
  nlohmann::json options = old->options_json();
  ASSERT_EQ(options.erase("lowpass_skip"), 1u);
  ASSERT_EQ(options.erase("zero_head"), 1u);
  write_legacy(dir / "old.uwm", options);
  EXPECT_DOUBLE_EQ(method_create("n2n")->options_json().at("lowpass_skip").get<double>(), 0.1);
  LoadedCheckpoint ck = checkpoint_load(dir / "old.uwm");
  EXPECT_DOUBLE_EQ(ck.method->options_json().at("lowpass_skip").get<double>(), 0.0);
  auto x = torch::randn({1, 1, 8, 8, 8});
  EXPECT_TRUE(torch::equal(ck.method->restore(x), old->restore(x)));

  // cryowgen-langevin's denoiser noise was in normalised units before denoiser_noise existed.
  auto lang = method_create("cryowgen-langevin", {{"depth", 1}, {"base_channels", 4}});
  EXPECT_EQ(lang->options_json().at("denoiser_noise"), "relative");
  nlohmann::json lang_options = lang->options_json();
  ASSERT_EQ(lang_options.erase("denoiser_noise"), 1u);
  write_legacy(dir / "old_langevin.uwm", lang_options, lang.get());
  EXPECT_EQ(checkpoint_load(dir / "old_langevin.uwm").method->options_json().at("denoiser_noise"), "absolute");

  options["adv_weight"] = 0.1;  // an option of an older cryogen-map, unknown to n2n
  write_legacy(dir / "foreign.uwm", options);
  try {
    checkpoint_load(dir / "foreign.uwm");
    ADD_FAILURE() << "an unknown option was accepted";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("foreign.uwm"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("adv_weight"), std::string::npos) << e.what();
  }
}

TEST(Train, BadInputsFailBeforeTouchingOutputs) {
  TempDir dir;
  std::vector<TrainInput> in{train_pair(32, 7)};
  TrainOptions o = tiny_train_options();
  o.steps = 1;
  train_run(o, in, dir / "m.uwm", dir / "m.jsonl", false, false);
  const std::string model = read_bytes(dir / "m.uwm");
  TrainOptions big = o;
  big.sampler.patch = 40;  // larger than the 32^3 volume
  EXPECT_THROW(train_run(big, in, dir / "m.uwm", dir / "m.jsonl", false, true), ShapeError);
  EXPECT_EQ(read_bytes(dir / "m.uwm"), model);
  EXPECT_THROW(train_run(o, in, dir / "m.uwm", dir / "m.jsonl", false, false), ExistsError);
  TrainOptions none = o;
  none.steps = 0;
  EXPECT_THROW(train_run(none, in, dir / "m.uwm", dir / "x.jsonl", false, true), ValueError);

  // File-level checks: list lengths, shapes, NaNs.
  Volume v, w;
  v.data = torch::randn({16, 16, 16});
  w.data = torch::randn({16, 16, 17});
  MrcWriteOptions wo;
  mrc_write(dir / "e.mrc", v, wo);
  mrc_write(dir / "o.mrc", w, wo);
  // A NaN patched into a valid float32 file (mrc_write refuses NaNs): voxel 0 of the data.
  mrc_write(dir / "nan.mrc", v, wo);
  {
    std::fstream f(dir / "nan.mrc", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(1024);
    const float nan = NAN;
    f.write(reinterpret_cast<const char*>(&nan), sizeof nan);
  }
  EXPECT_THROW(train_inputs_read({dir / "e.mrc"}, {}, {}, {}, false, 0.3, false), ValueError);
  try {
    train_inputs_read({dir / "e.mrc"}, {dir / "o.mrc"}, {}, {}, false, 0.3, false);
    FAIL() << "mismatched halves accepted";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("o.mrc"), std::string::npos) << e.what();
  }
  try {
    train_inputs_read({}, {}, {dir / "nan.mrc"}, {}, false, 0.3, false);
    FAIL() << "NaN input accepted";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
  }
}

// Tilt-series domain: patches one section deep (patch_z = 1) are pieces of single tilt images,
// reach every section, keep out of the Y validation band and cut exactly the right pixels
// (reference: the patch read back pixel by pixel from the source).
TEST(Sampler, DepthOnePatchesAreSingleSections) {
  SamplerOptions so;
  so.patch = 8;
  so.patch_z = 1;
  so.val_fraction = 0.25;
  SampleSource src;
  src.a = torch::arange(5 * 40 * 24, torch::kFloat).view({5, 40, 24});  // 5 "tilts" of 40 x 24
  src.name = "series";
  SubtomoSampler s({src}, so);
  EXPECT_EQ(s.patch_depth(), 1);
  EXPECT_EQ(s.val_band(0).y0, 30);  // max(8, 0.25 * 40) = 10 rows held out
  at::Generator gen = at::detail::createCPUGenerator(5);
  auto pos = s.draw(2000, Split::train, gen);
  std::vector<int> seen(5, 0);
  for (const auto& p : pos) {
    ASSERT_GE(p.z, 0);
    ASSERT_LE(p.z, 4);
    ASSERT_LE(p.y + 8, 30) << "training patch reaches into the validation band";
    ASSERT_LE(p.x + 8, 24);
    seen[size_t(p.z)]++;
  }
  for (int z = 0; z < 5; ++z) EXPECT_GT(seen[size_t(z)], 0) << "section " << z << " never drawn";
  for (const auto& p : s.draw(200, Split::val, gen)) {
    ASSERT_GE(p.y, 30);
    ASSERT_LE(p.y + 8, 40);
  }
  std::vector<PatchPos> cut{{0, 3, 5, 7}};
  PatchBatch b = s.extract(cut);
  ASSERT_EQ(b.a.sizes(), (std::vector<int64_t>{1, 1, 1, 8, 8}));
  auto A = src.a.accessor<float, 3>();
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x) ASSERT_EQ(b.a[0][0][0][y][x].item<float>(), A[3][5 + y][7 + x]);
  // Epoch size = candidate corners (5 x 23 x 17 on a grid of 1) x grid^3 / patch volume, with
  // the patch volume 1 x 8 x 8 (a cube's 8^3 would make epochs 8x too short).
  EXPECT_EQ(s.patches_per_epoch(), std::llround(5.0 * 23 * 17 / (1 * 8 * 8)));
  so.patch_z = 6;
  try {
    SubtomoSampler bad({src}, so);
    FAIL() << "patch deeper than the series accepted";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("patch 6 x 8 x 8"), std::string::npos) << e.what();
  }
}

// The log the trainer writes is the log the report reads: every field of a record comes back
// as written (doubles exactly: JSON keeps 17 significant digits), a resumed run appends, and a
// method term may not reuse a trainer key.
TEST(TrainLog, WritesThenReadsBackTheSameValues) {
  TempDir dir;
  TrainLogRecord a;
  a.step = 10;
  a.loss = 0.1234567890123456789;
  a.lr = 3.999e-4;
  a.steps_per_s = 2.5;
  a.elapsed_s = 12.75;
  a.terms = {{"d_loss", 1.0 / 3.0}, {"energy", -2.5e-7}};
  TrainLogRecord b;
  b.step = 20;
  b.loss = -0.75;  // cryowgen's diversity term can make a loss negative
  b.val_loss = -0.5;
  b.lr = 1e-5;
  {
    TrainLog log(dir / "t.jsonl", /*append=*/false);
    log.write(a);
  }
  {
    TrainLog log(dir / "t.jsonl", /*append=*/true);
    log.write(b);
  }
  std::vector<TrainLogRecord> back = TrainLog::read(dir / "t.jsonl");
  ASSERT_EQ(back.size(), 2u);
  EXPECT_TRUE(back[0] == a);
  EXPECT_TRUE(back[1] == b);
  EXPECT_FALSE(back[0].val_loss.has_value());
  EXPECT_EQ(back[1].val_loss.value(), -0.5);
  EXPECT_EQ(back[0].terms.at("d_loss"), 1.0 / 3.0);
  {
    TrainLog log(dir / "t.jsonl", /*append=*/false);  // a fresh run starts afresh
    log.write(b);
  }
  EXPECT_EQ(TrainLog::read(dir / "t.jsonl").size(), 1u);
  TrainLogRecord bad = a;
  bad.terms["lr"] = 1;
  TrainLog log(dir / "u.jsonl", false);
  EXPECT_THROW(log.write(bad), ValueError);
  EXPECT_THROW(TrainLog(dir / "no/such/dir/t.jsonl", false), IoError);
}

// A step budget is spent at its step count; a time budget on its clock: sleeping spends wall
// time but (almost) no CPU time, and burning CPU spends both.
TEST(Budget, StopsOnTheStepCountAndOnTheWallAndCpuClocks) {
  Budget steps = Budget::of_steps(5);
  EXPECT_FALSE(steps.timed());
  EXPECT_FALSE(steps.spent(4));
  EXPECT_TRUE(steps.spent(5));
  EXPECT_EQ(steps.planned_steps(), 5);
  EXPECT_THROW(Budget::of_steps(0), ValueError);
  EXPECT_THROW(Budget::of_minutes(0, BudgetClock::wall), ValueError);
  // An infinite budget would never end (issue 19: --minutes inf trained until killed).
  EXPECT_THROW(Budget::of_minutes(std::numeric_limits<double>::infinity(), BudgetClock::wall),
               ValueError);
  EXPECT_THROW(Budget::of_minutes(std::nan(""), BudgetClock::cpu), ValueError);
  EXPECT_THROW(budget_clock_parse("sundial"), ValueError);

  const double budget_s = 0.05;
  Budget wall = Budget::of_minutes(budget_s / 60.0, BudgetClock::wall);
  Budget cpu = Budget::of_minutes(budget_s / 60.0, BudgetClock::cpu);
  EXPECT_TRUE(wall.timed());
  EXPECT_FALSE(wall.spent(0));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(wall.spent(0)) << "200 ms of sleep left a 50 ms wall budget unspent";
  EXPECT_GE(wall.elapsed_s(), 0.2);
  EXPECT_FALSE(cpu.spent(0)) << "sleeping spent " << cpu.elapsed_s() << " s of CPU time";
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  volatile double sink = 0;
  while (!cpu.spent(0) && std::chrono::steady_clock::now() < give_up) {
    for (int i = 0; i < 100000; ++i) sink = sink + std::sqrt(double(i));
  }
  EXPECT_TRUE(cpu.spent(0)) << "20 s of busy loop did not spend 50 ms of CPU time";
  // Seconds of earlier sessions count: a resumed run with the budget used up is spent at once.
  Budget resumed = Budget::of_minutes(1.0, BudgetClock::wall, /*spent_s=*/60.0, 100);
  EXPECT_TRUE(resumed.spent(0));
  EXPECT_EQ(resumed.planned_steps(), 100);
}

// A time budget of 2.1 steps stops after 2 steps: a third would overrun it by 0.9 of a step (the
// budget used to start it, since 0.2 s < 0.21 s, and end at 0.3 s).
TEST(Budget, StopsBeforeAStepThatWouldOverrunByMoreThanHalfAStep) {
  Budget wall = Budget::of_minutes(0.21 / 60.0, BudgetClock::wall);
  int64_t step = 0;
  while (!wall.spent(step) && step < 100) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    wall.observe(++step);
  }
  EXPECT_EQ(step, 2);
  EXPECT_LT(wall.elapsed_s(), 0.21 + 0.05) << "overran by more than half a step";
}

// Trainer: validate() scores the fixed validation set without moving a weight (twice the same
// value), step() moves the weights and counts, save() writes the checkpoint of the steps done.
TEST(Trainer, ValidateIsPureStepTrainsAndSaveWritesTheStepsDone) {
  TempDir dir;
  std::vector<TrainInput> in{train_pair(32, 9)};
  TrainOptions o = tiny_train_options();
  Trainer t(o, in, TrainOutputs{dir / "m.uwm", dir / "m.jsonl"});
  auto copy = [](const std::vector<torch::Tensor>& ps) {
    std::vector<torch::Tensor> out;
    for (const auto& p : ps) out.push_back(p.detach().clone());
    return out;
  };
  const auto w0 = copy(t.method().parameters());
  const double v1 = t.validate(), v2 = t.validate();
  EXPECT_GT(v1, 0);
  EXPECT_EQ(v1, v2);
  auto same = [](const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
    for (size_t i = 0; i < a.size(); ++i) {
      if (!torch::equal(a[i], b[i])) return false;
    }
    return true;
  };
  EXPECT_TRUE(same(w0, t.method().parameters())) << "validate() moved a weight";
  EXPECT_TRUE(std::isfinite(t.step()));
  EXPECT_TRUE(std::isfinite(t.step()));
  EXPECT_EQ(t.steps_done(), 2);
  EXPECT_FALSE(same(w0, t.method().parameters())) << "step() moved no weight";
  EXPECT_NE(t.validate(), v1);
  t.save(/*finished=*/false);
  LoadedCheckpoint ck = checkpoint_load(dir / "m.uwm");
  EXPECT_EQ(ck.info.step, 2);
  EXPECT_FALSE(ck.info.finished);
  EXPECT_TRUE(same(ck.method->parameters(), t.method().parameters()));
}

// The training job's checks, before any output is touched: the tilt-series domain needs a method
// that trains on tilt images (named from the registry), its angles, and no tomograms; it forces
// the 2D network and depth-1 patches and, without a tilt range, a wedge spanning the angles; the
// angles and the sections must agree.
TEST(TrainFiles, TiltSeriesDomainIsCheckedAndSetUp) {
  TempDir dir;
  Volume series;
  series.data = torch::randn({5, 24, 20});
  mrc_write(dir / "ts.mrc", series, MrcWriteOptions{});
  {
    std::ofstream f(dir / "ts.tlt");
    f << "-50\n-25\n0\n25\n55\n";
  }
  {
    std::ofstream f(dir / "short.tlt");
    f << "-50\n0\n50\n";
  }
  TrainFilesOptions f;
  f.train.domain = "tilt-series";
  f.train.method = "n2v";
  f.tilt_series = dir / "ts.mrc";
  f.angles = dir / "ts.tlt";
  f.wedge_from_angles = true;
  f.model = dir / "m.uwm";
  const TrainFilesPlan plan = train_files_prepare(f);
  EXPECT_EQ(plan.train.method_options.at("planar"), true);
  EXPECT_EQ(plan.train.sampler.patch_z, 1);
  EXPECT_EQ(plan.train.wedge.tilt_min_deg, -50);
  EXPECT_EQ(plan.train.wedge.tilt_max_deg, 55);
  EXPECT_EQ(plan.outputs.log, dir / "m.train.jsonl");
  ASSERT_EQ(plan.inputs.size(), 1u);
  EXPECT_EQ(plan.inputs[0].a.nz(), 5);
  EXPECT_FALSE(fs::exists(dir / "m.uwm"));
  EXPECT_FALSE(fs::exists(dir / "m.train.jsonl"));

  auto message = [](const TrainFilesOptions& bad) {
    try {
      train_files_prepare(bad);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  TrainFilesOptions n2n = f;
  n2n.train.method = "n2n";
  EXPECT_NE(message(n2n).find("does not train on tilt images (methods that do: n2v)"),
            std::string::npos) << message(n2n);
  TrainFilesOptions short_angles = f;
  short_angles.angles = dir / "short.tlt";
  EXPECT_NE(message(short_angles).find("has 3 angles but"), std::string::npos);
  TrainFilesOptions with_tomogram = f;
  with_tomogram.in = {dir / "ts.mrc"};
  EXPECT_NE(message(with_tomogram).find("not --in"), std::string::npos);
  TrainFilesOptions tomogram;
  tomogram.train.method = "n2v";
  tomogram.angles = dir / "ts.tlt";
  tomogram.in = {dir / "ts.mrc"};
  tomogram.model = dir / "t.uwm";
  EXPECT_NE(message(tomogram).find("need --domain tilt-series"), std::string::npos);
}

// Per-tomogram tilt ranges (issue 21): each sample of a batch carries its own tomogram's range;
// one shared entry when every tomogram has the run's.
TEST(Trainer, BatchWedgesFollowEachPatchsTomogram) {
  const MethodWedge run{-60, 60, false}, a{-50, 65, false}, b{-40, 40, false};
  const std::vector<MethodWedge> shared = batch_wedges(run, {}, {1, 0, 1});
  ASSERT_EQ(shared.size(), 1u);
  EXPECT_EQ(shared[0].tilt_min_deg, -60);
  const std::vector<MethodWedge> own = batch_wedges(run, {a, b}, {1, 0, 1});
  ASSERT_EQ(own.size(), 3u);
  EXPECT_EQ(own[0].tilt_min_deg, -40);
  EXPECT_EQ(own[1].tilt_max_deg, 65);
  EXPECT_EQ(own[2].tilt_max_deg, 40);
}

// The trainer keeps each input's range (stored with the model) and refuses an impossible one,
// naming the tomogram.
TEST(Trainer, PerTomogramTiltRangesAreStoredAndChecked) {
  TempDir dir;
  std::vector<TrainInput> in{train_pair(32, 9), train_pair(32, 10)};
  in[0].wedge = MethodWedge{-50, 65, false};
  in[1].name = "second";
  TrainOptions o = tiny_train_options();
  o.wedge = {-50, 65, false};
  {
    Trainer t(o, in, TrainOutputs{dir / "m.uwm", dir / "m.jsonl"});
    EXPECT_TRUE(std::isfinite(t.step()));
    t.save(/*finished=*/false);
  }
  LoadedCheckpoint ck = checkpoint_load(dir / "m.uwm");
  EXPECT_TRUE(ck.info.input_wedges.empty());  // the second's unset: the run's, the same for all
  in[1].wedge = MethodWedge{-30, 60, false};
  {
    Trainer t(o, in, TrainOutputs{dir / "m2.uwm", dir / "m2.jsonl"});
    t.save(/*finished=*/false);
  }
  ck = checkpoint_load(dir / "m2.uwm");
  ASSERT_EQ(ck.info.input_wedges.size(), 2u);
  EXPECT_EQ(ck.info.input_wedges[1].tilt_min_deg, -30);
  EXPECT_EQ(ck.info.input_wedges[1].tilt_max_deg, 60);
  in[1].wedge = MethodWedge{-95, 60, false};
  try {
    Trainer t(o, in, TrainOutputs{dir / "m3.uwm", dir / "m3.jsonl"});
    ADD_FAILURE() << "a tilt range of -95 degrees was accepted";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("second"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "m3.uwm"));
}

// Where each tomogram's range comes from: one --tilt-range pair each, or the .tlt beside it
// (tomo.tlt for tomo.mrc, and for the halves tomo_even.mrc / tomo_odd.mrc).
TEST(TrainFiles, TiltRangePerTomogramFromTltBesideOrList) {
  TempDir dir;
  Volume v;
  v.data = torch::randn({16, 24, 24});
  for (const char* name : {"a_even.mrc", "a_odd.mrc", "b_even.mrc", "b_odd.mrc"}) {
    mrc_write(dir / name, v, MrcWriteOptions{});
  }
  {
    std::ofstream f(dir / "a.tlt");
    f << "-50.0\n0\n65.0\n";
  }
  EXPECT_EQ(train_tilt_file_beside(dir / "a_even.mrc"), dir / "a.tlt");
  EXPECT_EQ(train_tilt_file_beside(dir / "a_odd.mrc"), dir / "a.tlt");
  EXPECT_EQ(train_tilt_file_beside(dir / "b_even.mrc"), "");
  TrainFilesOptions f;
  f.train.method = "ddw";
  f.even = {dir / "a_even.mrc", dir / "b_even.mrc"};
  f.odd = {dir / "a_odd.mrc", dir / "b_odd.mrc"};
  f.model = dir / "m.uwm";
  f.tilt_from_files = true;
  TrainFilesPlan plan = train_files_prepare(f);
  ASSERT_EQ(plan.inputs.size(), 2u);
  ASSERT_TRUE(plan.inputs[0].wedge.has_value());
  EXPECT_EQ(plan.inputs[0].wedge->tilt_min_deg, -50);
  EXPECT_EQ(plan.inputs[0].wedge->tilt_max_deg, 65);
  EXPECT_FALSE(plan.inputs[1].wedge.has_value());
  EXPECT_EQ(plan.train.wedge.tilt_max_deg, 65);  // the model's: the first tomogram's

  f.tilt_from_files = false;  // a tilt range given: no .tlt is read
  plan = train_files_prepare(f);
  EXPECT_FALSE(plan.inputs[0].wedge.has_value());
  f.tilt_ranges = {-40, 40, -30, 60};
  plan = train_files_prepare(f);
  ASSERT_TRUE(plan.inputs[1].wedge.has_value());
  EXPECT_EQ(plan.inputs[1].wedge->tilt_min_deg, -30);
  EXPECT_EQ(plan.inputs[1].wedge->tilt_max_deg, 60);
  f.tilt_ranges = {-40, 40, -30, 60, 0, 1};
  EXPECT_THROW(train_files_prepare(f), ValueError);
}

// --patch auto: 40 on a CPU, 64 on a GPU, 32 for embeddings, never more than the smallest edge of any input,
// rounded down to a multiple of 8 (at least 8).
TEST(TrainJob, PatchAutoFollowsDeviceAndVolumes) {
  auto input = [](int64_t z, int64_t y, int64_t x) {
    TrainInput t;
    t.a.data = torch::zeros({z, y, x});
    return t;
  };
  EXPECT_EQ(train_patch_auto("cpu", {input(100, 200, 200)}), 40);
  EXPECT_EQ(train_patch_auto("cuda:0", {input(100, 200, 200)}), 64);
  EXPECT_EQ(train_patch_auto("cuda", {input(100, 200, 200), input(50, 200, 200)}), 48);
  EXPECT_EQ(train_patch_auto("cpu", {input(36, 206, 94)}), 32);  // the 13-pf real volume
  EXPECT_EQ(train_patch_auto("cpu", {input(200, 200, 20)}), 16);
  EXPECT_EQ(train_patch_auto("cpu", {input(5, 200, 200)}), 8);
  // embeddings: 32 on any device, still within the volume
  EXPECT_EQ(train_patch_auto("cpu", {input(100, 200, 200)}, "contrastive"), 32);
  EXPECT_EQ(train_patch_auto("cuda:0", {input(100, 200, 200)}, "mae"), 32);
  EXPECT_EQ(train_patch_auto("cpu", {input(100, 200, 200)}, "n2n"), 40);
  EXPECT_EQ(train_patch_auto("cpu", {input(100, 200, 20)}, "mae"), 16);
}

// Snapshots along one run (time-to-quality curves): a mark the budget's clock has passed writes
// the model beside the checkpoint, a later one does not; each snapshot holds the weights of the
// step it names (an independent rerun stopped at that step has the same weights), and an
// existing snapshot is refused without overwrite before anything is written.
TEST(Trainer, SnapshotsAtMinuteMarksHoldTheWeightsOfTheirStep) {
  TempDir dir;
  std::vector<TrainInput> in{train_pair(32, 11)};
  TrainOptions o = tiny_train_options();
  o.budget_clock = "cpu";
  o.snapshot_minutes = {1e6, 1e-9};  // unsorted on purpose: the first step passes 1e-9 min
  train_run(o, in, dir / "m.uwm", dir / "m.jsonl", false, false);
  EXPECT_EQ(train_snapshot_path(dir / "m.uwm", 1e-9), dir / "m.at1e-09min.uwm");
  EXPECT_EQ(train_snapshot_path("run.uwm", 2.5), "run.at2.5min.uwm");
  ASSERT_TRUE(fs::exists(dir / "m.at1e-09min.uwm"));
  EXPECT_FALSE(fs::exists(dir / "m.at1e+06min.uwm"));
  LoadedCheckpoint snap = checkpoint_load(dir / "m.at1e-09min.uwm");
  EXPECT_EQ(snap.info.step, 1);
  EXPECT_FALSE(snap.has_optimizer);
  TrainOptions one = tiny_train_options();
  one.stop_after = 1;
  train_run(one, in, dir / "one.uwm", dir / "one.jsonl", false, false);
  LoadedCheckpoint ref = checkpoint_load(dir / "one.uwm");
  const auto ps = snap.method->parameters(), pr = ref.method->parameters();
  ASSERT_EQ(ps.size(), pr.size());
  for (size_t i = 0; i < ps.size(); ++i) EXPECT_TRUE(torch::equal(ps[i], pr[i])) << "parameter " << i;
  // The final model moved on from the snapshot.
  EXPECT_FALSE(torch::equal(checkpoint_load(dir / "m.uwm").method->parameters()[0], ps[0]));

  // A rerun into another model whose snapshot exists: refused, the model not written.
  const std::string before = read_bytes(dir / "m.at1e-09min.uwm");
  fs::copy_file(dir / "m.at1e-09min.uwm", dir / "n.at1e-09min.uwm");
  EXPECT_THROW(train_run(o, in, dir / "n.uwm", dir / "n.jsonl", false, false), std::exception);
  EXPECT_FALSE(fs::exists(dir / "n.uwm"));
  EXPECT_EQ(read_bytes(dir / "n.at1e-09min.uwm"), before);
  o.snapshot_minutes = {-1};
  EXPECT_THROW(train_run(o, in, dir / "k.uwm", dir / "k.jsonl", false, false), ValueError);
}

// cryogen-ot's width is auto when --opt does not give it: 32 on a GPU or from 8 CPU-minutes of
// budget and 7 per million voxels on a CPU as fast as the reference, proportionally more on a
// slower one (wall minutes count times the threads), its default 16 otherwise (steps budgets,
// short runs, large volumes on short budgets, other methods); the trainer applies it and the
// model records it.
TEST(TrainJob, WidthAutoFollowsDeviceMethodAndBudget) {
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 30, "cpu", 1), 32);
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 8, "cpu", 4), 32);
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 7.9, "cpu", 4), 0);   // CPU time counts all threads
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 4, "wall", 2), 32);   // 4 wall-minutes on 2 threads
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 4, "wall", 1), 0);
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 0, "cpu", 1), 0);     // a budget in steps
  EXPECT_EQ(train_width_auto("cuda:0", "cryogen-ot", 0, "wall", 1), 32);
  EXPECT_EQ(train_width_auto("cpu", "ei", 30, "cpu", 1), 0);
  EXPECT_EQ(train_width_auto("cuda:0", "n2n", 30, "cpu", 1), 0);
  // A large volume needs kWideCpuMinutesPerMvoxel per million voxels besides: `small` (64 x 128 x
  // 128) is wide from 8 CPU-minutes, `standard` (96 x 256 x 256, 6.3 Mvoxels) from 44.04.
  const double small = 64.0 * 128 * 128, standard = 96.0 * 256 * 256;
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 8, "cpu", 1, small), 32);
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 30, "cpu", 1, standard), 0);
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 44.1, "cpu", 1, standard), 32);
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 44, "cpu", 1, standard), 0);
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 7.9, "cpu", 1, 1e5), 0);  // and 8 CPU-minutes
  EXPECT_EQ(train_width_auto("cuda:0", "cryogen-ot", 1, "wall", 1, standard), 32);
  // The thresholds are minutes of the reference machine: a CPU whose predicted 32-channel step
  // is k times the reference's needs k times the budget (an AVX2 CPU without bf16 measured k ~ 5),
  // one twice as fast half of it.
  const double ref = kWideReferenceStepSeconds;
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 8, "cpu", 1, small, ref), 32);  // = unknown
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 7.9, "cpu", 1, 1e5, ref), 0);
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 30, "cpu", 1, small, 5 * ref), 0);
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 39.9, "cpu", 1, 1e5, 5 * ref), 0);
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 40.1, "cpu", 1, 1e5, 5 * ref), 32);
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 36.6, "cpu", 1, small, 5 * ref), 0);
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 40.1, "cpu", 1, small, 5 * ref), 32);
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 4.1, "cpu", 1, small, 0.5 * ref), 32);
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 3.9, "cpu", 1, small, 0.5 * ref), 0);
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 220, "cpu", 1, standard, 5 * ref), 0);  // 220.2
  EXPECT_EQ(train_width_auto("cpu", "cryogen-ot", 221, "cpu", 1, standard, 5 * ref), 32);
  TempDir dir;
  std::vector<TrainInput> in{train_pair(32, 13)};
  TrainOptions o = tiny_train_options();
  o.method = "cryogen-ot";
  o.method_options = {{"depth", 1}, {"convs_per_level", 1}, {"ot_points", 64}};
  o.sampler.patch = 16;
  o.steps = 0;
  o.minutes = 30;
  o.budget_clock = "cpu";
  o.stop_after = 1;  // one step of the 30-minute schedule
  train_run(o, in, dir / "m.uwm", dir / "m.jsonl", false, false);
  EXPECT_EQ(checkpoint_load(dir / "m.uwm").method->options_json().at("base_channels"), 32);
  // Resumed with the same command (or a shorter budget): the checkpoint's width, not the rule's.
  o.stop_after = 2;
  train_run(o, in, dir / "m.uwm", dir / "m.jsonl", true, false);
  EXPECT_EQ(checkpoint_load(dir / "m.uwm").info.step, 2);
  EXPECT_EQ(checkpoint_load(dir / "m.uwm").method->options_json().at("base_channels"), 32);
  o.stop_after = 1;
  o.method_options["base_channels"] = 4;  // given: kept
  train_run(o, in, dir / "g.uwm", dir / "g.jsonl", false, false);
  EXPECT_EQ(checkpoint_load(dir / "g.uwm").method->options_json().at("base_channels"), 4);
  o.method_options.erase("base_channels");
  o.minutes = 0;
  o.steps = 1;  // a budget in steps: the method's default
  train_run(o, in, dir / "s.uwm", dir / "s.jsonl", false, false);
  EXPECT_EQ(checkpoint_load(dir / "s.uwm").method->options_json().at("base_channels"), 16);
}

// Batch 0 is auto: 2 for n2n on a CPU, 16 for contrastive, 8 for mae, 4 otherwise, rounded up to a multiple of the ranks; the
// trainer resolves it before anything else uses the batch, and the model records the batch used.
TEST(TrainJob, BatchAutoFollowsDeviceMethodAndRanks) {
  EXPECT_EQ(train_batch_auto("cpu", "n2n", 1), 2);
  EXPECT_EQ(train_batch_auto("cpu", "ddw", 1), 4);
  EXPECT_EQ(train_batch_auto("cuda:0", "n2n", 1), 4);
  EXPECT_EQ(train_batch_auto("cpu", "n2n", 4), 4);
  EXPECT_EQ(train_batch_auto("cpu", "n2n", 3), 3);
  EXPECT_EQ(train_batch_auto("cpu", "cryogen-ot", 3), 6);
  EXPECT_EQ(train_batch_auto("cpu", "contrastive", 1), 16);
  EXPECT_EQ(train_batch_auto("cuda:0", "mae", 3), 9);
  TempDir dir;
  std::vector<TrainInput> in{train_pair(32, 13)};
  TrainOptions o = tiny_train_options();
  o.batch = 0;
  o.steps = 2;
  train_run(o, in, dir / "m.uwm", dir / "m.jsonl", false, false);
  EXPECT_EQ(checkpoint_load(dir / "m.uwm").info.train_options.at("batch").get<int64_t>(), 2);
  o.batch = -1;
  EXPECT_THROW(train_run(o, in, dir / "k.uwm", dir / "k.jsonl", false, false), ValueError);
}

// A method that needs many steps (MethodInfo::few_steps) trains at batch 2 when its budget buys
// fewer than that at the auto batch: 10 CPU-minutes of 13 s steps are 46 (the AVX2 CPU of
// bench/RESULTS.md), of 2.9 s steps 207 (the avx512_bf16 one); never above the batch, rounded up
// to the ranks; nothing changes without few_steps or a step time. In a run: ei (few_steps 100)
// with the auto batch and a budget of 0.3 CPU-seconds, far fewer than 100 probed steps.
TEST(TrainJob, BatchTwoWhenTheBudgetBuysFewSteps) {
  EXPECT_EQ(train_batch_few_steps(4, 600, 13.0, 100, 1), 2);
  EXPECT_EQ(train_batch_few_steps(4, 600, 2.9, 100, 1), 4);
  EXPECT_EQ(train_batch_few_steps(4, 1300, 13.0, 100, 1), 4);  // exactly 100 steps
  EXPECT_EQ(train_batch_few_steps(4, 1299, 13.0, 100, 1), 2);
  EXPECT_EQ(train_batch_few_steps(4, 600, 13.0, 0, 1), 4);
  EXPECT_EQ(train_batch_few_steps(4, 600, 0.0, 100, 1), 4);
  EXPECT_EQ(train_batch_few_steps(2, 600, 13.0, 100, 1), 2);
  EXPECT_EQ(train_batch_few_steps(6, 600, 13.0, 100, 3), 3);
  EXPECT_EQ(train_batch_few_steps(4, 600, 13.0, 100, 4), 4);
  EXPECT_EQ(train_batch_few_steps(8, 600, 13.0, 100, 2), 2);

  TempDir dir;
  std::vector<TrainInput> in{train_pair(32, 13)};
  TrainOptions o = tiny_train_options();
  o.method = "ei";
  o.batch = 0;
  o.steps = 0;
  o.minutes = 0.005;
  o.budget_clock = "cpu";
  train_run(o, in, dir / "e.uwm", dir / "e.jsonl", false, false);
  EXPECT_EQ(checkpoint_load(dir / "e.uwm").info.train_options.at("batch").get<int64_t>(), 2);
  o.steps = 2;  // a budget in steps: no probe, the auto batch
  o.minutes = 0;
  train_run(o, in, dir / "f.uwm", dir / "f.jsonl", false, false);
  EXPECT_EQ(checkpoint_load(dir / "f.uwm").info.train_options.at("batch").get<int64_t>(), 4);
}
