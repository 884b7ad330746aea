// Tiled restoration: tiles read on demand, restored in batches on the model's device, blended
// with a separable window and written slab by slab, so peak memory grows with the tile and one
// slab of tiles (tile x Y x X), not with the tomogram.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "unwedge/core/progress.h"
#include "unwedge/infer/tiling.h"
#include "unwedge/methods/method.h"
#include "unwedge/model/normalize.h"

namespace unwedge {

class MrcFile;
class MrcSlabWriter;

/// Options of restoration (one source of defaults for the CLI).
struct RestoreOptions {
  int64_t tile = 96;       ///< tile edge, voxels (rounded up to the network's size multiple)
  int64_t tile_z = 0;      ///< tile depth along Z, voxels (0: tile). Networks whose receptive
                           ///< field along Z is 1 (planar) get no overlap along Z.
  int64_t overlap = 32;    ///< overlap of neighbouring tiles, voxels
  int64_t batch = 1;       ///< tiles per forward pass
  std::string device = "cpu";   ///< auto | cpu | cuda | cuda:N
  std::string precision = "auto";  ///< auto | fp32 | bf16 (autocast around the network; output
                                   ///< float); auto: precision_resolve (bf16 on avx512_bf16 CPUs)
  int64_t z_begin = 0;     ///< produce only output sections [z_begin, z_end) (a rank's slab);
  int64_t z_end = -1;      ///< -1: to the end. Tiles touching the slab are restored whole, so
                           ///< the slab equals the same sections of a full restoration.
  bool save_halves = false;  ///< pairs: also write each restored half
  int64_t flips = 4;  ///< restorations averaged: of each tile and of its first `flips` - 1 flips
                      ///< that keep the wedge (1, 2 or 4; ops/rotate.h wedge_keeping_flips),
                      ///< each flipped back. 4: four passes, a quarter of the variance the
                      ///< network's orientation adds (bench/RESULTS.md, "Flip averaging at restore").
};

/// Reads the box [z0, z1) x [y0, y1) x [x0, x1) of an input (already normalised), float.
using TileReader = std::function<at::Tensor(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t)>;
/// Receives sections [z0, z0 + slab.size(0)) of an output (normalised scale), float [z, Y, X].
using SlabSink = std::function<void(int64_t, const at::Tensor&)>;

/// Reads boxes of `file` normalised with `stats` (each box checked for NaN/Inf, naming the
/// file). `file` must outlive the reader.
TileReader tile_reader_normalised(const MrcFile& file, const NormStats& stats);
/// Writes slabs to `writer` back in the input's scale (norm_invert with `stats`). `writer` must
/// outlive the sink.
SlabSink slab_sink_to_input_scale(MrcSlabWriter& writer, const NormStats& stats);

/// Restores a volume of `shape` [Z, Y, X]. One reader: outputs[0] = restore(). Two readers
/// (even, odd): outputs[0] = restore_pair(); with save_halves, outputs = {mean of the restored
/// halves, restored even, restored odd}. Each output's slabs arrive in ascending z, exactly once,
/// covering [z_begin, z_end) only. Tiles done are reported to `progress`.
void restore_stream(Method& method, const std::array<int64_t, 3>& shape,
                    const std::vector<TileReader>& inputs, const std::vector<SlabSink>& outputs,
                    const RestoreOptions& opts, const ProgressFn& progress = {});

/// In-memory convenience: restores a normalised volume [Z, Y, X] (single input).
at::Tensor restore_volume(Method& method, const at::Tensor& vol, const RestoreOptions& opts,
                          const ProgressFn& progress = {});

/// Runs `compute` on consecutive ranges [j0, j1) of [0, n), at most `batch` items each, and hands
/// each result to `consume`. When `compute` runs out of device memory (c10::OutOfMemoryError) the
/// range is halved and retried (`on_shrink` is told the old and the new size; the following
/// ranges keep the new one); out of memory with one item throws Error naming `what` ("one tile
/// of 96^3 on cuda:0"). `consume` is never retried. Returns the batch the last range ran with.
/// restore_stream uses it, so a --batch too large for the device falls back instead of failing.
int64_t batches_shrinking_on_oom(int64_t n, int64_t batch,
                                 const std::function<std::vector<at::Tensor>(int64_t, int64_t)>& compute,
                                 const std::function<void(int64_t, int64_t, std::vector<at::Tensor>&)>& consume,
                                 const std::function<void(int64_t, int64_t)>& on_shrink,
                                 const std::string& what);

/// The tile plan restore_stream uses for `method` and `shape`.
TilePlan restore_plan(const Method& method, const std::array<int64_t, 3>& shape,
                      const RestoreOptions& opts);

}  // namespace unwedge
