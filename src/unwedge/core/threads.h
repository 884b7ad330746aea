// One thread pool: LibTorch's intra-op threads, set once from --threads.
#pragma once

namespace unwedge {

/// Sets LibTorch's intra-op threads; 0 means all cores. Returns the count in effect. OpenBLAS's
/// own pool is set to 1 thread (LibTorch parallelises around it) unless OPENBLAS_NUM_THREADS is set.
int threads_set(int n);

/// Sets OpenBLAS's thread count when OpenBLAS is loaded; returns n, or 0 when it is not.
int blas_threads_set(int n);

}  // namespace unwedge
