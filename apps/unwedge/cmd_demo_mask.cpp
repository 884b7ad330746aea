// `unwedge demo-mask`: what masked autoencoding sees and reconstructs, for one structure, as the
// hidden fraction of patches grows, and as a hidden Fourier wedge widens (PNG montages, error
// plots as SVG, numbers as JSON, and report.html showing them all).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cli_common.h"
#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/eval/png.h"
#include "unwedge/eval/report.h"
#include "unwedge/eval/svg.h"
#include "unwedge/io/mrc.h"
#include "unwedge/methods/mae.h"
#include "unwedge/nn/vit3d.h"
#include "unwedge/ops/wedge.h"
#include "unwedge/model/checkpoint.h"
#include "unwedge/train/trainer.h"

namespace unwedge::cli {

namespace {

struct DemoParams {
  std::string in, out, model, wedge_model;
  std::vector<double> ratios{0.15, 0.5, 0.75, 0.9};
  std::vector<double> widths{20, 40, 60, 80};  ///< hidden double-wedge widths, degrees
  int64_t steps = 300;      ///< training steps of each MAE trained here
  int64_t size = 32;        ///< edge of the central cube shown, voxels
  uint64_t seed = 0;
  bool overwrite = false;
};

std::unique_ptr<Method> demo_model(const DemoParams& p, const std::string& given,
                                   const std::string& mode, const Volume& vol) {
  if (!given.empty()) {
    auto ck = checkpoint_load(given);
    if (ck.method->name() != "mae") {
      throw ValueError(given + " holds a " + ck.method->name() + " model; demo-mask needs mae");
    }
    return std::move(ck.method);
  }
  const std::string path = p.out + "/mae_" + mode + ".uwm";
  log_info("no {} model given: training a small mae (mask_mode={}) on {} for {} steps -> {}",
           mode == "patch" ? "--model" : "--wedge-model", mode, p.in, p.steps, path);
  TrainOptions o;
  o.method = "mae";
  o.method_options = {{"mask_mode", mode}, {"dim", 48}, {"depth", 2}, {"heads", 4},
                      {"decoder_dim", 24}, {"decoder_depth", 1}, {"decoder_heads", 2}};
  o.steps = p.steps;
  o.batch = 4;
  o.sampler.patch = p.size;
  o.sampler.val_fraction = 0;
  o.val_every = 0;
  o.checkpoint_every = 0;
  o.seed = p.seed;
  o.schedule.lr = 1e-3;
  TrainInput in;
  in.a = vol;
  in.name = p.in;
  train_run(o, {in}, path, p.out + "/mae_" + mode + ".log.jsonl", false, p.overwrite);
  auto ck = checkpoint_load(path);
  return std::move(ck.method);
}

// Central XY and XZ slices of v [1, 1, Z, Y, X] side by side on contrast c.
Image slices_image(const torch::Tensor& v, const Contrast& c) {
  auto s = central_slices(v[0][0]);
  return image_montage({image_from_slice(s.xy, c, 4), image_from_slice(s.xz, c, 4)}, 2, 2);
}

void run_demo(const DemoParams& p) {
  if (p.ratios.empty() || p.widths.empty()) throw ValueError("--ratios and --widths need values");
  for (double r : p.ratios) {
    if (!(r > 0 && r < 1)) throw ValueError("--ratios: " + std::to_string(r) + " not in (0, 1)");
  }
  for (double w : p.widths) {
    if (!(w > 0 && w < 180)) throw ValueError("--widths: " + std::to_string(w) +
                                              " not in (0, 180)");
  }
  if (p.size < 16 || p.size % 8 != 0) {
    throw ValueError("--size " + std::to_string(p.size) + " is not a multiple of 8, >= 16");
  }
  for (const char* f : {"mask_patches.png", "mask_wedge.png", "error_vs_ratio.svg",
                        "error_vs_wedge.svg", "demo_mask.json", "report.html"}) {
    const std::string path = p.out + "/" + f;
    if (!p.overwrite && std::filesystem::exists(path)) {
      throw ExistsError("output '" + path + "' exists (use --overwrite)");
    }
  }
  std::filesystem::create_directories(p.out);
  Volume vol = MrcFile(p.in).read();
  for (int a = 0; a < 3; ++a) {
    if (vol.data.size(a) < p.size) {
      throw ShapeError(p.in + ": size " + c10::str(vol.data.sizes()) + " is smaller than --size " +
                       std::to_string(p.size));
    }
  }
  auto stats = norm_stats_compute(vol.data, NormMode::central, 0.5, p.in);
  Volume normed = vol;
  normed.data = norm_apply(vol.data, stats);
  auto patch_model = demo_model(p, p.model, "patch", normed);
  auto wedge_model = demo_model(p, p.wedge_model, "wedge", normed);
  patch_model->train(false);
  wedge_model->train(false);
  const int64_t s = p.size;
  auto x = normed.data;
  x = x.narrow(0, (x.size(0) - s) / 2, s).narrow(1, (x.size(1) - s) / 2, s)
          .narrow(2, (x.size(2) - s) / 2, s).reshape({1, 1, s, s, s}).contiguous();
  const double var = x.var().item<double>();
  const Contrast c = contrast_percentile(x, 0.01, 0.99);
  nlohmann::json out = {{"input", p.in}, {"size", s}, {"patch", {}}, {"wedge", {}}};

  // Patch masking at each ratio: rows of [masked input | reconstruction].
  torch::manual_seed(p.seed);
  const int64_t pt = mae_patch(*patch_model);
  const int64_t n = (s / pt) * (s / pt) * (s / pt);
  std::vector<Image> rows{slices_image(x, c), slices_image(x, c)};
  PlotSeries err_patch{"hidden patches", {}, {}, "", false};
  for (double r : p.ratios) {
    auto m = mae_random_mask(1, n, r, torch::kCPU);
    const std::array<int64_t, 3> grid{s / pt, s / pt, s / pt};
    auto hidden_vox = vit3d_unpatchify(
        m.hidden.unsqueeze(-1).expand({1, n, pt * pt * pt}).contiguous(), pt, grid);  // 1 = hidden
    auto masked = x * (1.0 - hidden_vox);
    auto rec = mae_reconstruct_patches(*patch_model, x, m.keep);
    const double e =
        ((rec - x).pow(2) * hidden_vox).sum().item<double>() / hidden_vox.sum().item<double>() / var;
    rows.push_back(slices_image(masked, c));
    rows.push_back(slices_image(rec, c));
    err_patch.x.push_back(r);
    err_patch.y.push_back(e);
    out["patch"].push_back({{"ratio", r}, {"nmse_hidden", e}});
    log_info("patch ratio {:.2f}: normalised MSE on hidden patches {:.4f}", r, e);
  }
  png_write(p.out + "/mask_patches.png", image_montage(rows, 2, 6), p.overwrite);

  // Fourier wedge of growing width about kz: [wedged input | reconstruction].
  std::vector<Image> wrows{slices_image(x, c), slices_image(x, c)};
  PlotSeries err_wedge{"hidden wedge", {}, {}, "", false};
  PlotSeries err_input{"wedged input", {}, {}, "", true};
  for (double w : p.widths) {
    WedgeGeometry g;
    g.tilt_min_deg = -(90.0 - w / 2);
    g.tilt_max_deg = 90.0 - w / 2;
    auto mask = wedge_mask_rfft({s, s, s}, g, torch::kCPU);
    auto wedged = wedge_apply(x, mask);
    auto pred = mae_predict(*wedge_model, wedged);
    auto rec = wedge_apply(wedged, mask) + wedge_apply(pred, 1.0 - mask);
    const double e = (rec - x).pow(2).mean().item<double>() / var;
    const double e0 = (wedged - x).pow(2).mean().item<double>() / var;
    wrows.push_back(slices_image(wedged, c));
    wrows.push_back(slices_image(rec, c));
    err_wedge.x.push_back(w);
    err_wedge.y.push_back(e);
    err_input.x.push_back(w);
    err_input.y.push_back(e0);
    out["wedge"].push_back({{"width_deg", w}, {"nmse", e}, {"nmse_wedged_input", e0}});
    log_info("wedge width {:.0f} deg: normalised MSE {:.4f} (wedged input {:.4f})", w, e, e0);
  }
  png_write(p.out + "/mask_wedge.png", image_montage(wrows, 2, 6), p.overwrite);
  PlotOptions po;
  po.title = "MAE reconstruction error vs mask ratio";
  po.xlabel = "fraction of patches hidden";
  po.ylabel = "MSE / variance (hidden patches)";
  write_text_file_atomic(p.out + "/error_vs_ratio.svg", svg_line_plot({err_patch}, po),
                         p.overwrite);
  po.title = "MAE reconstruction error vs hidden wedge width";
  po.xlabel = "hidden double-wedge width (degrees)";
  po.ylabel = "MSE / variance (whole cube)";
  write_text_file_atomic(p.out + "/error_vs_wedge.svg",
                         svg_line_plot({err_wedge, err_input}, po), p.overwrite);
  write_text_file_atomic(p.out + "/demo_mask.json", out.dump(2) + "\n", p.overwrite);

  // The report: the input volume's slices, then the two montages and the two error plots.
  auto list = [](const std::vector<double>& v, const char* fmt) {
    std::string r;
    char buf[32];
    for (double x : v) {
      std::snprintf(buf, sizeof buf, fmt, x);
      r += (r.empty() ? "" : ", ") + std::string(buf);
    }
    return r;
  };
  ReportInput rep;
  rep.title = "unwedge demo-mask: masked autoencoding of " +
              std::filesystem::path(p.in).filename().string();
  rep.input = std::filesystem::absolute(p.in).string();
  const std::string rows_note = " Each image shows the central XY | XZ slices of the " +
                                std::to_string(s) + "^3 central cube; the first row is the "
                                "original, then one row per setting: masked input | "
                                "reconstruction.";
  rep.sections = {
      {"Hidden patches: masked input and reconstruction",
       p.out + "/mask_patches.png",
       "Fractions of " + std::to_string(pt) + "^3 patches hidden: " +
           list(p.ratios, "%.2f") + "." + rows_note},
      {"Reconstruction error vs mask ratio", p.out + "/error_vs_ratio.svg",
       "MSE on the hidden patches over the cube's variance: the more is hidden, the less "
       "context is left and the blurrier the reconstruction."},
      {"Hidden Fourier wedge: wedged input and reconstruction",
       p.out + "/mask_wedge.png",
       "Hidden double-wedge widths about kz (degrees): " + list(p.widths, "%.0f") + "." +
           rows_note},
      {"Reconstruction error vs hidden wedge width", p.out + "/error_vs_wedge.svg",
       "MSE of the whole cube over its variance, for the reconstruction (measured frequencies "
       "kept, the wedge from the model) and for the wedged input itself."},
  };
  report_write(rep, p.out + "/report.html", p.overwrite);
  log_info("wrote {}/mask_patches.png, mask_wedge.png, error_vs_ratio.svg, error_vs_wedge.svg, "
           "demo_mask.json and report.html (rows: original, then masked | reconstruction per "
           "ratio/width; each image: XY | XZ central slices)", p.out);
}

}  // namespace

void add_demo_mask_command(CLI::App& root, GlobalOptions&) {
  auto p = std::make_shared<DemoParams>();
  CLI::App* cmd = root.add_subcommand(
      "demo-mask", "Masked-autoencoding demo: masked input and reconstruction vs mask ratio and "
                   "vs hidden Fourier-wedge width (PNG, SVG, JSON, report.html)");
  cmd->add_option("--in", p->in, "Volume holding one structure, MRC")->required();
  cmd->add_option("--out", p->out, "Output folder")->required();
  cmd->add_option("--ratios", p->ratios, "Fractions of patches hidden")
      ->delimiter(',')->capture_default_str();
  cmd->add_option("--widths", p->widths, "Hidden double-wedge widths, degrees")
      ->delimiter(',')->capture_default_str();
  cmd->add_option("--model", p->model,
                  "mae model (patch mode); default: train a small one on --in for --steps");
  cmd->add_option("--wedge-model", p->wedge_model,
                  "mae model (mask_mode=wedge); default: train a small one on --in for --steps");
  cmd->add_option("--steps", p->steps, "Training steps of each model trained here")
      ->capture_default_str();
  cmd->add_option("--size", p->size, "Edge of the central cube shown (multiple of 8)")
      ->capture_default_str();
  cmd->add_option("--seed", p->seed, "Seed of masks and training")->capture_default_str();
  add_overwrite_flag(*cmd, p->overwrite);
  cmd->callback([p, cmd] {
    run_demo(*p);
    write_config_beside(*cmd, p->out);
  });
}

}  // namespace unwedge::cli
