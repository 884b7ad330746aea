// `unwedge launch --nproc N -- COMMAND ...`: starts N local ranks of `unwedge COMMAND ...` with
// torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). When a rank
// fails, the others are stopped and the launcher exits non-zero.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "cli_common.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"

namespace unwedge::cli {

namespace {

struct LaunchParams {
  int nproc = 2;              ///< ranks to start on this machine
  int port = 0;               ///< MASTER_PORT; 0 picks a free one
  std::string addr = "127.0.0.1";  ///< MASTER_ADDR
  double grace_s = 10;        ///< seconds the other ranks get to stop after one fails
  std::vector<std::string> command;
};

int pick_free_port() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    throw IoError("launch: cannot find a free TCP port on 127.0.0.1");
  }
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

std::string self_exe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw IoError("launch: cannot find this program's path in /proc/self/exe");
  return std::string(buf, size_t(n));
}

void launch(const LaunchParams& p, const GlobalOptions& g) {
  if (p.nproc < 1) throw ValueError("launch: --nproc " + std::to_string(p.nproc) + " must be >= 1");
  if (p.command.empty()) throw ValueError("launch: no command given (usage: launch --nproc N -- train ...)");
  if (p.command[0] == "launch") throw ValueError("launch: cannot launch `launch` itself");
  const int port = p.port > 0 ? p.port : pick_free_port();
  const std::string exe = self_exe();
  std::vector<pid_t> pids;
  for (int r = 0; r < p.nproc; ++r) {
    pid_t pid = fork();
    if (pid < 0) throw IoError("launch: fork failed for rank " + std::to_string(r));
    if (pid == 0) {
      setenv("RANK", std::to_string(r).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(p.nproc).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(p.nproc).c_str(), 1);
      setenv("MASTER_ADDR", p.addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(exe.c_str()));
      // Root options given before `launch` apply to every rank (threads per rank, verbosity).
      const std::string threads = std::to_string(g.threads);
      if (g.threads > 0) {
        argv.push_back(const_cast<char*>("--threads"));
        argv.push_back(const_cast<char*>(threads.c_str()));
      }
      if (g.quiet) argv.push_back(const_cast<char*>("-q"));
      if (g.verbose) argv.push_back(const_cast<char*>("-v"));
      for (const auto& a : p.command) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(exe.c_str(), argv.data());
      _exit(127);
    }
    pids.push_back(pid);
  }
  log_info("launch: {} ranks on {}:{}", p.nproc, p.addr, port);
  int first_failure = -1, failure_status = 0;
  size_t alive = pids.size();
  auto failed_at = std::chrono::steady_clock::time_point::max();
  while (alive > 0) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      --alive;
      bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok && first_failure < 0) {
        for (size_t r = 0; r < pids.size(); ++r) {
          if (pids[r] == pid) first_failure = int(r);
        }
        failure_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        failed_at = std::chrono::steady_clock::now();
        for (pid_t other : pids) kill(other, SIGTERM);
      }
      continue;
    }
    if (pid < 0) break;
    if (std::chrono::steady_clock::now() - failed_at > std::chrono::duration<double>(p.grace_s)) {
      for (pid_t other : pids) kill(other, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (first_failure >= 0) {
    throw Error("launch: rank " + std::to_string(first_failure) + " failed with status " +
                std::to_string(failure_status) + "; the other ranks were stopped");
  }
}

}  // namespace

void add_launch_command(CLI::App& root, GlobalOptions& g) {
  auto p = std::make_shared<LaunchParams>();
  CLI::App* cmd = root.add_subcommand(
      "launch", "Start N local ranks of an unwedge command (train, restore) with torchrun's "
                "environment (usage: unwedge --threads 1 launch --nproc 2 -- train ...; "
                "--threads, -q and -v given before launch apply to every rank)");
  cmd->add_option("--nproc", p->nproc, "Ranks to start on this machine")->capture_default_str();
  cmd->add_option("--master-port", p->port, "TCP port of rank 0's store (0 = a free port)")
      ->capture_default_str();
  cmd->add_option("--master-addr", p->addr, "Address of rank 0")->capture_default_str();
  cmd->add_option("--grace", p->grace_s,
                  "Seconds the other ranks get to stop after one fails (s)")
      ->capture_default_str();
  cmd->add_option("command", p->command, "The unwedge command each rank runs, after --");
  cmd->callback([p, &g] { launch(*p, g); });
}

}  // namespace unwedge::cli
