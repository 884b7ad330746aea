// Fuzz target: YAML configuration files (`--config FILE.yaml`, keys mirroring the long flags)
// applied to a command with every kind of option the commands have: integers, unsigned
// integers, floats, a choice, a fixed-size and a free list of numbers, a list of strings and
// flags.
#include <CLI/CLI.hpp>

#include "fuzz_common.h"
#include "unwedge/core/config.h"
#include "unwedge/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = unwedge::fuzz::input_file(data, size, ".yaml");
  CLI::App app{"fuzz", "train"};
  int64_t steps = 0;
  unsigned seed = 0;
  double lr = 4e-4;
  std::string norm = "central", out;
  std::vector<double> tilt{-60, 60};
  std::vector<int> box;
  std::vector<std::string> even;
  bool resume = false, wedge_sign = false;
  app.add_option("--steps", steps);
  app.add_option("--seed", seed);
  app.add_option("--lr", lr);
  app.add_option("--norm", norm)->check(CLI::IsMember({"central", "percentile"}));
  app.add_option("--out", out);
  app.add_option("--tilt-range", tilt)->expected(2);
  app.add_option("--box", box)->expected(6);
  app.add_option("--even", even);
  app.add_flag("--resume", resume);
  app.add_flag("--wedge-sign", wedge_sign);
  app.add_option("--batch", steps)->check(CLI::Range(1, 4096));
  try {
    unwedge::config_apply_file(app, path);
  } catch (const unwedge::Error&) {
  }
  return 0;
}
