// Tiled posterior sampling over a whole tomogram (`unwedge sample`): every tile is handed to a
// PosteriorMethod's draw() with the same options (so draw k of every tile uses seed + k), and
// per voxel the weighted mean, the weighted spread and a credible interval are blended across
// overlapping tiles with the restoration windows (infer/tiling.h). Streamed slab by slab like
// restoration: peak memory grows with n draws x one tile plus one slab of tiles (tile_z x Y x X)
// per output, never with n x the tomogram (saved samples stream to their own sinks).
//
// Per tile t (self-normalised weights w_k, draws x_k):
//   mean_t = sum_k w_k x_k,   var_t = G_σ * sum_k w_k (x_k - mean_t)^2 + β S_t,
//   S_t = G_σ * (mean_t − G_4 * mean_t)^2   (structure_power: the local power of fine detail),
//   bounds_t = mean_t -/+ sqrt(d^2 + z^2 β S_t), d the distance from mean_t to the weighted
//              quantile (1 -/+ interval) / 2 of the draws (or mean_t -/+ z sd_t).
// where G_σ * averages over a Gaussian neighbourhood of std_pool voxels (renormalised at the
// tile's edges): 16 draws estimate one voxel's variance to ±35 %, and errors vary smoothly, so
// pooling a few voxels' worth makes the std rank the errors better (bench/RESULTS.md). β is
// std_structure: a restoration errs most where it asserts detail, where the draws (which
// agree on what the network is sure of) under-state it; with β = 1 the std ranks the errors,
// in the wedge band above all, clearly better (bench/RESULTS.md, "Where the restoration has
// structure"). β S_t is an error model, not a spread of the draws: β = 0 gives the spread alone.
// Across tiles with windows a_t (sum_t a_t = 1 at every voxel) the blended posterior is the
// mixture of the tiles' posteriors: mean = sum_t a_t mean_t and
//   var = sum_t a_t var_t + (sum_t a_t mean_t^2 - mean^2)   (law of total variance);
// the bounds are blended like the mean. Draw k saved with --save-samples is draw k of every
// tile blended with the same windows (unweighted: for importance-weighted methods the samples
// are the candidates, and the weights live in the moments).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "unwedge/dist/distributed.h"
#include "unwedge/infer/restore.h"
#include "unwedge/methods/method.h"
#include "unwedge/methods/posterior.h"

namespace unwedge {

/// Options of tiled sampling (one source of defaults for the CLI).
struct SampleOptions {
  RestoreOptions tiling;        ///< tile, tile_z, overlap, batch, device, and the
                                ///< slab [z_begin, z_end) of sections to produce (a rank's share)
  PosteriorOptions posterior;   ///< n, seed, gamma, Langevin settings
  MethodWedge wedge;            ///< tilt geometry of the input (the model's by default)
  double interval = 0.9;        ///< credible interval mass in (0, 1)
  std::string bounds = "quantile";  ///< quantile (weighted quantiles of the draws) | gaussian
  int64_t xz_planes = 6;        ///< draws whose central XZ plane (y = Y/2) is kept (flip-book)
  double std_scale = 1.0;       ///< factor on std (> 0; a data-only calibration's, infer/calibrate.h)
  double bounds_scale = 1.0;    ///< factor on the bounds' distances from the mean (> 0; the same)
  double std_pool = 1.5;        ///< σ (voxels) of the Gaussian neighbourhood over which each
                                ///< tile's per-voxel variance is averaged before the square
                                ///< root (eval/metrics.h gaussian_average; 0: per voxel)
  double std_structure = 1.0;   ///< β >= 0: each tile's variance gets β times the local power of
                                ///< its mean's fine structure (eval/metrics.h structure_power,
                                ///< pooled over std_pool), and the quantile bounds its z-width
                                ///< in quadrature; 0: the draws' spread alone
};

/// Where the outputs go (normalised scale; each sink gets every section once, ascending z).
struct SampleSinks {
  SlabSink mean, std, lower, upper;  ///< required
  std::vector<SlabSink> samples;     ///< empty, or one per draw (posterior.n)
};

/// What the run measured.
struct SampleStats {
  int64_t tiles = 0;           ///< tiles drawn
  int64_t draws = 0;           ///< draws per tile
  double ess_min = 0;          ///< smallest per-tile effective sample size 1 / sum w_k^2
  double ess_mean = 0;         ///< mean over tiles
  double acceptance = -1;      ///< mean MALA acceptance over tiles (-1: not reported)
  double seconds = 0;          ///< wall-clock seconds of the whole pass
  std::vector<at::Tensor> xz;  ///< central XZ planes [Z, X] of the first draws (normalised;
                               ///< zero outside the slab)
};

/// z of the central `interval` of a standard normal: Phi^-1((1 + interval) / 2).
double sample_interval_z(double interval);

/// Weighted quantile q in [0, 1] along dim 0 of values [n, ...] with weights [n] (> 0, any
/// sum): the sorted values sit at the mid-points of their cumulative weights
/// (P_i = C_i - w_i / 2, normalised), interpolated linearly and held constant beyond the ends.
/// With equal weights this is the (i - 1/2) / n ("Hazen") quantile.
at::Tensor weighted_quantile(const at::Tensor& values, const at::Tensor& weights, double q);

/// Draws from `method` (with posterior.uq = model it must also be a PosteriorMethod, else
/// ValueError naming it; with bootstrap, any method: the equivariant bootstrap of its
/// restoration, methods/bootstrap.h) over a volume of `shape` [Z, Y, X]. One reader: draws of
/// that volume. Two readers (even, odd):
/// the first ceil(n/2) draws come from the even half (seeds seed, seed + 1, ...), the rest from
/// the odd half (seeds continue), each half's weights self-normalised and pooled in proportion.
/// Only sections [tiling.z_begin, tiling.z_end) are produced (the tile rows touching them are
/// drawn whole), so slabs drawn by different ranks equal the same sections of a whole run.
/// Tiles done are reported to `progress`.
SampleStats sample_stream(Method& method, const std::array<int64_t, 3>& shape,
                          const std::vector<TileReader>& inputs, const SampleSinks& sinks,
                          const SampleOptions& opts, const ProgressFn& progress = {});

/// The statistics of one run split over ranks, from each rank's (one entry per rank, in rank
/// order): tiles summed; ESS minimum the smallest of the ranks that drew, ESS mean and MALA
/// acceptance averaged weighted by tiles (acceptance over the ranks that report one); seconds
/// the slowest rank's; XZ planes summed (each rank's is zero outside its slab); draws the first
/// rank's. One entry is returned as it is.
SampleStats sample_stats_merge(const std::vector<SampleStats>& per_rank);

/// Every rank's statistics in rank order (collective: every rank calls it; XZ planes of equal
/// shapes on every rank). One rank: {stats}.
std::vector<SampleStats> sample_stats_gather(const SampleStats& stats, Distributed& dist);

/// In-memory convenience over a normalised volume [Z, Y, X] (single input).
struct SampleVolumes {
  at::Tensor mean, std, lower, upper;  ///< [Z, Y, X]
  std::vector<at::Tensor> samples;     ///< [Z, Y, X] each, when keep_samples
  SampleStats stats;
};
SampleVolumes sample_volume(Method& method, const at::Tensor& vol, const SampleOptions& opts,
                            bool keep_samples = false, const ProgressFn& progress = {});

}  // namespace unwedge
