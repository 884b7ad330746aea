// Tests of the c10d wrapper: environment parsing, gradient averaging equivalent to one large
// batch, broadcast, configuration agreement, and a dead rank failing loudly instead of hanging;
// the rank/slab partition of restoration, slabs equal to a whole restoration, one MRC file
// written by two ranks (by hand and through dist/shared_writers), the sample job's statistics
// gathered across ranks; devices (auto), bf16 autocast. Two ranks run as two threads of this
// process over loopback Gloo. CUDA and NCCL tests skip on CPU-only builds. Auxiliary networks
// (a discriminator stepped in the method's aux_step()) averaged across ranks as well.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <torch/cuda.h>
#include <torch/torch.h>

#include "unwedge/core/device.h"
#include "unwedge/core/error.h"
#include "unwedge/dist/distributed.h"
#include "unwedge/dist/shared_writers.h"
#include "unwedge/infer/partition.h"
#include "unwedge/infer/restore.h"
#include "unwedge/infer/sample.h"
#include "unwedge/io/mrc.h"
#include "unwedge/methods/cryogen_common.h"
#include "unwedge/methods/method.h"
#include "unwedge/nn/discriminator.h"
#include "unwedge/train/dist_method.h"

using namespace unwedge;

namespace {

int free_port() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  close(s);
  return port;
}

DistConfig rank_config(int rank, int world, int port, double timeout_s = 30) {
  DistConfig c;
  c.rank = rank;
  c.world_size = world;
  c.master_port = port;
  c.timeout_s = timeout_s;
  return c;
}

// Runs fn(rank) on `world` threads and rethrows the first failure.
template <typename Fn>
void run_ranks(int world, Fn fn) {
  std::vector<std::thread> threads;
  std::vector<std::string> errors(world);
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        fn(r);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) ASSERT_TRUE(errors[r].empty()) << "rank " << r << ": " << errors[r];
}

torch::nn::Sequential tiny_net() {
  return torch::nn::Sequential(torch::nn::Conv3d(torch::nn::Conv3dOptions(1, 4, 3).padding(1)),
                               torch::nn::ReLU(),
                               torch::nn::Conv3d(torch::nn::Conv3dOptions(4, 1, 3).padding(1)));
}

// A tiny U-Net method: depth 2, 4 channels, one convolution per level.
std::unique_ptr<Method> tiny_method(uint64_t seed) {
  torch::manual_seed(seed);
  return method_create("n2n", {{"depth", 2}, {"base_channels", 4}, {"convs_per_level", 1}});
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("unwedge_test_dist_" + std::to_string(getpid()) + "_" + name))
      .string();
}

}  // namespace

// A backend this build lacks is refused before any connection, listing the ones it has.
TEST(DistConfig, UnavailableBackendIsRefusedWithTheAvailableOnes) {
  DistConfig c;
  c.world_size = 2;
  c.backend = dist_have_nccl() ? "mpi" : "nccl";
  std::string available = dist_have_gloo() ? "gloo" : "";
  if (dist_have_nccl()) available += available.empty() ? "nccl" : ", nccl";
  try {
    Distributed d(c);
    ADD_FAILURE() << "backend " << c.backend << " accepted";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'" + c.backend + "' is not available in this build "
                                         "(available: " + available + ")"),
              std::string::npos) << e.what();
  }
}

TEST(DistConfig, TorchrunVariables) {
  DistConfig c = dist_config_from_env({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"},
                                       {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "1234"}});
  EXPECT_EQ(c.rank, 3);
  EXPECT_EQ(c.world_size, 8);
  EXPECT_EQ(c.local_rank, 1);
  EXPECT_EQ(c.master_addr, "node7");
  EXPECT_EQ(c.master_port, 1234);
  EXPECT_EQ(c.launcher, "torchrun");
  EXPECT_TRUE(c.distributed());
}

TEST(DistConfig, SlurmVariablesAndFirstNode) {
  DistConfig c = dist_config_from_env({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"},
                                       {"SLURM_LOCALID", "1"},
                                       {"SLURM_JOB_NODELIST", "gpu[003-006,010],cpu1"}});
  EXPECT_EQ(c.launcher, "slurm");
  EXPECT_EQ(c.rank, 5);
  EXPECT_EQ(c.world_size, 8);
  EXPECT_EQ(c.local_rank, 1);
  EXPECT_EQ(c.master_addr, "gpu003");
}

