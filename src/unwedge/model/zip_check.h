// Verifies a zip archive (a model file, as LibTorch's writer makes it) before LibTorch parses it:
// the end-of-central-directory record (and its zip64 form), the central directory, each entry's
// local header (name, method, flag bit 3, and its CRC-32 and sizes, or those of its data
// descriptor, against the central directory's), and every entry's CRC-32 over its data (stored entries read as they are, deflated
// ones inflated in chunks). Every offset and size is checked against the file size before it is
// used, entries may not overlap, and nothing is allocated from a size taken on trust.
//
// LibTorch 1.13's reader trusts the archive: a damaged entry of TorchScript code can crash its
// importer (tests/fuzz/corpus/checkpoint/regress_segv_in_torchscript_importer.uwm), so a model
// file is verified whole first.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace unwedge {

/// One entry of a verified archive, as its central directory records it.
struct ZipEntry {
  std::string name;
  int method = 0;                ///< 0 stored, 8 deflated
  uint16_t flags = 0;            ///< general purpose bits (bit 3: a data descriptor follows)
  uint64_t compressed_size = 0;  ///< bytes of data in the file
  uint64_t size = 0;             ///< bytes once inflated
  uint32_t crc32 = 0;            ///< as recorded (and verified)
  uint64_t header_offset = 0;    ///< byte offset of the local header
};

/// What is wrong with an archive, without the file's name (the caller adds it): e.g.
/// "entry 'a/code/x.py' is damaged: its data has CRC-32 0x1234abcd, the archive records 0x75020580".
struct ZipDamage : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Walks and verifies the archive at `path`; returns its entries in central-directory order.
/// Throws ZipDamage for a structural problem or a CRC mismatch, IoError when the file cannot
/// be read. Refuses (ZipDamage) what LibTorch does not write: several disks, encryption,
/// compression methods other than stored and deflate.
std::vector<ZipEntry> zip_verify(const std::string& path);

}  // namespace unwedge
