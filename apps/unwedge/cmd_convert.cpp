// `unwedge convert --in A.mrc --out B.mrc`: change the mode and/or crop a box, keeping voxel
// size, origin and labels. Streams slab by slab, so files larger than memory convert too.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "cli_common.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/core/progress.h"
#include "unwedge/io/mrc.h"

namespace unwedge::cli {

namespace {

struct ConvertParams {
  std::string in, out;
  int mode = 2;                  ///< output mode: 2 float32, 12 float16
  std::vector<int64_t> box;      ///< z0 z1 y0 y1 x0 x1 (voxels, half-open); empty = whole volume
  bool keep_ext_header = false;  ///< copy the input's extended header
  bool permissive = false;
  bool overwrite = false;
};

void convert_run(const ConvertParams& p, const GlobalOptions& g) {
  MrcFile in(p.in, MrcReadOptions{p.permissive});
  auto shape = in.shape();  // [Z, Y, X]
  std::array<int64_t, 6> b{0, shape[0], 0, shape[1], 0, shape[2]};
  if (!p.box.empty()) {
    if (p.box.size() != 6) {
      throw ValueError("--box needs 6 values z0 z1 y0 y1 x0 x1, got " +
                       std::to_string(p.box.size()));
    }
    for (int a = 0; a < 3; ++a) {
      int64_t lo = p.box[2 * a], hi = p.box[2 * a + 1];
      if (lo < 0 || hi > shape[a] || lo >= hi) {
        throw ValueError(std::string("--box ") + "zyx"[a] + " range [" + std::to_string(lo) +
                         ", " + std::to_string(hi) + ") is empty or outside [0, " +
                         std::to_string(shape[a]) + ") of " + p.in);
      }
      b[2 * a] = lo;
      b[2 * a + 1] = hi;
    }
  }
  std::array<int64_t, 3> out_shape{b[1] - b[0], b[3] - b[2], b[5] - b[4]};
  VolumeMeta meta = in.meta();
  // The crop's first voxel sits at the input's start + box offset (nstart is x, y, z).
  meta.nstart[0] += int32_t(b[4]);
  meta.nstart[1] += int32_t(b[2]);
  meta.nstart[2] += int32_t(b[0]);
  MrcWriteOptions wo;
  wo.mode = p.mode;
  wo.overwrite = p.overwrite;
  wo.keep_ext_header = p.keep_ext_header;
  wo.label = output_label(g);
  MrcSlabWriter w(p.out, out_shape, meta, wo);
  const int64_t plane = out_shape[1] * out_shape[2];
  const int64_t step = std::max<int64_t>(1, (int64_t(1) << 24) / plane);  // ~64 MiB slabs
  Progress bar("convert", out_shape[0], "section", !g.quiet);
  int64_t nan = 0, inf = 0;
  for (int64_t z = 0; z < out_shape[0]; z += step) {
    int64_t z1 = std::min(z + step, out_shape[0]);
    at::Tensor slab = in.read_box(b[0] + z, b[0] + z1, b[2], b[3], b[4], b[5]);  // [z, y, x]
    int64_t n_nan = torch::isnan(slab).sum().item<int64_t>();
    int64_t n_inf = torch::isinf(slab).sum().item<int64_t>();
    nan += n_nan;
    inf += n_inf;
    if (n_nan + n_inf == 0 && nan + inf == 0) w.write_slab(z, slab);
    bar.update(z1);
  }
  bar.finish();
  if (nan + inf > 0) {
    throw FormatError(p.in + ": data: " + std::to_string(nan) + " NaN and " +
                      std::to_string(inf) + " Inf values (nothing written)");
  }
  w.commit();
  log_info("wrote {} ({} x {} x {} voxels, mode {})", p.out, out_shape[2], out_shape[1],
           out_shape[0], p.mode);
}

}  // namespace

void add_convert_command(CLI::App& root, GlobalOptions& g) {
  auto p = std::make_shared<ConvertParams>();
  CLI::App* cmd = root.add_subcommand(
      "convert", "Convert an MRC file to mode 2 (float32) or 12 (float16) and/or crop a box, "
                 "keeping voxel size, origin and labels");
  cmd->add_option("--in", p->in, "Input MRC file (modes 0, 1, 2, 6, 12)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", p->out, "Output MRC file")->required();
  cmd->add_option("--mode", p->mode, "Output mode: 2 (float32) or 12 (float16)")
      ->check(CLI::IsMember({2, 12}))
      ->capture_default_str();
  cmd->add_option("--box", p->box,
                  "Crop box z0 z1 y0 y1 x0 x1 in voxels, half-open [z0, z1) (default: whole "
                  "volume)")
      ->expected(6);
  cmd->add_flag("--keep-ext-header", p->keep_ext_header,
                "Copy the input's extended header (raw bytes) into the output (default: drop it)");
  add_permissive_flag(*cmd, p->permissive);
  add_overwrite_flag(*cmd, p->overwrite);
  cmd->callback([p, cmd, &g] {
    convert_run(*p, g);
    write_config_beside(*cmd, p->out);
  });
}

}  // namespace unwedge::cli