TEST(DistConfig, NoLauncherIsOneRankAndBadValuesAreErrors) {
  DistConfig c = dist_config_from_env({});
  EXPECT_FALSE(c.distributed());
  EXPECT_EQ(c.launcher, "none");
  EXPECT_THROW(dist_config_from_env({{"RANK", "2"}, {"WORLD_SIZE", "2"}}), ValueError);
  EXPECT_THROW(dist_config_from_env({{"RANK", "x"}, {"WORLD_SIZE", "2"}}), ValueError);
  EXPECT_THROW(dist_config_from_env({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}}),
               ValueError);
}

// N ranks with batch B/N and averaged gradients give the gradient of one rank with batch B.
TEST(Distributed, AveragedGradientsMatchOneLargeBatch) {
  torch::manual_seed(7);
  torch::Tensor x = torch::randn({4, 1, 8, 8, 8});  // [B, C, Z, Y, X]
  torch::Tensor y = torch::randn({4, 1, 8, 8, 8});
  auto reference = tiny_net();
  std::vector<torch::Tensor> init;
  for (auto& p : reference->parameters()) init.push_back(p.detach().clone());
  torch::mse_loss(reference->forward(x), y).backward();

  int port = free_port();
  std::vector<std::vector<torch::Tensor>> grads(2);
  run_ranks(2, [&](int rank) {
    Distributed dist(rank_config(rank, 2, port));
    auto net = tiny_net();  // different random init on each rank...
    if (rank == 0) {
      torch::NoGradGuard ng;
      auto params = net->parameters();
      for (size_t i = 0; i < params.size(); ++i) params[i].copy_(init[i]);
    }
    dist.broadcast(net->parameters());  // ...made identical by rank 0's broadcast
    auto xs = x.narrow(0, 2 * rank, 2);
    auto ys = y.narrow(0, 2 * rank, 2);
    torch::mse_loss(net->forward(xs), ys).backward();
    std::vector<torch::Tensor> g;
    for (auto& p : net->parameters()) g.push_back(p.grad());
    dist.allreduce_mean(g, /*bucket_bytes=*/256);  // small buckets: several messages
    for (auto& t : g) grads[rank].push_back(t.clone());
  });
  auto ref_params = reference->parameters();
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_EQ(grads[rank].size(), ref_params.size());
    for (size_t i = 0; i < ref_params.size(); ++i) {
      EXPECT_TRUE(torch::allclose(grads[rank][i], ref_params[i].grad(), 1e-5, 1e-6))
          << "rank " << rank << " parameter " << i;
    }
  }
}

double max_abs_diff(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    d = std::max(d, (a[i] - b[i]).abs().max().item<double>());
  }
  return d;
}

std::vector<torch::Tensor> clones(const std::vector<torch::Tensor>& ts) {
  std::vector<torch::Tensor> out;
  for (const auto& t : ts) out.push_back(t.detach().clone());
  return out;
}

