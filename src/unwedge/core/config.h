// YAML configuration files whose keys mirror a command's long flags (`tilt-range: [-60, 60]`),
// read and written through CLI11's config interface. Unknown keys are rejected by the app.
#pragma once
#include <string>

#include <CLI/CLI.hpp>

namespace unwedge {

/// CLI11 config formatter for flat YAML maps: `key: scalar` or `key: [a, b]`.
class ConfigYaml : public CLI::Config {
 public:
  std::string to_config(const CLI::App* app, bool default_also, bool write_description,
                        std::string prefix) const override;
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override;
};

/// Applies the YAML file `path` to `app`'s options that have no value yet (keys mirror the long
/// flags; an unknown key, a bad value or broken YAML is an error naming the file).
void config_apply_file(CLI::App& app, const std::string& path);

/// Adds `--config FILE.yaml` to `app` (keys mirror the flags; unknown keys are an error; flags
/// given on the command line win).
void config_attach(CLI::App& app);

/// Every option of `app` with its resolved value (given or default), as YAML text.
std::string config_resolved_yaml(const CLI::App& app);

}  // namespace unwedge
