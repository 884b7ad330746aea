// A trained model as the jobs use it (infer/, embed): the device it runs on and the statistics an
// input is normalised with, chosen once here for restore, sample and embed.
#pragma once
#include <string>
#include <vector>

#include "unwedge/model/checkpoint.h"
#include "unwedge/model/normalize.h"

namespace unwedge {

class MrcFile;

/// Where an input's scale comes from.
enum class NormSource {
  input,     ///< robust statistics of this input, computed as in training (the default)
  model,     ///< the first training tomogram's statistics, stored in the model
  matching,  ///< the stored statistics when the input is a file the model was trained on, else
             ///< the input's own (embed: particles of a training tomogram keep its scale)
};

/// "input" / "model" / "matching"; throws ValueError naming `field` for anything else.
NormSource norm_source_parse(const std::string& text, const std::string& field = "norm");
const char* norm_source_name(NormSource source);

/// The statistics to normalise `files` with: one tomogram, or even and odd halves (one scale for
/// both, from their central regions together), for the model whose checkpoint holds `info`
/// (its norm_mode and norm_fraction). `model_path` names the model in errors.
NormStats model_norm_stats(const CheckpointInfo& info, NormSource source,
                           const std::vector<const MrcFile*>& files, const std::string& model_path);

/// Logs a warning when `input`'s voxel size along X differs by more than 1 % from the one the
/// model (`model_path`) was trained at: a network learns features of a size in voxels, so on
/// another sampling it sees other structures. Sizes of 0 (not set) are not compared.
void model_warn_voxel_size(const CheckpointInfo& info, const std::string& model_path,
                           const MrcFile& input);

/// The device a model runs on: `requested` "model" is the training device when it is available,
/// else the CPU; any other name (auto, cpu, cuda, cuda:N) is resolved as device_resolve does,
/// with `local_rank` >= 0 (several ranks on a node) turning a bare cuda into cuda:local_rank.
std::string model_device(const CheckpointInfo& info, const std::string& requested,
                         int local_rank = -1);

}  // namespace unwedge
