#include "unwedge/train/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/device.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/io/mrc.h"
#include "unwedge/nn/unet3d.h"
#include "unwedge/ops/wedge.h"
#include "unwedge/train/dist_method.h"

namespace unwedge {

namespace {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainOptions& o,
                                                        std::vector<torch::Tensor> params) {
  if (o.optimizer == "adamw") {
    return std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(o.schedule.lr).weight_decay(o.weight_decay));
  }
  if (o.optimizer == "adam") {
    return std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(o.schedule.lr).weight_decay(o.weight_decay));
  }
  throw ValueError("optimizer: '" + o.optimizer + "' is not known (adam, adamw)");
}

void set_lr(torch::optim::Optimizer& opt, double lr) {
  for (auto& g : opt.param_groups()) g.options().set_lr(lr);
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

/// A tilt range must be a valid wedge (wedge_check); the error names where it came from.
void check_options_wedge(const MethodWedge& w, const std::string& what) {
  try {
    wedge_check(WedgeGeometry{w.tilt_min_deg, w.tilt_max_deg, w.flip_sign});
  } catch (const ValueError& e) {
    throw ValueError(what + ": " + e.what());
  }
}

void check_options(const TrainOptions& o) {
  budget_clock_parse(o.budget_clock, "budget-clock");
  if (o.steps < 0 || o.epochs < 0 || o.minutes < 0 || o.stop_after < 0) {
    throw ValueError("budget: --steps " + std::to_string(o.steps) + ", --epochs " +
                     std::to_string(o.epochs) + ", --minutes " + fmt("%g", o.minutes) +
                     ", --stop-after " + std::to_string(o.stop_after) + ": none may be negative");
  }
  if (o.checkpoint_every < 0) {
    throw ValueError("checkpoint-every: " + std::to_string(o.checkpoint_every) + " is negative");
  }
  if (!std::isfinite(o.minutes)) {
    throw ValueError("budget: --minutes " + fmt("%g", o.minutes) + " is not a finite number");
  }
  int budgets = (o.steps > 0) + (o.epochs > 0) + (o.minutes > 0);
  if (budgets != 1) {
    throw ValueError("budget: give exactly one of --steps, --epochs, --minutes (got steps " +
                     std::to_string(o.steps) + ", epochs " + std::to_string(o.epochs) +
                     ", minutes " + fmt("%g", o.minutes) + ")");
  }
  check_options_wedge(o.wedge, "--tilt-range");
  for (double m : o.snapshot_minutes) {
    if (!(m > 0) || !std::isfinite(m)) {
      throw ValueError("snapshots: " + fmt("%g", m) + " minutes is not a positive finite number");
    }
  }
  if (o.batch < 0) throw ValueError("batch: " + std::to_string(o.batch) + " is negative");
  if (!(o.schedule.lr > 0) || !std::isfinite(o.schedule.lr)) {
    throw ValueError("lr: " + fmt("%g", o.schedule.lr) + " is not a positive finite number");
  }
  if (o.clip < 0) throw ValueError("clip: " + fmt("%g", o.clip) + " is negative");
  if (o.log_every < 1) throw ValueError("log-every: " + std::to_string(o.log_every));
  if (o.val_every < 0 || o.val_batches < 1) {
    throw ValueError("val-every / val-batches: " + std::to_string(o.val_every) + " / " +
                     std::to_string(o.val_batches));
  }
}

}  // namespace

std::vector<MethodWedge> batch_wedges(const MethodWedge& run,
                                      const std::vector<MethodWedge>& per_tomo,
                                      const std::vector<int64_t>& tomo) {
  if (per_tomo.empty()) return {run};
  std::vector<MethodWedge> out;
  out.reserve(tomo.size());
  for (int64_t t : tomo) out.push_back(per_tomo.at(size_t(t)));
  return out;
}

int64_t train_batch_auto(const std::string& device, const std::string& method, int64_t ranks) {
  int64_t b = device.rfind("cuda", 0) != 0 && method == "n2n" ? 2 : 4;
  if (method == "contrastive") b = 16;  // NT-Xent: 2B - 2 negatives per view
  if (method == "mae") b = 8;           // cheap steps (a quarter of the tokens are encoded)
  ranks = std::max<int64_t>(1, ranks);
  return (b + ranks - 1) / ranks * ranks;
}

int64_t train_batch_few_steps(int64_t batch, double budget_cpu_s, double step_s,
                              int64_t few_steps, int64_t ranks) {
  if (few_steps <= 0 || step_s <= 0 || batch <= kFewStepsBatch) return batch;
  if (budget_cpu_s / step_s >= double(few_steps)) return batch;
  ranks = std::max<int64_t>(1, ranks);
  return std::min(batch, (kFewStepsBatch + ranks - 1) / ranks * ranks);
}

