// `unwedge simulate --preset tiny|small|standard|large --out DIR --seed S`: a simulated specimen
// (ground truth), its tilt series and the tomograms, for evaluation without real ground truth.
#include <cstdio>
#include <functional>
#include <memory>

#include <torch/torch.h>

#include "cli_common.h"
#include "unwedge/core/log.h"
#include "unwedge/sim/simulate.h"

namespace unwedge::cli {

namespace {

/// The command's state: values as parsed (defaults from the tiny preset, shown in --help), and
/// for each option a step copying its value onto the chosen preset when it was given (or, when
/// it was not, recording the preset's value as the default the resolved configuration shows).
struct SimulateCli {
  SimParams given = sim_preset("tiny");
  std::vector<std::function<void(SimParams&)>> apply;
  std::string preset = "tiny";
  std::string out;
  std::string order = "dose-symmetric";
  std::string split = "frame";
  bool overwrite = false;
};

template <class T>
void add(CLI::App* cmd, SimulateCli& c, const std::string& name, std::function<T&(SimParams&)> f,
         const std::string& help) {
  CLI::Option* o = cmd->add_option(name, f(c.given), help)->capture_default_str();
  SimParams* given = &c.given;
  c.apply.push_back([o, f, given](SimParams& p) {
    if (o->count() > 0) {
      f(p) = f(*given);
    } else {  // the resolved configuration shows the chosen preset's value
      o->default_str(CLI::detail::to_string(f(p)));
    }
  });
}

}  // namespace

void add_simulate_command(CLI::App& root, GlobalOptions& g) {
  auto c = std::make_shared<SimulateCli>();
  CLI::App* cmd = root.add_subcommand(
      "simulate",
      "Simulate a specimen (ground truth), its tilt series and tomograms (full, even, odd). "
      "A preset sets sizes and object counts; any flag given overrides it (defaults shown "
      "are the tiny preset's; [preset] marks values the preset changes)");
  cmd->add_option("--preset", c->preset, "tiny (64x64x32), small (128x128x64), standard "
                                         "(256x256x96), large (512x512x192); all 10 A/voxel")
      ->check(CLI::IsMember(sim_preset_names()))
      ->capture_default_str();
  cmd->add_option("--out", c->out, "Output folder (created)")->required();
  SimulateCli& s = *c;
  add<uint64_t>(cmd, s, "--seed", [](SimParams& p) -> uint64_t& { return p.seed; },
                "Random seed: the same seed gives the same files");
  // Specimen.
  using I64 = int64_t;
  add<I64>(cmd, s, "--nx", [](SimParams& p) -> I64& { return p.specimen.shape[2]; }, "Box X, voxels [preset]");
  add<I64>(cmd, s, "--ny", [](SimParams& p) -> I64& { return p.specimen.shape[1]; }, "Box Y (tilt axis), voxels [preset]");
  add<I64>(cmd, s, "--nz", [](SimParams& p) -> I64& { return p.specimen.shape[0]; }, "Box Z (beam at 0 deg), voxels [preset]");
  add<double>(cmd, s, "--voxel-size", [](SimParams& p) -> double& { return p.specimen.voxel_A; }, "Voxel size, A");
  add<double>(cmd, s, "--thickness", [](SimParams& p) -> double& { return p.specimen.thickness_A; }, "Ice slab thickness, A (vacuum above and below) [preset]");
  add<int>(cmd, s, "--particles", [](SimParams& p) -> int& { return p.specimen.n_particles; }, "Particles to place (fewer if no room) [preset]");
  add<std::string>(cmd, s, "--maps", [](SimParams& p) -> std::string& { return p.maps_dir; }, "Folder of particle maps (.mrc/.map, any voxel size); empty = the shipped 26 templates at 10 A");
  add<bool>(cmd, s, "--use-maps", [](SimParams& p) -> bool& { return p.use_maps; }, "Use the maps folder as particle classes (false: only --pdb models)");
  add<std::vector<std::string>>(cmd, s, "--pdb", [](SimParams& p) -> std::vector<std::string>& { return p.pdb_files; }, "Atomic models (PDB format) added as particle classes, potential from electron scattering factors");
  add<int>(cmd, s, "--vesicles", [](SimParams& p) -> int& { return p.specimen.n_vesicles; }, "Lipid vesicles (bilayer shells) [preset]");
  add<double>(cmd, s, "--vesicle-radius-min", [](SimParams& p) -> double& { return p.specimen.vesicle_radius_min_A; }, "Smallest vesicle radius, A [preset]");
  add<double>(cmd, s, "--vesicle-radius-max", [](SimParams& p) -> double& { return p.specimen.vesicle_radius_max_A; }, "Largest vesicle radius, A (clipped to fit the slab) [preset]");
  add<int>(cmd, s, "--microtubules", [](SimParams& p) -> int& { return p.specimen.n_microtubules; }, "Microtubules (hollow tubes, 250 A outer diameter) [preset]");
  add<int>(cmd, s, "--actin", [](SimParams& p) -> int& { return p.specimen.n_actin; }, "Actin-like filaments (70 A diameter) [preset]");
  add<int>(cmd, s, "--gold", [](SimParams& p) -> int& { return p.specimen.n_gold; }, "Gold beads [preset]");
  add<double>(cmd, s, "--gold-radius", [](SimParams& p) -> double& { return p.specimen.gold_radius_A; }, "Gold bead radius, A");
  add<double>(cmd, s, "--gold-density", [](SimParams& p) -> double& { return p.specimen.gold_density; }, "Gold potential relative to protein");
  add<double>(cmd, s, "--ice-noise", [](SimParams& p) -> double& { return p.specimen.ice_noise; }, "Std of the amorphous-ice texture (protein = 1)");
  add<double>(cmd, s, "--ice-noise-scale", [](SimParams& p) -> double& { return p.specimen.ice_noise_scale_A; }, "Correlation length of the ice texture, A");
  // Acquisition.
  add<double>(cmd, s, "--tilt-min", [](SimParams& p) -> double& { return p.acquisition.tilt_min_deg; }, "Lowest tilt, degrees");
  add<double>(cmd, s, "--tilt-max", [](SimParams& p) -> double& { return p.acquisition.tilt_max_deg; }, "Highest tilt, degrees");
  add<double>(cmd, s, "--tilt-step", [](SimParams& p) -> double& { return p.acquisition.tilt_step_deg; }, "Tilt increment, degrees");
  cmd->add_option("--order", c->order, "Acquisition order (dose accumulation): dose-symmetric, sequential")
      ->check(CLI::IsMember({"dose-symmetric", "sequential"}))
      ->capture_default_str();
  add<double>(cmd, s, "--dose", [](SimParams& p) -> double& { return p.acquisition.total_dose; }, "Total dose over the series, e-/A^2 (split evenly over tilts) [preset]");
  add<double>(cmd, s, "--voltage", [](SimParams& p) -> double& { return p.acquisition.voltage_kV; }, "Acceleration voltage, kV");
  add<double>(cmd, s, "--protein-potential", [](SimParams& p) -> double& { return p.acquisition.protein_potential_V; }, "Excess potential of protein over ice (gt value 1), V: sets the contrast [preset]");
  add<double>(cmd, s, "--amplitude-contrast", [](SimParams& p) -> double& { return p.acquisition.amplitude_contrast; }, "Amplitude contrast fraction");
  add<bool>(cmd, s, "--ctf", [](SimParams& p) -> bool& { return p.acquisition.ctf; }, "Apply a CTF (false: ideal transfer)");
  add<double>(cmd, s, "--defocus", [](SimParams& p) -> double& { return p.acquisition.defocus_um; }, "Underfocus, um");
  add<double>(cmd, s, "--cs", [](SimParams& p) -> double& { return p.acquisition.cs_mm; }, "Spherical aberration, mm");
  add<bool>(cmd, s, "--phase-flip", [](SimParams& p) -> bool& { return p.acquisition.phase_flip; }, "Phase-flip the data (CTF correction) before reconstruction");
  add<bool>(cmd, s, "--radiation-damage", [](SimParams& p) -> bool& { return p.acquisition.radiation_damage; }, "Exposure filter by accumulated dose (Grant & Grigorieff 2015)");
  add<double>(cmd, s, "--mean-free-path", [](SimParams& p) -> double& { return p.acquisition.mean_free_path_nm; }, "Inelastic mean free path, nm: thicker ice at high tilt gets fewer electrons (0 = off)");
  add<double>(cmd, s, "--misalign", [](SimParams& p) -> double& { return p.acquisition.misalign_px; }, "Std of random per-tilt shifts (x and y), pixels");
  cmd->add_option("--split", c->split, "Half data sets: frame (each tilt's dose halved, same geometry: prefer this) or tilt (alternating tilts)")
      ->check(CLI::IsMember({"frame", "tilt"}))
      ->capture_default_str();
  add<bool>(cmd, s, "--noise", [](SimParams& p) -> bool& { return p.acquisition.noise; }, "Poisson shot noise (false: noise-free series)");
  add<double>(cmd, s, "--wbp-lowpass", [](SimParams& p) -> double& { return p.wbp_lowpass; }, "Hamming low-pass of the WBP, cycles/pixel (0 = none)");
  add_overwrite_flag(*cmd, c->overwrite);

  cmd->callback([c, cmd, &g] {
    SimParams p = sim_preset(c->preset);
    for (auto& f : c->apply) f(p);
    p.acquisition.order = tilt_order_parse(c->order);
    p.acquisition.split = half_split_parse(c->split);
    simulate_check_outputs(c->out, c->overwrite);
    log_info("simulate: preset {}, {}x{}x{} voxels at {} A, seed {}", p.preset, p.specimen.shape[2],
             p.specimen.shape[1], p.specimen.shape[0], p.specimen.voxel_A, p.seed);
    SimResult r = simulate_run(p, /*progress=*/!g.quiet);
    simulate_write(c->out, p, r, c->overwrite, output_label(g));
    log_info("simulate: {} particles, {} vesicles, {} microtubules, {} actin, {} gold; "
             "CC(tomo, gt) = {:.3f}, CC(noise-free tomo, gt) = {:.3f}; {:.1f} s; wrote {}",
             r.specimen.particles.size(), r.specimen.n_vesicles, r.specimen.n_microtubules,
             r.specimen.n_actin, r.specimen.n_gold, r.cc_tomo_gt, r.cc_clean_gt, r.seconds, c->out);
    write_config_beside(*cmd, c->out);
  });
}

}  // namespace unwedge::cli