// An auxiliary optimizer stepped through cryogen_step_scaled (as a method does in aux_step())
// with the trainer's step context: 2 ranks with batch B/2 follow one rank with batch B step
// for step (Adam, 3 steps, double precision); without the gradient average the ranks drift apart.
TEST(Distributed, AuxiliaryOptimizerStepsMatchOneLargeBatch) {
  const int64_t steps = 3;
  auto make_disc = [](uint64_t seed) {
    torch::manual_seed(seed);
    auto d = Discriminator3d(Discriminator3dOptions().base_channels(2).levels(2));
    d->to(torch::kDouble);
    return d;
  };
  auto make_opt = [](Discriminator3d& d) {
    return torch::optim::Adam(d->parameters(),
                              torch::optim::AdamOptions(1e-2).betas(std::make_tuple(0.5, 0.999)));
  };
  torch::manual_seed(21);
  std::vector<torch::Tensor> real, fake;  // per step [4, 1, 8, 8, 8]
  for (int64_t s = 0; s < steps; ++s) {
    real.push_back(torch::randn({4, 1, 8, 8, 8}, torch::kDouble));
    fake.push_back(0.5 * torch::randn({4, 1, 8, 8, 8}, torch::kDouble) + 0.3);
  }
  auto d_loss = [](Discriminator3d& d, const torch::Tensor& r, const torch::Tensor& f) {
    return torch::softplus(-d->forward(r)).mean() + torch::softplus(d->forward(f)).mean();
  };
  // One rank, the whole batch.
  auto ref = make_disc(1);
  auto init = clones(ref->parameters());
  auto ref_opt = make_opt(ref);
  for (int64_t s = 0; s < steps; ++s) {
    ref_opt.zero_grad();
    d_loss(ref, real[s], fake[s]).backward();
    cryogen_step_scaled(ref_opt, 0.5, StepContext{});
  }
  EXPECT_GT(max_abs_diff(ref->parameters(), init), 1e-3) << "the discriminator did not move";

  for (bool sync : {true, false}) {
    int port = free_port();
    std::vector<std::vector<torch::Tensor>> after(2);
    std::vector<bool> active(2);
    run_ranks(2, [&](int rank) {
      Distributed dist(rank_config(rank, 2, port));
      auto d = make_disc(100 + rank);  // different initial weights on each rank...
      auto opt = make_opt(d);
      if (rank == 0) {
        torch::NoGradGuard ng;
        auto ps = d->parameters();
        for (size_t i = 0; i < ps.size(); ++i) ps[i].copy_(init[i]);
      }
      dist.broadcast(optimizer_parameters(opt));  // ...made equal as the trainer does
      const StepContext ctx = sync ? dist_step_context(dist) : StepContext{};
      active[rank] = static_cast<bool>(ctx.average_gradients);
      for (int64_t s = 0; s < steps; ++s) {
        opt.zero_grad();
        d_loss(d, real[s].narrow(0, 2 * rank, 2), fake[s].narrow(0, 2 * rank, 2)).backward();
        cryogen_step_scaled(opt, 0.5, ctx);
      }
      after[rank] = clones(d->parameters());
    });
    for (int r = 0; r < 2; ++r) EXPECT_EQ(active[r], sync);
    const double between = max_abs_diff(after[0], after[1]);
    const double to_ref = std::max(max_abs_diff(after[0], ref->parameters()),
                                   max_abs_diff(after[1], ref->parameters()));
    if (sync) {
      EXPECT_EQ(between, 0.0) << "ranks hold different discriminators";
      EXPECT_LT(to_ref, 1e-10) << "2 ranks x B/2 differ from 1 rank x B";
    } else {
      EXPECT_GT(between, 1e-4) << "without the sync the ranks should drift apart";
      EXPECT_GT(to_ref, 1e-4);
    }
  }
}

// A method with an auxiliary network on 2 ranks, each with its own data, stepped as the trainer
// steps it (the trainer's broadcast of every network, generator gradients all-reduced, aux_step
// with the trainer's step context): the auxiliary networks start equal and stay equal; without
// the context's gradient average they drift apart.
void aux_networks_stay_equal(const std::string& name, const nlohmann::json& opts) {
  for (bool sync : {true, false}) {
    int port = free_port();
    std::vector<std::vector<torch::Tensor>> disc_before(2), disc_start(2), disc_after(2), gen_after(2);
    run_ranks(2, [&](int rank) {
      Distributed dist(rank_config(rank, 2, port));
      torch::manual_seed(200 + rank);  // each rank initialises its networks differently
      auto m = method_create(name, opts);
      ASSERT_EQ(m->aux_optimizers().size(), 1u);
      auto disc = [&] { return optimizer_parameters(*m->aux_optimizers()[0]); };
      disc_before[rank] = clones(disc());
      dist_broadcast_method(dist, *m);
      disc_start[rank] = clones(disc());
      torch::optim::Adam opt(m->parameters(), torch::optim::AdamOptions(1e-3));
      const StepContext ctx = sync ? dist_step_context(dist) : StepContext{};
      torch::manual_seed(300 + rank);  // each rank its own data and augmentation
      auto x = torch::randn({2, 1, 16, 16, 16}).cumsum(2) / 4.0;
      for (int64_t step = 0; step < 3; ++step) {
        Batch b;
        b.input = x + 0.3 * torch::randn_like(x);
        b.target = x + 0.3 * torch::randn_like(x);
        b.wedge = {MethodWedge{-60, 60, false}, MethodWedge{-50, 65, true}};
        b.step = step;
        m->aux_step(b, ctx);
        opt.zero_grad();
        m->loss(b).backward();
        std::vector<torch::Tensor> g;
        for (auto& p : m->parameters()) {
          if (p.grad().defined()) g.push_back(p.grad());
        }
        dist.allreduce_mean(g);
        opt.step();
      }
      disc_after[rank] = clones(disc());
      gen_after[rank] = clones(m->parameters());
    });
    EXPECT_GT(max_abs_diff(disc_before[0], disc_before[1]), 1e-3) << name << ": equal inits";
    EXPECT_EQ(max_abs_diff(disc_start[0], disc_start[1]), 0.0) << name << ": broadcast failed";
    EXPECT_GT(max_abs_diff(disc_after[0], disc_start[0]), 1e-5) << name << ": aux net did not move";
    const double between = max_abs_diff(disc_after[0], disc_after[1]);
    if (sync) {
      EXPECT_EQ(between, 0.0) << name << ": auxiliary networks differ across ranks";
      EXPECT_EQ(max_abs_diff(gen_after[0], gen_after[1]), 0.0) << name << ": generators differ";
    } else {
      EXPECT_GT(between, 1e-5) << name << ": without the aux sync the networks should differ";
    }
    std::printf("%s, aux sync %s: max |aux_rank0 - aux_rank1| after 3 steps = %.3g\n",
                name.c_str(), sync ? "on" : "off", between);
  }
}

