// bench_io: MRC write/read throughput against a plain sequential copy of the same file on the
// same disk, and the CPU time of random 64^3 block reads. Prints one JSON object.
//
// usage: bench_io [--dir DIR (default: current folder)] [--nx 512 --ny 512 --nz 256]
//                 [--reps 3] [--boxes 200] [--box 64]
// Files are written without fsync and read back while in the page cache (dropping caches needs
// root): all three throughputs are memory-to-page-cache figures, compared like with like; the
// dirty pages are flushed (sync, untimed) before every timed step.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/io/mrc.h"

namespace fs = std::filesystem;
using namespace unwedge;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// Plain sequential copy with an 8 MiB buffer (the baseline a disk and page cache allow).
void plain_copy(const std::string& src, const std::string& dst) {
  int in = ::open(src.c_str(), O_RDONLY);
  int out = ::open(dst.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (in < 0 || out < 0) throw IoError("bench_io: cannot open " + src + " or " + dst);
  std::vector<char> buf(size_t(8) << 20);
  for (;;) {
    ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0) throw IoError("bench_io: read failed");
    if (n == 0) break;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::write(out, buf.data() + done, size_t(n - done));
      if (w <= 0) throw IoError("bench_io: write failed");
      done += w;
    }
  }
  ::close(in);
  ::close(out);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = fs::current_path().string();
  int64_t nx = 512, ny = 512, nz = 256, reps = 3, boxes = 200, box = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--dir") dir = v;
    else if (k == "--nx") nx = std::stoll(v);
    else if (k == "--ny") ny = std::stoll(v);
    else if (k == "--nz") nz = std::stoll(v);
    else if (k == "--reps") reps = std::stoll(v);
    else if (k == "--boxes") boxes = std::stoll(v);
    else if (k == "--box") box = std::stoll(v);
    else {
      std::fprintf(stderr, "bench_io: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  try {
    fs::path work = fs::path(dir) / ("bench_io_tmp_" + std::to_string(::getpid()));
    fs::create_directories(work);
    const std::string a = (work / "a.mrc").string(), b = (work / "b.mrc").string(),
                      c = (work / "copy.mrc").string();
    torch::manual_seed(0);
    Volume v;
    v.data = torch::randn({nz, ny, nx});  // [Z, Y, X]
    v.meta.voxel_size = {10.0, 10.0, 10.0};
    const double mb = double(nx * ny * nz * 4 + 1024) / 1e6;
    MrcWriteOptions wo;
    wo.overwrite = true;
    wo.label = "bench_io";
    std::vector<double> t_write, t_read, t_copy;
    mrc_write(a, v, wo);  // warm-up: the page cache holds a's blocks from here on
    // sync() (untimed) before each timed step: otherwise a step pays for the previous step's
    // dirty pages being flushed (the kernel throttles writers), which favours whoever goes after
    // a read.
    for (int64_t r = 0; r < reps; ++r) {
      // A fresh name each time: renaming over an existing file makes ext4 (auto_da_alloc) flush
      // the new data to disk first, which the plain copy (written in place) would not pay.
      fs::remove(b);
      ::sync();
      double t0 = now_s();
      mrc_write(b, v, wo);
      t_write.push_back(now_s() - t0);
      ::sync();
      t0 = now_s();
      Volume back = mrc_read(a);
      t_read.push_back(now_s() - t0);
      if (r == 0 && !torch::equal(back.data, v.data)) throw Error("bench_io: read-back differs");
      ::sync();
      t0 = now_s();
      plain_copy(a, c);
      t_copy.push_back(now_s() - t0);
    }
    MrcFile f(a);
    std::mt19937 rng(1);
    double cpu0 = cpu_s(), wall0 = now_s();
    double checksum = 0;
    for (int64_t i = 0; i < boxes; ++i) {
      int64_t z = rng() % (nz - box + 1), y = rng() % (ny - box + 1), x = rng() % (nx - box + 1);
      at::Tensor t = f.read_box(z, z + box, y, y + box, x, x + box);  // [box, box, box]
      checksum += t.data_ptr<float>()[0];
    }
    double box_cpu_ms = 1e3 * (cpu_s() - cpu0) / double(boxes);
    double box_wall_ms = 1e3 * (now_s() - wall0) / double(boxes);
    fs::remove_all(work);
    const double w = mb / median(t_write), rd = mb / median(t_read), cp = mb / median(t_copy);
    nlohmann::json j = {
        {"bench", "io"},
        {"shape_zyx", {nz, ny, nx}},
        {"file_mb", mb},
        {"dir", dir},
        {"reps", reps},
        {"threads", at::get_num_threads()},
        {"write_mb_s", w},
        {"read_mb_s", rd},
        {"copy_mb_s", cp},
        {"write_vs_copy", w / cp},
        {"read_vs_copy", rd / cp},
        {"box", box},
        {"boxes", boxes},
        {"box_read_cpu_ms", box_cpu_ms},
        {"box_read_wall_ms", box_wall_ms},
        {"note", "page-cache figures (no fsync, caches not dropped); median of reps"},
        {"checksum", checksum}};
    std::printf("%s\n", j.dump(2).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_io: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