int64_t train_width_auto(const std::string& device, const std::string& method, double minutes,
                         const std::string& clock, int threads, double voxels, double wide_step_s) {
  if (method != "cryogen-ot") return 0;
  if (device.rfind("cuda", 0) == 0) return 32;
  double cpu_minutes = clock == "cpu" ? minutes : minutes * std::max(1, threads);
  if (wide_step_s > 0) cpu_minutes *= kWideReferenceStepSeconds / wide_step_s;  // reference minutes
  if (cpu_minutes < kWideCpuMinutes) return 0;
  return cpu_minutes >= kWideCpuMinutesPerMvoxel * voxels / 1e6 ? 32 : 0;
}

double train_width_probe(const c10::Device& device, const std::string& precision, int64_t patch,
                         int64_t batch) {
  UNet3d net(UNet3dOptions{});
  net->to(device);
  const at::Tensor x = torch::randn({batch, 1, patch, patch, patch}, torch::TensorOptions(device));
  double seconds = 0;
  for (int pass = 0; pass < 2; ++pass) {  // a warm-up pass (oneDNN's first call), a timed one
    const double t0 = budget_clock_now(BudgetClock::cpu);
    {
      AutocastGuard amp(precision_parse(precision, "--precision"), device);
      net->forward(x).to(torch::kFloat).square().mean().backward();
    }
    seconds = budget_clock_now(BudgetClock::cpu) - t0;
    net->zero_grad();
  }
  return seconds;
}

std::string train_snapshot_path(const std::string& model, double minutes) {
  const std::filesystem::path p(model);
  const std::string ext = p.has_extension() ? p.extension().string() : ".uwm";
  return (p.parent_path() / (p.stem().string() + ".at" + fmt("%g", minutes) + "min" + ext))
      .string();
}

uint64_t train_step_seed(uint64_t seed, int64_t step) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * uint64_t(step + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFFULL;
}
nlohmann::json train_options_to_json(const TrainOptions& o) {
  return {{"method", o.method},
          {"steps", o.steps},
          {"epochs", o.epochs},
          {"minutes", o.minutes},
          {"budget_clock", o.budget_clock},
          {"batch", o.batch},
          {"patch", o.sampler.patch},
          {"patch_z", o.sampler.patch_z},
          {"domain", o.domain},
          {"val_fraction", o.sampler.val_fraction},
          {"optimizer", o.optimizer},
          {"lr", o.schedule.lr},
          {"warmup", o.schedule.warmup},
          {"final_lr_fraction", o.schedule.final_fraction},
          {"weight_decay", o.weight_decay},
          {"clip", o.clip},
          {"seed", o.seed},
          {"device", o.device},
          {"precision", o.precision},
          {"norm", norm_mode_name(o.norm_mode)},
          {"norm_fraction", o.norm_fraction}};
}

std::vector<TrainInput> train_inputs_read(const std::vector<std::string>& even,
                                          const std::vector<std::string>& odd,
                                          const std::vector<std::string>& in,
                                          const std::vector<std::string>& masks, bool auto_mask,
                                          double auto_mask_quantile, bool permissive) {
  const bool pairs = !even.empty() || !odd.empty();
  if (pairs && !in.empty()) throw ValueError("give either --even/--odd or --in, not both");
  if (!pairs && in.empty()) throw ValueError("no input: give --even and --odd, or --in");
  if (pairs && even.size() != odd.size()) {
    throw ValueError("--even lists " + std::to_string(even.size()) + " files but --odd lists " +
                     std::to_string(odd.size()) + " (halves are paired by position)");
  }
  const size_t n = pairs ? even.size() : in.size();
  if (!masks.empty() && masks.size() != n) {
    throw ValueError("--mask lists " + std::to_string(masks.size()) + " files for " +
                     std::to_string(n) + " tomograms (paired by position)");
  }
  if (!masks.empty() && auto_mask) throw ValueError("give --mask or --auto-mask, not both");
  MrcReadOptions ro{permissive};
  auto shape_text = [](const Volume& v) {
    return std::to_string(v.nx()) + " x " + std::to_string(v.ny()) + " x " +
           std::to_string(v.nz());
  };
  std::vector<TrainInput> out;
  for (size_t i = 0; i < n; ++i) {
    TrainInput t;
    const std::string& first = pairs ? even[i] : in[i];
    t.a = mrc_read(first, ro);
    check_finite(t.a.data, first);
    t.name = first;
    if (pairs) {
      t.b = mrc_read(odd[i], ro);
      check_finite(t.b.data, odd[i]);
      if (!t.a.data.sizes().equals(t.b.data.sizes())) {
        throw ShapeError("halves differ in shape: " + even[i] + " is " + shape_text(t.a) +
                         " but " + odd[i] + " is " + shape_text(t.b) + " voxels (X x Y x Z)");
      }
      voxel_sizes_check_same(even[i], t.a.meta, odd[i], t.b.meta);
      t.name += "+" + odd[i];
    }
    if (!masks.empty()) {
      Volume m = mrc_read(masks[i], ro);
      if (!m.data.sizes().equals(t.a.data.sizes())) {
        throw ShapeError("mask " + masks[i] + " is " + shape_text(m) + " voxels but " + first +
                         " is " + shape_text(t.a));
      }
      t.mask = m.data.ne(0);
    } else if (auto_mask) {
      at::Tensor sum = t.b.data.defined() ? (t.a.data + t.b.data) : t.a.data;
      t.mask = auto_mask_local_variance(sum, /*cell=*/16, auto_mask_quantile);
    }
    out.push_back(std::move(t));
  }
  return out;
}

