// Method defaults, the registry, and option resolution/parsing.
#include "unwedge/methods/method.h"

#include <algorithm>
#include <cctype>

#include "unwedge/core/error.h"

namespace unwedge {

torch::Tensor Method::restore_pair(const torch::Tensor& even, const torch::Tensor& odd) {
  if (even.sizes() != odd.sizes()) {
    throw ShapeError("method " + name() + ": halves differ in shape: " + c10::str(even.sizes()) +
                     " vs " + c10::str(odd.sizes()));
  }
  return 0.5 * (restore(even) + restore(odd));
}

void StepContext::sync_gradients(const std::vector<torch::Tensor>& params) const {
  if (!average_gradients) return;
  std::vector<torch::Tensor> grads;
  grads.reserve(params.size());
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (!grads.empty()) average_gradients(grads);
}

std::vector<torch::Tensor> optimizer_parameters(torch::optim::Optimizer& opt) {
  std::vector<torch::Tensor> out;
  for (auto& g : opt.param_groups()) {
    for (const auto& p : g.params()) out.push_back(p);
  }
  return out;
}

void MethodRegistry::add(MethodInfo info) {
  if (info.name.empty()) throw ValueError("method registry: empty method name");
  if (has(info.name)) {
    throw ValueError("method registry: method '" + info.name + "' is already registered");
  }
  if (!info.create) throw ValueError("method registry: method '" + info.name + "' has no factory");
  if (!info.can.halves && !info.can.single) {
    throw ValueError("method registry: method '" + info.name +
                     "' takes neither half tomograms nor one tomogram");
  }
  methods_.push_back(std::move(info));
}

std::string MethodRegistry::names_with(bool MethodCapabilities::*cap) const {
  std::string out;
  for (const auto& m : methods_) {
    if (m.can.*cap) out += (out.empty() ? "" : ", ") + m.name;
  }
  return out;
}

bool MethodRegistry::has(const std::string& name) const {
  return std::any_of(methods_.begin(), methods_.end(),
                     [&](const MethodInfo& m) { return m.name == name; });
}

const MethodInfo& MethodRegistry::get(const std::string& name) const {
  for (const auto& m : methods_) {
    if (m.name == name) return m;
  }
  std::string known;
  for (const auto& m : methods_) known += (known.empty() ? "" : ", ") + m.name;
  throw ValueError("unknown method '" + name + "' (known: " + known + ")");
}

namespace {

std::string known_keys(const MethodInfo& info) {
  std::string s;
  for (const auto& o : info.options) s += (s.empty() ? "" : ", ") + o.key;
  return s;
}

const MethodOption* find_option(const MethodInfo& info, const std::string& key) {
  for (const auto& o : info.options) {
    if (o.key == key) return &o;
  }
  return nullptr;
}

bool same_kind(const nlohmann::json& def, const nlohmann::json& v) {
  if (def.is_boolean()) return v.is_boolean();
  if (def.is_number_integer()) return v.is_number_integer();
  if (def.is_number()) return v.is_number();
  if (def.is_string()) return v.is_string();
  return def.type() == v.type();
}

}  // namespace

nlohmann::json method_options_resolve(const MethodInfo& info, const nlohmann::json& options) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& o : info.options) out[o.key] = o.default_value;
  if (options.is_null()) return out;
  if (!options.is_object()) {
    throw ValueError("method " + info.name + ": options must be a JSON object, got " +
                     options.dump());
  }
  for (const auto& it : options.items()) {
    const MethodOption* o = find_option(info, it.key());
    if (!o) {
      throw ValueError("method " + info.name + ": unknown option '" + it.key() + "' (known: " +
                       known_keys(info) + ")");
    }
    if (!same_kind(o->default_value, it.value())) {
      throw ValueError("method " + info.name + ": option '" + it.key() + "' = " +
                       it.value().dump() + " has the wrong type (default is " +
                       o->default_value.dump() + ")");
    }
    out[it.key()] = o->default_value.is_number_float() ? nlohmann::json(it.value().get<double>())
                                                       : it.value();
  }
  return out;
}

std::unique_ptr<Method> method_create(const std::string& name, const nlohmann::json& options) {
  const MethodInfo& info = method_registry().get(name);
  return info.create(method_options_resolve(info, options));
}

nlohmann::json method_options_parse(const std::string& name, const std::vector<std::string>& kv) {
  const MethodInfo& info = method_registry().get(name);
  nlohmann::json out = nlohmann::json::object();
  for (const auto& item : kv) {
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw ValueError("method " + name + ": option '" + item + "' is not KEY=VALUE");
    }
    std::string key = item.substr(0, eq);
    std::string value = item.substr(eq + 1);
    const MethodOption* o = find_option(info, key);
    if (!o) {
      throw ValueError("method " + name + ": unknown option '" + key + "' (known: " +
                       known_keys(info) + ")");
    }
    auto bad = [&] {
      return ValueError("method " + name + ": option " + key + "=" + value + " is not a " +
                        std::string(o->default_value.type_name()) + " like the default " +
                        o->default_value.dump());
    };
    const auto& def = o->default_value;
    try {
      size_t used = 0;
      if (def.is_boolean()) {
        std::string v = value;
        std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
        if (v == "true" || v == "1" || v == "yes" || v == "on") {
          out[key] = true;
        } else if (v == "false" || v == "0" || v == "no" || v == "off") {
          out[key] = false;
        } else {
          throw bad();
        }
      } else if (def.is_number_integer()) {
        long long v = std::stoll(value, &used);
        if (used != value.size()) throw bad();
        out[key] = int64_t(v);
      } else if (def.is_number()) {
        double v = std::stod(value, &used);
        if (used != value.size()) throw bad();
        out[key] = v;
      } else if (def.is_string()) {
        out[key] = value;
      } else {
        out[key] = nlohmann::json::parse(value);
      }
    } catch (const std::invalid_argument&) {
      throw bad();
    } catch (const std::out_of_range&) {
      throw bad();
    } catch (const nlohmann::json::exception&) {
      throw bad();
    }
  }
  return out;
}

}  // namespace unwedge
