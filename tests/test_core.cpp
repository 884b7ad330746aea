// Tests of core: atomic outputs, YAML configuration, durations.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/config.h"
#include "unwedge/core/error.h"
#include "unwedge/core/progress.h"

namespace fs = std::filesystem;
using namespace unwedge;

namespace {
fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("unwedge_test_core_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
}  // namespace

TEST(AtomicOutput, UncommittedLeavesNothingAndKeepsEarlierOutput) {
  fs::path d = temp_dir("atomic");
  fs::path out = d / "a.txt";
  write_text_file_atomic(out.string(), "first", /*overwrite=*/false);
  EXPECT_EQ(slurp(out), "first");
  EXPECT_THROW(write_text_file_atomic(out.string(), "second", false), ExistsError);
  {
    AtomicOutput o(out.string(), /*overwrite=*/true);
    std::ofstream(o.tmp_path()) << "partial";
    // destroyed without commit: as if the run failed midway
  }
  EXPECT_EQ(slurp(out), "first");
  size_t n_files = std::distance(fs::directory_iterator(d), fs::directory_iterator());
  EXPECT_EQ(n_files, 1u) << "the temporary file was left behind";
  write_text_file_atomic(out.string(), "second", /*overwrite=*/true);
  EXPECT_EQ(slurp(out), "second");
}

TEST(AtomicOutput, MissingFolderIsAnError) {
  EXPECT_THROW(output_check_writable("/nonexistent_unwedge_dir/x.mrc", false), IoError);
}

TEST(ConfigYaml, KeysMirrorFlagsAndUnknownKeysAreRejected) {
  fs::path d = temp_dir("config");
  CLI::App app("t");
  int steps = 10;
  std::vector<double> range{-60, 60};
  std::string name = "x";
  app.add_option("--steps", steps)->capture_default_str();
  app.add_option("--tilt-range", range)->expected(2);
  app.add_option("--name", name)->capture_default_str();
  config_attach(app);
  std::ofstream(d / "ok.yaml") << "steps: 200\ntilt_range: [-50, 65]\n";
  std::string cfg = (d / "ok.yaml").string();
  const char* argv1[] = {"t", "--config", cfg.c_str()};
  app.parse(3, const_cast<char**>(argv1));
  EXPECT_EQ(steps, 200);
  ASSERT_EQ(range.size(), 2u);
  EXPECT_DOUBLE_EQ(range[0], -50);
  EXPECT_DOUBLE_EQ(range[1], 65);
  std::string resolved = config_resolved_yaml(app);
  EXPECT_NE(resolved.find("steps: 200"), std::string::npos) << resolved;
  EXPECT_NE(resolved.find("name: x"), std::string::npos) << resolved;

  CLI::App app2("t");
  app2.add_option("--steps", steps);
  config_attach(app2);
  std::ofstream(d / "bad.yaml") << "stepz: 5\n";
  std::string bad = (d / "bad.yaml").string();
  const char* argv2[] = {"t", "--config", bad.c_str()};
  EXPECT_THROW(app2.parse(3, const_cast<char**>(argv2)), ValueError);
}

// A command is a subcommand: its --config must fill its options (CLI11 reads config files for
// the root app only), a required option may come from the file, and the command line wins.
TEST(ConfigYaml, SubcommandConfigFillsUnsetOptionsAndTheCommandLineWins) {
  fs::path d = temp_dir("config_sub");
  CLI::App root("t");
  CLI::App* cmd = root.add_subcommand("train");
  int steps = 10, patch = 64;
  std::string out;
  bool resume = false;
  cmd->add_option("--steps", steps)->capture_default_str();
  cmd->add_option("--patch", patch)->capture_default_str();
  cmd->add_option("--out", out)->required();
  cmd->add_flag("--resume", resume);
  config_attach(*cmd);
  int seen_patch = 0;
  cmd->callback([&] { seen_patch = patch; });
  std::ofstream(d / "s.yaml") << "steps: 3\npatch: 16\nout: m.uwm\nresume: true\n";
  std::string cfg = (d / "s.yaml").string();
  const char* argv[] = {"t", "train", "--config", cfg.c_str(), "--steps", "7"};
  root.parse(6, const_cast<char**>(argv));
  EXPECT_EQ(steps, 7);        // the command line wins
  EXPECT_EQ(patch, 16);       // the file fills what the command line left
  EXPECT_EQ(seen_patch, 16);  // before the command runs
  EXPECT_EQ(out, "m.uwm");    // a required option from the file counts
  EXPECT_TRUE(resume);
  EXPECT_NE(config_resolved_yaml(*cmd).find("patch: 16"), std::string::npos);
}

TEST(ConfigYaml, BrokenYamlAndBadValuesAreErrorsNamingTheFile) {
  fs::path d = temp_dir("config_bad");
  std::ofstream(d / "broken.yaml") << "steps: [3\n";
  std::ofstream(d / "word.yaml") << "steps: many\n";
  for (const char* name : {"broken.yaml", "word.yaml"}) {
    CLI::App root("t");
    CLI::App* cmd = root.add_subcommand("eval");
    int steps = 1;
    cmd->add_option("--steps", steps);
    config_attach(*cmd);
    std::string cfg = (d / name).string();
    const char* argv[] = {"t", "eval", "--config", cfg.c_str()};
    try {
      root.parse(4, const_cast<char**>(argv));
      ADD_FAILURE() << name << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
}

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(format_duration(4.25), "4.2s");
  EXPECT_EQ(format_duration(185), "3m05s");
  EXPECT_EQ(format_duration(3720), "1h02m");
}