Trainer::Trainer(const TrainOptions& opts, const std::vector<TrainInput>& inputs,
                 const TrainOutputs& outputs, Distributed* dist, ProgressFn progress)
    : o_(opts), out_(outputs), dist_(dist), progress_(std::move(progress)),
      gen_(at::detail::createCPUGenerator(0)) {
  TrainOptions& o = o_;
  check_options(o);
  if (dist_ && !dist_->config().distributed()) dist_ = nullptr;
  const bool main_rank = !dist_ || dist_->is_main();
  rank_ = dist_ ? dist_->rank() : 0;
  world_ = dist_ ? dist_->world_size() : 1;
  o.device = device_resolve(o.device);  // auto -> cpu or cuda, the same on every rank
  const bool batch_auto = o.batch == 0;
  if (batch_auto) {
    o.batch = train_batch_auto(o.device, o.method, world_);
    if (main_rank) {
      log_info("batch {} (auto: 2 for n2n on a CPU, else 4, a multiple of the ranks; --batch "
               "to choose)", o.batch);
    }
  }
  if (o.batch % world_ != 0) {
    throw ValueError("--batch " + std::to_string(o.batch) + " is the global batch: it must be a "
                     "multiple of the " + std::to_string(world_) + " ranks");
  }
  device_ = device_parse(device_resolve(o.device, dist_ ? dist_->config().local_rank : -1));
  // A bad name fails here; "auto" is resolved once the method is known (bf16_ok).
  precision_parse(precision_resolve(o.precision, device_), "--precision");
  if (inputs.empty()) throw ValueError("train: no input tomograms");

  // --init-from: the network's shape follows the model it starts from unless --opt says
  // otherwise (also when resuming such a run with the same command).
  if (!o.init_from.empty()) {
    nlohmann::json adopted = nlohmann::json::object();
    o.method_options = checkpoint_init_network_options(o.method, o.method_options, o.init_from, &adopted);
    if (main_rank && !adopted.empty()) {
      log_info("--init-from {}: network options {} taken from it (--opt to override)", o.init_from,
               adopted.dump());
    }
  }
  const BudgetClock clock = budget_clock_parse(o.budget_clock, "budget-clock");
  // The speed probe (train_width_probe), on a CPU with a --minutes budget of a fresh run, when a
  // default depends on it: cryogen-ot's width, and the batch of a method that needs many steps
  // (MethodInfo::few_steps). Charged to the budget.
  double probe_s = 0, probe = 0;
  const int64_t few_steps = method_registry().get(o.method).few_steps;
  const bool width_auto = !o.method_options.contains("base_channels") &&
                          train_width_auto(device_.str(), o.method, 1e9, "cpu", 1) > 0;
  // The batch rule is for the default width or narrower (a width given by --opt is known now;
  // cryogen-ot's auto width is settled below, from the same probe).
  const int64_t default_width = UNet3dOptions{}.base_channels();
  const bool batch_rule = batch_auto && few_steps > 0 &&
                          o.method_options.value("base_channels", default_width) <= default_width;
  const double budget_cpu_s =
      60 * (o.budget_clock == "cpu" ? o.minutes : o.minutes * torch::get_num_threads());
  if (!out_.resume && o.minutes > 0 && device_.is_cpu() && (width_auto || batch_rule)) {
    const double t0 = budget_clock_now(clock);
    probe = train_width_probe(device_, precision_resolve(o.precision, device_), o.sampler.patch,
                              o.batch);
    if (dist_ && world_ > 1) {  // every rank must choose the same defaults: rank 0's probe
      probe = std::stod(dist_->broadcast_string(fmt("%.17g", probe)));
    }
    probe_s = budget_clock_now(clock) - t0;
  }
  if (!out_.resume && width_auto) {
    double voxels = 0;
    for (const auto& t : inputs) voxels += double(t.a.data.numel());
    const double wide_step_s = kWideStepPerProbe * probe;
    const int64_t w = train_width_auto(o.device, o.method, o.minutes, o.budget_clock,
                                       torch::get_num_threads(), voxels, wide_step_s);
    if (main_rank && wide_step_s > 0) {
      log_info("width rule: a 32-channel step of {} takes about {:.1f} CPU-s on this machine "
               "({:.2f} s probe x {:g}; {:.1f} s on the reference), so this budget buys about {:.0f} "
               "steps at 32 channels", o.method, wide_step_s, probe, kWideStepPerProbe,
               kWideReferenceStepSeconds, budget_cpu_s / wide_step_s);
    }
    if (w > 0) {
      o.method_options["base_channels"] = w;
      if (main_rank) {
        log_info("{} channels (auto for {}: on a GPU, or a budget of at least {:g} CPU-minutes "
                 "and {:g} per million voxels of a CPU as fast as the reference; --opt "
                 "base_channels=N to choose)", w, o.method, kWideCpuMinutes, kWideCpuMinutesPerMvoxel);
      }
    } else if (main_rank && wide_step_s > 0) {
      log_info("{} channels (auto for {}: 32 needs {:g} CPU-minutes and {:g} per million voxels "
               "on the reference machine, {:.0f} and {:.0f} here; --opt base_channels=N to choose)",
               UNet3dOptions{}.base_channels(), o.method, kWideCpuMinutes, kWideCpuMinutesPerMvoxel,
               kWideCpuMinutes * wide_step_s / kWideReferenceStepSeconds,
               kWideCpuMinutesPerMvoxel * wide_step_s / kWideReferenceStepSeconds);
    }
  }
  // The batch of a method that needs many steps, when this budget buys few of them at the auto
  // batch (the probe's 16-channel U-Net). Not for a wider network: the width rule's figures
  // (32 channels ahead from 8 reference CPU-minutes) were measured at batch 4.
  if (batch_rule && probe > 0 &&
      o.method_options.value("base_channels", default_width) <= default_width) {
    const double step_s = probe * kStepPerProbe;
    const int64_t b = train_batch_few_steps(o.batch, budget_cpu_s - probe_s, step_s, few_steps, world_);
    if (main_rank && b != o.batch) {
      log_info("batch {} (auto: a batch-{} step of {} takes about {:.1f} CPU-s here, {:.2f} s "
               "probe x {:g}, so this budget buys about {:.0f} of them, fewer than {}; batch {} "
               "makes twice the steps; --batch to choose)", b, o.batch, o.method, step_s, probe,
               step_s / probe, (budget_cpu_s - probe_s) / step_s, few_steps, b);
    }
    o.batch = b;
  }
  // A method that trains on halves or on one tomogram, given one: its one-tomogram options
  // (input = one, ...) unless --opt gives them (also when resuming, so the options compare).
  const bool pairs = inputs.front().b.data.defined();
  const MethodInfo& method_info = method_registry().get(o.method);
  if (!pairs && method_info.can.halves && method_info.can.single) {
    nlohmann::json set = nlohmann::json::object();
    for (const auto& [key, value] : method_info.one_tomogram_defaults.items()) {
      if (!o.method_options.contains(key)) o.method_options[key] = set[key] = value;
    }
    if (main_rank && !set.empty()) {
      log_info("one tomogram: {} options {} (--opt to choose)", o.method, set.dump());
    }
  }
  // Method: fresh, or recreated from the checkpoint being resumed.
  if (out_.resume) {
    if (main_rank) temporaries_sweep_stale(out_.model);  // what a killed session left
    ck_ = checkpoint_load(out_.model);
    if (ck_.method->name() != o.method) {
      throw ValueError(out_.model + ": checkpoint holds method '" + ck_.method->name() +
                       "', not --method " + o.method);
    }
    // A width not given is the checkpoint's (it may have been chosen automatically).
    const nlohmann::json saved = ck_.method->options_json();
    if (!o.method_options.contains("base_channels") && saved.contains("base_channels")) {
      o.method_options["base_channels"] = saved.at("base_channels");
    }
    nlohmann::json given = method_options_resolve(method_info, o.method_options);
    if (given != ck_.method->options_json()) {
      throw ValueError(out_.model + ": --opt values differ from the checkpoint's method options " +
                       ck_.method->options_json().dump() + " (resume keeps them)");
    }
    if (ck_.info.domain != o.domain) {
      throw ValueError(out_.model + ": checkpoint was trained in the " + ck_.info.domain +
                       " domain, not --domain " + o.domain);
    }
    method_ = std::move(ck_.method);
    info_ = ck_.info;
    o.seed = info_.seed;
    if (!o.init_from.empty() && main_rank) {
      log_info("--init-from {}: not used when resuming (the weights are the checkpoint's)", o.init_from);
    }
  } else {
    if (main_rank) output_check_writable(out_.model, out_.overwrite);
    torch::manual_seed(train_step_seed(o.seed, -1));  // initial weights follow --seed
    method_ = method_create(o.method, o.method_options);
    if (!o.init_from.empty()) {
      const WeightTransfer w = checkpoint_init_weights(*method_, o.init_from);
      if (main_rank) {
        log_info("initialised from {} ({}): {} of {} tensors copied, {} with their shared input "
                 "channels, {} left as initialised",
                 o.init_from, w.source_method, w.copied, w.total, w.partial, w.skipped);
      }
    }
  }
  if (o.precision == "auto") {
    o.precision = method_->bf16_ok() ? precision_resolve(o.precision, device_) : "fp32";
    if (main_rank) {
      log_info("precision {} (auto: {}; --precision to choose)", o.precision,
               method_->bf16_ok() ? precision_auto_reason(device_)
                                  : o.method + " runs in fp32 only");
    }
  }
  if (o.precision == "bf16" && !method_->bf16_ok()) {
    throw ValueError("--precision bf16: method " + o.method + " runs in fp32 only (use fp32 "
                     "or auto)");
  }
  precision_ = precision_parse(o.precision, "--precision");
  if (method_->needs_halves() && !pairs) {
    throw ValueError("method " + o.method + " trains on half tomograms: give --even and --odd");
  }
  if (!method_->needs_halves() && pairs) {
    throw ValueError("method " + o.method + " trains on one tomogram: give --in");
  }

  // Normalise every input with its own robust statistics (pairs share one scale).
  std::vector<SampleSource> sources;
  std::vector<NormStats> stats;
  for (const auto& t : inputs) {
    NormStats s = pairs ? norm_stats_compute_pair(t.a.data, t.b.data, o.norm_mode,
                                                  o.norm_fraction, t.name)
                        : norm_stats_compute(t.a.data, o.norm_mode, o.norm_fraction, t.name);
    stats.push_back(s);
    SampleSource src;
    src.a = norm_apply(t.a.data, s);
    if (pairs) src.b = norm_apply(t.b.data, s);
    src.mask = t.mask;
    src.name = t.name;
    sources.push_back(std::move(src));
  }
  sampler_ = std::make_unique<SubtomoSampler>(std::move(sources), o.sampler);

  // Budget: steps, epochs of the sampler, or minutes of a clock (a resumed run keeps the seconds
  // and the step estimate of its earlier sessions).
  if (o.minutes > 0) {
    const double spent = info_.history.empty() ? 0.0 : info_.history.back().elapsed_s;
    budget_ = Budget::of_minutes(
        o.minutes, clock, out_.resume ? spent : probe_s,
        out_.resume ? std::max<int64_t>(info_.step + 1, info_.total_steps) : 0);
  } else {
    const int64_t steps_per_epoch = (sampler_->patches_per_epoch() + o.batch - 1) / o.batch;
    budget_ = Budget::of_steps(o.steps > 0 ? o.steps : o.epochs * steps_per_epoch, clock);
  }

  method_->to(device_);
  method_->train(true);
  optimizer_ = make_optimizer(o, method_->parameters());
  if (dist_) {
    dist_->check_same("the training configuration", train_options_to_json(o).dump());
    dist_broadcast_method(*dist_, *method_);  // every rank starts from rank 0's weights
    step_ctx_ = dist_step_context(*dist_);    // auxiliary networks average their gradients too
  }
  if (out_.resume) {
    checkpoint_load_optimizer(ck_, *optimizer_, out_.model);
    // LibTorch's Optimizer::load keeps the learning rate the optimizer was built with. Every
    // step sets its own, but a session resumed at the end of its budget (killed between the
    // last step's checkpoint and the final one) takes no step before it saves: put back the
    // rate of the checkpoint's last step, as an uninterrupted run holds it.
    if (info_.step > 0) apply_lr(info_.step - 1);
    if (info_.finished && budget_.spent(info_.step)) {
      log_info("{}: already trained {} of {} steps; nothing to do", out_.model, info_.step,
               budget_.planned_steps());
    } else {
      log_info("{}: resuming at step {} of {}", out_.model, info_.step, budget_.planned_steps());
    }
  } else {
    info_ = CheckpointInfo{};
    info_.seed = o.seed;
    for (const auto& t : inputs) info_.inputs.push_back(t.name);
    info_.voxel_size = inputs.front().a.meta.voxel_size;
  }
  info_.norm = stats;
  info_.norm_mode = norm_mode_name(o.norm_mode);
  info_.norm_fraction = o.norm_fraction;
  info_.wedge = o.wedge;
  // Each tomogram's own tilt range (a .tlt beside it, or one --tilt-range pair each), kept only
  // when they differ from the run's; the sign convention is the run's.
  for (const auto& t : inputs) {
    MethodWedge w = t.wedge.value_or(o.wedge);
    w.flip_sign = o.wedge.flip_sign;
    check_options_wedge(w, t.name);
    tomo_wedges_.push_back(w);
  }
  const auto same = [](const MethodWedge& a, const MethodWedge& b) {
    return a.tilt_min_deg == b.tilt_min_deg && a.tilt_max_deg == b.tilt_max_deg;
  };
  if (std::all_of(tomo_wedges_.begin(), tomo_wedges_.end(),
                  [&](const MethodWedge& w) { return same(w, o.wedge); })) {
    tomo_wedges_.clear();
  }
  info_.input_wedges = tomo_wedges_;
  info_.domain = o.domain;
  info_.angles_deg = o.angles_deg;
  info_.thickness = o.thickness;
  info_.train_options = train_options_to_json(o);
  info_.train_options["method_options"] = method_->options_json();
  step_ = window_start_ = info_.step;

  // Fixed validation set: positions from a generator seeded once, never from training draws.
  if (o.val_every > 0 && o.sampler.val_fraction > 0) {
    at::Generator vgen = at::detail::createCPUGenerator(train_step_seed(o.seed, -2));
    for (int64_t i = 0; i < o.val_batches; ++i) {
      val_set_.push_back(sampler_->extract(sampler_->draw(o.batch, Split::val, vgen)));
    }
  }
  if (main_rank && !out_.resume) output_check_writable(out_.model, out_.overwrite);
  // Snapshots in time order; a resumed run skips the marks its earlier sessions passed.
  std::sort(o.snapshot_minutes.begin(), o.snapshot_minutes.end());
  o.snapshot_minutes.erase(std::unique(o.snapshot_minutes.begin(), o.snapshot_minutes.end()),
                           o.snapshot_minutes.end());
  const double earlier_s = budget_.elapsed_s() - budget_.session_s();
  while (out_.resume && next_snapshot_ < o.snapshot_minutes.size() &&
         earlier_s >= o.snapshot_minutes[next_snapshot_] * 60.0) {
    ++next_snapshot_;
  }
  if (main_rank && !out_.resume) {
    for (double m : o.snapshot_minutes) {
      output_check_writable(train_snapshot_path(out_.model, m), out_.overwrite);
    }
  }
}

