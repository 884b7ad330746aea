// `unwedge reconstruct`: weighted back-projection of an aligned tilt series (.ali + .tlt) into a
// tomogram, optionally as two half tomograms from alternating tilts.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "cli_common.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/io/mrc.h"
#include "unwedge/io/tilt.h"
#include "unwedge/physics/projector.h"

namespace unwedge::cli {

namespace {

struct ReconstructParams {
  std::string tilt_series;        ///< MRC stack [n_tilts, Y, X], sections = tilts
  std::string angles;             ///< .tlt/.rawtlt, one angle (degrees) per section
  int64_t thickness = 0;          ///< output Z in voxels (required)
  int64_t width = 0;              ///< output X in voxels; 0 = the series' X
  std::string out;                ///< output tomogram (.mrc)
  std::string split = "none";     ///< none | even-odd
  std::string filter = "ramp";    ///< ramp | sirt-like | none
  int sirt_iterations = 10;       ///< N of the SIRT-like filter
  double lowpass = 0.0;           ///< Hamming apodisation cut-off, cycles/pixel; 0 = off
  bool overwrite = false;
  bool permissive = false;
};

/// "DIR/TOMO.mrc" -> "DIR/TOMO_<tag>.mrc" (any extension kept; ".mrc" added when none).
std::string tagged_path(const std::string& out, const std::string& tag) {
  std::filesystem::path p(out);
  std::string ext = p.has_extension() ? p.extension().string() : ".mrc";
  return (p.parent_path() / (p.stem().string() + "_" + tag + ext)).string();
}

void run_reconstruct(const ReconstructParams& p, const GlobalOptions& g) {
  if (p.thickness < 2) {
    throw ValueError("reconstruct: --thickness " + std::to_string(p.thickness) +
                     " must be >= 2 voxels");
  }
  WbpOptions wo;
  wo.filter = wbp_filter_parse(p.filter, "reconstruct: --filter");
  wo.sirt_iterations = p.sirt_iterations;
  wo.lowpass = p.lowpass;

  std::vector<std::string> outs;
  if (p.split == "none") {
    outs = {p.out};
  } else if (p.split == "even-odd") {
    outs = {tagged_path(p.out, "even"), tagged_path(p.out, "odd")};
  } else {
    throw ValueError("reconstruct: --split '" + p.split + "' is not none or even-odd");
  }
  for (const auto& o : outs) {
    if (!p.overwrite && std::filesystem::exists(o)) {
      throw ExistsError(o + " exists (use --overwrite to replace it)");
    }
  }

  MrcFile f(p.tilt_series, MrcReadOptions{p.permissive});
  for (const auto& w : f.warnings()) log_warn("{}: {}", p.tilt_series, w);
  std::vector<double> angles = tilt_read(p.angles);
  auto shape = f.shape();  // [n_tilts, Y, X]
  if (int64_t(angles.size()) != shape[0]) {
    throw ValueError("reconstruct: " + p.angles + " has " + std::to_string(angles.size()) +
                     " angles but " + p.tilt_series + " has " + std::to_string(shape[0]) +
                     " sections (tilts)");
  }
  if (p.split == "even-odd" && shape[0] < 2) {
    throw ValueError("reconstruct: --split even-odd needs >= 2 tilts, " + p.tilt_series +
                     " has " + std::to_string(shape[0]));
  }
  Volume ts = f.read();
  check_finite(ts.data, p.tilt_series);

  VolumeMeta meta = ts.meta;
  meta.voxel_size[2] = meta.voxel_size[0];  // isotropic voxels: Z sampled like X
  meta.origin = {0.0, 0.0, 0.0};
  meta.nstart = {0, 0, 0};
  meta.ext_header.clear();
  meta.exttyp.clear();
  MrcWriteOptions mo;
  mo.overwrite = p.overwrite;
  mo.label = output_label(g);

  for (size_t h = 0; h < outs.size(); ++h) {
    std::vector<int64_t> idx;
    std::vector<double> ang;
    for (int64_t t = 0; t < shape[0]; ++t) {
      if (outs.size() == 1 || t % 2 == int64_t(h)) {
        idx.push_back(t);
        ang.push_back(angles[t]);
      }
    }
    auto sel = ts.data.index_select(0, torch::tensor(idx, torch::kLong));  // [n, Y, X]
    log_info("reconstruct: {} tilts ({:.1f} to {:.1f} deg) -> {} x {} x {} (X x Y x Z) {}",
             ang.size(), *std::min_element(ang.begin(), ang.end()),
             *std::max_element(ang.begin(), ang.end()), p.width > 0 ? p.width : shape[2],
             shape[1], p.thickness, outs[h]);
    Volume tomo{wbp(sel, ang, p.thickness, wo, p.width), meta};
    mrc_write(outs[h], tomo, mo);
  }
}

}  // namespace

void add_reconstruct_command(CLI::App& root, GlobalOptions& g) {
  auto p = std::make_shared<ReconstructParams>();
  CLI::App* cmd = root.add_subcommand(
      "reconstruct",
      "Weighted back-projection of an aligned tilt series about Y into a tomogram [Z, Y, X]");
  cmd->add_option("--tilt-series", p->tilt_series,
                  "Aligned tilt series (MRC stack, one section per tilt, e.g. .ali)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--angles", p->angles, "Tilt angles in degrees, one per section (.tlt/.rawtlt)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--thickness", p->thickness, "Tomogram thickness Z in voxels")->required();
  cmd->add_option("--width", p->width, "Tomogram width X in voxels (0 = the series' width)")
      ->capture_default_str();
  cmd->add_option("--out", p->out,
                  "Output tomogram (.mrc); with --split even-odd the halves go to "
                  "<stem>_even.mrc and <stem>_odd.mrc")
      ->required();
  cmd->add_option("--split", p->split,
                  "none, or even-odd: two half tomograms from alternating tilts (file order: "
                  "sections 0,2,4.. -> _even, 1,3,5.. -> _odd); the full one is not written")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "even-odd"}));
  cmd->add_option("--filter", p->filter,
                  "Row weighting: ramp, sirt-like (mimics --sirt-iterations SIRT iterations) "
                  "or none (plain back-projection)")
      ->capture_default_str()
      ->check(CLI::IsMember({"ramp", "sirt-like", "none"}));
  cmd->add_option("--sirt-iterations", p->sirt_iterations,
                  "Iterations the sirt-like filter mimics")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--lowpass", p->lowpass,
                  "Hamming apodisation cut-off in cycles/pixel (Nyquist 0.5; 0 = off)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  add_overwrite_flag(*cmd, p->overwrite);
  add_permissive_flag(*cmd, p->permissive);
  cmd->callback([p, cmd, &g] {
    run_reconstruct(*p, g);
    write_config_beside(*cmd, p->out);
  });
}

}  // namespace unwedge::cli