TEST(Distributed, CryoGenMapDiscriminatorsStayEqualAcrossRanks) {
  aux_networks_stay_equal("cryogen-map", {{"depth", 2}, {"base_channels", 4}, {"d_channels", 4},
                                          {"d_levels", 2}, {"prior_start", 0}});
}

TEST(Distributed, CryoGenOtEncodersStayEqualAcrossRanks) {
  aux_networks_stay_equal("cryogen-ot", {{"depth", 2}, {"base_channels", 4},
                                         {"encoder_channels", 4}, {"encoder_features", 8},
                                         {"prior_start", 0}});
}

TEST(Distributed, RanksThatDisagreeOnTheConfigurationAreNamed) {
  int port = free_port();
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      Distributed dist(rank_config(r, 2, port));
      dist.check_same("configuration", "steps: 100");  // agree
      try {
        dist.check_same("configuration", r == 0 ? "steps: 100" : "steps: 200");
      } catch (const ValueError& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(errors[r].find("rank 1 differs"), std::string::npos) << "rank " << r << ": " << errors[r];
  }
}

TEST(Distributed, DeadRankMakesOthersFailInsteadOfHanging) {
  int port = free_port();
  std::string error;
  auto start = std::chrono::steady_clock::now();
  std::thread r1([&] {
    Distributed dist(rank_config(1, 2, port, /*timeout_s=*/5));
    dist.barrier();
    // leaves without taking part in the next collective, as a killed rank would
  });
  {
    Distributed dist(rank_config(0, 2, port, /*timeout_s=*/5));
    dist.barrier();
    r1.join();
    std::vector<torch::Tensor> g{torch::ones({10})};
    try {
      dist.allreduce_mean(g);
    } catch (const IoError& e) {
      error = e.what();
    }
  }
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(error.find("failed"), std::string::npos) << error;
  EXPECT_LT(waited, 30.0) << "the surviving rank should give up within its timeout";
}

