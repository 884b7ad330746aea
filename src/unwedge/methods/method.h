// The interface every restoration method implements, and the registry that creates them by name.
//
// A method owns its networks: the main one, trained by the caller's optimizer, and any auxiliary
// ones (discriminators, encoders) it trains itself in aux_step(). The trainer only ever sees this
// interface:
//
//   auto m = method_create("n2n", options);            // options: JSON, unknown keys rejected
//   m->to(device);
//   torch::optim::AdamW opt(m->parameters(), ...);
//   for (...) {
//     m->aux_step(batch, ctx);                         // auxiliary networks (most: nothing)
//     opt.zero_grad(); auto l = m->loss(batch); l.backward(); opt.step();
//   }
//   m->save(archive);                                   // plus name() and options_json()
//
// loss() is a pure function of the batch and the networks (it updates no weights), so the same
// call gives the validation loss. A checkpoint recreates a method with
// method_create(name, options_json) followed by load(). Randomness (augmentation, masks, latent
// noise) comes from torch's default generator on the batch's device, so seeding and saving that
// generator (the trainer's job) makes runs repeatable.
//
// What a method can do (halves or one tomogram, tilt series, posterior samples, embeddings) is
// data in its MethodInfo (MethodCapabilities), read by the CLI and the jobs.
//
// Adding a method: write src/unwedge/methods/<name>.cpp with a class deriving from Method and a
// MethodInfo (name, description, capabilities, options with defaults and help, factory), and
// add it to the list in methods/registry.cpp. See docs/methods.md.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace unwedge {

/// The tilt geometry of one tomogram: measured tilts [tilt_min_deg, tilt_max_deg] about Y
/// (DESIGN.md §1). Degrees, as at every interface.
struct MethodWedge {
  double tilt_min_deg = -60.0;  ///< degrees
  double tilt_max_deg = 60.0;   ///< degrees
  bool flip_sign = false;       ///< mirrored convention (--wedge-sign)
};

/// One training batch. Every tensor is float32 [B, 1, Z, Y, X] on the device the method lives on.
struct Batch {
  /// The network's input: the even half for half-tomogram methods, else the single tomogram.
  torch::Tensor input;
  /// The other half (odd) for half-tomogram methods; undefined for single-tomogram methods.
  torch::Tensor target;
  /// Optional specimen mask in [0, 1] (1 = count this voxel in the loss); undefined = all.
  torch::Tensor mask;
  /// Tilt geometry per sample (size B), or one entry shared by all samples, or empty when the
  /// method does not use the wedge (n2n, n2v).
  std::vector<MethodWedge> wedge;
  /// The trainer's global step (0-based), for methods with schedules (refills, warm-ups).
  int64_t step = 0;

  torch::Device device() const { return input.device(); }
};

/// What the trainer hands a method's auxiliary step. Passed in, never global: ranks that run as
/// threads of one process (tests) each pass their own.
struct StepContext {
  /// Averages gradients across data-parallel ranks in place. Every rank calls it at the same
  /// point with the same network's gradients. Empty when training runs on one rank.
  std::function<void(std::vector<torch::Tensor>&)> average_gradients;

  /// Averages the defined .grad() of `params` through average_gradients (nothing on one rank).
  void sync_gradients(const std::vector<torch::Tensor>& params) const;
};

/// The parameters of every param group of `opt`, in order.
std::vector<torch::Tensor> optimizer_parameters(torch::optim::Optimizer& opt);

/// One option a method accepts: its JSON key, default (its JSON type is the option's type) and
/// a one-line help. The train command turns each into `--opt key=value` (see
/// method_options_parse) and prints the list in `unwedge methods --options NAME`.
struct MethodOption {
  std::string key;
  nlohmann::json default_value;
  std::string help;
};

class Method {
 public:
  virtual ~Method() = default;

  /// Registered name ("n2n").
  virtual std::string name() const = 0;
  /// True when training and restoration take half tomograms (Batch::target = odd half).
  virtual bool needs_halves() const = 0;
  /// True when the method draws posterior samples (it is a PosteriorMethod, methods/posterior.h;
  /// restore() then returns one deterministic point estimate).
  virtual bool stochastic() const { return false; }
  /// True when loss() and restore() run under bf16 autocast (core/device.h). The transformer
  /// methods (mae, contrastive) mix autocast's bf16 outputs with float32 buffers and say false:
  /// `--precision auto` then trains them in fp32 and `--precision bf16` is refused.
  virtual bool bf16_ok() const { return true; }

  /// Training loss for one batch: a scalar with a graph back to parameters(). A pure function
  /// of the batch and the networks: it steps no optimizer (step_stats() records its terms), so
  /// the trainer takes the validation loss with the same call.
  virtual torch::Tensor loss(const Batch& batch) = 0;
  /// Trains the auxiliary networks (discriminators, encoders) and updates training-only state
  /// (running noise estimates) for one training batch, with the method's own optimizers
  /// (aux_optimizers()). The trainer calls it before loss() of the same batch in every training
  /// step, never for validation. Default: nothing.
  virtual void aux_step(const Batch& batch, const StepContext& ctx) {}

  /// Restores sub [B, 1, Z, Y, X] (any Z, Y, X: padded internally to size_multiple and cropped
  /// back) -> [B, 1, Z, Y, X]. Runs without gradients in whatever mode (train/eval) is set.
  virtual torch::Tensor restore(const torch::Tensor& sub) = 0;
  /// Restores from two halves of the same region. Default: (restore(even) + restore(odd)) / 2.
  virtual torch::Tensor restore_pair(const torch::Tensor& even, const torch::Tensor& odd);

