// Embedder: the interface of methods that also give a representation of a sub-tomogram
// (mae, contrastive). Code outside the method finds it on any Method with method_embedder():
//
//   LoadedCheckpoint ck = checkpoint_load("model.uwm");
//   Embedder& e = method_embedder(*ck.method);   // ValueError when the method does not embed
//   torch::Tensor h = e.embed(boxes);            // [B, 1, b, b, b] -> [B, e.embed_dim()]
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/methods/method.h"
#include "unwedge/ops/rotate.h"

namespace unwedge {

class Embedder {
 public:
  virtual ~Embedder() = default;
  /// Representation of each sub-tomogram sub [B, 1, Z, Y, X] -> [B, embed_dim()], computed
  /// without gradients in whatever mode (train/eval) is set.
  virtual torch::Tensor embed(const torch::Tensor& sub) = 0;
  /// Width of the representation (for pool "concat": per token; the vector has one per token).
  virtual int64_t embed_dim() const = 0;
  /// How a method with several feature vectors per sub-tomogram (mae: one per patch token)
  /// makes one: "mean" (the default) or "concat" (the tokens in position order, so the vector
  /// keeps where in the box each feature is). Methods with one vector accept "mean" only.
  virtual void set_pool(const std::string& pool) {
    if (pool != "mean") {
      throw ValueError("--pool " + pool + ": this method gives one vector per sub-tomogram "
                       "(pool: mean only)");
    }
  }
};

/// e.embed(boxes), averaged over the boxes and their wedge-keeping flips (ops/rotate.h) when
/// `flips`: the result is the same for a particle and for any of its flips (what `unwedge embed`
/// writes).
inline torch::Tensor embed_boxes(Embedder& e, const torch::Tensor& boxes, bool flips) {
  if (!flips) return e.embed(boxes);
  torch::Tensor sum;
  for (const auto& dims : wedge_keeping_flips()) {
    auto f = e.embed(flip_dims(boxes, dims));
    sum = sum.defined() ? sum + f : f;
  }
  return sum / double(wedge_keeping_flips().size());
}

/// The Embedder of `m`; throws ValueError naming the method when it has none.
inline Embedder& method_embedder(Method& m) {
  auto* e = dynamic_cast<Embedder*>(&m);
  if (e == nullptr) {
    throw ValueError("method " + m.name() + " gives no embedding (methods that embed: " +
                     method_registry().names_with(&MethodCapabilities::embedding) + ")");
  }
  return *e;
}

}  // namespace unwedge
