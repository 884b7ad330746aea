// `unwedge eval-embed`: k-NN accuracy and linear probe (cross-validated) of embeddings against
// known classes, a PCA map as SVG, and the raw-voxel baseline (PCA of the boxes).
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cli_common.h"
#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/eval/embedding.h"
#include "unwedge/io/mrc.h"
#include "unwedge/model/normalize.h"

namespace unwedge::cli {

namespace {

struct EvalEmbedParams {
  std::string emb, labels, json, svg, raw, coords;
  int64_t box = 32;        ///< raw baseline box, voxels
  int64_t raw_dims = 64;   ///< PCA dimensions of the raw baseline
  int64_t k = 5;
  int64_t folds = 5;
  uint64_t seed = 0;
  bool overwrite = false;
};

struct Scores {
  double knn = 0, linear = 0;
};

Scores score(const at::Tensor& x, const at::Tensor& y, const EvalEmbedParams& p) {
  return {knn_cv_accuracy(x, y, p.k, p.folds, p.seed),
          linear_probe_cv_accuracy(x, y, p.folds, 200, 1e-3, p.seed)};
}

void run_eval_embed(const EvalEmbedParams& p) {
  for (const auto& o : {p.json, p.svg}) {
    if (!o.empty() && !p.overwrite && std::filesystem::exists(o)) {
      throw ExistsError("output '" + o + "' exists (use --overwrite)");
    }
  }
  ParticleTable lab = particle_table_read(p.labels);
  if (lab.labels.empty()) {
    throw FormatError(p.labels + ": no class column (CSV 'class' or STAR rlnClassNumber)");
  }
  std::vector<std::string> classes;
  at::Tensor y_all = labels_encode(lab.labels, &classes);
  nlohmann::json out = {{"labels", p.labels}, {"classes", classes}, {"k", p.k},
                        {"folds", p.folds}, {"chance", 0.0}};
  // chance: the majority class's share
  out["chance"] = torch::bincount(y_all).max().item<double>() / double(y_all.size(0));
  std::printf("%-12s %6s %8s %8s %8s\n", "embedding", "n", "dim", "knn", "linear");
  if (!p.emb.empty()) {
    EmbeddingTable e = embedding_csv_read(p.emb);
    for (int64_t id : e.ids) {
      if (id < 0 || id >= y_all.size(0)) {
        throw ValueError(p.emb + ": id " + std::to_string(id) + " is not a row of " + p.labels +
                         " (" + std::to_string(y_all.size(0)) + " rows)");
      }
    }
    auto y = y_all.index_select(0, torch::tensor(e.ids, torch::kLong));
    Scores s = score(e.x, y, p);
    std::printf("%-12s %6lld %8lld %8.3f %8.3f\n", "embedding", (long long)e.x.size(0),
                (long long)e.x.size(1), s.knn, s.linear);
    out["embedding"] = {{"file", p.emb}, {"n", e.x.size(0)}, {"dim", e.x.size(1)},
                        {"knn_accuracy", s.knn}, {"linear_probe_accuracy", s.linear}};
    if (!p.svg.empty()) {
      Pca pca = pca_fit(e.x, 2);
      write_text_file_atomic(
          p.svg, svg_scatter(pca.scores, y, classes, "PCA of " +
                             std::filesystem::path(p.emb).filename().string()), p.overwrite);
      log_info("wrote {}", p.svg);
    }
  }
  if (!p.raw.empty()) {
    if (p.coords.empty()) throw ValueError("--raw needs --coords (the particle table)");
    ParticleTable t = particle_table_read(p.coords);
    if (t.xyz.size() != lab.xyz.size()) {
      throw ValueError(p.coords + " has " + std::to_string(t.xyz.size()) + " rows, " + p.labels +
                       " has " + std::to_string(lab.xyz.size()));
    }
    Volume vol = MrcFile(p.raw).read();
    auto data = norm_apply(vol.data, norm_stats_compute(vol.data, NormMode::central, 0.5, p.raw));
    auto boxes = subtomo_extract(data, t, p.box, 0, int64_t(t.xyz.size()));
    auto flat = boxes.flatten(1).to(torch::kDouble);  // [N, box^3]
    auto x = pca_fit(flat, p.raw_dims).scores;        // [N, <= raw_dims]
    Scores s = score(x, y_all, p);
    std::printf("%-12s %6lld %8lld %8.3f %8.3f\n", "raw-voxels", (long long)x.size(0),
                (long long)x.size(1), s.knn, s.linear);
    out["raw_voxels"] = {{"file", p.raw}, {"box", p.box}, {"n", x.size(0)}, {"dim", x.size(1)},
                         {"knn_accuracy", s.knn}, {"linear_probe_accuracy", s.linear}};
  }
  if (p.emb.empty() && p.raw.empty()) throw ValueError("give --emb, or --raw with --coords");
  std::printf("classes %zu, chance (majority) %.3f\n", classes.size(),
              out["chance"].get<double>());
  if (!p.json.empty()) {
    write_text_file_atomic(p.json, out.dump(2) + "\n", p.overwrite);
    log_info("wrote {}", p.json);
  }
}

}  // namespace

void add_eval_embed_command(CLI::App& root, GlobalOptions&) {
  auto p = std::make_shared<EvalEmbedParams>();
  CLI::App* cmd = root.add_subcommand(
      "eval-embed", "k-NN accuracy and linear probe (cross-validated) of embeddings against "
                    "known classes, PCA map (SVG), raw-voxel baseline");
  cmd->add_option("--emb", p->emb, "Embedding CSV from 'unwedge embed'");
  cmd->add_option("--labels", p->labels, "Particle table with a class column (particles.csv)")
      ->required();
  cmd->add_option("--json", p->json, "Write the scores as JSON");
  cmd->add_option("--svg", p->svg, "Write the PCA map of the embeddings, coloured by class");
  cmd->add_option("--raw", p->raw, "Tomogram for the raw-voxel baseline (PCA of the boxes)");
  cmd->add_option("--coords", p->coords, "Particle table for --raw (same rows as --labels)");
  cmd->add_option("--box", p->box, "Raw baseline box edge, voxels")->capture_default_str();
  cmd->add_option("--raw-dims", p->raw_dims, "PCA dimensions of the raw baseline")
      ->capture_default_str();
  cmd->add_option("--k", p->k, "Neighbours of the k-NN classifier")->capture_default_str();
  cmd->add_option("--folds", p->folds, "Cross-validation folds")->capture_default_str();
  cmd->add_option("--seed", p->seed, "Seed of the fold assignment")->capture_default_str();
  add_overwrite_flag(*cmd, p->overwrite);
  cmd->callback([p, cmd] {
    run_eval_embed(*p);
    if (!p->json.empty() || !p->svg.empty()) {
      write_config_beside(*cmd, !p->json.empty() ? p->json : p->svg);
    }
  });
}

}  // namespace unwedge::cli
