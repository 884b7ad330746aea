// `unwedge ring`: roundness of a filament's cross-section (a microtubule along Y shows in XZ as
// a ring the missing wedge smears along Z) and the power in the missing-wedge band, for real
// data without ground truth. One summary line per volume; JSON with --json, montage with --png.
#include <cstdio>
#include <filesystem>

#include <torch/torch.h>

#include "cli_common.h"
#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/eval/png.h"
#include "unwedge/eval/ring.h"
#include "unwedge/io/mrc.h"
#include "unwedge/ops/wedge_sign.h"

namespace unwedge::cli {

namespace {

struct RingParams {
  std::vector<std::string> in;
  std::vector<std::string> labels;
  std::string axis = "y";
  bool no_align = false;
  int block = 16;
  double threshold = 3.0;
  int band = 2;
  bool dark = false;
  std::vector<double> tilt_range{-60.0, 60.0};  ///< degrees
  std::string wedge_sign;        ///< --wedge-sign text (cli_common.h)
  bool wedge_sign_given = false;
  double deep_margin = 10.0;  ///< degrees past the tilt limit
  std::string json, png;
  int zoom = 3;
  bool permissive = false;
  bool overwrite = false;
};

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

void run_ring(const RingParams& p) {
  if (!p.labels.empty() && p.labels.size() != p.in.size()) {
    throw ValueError("ring: --label given " + std::to_string(p.labels.size()) +
                     " times for " + std::to_string(p.in.size()) + " --in files");
  }
  if (p.tilt_range[0] > p.tilt_range[1]) {
    throw ValueError("ring: --tilt-range " + fmt("%g", p.tilt_range[0]) + " " +
                     fmt("%g", p.tilt_range[1]) + " has min > max");
  }
  if (!p.json.empty()) output_check_writable(p.json, p.overwrite);
  if (!p.png.empty()) output_check_writable(p.png, p.overwrite);
  RingOptions o;
  o.axis = p.axis[0];
  o.align = !p.no_align;
  o.block = p.block;
  o.threshold = p.threshold;
  o.band = p.band;
  o.wedge.tilt_min_deg = p.tilt_range[0];
  o.wedge.tilt_max_deg = p.tilt_range[1];
  const WedgeSignMode sign =
      wedge_sign_parse(p.wedge_sign, p.wedge_sign_given, WedgeSignMode::plus);
  o.wedge.sign_flip = sign == WedgeSignMode::minus;
  o.deep_margin_deg = p.deep_margin;
  wedge_check(o.wedge);
  const std::string lat = o.axis == 'y' ? "X" : "Y";

  nlohmann::json out;
  out["volumes"] = nlohmann::json::array();
  std::vector<at::Tensor> vols;
  for (size_t i = 0; i < p.in.size(); ++i) {
    Volume v = mrc_read_finite(p.in[i], MrcReadOptions{p.permissive});
    at::Tensor d = p.dark ? -v.data.to(torch::kDouble) : v.data.to(torch::kDouble);
    nlohmann::json autosign;
    if (sign == WedgeSignMode::automatic) {
      const WedgeSignChoice c = wedge_sign_detect(d, o.wedge.tilt_min_deg, o.wedge.tilt_max_deg);
      o.wedge.sign_flip = c.sign_flip;
      log_info("{}", wedge_sign_describe(c, o.wedge.tilt_min_deg, o.wedge.tilt_max_deg, p.in[i]));
      autosign = {{"decided", c.decided}, {"power_plus", c.power_plus},
                  {"power_minus", c.power_minus}};
    }
    RingMeasure m;
    try {
      m = ring_measure(d, o);
    } catch (const ValueError& e) {
      throw ValueError(p.in[i] + ": " + e.what());
    }
    std::string label = p.labels.empty() ? std::filesystem::path(p.in[i]).stem().string()
                                         : p.labels[i];
    nlohmann::json j = ring_to_json(m, o, v.meta.voxel_size[0]);
    j["file"] = p.in[i];
    j["label"] = label;
    if (!autosign.is_null()) j["wedge_sign_auto"] = autosign;
    out["volumes"].push_back(j);
    std::printf("%s: ring Z/%s %s (Z %s%s, %s %s%s vox), moment Z/%s %s, wedge power %s %% "
                "(deep %s %%)\n",
                label.c_str(), lat.c_str(), fmt("%.3f", m.ratio_z_over_a).c_str(),
                fmt("%.1f", m.extent_z.width).c_str(), m.extent_z.clipped ? " clipped" : "",
                lat.c_str(), fmt("%.1f", m.extent_a.width).c_str(),
                m.extent_a.clipped ? " clipped" : "", lat.c_str(),
                fmt("%.3f", m.moment_ratio_z_over_a).c_str(),
                fmt("%.2f", 100 * m.wedge_power_fraction).c_str(),
                fmt("%.2f", 100 * m.deep_wedge_power_fraction).c_str());
    std::fflush(stdout);
    if (!p.png.empty()) vols.push_back(d);
  }
  if (!p.png.empty()) {
    png_write(p.png, ring_montage(vols, o, p.zoom), p.overwrite);
    log_info("wrote {} (rows: {} volume(s); left: section averaged along {}, right: its central "
             "slice)", p.png, vols.size(), p.axis);
  }
  if (!p.json.empty()) {
    write_text_file_atomic(p.json, out.dump(1) + "\n", p.overwrite);
    log_info("wrote {}", p.json);
  }
}

}  // namespace

void add_ring_command(CLI::App& root, GlobalOptions& g) {
  (void)g;
  auto p = std::make_shared<RingParams>();
  CLI::App* cmd = root.add_subcommand(
      "ring", "Roundness of a filament's cross-section (ring Z/X extent ratio) and wedge-band "
              "power, for real data without ground truth (e.g. a microtubule along Y)");
  cmd->add_option("--in", p->in, "Volume(s), MRC; one summary line and montage row each")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--label", p->labels, "Name per --in, in order (default: the file stem)");
  cmd->add_option("--axis", p->axis, "Filament axis: y (section XZ) or x (section YZ)")
      ->check(CLI::IsMember({"y", "x"}))
      ->capture_default_str();
  cmd->add_flag("--no-align", p->no_align,
                "Average along the axis as is (default: track the filament's centre and shift "
                "slices onto it)");
  cmd->add_option("--block", p->block, "Slices per block when tracking the centre")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--threshold", p->threshold,
                  "Density counted above background + THRESHOLD x noise (centre, moments)")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  cmd->add_option("--band", p->band, "Profiles average 2 x BAND + 1 lines through the centre")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  cmd->add_flag("--dark", p->dark, "Density is darker than background: negate first (default: "
                                   "off, density bright)");
  cmd->add_option("--tilt-range", p->tilt_range,
                  "Tilt range in degrees defining the missing-wedge band")
      ->expected(2)
      ->capture_default_str();
  add_wedge_sign_option(*cmd, p->wedge_sign, WedgeSignMode::plus);
  cmd->add_option("--deep-margin", p->deep_margin,
                  "Degrees past the tilt limit where the deep wedge band starts")
      ->check(CLI::Range(0.0, 90.0))
      ->capture_default_str();
  cmd->add_option("--json", p->json, "Write the measurements as JSON to this file (default: none)");
  cmd->add_option("--png", p->png,
                  "Write a montage PNG: per --in a row [averaged section | central slice] "
                  "(default: none)");
  cmd->add_option("--zoom", p->zoom, "Montage pixels per voxel")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  add_permissive_flag(*cmd, p->permissive);
  add_overwrite_flag(*cmd, p->overwrite);
  cmd->callback([p, cmd] {
    p->wedge_sign_given = cmd->count("--wedge-sign") > 0;
    run_ring(*p);
    if (!p->json.empty() || !p->png.empty()) {
      write_config_beside(*cmd, !p->json.empty() ? p->json : p->png);
    }
  });
}

}  // namespace unwedge::cli
