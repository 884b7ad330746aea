#include "unwedge/model/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"
#include "unwedge/model/zip_check.h"

namespace unwedge {

nlohmann::json checkpoint_info_to_json(const CheckpointInfo& info) {
  nlohmann::json j;
  j["step"] = info.step;
  j["total_steps"] = info.total_steps;
  j["seed"] = info.seed;
  j["norm_mode"] = info.norm_mode;
  j["norm_fraction"] = info.norm_fraction;
  j["norm"] = nlohmann::json::array();
  for (const auto& s : info.norm) j["norm"].push_back({{"mean", s.mean}, {"std", s.std}});
  j["inputs"] = info.inputs;
  j["wedge"] = {{"tilt_min_deg", info.wedge.tilt_min_deg},
                {"tilt_max_deg", info.wedge.tilt_max_deg},
                {"flip_sign", info.wedge.flip_sign}};
  if (!info.input_wedges.empty()) {
    j["input_wedges"] = nlohmann::json::array();
    for (const auto& w : info.input_wedges) {
      j["input_wedges"].push_back({w.tilt_min_deg, w.tilt_max_deg});
    }
  }
  j["voxel_size_A"] = info.voxel_size;
  j["train_options"] = info.train_options;
  j["history"] = nlohmann::json::array();
  for (const auto& h : info.history) {
    nlohmann::json p = {{"step", h.step}, {"loss", h.loss}, {"lr", h.lr},
                        {"elapsed_s", h.elapsed_s}};
    if (h.val_loss >= 0) p["val_loss"] = h.val_loss;
    j["history"].push_back(p);
  }
  j["domain"] = info.domain;
  j["angles_deg"] = info.angles_deg;
  j["thickness"] = info.thickness;
  j["finished"] = info.finished;
  return j;
}

CheckpointInfo checkpoint_info_from_json(const nlohmann::json& j, const std::string& path) {
  try {
    CheckpointInfo info;
    info.step = j.at("step").get<int64_t>();
    info.total_steps = j.at("total_steps").get<int64_t>();
    info.seed = j.at("seed").get<uint64_t>();
    info.norm_mode = j.at("norm_mode").get<std::string>();
    info.norm_fraction = j.at("norm_fraction").get<double>();
    for (const auto& s : j.at("norm")) info.norm.push_back({s.at("mean"), s.at("std")});
    info.inputs = j.at("inputs").get<std::vector<std::string>>();
    const auto& w = j.at("wedge");
    info.wedge = {w.at("tilt_min_deg").get<double>(), w.at("tilt_max_deg").get<double>(),
                  w.at("flip_sign").get<bool>()};
    for (const auto& r : j.value("input_wedges", nlohmann::json::array())) {
      info.input_wedges.push_back({r.at(0).get<double>(), r.at(1).get<double>(),
                                   info.wedge.flip_sign});
    }
    info.voxel_size = j.at("voxel_size_A").get<std::array<double, 3>>();
    info.train_options = j.at("train_options");
    for (const auto& p : j.at("history")) {
      HistoryPoint h;
      h.step = p.at("step");
      h.loss = p.at("loss");
      h.lr = p.at("lr");
      h.elapsed_s = p.at("elapsed_s");
      h.val_loss = p.contains("val_loss") ? p.at("val_loss").get<double>() : -1.0;
      info.history.push_back(h);
    }
    info.domain = j.value("domain", std::string("tomogram"));
    if (info.domain != "tomogram" && info.domain != "tilt-series") {
      throw FormatError(path + ": checkpoint domain '" + info.domain +
                        "' is not tomogram or tilt-series");
    }
    info.angles_deg = j.value("angles_deg", std::vector<double>{});
    info.thickness = j.value("thickness", int64_t(0));
    info.finished = j.at("finished").get<bool>();
    return info;
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(path + ": checkpoint field 'info' is malformed: " + e.what());
  }
}

void checkpoint_save(const std::string& path, const Method& method,
                     const torch::optim::Optimizer* optimizer, const CheckpointInfo& info,
                     bool overwrite) {
  torch::serialize::OutputArchive ar;
  ar.write("format", c10::IValue(std::string(kCheckpointFormat)));
  ar.write("format_version", c10::IValue(kCheckpointVersion));
  ar.write("method", c10::IValue(method.name()));
  ar.write("method_options", c10::IValue(method.options_json().dump()));
  ar.write("info", c10::IValue(checkpoint_info_to_json(info).dump()));
  torch::serialize::OutputArchive ms;
  method.save(ms);
  ar.write("method_state", ms);
  if (optimizer) {
    torch::serialize::OutputArchive os;
    optimizer->save(os);
    ar.write("optimizer", os);
  }
  // Serialised in memory, then written by us: LibTorch's file writer throws from its destructor
  // when a write fails (a full disk), which ends the process instead of reaching `main`.
  std::ostringstream bytes;
  try {
    ar.save_to(bytes);
  } catch (const c10::Error& e) {
    throw IoError(path + ": cannot serialise the checkpoint: " + e.what_without_backtrace());
  }
  write_file_atomic(path, bytes.str(), overwrite);
}

namespace {

// Method options added after checkpoints were first written, with the value that rebuilds the
// network such a checkpoint holds (its options lack the key).
const std::vector<std::pair<std::string, nlohmann::json>>& checkpoint_legacy_option_values() {
  static const std::vector<std::pair<std::string, nlohmann::json>> v{
      {"lowpass_skip", 0.0}, {"zero_head", false}, {"denoiser_noise", "absolute"}};
  return v;
}

bool method_has_option(const std::string& method, const std::string& key) {
  if (!method_registry().has(method)) return false;
  for (const auto& o : method_registry().get(method).options) {
    if (o.key == key) return true;
  }
  return false;
}

std::string read_string(torch::serialize::InputArchive& ar, const std::string& key,
                        const std::string& path) {
  c10::IValue v;
  if (!ar.try_read(key, v) || !v.isString()) {
    throw FormatError(path + ": not an unwedge checkpoint (key '" + key + "' missing or not text)");
  }
  return v.toStringRef();
}

/// The first non-empty line of a LibTorch message (TorchScript's start with a newline and
/// quote source lines; c10's carry a backtrace).
std::string first_line(const char* what) {
  std::string s(what);
  const size_t b = s.find_first_not_of("\n \t");
  if (b == std::string::npos) return "no message";
  const size_t e = s.find('\n', b);
  return s.substr(b, e == std::string::npos ? std::string::npos : e - b);
}

LoadedCheckpoint checkpoint_load_checked(const std::string& path);

}  // namespace

LoadedCheckpoint checkpoint_load(const std::string& path) {
  // A damaged archive can fail anywhere inside LibTorch (the zip reader, TorchScript's type
  // parser, the unpickler), with exceptions of several types: all of them are this file's fault.
  try {
    return checkpoint_load_checked(path);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw FormatError(path + ": not a readable unwedge checkpoint (corrupt or truncated: " +
                      first_line(e.what()) + ")");
  }
}

namespace {

LoadedCheckpoint checkpoint_load_checked(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) {
    throw IoError(path + ": checkpoint not found");
  }
  // LibTorch's reader trusts the archive (a damaged entry of TorchScript code can crash its
  // importer): every entry's structure and CRC-32 is verified first.
  try {
    zip_verify(path);
  } catch (const ZipDamage& e) {
    throw FormatError(path + ": not a readable unwedge checkpoint (corrupt or truncated: " +
                      e.what() + ")");
  }
  LoadedCheckpoint ck;
  ck.archive = std::make_shared<torch::serialize::InputArchive>();
  try {
    ck.archive->load_from(path, torch::kCPU);
  } catch (const c10::Error& e) {
    throw FormatError(path + ": not a readable unwedge checkpoint (corrupt or truncated: " +
                      e.what_without_backtrace() + ")");
  }
  auto& ar = *ck.archive;
  std::string format = read_string(ar, "format", path);
  if (format != kCheckpointFormat) {
    throw FormatError(path + ": format '" + format + "' is not " + kCheckpointFormat);
  }
  c10::IValue ver;
  if (!ar.try_read("format_version", ver) || !ver.isInt()) {
    throw FormatError(path + ": checkpoint key 'format_version' missing");
  }
  if (ver.toInt() != kCheckpointVersion) {
    throw FormatError(path + ": checkpoint format_version " + std::to_string(ver.toInt()) +
                      " is not supported (this build reads " +
                      std::to_string(kCheckpointVersion) + ")");
  }
  std::string name = read_string(ar, "method", path);
  nlohmann::json options, info;
  try {
    options = nlohmann::json::parse(read_string(ar, "method_options", path));
    info = nlohmann::json::parse(read_string(ar, "info", path));
  } catch (const nlohmann::json::parse_error& e) {
    throw FormatError(path + ": checkpoint JSON is malformed: " + e.what());
  }
  ck.info = checkpoint_info_from_json(info, path);
  // Options added after a checkpoint was written take the value that rebuilds its network.
  for (const auto& [key, legacy] : checkpoint_legacy_option_values()) {
    if (options.is_object() && !options.contains(key) && method_has_option(name, key)) {
      options[key] = legacy;
    }
  }
  try {
    ck.method = method_create(name, options);
  } catch (const ValueError& e) {
    throw FormatError(path + ": the checkpoint's method options do not fit this version (" +
                      e.what() + "); train the model again with this version");
  }
  torch::serialize::InputArchive ms;
  if (!ar.try_read("method_state", ms)) {
    throw FormatError(path + ": checkpoint key 'method_state' missing");
  }
  try {
    ck.method->load(ms);
  } catch (const c10::Error& e) {
    throw FormatError(path + ": method state does not match method '" + name + "' with its " +
                      "options: " + e.what_without_backtrace());
  }
  torch::serialize::InputArchive os;
  ck.has_optimizer = ar.try_read("optimizer", os);
  return ck;
}

}  // namespace