Trainer::~Trainer() = default;

Batch Trainer::make_batch(const PatchBatch& pb, int64_t step) const {
  Batch b;
  b.input = pb.a.to(device_);
  if (pb.b.defined()) b.target = pb.b.to(device_);
  b.wedge = batch_wedges(o_.wedge, tomo_wedges_, pb.tomo);
  b.step = step;
  return b;
}

void Trainer::apply_lr(int64_t step) {
  lr_ = lr_at(o_.schedule, step, budget_.planned_steps());
  set_lr(*optimizer_, lr_);
  for (auto* aux : method_->aux_optimizers()) set_lr(*aux, lr_);
}

double Trainer::step() {
  const uint64_t s = train_step_seed(o_.seed, step_);
  torch::manual_seed(s ^ (uint64_t(rank_) * 0x9E3779B97F4A7C15ULL));  // augmentation per rank
  gen_.set_current_seed(s ^ 0x5A5A5A5AULL);  // the same global positions on every rank
  std::vector<PatchPos> positions = sampler_->draw(o_.batch, Split::train, gen_);
  if (dist_) {  // this rank's slice of the global batch
    const int64_t per = o_.batch / world_;
    positions = std::vector<PatchPos>(positions.begin() + rank_ * per,
                                      positions.begin() + (rank_ + 1) * per);
  }
  const Batch batch = make_batch(sampler_->extract(positions), step_);
  apply_lr(step_);
  torch::Tensor loss;
  {
    // The method in `precision` (autocast); the loss taken back as float32.
    AutocastGuard amp(precision_, device_);
    method_->aux_step(batch, step_ctx_);
    optimizer_->zero_grad();
    loss = method_->loss(batch).to(torch::kFloat);
  }
  double lv = loss.item<double>();
  if (!std::isfinite(lv)) {
    throw ValueError("training diverged at step " + std::to_string(step_) + ": loss is " +
                     fmt("%g", lv) + " (lower --lr or raise --clip)");
  }
  loss.backward();
  if (dist_) {
    std::vector<torch::Tensor> grads;
    for (auto& prm : method_->parameters()) {
      if (prm.grad().defined()) grads.push_back(prm.grad());
    }
    grads.push_back(torch::full({1}, lv, grads.front().options()));  // the loss, for the log
    dist_->allreduce_mean(grads);
    lv = grads.back().item<double>();
  }
  if (o_.clip > 0) torch::nn::utils::clip_grad_norm_(method_->parameters(), o_.clip);
  optimizer_->step();
  ++step_;
  loss_sum_ += lv;
  ++loss_n_;
  for (const auto& [k, v] : method_->step_stats()) {
    auto& acc = term_sums_[k];
    acc.first += v;
    acc.second += 1;
  }
  return lv;
}

