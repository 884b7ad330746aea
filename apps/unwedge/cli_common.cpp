#include "cli_common.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/config.h"
#include "unwedge/core/error.h"

namespace unwedge::cli {

void add_wedge_sign_option(CLI::App& cmd, std::string& text, WedgeSignMode dflt) {
  const char* d = dflt == WedgeSignMode::automatic ? "auto" : dflt == WedgeSignMode::minus ? "-1"
                                                                                          : "+1";
  cmd.add_option("--wedge-sign", text,
                 std::string("Wedge convention for an asymmetric tilt range: +1 (unwedge's), -1 "
                             "(mirrored: theta -> -theta), or auto (the sign whose missing band "
                             "holds less of the volume's power, logged with both powers); the "
                             "flag alone means -1 (default: ") + d + ")")
      ->expected(0, 1);
}

WedgeSignMode wedge_sign_parse(const std::string& text, bool given, WedgeSignMode dflt) {
  if (!given) return dflt;
  // true/false: configuration files written when --wedge-sign was an on/off flag.
  if (text.empty() || text == "-1" || text == "true") return WedgeSignMode::minus;
  if (text == "+1" || text == "1" || text == "false") return WedgeSignMode::plus;
  if (text == "auto") return WedgeSignMode::automatic;
  throw ValueError("--wedge-sign: '" + text + "' is not auto, +1 or -1");
}

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

void integer_options_check_range(CLI::App& cmd) {
  for (CLI::Option* opt : cmd.get_options()) {
    const std::string type = opt->get_type_name();  // "INT", "UINT", "INT:INT in [1 - 9]", ...
    const bool is_unsigned = type.rfind("UINT", 0) == 0;
    if (!is_unsigned && type.rfind("INT", 0) != 0) continue;
    opt->check(CLI::Validator(
        [is_unsigned](std::string& text) -> std::string {
          size_t i = 0;
          while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
          if (is_unsigned && i < text.size() && text[i] == '-') {
            return text + " is negative (a count or seed, 0 or more)";
          }
          errno = 0;
          char* end = nullptr;
          if (is_unsigned) {
            (void)std::strtoull(text.c_str(), &end, /*base=*/0);
          } else {
            (void)std::strtoll(text.c_str(), &end, /*base=*/0);
          }
          return errno == ERANGE ? text + " is out of the 64-bit integer range" : std::string();
        },
        /*validator_desc=*/"", /*validator_name=*/"integer range"));
  }
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
