// MRC2014 reading and writing (https://www.ccpem.ac.uk/mrc_format/mrc2014.php).
// Volumes come back as float32 [Z, Y, X] whatever the file's mode, endianness or axis order.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "unwedge/core/volume.h"

namespace unwedge {

/// The 1024-byte MRC2014 header, fields in file order with their byte offsets.
struct MrcHeader {
  int32_t nx = 0, ny = 0, nz = 0;           // 0: columns, rows, sections (file order)
  int32_t mode = 2;                         // 12: 0 int8, 1 int16, 2 float32, 6 uint16, 12 float16
  int32_t nxstart = 0, nystart = 0, nzstart = 0;  // 16
  int32_t mx = 0, my = 0, mz = 0;           // 28: sampling along x, y, z
  float cella[3] = {0, 0, 0};               // 40: cell size in Å
  float cellb[3] = {90, 90, 90};            // 52: cell angles in degrees
  int32_t mapc = 1, mapr = 2, maps = 3;     // 64: axis (1=x,2=y,3=z) for columns, rows, sections
  float dmin = 0, dmax = 0, dmean = 0;      // 76
  int32_t ispg = 0;                         // 88
  int32_t nsymbt = 0;                       // 92: extended header bytes
  char extra1[8] = {};                      // 96
  char exttyp[4] = {};                      // 104
  int32_t nversion = 20140;                 // 108
  char extra2[84] = {};                     // 112 (IMOD stamp at 152, flags at 156)
  float origin[3] = {0, 0, 0};              // 196: Å
  char map[4] = {'M', 'A', 'P', ' '};       // 208
  uint8_t machst[4] = {0x44, 0x44, 0, 0};   // 212: little-endian stamp
  float rms = 0;                            // 216
  int32_t nlabl = 0;                        // 220
  char labels[10][80] = {};                 // 224
};

/// Options for reading.
struct MrcReadOptions {
  /// Accept the quirks real files carry (`MAP\0`, nversion 0, wrong or zero machine stamp,
  /// statistics left at 0), each reported as a warning, instead of failing.
  bool permissive = false;
  /// Log each warning as it is found (they are always kept in MrcFile::warnings()).
  bool log_warnings = true;
};

/// Options for writing.
struct MrcWriteOptions {
  int mode = 2;              ///< 2 (float32) or 12 (float16)
  bool overwrite = false;    ///< replace an existing output
  bool keep_ext_header = false;  ///< re-write the input's extended header (meta.ext_header)
  std::string label;         ///< one label line added (program and command); empty adds none
};

/// An opened MRC file: parsed, validated header and positioned reads of its data.
class MrcFile {
 public:
  /// Opens and validates `path`. Throws IoError / FormatError naming the file, field and value.
  explicit MrcFile(std::string path, MrcReadOptions opts = {});
  ~MrcFile();
  MrcFile(const MrcFile&) = delete;
  MrcFile& operator=(const MrcFile&) = delete;

  const std::string& path() const { return path_; }
  const MrcHeader& header() const { return header_; }
  /// Volume shape [Z, Y, X] in space (after undoing mapc/mapr/maps).
  std::array<int64_t, 3> shape() const { return shape_; }
  /// Metadata (voxel size, origin, labels, extended header) as a Volume carries it.
  const VolumeMeta& meta() const { return meta_; }
  /// Warnings collected in permissive mode (and oddities worth a note), one line each.
  const std::vector<std::string>& warnings() const { return warnings_; }
  bool byte_swapped() const { return swap_; }
  /// True for mode 0 files that IMOD marked as unsigned bytes.
  bool unsigned_bytes() const { return unsigned_bytes_; }

  /// Reads the whole volume as float32 [Z, Y, X].
  Volume read() const;
  /// Reads the box [z0:z1, y0:y1, x0:x1) (space coordinates) without loading the file.
  at::Tensor read_box(int64_t z0, int64_t z1, int64_t y0, int64_t y1, int64_t x0,
                      int64_t x1) const;
  /// Gives back this process's mapped pages of the sections before `z` (they stay in the page
  /// cache; a later read_box maps them again): a reader streaming through the file in Z keeps
  /// its resident memory flat. Does nothing unless the file's sections are Z (maps = 3).
  void release_before(int64_t z) const;

 private:
  /// File order [sections, rows, columns] -> space [Z, Y, X] (a view; no copy).
  at::Tensor to_space(const at::Tensor& file_order) const;
  /// Strict mode: header statistics all 0 while `data` is not all 0 is a FormatError.
  void check_zero_stats(const at::Tensor& data) const;

