#include "unwedge/dist/shared_writers.h"

namespace unwedge {

std::vector<std::unique_ptr<MrcSlabWriter>> shared_writers_open(const std::vector<std::string>& paths,
                                                                const std::array<int64_t, 3>& shape,
                                                                const VolumeMeta& meta,
                                                                const MrcWriteOptions& wo,
                                                                bool shared, Distributed& dist) {
  std::vector<std::unique_ptr<MrcSlabWriter>> writers;
  for (const auto& o : paths) {
    if (!shared || dist.is_main()) {
      writers.push_back(std::make_unique<MrcSlabWriter>(o, shape, meta, wo));
    }
    if (shared) {  // rank 0 has created and sized the file; the others open it
      const std::string tmp =
          dist.broadcast_string(dist.is_main() ? writers.back()->tmp_path() : std::string());
      if (!dist.is_main()) writers.push_back(MrcSlabWriter::attach(o, tmp, shape, meta, wo));
    }
  }
  return writers;
}

void shared_writers_commit(std::vector<std::unique_ptr<MrcSlabWriter>>& writers, bool shared,
                           Distributed& dist) {
  if (!shared) {
    for (auto& w : writers) w->commit();
    return;
  }
  for (auto& w : writers) {
    if (!dist.is_main()) w->close();  // flushed before rank 0 patches the header
    const MrcStats st = w->stats();
    const std::vector<double> all =
        dist.allgather({double(st.count), st.mean, st.m2, st.min, st.max});
    if (dist.is_main()) {
      MrcStats merged;
      for (int r = 0; r < dist.world_size(); ++r) {
        const double* v = all.data() + 5 * r;
        merged = mrc_stats_merge(merged, MrcStats{int64_t(v[0]), v[1], v[2], v[3], v[4]});
      }
      w->commit_shared(merged);
    }
  }
  dist.barrier();  // the files are in place when any rank returns
}

}  // namespace unwedge
