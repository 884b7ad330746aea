#include "unwedge/core/threads.h"

#include <ATen/Parallel.h>

#include <thread>

#include "unwedge/core/error.h"

namespace unwedge {

int threads_set(int n) {
  if (n < 0) throw ValueError("--threads: " + std::to_string(n) + " is negative (0 means all cores)");
  if (n == 0) n = int(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
  return n;
}

}  // namespace unwedge
