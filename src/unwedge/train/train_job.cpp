#include "unwedge/train/train_job.h"

#include <algorithm>
#include <filesystem>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/device.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/io/relion.h"
#include "unwedge/io/tilt.h"
#include "unwedge/ops/wedge_sign.h"

namespace unwedge {

std::string train_log_path(const std::string& model) {
  std::filesystem::path p(model);
  if (p.extension() == ".uwm") p.replace_extension();
  return p.string() + ".train.jsonl";
}

std::string train_tilt_file_beside(const std::string& tomogram) {
  namespace fs = std::filesystem;
  const fs::path p(tomogram);
  std::vector<fs::path> candidates{fs::path(p).replace_extension(".tlt")};
  const std::string stem = p.stem().string();
  for (const char* half : {"even", "odd", "EVN", "ODD", "EVN_Vol", "ODD_Vol"}) {
    for (const char* sep : {"_", ".", "-"}) {
      const std::string suffix = std::string(sep) + half;
      if (stem.size() > suffix.size() &&
          stem.compare(stem.size() - suffix.size(), suffix.size(), suffix) == 0) {
        candidates.push_back(p.parent_path() /
                             (stem.substr(0, stem.size() - suffix.size()) + ".tlt"));
      }
    }
  }
  for (const auto& c : candidates) {
    if (fs::is_regular_file(c)) return c.string();
  }
  return "";
}

namespace {

/// Each input's own tilt range: one --tilt-range pair each, or the .tlt beside it (the even
/// half's, else the odd's); unset where neither applies.
std::vector<std::optional<MethodWedge>> tilt_ranges_per_input(
    const TrainFilesOptions& f, const std::vector<std::string>& first,
    const std::vector<std::string>& second) {
  std::vector<std::optional<MethodWedge>> out(first.size());
  if (!f.tilt_ranges.empty()) {
    if (f.tilt_ranges.size() != 2 * first.size()) {
      throw ValueError("--tilt-range: " + std::to_string(f.tilt_ranges.size()) + " values for " +
                       std::to_string(first.size()) + " tomograms (give MIN MAX, or one MIN MAX "
                       "pair per tomogram)");
    }
    for (size_t i = 0; i < first.size(); ++i) {
      out[i] = MethodWedge{f.tilt_ranges[2 * i], f.tilt_ranges[2 * i + 1],
                           f.train.wedge.flip_sign};
    }
    return out;
  }
  if (!f.tilt_from_files) return out;
  for (size_t i = 0; i < first.size(); ++i) {
    std::string tlt = train_tilt_file_beside(first[i]);
    if (tlt.empty() && i < second.size()) tlt = train_tilt_file_beside(second[i]);
    if (tlt.empty()) continue;
    const std::vector<double> a = tilt_read(tlt);
    const auto mm = std::minmax_element(a.begin(), a.end());
    out[i] = MethodWedge{*mm.first, *mm.second, f.train.wedge.flip_sign};
    log_info("{}: tilt range {} .. {} degrees from {}", first[i], *mm.first, *mm.second, tlt);
  }
  return out;
}

}  // namespace

int64_t train_patch_auto(const std::string& device, const std::vector<TrainInput>& inputs,
                         const std::string& method) {
  int64_t patch = device_resolve(device).rfind("cuda", 0) == 0 ? 64 : 40;
  if (!method.empty() && method_registry().get(method).can.embedding) patch = 32;
  for (const auto& t : inputs) {
    patch = std::min({patch, t.a.nz(), t.a.ny(), t.a.nx()});
  }
  return std::max<int64_t>(8, patch / 8 * 8);
}

TrainFilesOptions train_files_from_star(const TrainFilesOptions& opts) {
  if (opts.star.empty()) return opts;
  TrainFilesOptions f = opts;
  if (!f.even.empty() || !f.odd.empty() || !f.in.empty() || !f.tilt_series.empty()) {
    throw ValueError("--star " + f.star + " lists the tomograms: give no --even/--odd/--in/"
                     "--tilt-series with it");
  }
  const RelionTomograms t = relion_tomograms_read(f.star);
  const MethodCapabilities can = method_registry().get(f.train.method).can;
  const StarLoop& g = t.star.block("global")->loops.front();
  const bool has_halves = g.column("rlnTomoReconstructedTomogramHalf1") >= 0 ||
                          g.column("rlnTomoReconstructedTomogramHalf2") >= 0;
  if (can.halves && (has_halves || !can.single)) {
    const std::string why = "the half tomograms method " + f.train.method + " trains on";
    f.even = relion_column(t, "rlnTomoReconstructedTomogramHalf1", why);
    f.odd = relion_column(t, "rlnTomoReconstructedTomogramHalf2", why);
  } else {
    f.in = relion_column(t, "rlnTomoReconstructedTomogram",
                         "the tomograms method " + f.train.method + " trains on");
  }
  if (f.tilt_ranges.empty() && f.tilt_from_files) {
    for (const RelionTomogram& tomo : t.tomograms) {
      if (tomo.angles.empty()) {
        f.tilt_ranges.push_back(f.train.wedge.tilt_min_deg);
        f.tilt_ranges.push_back(f.train.wedge.tilt_max_deg);
        log_info("{}: no tilt-series angles in {}; tilt range {} .. {} degrees", tomo.name,
                 f.star, f.train.wedge.tilt_min_deg, f.train.wedge.tilt_max_deg);
        continue;
      }
      const auto mm = std::minmax_element(tomo.angles.begin(), tomo.angles.end());
      f.tilt_ranges.push_back(*mm.first);
      f.tilt_ranges.push_back(*mm.second);
      log_info("{}: tilt range {} .. {} degrees from {}", tomo.name, *mm.first, *mm.second,
               tomo.tilt_series_star);
    }
  }
  f.star.clear();
  return f;
}

TrainFilesPlan train_files_prepare(const TrainFilesOptions& opts) {
  const TrainFilesOptions f = train_files_from_star(opts);
  TrainFilesPlan plan;
  TrainOptions& o = plan.train;
  o = f.train;
  std::vector<std::string> in = f.in;
  const bool tilt = o.domain == "tilt-series";
  if (tilt) {
    if (!method_registry().get(o.method).can.tilt_series) {
      throw ValueError("--domain tilt-series: method " + o.method +
                       " does not train on tilt images (methods that do: " +
                       method_registry().names_with(&MethodCapabilities::tilt_series) + ")");
    }
    if (f.tilt_series.empty() || f.angles.empty()) {
      throw ValueError("--domain tilt-series needs --tilt-series TS.mrc and --angles TS.tlt");
    }
    if (!f.in.empty() || !f.even.empty() || !f.odd.empty() || !f.masks.empty() || f.auto_mask) {
      throw ValueError("--domain tilt-series takes --tilt-series and --angles, not "
                       "--in/--even/--odd/--mask/--auto-mask");
    }
    if (o.method_options.contains("planar") && !o.method_options["planar"].get<bool>()) {
      throw ValueError("--domain tilt-series: --opt planar=false (tilt images need the 2D "
                       "network, planar=true)");
    }
    o.method_options["planar"] = true;  // 2D network on [B, 1, 1, Y, X]
    o.sampler.patch_z = 1;              // patches are pieces of single tilt images
    o.angles_deg = tilt_read(f.angles);
    if (f.wedge_from_angles) {
      auto mm = std::minmax_element(o.angles_deg.begin(), o.angles_deg.end());
      o.wedge.tilt_min_deg = *mm.first;
      o.wedge.tilt_max_deg = *mm.second;
    }
    if (!f.tilt_ranges.empty()) {
      throw ValueError("--domain tilt-series: one --tilt-range MIN MAX (there is one series)");
    }
    in = {f.tilt_series};
  } else if (o.domain != "tomogram") {
    throw ValueError("--domain: '" + o.domain + "' is not tomogram or tilt-series");
  } else if (!f.tilt_series.empty() || !f.angles.empty() || o.thickness != 0) {
    throw ValueError("--tilt-series, --angles and --thickness need --domain tilt-series");
  }
  if (o.thickness < 0) {
    throw ValueError("--thickness: " + std::to_string(o.thickness) + " voxels is negative");
  }
  plan.outputs = TrainOutputs{f.model, train_log_path(f.model), f.resume, f.overwrite};
  if (!f.resume) {
    output_check_writable(plan.outputs.model, f.overwrite);
    output_check_writable(plan.outputs.log, f.overwrite);
  }
  std::vector<std::optional<MethodWedge>> wedges;
  if (!tilt) wedges = tilt_ranges_per_input(f, f.even.empty() ? in : f.even, f.odd);
  plan.inputs = train_inputs_read(f.even, f.odd, in, f.masks, f.auto_mask, f.auto_mask_quantile,
                                  f.permissive);
  for (size_t i = 0; i < wedges.size() && i < plan.inputs.size(); ++i) {
    plan.inputs[i].wedge = wedges[i];
  }
  if (f.wedge_sign_auto && !tilt) {
    for (size_t i = 0; i < plan.inputs.size(); ++i) {
      TrainInput& t = plan.inputs[i];
      MethodWedge w = t.wedge ? *t.wedge : o.wedge;
      if (wedge_range_symmetric(w.tilt_min_deg, w.tilt_max_deg)) continue;
      // The halves' mean (less noise) where there are two, else the tomogram.
      const at::Tensor v = t.b.data.defined() ? (t.a.data + t.b.data) * 0.5 : t.a.data;
      const WedgeSignChoice c = wedge_sign_detect(v, w.tilt_min_deg, w.tilt_max_deg);
      w.flip_sign = c.sign_flip;
      t.wedge = w;
      log_info("{}", wedge_sign_describe(c, w.tilt_min_deg, w.tilt_max_deg, t.name));
    }
  }
  if (o.sampler.patch == 0) {  // auto: from the device and the volumes
    o.sampler.patch = tilt ? 64 : train_patch_auto(o.device, plan.inputs, o.method);
    log_info("patch {} (auto on {}: {}; --patch to choose)", o.sampler.patch,
             device_resolve(o.device),
             tilt ? "2D pieces of tilt images"
                  : "40 on a CPU, 64 on a GPU, 32 for embeddings, at most the volumes' smallest "
                    "edge");
  }
  // The run's range (stored as the model's) is the first tomogram's own when it has one.
  if (!plan.inputs.empty() && plan.inputs.front().wedge) o.wedge = *plan.inputs.front().wedge;
  if (tilt && plan.inputs.front().a.nz() != int64_t(o.angles_deg.size())) {
    throw ValueError("--domain tilt-series: " + f.angles + " has " +
                     std::to_string(o.angles_deg.size()) + " angles but " + f.tilt_series +
                     " has " + std::to_string(plan.inputs.front().a.nz()) + " sections (tilts)");
  }
  return plan;
}

TrainResult train_files_run(const TrainFilesPlan& plan, Distributed* dist, ProgressFn progress,
                            const std::function<void()>& ready) {
  const bool several = dist && dist->world_size() > 1;
  log_info("training {} on {} {}; model {}, log {}{}", plan.train.method, plan.inputs.size(),
           plan.train.domain == "tilt-series" ? "tilt series" : "tomogram(s)",
           plan.outputs.model, plan.outputs.log,
           several ? fmt::format(" ({} ranks)", dist->world_size()) : "");
  Trainer trainer(plan.train, plan.inputs, plan.outputs, dist, std::move(progress));
  if (ready) ready();
  try {
    return trainer.run();
  } catch (...) {
    // A first run that failed before its first checkpoint (a full disk) leaves no log either:
    // the rerun is not refused. A model on disk keeps its log (continue with --resume).
    if (!plan.outputs.resume && (!dist || dist->is_main()) &&
        !std::filesystem::exists(plan.outputs.model)) {
      std::error_code ec;
      std::filesystem::remove(plan.outputs.log, ec);
    }
    throw;
  }
}

}  // namespace unwedge