TEST(Distributed, BroadcastStringAndAllgather) {
  int port = free_port();
  std::vector<std::string> got(2);
  std::vector<std::vector<double>> gathered(2);
  run_ranks(2, [&](int rank) {
    Distributed dist(rank_config(rank, 2, port));
    got[rank] = dist.broadcast_string(rank == 0 ? "/tmp/.out.mrc.123.tmp" : "ignored");
    gathered[rank] = dist.allgather({double(rank), 10.0 + rank});
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(got[r], "/tmp/.out.mrc.123.tmp");
    EXPECT_EQ(gathered[r], (std::vector<double>{0, 10, 1, 11}));
  }
}

TEST(Partition, WholeTomogramsLargestFirstToTheLeastLoadedRank) {
  // Voxels 10, 30, 20, 5 (x 4 x 4): 30 -> r0, 20 -> r1, 10 -> r1 (20 < 30), 5 -> r0 (30 = 30).
  std::vector<std::array<int64_t, 3>> shapes{{10, 4, 4}, {30, 4, 4}, {20, 4, 4}, {5, 4, 4}};
  auto all = partition_work(shapes, 2);
  ASSERT_EQ(all.size(), 2u);
  std::vector<int64_t> r0, r1;
  for (const auto& s : all[0]) r0.push_back(s.item);
  for (const auto& s : all[1]) r1.push_back(s.item);
  EXPECT_EQ(r0, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(r1, (std::vector<int64_t>{0, 2}));
  for (const auto& rank : all) {
    for (const auto& s : rank) {
      EXPECT_TRUE(s.whole);
      EXPECT_EQ(s.z0, 0);
      EXPECT_EQ(s.z1, shapes[size_t(s.item)][0]);
    }
  }
  // One rank takes everything, whole.
  auto one = partition_for_rank(shapes, 0, 1);
  ASSERT_EQ(one.size(), 4u);
  for (const auto& s : one) EXPECT_TRUE(s.whole);
}

TEST(Partition, SlabsCoverEachTomogramOnceContiguouslyOnAlignedBoundaries) {
  for (int world : {2, 3, 5}) {
    for (int64_t depth : {2, 37, 64}) {
      std::vector<std::array<int64_t, 3>> shapes{{depth, 8, 8}};
      auto all = partition_work(shapes, world, /*align=*/4);
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        ASSERT_EQ(all[size_t(r)].size(), 1u);
        const WorkSlab& s = all[size_t(r)][0];
        EXPECT_FALSE(s.whole);
        EXPECT_EQ(s.z0, next) << "world " << world << " depth " << depth << " rank " << r;
        EXPECT_LE(s.z0, s.z1);
        if (s.z1 < depth) {
          EXPECT_EQ(s.z1 % 4, 0);
        }
        next = s.z1;
      }
      EXPECT_EQ(next, depth);
    }
  }
  // Depth 37, 3 ranks, align 4: 10 units of 4 -> 3, 3, 4 units.
  auto r1 = partition_for_rank({{37, 8, 8}}, 1, 3, 4);
  EXPECT_EQ(r1[0].z0, 12);
  EXPECT_EQ(r1[0].z1, 24);
}

TEST(Partition, BadArgumentsAreErrors) {
  EXPECT_THROW(partition_work({{4, 4, 4}}, 0), ValueError);
  EXPECT_THROW(partition_work({{4, 4, 4}}, 2, 0), ValueError);
  EXPECT_THROW(partition_work({{0, 4, 4}}, 2), ValueError);
  EXPECT_THROW(partition_for_rank({{4, 4, 4}}, 2, 2), ValueError);
}

// Each rank restores only the tile rows touching its slab and writes only its sections; the
// slabs put together equal the single-rank restoration.
TEST(DistributedRestore, SlabsEqualTheWholeRestoration) {
  auto m = tiny_method(5);
  torch::manual_seed(13);
  at::Tensor vol = torch::randn({45, 24, 28});
  RestoreOptions ro;
  ro.tile = 24;
  ro.overlap = 8;
  ASSERT_GT(restore_plan(*m, {45, 24, 28}, ro).axes[0].starts.size(), 2u) << "needs Z rows";
  at::Tensor full = restore_volume(*m, vol, ro);
  TileReader rd = [&](int64_t z0, int64_t z1, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
    return vol.slice(0, z0, z1).slice(1, y0, y1).slice(2, x0, x1);
  };
  for (int world : {2, 3}) {
    at::Tensor out = torch::full_like(vol, std::nan(""));
    for (int r = 0; r < world; ++r) {
      WorkSlab s = partition_for_rank({{45, 24, 28}}, r, world)[0];
      RestoreOptions mine = ro;
      mine.z_begin = s.z0;
      mine.z_end = s.z1;
      SlabSink sink = [&](int64_t z0, const at::Tensor& slab) {
        EXPECT_GE(z0, s.z0) << "rank " << r << " wrote outside its slab";
        EXPECT_LE(z0 + slab.size(0), s.z1) << "rank " << r << " wrote outside its slab";
        out.slice(0, z0, z0 + slab.size(0)).copy_(slab);
      };
      restore_stream(*m, {45, 24, 28}, {rd}, {sink}, mine);
    }
    ASSERT_FALSE(out.isnan().any().item<bool>()) << "a section was never written, world " << world;
    EXPECT_LT((out - full).abs().max().item<double>(), 1e-6) << "world " << world;
  }
  RestoreOptions bad = ro;
  bad.z_begin = 40;
  bad.z_end = 50;
  EXPECT_THROW(restore_volume(*m, vol, bad), ValueError);
}

// Rank 0 creates the file, rank 1 writes its slab into it at its offset, the header statistics
// are merged across ranks: the file equals the volume and its header the volume's statistics.
TEST(DistributedRestore, TwoRanksWriteOneMrcFile) {
  torch::manual_seed(17);
  at::Tensor vol = torch::randn({9, 6, 7}) * 3 + 1;
  const std::string path = temp_path("shared.mrc");
  std::filesystem::remove(path);
  VolumeMeta meta;
  meta.voxel_size = {2.5, 2.5, 2.5};
  int port = free_port();
  run_ranks(2, [&](int rank) {
    Distributed dist(rank_config(rank, 2, port));
    MrcWriteOptions wo;
    std::unique_ptr<MrcSlabWriter> w;
    if (rank == 0) w = std::make_unique<MrcSlabWriter>(path, std::array<int64_t, 3>{9, 6, 7}, meta, wo);
    std::string tmp = dist.broadcast_string(rank == 0 ? w->tmp_path() : "");
    if (rank == 1) w = MrcSlabWriter::attach(path, tmp, {9, 6, 7}, meta, wo);
    if (rank == 0) w->write_slab(0, vol.slice(0, 0, 4));
    if (rank == 1) {
      w->write_slab(4, vol.slice(0, 4, 6));
      w->write_slab(6, vol.slice(0, 6, 9));
      w->close();
    }
    MrcStats st = w->stats();
    auto all = dist.allgather({double(st.count), st.mean, st.m2, st.min, st.max});
    if (rank == 0) {
      MrcStats merged;
      for (int r = 0; r < 2; ++r) {
        const double* v = all.data() + 5 * r;
        merged = mrc_stats_merge(merged, MrcStats{int64_t(v[0]), v[1], v[2], v[3], v[4]});
      }
      w->commit_shared(merged);
    }
    dist.barrier();
  });
  MrcFile f(path);
  EXPECT_TRUE(torch::equal(f.read().data, vol));
  at::Tensor d = vol.to(torch::kDouble);
  const double mean = d.mean().item<double>();
  EXPECT_NEAR(f.header().dmin, d.min().item<double>(), 1e-6);
  EXPECT_NEAR(f.header().dmax, d.max().item<double>(), 1e-6);
  EXPECT_NEAR(f.header().dmean, mean, 1e-5);
  EXPECT_NEAR(f.header().rms, std::sqrt((d - mean).pow(2).mean().item<double>()), 1e-5);
  EXPECT_FLOAT_EQ(f.meta().voxel_size[0], 2.5);
  std::filesystem::remove(path);

  // Statistics that do not cover the volume (a rank's slab missing) refuse to commit.
  MrcSlabWriter w(path, {9, 6, 7}, meta, MrcWriteOptions{});
  w.write_slab(0, vol.slice(0, 0, 4));
  EXPECT_THROW(w.commit_shared(w.stats()), ValueError);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(Device, AutoResolvesAndBadNamesAreErrors) {
  const bool cuda = torch::cuda::is_available();
  EXPECT_EQ(device_resolve("auto"), cuda ? "cuda" : "cpu");
  EXPECT_TRUE(device_parse("auto").is_cuda() == cuda);
  EXPECT_EQ(device_resolve("cpu", /*local_rank=*/3), "cpu");
  EXPECT_THROW(device_parse("tpu"), ValueError);
  EXPECT_THROW(device_parse("cuda:x"), ValueError);
  if (!cuda) {
    try {
      device_parse("cuda");
      ADD_FAILURE() << "cuda accepted on a machine without CUDA";
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find("CUDA is not available"), std::string::npos);
    }
    EXPECT_EQ(device_resolve("cuda", 1), "cuda");  // left for device_parse to reject
  }
  EXPECT_EQ(precision_parse("fp32", "--precision"), c10::kFloat);
  EXPECT_EQ(precision_parse("bf16", "--precision"), c10::kBFloat16);
  EXPECT_THROW(precision_parse("fp16", "--precision"), ValueError);
  EXPECT_EQ(dist_backend_for(c10::Device("cpu")), "gloo");
}

// "auto" precision: bf16 exactly when the kernel lists avx512_bf16 among this CPU's flags (read
// here from /proc/cpuinfo, independently of the compiler builtin the code asks), fp32 on a GPU.
TEST(Precision, AutoFollowsTheCpuFlags) {
  bool flag = false;
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line);
    for (std::string w; words >> w;) flag = flag || w == "avx512_bf16";
    break;
  }
  if (!info.is_open()) GTEST_SKIP() << "no /proc/cpuinfo to compare with";
  EXPECT_EQ(cpu_has_bf16(), flag);
  EXPECT_EQ(precision_resolve("auto", c10::Device("cpu")), flag ? "bf16" : "fp32");
  EXPECT_EQ(precision_resolve("auto", c10::Device(c10::kCUDA, 0)), "fp32");
  EXPECT_EQ(precision_resolve("fp32", c10::Device("cpu")), "fp32");
  EXPECT_EQ(precision_resolve("bf16", c10::Device(c10::kCUDA, 0)), "bf16");
  EXPECT_THROW(precision_parse("auto", "--precision"), ValueError);  // resolve first
}

