// unwedge command line: parses, validates and calls the library. Errors are caught here once.
#include <malloc.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>

#include "cli_common.h"
#include "unwedge/core/atomic_file.h"
#include "unwedge/core/config.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/core/threads.h"

using namespace unwedge;

namespace {

using AddCommand = void (*)(CLI::App&, cli::GlobalOptions&);

// Every subcommand, registered in one place (in the order `--help` lists them).
const AddCommand kCommands[] = {
    cli::add_simulate_command,  cli::add_reconstruct_command, cli::add_train_command,
    cli::add_restore_command,   cli::add_sample_command,      cli::add_eval_command,
    cli::add_ring_command,      cli::add_report_command,
    cli::add_bench_command,     cli::add_methods_command,     cli::add_embed_command,
    cli::add_eval_embed_command, cli::add_demo_mask_command,  cli::add_info_command,
    cli::add_convert_command,   cli::add_launch_command,
};

std::string join_args(int argc, char** argv) {
  std::string s = "unwedge";
  for (int i = 1; i < argc; ++i) s += std::string(" ") + argv[i];
  return s;
}

// The first word that is not a root option must name a command: say which ones exist.
void check_command_name(const CLI::App& app, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads") {
      ++i;
      continue;
    }
    if (a.empty() || a[0] == '-') continue;
    std::string known;
    for (const CLI::App* cmd : app.get_subcommands({})) {
      if (cmd->get_name() == a) return;
      known += (known.empty() ? "" : ", ") + cmd->get_name();
    }
    throw ValueError("unknown command '" + a + "' (known: " + known + ")");
  }
}

}  // namespace

int main(int argc, char** argv) {
  // OpenMP threads that spin while waiting burn the cores other threads need when the machine
  // is shared or oversubscribed (measured: simulate --preset standard 7 s passive, 42-66 s
  // spinning on a loaded 2-core machine). A user's own setting wins.
  setenv("OMP_WAIT_POLICY", "PASSIVE", /*overwrite=*/0);
  // glibc serves blocks above its mmap threshold (at most 32 MB by default) with fresh mmap'd
  // pages and unmaps them on free, so every training step's large activations were zero-filled
  // by the kernel again: contrastive spent 32 % of its CPU time in the kernel (15 steps, batch
  // 16: 4.8 s system of 15 s; 0.3-1.0 s with the threshold raised). Freed blocks are now kept
  // for reuse. A user's MALLOC_MMAP_THRESHOLD_ wins.
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr) mallopt(M_MMAP_THRESHOLD, INT_MAX);
  // SIGINT, SIGTERM (what SLURM sends) and SIGHUP remove the outputs' temporaries first.
  temporaries_remove_on_signals();
  cli::GlobalOptions g;
  g.command_line = join_args(argc, argv);
  CLI::App app{"unwedge: self-supervised denoising and missing-wedge restoration of "
               "cryo-electron tomograms",
               "unwedge"};
  app.set_version_flag("--version", std::string("unwedge ") + UNWEDGE_VERSION);
  app.require_subcommand(1);
  app.fallthrough();
  app.add_option("--threads", g.threads, "CPU threads for LibTorch (0 = all cores)")
      ->capture_default_str();
  app.add_flag("-q,--quiet", g.quiet, "Print warnings and errors only");
  app.add_flag("-v,--verbose", g.verbose, "Print debug lines");
  for (AddCommand add : kCommands) add(app, g);
  cli::integer_options_check_range(app);
  for (CLI::App* cmd : app.get_subcommands({})) {
    config_attach(*cmd);
    cli::integer_options_check_range(*cmd);
  }

  app.parse_complete_callback([&] {
    log_set_level(g.quiet ? LogLevel::quiet : g.verbose ? LogLevel::verbose : LogLevel::normal);
    threads_set(g.threads);
  });

  try {
    check_command_name(app, argc, argv);
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with exit code 0; every real error is one line, rc 1.
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "unwedge: error: %s (see --help)\n", e.what());
    return 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "unwedge: error: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "unwedge: error (LibTorch): %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unwedge: error: %s\n", e.what());
    return 1;
  }
  // A command that stopped early on a deferred SIGINT/SIGTERM (train, after its checkpoint)
  // exits as the shell reports a process ended by that signal.
  if (const int sig = stop_requested()) return 128 + sig;
  return 0;
}
