// Tests of the c10d wrapper: environment parsing, gradient averaging equivalent to one large
// batch, broadcast, configuration agreement, and a dead rank failing loudly instead of hanging.
// Two ranks run as two threads of this process over loopback Gloo.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/train/distributed.h"

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

}  // namespace

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
