#include "unwedge/core/config.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>

#include "unwedge/core/error.h"

namespace unwedge {

namespace {

std::string key_to_flag_name(std::string key) {
  for (char& c : key) {
    if (c == '_') c = '-';
  }
  return key;
}

bool skip_option(const CLI::Option* opt) {
  const std::string name = opt->get_single_name();
  return name.empty() || name == "help" || name == "config" || opt->get_lnames().empty();
}

/// The top-level map of a config file as CLI11 items: `key: scalar` or `key: [a, b]`.
std::vector<CLI::ConfigItem> config_items(const YAML::Node& root) {
  std::vector<CLI::ConfigItem> items;
  if (root.IsNull()) return items;
  if (!root.IsMap()) throw CLI::ConversionError("a config file is a map of flag: value");
  for (const auto& kv : root) {
    CLI::ConfigItem item;
    item.name = key_to_flag_name(kv.first.as<std::string>());
    const YAML::Node& v = kv.second;
    if (v.IsSequence()) {
      for (const auto& e : v) item.inputs.push_back(e.as<std::string>());
    } else if (v.IsScalar()) {
      item.inputs.push_back(v.as<std::string>());
    } else {
      throw CLI::ConversionError("config key '" + item.name + "' must be a value or a list");
    }
    items.push_back(std::move(item));
  }
  return items;
}

}  // namespace

std::string ConfigYaml::to_config(const CLI::App* app, bool default_also, bool /*write_description*/,
                                  std::string /*prefix*/) const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  for (const CLI::Option* opt : app->get_options()) {
    if (skip_option(opt)) continue;
    std::vector<std::string> values = opt->results();
    if (values.empty() && default_also) {
      std::string def = opt->get_default_str();
      if (!def.empty()) values.push_back(def);
    }
    if (values.empty()) continue;
    out << YAML::Key << opt->get_lnames().front();
    if (values.size() == 1 && opt->get_items_expected_max() <= 1) {
      out << YAML::Value << values.front();
    } else {
      out << YAML::Value << YAML::Flow << values;
    }
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::vector<CLI::ConfigItem> ConfigYaml::from_config(std::istream& input) const {
  try {
    return config_items(YAML::Load(input));
  } catch (const YAML::Exception& e) {
    throw CLI::ConversionError("not valid YAML: " + std::string(e.what()));
  }
}

namespace {

/// The known keys of `app` (long flag names), for the message about an unknown one.
std::string config_known_keys(const CLI::App& app) {
  std::string known;
  for (const CLI::Option* opt : app.get_options()) {
    if (skip_option(opt)) continue;
    known += (known.empty() ? "" : ", ") + opt->get_lnames().front();
  }
  return known;
}

/// One key of the file onto its option, unless the command line gave that option already.
void config_apply_item(CLI::App& app, const CLI::ConfigItem& item, const std::string& path) {
  CLI::Option* op = app.get_option_no_throw("--" + item.name);
  if (op == nullptr || skip_option(op)) {
    throw ValueError(path + ": unknown key '" + item.name + "' for `unwedge " + app.get_name() +
                     "` (keys mirror the long flags: " + config_known_keys(app) + ")");
  }
  if (op->count() > 0) return;  // the command line wins
  if (op->get_expected_min() == 0) {
    op->add_result(op->get_flag_value(item.name, ConfigYaml().to_flag(item)));
  } else {
    op->add_result(item.inputs);
  }
  op->run_callback();
}

}  // namespace

void config_apply_file(CLI::App& app, const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError(path + ": cannot read the config file");
  std::vector<CLI::ConfigItem> items;
  try {
    items = ConfigYaml().from_config(in);
  } catch (const CLI::Error& e) {
    throw FormatError(path + ": " + e.what());
  }
  for (const CLI::ConfigItem& item : items) {
    try {
      config_apply_item(app, item, path);
    } catch (const CLI::Error& e) {
      throw ValueError(path + ": key '" + item.name + "': " + e.what());
    }
  }
}

void config_attach(CLI::App& app) {
  // CLI11 (2.1) reads config files for the root app only, so a subcommand's --config is an
  // option whose callback fills the options the command line left unset. It runs with the
  // other options' callbacks, before required options are checked and before the command.
  CLI::App* a = &app;
  app.add_option_function<std::string>(
         "--config", [a](const std::string& path) { config_apply_file(*a, path); },
         "YAML file whose keys mirror the long flags (e.g. `steps: 200`); flags given on the "
         "command line win; unknown keys are an error")
      ->check(CLI::ExistingFile)
      ->configurable(false);
}

std::string config_resolved_yaml(const CLI::App& app) {
  return ConfigYaml().to_config(&app, /*default_also=*/true, /*write_description=*/false, "");
}

}  // namespace unwedge