  /// Parameters of the main network, for the caller's optimizer.
  virtual std::vector<torch::Tensor> parameters() = 0;
  /// The main network as a module (named parameters), for `train --init-from`; null when the
  /// method has none to share. Default: null.
  virtual torch::nn::Module* main_network() { return nullptr; }
  /// Components of the last loss() call worth a training curve (data term, discriminator
  /// loss, OT distance, ...) as name -> value; the trainer logs their mean over each log window
  /// in the JSONL log. Default: none.
  virtual std::vector<std::pair<std::string, double>> step_stats() const { return {}; }
  /// Optimizers the method steps itself in aux_step() (empty for most). The trainer sets their
  /// learning rate from its schedule; their state is part of save()/load().
  virtual std::vector<torch::optim::Optimizer*> aux_optimizers() { return {}; }

  /// Training (dropout, batch norm statistics) or evaluation mode for every network.
  virtual void train(bool on) = 0;
  /// Moves every network (and cached tensors) to `device`.
  virtual void to(torch::Device device) = 0;

  /// Writes / reads the weights of every network (and the state of aux_optimizers()).
  /// The method's name and options_json() are the caller's to store next to it.
  virtual void save(torch::serialize::OutputArchive& archive) const = 0;
  virtual void load(torch::serialize::InputArchive& archive) = 0;

  /// Every option (method and network) resolved to its value, with the keys of
  /// MethodInfo::options: method_create(name(), options_json()) recreates this method.
  virtual nlohmann::json options_json() const = 0;

  /// Receptive field of restore() along Z, Y, X in voxels (tiled restoration overlaps tiles by
  /// at least half of it on each side for seamless tiles).
  virtual std::array<int64_t, 3> receptive_field() const = 0;
  /// restore() is exact (no internal padding) when Z, Y, X are multiples of these.
  virtual std::array<int64_t, 3> size_multiple() const = 0;
};

/// What a method can do, as data: the CLI and the jobs read these instead of comparing names.
struct MethodCapabilities {
  bool halves = false;       ///< trains and restores on even/odd half tomograms (--even/--odd)
  bool single = false;       ///< trains on one tomogram (--in)
  bool tilt_series = false;  ///< trains on aligned tilt images (train --domain tilt-series;
                             ///< its options then include planar)
  bool posterior = false;    ///< draws posterior samples (`unwedge sample`; a PosteriorMethod)
  bool embedding = false;    ///< embeds sub-tomograms (`unwedge embed`; an Embedder)
};

/// The steps a warned run is told to aim for (MethodInfo::few_steps): ei and cryogen-ot reached
/// wedge-band CC 0.7-0.8 with about 200 steps at 10 CPU-minutes, 0.36-0.37 with 45
/// (bench/RESULTS.md, "The width rule on a slower CPU").
inline constexpr int64_t kFewStepsTarget = 200;

/// What the registry knows about a method without creating it.
struct MethodInfo {
  std::string name;         ///< registered name, e.g. "n2n"
  std::string description;  ///< one line for `unwedge methods`
  MethodCapabilities can;   ///< what it can do
  std::vector<MethodOption> options;  ///< every accepted key with its default
  /// For a method that trains on halves and on one tomogram: the options train sets, unless
  /// given, when it is given one tomogram (e.g. {"input": "one", ...}); empty otherwise.
  nlohmann::json one_tomogram_defaults = nlohmann::json::object();
  /// A time budget that buys fewer steps than this gets a warning from the trainer (with the
  /// minutes that would buy kFewStepsTarget): the proxy-core methods barely fill the wedge in a
  /// few dozen steps (bench/RESULTS.md, "The width rule on a slower CPU"); 0 = never.
  int64_t few_steps = 0;
  /// True when the method trains only on half tomograms. Method::needs_halves() agrees for these;
  /// for a method that takes either (ei, cryogen-ot) it is false here and says per instance
  /// which the options chose (input = halves | one).
  bool needs_halves() const { return can.halves && !can.single; }
  /// Creates the method from options already resolved by method_options_resolve.
  std::function<std::unique_ptr<Method>(const nlohmann::json& resolved)> create;
};

/// A set of methods by name. Adding a name twice, or a method that takes neither halves nor one
/// tomogram, throws ValueError.
class MethodRegistry {
 public:
  void add(MethodInfo info);
  /// Throws ValueError "unknown method 'x' (known: a, b, c)" for a name not registered.
  const MethodInfo& get(const std::string& name) const;
  bool has(const std::string& name) const;
  /// In registration order.
  const std::vector<MethodInfo>& list() const { return methods_; }
  /// The names of the methods with capability `cap`, comma-separated, in registration order
  /// (for messages: "methods that embed: mae, contrastive").
  std::string names_with(bool MethodCapabilities::*cap) const;

 private:
  std::vector<MethodInfo> methods_;
};

/// The built-in methods (n2n, n2v, ...), built once on first use and never modified after.
const MethodRegistry& method_registry();

/// Defaults of `name`'s options overlaid with `options` (an object; null = all defaults).
/// Throws ValueError for an unknown key (listing the known ones) or a value whose JSON type
/// differs from the default's (integers are accepted where a float is expected).
nlohmann::json method_options_resolve(const MethodInfo& info, const nlohmann::json& options);

/// Creates a method: method_registry().get(name), options resolved as above.
std::unique_ptr<Method> method_create(const std::string& name,
                                      const nlohmann::json& options = nlohmann::json::object());

/// Turns `key=value` strings (from repeated `--opt key=value`) into a JSON object typed after
/// the defaults of `name`'s options: numbers, booleans (true/false/1/0/yes/no), strings as typed.
/// Throws ValueError on a missing '=', an unknown key or an unparsable value.
nlohmann::json method_options_parse(const std::string& name, const std::vector<std::string>& kv);

}  // namespace unwedge