double Trainer::validate() {
  if (val_set_.empty()) return -1;
  torch::NoGradGuard ng;
  method_->train(false);
  torch::manual_seed(train_step_seed(o_.seed, -3));
  double sum = 0;
  for (const auto& pb : val_set_) {
    AutocastGuard amp(precision_, device_);
    sum += method_->loss(make_batch(pb, step_)).to(torch::kFloat).item<double>();
  }
  method_->train(true);
  return sum / double(val_set_.size());
}

void Trainer::save_snapshots_due(bool budget_spent) {
  const std::vector<double>& marks = o_.snapshot_minutes;
  // A time budget stops up to half a step early: its end counts as its last minute.
  const double now_s = budget_spent && budget_.timed() ? std::max(budget_.elapsed_s(), o_.minutes * 60.0)
                                                       : budget_.elapsed_s();
  while (next_snapshot_ < marks.size() && now_s >= marks[next_snapshot_] * 60.0) {
    if (!dist_ || dist_->is_main()) {
      CheckpointInfo info = info_;
      info.step = step_;
      info.total_steps = budget_.planned_steps();
      info.finished = false;
      const std::string path = train_snapshot_path(out_.model, marks[next_snapshot_]);
      checkpoint_save(path, *method_, nullptr, info, /*overwrite=*/true);
      log_info("snapshot at {} min ({} steps): {}", fmt("%g", marks[next_snapshot_]), step_, path);
    }
    ++next_snapshot_;
  }
}

