// `unwedge restore`: applies a trained model (MODEL.uwm) to a tomogram or a pair of halves,
// tile by tile, writing the result slab by slab in the input's scale and header.
#include <filesystem>

#include <torch/torch.h>

#include "cli_common.h"
#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/infer/restore.h"
#include "unwedge/io/mrc.h"
#include "unwedge/train/checkpoint.h"
#include "unwedge/train/normalize.h"

namespace unwedge::cli {

namespace {

/// Every option of `unwedge restore`; 0 / empty means "from the checkpoint".
struct RestoreParams {
  std::string model, in, even, odd, out;
  RestoreOptions restore;
  std::string device;         ///< empty: the training device when available, else cpu
  std::string norm = "input";  ///< input | model
  int mode = 2;
  bool overwrite = false, permissive = false, no_progress = false;
};

std::string with_suffix(const std::string& path, const std::string& suffix) {
  std::filesystem::path p(path);
  std::string ext = p.extension().string();
  p.replace_extension();
  return p.string() + suffix + (ext.empty() ? ".mrc" : ext);
}

void run_restore(RestoreParams& p, const GlobalOptions& g) {
  const bool pair = !p.even.empty() || !p.odd.empty();
  if (pair && !p.in.empty()) throw ValueError("give either --in or --even/--odd, not both");
  if (pair && (p.even.empty() || p.odd.empty())) throw ValueError("--even needs --odd");
  if (!pair && p.in.empty()) throw ValueError("no input: give --in, or --even and --odd");
  if (p.norm != "input" && p.norm != "model") {
    throw ValueError("--norm: '" + p.norm + "' is not input or model");
  }
  std::vector<std::string> out_paths{p.out};
  if (pair && p.restore.save_halves) {
    out_paths.push_back(with_suffix(p.out, "_even"));
    out_paths.push_back(with_suffix(p.out, "_odd"));
  }
  for (const auto& o : out_paths) output_check_writable(o, p.overwrite);

  LoadedCheckpoint ck = checkpoint_load(p.model);
  const CheckpointInfo& info = ck.info;
  RestoreOptions ro = p.restore;
  ro.progress = !p.no_progress && !g.quiet;
  std::string trained_on = info.train_options.value("device", "cpu");
  ro.device = !p.device.empty() ? p.device
              : (trained_on.rfind("cuda", 0) == 0 && torch::cuda::is_available()) ? trained_on
                                                                                  : "cpu";
  if (ro.tile == 0) ro.tile = info.train_options.value("patch", int64_t(64)) + ro.overlap;

  MrcReadOptions rdo{p.permissive};
  std::vector<std::unique_ptr<MrcFile>> files;
  for (const auto& path : pair ? std::vector<std::string>{p.even, p.odd}
                               : std::vector<std::string>{p.in}) {
    files.push_back(std::make_unique<MrcFile>(path, rdo));
  }
  const auto shape = files[0]->shape();
  if (pair && files[1]->shape() != shape) {
    throw ShapeError("halves differ in shape: " + p.even + " and " + p.odd);
  }
  if (pair != ck.method->needs_halves()) {
    log_warn("model {} was trained on {}; restoring {}", ck.method->name(),
             ck.method->needs_halves() ? "half tomograms" : "one tomogram",
             pair ? "a pair of halves" : "one tomogram");
  }
  // Statistics: of this input (default) or of the first training tomogram.
  NormStats stats;
  if (p.norm == "model") {
    if (info.norm.empty()) throw FormatError(p.model + ": checkpoint holds no statistics");
    stats = info.norm.front();
  } else {
    NormMode mode = norm_mode_parse(info.norm_mode, p.model + ": norm_mode");
    if (pair) {
      auto b = norm_central_box(shape, info.norm_fraction);
      at::Tensor both = torch::stack({files[0]->read_box(b[0], b[1], b[2], b[3], b[4], b[5]),
                                      files[1]->read_box(b[0], b[1], b[2], b[3], b[4], b[5])});
      stats = norm_stats_of(both, mode, p.even + "+" + p.odd);
    } else {
      stats = norm_stats_compute(*files[0], mode, info.norm_fraction);
    }
  }
  log_info("restoring with {} (step {}), tiles {} overlap {} on {}; scale mean {:.5g} std {:.5g}",
           ck.method->name(), info.step, ro.tile, ro.overlap, ro.device, stats.mean, stats.std);

  std::vector<TileReader> readers;
  for (const auto& f : files) {
    MrcFile* fp = f.get();
    readers.push_back([fp, stats](int64_t z0, int64_t z1, int64_t y0, int64_t y1, int64_t x0,
                                  int64_t x1) {
      at::Tensor t = fp->read_box(z0, z1, y0, y1, x0, x1);
      check_finite(t, fp->path());
      return norm_apply(t, stats);
    });
  }
  MrcWriteOptions wo;
  wo.mode = p.mode;
  wo.overwrite = p.overwrite;
  wo.label = output_label(g);
  std::vector<std::unique_ptr<MrcSlabWriter>> writers;
  std::vector<SlabSink> sinks;
  for (const auto& o : out_paths) {
    writers.push_back(std::make_unique<MrcSlabWriter>(o, shape, files[0]->meta(), wo));
    MrcSlabWriter* w = writers.back().get();
    sinks.push_back([w, stats](int64_t z0, const at::Tensor& slab) {
      w->write_slab(z0, norm_invert(slab, stats));
    });
  }
  restore_stream(*ck.method, shape, readers, sinks, ro);
  for (auto& w : writers) w->commit();
  for (const auto& o : out_paths) log_info("wrote {}", o);
}

}  // namespace

void add_restore_command(CLI::App& root, GlobalOptions& g) {
  auto p = std::make_shared<RestoreParams>();
  CLI::App* cmd = root.add_subcommand(
      "restore", "Restore a tomogram (--in) or a pair of halves (--even/--odd) with a trained "
                 "model; tiled, streamed, written in the input's scale and header");
  cmd->add_option("--model", p->model, "Model file from `unwedge train` (.uwm)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--in", p->in, "Tomogram to restore, MRC");
  cmd->add_option("--even", p->even, "Even half, MRC (with --odd: the restored halves averaged)");
  cmd->add_option("--odd", p->odd, "Odd half, MRC");
  cmd->add_option("--out", p->out, "Restored tomogram to write, MRC")->required();
  cmd->add_flag("--save-halves", p->restore.save_halves,
                "With --even/--odd: also write OUT_even.mrc and OUT_odd.mrc (default: off)");
  cmd->add_option("--tile", p->restore.tile,
                  "Tile edge, voxels (0 = training patch + overlap), rounded up to the "
                  "network's size multiple")
      ->capture_default_str();
  cmd->add_option("--overlap", p->restore.overlap,
                  "Overlap of neighbouring tiles, voxels; tiles equal a whole-volume pass when "
                  "it covers the network's receptive field")
      ->capture_default_str();
  cmd->add_option("--batch", p->restore.batch, "Tiles per forward pass")->capture_default_str();
  cmd->add_option("--device", p->device,
                  "cpu | cuda | cuda:N (default: the training device when available, else cpu)");
  cmd->add_option("--norm", p->norm,
                  "Scale: input (robust statistics of this input, as in training) | model "
                  "(the first training tomogram's)")
      ->capture_default_str();
  cmd->add_option("--mode", p->mode, "MRC mode written: 2 (float32) or 12 (float16)")
      ->check(CLI::IsMember({2, 12}))
      ->capture_default_str();
  cmd->add_flag("--no-progress", p->no_progress, "No progress bar");
  add_overwrite_flag(*cmd, p->overwrite);
  add_permissive_flag(*cmd, p->permissive);
  cmd->callback([p, &g] { run_restore(*p, g); });
}

}  // namespace unwedge::cli