// bf16 autocast on the CPU: convolutions run in bf16 inside the guard only; a method's loss
// stays close to the fp32 loss and its gradients are float32.
TEST(Precision, Bf16AutocastOnCpu) {
  torch::manual_seed(3);
  auto conv = torch::nn::Conv3d(torch::nn::Conv3dOptions(1, 2, 3).padding(1));
  at::Tensor x = torch::randn({1, 1, 8, 8, 8});
  {
    AutocastGuard amp(c10::kBFloat16, c10::Device("cpu"));
    EXPECT_EQ(conv->forward(x).scalar_type(), c10::kBFloat16);
  }
  EXPECT_EQ(conv->forward(x).scalar_type(), c10::kFloat);
  {
    AutocastGuard off(c10::kFloat, c10::Device("cpu"));
    EXPECT_EQ(conv->forward(x).scalar_type(), c10::kFloat);
  }

  auto m = tiny_method(9);
  Batch b;
  b.input = torch::randn({2, 1, 16, 16, 16});
  b.target = b.input + 0.5 * torch::randn({2, 1, 16, 16, 16});
  torch::manual_seed(4);
  const double ref = m->loss(b).item<double>();
  torch::manual_seed(4);
  at::Tensor loss;
  {
    AutocastGuard amp(c10::kBFloat16, c10::Device("cpu"));
    loss = m->loss(b).to(torch::kFloat);
  }
  EXPECT_EQ(loss.scalar_type(), c10::kFloat);
  EXPECT_NEAR(loss.item<double>(), ref, 0.03 * std::abs(ref)) << "bf16 keeps ~3 digits";
  loss.backward();
  for (auto& p : m->parameters()) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_EQ(p.grad().scalar_type(), c10::kFloat);
    EXPECT_TRUE(p.grad().isfinite().all().item<bool>());
  }
}

