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

/// Adds `--config FILE.yaml` to `app` (keys mirror the flags; unknown keys are an error).
void config_attach(CLI::App& app);

/// Every option of `app` with its resolved value (given or default), as YAML text.
std::string config_resolved_yaml(const CLI::App& app);

}  // namespace unwedge
