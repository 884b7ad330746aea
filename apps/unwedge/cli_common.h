// Shared pieces of the command line: the options every command has, and small helpers.
// The CLI parses and validates; the algorithms live in the library.
#pragma once
#include <string>

#include <CLI/CLI.hpp>

#include "unwedge/model/model.h"

namespace unwedge::cli {

/// Options owned by the root command, valid for every subcommand (given before or after it).
struct GlobalOptions {
  int threads = 0;          ///< LibTorch intra-op threads; 0 = all cores
  bool quiet = false;       ///< warnings and errors only
  bool verbose = false;     ///< debug lines
  std::string command_line; ///< the command as typed, for label lines and configs
};

/// How a command picks the wedge convention (ops/wedge.h sign_flip, ops/wedge_sign.h).
enum class WedgeSignMode { plus, minus, automatic };

/// Adds `--wedge-sign [auto|+1|-1]` to `cmd`, bound to `text`; `dflt` is what no flag means
/// (printed in --help). The flag alone means -1 (it took no value before).
void add_wedge_sign_option(CLI::App& cmd, std::string& text, WedgeSignMode dflt);
/// The mode `add_wedge_sign_option` parsed: `given` is cmd.count("--wedge-sign").
/// Throws ValueError naming the value when it is none of auto, +1, 1, -1.
WedgeSignMode wedge_sign_parse(const std::string& text, bool given, WedgeSignMode dflt);

/// Adds `--overwrite` to a command that writes outputs.
void add_overwrite_flag(CLI::App& cmd, bool& overwrite);
/// Adds `--permissive` (accept common MRC quirks with a warning) to a command that reads MRC.
void add_permissive_flag(CLI::App& cmd, bool& permissive);
/// Writes the command's resolved configuration (every flag, given or default) as YAML to `path`.
void write_resolved_config(const CLI::App& cmd, const std::string& path, bool overwrite);
/// Where the resolved configuration of a command that wrote `output` goes: OUT.config.yaml
/// beside a file (the extension replaced: m.uwm -> m.config.yaml), FOLDER/config.yaml in a
/// folder.
std::string config_path_beside(const std::string& output);
/// Writes the resolved configuration next to `output` (config_path_beside), replacing an
/// earlier one: it describes the run that just wrote the output.
void write_config_beside(const CLI::App& cmd, const std::string& output);
/// CLI11 (2.1) reads an integer option with strtoll/strtoull and keeps the clamped value of a
/// number out of range (--steps 99999999999999999999 ran 2^63 - 1 steps) and wraps a negative
/// value of an unsigned one (--seed -1 became 2^64 - 1). This adds to every integer option of
/// `cmd` a check that refuses both, naming the option and the value.
void integer_options_check_range(CLI::App& cmd);
/// --norm of restore and sample: input | model (ValueError naming the flag otherwise).
NormSource norm_flag_parse(const std::string& text);
/// The label line added to MRC outputs: "unwedge <version> <command>", cut to 80 characters.
std::string output_label(const GlobalOptions& g);

// One registration function per command (apps/unwedge/cmd_<name>.cpp).
void add_info_command(CLI::App& root, GlobalOptions& g);
void add_train_command(CLI::App& root, GlobalOptions& g);
void add_restore_command(CLI::App& root, GlobalOptions& g);
void add_sample_command(CLI::App& root, GlobalOptions& g);
void add_methods_command(CLI::App& root, GlobalOptions& g);
void add_reconstruct_command(CLI::App& root, GlobalOptions& g);
void add_convert_command(CLI::App& root, GlobalOptions& g);
void add_launch_command(CLI::App& root, GlobalOptions& g);
void add_simulate_command(CLI::App& root, GlobalOptions& g);
void add_eval_command(CLI::App& root, GlobalOptions& g);
void add_ring_command(CLI::App& root, GlobalOptions& g);
void add_report_command(CLI::App& root, GlobalOptions& g);
void add_bench_command(CLI::App& root, GlobalOptions& g);
void add_embed_command(CLI::App& root, GlobalOptions& g);
void add_eval_embed_command(CLI::App& root, GlobalOptions& g);
void add_demo_mask_command(CLI::App& root, GlobalOptions& g);

}  // namespace unwedge::cli