TEST(Cuda, Bf16AutocastOnGpu) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "CPU-only LibTorch or no GPU visible: CUDA autocast not tested";
  }
  torch::manual_seed(3);
  auto conv = torch::nn::Conv3d(torch::nn::Conv3dOptions(1, 2, 3).padding(1));
  conv->to(torch::kCUDA);
  at::Tensor x = torch::randn({1, 1, 8, 8, 8}, torch::kCUDA);
  at::Tensor ref = conv->forward(x);
  AutocastGuard amp(c10::kBFloat16, device_parse("cuda"));
  at::Tensor y = conv->forward(x);
  EXPECT_EQ(y.scalar_type(), c10::kBFloat16);
  EXPECT_LT((y.to(torch::kFloat) - ref).abs().max().item<double>(),
            0.02 * ref.abs().max().item<double>() + 1e-3);
}

TEST(Cuda, NcclAllReduceAcrossTwoGpus) {
  if (!dist_have_nccl() || torch::cuda::device_count() < 2) {
    GTEST_SKIP() << "needs a LibTorch with NCCL and two GPUs (this build: NCCL "
                 << (dist_have_nccl() ? "yes" : "no") << ", GPUs "
                 << torch::cuda::device_count() << ")";
  }
  int port = free_port();
  std::vector<double> got(2);
  run_ranks(2, [&](int rank) {
    DistConfig c = rank_config(rank, 2, port);
    c.local_rank = rank;
    c.backend = "nccl";
    Distributed dist(c);
    std::vector<torch::Tensor> t{
        torch::full({3}, double(rank + 1), torch::TensorOptions().device(torch::Device(torch::kCUDA, int8_t(rank))))};
    dist.allreduce_mean(t);
    got[rank] = t[0][1].item<double>();
  });
  EXPECT_DOUBLE_EQ(got[0], 1.5);
  EXPECT_DOUBLE_EQ(got[1], 1.5);
}

