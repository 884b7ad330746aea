// One thread pool: LibTorch's intra-op threads, set once from --threads.
#pragma once

namespace unwedge {

/// Sets LibTorch's intra-op threads; 0 means all cores. Returns the count in effect.
int threads_set(int n);

}  // namespace unwedge
