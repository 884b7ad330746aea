// Output files that several ranks write together (restore and sample split one tomogram into Z
// slabs): rank 0 creates and sizes the temporary file, the others attach to it, every rank writes
// its sections, the header statistics are merged across ranks and rank 0 renames the file into
// place. Without sharing every writer is this rank's own and commits alone.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "unwedge/dist/distributed.h"
#include "unwedge/io/mrc.h"

namespace unwedge {

/// The writers of `paths` (each a volume of `shape` [Z, Y, X] with `meta`); with `shared`, the
/// handshake above (collective: every rank calls it with the same paths, in order).
std::vector<std::unique_ptr<MrcSlabWriter>> shared_writers_open(const std::vector<std::string>& paths,
                                                                const std::array<int64_t, 3>& shape,
                                                                const VolumeMeta& meta,
                                                                const MrcWriteOptions& wo,
                                                                bool shared, Distributed& dist);

/// Commits the writers; shared ones: statistics merged across ranks, rank 0 patches the header
/// and renames, and every rank waits until the files are in place (collective).
void shared_writers_commit(std::vector<std::unique_ptr<MrcSlabWriter>>& writers, bool shared,
                           Distributed& dist);

}  // namespace unwedge