// The shared-file writer protocol of restore and sample (dist/shared_writers.h) on 2 ranks:
// rank 0 writes the first sections and rank 1 the rest of two volumes into the same two files;
// each file holds both ranks' sections, its header statistics are those of the whole volume
// (computed here from the tensor), and every rank finds the files in place when the commit
// returns. Without sharing, each rank writes and commits its own file.
TEST(SharedWriters, TwoRanksWriteTheSameFilesWithTheWholeVolumesStatistics) {
  torch::manual_seed(17);
  const std::vector<at::Tensor> vols{torch::randn({9, 6, 7}), 3.0 + 2.0 * torch::rand({9, 6, 7})};
  const std::vector<std::string> paths{temp_path("shared_a.mrc"), temp_path("shared_b.mrc")};
  VolumeMeta meta;
  meta.voxel_size = {4.0, 4.0, 4.0};
  MrcWriteOptions wo;
  wo.label = "shared writers test";
  const int port = free_port();
  std::vector<bool> in_place(2, false);
  run_ranks(2, [&](int rank) {
    Distributed dist(rank_config(rank, 2, port));
    auto writers = shared_writers_open(paths, {9, 6, 7}, meta, wo, /*shared=*/true, dist);
    ASSERT_EQ(writers.size(), 2u);
    const int64_t z0 = rank == 0 ? 0 : 5, z1 = rank == 0 ? 5 : 9;
    for (size_t i = 0; i < 2; ++i) writers[i]->write_slab(z0, vols[i].slice(0, z0, z1));
    shared_writers_commit(writers, /*shared=*/true, dist);
    in_place[size_t(rank)] = std::filesystem::exists(paths[0]) && std::filesystem::exists(paths[1]);
  });
  EXPECT_TRUE(in_place[0] && in_place[1]) << "a rank returned before the files were in place";
  for (size_t i = 0; i < 2; ++i) {
    MrcFile f(paths[i]);
    EXPECT_TRUE(torch::equal(f.read().data, vols[i])) << paths[i];
    at::Tensor d = vols[i].to(torch::kDouble);
    const double mean = d.mean().item<double>();
    EXPECT_NEAR(f.header().dmin, d.min().item<double>(), 1e-6);
    EXPECT_NEAR(f.header().dmax, d.max().item<double>(), 1e-6);
    EXPECT_NEAR(f.header().dmean, mean, 1e-5);
    EXPECT_NEAR(f.header().rms, std::sqrt((d - mean).pow(2).mean().item<double>()), 1e-5);
    EXPECT_FLOAT_EQ(f.meta().voxel_size[2], 4.0);
    std::filesystem::remove(paths[i]);
  }
  // Not shared: each rank its own file, committed alone.
  const int port2 = free_port();
  run_ranks(2, [&](int rank) {
    Distributed dist(rank_config(rank, 2, port2));
    auto writers = shared_writers_open({paths[size_t(rank)]}, {9, 6, 7}, meta, wo,
                                       /*shared=*/false, dist);
    writers[0]->write_slab(0, vols[size_t(rank)]);
    shared_writers_commit(writers, /*shared=*/false, dist);
    // No collective call above: without this barrier a rank could close its connections while
    // the other is still setting up the process group (Gloo: "Connection closed by peer").
    dist.barrier();
  });
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(torch::equal(MrcFile(paths[i]).read().data, vols[i])) << paths[i];
    std::filesystem::remove(paths[i]);
  }
}

// The sample job's statistics on 2 ranks: gathered in rank order, each rank's values and XZ
// planes as that rank had them, and merged as the per-rank list merges.
TEST(SampleStats, GatheredInRankOrderAcrossTwoRanks) {
  auto stats_of = [](int rank) {
    SampleStats s;
    s.tiles = rank == 0 ? 3 : 5;
    s.draws = 4;
    s.ess_min = rank == 0 ? 2.5 : 1.5;
    s.ess_mean = rank == 0 ? 3.0 : 3.5;
    s.acceptance = rank == 0 ? 0.25 : -1;
    s.seconds = rank == 0 ? 7.0 : 9.0;
    s.xz = {torch::full({4, 5}, float(rank + 1)), torch::arange(20, torch::kFloat).view({4, 5}) * rank};
    return s;
  };
  const int port = free_port();
  std::vector<std::vector<SampleStats>> gathered(2);
  run_ranks(2, [&](int rank) {
    Distributed dist(rank_config(rank, 2, port));
    gathered[size_t(rank)] = sample_stats_gather(stats_of(rank), dist);
  });
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(gathered[size_t(r)].size(), 2u);
    for (int k = 0; k < 2; ++k) {
      const SampleStats &got = gathered[size_t(r)][size_t(k)], want = stats_of(k);
      EXPECT_EQ(got.tiles, want.tiles);
      EXPECT_EQ(got.draws, want.draws);
      EXPECT_EQ(got.ess_min, want.ess_min);
      EXPECT_EQ(got.ess_mean, want.ess_mean);
      EXPECT_EQ(got.acceptance, want.acceptance);
      EXPECT_EQ(got.seconds, want.seconds);
      ASSERT_EQ(got.xz.size(), 2u);
      for (size_t p = 0; p < 2; ++p) EXPECT_TRUE(torch::equal(got.xz[p], want.xz[p]));
    }
  }
  const SampleStats m = sample_stats_merge(gathered[0]);
  EXPECT_EQ(m.tiles, 8);
  EXPECT_DOUBLE_EQ(m.ess_mean, (3 * 3.0 + 5 * 3.5) / 8);
}
