#include "unwedge/model/model.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <torch/cuda.h>

#include "unwedge/core/device.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/io/mrc.h"

namespace unwedge {

NormSource norm_source_parse(const std::string& text, const std::string& field) {
  if (text == "input") return NormSource::input;
  if (text == "model") return NormSource::model;
  if (text == "matching") return NormSource::matching;
  throw ValueError(field + ": '" + text + "' is not input, model or matching");
}

const char* norm_source_name(NormSource source) {
  switch (source) {
    case NormSource::input: return "input";
    case NormSource::model: return "model";
    case NormSource::matching: return "matching";
  }
  return "?";
}

NormStats model_norm_stats(const CheckpointInfo& info, NormSource source,
                           const std::vector<const MrcFile*>& files, const std::string& model_path) {
  if (files.empty() || files.size() > 2) {
    throw ValueError("normalisation statistics: 1 or 2 input files expected, got " +
                     std::to_string(files.size()));
  }
  if (source == NormSource::model) {
    if (info.norm.empty()) throw FormatError(model_path + ": checkpoint holds no statistics");
    return info.norm.front();
  }
  if (source == NormSource::matching && files.size() == 1) {
    for (size_t i = 0; i < info.inputs.size() && i < info.norm.size(); ++i) {
      std::error_code ec;
      if (std::filesystem::equivalent(info.inputs[i], files[0]->path(), ec)) return info.norm[i];
    }
  }
  return norm_stats_compute(files, norm_mode_parse(info.norm_mode, model_path + ": norm_mode"),
                            info.norm_fraction);
}

void model_warn_voxel_size(const CheckpointInfo& info, const std::string& model_path,
                           const MrcFile& input) {
  const double trained = info.voxel_size[0], given = input.meta().voxel_size[0];
  if (trained > 0 && given > 0 && std::abs(trained - given) > 0.01 * std::max(trained, given)) {
    log_warn("{} has voxel size {:.4g} A but {} was trained at {:.4g} A ({:.3g}x): the network "
             "sees features at another scale; resample the tomogram to {:.4g} A or train on it",
             input.path(), given, model_path, trained, given / trained, trained);
  }
}

std::string model_device(const CheckpointInfo& info, const std::string& requested,
                         int local_rank) {
  std::string name = requested;
  if (name.empty() || name == "model") {
    const std::string trained_on = info.train_options.value("device", "cpu");
    name = trained_on.rfind("cuda", 0) == 0 && torch::cuda::is_available() ? trained_on : "cpu";
  }
  return device_resolve(name, local_rank);
}

}  // namespace unwedge
