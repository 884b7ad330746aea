// n2n: Noise2Noise between half tomograms (cryoCARE-style).
#pragma once
#include "unwedge/methods/method.h"

namespace unwedge {

/// Registry entry of `n2n`. Options (besides the network's, see unet_method_options):
///   swap     (true)    swap input and target per sample at random
///   augment  ("wedge") wedge | rot90y | none (see AugmentMode)
MethodInfo n2n_method_info();

}  // namespace unwedge