  std::string path_;
  MrcHeader header_;
  std::array<int64_t, 3> shape_{};
  VolumeMeta meta_;
  std::vector<std::string> warnings_;
  bool swap_ = false, unsigned_bytes_ = false;
  bool permissive_ = false;
  int fd_ = -1;
  int64_t data_offset_ = 0;
  void* map_base_ = nullptr;  ///< read-only mapping of the whole file, for read_box
  int64_t map_bytes_ = 0;
};

/// Reads a whole volume. Equivalent to MrcFile(path, opts).read().
Volume mrc_read(const std::string& path, MrcReadOptions opts = {});

/// Writes `vol` atomically (temporary name, renamed when complete).
void mrc_write(const std::string& path, const Volume& vol, const MrcWriteOptions& opts);

/// Running statistics of the values written (header dmin, dmax, dmean, rms), combinable across
/// writers of one file (Chan et al. pairwise update, in double).
struct MrcStats {
  int64_t count = 0;
  double mean = 0, m2 = 0;  ///< m2: sum of squared deviations from the mean
  double min = 0, max = 0;  ///< meaningful when count > 0
};
/// The statistics of the union of the values behind `a` and `b`.
MrcStats mrc_stats_merge(const MrcStats& a, const MrcStats& b);

/// Writes a volume slab by slab (z-ordered sections), so that a tomogram larger than memory
/// can be produced. Statistics are accumulated and the header finalised on commit().
///
/// Several processes (ranks) can write one file: rank 0 creates it (the constructor sizes the
/// temporary to the full volume), the others attach() to tmp_path() and write their slabs at
/// their offsets, each closes with close(); rank 0 then commit_shared()s with the statistics of
/// all writers merged, which patches the header and renames the file into place.
class MrcSlabWriter {
 public:
  /// shape is [Z, Y, X]. Throws ExistsError when the output exists and !opts.overwrite.
  MrcSlabWriter(std::string path, std::array<int64_t, 3> shape, VolumeMeta meta,
                MrcWriteOptions opts);
  /// Writes into `tmp_path`, the temporary another writer of the same path, shape, meta and
  /// options created (and will commit). Throws IoError when it cannot be opened.
  static std::unique_ptr<MrcSlabWriter> attach(std::string path, std::string tmp_path,
                                               std::array<int64_t, 3> shape, VolumeMeta meta,
                                               MrcWriteOptions opts);
  ~MrcSlabWriter();
  MrcSlabWriter(const MrcSlabWriter&) = delete;
  MrcSlabWriter& operator=(const MrcSlabWriter&) = delete;

  /// Writes sections [z0, z0 + slab.size(0)) from a float tensor [z, Y, X]. Slabs may come in any
  /// order but each section must be written exactly once before commit().
  void write_slab(int64_t z0, const at::Tensor& slab);
  /// Finalises the header (statistics over everything written) and renames into place.
  void commit();
  /// The temporary file being written (renamed to the final path on commit).
  const std::string& tmp_path() const;
  /// Statistics of the values this writer has written so far.
  MrcStats stats() const;
  /// Attached writers: flushes (fsync, for shared filesystems) and closes; no rename.
  void close();
  /// The creating writer, after every writer close()d: header with `all` (the merged statistics
  /// of every writer, which must cover the whole volume), then rename into place.
  void commit_shared(const MrcStats& all);

 private:
  MrcSlabWriter() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Checks that a tensor has no NaN/Inf; throws FormatError "<what>: N NaN and M Inf values".
void check_finite(const at::Tensor& t, const std::string& what);
/// Two volumes that share one grid (the halves of a tomogram, a restoration and its truth):
/// throws ShapeError naming both files and sizes when their voxel sizes differ along an axis by
/// more than 0.1 % (headers store cell lengths, so equal sizes can differ in the last digits); a
/// size of 0 (not set in a header) is not compared.
void voxel_sizes_check_same(const std::string& path_a, const VolumeMeta& a,
                            const std::string& path_b, const VolumeMeta& b);
/// The halves of one tomogram (even and odd): throws ShapeError naming both files when their
/// shapes differ, then voxel_sizes_check_same.
void halves_check_same_grid(const MrcFile& a, const MrcFile& b);
/// mrc_read, then check_finite: a volume with NaN or Inf values is a FormatError naming `path`
/// (metrics of such a volume would read as perfect or undefined).
Volume mrc_read_finite(const std::string& path, MrcReadOptions opts = {});

}  // namespace unwedge
