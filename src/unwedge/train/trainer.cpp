#include "unwedge/train/trainer.h"

#include <time.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/device.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/core/progress.h"
#include "unwedge/io/mrc.h"
#include "unwedge/model/checkpoint.h"
#include "unwedge/train/dist_method.h"

namespace unwedge {

namespace {

using Clock = std::chrono::steady_clock;


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

void check_options(const TrainOptions& o) {
  int budgets = (o.steps > 0) + (o.epochs > 0) + (o.minutes > 0);
  if (budgets != 1) {
    throw ValueError("budget: give exactly one of --steps, --epochs, --minutes (got steps " +
                     std::to_string(o.steps) + ", epochs " + std::to_string(o.epochs) +
                     ", minutes " + fmt("%g", o.minutes) + ")");
  }
  if (o.budget_clock != "wall" && o.budget_clock != "cpu") {
    throw ValueError("budget-clock: '" + o.budget_clock + "' (wall | cpu)");
  }
  if (o.batch < 1) throw ValueError("batch: " + std::to_string(o.batch) + " is not positive");
  if (!(o.schedule.lr > 0)) throw ValueError("lr: " + fmt("%g", o.schedule.lr) + " is not positive");
  if (o.clip < 0) throw ValueError("clip: " + fmt("%g", o.clip) + " is negative");
  if (o.log_every < 1) throw ValueError("log-every: " + std::to_string(o.log_every));
  if (o.val_every < 0 || o.val_batches < 1) {
    throw ValueError("val-every / val-batches: " + std::to_string(o.val_every) + " / " +
                     std::to_string(o.val_batches));
  }
}

}  // namespace

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

TrainResult train_run(const TrainOptions& opts_in, const std::vector<TrainInput>& inputs,
                      const std::string& out, const std::string& log_path, bool resume,
                      bool overwrite, Distributed* dist) {
  TrainOptions o = opts_in;
  check_options(o);
  if (dist && !dist->config().distributed()) dist = nullptr;
  const bool main_rank = !dist || dist->is_main();
  const int64_t rank = dist ? dist->rank() : 0, world = dist ? dist->world_size() : 1;
  if (o.batch % world != 0) {
    throw ValueError("--batch " + std::to_string(o.batch) + " is the global batch: it must be a "
                     "multiple of the " + std::to_string(world) + " ranks");
  }
  o.device = device_resolve(o.device);  // auto -> cpu or cuda, the same on every rank
  const torch::Device device =
      device_parse(device_resolve(o.device, dist ? dist->config().local_rank : -1));
  const c10::ScalarType precision = precision_parse(o.precision, "--precision");
  if (inputs.empty()) throw ValueError("train: no input tomograms");

  // Method: fresh, or recreated from the checkpoint being resumed.
  std::unique_ptr<Method> method;
  LoadedCheckpoint ck;
  CheckpointInfo info;
  if (resume) {
    ck = checkpoint_load(out);
    if (ck.method->name() != o.method) {
      throw ValueError(out + ": checkpoint holds method '" + ck.method->name() +
                       "', not --method " + o.method);
    }
    nlohmann::json given = method_options_resolve(method_registry().get(o.method),
                                                  o.method_options);
    if (given != ck.method->options_json()) {
      throw ValueError(out + ": --opt values differ from the checkpoint's method options " +
                       ck.method->options_json().dump() + " (resume keeps them)");
    }
    if (ck.info.domain != o.domain) {
      throw ValueError(out + ": checkpoint was trained in the " + ck.info.domain +
                       " domain, not --domain " + o.domain);
    }
    method = std::move(ck.method);
    info = ck.info;
    o.seed = info.seed;
  } else {
    if (main_rank) output_check_writable(out, overwrite);
    torch::manual_seed(train_step_seed(o.seed, -1));  // initial weights follow --seed
    method = method_create(o.method, o.method_options);
  }
  // The method's loss in `precision` (autocast), returned as float32.
  auto method_loss = [&](const Batch& b) {
    AutocastGuard amp(precision, device);
    return method->loss(b).to(torch::kFloat);
  };
  // Auxiliary networks train in `precision` too; with several ranks their gradients are averaged.
  const StepContext step_ctx = dist ? dist_step_context(*dist) : StepContext{};
  auto method_aux_step = [&](const Batch& b) {
    AutocastGuard amp(precision, device);
    method->aux_step(b, step_ctx);
  };
  const bool pairs = inputs.front().b.data.defined();
  if (method->needs_halves() && !pairs) {
    throw ValueError("method " + o.method + " trains on half tomograms: give --even and --odd");
  }
  if (!method->needs_halves() && pairs) {
    throw ValueError("method " + o.method + " trains on one tomogram: give --in");
  }

  // Normalise every input with its own robust statistics (pairs share one scale).
  std::vector<SampleSource> sources;
  std::vector<NormStats> stats;
  for (const auto& t : inputs) {
    NormStats s;
    if (pairs) {
      auto box = norm_central_box({t.a.nz(), t.a.ny(), t.a.nx()}, o.norm_fraction);
      auto cut = [&](const at::Tensor& v) {
        return v.slice(0, box[0], box[1]).slice(1, box[2], box[3]).slice(2, box[4], box[5]);
      };
      s = norm_stats_of(torch::stack({cut(t.a.data), cut(t.b.data)}), o.norm_mode, t.name);
    } else {
      s = norm_stats_compute(t.a.data, o.norm_mode, o.norm_fraction, t.name);
    }
    stats.push_back(s);
    SampleSource src;
    src.a = norm_apply(t.a.data, s);
    if (pairs) src.b = norm_apply(t.b.data, s);
    src.mask = t.mask;
    src.name = t.name;
    sources.push_back(std::move(src));
  }
  SubtomoSampler sampler(std::move(sources), o.sampler);

  // Budget.
  const int64_t steps_per_epoch = (sampler.patches_per_epoch() + o.batch - 1) / o.batch;
  int64_t total = o.steps > 0 ? o.steps : o.epochs > 0 ? o.epochs * steps_per_epoch : 0;
  const bool timed = o.minutes > 0;
  const double budget_s = o.minutes * 60.0;

  method->to(device);
  method->train(true);
  auto optimizer = make_optimizer(o, method->parameters());
  if (dist) {
    dist->check_same("the training configuration", train_options_to_json(o).dump());
    dist_broadcast_method(*dist, *method);  // every rank starts from rank 0's weights
  }
  if (resume) {
    checkpoint_load_optimizer(ck, *optimizer, out);
    if (info.finished && info.step >= total && !timed) {
      log_info("{}: already trained {} of {} steps; nothing to do", out, info.step, total);
    }
  } else {
    info = CheckpointInfo{};
    info.seed = o.seed;
    for (const auto& t : inputs) info.inputs.push_back(t.name);
    info.voxel_size = inputs.front().a.meta.voxel_size;
  }
  info.norm = stats;
  info.norm_mode = norm_mode_name(o.norm_mode);
  info.norm_fraction = o.norm_fraction;
  info.wedge = o.wedge;
  info.domain = o.domain;
  info.angles_deg = o.angles_deg;
  info.thickness = o.thickness;
  info.train_options = train_options_to_json(o);
  info.train_options["method_options"] = method->options_json();

  // Fixed validation set: positions from a generator seeded once, never from training draws.
  const bool can_validate = o.val_every > 0 && o.sampler.val_fraction > 0;
  std::vector<PatchBatch> val_set;
  if (can_validate) {
    at::Generator vgen = at::detail::createCPUGenerator(train_step_seed(o.seed, -2));
    for (int64_t i = 0; i < o.val_batches; ++i) {
      val_set.push_back(sampler.extract(sampler.draw(o.batch, Split::val, vgen)));
    }
  }
  auto make_batch = [&](const PatchBatch& pb, int64_t step) {
    Batch b;
    b.input = pb.a.to(device);
    if (pb.b.defined()) b.target = pb.b.to(device);
    b.wedge = {o.wedge};
    b.step = step;
    return b;
  };
  auto val_loss = [&](int64_t step) {
    torch::NoGradGuard ng;
    method->train(false);
    torch::manual_seed(train_step_seed(o.seed, -3));
    double sum = 0;
    for (const auto& pb : val_set) sum += method_loss(make_batch(pb, step)).item<double>();
    method->train(true);
    return sum / double(val_set.size());
  };

  // Outputs: the log is appended to on resume, started afresh otherwise.
  std::ofstream log;
  if (main_rank) {
    log.open(log_path, resume ? std::ios::app : std::ios::trunc);
    if (!log) throw IoError(log_path + ": cannot open the training log for writing");
  }

  at::Generator gen = at::detail::createCPUGenerator(0);
  // Seconds of the budget's clock: wall time, or this process's CPU time (all threads).
  const bool cpu_clock = o.budget_clock == "cpu";
  auto cpu_seconds = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  };
  const auto t0 = Clock::now();
  const double cpu0 = cpu_seconds();
  const double elapsed0 = info.history.empty() ? 0.0 : info.history.back().elapsed_s;
  auto elapsed = [&] {
    return cpu_clock ? cpu_seconds() - cpu0 : std::chrono::duration<double>(Clock::now() - t0).count();
  };
  if (timed) total = std::max<int64_t>(info.step + 1, info.total_steps);
  if (timed && !resume) total = 1 << 30;  // re-estimated from the measured step rate below
  // A time budget shows elapsed seconds against the budget; a step budget shows steps.
  Progress bar("train " + o.method, timed ? int64_t(budget_s) : total, timed ? "s" : "step",
               o.progress && main_rank);
  TrainResult res;
  double loss_sum = 0;
  std::map<std::string, std::pair<double, int64_t>> stat_sums;  // method's step_stats, per window
  int64_t loss_n = 0, window_start = info.step;
  double window_t = 0;
  int64_t step = info.step;
  auto save = [&](bool finished) {
    if (!main_rank) return;
    info.step = step;
    info.total_steps = total;
    info.finished = finished;
    checkpoint_save(out, *method, optimizer.get(), info, /*overwrite=*/true);
  };
  if (!resume && main_rank) output_check_writable(out, overwrite);

