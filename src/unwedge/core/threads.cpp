#include "unwedge/core/threads.h"

#include <dlfcn.h>

#include <ATen/Parallel.h>

#include <cstdlib>
#include <thread>

#include "unwedge/core/error.h"

namespace unwedge {

int blas_threads_set(int n) {
  // OpenBLAS (Debian's pthread build, reached through the libblas.so.3 alternative) keeps its own
  // pool that busy-waits: inside LibTorch's parallel loops it oversubscribes the cores. Measured on
  // the 2-core machine, n2n tiny 30 steps: --threads 2 took 6.9 s with OpenBLAS's 2 threads and
  // 5.0 s with 1; --threads 1 burnt 16 CPU-s (7 s of it spinning in the kernel) against 8 CPU-s.
  // Looked up at run time so that builds against another BLAS need nothing.
  using SetFn = void (*)(int);
  auto fn = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (fn == nullptr) return 0;
  fn(n);
  return n;
}

int threads_set(int n) {
  if (n < 0) throw ValueError("--threads: " + std::to_string(n) + " is negative (0 means all cores)");
  if (n == 0) n = int(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
  if (std::getenv("OPENBLAS_NUM_THREADS") == nullptr) blas_threads_set(1);  // the user's setting wins
  return n;
}

}  // namespace unwedge