void Trainer::save(bool finished) {
  if (dist_ && !dist_->is_main()) return;
  info_.step = step_;
  info_.total_steps = budget_.planned_steps();
  info_.finished = finished;
  checkpoint_save(out_.model, *method_, optimizer_.get(), info_, /*overwrite=*/true);
}

TrainLogRecord Trainer::log_window(double now_s, bool last) {
  const bool main_rank = !dist_ || dist_->is_main();
  TrainLogRecord r;
  r.step = step_;
  r.loss = loss_sum_ / double(loss_n_);
  r.lr = lr_;
  r.steps_per_s = double(step_ - window_start_) / std::max(1e-9, now_s - window_t_);
  r.elapsed_s = budget_.elapsed_s();
  HistoryPoint h;
  h.step = step_;
  h.loss = *r.loss;
  h.lr = lr_;
  h.elapsed_s = r.elapsed_s;
  if (main_rank && ((o_.val_every > 0 && step_ % o_.val_every == 0) || last)) {
    const double v = validate();
    if (v >= 0) {
      r.val_loss = h.val_loss = v;
      result_.last_val_loss = v;
    }
  }
  for (auto& [k, acc] : term_sums_) {
    if (acc.second > 0) r.terms[k] = acc.first / double(acc.second);
    acc = {0.0, 0};
  }
  log_.write(r);
  info_.history.push_back(h);
  result_.last_loss = h.loss;
  loss_sum_ = 0;
  loss_n_ = 0;
  window_start_ = step_;
  window_t_ = now_s;
  return r;
}