  while (step < total) {
    if (o.stop_after > 0 && step >= o.stop_after) break;
    bool out_of_time = timed && elapsed0 + elapsed() >= budget_s;
    if (dist && timed) {  // rank 0's clock decides the budget and the planned steps for all
      at::Tensor d = torch::tensor({double(out_of_time), double(total)}, torch::kDouble);
      dist->broadcast({d});
      out_of_time = d[0].item<double>() > 0.5;
      total = int64_t(d[1].item<double>());
    }
    if (out_of_time) break;
    const uint64_t s = train_step_seed(o.seed, step);
    torch::manual_seed(s ^ (uint64_t(rank) * 0x9E3779B97F4A7C15ULL));  // augmentation per rank
    gen.set_current_seed(s ^ 0x5A5A5A5AULL);  // the same global positions on every rank
    std::vector<PatchPos> positions = sampler.draw(o.batch, Split::train, gen);
    if (dist) {  // this rank's slice of the global batch
      const int64_t per = o.batch / world;
      positions = std::vector<PatchPos>(positions.begin() + rank * per,
                                        positions.begin() + (rank + 1) * per);
    }
    PatchBatch pb = sampler.extract(positions);
    const double lr = lr_at(o.schedule, step, total);
    set_lr(*optimizer, lr);
    for (auto* aux : method->aux_optimizers()) set_lr(*aux, lr);
    const Batch batch = make_batch(pb, step);
    method_aux_step(batch);
    optimizer->zero_grad();
    torch::Tensor loss = method_loss(batch);
    double lv = loss.item<double>();
    if (!std::isfinite(lv)) {
      throw ValueError("training diverged at step " + std::to_string(step) + ": loss is " +
                       fmt("%g", lv) + " (lower --lr or raise --clip)");
    }
    loss.backward();
    if (dist) {
      std::vector<torch::Tensor> grads;
      for (auto& prm : method->parameters()) {
        if (prm.grad().defined()) grads.push_back(prm.grad());
      }
      grads.push_back(torch::full({1}, lv, grads.front().options()));  // the loss, for the log
      dist->allreduce_mean(grads);
      lv = grads.back().item<double>();
    }
    if (o.clip > 0) torch::nn::utils::clip_grad_norm_(method->parameters(), o.clip);
    optimizer->step();
    ++step;
    loss_sum += lv;
    ++loss_n;
    for (const auto& [k, v] : method->step_stats()) {
      auto& acc = stat_sums[k];
      acc.first += v;
      acc.second += 1;
    }

    const double now = elapsed();
    if (timed && step - info.step >= 3 && step % 10 == 0) {
      // Re-estimate the planned steps from the rate so far (schedule follows the budget).
      double rate = double(step - window_start) / std::max(1e-9, now - window_t);
      int64_t left = int64_t((budget_s - elapsed0 - now) * rate);
      total = std::max<int64_t>(step + 1, step + left);
    }
    const bool last = step >= total || (o.stop_after > 0 && step >= o.stop_after);
    if (step % o.log_every == 0 || last) {
      HistoryPoint h;
      h.step = step;
      h.loss = loss_sum / double(loss_n);
      h.lr = lr;
      h.elapsed_s = elapsed0 + now;
      if (can_validate && main_rank && ((o.val_every > 0 && step % o.val_every == 0) || last)) {
        h.val_loss = val_loss(step);
        res.last_val_loss = h.val_loss;
      }
      double rate = double(step - window_start) / std::max(1e-9, now - window_t);
      nlohmann::json line = {{"step", step}, {"loss", h.loss}, {"lr", lr},
                             {"steps_per_s", rate}, {"elapsed_s", h.elapsed_s}};
      if (h.val_loss >= 0) line["val_loss"] = h.val_loss;
      for (auto& [k, acc] : stat_sums) {
        if (acc.second > 0) line[k] = acc.first / double(acc.second);
        acc = {0.0, 0};
      }
      if (main_rank) log << line.dump() << "\n" << std::flush;
      info.history.push_back(h);
      res.last_loss = h.loss;
      std::string status = "loss " + fmt("%.4g", h.loss) +
                           (res.last_val_loss >= 0 ? " val " + fmt("%.4g", res.last_val_loss)
                                                   : "") +
                           " " + fmt("%.2f", rate) + " step/s";
      bar.update(timed ? int64_t(elapsed0 + now) : step,
                 (timed ? "step " + std::to_string(step) + " " : std::string()) + status);
      loss_sum = 0;
      loss_n = 0;
      window_start = step;
      window_t = now;
    }
    if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0 && !last) save(false);
  }
  if (timed) total = step;
  save(step >= total);
  bar.finish("loss " + fmt("%.4g", res.last_loss));
  res.steps = step;
  res.seconds = elapsed();
  return res;
}

}  // namespace unwedge
