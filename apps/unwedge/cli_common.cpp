#include "cli_common.h"

#include <filesystem>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/config.h"
#include "unwedge/core/error.h"

namespace unwedge::cli {

void add_overwrite_flag(CLI::App& cmd, bool& overwrite) {
  cmd.add_flag("--overwrite", overwrite, "Replace outputs that already exist (default: refuse)");
}

void add_permissive_flag(CLI::App& cmd, bool& permissive) {
  cmd.add_flag("--permissive", permissive,
               "Accept MRC quirks (MAP\\0, nversion 0, bad machine stamp, zero statistics) "
               "with a warning each (default: strict)");
}

void write_resolved_config(const CLI::App& cmd, const std::string& path, bool overwrite) {
  write_text_file_atomic(path, "# resolved configuration of `unwedge " + cmd.get_name() + "`\n" +
                                   config_resolved_yaml(cmd),
                         overwrite);
}

std::string config_path_beside(const std::string& output) {
  std::filesystem::path p(output);
  if (std::filesystem::is_directory(p)) return (p / "config.yaml").string();
  p.replace_extension();
  return p.string() + ".config.yaml";
}

void write_config_beside(const CLI::App& cmd, const std::string& output) {
  write_resolved_config(cmd, config_path_beside(output), /*overwrite=*/true);
}

NormSource norm_flag_parse(const std::string& text) {
  if (text != "input" && text != "model") {
    throw ValueError("--norm: '" + text + "' is not input or model");
  }
  return norm_source_parse(text, "--norm");
}

std::string output_label(const GlobalOptions& g) {
  std::string label = "unwedge " UNWEDGE_VERSION ": " + g.command_line;
  if (label.size() > 80) label = label.substr(0, 77) + "...";
  return label;
}

}  // namespace unwedge::cli
