// Evaluating embeddings of sub-tomograms against known classes: particle tables (CSV or STAR),
// box extraction, embedding CSV files, cross-validated k-NN accuracy and linear probe, PCA,
// and a 2D scatter map as SVG.
//
// The classes (from the simulator's particles.csv) are used only here, for evaluation; no
// method ever sees them.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace unwedge {

/// Particle positions in voxels (x, y, z as in the file; 0-based voxel indices) and, when the
/// file has one, a class name per particle.
struct ParticleTable {
  std::vector<std::array<double, 3>> xyz;  ///< voxels (x, y, z)
  std::vector<std::string> labels;         ///< empty when the file has no class column
};

/// Reads a particle table: CSV with a header naming x_vox, y_vox, z_vox (and optionally class),
/// or a STAR file with rlnCoordinateX/Y/Z (voxels; optional rlnClassNumber as the label).
/// Throws IoError for a missing file, FormatError naming the file and line otherwise.
ParticleTable particle_table_read(const std::string& path);

/// Boxes of edge `box` centred on particles [first, first + count) of `t` (centre voxel
/// round(c), box spans [round(c) - box/2, round(c) - box/2 + box)) cut from vol [Z, Y, X],
/// zero outside the volume: [count, 1, box, box, box].
at::Tensor subtomo_extract(const at::Tensor& vol, const ParticleTable& t, int64_t box,
                           int64_t first, int64_t count);

/// The particles' size, measured from the data: the mean of `probe`-voxel boxes around every
/// particle, its spherically averaged profile about the centre, the background (the profile's
/// outer quarter) and the extent radius: the first radius where the profile has fallen to 10 %
/// of the centre's contrast above the background (linear between shells). The mean of many
/// particles of several sizes is peaked at the centre, so its half-maximum radius says much less
/// than their size (2.2 voxels on `standard`, whose median particle radius is 6.9); at 10 % it
/// measured 5.3 on every `standard` seed tried (bench/RESULTS.md, "As a user runs them"). A
/// profile that stays above 10 % up to the background shells gives the radius of their start.
struct ParticleSize {
  double radius = 0;    ///< extent radius, voxels
  double contrast = 0;  ///< centre value - background (sign: the particles' contrast)
  int64_t box = 0;      ///< the box rule applied to `radius`
};
/// The default embedding box: the multiple of `multiple` nearest to 3 x the extent radius (the
/// particle and a margin of half its size; most of a bigger box is neighbours and ice),
/// clamped to [2 * multiple, probe]. Throws ValueError for an empty table or a mean with no
/// contrast at the centre.
ParticleSize particle_size_measure(const at::Tensor& vol, const ParticleTable& t,
                                   int64_t probe = 48, int64_t multiple = 8);

/// Embedding file: header "id,e0,e1,...", one row per particle, id = 0-based row of the
/// particle table the embeddings came from.
void embedding_csv_write(const std::string& path, const std::vector<int64_t>& ids,
                         const at::Tensor& emb, bool overwrite);
struct EmbeddingTable {
  std::vector<int64_t> ids;
  at::Tensor x;  ///< [N, D] float64
};
EmbeddingTable embedding_csv_read(const std::string& path);

/// Class names -> indices 0..C-1 in order of first appearance (`classes` receives the names).
at::Tensor labels_encode(const std::vector<std::string>& names, std::vector<std::string>* classes);

/// k-nearest-neighbour accuracy under `folds`-fold cross-validation (folds from a permutation
/// seeded by `seed`): features standardised per dimension, Euclidean distance, majority vote
/// (ties go to the class of the nearer neighbours). x [N, D], y [N] int64.
double knn_cv_accuracy(const at::Tensor& x, const at::Tensor& y, int64_t k = 5,
                       int64_t folds = 5, uint64_t seed = 0);

/// Linear probe: multinomial logistic regression (L2 weight `l2`) fitted by LBFGS for `steps`
/// iterations on each training fold (standardised with that fold's statistics), accuracy on
/// the held-out folds.
double linear_probe_cv_accuracy(const at::Tensor& x, const at::Tensor& y, int64_t folds = 5,
                                int64_t steps = 200, double l2 = 1e-3, uint64_t seed = 0);

/// Principal components of x [N, D] (float64): scores [N, k] = (x - mean) components^T,
/// components [k, D] (unit rows; sign fixed so each row's largest-magnitude entry is positive),
/// explained variances [k] (unbiased, N - 1).
struct Pca {
  at::Tensor scores, components, mean, explained;
};
Pca pca_fit(const at::Tensor& x, int64_t k);

/// A scatter plot of xy [N, 2] coloured by class y [N] (names in `classes`) as an <svg>
/// element with a legend.
std::string svg_scatter(const at::Tensor& xy, const at::Tensor& y,
                        const std::vector<std::string>& classes, const std::string& title);

}  // namespace unwedge
