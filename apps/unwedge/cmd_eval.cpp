// `unwedge eval`: quality of a restoration against a ground truth (--in/--truth), or of two
// restored halves without one (--half1/--half2). Table on the terminal, JSON with --json.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include <torch/torch.h>

#include "cli_common.h"
#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/eval/evaluate.h"
#include "unwedge/infer/sample.h"
#include "unwedge/io/mrc.h"
#include "unwedge/ops/wedge.h"
#include "unwedge/ops/wedge_sign.h"

namespace unwedge::cli {

namespace {

struct EvalParams {
  std::string in, truth, half1, half2, mask, std_map, json;
  std::vector<std::string> samples;  ///< posterior draws of --in: per-band figures
  double std_scale = 1.0;         ///< the factor the sampler applied to the std
  double std_pool = SampleOptions{}.std_pool;  ///< the sampler's variance pooling, voxels
  double std_structure = SampleOptions{}.std_structure;  ///< the sampler's structure term
  std::vector<double> level_z;    ///< the intervals' multipliers per level (empty: Gaussian)
  std::vector<double> level_z_measured, level_z_wedge;  ///< the same per band (--samples)
  std::vector<double> tilt_range{-60.0, 60.0};  ///< degrees
  std::string wedge_sign;        ///< --wedge-sign text (cli_common.h)
  bool wedge_sign_given = false;
  double deep_margin = 10.0;     ///< degrees past the tilt limit
  double cone_angle = 30.0;      ///< directional FSC half-angle, degrees
  double mask_soft = 2.0;        ///< voxels
  double voxel_size = 0.0;       ///< Å; 0 = from the first file's header
  bool permissive = false;
  bool overwrite = false;
};

std::string dims(const Volume& v) {
  return std::to_string(v.nx()) + " x " + std::to_string(v.ny()) + " x " + std::to_string(v.nz());
}

void same_shape(const Volume& a, const std::string& pa, const Volume& b, const std::string& pb) {
  if (a.data.sizes() != b.data.sizes()) {
    throw ShapeError("eval: " + pa + " is " + dims(a) + " (X x Y x Z) but " + pb + " is " +
                     dims(b));
  }
}

/// The metrics of `a` against `b`; an error of a metric (a volume too small for SSIM's window)
/// names the files.
nlohmann::json evaluate_files(bool truth_mode, const Volume& a, const std::string& pa,
                              const Volume& b, const std::string& pb, const at::Tensor& mask,
                              const EvalOptions& o) {
  try {
    return truth_mode ? eval_against_truth(a.data, b.data, mask, o)
                      : eval_halves(a.data, b.data, mask, o);
  } catch (const ShapeError& e) {
    throw ShapeError(pa + " and " + pb + ": " + e.what());
  } catch (const ValueError& e) {
    throw ValueError(pa + " and " + pb + ": " + e.what());
  }
}

void run_eval(const EvalParams& p) {
  bool truth_mode = !p.in.empty() || !p.truth.empty();
  bool half_mode = !p.half1.empty() || !p.half2.empty();
  if (truth_mode == half_mode) {
    throw ValueError("eval: give either --in and --truth, or --half1 and --half2");
  }
  if (truth_mode && (p.in.empty() || p.truth.empty())) {
    throw ValueError("eval: --in and --truth go together");
  }
  if (half_mode && (p.half1.empty() || p.half2.empty())) {
    throw ValueError("eval: --half1 and --half2 go together");
  }
  try {
    wedge_check(WedgeGeometry{p.tilt_range[0], p.tilt_range[1]});
  } catch (const ValueError& e) {
    throw ValueError(std::string("--tilt-range: ") + e.what());
  }
  if (!p.json.empty()) output_check_writable(p.json, p.overwrite);
  MrcReadOptions ro{p.permissive};
  std::string pa = truth_mode ? p.in : p.half1, pb = truth_mode ? p.truth : p.half2;
  Volume a = mrc_read_finite(pa, ro), b = mrc_read_finite(pb, ro);
  same_shape(a, pa, b, pb);
  if (p.voxel_size <= 0) voxel_sizes_check_same(pa, a.meta, pb, b.meta);
  at::Tensor mask;
  if (!p.mask.empty()) {
    Volume m = mrc_read_finite(p.mask, ro);
    same_shape(a, pa, m, p.mask);
    mask = m.data;
  }
  EvalOptions o;
  o.wedge.tilt_min_deg = p.tilt_range[0];
  o.wedge.tilt_max_deg = p.tilt_range[1];
  const WedgeSignMode sign =
      wedge_sign_parse(p.wedge_sign, p.wedge_sign_given, WedgeSignMode::plus);
  o.wedge.sign_flip = sign == WedgeSignMode::minus;
  if (sign == WedgeSignMode::automatic) {  // read from the restored volume (or the first half)
    wedge_check(o.wedge);
    const WedgeSignChoice c = wedge_sign_detect(a.data, o.wedge.tilt_min_deg, o.wedge.tilt_max_deg);
    o.wedge.sign_flip = c.sign_flip;
    log_info("{}", wedge_sign_describe(c, o.wedge.tilt_min_deg, o.wedge.tilt_max_deg, pa));
  }
  o.deep_margin_deg = p.deep_margin;
  o.cone_half_angle_deg = p.cone_angle;
  o.mask_soft_sigma = p.mask_soft;
  o.voxel_size = p.voxel_size > 0 ? p.voxel_size : b.meta.voxel_size[0];
  const auto& vs = b.meta.voxel_size;
  // Headers store cell lengths, so 3.7 A comes back as 3.6999998 or 3.7000001: a relative
  // tolerance of 1e-4 separates rounding from real anisotropy.
  auto differ = [](double x, double y) {
    return std::abs(x - y) > 1e-4 * std::max(std::abs(x), std::abs(y));
  };
  if (p.voxel_size <= 0 && (differ(vs[0], vs[1]) || differ(vs[0], vs[2]))) {
    log_warn("{}: anisotropic voxel size {} x {} x {} A; FSC uses X's", pb, vs[0], vs[1], vs[2]);
  }
  nlohmann::json r = evaluate_files(truth_mode, a, pa, b, pb, mask, o);
  if (!p.std_map.empty()) {
    if (!truth_mode) throw ValueError("eval: --std needs --in and --truth");
    Volume sd = mrc_read_finite(p.std_map, ro);
    same_shape(a, pa, sd, p.std_map);
    eval_add_uncertainty(r, a.data, sd.data, b.data, mask, p.level_z);
  }
  if (!p.samples.empty()) {
    if (!truth_mode || p.std_map.empty()) throw ValueError("eval: --samples needs --in, --truth and --std");
    if (!p.mask.empty()) throw ValueError("eval: --samples takes no --mask (the bands are of the whole volume)");
    if (!(p.std_scale > 0) || !std::isfinite(p.std_scale)) {
      throw ValueError("eval: --std-scale " + std::to_string(p.std_scale) + " (need a finite value > 0)");
    }
    std::vector<at::Tensor> draws;
    for (const auto& path : p.samples) {
      Volume d = mrc_read_finite(path, ro);
      same_shape(a, pa, d, path);
      draws.push_back(d.data);
    }
    eval_add_band_uncertainty(r, a.data, draws, p.std_scale, b.data, o, p.std_pool,
                              p.level_z_measured, p.level_z_wedge, p.std_structure);
  }
  r["files"] = truth_mode ? nlohmann::json{{"restored", p.in}, {"truth", p.truth}}
                          : nlohmann::json{{"half1", p.half1}, {"half2", p.half2}};
  if (!p.mask.empty()) r["files"]["mask"] = p.mask;
  if (!p.std_map.empty()) r["files"]["std"] = p.std_map;
  std::printf("%s (%s)\n", truth_mode ? (p.in + " against " + p.truth).c_str()
                                      : (p.half1 + " and " + p.half2).c_str(),
              dims(a).c_str());
  std::fputs(eval_table(r).c_str(), stdout);
  if (!p.json.empty()) {
    write_text_file_atomic(p.json, r.dump(1) + "\n", p.overwrite);
    log_info("wrote {}", p.json);
  }
}

}  // namespace

void add_eval_command(CLI::App& root, GlobalOptions& g) {
  auto p = std::make_shared<EvalParams>();
  CLI::App* cmd = root.add_subcommand(
      "eval", "Quality metrics of a restoration: against a ground truth (--in, --truth) or "
              "between two restored halves (--half1, --half2)");
  cmd->add_option("--in", p->in, "Restored volume (MRC), compared with --truth")
      ->check(CLI::ExistingFile);
  cmd->add_option("--truth", p->truth, "Ground-truth volume (MRC)")->check(CLI::ExistingFile);
  cmd->add_option("--half1", p->half1, "First restored half (MRC), no ground truth")
      ->check(CLI::ExistingFile);
  cmd->add_option("--half2", p->half2, "Second restored half (MRC)")->check(CLI::ExistingFile);
  cmd->add_option("--mask", p->mask,
                  "Real-space mask (MRC, > 0.5 inside) restricting every metric")
      ->check(CLI::ExistingFile);
  cmd->add_option("--std", p->std_map,
                  "Posterior std map (MRC) of --in: adds interval coverage and std-error CC")
      ->check(CLI::ExistingFile);
  cmd->add_option("--samples", p->samples,
                  "Posterior draws of --in (MRC files, at least 2; with --std): adds coverage, "
                  "corr(std, |error|) and AUSE inside the measured band and the missing wedge, "
                  "the std there being the draws' spread restricted to the band")
      ->check(CLI::ExistingFile);
  cmd->add_option("--std-scale", p->std_scale,
                  "Factor on the draws' spread for --samples: the calibration factor the sampler "
                  "applied to std.mrc (summary.json calibration.std_scale; 1 without --calibrate)")
      ->capture_default_str();
  cmd->add_option("--std-pool", p->std_pool,
                  "For --samples: sigma (voxels) over which the sampler averaged the draws' "
                  "variance (summary.json options.std_pool; 0 = per voxel)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 16.0));
  cmd->add_option("--std-structure", p->std_structure,
                  "For --samples: the sampler's structure term (summary.json "
                  "options.std_structure; 0 = the draws' spread alone)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--level-z", p->level_z,
                  "With --std: the multipliers of std that state the 50/80/90/95 % intervals "
                  "(summary.json calibration.level_z.z; default: the Gaussian z)")
      ->expected(4);
  cmd->add_option("--level-z-measured", p->level_z_measured,
                  "With --samples: the same for the measured band (calibration.level_z.z_measured_band)")
      ->expected(4);
  cmd->add_option("--level-z-wedge", p->level_z_wedge,
                  "With --samples: the same for the missing wedge (calibration.level_z.z_wedge_band)")
      ->expected(4);
  cmd->add_option("--tilt-range", p->tilt_range,
                  "Tilt range in degrees defining the measured and missing-wedge bands")
      ->expected(2)
      ->capture_default_str();
  add_wedge_sign_option(*cmd, p->wedge_sign, WedgeSignMode::plus);
  cmd->add_option("--deep-margin", p->deep_margin,
                  "Degrees past the tilt limit where the deep wedge band starts")
      ->check(CLI::Range(0.0, 90.0))
      ->capture_default_str();
  cmd->add_option("--cone-angle", p->cone_angle,
                  "Half-angle in degrees of the directional-FSC cones and XZ slab")
      ->check(CLI::Range(1.0, 90.0))
      ->capture_default_str();
  cmd->add_option("--mask-soft", p->mask_soft,
                  "Soft edge (Gaussian sigma, voxels) of the mask for Fourier metrics")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  cmd->add_option("--voxel-size", p->voxel_size,
                  "Voxel size in A for FSC resolutions (0 = from the header)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  cmd->add_option("--json", p->json, "Write every metric and curve as JSON to this file");
  add_permissive_flag(*cmd, p->permissive);
  add_overwrite_flag(*cmd, p->overwrite);
  cmd->callback([p, cmd] {
    p->wedge_sign_given = cmd->count("--wedge-sign") > 0;
    run_eval(*p);
    if (!p->json.empty()) write_config_beside(*cmd, p->json);
  });
}

}  // namespace unwedge::cli