void Trainer::open_log() {
  // Appended to on resume, without the lines of steps after the checkpoint (a run killed
  // between two checkpoints logged steps the resumed run does again); started afresh otherwise.
  if (out_.resume) train_log_drop_after(out_.log, info_.step);
  log_ = TrainLog(out_.log, out_.resume);
}

TrainResult Trainer::run() {
  const bool main_rank = !dist_ || dist_->is_main();
  if (main_rank) open_log();
  const bool timed = budget_.timed();
  // A time budget shows elapsed seconds against the budget; a step budget shows steps.
  Progress bar("train " + o_.method,
               timed ? int64_t(o_.minutes * 60.0) : budget_.planned_steps(), timed ? "s" : "step",
               main_rank ? progress_ : ProgressFn{});
  // --stop-after, or the stop request (core/atomic_file.h: a SIGINT/SIGTERM the program
  // deferred, the Python package's Ctrl-C): both end the run at a step boundary with a
  // checkpoint, the schedule unchanged, to continue with --resume.
  auto stopped = [&] {
    return (o_.stop_after > 0 && step_ >= o_.stop_after) || stop_requested() != 0;
  };
  const int64_t first_step = step_;
  bool estimate_logged = !timed || !main_rank;
  if (main_rank) {
    const nlohmann::json mo = method_->options_json();
    log_info("patch {}{}, batch {}{}, {}; {}", o_.sampler.patch,
             o_.sampler.patch_z > 0 && o_.sampler.patch_z != o_.sampler.patch
                 ? "x" + std::to_string(o_.sampler.patch_z) : "",
             o_.batch,
             mo.contains("base_channels") ? ", " + mo["base_channels"].dump() + " channels" : "",
             o_.precision,
             timed ? fmt("%g", o_.minutes) + " minutes of " + o_.budget_clock + " time"
                   : std::to_string(budget_.planned_steps()) + " steps");
  }
  while (!stopped()) {
    bool spent = budget_.spent(step_);
    if (dist_ && timed) {  // rank 0's clock decides the budget and the planned steps for all
      at::Tensor d = torch::tensor({double(spent), double(budget_.planned_steps())}, torch::kDouble);
      dist_->broadcast({d});
      spent = d[0].item<double>() > 0.5;
      budget_.set_planned_steps(int64_t(d[1].item<double>()));
    }
    if (spent) break;
    step();
    budget_.observe(step_);
    save_snapshots_due(/*budget_spent=*/false);
    // The first estimate of a time budget (Budget::observe, at the 10th step or so).
    if (!estimate_logged && step_ - first_step >= 3 && step_ % 10 == 0) {
      const double per_step = budget_.session_s() / double(step_ - first_step);
      log_info("~{} steps in this budget ({} s per step over the first {})",
               budget_.planned_steps(), fmt("%.3g", per_step), step_ - first_step);
      const int64_t few = method_registry().get(o_.method).few_steps;
      if (budget_.planned_steps() < few && budget_.planned_steps() > 0) {
        log_warn("{} steps are few for {}: in the bench it reached wedge-band CC 0.7-0.8 with "
                 "about 200 steps and 0.36 with 45 (bench/RESULTS.md, \"The width rule on a "
                 "slower CPU\"); --minutes {} would buy about {} on this machine",
                 budget_.planned_steps(), o_.method,
                 fmt("%.0f", std::ceil(o_.minutes * double(kFewStepsTarget) /
                                       double(budget_.planned_steps()))),
                 kFewStepsTarget);
      }
      estimate_logged = true;
    }
    const bool last = (!timed && budget_.spent(step_)) || stopped();
    if (step_ % o_.log_every == 0 || last) {
      const TrainLogRecord r = log_window(budget_.session_s(), last);
      const std::string status =
          "loss " + fmt("%.4g", *r.loss) +
          (result_.last_val_loss >= 0 ? " val " + fmt("%.4g", result_.last_val_loss) : "") + " " +
          fmt("%.2f", r.steps_per_s) + " step/s";
      if (timed) {
        bar.update(int64_t(r.elapsed_s), "step " + std::to_string(step_) + " " + status);
      } else {
        bar.set_total(budget_.planned_steps());
        bar.update(step_, status);
      }
    }
    if (o_.checkpoint_every > 0 && step_ % o_.checkpoint_every == 0 && !last) save(false);
  }
  // A time budget ends between log lines: the steps since the last one get theirs (the log and
  // the last loss are never empty when a step was taken).
  if (loss_n_ > 0) log_window(budget_.session_s(), /*last=*/true);
  if (timed) budget_.set_planned_steps(step_);
  save(step_ >= budget_.planned_steps());
  save_snapshots_due(/*budget_spent=*/!stopped());
  result_.stopped_by_signal = stop_requested();
  bar.finish("loss " + fmt("%.4g", result_.last_loss));
  result_.steps = step_;
  result_.seconds = budget_.session_s();
  return result_;
}

TrainResult train_run(const TrainOptions& opts, const std::vector<TrainInput>& inputs,
                      const std::string& out, const std::string& log_path, bool resume,
                      bool overwrite, Distributed* dist, ProgressFn progress) {
  Trainer trainer(opts, inputs, TrainOutputs{out, log_path, resume, overwrite}, dist,
                  std::move(progress));
  return trainer.run();
}

}  // namespace unwedge