void checkpoint_load_optimizer(const LoadedCheckpoint& ck, torch::optim::Optimizer& optimizer,
                               const std::string& path) {
  if (!ck.has_optimizer) throw FormatError(path + ": checkpoint holds no optimizer state");
  try {
    torch::serialize::InputArchive os;
    ck.archive->read("optimizer", os);
    optimizer.load(os);
  } catch (const std::exception& e) {
    throw FormatError(path + ": optimizer state does not fit: " + first_line(e.what()));
  }
}

WeightTransfer checkpoint_init_weights(Method& target, const std::string& path) {
  LoadedCheckpoint ck = checkpoint_load(path);
  torch::nn::Module* src = ck.method->main_network();
  torch::nn::Module* dst = target.main_network();
  if (dst == nullptr) {
    throw ValueError("--init-from: method " + target.name() + " has no network to initialise");
  }
  if (src == nullptr) {
    throw ValueError("--init-from " + path + ": its method " + ck.method->name() +
                     " has no network to share");
  }
  WeightTransfer w;
  w.source_method = ck.method->name();
  torch::NoGradGuard no_grad;
  auto transfer = [&](const torch::OrderedDict<std::string, torch::Tensor>& to,
                      const torch::OrderedDict<std::string, torch::Tensor>& from) {
    for (const auto& item : to) {
      ++w.total;
      const torch::Tensor* s = from.find(item.key());
      torch::Tensor d = item.value();
      if (s == nullptr || s->dim() != d.dim()) {
        ++w.skipped;
      } else if (s->sizes() == d.sizes()) {
        d.copy_(*s);
        ++w.copied;
      } else {
        bool extra_inputs = d.dim() >= 2 && s->size(1) < d.size(1);
        for (int64_t k = 0; k < d.dim(); ++k) extra_inputs &= k == 1 || s->size(k) == d.size(k);
        if (extra_inputs) {  // the extra inputs start at zero: the network computes the source's
          d.narrow(1, 0, s->size(1)).copy_(*s);
          d.narrow(1, s->size(1), d.size(1) - s->size(1)).zero_();
          ++w.partial;
        } else {
          ++w.skipped;
        }
      }
    }
  };
  transfer(dst->named_parameters(), src->named_parameters());
  transfer(dst->named_buffers(), src->named_buffers());
  if (w.copied + w.partial == 0) {
    throw ValueError("--init-from " + path + ": no tensor of its " + w.source_method +
                     " network matches " + target.name() + "'s (another width or depth?)");
  }
  return w;
}

nlohmann::json checkpoint_init_network_options(const std::string& method, const nlohmann::json& given,
                                               const std::string& path, nlohmann::json* adopted) {
  static const char* const kShape[] = {"depth",      "base_channels", "convs_per_level", "kernel_size",
                                       "downsample", "norm",          "norm_groups",     "planar"};
  nlohmann::json out = given.is_object() ? given : nlohmann::json::object();
  const nlohmann::json source = checkpoint_load(path).method->options_json();
  const MethodInfo& info = method_registry().get(method);
  for (const char* key : kShape) {
    auto opt = std::find_if(info.options.begin(), info.options.end(),
                            [&](const MethodOption& o) { return o.key == key; });
    if (opt == info.options.end() || out.contains(key) || !source.contains(key)) continue;
    out[key] = source.at(key);
    if (adopted != nullptr && opt->default_value != source.at(key)) (*adopted)[key] = source.at(key);
  }
  return out;
}

}  // namespace unwedge
