// `unwedge embed`: one embedding vector per particle from a model that embeds (mae, contrastive).
#include <algorithm>
#include <filesystem>

#include <torch/torch.h>

#include "cli_common.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/eval/embedding.h"
#include "unwedge/io/mrc.h"
#include "unwedge/methods/embed.h"
#include "unwedge/model/model.h"

namespace unwedge::cli {

namespace {

struct EmbedParams {
  std::string model, in, coords, out;
  int64_t box = 0;        ///< box edge, voxels; 0: from the particles' measured size
  int64_t batch = 16;     ///< boxes per forward pass
  std::string device = "cpu";
  std::string pool = "auto";  ///< mae: mean | concat of the patch tokens; auto: mae concat
  bool flips = true;          ///< average over the flips that keep the wedge
  bool overwrite = false;
  bool permissive = false;
};

void run_embed(const EmbedParams& p) {
  if (p.box != 0 && p.box < 4) {
    throw ValueError("--box " + std::to_string(p.box) + " is not >= 4 (or 0: auto)");
  }
  if (p.batch < 1) throw ValueError("--batch " + std::to_string(p.batch) + " is not >= 1");
  if (!p.overwrite && std::filesystem::exists(p.out)) {
    throw ExistsError("output '" + p.out + "' exists (use --overwrite)");
  }
  LoadedCheckpoint ck = checkpoint_load(p.model);
  Embedder& emb = method_embedder(*ck.method);
  const std::string pool =
      p.pool != "auto" ? p.pool : (ck.method->name() == "mae" ? "concat" : "mean");
  emb.set_pool(pool);
  ParticleTable table = particle_table_read(p.coords);
  MrcFile file(p.in, MrcReadOptions{p.permissive});
  Volume vol = file.read();
  // The checkpoint's statistics when this tomogram is one it was trained on; otherwise the
  // same robust standardisation (the checkpoint's mode and central fraction) of this tomogram.
  const NormStats stats = model_norm_stats(ck.info, NormSource::matching, {&file}, p.model);
  log_info("normalising {} (mean {:.5g}, std {:.5g}; the checkpoint's statistics when it was "
           "trained on it)", p.in, stats.mean, stats.std);
  const torch::Device device(p.device);
  ck.method->to(device);
  ck.method->train(false);
  auto data = norm_apply(vol.data, stats);
  const int64_t n = int64_t(table.xyz.size());
  int64_t box = p.box;
  if (box == 0) {
    const int64_t probe = std::min<int64_t>({48, data.size(0), data.size(1), data.size(2)});
    ParticleSize size;
    try {
      size = particle_size_measure(data, table, probe);
    } catch (const ValueError& e) {
      log_warn("{}: {}; box 32 (--box to choose)", p.coords, e.what());
      size.box = 32;
    }
    box = size.box;
    if (size.radius > 0) {
      log_info("box {} (auto: 3 x the particles' radius {:.1f} voxels, where the mean of the {} "
               "boxes falls to 10 % of its centre's contrast; a multiple of 8, at least 16; "
               "--box to choose)", box, size.radius, n);
    }
  }

  std::vector<torch::Tensor> parts;
  for (int64_t first = 0; first < n; first += p.batch) {
    const int64_t count = std::min(p.batch, n - first);
    auto boxes = subtomo_extract(data, table, box, first, count).to(device);
    parts.push_back(embed_boxes(emb, boxes, p.flips).to(torch::kCPU));  // [count, D]
  }
  std::vector<int64_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = i;
  const torch::Tensor all = torch::cat(parts, 0);  // [n, D]
  embedding_csv_write(p.out, ids, all, p.overwrite);
  log_info("wrote {} embeddings of dimension {} ({} model, box {}, pool {}{}) to {}", n,
           all.size(1), ck.method->name(), box, pool,
           p.flips ? ", mean over 4 wedge-keeping flips" : "", p.out);
}

}  // namespace

void add_embed_command(CLI::App& root, GlobalOptions&) {
  auto p = std::make_shared<EmbedParams>();
  CLI::App* cmd = root.add_subcommand(
      "embed", "Embed particles with a model that embeds (mae, contrastive): one vector per row");
  cmd->add_option("--model", p->model, "Model file (.uwm) of mae or contrastive")->required();
  cmd->add_option("--in", p->in, "Tomogram, MRC")->required();
  cmd->add_option("--coords", p->coords,
                  "Particle table: CSV with x_vox,y_vox,z_vox (particles.csv) or STAR with "
                  "rlnCoordinateX/Y/Z in voxels")
      ->required();
  cmd->add_option("--out", p->out, "Embedding CSV (id,e0,e1,...; id = row of --coords)")
      ->required();
  cmd->add_option("--box", p->box,
                  "Box edge around each particle, voxels; 0: 3 x the particles' radius measured "
                  "on this tomogram (where the mean of the boxes falls to 10 % of its centre's "
                  "contrast), a multiple of 8, at least 16")
      ->capture_default_str();
  cmd->add_option("--batch", p->batch, "Boxes per forward pass")->capture_default_str();
  cmd->add_option("--device", p->device, "cpu | cuda | cuda:N")->capture_default_str();
  cmd->add_option("--pool", p->pool,
                  "mae: one vector from the patch tokens by their mean, or by concatenating them "
                  "in position order (width tokens x dim; keeps where each feature is); "
                  "contrastive: mean only; auto: concat for mae, mean otherwise")
      ->check(CLI::IsMember({"auto", "mean", "concat"}))
      ->capture_default_str();
  cmd->add_option("--flips", p->flips,
                  "Average each embedding over the box and its flips that keep the wedge (Y; "
                  "Z with X; all three)")
      ->capture_default_str();
  add_overwrite_flag(*cmd, p->overwrite);
  add_permissive_flag(*cmd, p->permissive);
  cmd->callback([p, cmd] {
    run_embed(*p);
    write_config_beside(*cmd, p->out);
  });
}

}  // namespace unwedge::cli
