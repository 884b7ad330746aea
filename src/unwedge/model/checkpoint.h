// The model file (.uwm): one self-describing torch::serialize archive (a zip) holding
//   format          "unwedge-checkpoint"             (string)
//   format_version  1                                (int)
//   method          registered method name           (string)
//   method_options  resolved options, JSON text      (string)
//   info            training state, JSON text        (string; see CheckpointInfo)
//   method_state    archive: Method::save()          (every network, aux optimizers)
//   optimizer       archive: the main optimizer's state (moments, step counts)
// Written atomically (temporary + rename); reading first verifies the zip archive (structure and
// every entry's CRC-32, model/zip_check.h), then validates every key, and reports a corrupt or
// truncated file as a FormatError naming it (and the damaged entry).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "unwedge/methods/method.h"
#include "unwedge/model/normalize.h"

namespace unwedge {

inline constexpr const char* kCheckpointFormat = "unwedge-checkpoint";
inline constexpr int64_t kCheckpointVersion = 1;

/// One logged point of the training history.
struct HistoryPoint {
  int64_t step = 0;        ///< steps completed
  double loss = 0;         ///< mean training loss since the previous point
  double val_loss = -1;    ///< validation loss (-1: not evaluated at this point)
  double lr = 0;           ///< learning rate of the last step
  double elapsed_s = 0;    ///< wall-clock seconds of training so far (across resumes)
};

/// Everything in the checkpoint besides the tensors (stored as JSON in `info`).
struct CheckpointInfo {
  int64_t step = 0;              ///< steps completed
  int64_t total_steps = 0;       ///< planned steps of the schedule
  uint64_t seed = 0;             ///< every step's randomness derives from (seed, step)
  std::vector<NormStats> norm;   ///< per training tomogram, in input order
  std::vector<std::string> inputs;  ///< training input files, in order
  std::string norm_mode = "central";
  double norm_fraction = 0.5;
  MethodWedge wedge;  ///< the run's tilt range (the first input's when each had its own)
  /// Each training input's own tilt range, in input order; empty when `wedge` held for all.
  std::vector<MethodWedge> input_wedges;
  std::array<double, 3> voxel_size{1, 1, 1};  ///< Å (x, y, z) of the first training input
  nlohmann::json train_options = nlohmann::json::object();  ///< the trainer's resolved options
  std::vector<HistoryPoint> history;
  /// What the model was trained on: "tomogram" (volumes [Z, Y, X]) or "tilt-series" (the
  /// aligned tilt images [n_tilts, Y, X]; restoration denoises them, then back-projects).
  /// Checkpoints written before this field existed read as "tomogram".
  std::string domain = "tomogram";
  std::vector<double> angles_deg;  ///< tilt-series domain: the training series' angles, degrees
  int64_t thickness = 0;           ///< tilt-series domain: tomogram Z, voxels (0: unset)
  bool finished = false;         ///< the budget was spent (false for intermediate checkpoints)
};

nlohmann::json checkpoint_info_to_json(const CheckpointInfo& info);
CheckpointInfo checkpoint_info_from_json(const nlohmann::json& j, const std::string& path);

/// Writes a checkpoint atomically. `optimizer` may be null (then the key is absent).
void checkpoint_save(const std::string& path, const Method& method,
                     const torch::optim::Optimizer* optimizer, const CheckpointInfo& info,
                     bool overwrite);

/// A checkpoint read back: the method recreated and loaded, info, and the optimizer archive
/// (load it into an optimizer built over method->parameters()).
struct LoadedCheckpoint {
  std::unique_ptr<Method> method;
  CheckpointInfo info;
  std::shared_ptr<torch::serialize::InputArchive> archive;  ///< whole file, for the optimizer
  bool has_optimizer = false;
};

/// Reads and validates `path` (FormatError for a corrupt, truncated or foreign file).
/// The method is created on the CPU; move it with method->to(device).
LoadedCheckpoint checkpoint_load(const std::string& path);

/// What checkpoint_init_weights copied, counted over the target network's parameters and buffers.
struct WeightTransfer {
  std::string source_method;  ///< the method of the model read
  int64_t copied = 0;         ///< same name and shape: copied
  int64_t partial = 0;        ///< same name, more input channels in the target: the shared ones
  int64_t skipped = 0;        ///< no tensor of that name and a usable shape: left as initialised
  int64_t total = 0;
};

/// `train --init-from`: copies the main network of the model at `path` into `target`'s
/// (Method::main_network), tensor by tensor by name: equal shapes are copied; a tensor with the
/// same shape except more channels along dim 1 in the target (a layer that also takes
/// cryowgen's latent noise) gets the source's channels first and zeros for the rest (so the
/// network starts by computing what the source did, whatever the extra inputs); anything else
/// keeps its initial value. ValueError when either method has no
/// network to share or nothing matches; FormatError for an unreadable file.
WeightTransfer checkpoint_init_weights(Method& target, const std::string& path);

/// `train --init-from`: `given` (the --opt values of a new `method` run) with the network's shape
/// options (depth, base_channels, convs_per_level, kernel_size, downsample, norm, norm_groups,
/// planar) taken from the model at `path` wherever `method` has the option and `given` does not
/// set it, so that a cryowgen run started from a 32-channel cryogen-ot model is 32 channels wide
/// without saying so. `adopted` (when not null) receives those taken that differ from `method`'s
/// defaults, with their values.
nlohmann::json checkpoint_init_network_options(const std::string& method, const nlohmann::json& given,
                                               const std::string& path,
                                               nlohmann::json* adopted = nullptr);

/// Loads the optimizer state stored in `ck` into `optimizer`.
void checkpoint_load_optimizer(const LoadedCheckpoint& ck, torch::optim::Optimizer& optimizer,
                               const std::string& path);

}  // namespace unwedge
