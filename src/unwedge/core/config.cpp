#include "unwedge/core/config.h"

#include <yaml-cpp/yaml.h>

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
  YAML::Node root;
  try {
    root = YAML::Load(input);
  } catch (const YAML::Exception& e) {
    throw CLI::ConversionError("config file is not valid YAML: " + std::string(e.what()));
  }
  std::vector<CLI::ConfigItem> items;
  if (root.IsNull()) return items;
  if (!root.IsMap()) throw CLI::ConversionError("config file must be a map of flag: value");
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

void config_attach(CLI::App& app) {
  app.config_formatter(std::make_shared<ConfigYaml>());
  app.set_config("--config", "", "YAML file whose keys mirror the long flags (e.g. `steps: 200`)");
  app.allow_config_extras(CLI::config_extras_mode::error);
}

std::string config_resolved_yaml(const CLI::App& app) {
  return ConfigYaml().to_config(&app, /*default_also=*/true, /*write_description=*/false, "");
}

}  // namespace unwedge
