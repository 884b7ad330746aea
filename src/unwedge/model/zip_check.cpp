#include "unwedge/model/zip_check.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "unwedge/core/error.h"

namespace unwedge {

namespace {

// Record signatures and fixed sizes (APPNOTE.TXT 6.3, sections 4.3.7 - 4.3.16).
constexpr uint32_t kLocalSig = 0x04034b50;     // local file header, 30 bytes + name + extra
constexpr uint32_t kCentralSig = 0x02014b50;   // central directory header, 46 bytes + ...
constexpr uint32_t kEndSig = 0x06054b50;       // end of central directory, 22 bytes + comment
constexpr uint32_t kEnd64Sig = 0x06064b50;     // zip64 end of central directory, 56 bytes + ...
constexpr uint32_t kLocator64Sig = 0x07064b50; // zip64 end locator, 20 bytes
constexpr uint32_t kDescriptorSig = 0x08074b50; // data descriptor (optional signature)
constexpr uint16_t kFlagDescriptor = 0x08;      // general purpose bit 3: sizes and CRC follow data
constexpr uint64_t kLocalSize = 30, kCentralSize = 46, kEndSize = 22, kEnd64Size = 56,
                   kLocator64Size = 20;
constexpr size_t kChunk = 1 << 16;  // bytes read (and inflated) at a time

uint16_t le16(const unsigned char* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t le32(const unsigned char* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
uint64_t le64(const unsigned char* p) { return uint64_t(le32(p)) | (uint64_t(le32(p + 4)) << 32); }

std::string hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", unsigned(v));
  return b;
}

/// An entry name fit for a one-line message: control bytes become '?', long names are cut.
std::string printable(const std::string& name) {
  std::string s = name.substr(0, 200);
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  if (name.size() > s.size()) s += "...";
  return s;
}

/// `[offset, offset + n)` lies inside `[0, limit)` (without overflow).
bool fits(uint64_t offset, uint64_t n, uint64_t limit) {
  return offset <= limit && n <= limit - offset;
}

class File {
 public:
  explicit File(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw IoError(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      const int e = errno;
      ::close(fd_);
      throw IoError(path + ": cannot read: " + std::strerror(e));
    }
    size_ = uint64_t(st.st_size);
  }
  ~File() { ::close(fd_); }
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  uint64_t size() const { return size_; }

  /// Reads exactly n bytes at offset (the caller has checked that they lie in the file).
  void read(uint64_t offset, void* out, size_t n) const {
    auto* p = static_cast<unsigned char*>(out);
    while (n > 0) {
      const ssize_t got = ::pread(fd_, p, n, off_t(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) throw IoError(path_ + ": cannot read: " + std::strerror(errno));
      if (got == 0) throw ZipDamage("the file ended while it was being read (changed on disk?)");
      p += got;
      n -= size_t(got);
      offset += uint64_t(got);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

struct Directory {
  uint64_t entries = 0;
  uint64_t offset = 0;  ///< of the central directory
  uint64_t size = 0;    ///< of the central directory, bytes
  uint64_t end = 0;     ///< where the end records start (the central directory ends before)
};

/// Finds the end-of-central-directory record (and the zip64 one when present or needed).
Directory read_end_records(const File& f) {
  const uint64_t n = f.size();
  if (n < kEndSize) {
    throw ZipDamage("the file is " + std::to_string(n) + " bytes, too short for a zip archive");
  }
  // The record is the last thing in the file, followed only by its comment (<= 65535 bytes).
  const uint64_t span = std::min<uint64_t>(n, kEndSize + 0xffff);
  std::vector<unsigned char> tail(span);
  f.read(n - span, tail.data(), span);
  int64_t at = -1;
  for (int64_t i = int64_t(span - kEndSize); i >= 0; --i) {
    const unsigned char* p = tail.data() + i;
    if (le32(p) == kEndSig && uint64_t(i) + kEndSize + le16(p + 20) == span) {
      at = i;
      break;
    }
  }
  if (at < 0) {
    throw ZipDamage("no end-of-central-directory record at the end of the file (truncated, "
                    "or not a zip archive)");
  }
  const unsigned char* e = tail.data() + at;
  const uint64_t end_pos = n - span + uint64_t(at);
  if (le16(e + 4) != 0 || le16(e + 6) != 0) {
    throw ZipDamage("the archive spans several disks (disk " + std::to_string(le16(e + 4)) +
                    ", central directory on disk " + std::to_string(le16(e + 6)) + ")");
  }
  Directory d;
  d.entries = le16(e + 10);
  d.size = le32(e + 12);
  d.offset = le32(e + 16);
  d.end = end_pos;
  if (le16(e + 8) != le16(e + 10)) {
    throw ZipDamage("the end record counts " + std::to_string(le16(e + 8)) + " entries on this " +
                    "disk but " + std::to_string(le16(e + 10)) + " in all");
  }
  const bool saturated = d.entries == 0xffff || d.size == 0xffffffff || d.offset == 0xffffffff;
  unsigned char loc[kLocator64Size];
  bool has_locator = false;
  if (end_pos >= kLocator64Size) {
    f.read(end_pos - kLocator64Size, loc, kLocator64Size);
    has_locator = le32(loc) == kLocator64Sig;
  }
  if (!has_locator) {
    if (saturated) throw ZipDamage("the end record points to a zip64 record that is not there");
    return d;
  }
  // zip64: the locator gives the zip64 end record, which holds the 64-bit counts and offsets.
  const uint64_t loc_pos = end_pos - kLocator64Size;
  const uint64_t rec_pos = le64(loc + 8);
  if (le32(loc + 4) != 0 || le32(loc + 16) > 1) {
    throw ZipDamage("the zip64 locator names disk " + std::to_string(le32(loc + 4)) + " of " +
                    std::to_string(le32(loc + 16)) + " (several disks are not read)");
  }
  if (!fits(rec_pos, kEnd64Size, loc_pos)) {
    throw ZipDamage("the zip64 end record at offset " + std::to_string(rec_pos) +
                    " does not fit before its locator at " + std::to_string(loc_pos));
  }
  unsigned char r[kEnd64Size];
  f.read(rec_pos, r, kEnd64Size);
  if (le32(r) != kEnd64Sig) {
    throw ZipDamage("no zip64 end record at offset " + std::to_string(rec_pos));
  }
  const uint64_t rec_size = le64(r + 4);  // of the rest of the record (44 + extensible data)
  if (rec_size < kEnd64Size - 12 || rec_size != loc_pos - rec_pos - 12) {
    throw ZipDamage("the zip64 end record's size " + std::to_string(rec_size) +
                    " does not reach its locator");
  }
  if (le32(r + 16) != 0 || le32(r + 20) != 0 || le64(r + 24) != le64(r + 32)) {
    throw ZipDamage("the zip64 end record describes several disks");
  }
  Directory z;
  z.entries = le64(r + 32);
  z.size = le64(r + 40);
  z.offset = le64(r + 48);
  z.end = rec_pos;
  // Where the 32-bit record is not saturated, both records must agree.
  if ((d.entries != 0xffff && d.entries != z.entries) ||
      (d.size != 0xffffffff && d.size != z.size) ||
      (d.offset != 0xffffffff && d.offset != z.offset)) {
    throw ZipDamage("the end record and the zip64 end record disagree (" +
                    std::to_string(d.entries) + " / " + std::to_string(z.entries) +
                    " entries, central directory at " + std::to_string(d.offset) + " / " +
                    std::to_string(z.offset) + ")");
  }
  return z;
}

/// Reads one central directory header at `p` (`avail` bytes left in the directory); returns
/// its length in bytes.
uint64_t parse_central(const unsigned char* p, uint64_t avail, uint64_t index, ZipEntry& out) {
  const std::string which = "central directory entry " + std::to_string(index);
  if (avail < kCentralSize || le32(p) != kCentralSig) {
    throw ZipDamage(which + " is not there (the directory is damaged)");
  }
  const uint16_t flags = le16(p + 8);
  const uint16_t name_len = le16(p + 28), extra_len = le16(p + 30), comment_len = le16(p + 32);
  const uint64_t len = kCentralSize + uint64_t(name_len) + extra_len + comment_len;
  if (len > avail) throw ZipDamage(which + " runs past the end of the central directory");
  out.name.assign(reinterpret_cast<const char*>(p + kCentralSize), name_len);
  const std::string entry = "entry '" + printable(out.name) + "'";
  out.flags = flags;
  out.method = le16(p + 10);
  out.crc32 = le32(p + 16);
  out.compressed_size = le32(p + 20);
  out.size = le32(p + 24);
  out.header_offset = le32(p + 42);
  uint32_t disk = le16(p + 34);
  if (flags & 0x41) throw ZipDamage(entry + " is encrypted (flags " + std::to_string(flags) + ")");
  if (out.method != 0 && out.method != 8) {
    throw ZipDamage(entry + " uses compression method " + std::to_string(out.method) +
                    " (only 0, stored, and 8, deflate, are read)");
  }
  // zip64 extended information (extra field 0x0001): the 64-bit values of the saturated fields,
  // in this order.
  const bool need_size = out.size == 0xffffffff, need_csize = out.compressed_size == 0xffffffff,
             need_offset = out.header_offset == 0xffffffff, need_disk = disk == 0xffff;
  const unsigned char* x = p + kCentralSize + name_len;
  const unsigned char* x_end = x + extra_len;
  bool found64 = false;
  while (x_end - x >= 4) {
    const uint16_t id = le16(x), n = le16(x + 2);
    if (n > x_end - x - 4) throw ZipDamage(entry + ": an extra field runs past its header");
    if (id == 0x0001 && !found64) {
      found64 = true;
      const unsigned char* q = x + 4;
      uint64_t left = n;
      auto take64 = [&](uint64_t& v) {
        if (left < 8) throw ZipDamage(entry + ": its zip64 extra field is too short");
        v = le64(q);
        q += 8;
        left -= 8;
      };
      if (need_size) take64(out.size);
      if (need_csize) take64(out.compressed_size);
      if (need_offset) take64(out.header_offset);
      if (need_disk) {
        if (left < 4) throw ZipDamage(entry + ": its zip64 extra field is too short");
        disk = le32(q);
      }
    }
    x += 4 + n;
  }
  if ((need_size || need_csize || need_offset || need_disk) && !found64) {
    throw ZipDamage(entry + " has 32-bit sizes or offset saturated but no zip64 extra field");
  }
  if (disk != 0) throw ZipDamage(entry + " starts on disk " + std::to_string(disk));
  if (out.method == 0 && out.compressed_size != out.size) {
    throw ZipDamage(entry + " is stored but its sizes differ (" +
                    std::to_string(out.compressed_size) + " and " + std::to_string(out.size) +
                    " bytes)");
  }
  return len;
}

/// CRC-32 of an entry's data, stored or inflated, in chunks; checks the inflated size.
uint32_t entry_crc(const File& f, const ZipEntry& e, uint64_t data_pos) {
  const std::string entry = "entry '" + printable(e.name) + "'";
  std::vector<unsigned char> in(kChunk);
  uLong crc = crc32(0L, Z_NULL, 0);
  if (e.method == 0) {
    for (uint64_t done = 0; done < e.compressed_size;) {
      const size_t n = size_t(std::min<uint64_t>(kChunk, e.compressed_size - done));
      f.read(data_pos + done, in.data(), n);
      crc = crc32(crc, in.data(), uInt(n));
      done += n;
    }
    return uint32_t(crc);
  }
  z_stream z{};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) throw std::bad_alloc();  // raw deflate
  struct Guard {
    z_stream* z;
    ~Guard() { inflateEnd(z); }
  } guard{&z};
  std::vector<unsigned char> out(kChunk);
  uint64_t read = 0, produced = 0;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (z.avail_in == 0 && read < e.compressed_size) {
      const size_t n = size_t(std::min<uint64_t>(kChunk, e.compressed_size - read));
      f.read(data_pos + read, in.data(), n);
      read += n;
      z.next_in = in.data();
      z.avail_in = uInt(n);
    }
    z.next_out = out.data();
    z.avail_out = uInt(kChunk);
    rc = inflate(&z, Z_NO_FLUSH);
    if (rc == Z_BUF_ERROR && z.avail_in == 0 && read == e.compressed_size) {  // no progress
      throw ZipDamage(entry + ": its deflated data ends before the deflate stream does");
    }
    if (rc != Z_OK && rc != Z_STREAM_END) {
      throw ZipDamage(entry + ": its deflated data is damaged (" +
                      (z.msg != nullptr ? std::string(z.msg) : "zlib " + std::to_string(rc)) +
                      ")");
    }
    const size_t got = kChunk - z.avail_out;
    produced += got;
    if (produced > e.size) {
      throw ZipDamage(entry + " inflates to more than the " + std::to_string(e.size) +
                      " bytes the archive records");
    }
    crc = crc32(crc, out.data(), uInt(got));
  }
  if (produced != e.size || read != e.compressed_size || z.avail_in != 0) {
    throw ZipDamage(entry + " inflates to " + std::to_string(produced) + " bytes from " +
                    std::to_string(read - z.avail_in) + ", the archive records " +
                    std::to_string(e.size) + " from " + std::to_string(e.compressed_size));
  }
  return uint32_t(crc);
}

/// The 64-bit sizes of a local header's zip64 extra field (0x0001: uncompressed size, then
/// compressed size, both present when either 32-bit field is saturated); `found` tells whether
/// the field is there at all (then a data descriptor holds 8-byte sizes, APPNOTE 4.3.9.2).
struct LocalZip64 {
  bool found = false;
  uint64_t size = 0, compressed_size = 0;
  bool has_sizes = false;
};
LocalZip64 local_zip64(const unsigned char* x, uint64_t n, const std::string& entry) {
  LocalZip64 z;
  const unsigned char* end = x + n;
  while (end - x >= 4) {
    const uint16_t id = le16(x), len = le16(x + 2);
    if (len > end - x - 4) {
      throw ZipDamage(entry + ": an extra field of its local header runs past the header");
    }
    if (id == 0x0001 && !z.found) {
      z.found = true;
      if (len >= 16) {
        z.has_sizes = true;
        z.size = le64(x + 4);
        z.compressed_size = le64(x + 12);
      }
    }
    x += 4 + len;
  }
  return z;
}

/// Compares the CRC-32 and sizes the local header (or its data descriptor) records with the
/// central directory's; `where` names the record.
void agree(const ZipEntry& e, const std::string& entry, const std::string& where, uint32_t crc,
           uint64_t compressed_size, uint64_t size) {
  if (crc != e.crc32) {
    throw ZipDamage(entry + ": its " + where + " records CRC-32 " + hex32(crc) +
                    ", the central directory " + hex32(e.crc32));
  }
  if (compressed_size != e.compressed_size || size != e.size) {
    throw ZipDamage(entry + ": its " + where + " records " + std::to_string(compressed_size) +
                    " bytes compressed, " + std::to_string(size) + " uncompressed; the central " +
                    "directory " + std::to_string(e.compressed_size) + " and " +
                    std::to_string(e.size));
  }
}

}  // namespace

std::vector<ZipEntry> zip_verify(const std::string& path) {
  File f(path);
  const Directory d = read_end_records(f);
  if (!fits(d.offset, d.size, d.end)) {
    throw ZipDamage("the central directory (offset " + std::to_string(d.offset) + ", " +
                    std::to_string(d.size) + " bytes) runs past the end records at offset " +
                    std::to_string(d.end) + " (truncated?)");
  }
  if (d.entries > d.size / kCentralSize) {
    throw ZipDamage("the end record counts " + std::to_string(d.entries) + " entries, more than " +
                    "a central directory of " + std::to_string(d.size) + " bytes holds");
  }
  std::vector<unsigned char> dir(d.size);
  f.read(d.offset, dir.data(), dir.size());

  std::vector<ZipEntry> entries(d.entries);
  uint64_t pos = 0;
  for (uint64_t i = 0; i < d.entries; ++i) {
    pos += parse_central(dir.data() + pos, d.size - pos, i, entries[i]);
  }
  if (pos != d.size) {
    throw ZipDamage("the central directory holds " + std::to_string(d.size - pos) +
                    " bytes after its " + std::to_string(d.entries) + " entries");
  }

  // Local headers and data, in file order: inside the file before the central directory, and
  // not overlapping (so the data read and inflated below is at most the file's size once).
  std::vector<size_t> order(entries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return entries[a].header_offset < entries[b].header_offset;
  });
  uint64_t previous_end = 0;
  std::string previous;
  for (size_t i : order) {
    const ZipEntry& e = entries[i];
    const std::string entry = "entry '" + printable(e.name) + "'";
    if (!fits(e.header_offset, kLocalSize, d.offset)) {
      throw ZipDamage(entry + ": its local header at offset " + std::to_string(e.header_offset) +
                      " lies past the data area (which ends at " + std::to_string(d.offset) + ")");
    }
    if (e.header_offset < previous_end) {
      throw ZipDamage(entry + " overlaps " + previous);
    }
    unsigned char h[kLocalSize];
    f.read(e.header_offset, h, kLocalSize);
    if (le32(h) != kLocalSig) {
      throw ZipDamage(entry + ": no local header at offset " + std::to_string(e.header_offset));
    }
    const uint16_t flags = le16(h + 6), name_len = le16(h + 26), extra_len = le16(h + 28);
    const uint64_t name_pos = e.header_offset + kLocalSize;
    const uint64_t data_pos = name_pos + name_len + extra_len;
    if (!fits(name_pos, uint64_t(name_len) + extra_len, d.offset) ||
        !fits(data_pos, e.compressed_size, d.offset)) {
      throw ZipDamage(entry + ": its data (" + std::to_string(e.compressed_size) +
                      " bytes at offset " + std::to_string(data_pos) + ") runs past the data " +
                      "area (which ends at " + std::to_string(d.offset) + ")");
    }
    std::string local_name(name_len, '\0');
    f.read(name_pos, local_name.data(), name_len);
    if (local_name != e.name) {
      throw ZipDamage(entry + ": its local header names '" + printable(local_name) + "'");
    }
    if (le16(h + 8) != e.method) {
      throw ZipDamage(entry + ": its local header says compression method " +
                      std::to_string(le16(h + 8)) + ", the central directory " +
                      std::to_string(e.method));
    }
    if ((flags & kFlagDescriptor) != (e.flags & kFlagDescriptor)) {
      throw ZipDamage(entry + ": its local header " +
                      ((flags & kFlagDescriptor) ? "announces" : "does not announce") +
                      " a data descriptor (flag bit 3), the central directory " +
                      ((e.flags & kFlagDescriptor) ? "does" : "does not"));
    }
    std::vector<unsigned char> extra(extra_len);
    f.read(name_pos + name_len, extra.data(), extra_len);
    const LocalZip64 z64 = local_zip64(extra.data(), extra_len, entry);
    uint64_t data_end = data_pos + e.compressed_size;
    if (!(flags & kFlagDescriptor)) {
      // The local header repeats the CRC and sizes (64-bit ones in its zip64 extra field when
      // a 32-bit field is saturated).
      uint64_t csize = le32(h + 18), size = le32(h + 22);
      if (csize == 0xffffffff || size == 0xffffffff) {
        if (!z64.has_sizes) {
          throw ZipDamage(entry + ": its local header has a saturated size but no zip64 sizes");
        }
        csize = z64.compressed_size;
        size = z64.size;
      }
      agree(e, entry, "local header", le32(h + 14), csize, size);
    } else {
      // A data descriptor after the data (flag bit 3, which LibTorch's writer sets; the local
      // header's fields are then zero): an optional signature, the CRC-32 and both sizes, 8
      // bytes each when the local header has a zip64 extra field, 4 otherwise.
      const uint64_t wide = z64.found ? 8 : 4, body = 4 + 2 * wide;
      unsigned char dd[4 + 4 + 16];
      const bool signed_fits = fits(data_end, 4 + body, d.offset);
      if (!signed_fits && !fits(data_end, body, d.offset)) {
        throw ZipDamage(entry + ": its data descriptor at offset " + std::to_string(data_end) +
                        " runs past the data area (which ends at " + std::to_string(d.offset) +
                        ")");
      }
      f.read(data_end, dd, size_t(signed_fits ? 4 + body : body));
      auto read_sizes = [&](const unsigned char* q, uint32_t& crc, uint64_t& csize,
                            uint64_t& size) {
        crc = le32(q);
        csize = wide == 8 ? le64(q + 4) : le32(q + 4);
        size = wide == 8 ? le64(q + 12) : le32(q + 8);
      };
      uint32_t crc = 0;
      uint64_t csize = 0, size = 0;
      // With its signature (what LibTorch's and Python's writers put), or without one (also
      // allowed: then the first four bytes are the CRC, which may equal the signature).
      bool with_signature = signed_fits && le32(dd) == kDescriptorSig;
      if (with_signature) {
        read_sizes(dd + 4, crc, csize, size);
        if (crc != e.crc32 || csize != e.compressed_size || size != e.size) {
          uint32_t c2 = 0;
          uint64_t cs2 = 0, s2 = 0;
          read_sizes(dd, c2, cs2, s2);
          if (c2 == e.crc32 && cs2 == e.compressed_size && s2 == e.size) with_signature = false;
        }
      }
      if (!with_signature) read_sizes(dd, crc, csize, size);
      agree(e, entry, "data descriptor", crc, csize, size);
      data_end += with_signature ? 4 + body : body;
    }
    const uint32_t crc = entry_crc(f, e, data_pos);
    if (crc != e.crc32) {
      throw ZipDamage(entry + " is damaged: its data has CRC-32 " + hex32(crc) +
                      ", the archive records " + hex32(e.crc32));
    }
    previous_end = data_end;
    previous = entry;
  }
  return entries;
}

}  // namespace unwedge
