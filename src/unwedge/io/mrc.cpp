// MRC2014 reader and writer. The header is parsed field by field at its byte offsets (so the
// struct layout never matters), data is read with positioned reads or a read-only mapping,
// converted to float32 with tensor ops, and returned as [Z, Y, X].
#include "unwedge/io/mrc.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include <torch/torch.h>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "unwedge's MRC code assumes a little-endian host"
#endif

namespace unwedge {

namespace {

constexpr int64_t kHeaderBytes = 1024;
constexpr int32_t kImodStamp = 1146047817;  // "IMOD" at byte 152
constexpr int64_t kIoChunk = int64_t(1) << 26;  // 64 MiB per pread/pwrite call

// ---- byte order -------------------------------------------------------------------------

void swap_bytes(void* data, int64_t count, int elem_bytes) {
  if (elem_bytes == 2) {
    auto* p = static_cast<uint16_t*>(data);
    for (int64_t i = 0; i < count; ++i) p[i] = __builtin_bswap16(p[i]);
  } else if (elem_bytes == 4) {
    auto* p = static_cast<uint32_t*>(data);
    for (int64_t i = 0; i < count; ++i) p[i] = __builtin_bswap32(p[i]);
  }
}

int32_t get_i32(const unsigned char* buf, int off, bool swap) {
  uint32_t v;
  std::memcpy(&v, buf + off, 4);
  if (swap) v = __builtin_bswap32(v);
  int32_t r;
  std::memcpy(&r, &v, 4);
  return r;
}

float get_f32(const unsigned char* buf, int off, bool swap) {
  uint32_t v;
  std::memcpy(&v, buf + off, 4);
  if (swap) v = __builtin_bswap32(v);
  float r;
  std::memcpy(&r, &v, 4);
  return r;
}

void put_i32(unsigned char* buf, int off, int32_t v) { std::memcpy(buf + off, &v, 4); }
void put_f32(unsigned char* buf, int off, float v) { std::memcpy(buf + off, &v, 4); }

// ---- header -----------------------------------------------------------------------------

/// Parses the 1024 header bytes (file byte order `swap`) into the struct.
MrcHeader header_parse(const unsigned char* b, bool swap) {
  MrcHeader h;
  h.nx = get_i32(b, 0, swap);
  h.ny = get_i32(b, 4, swap);
  h.nz = get_i32(b, 8, swap);
  h.mode = get_i32(b, 12, swap);
  h.nxstart = get_i32(b, 16, swap);
  h.nystart = get_i32(b, 20, swap);
  h.nzstart = get_i32(b, 24, swap);
  h.mx = get_i32(b, 28, swap);
  h.my = get_i32(b, 32, swap);
  h.mz = get_i32(b, 36, swap);
  for (int i = 0; i < 3; ++i) h.cella[i] = get_f32(b, 40 + 4 * i, swap);
  for (int i = 0; i < 3; ++i) h.cellb[i] = get_f32(b, 52 + 4 * i, swap);
  h.mapc = get_i32(b, 64, swap);
  h.mapr = get_i32(b, 68, swap);
  h.maps = get_i32(b, 72, swap);
  h.dmin = get_f32(b, 76, swap);
  h.dmax = get_f32(b, 80, swap);
  h.dmean = get_f32(b, 84, swap);
  h.ispg = get_i32(b, 88, swap);
  h.nsymbt = get_i32(b, 92, swap);
  std::memcpy(h.extra1, b + 96, 8);
  std::memcpy(h.exttyp, b + 104, 4);
  h.nversion = get_i32(b, 108, swap);
  std::memcpy(h.extra2, b + 112, 84);
  for (int i = 0; i < 3; ++i) h.origin[i] = get_f32(b, 196 + 4 * i, swap);
  std::memcpy(h.map, b + 208, 4);
  std::memcpy(h.machst, b + 212, 4);
  h.rms = get_f32(b, 216, swap);
  h.nlabl = get_i32(b, 220, swap);
  std::memcpy(h.labels, b + 224, 800);
  return h;
}

/// Serialises a header little-endian (the only byte order unwedge writes).
std::vector<unsigned char> header_serialize(const MrcHeader& h) {
  std::vector<unsigned char> b(kHeaderBytes, 0);
  put_i32(b.data(), 0, h.nx);
  put_i32(b.data(), 4, h.ny);
  put_i32(b.data(), 8, h.nz);
  put_i32(b.data(), 12, h.mode);
  put_i32(b.data(), 16, h.nxstart);
  put_i32(b.data(), 20, h.nystart);
  put_i32(b.data(), 24, h.nzstart);
  put_i32(b.data(), 28, h.mx);
  put_i32(b.data(), 32, h.my);
  put_i32(b.data(), 36, h.mz);
  for (int i = 0; i < 3; ++i) put_f32(b.data(), 40 + 4 * i, h.cella[i]);
  for (int i = 0; i < 3; ++i) put_f32(b.data(), 52 + 4 * i, h.cellb[i]);
  put_i32(b.data(), 64, h.mapc);
  put_i32(b.data(), 68, h.mapr);
  put_i32(b.data(), 72, h.maps);
  put_f32(b.data(), 76, h.dmin);
  put_f32(b.data(), 80, h.dmax);
  put_f32(b.data(), 84, h.dmean);
  put_i32(b.data(), 88, h.ispg);
  put_i32(b.data(), 92, h.nsymbt);
  std::memcpy(b.data() + 96, h.extra1, 8);
  std::memcpy(b.data() + 104, h.exttyp, 4);
  put_i32(b.data(), 108, h.nversion);
  std::memcpy(b.data() + 112, h.extra2, 84);
  for (int i = 0; i < 3; ++i) put_f32(b.data(), 196 + 4 * i, h.origin[i]);
  std::memcpy(b.data() + 208, h.map, 4);
  std::memcpy(b.data() + 212, h.machst, 4);
  put_f32(b.data(), 216, h.rms);
  put_i32(b.data(), 220, h.nlabl);
  std::memcpy(b.data() + 224, h.labels, 800);
  return b;
}

int mode_bytes(int mode) {
  switch (mode) {
    case 0: return 1;
    case 1: return 2;
    case 2: return 4;
    case 6: return 2;
    case 12: return 2;
    default: return 0;
  }
}

/// The tensor dtype that holds a mode's raw values (uint16 is read as int16 and fixed later;
/// LibTorch 1.13 has no uint16).
at::ScalarType mode_dtype(int mode, bool unsigned_bytes) {
  switch (mode) {
    case 0: return unsigned_bytes ? at::kByte : at::kChar;
    case 1: return at::kShort;
    case 2: return at::kFloat;
    case 6: return at::kShort;
    case 12: return at::kHalf;
    default: return at::kFloat;
  }
}

/// Raw values of a mode (already in host byte order) to float32.
at::Tensor raw_to_float(const at::Tensor& raw, int mode) {
  if (mode == 6) {
    return raw.to(at::kInt).bitwise_and(0xFFFF).to(at::kFloat);  // int16 bits -> uint16
  }
  return raw.to(at::kFloat);
}

bool mode_dims_sane(const MrcHeader& h) {
  return mode_bytes(h.mode) > 0 && h.nx > 0 && h.ny > 0 && h.nz > 0 && h.nx < (1 << 24) &&
         h.ny < (1 << 24) && h.nz < (1 << 24);
}

std::string trim_label(const char* s, size_t n) {
  std::string r(s, strnlen(s, n));
  while (!r.empty() && (r.back() == ' ' || r.back() == '\0')) r.pop_back();
  return r;
}

std::string hex_byte(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", v & 0xFF);
  return buf;
}

std::string fmt_num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

void pread_all(int fd, char* dst, int64_t bytes, int64_t offset, const std::string& path) {
  while (bytes > 0) {
    ssize_t n = ::pread(fd, dst, size_t(std::min(bytes, kIoChunk)), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      throw IoError(path + ": read failed at byte " + std::to_string(offset) + ": " +
                    (n < 0 ? std::strerror(errno) : "unexpected end of file"));
    }
    dst += n;
    bytes -= n;
    offset += n;
  }
}

void pwrite_all(int fd, const char* src, int64_t bytes, int64_t offset, const std::string& path) {
  while (bytes > 0) {
    ssize_t n = ::pwrite(fd, src, size_t(std::min(bytes, kIoChunk)), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      throw IoError(path + ": write failed at byte " + std::to_string(offset) + ": " +
                    (n < 0 ? std::strerror(errno) : "no progress"));
    }
    src += n;
    bytes -= n;
    offset += n;
  }
}

}  // namespace

// ---- MrcFile ----------------------------------------------------------------------------

MrcFile::MrcFile(std::string path, MrcReadOptions opts) : path_(std::move(path)) {
  const std::string& p = path_;
  fd_ = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw IoError(p + ": cannot open: " + std::strerror(errno));
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw IoError(p + ": cannot stat: " + std::strerror(errno));
    if (S_ISDIR(st.st_mode)) throw IoError(p + ": is a folder, not an MRC file");
    const int64_t file_bytes = st.st_size;
    if (file_bytes < kHeaderBytes) {
      throw FormatError(p + ": file is " + std::to_string(file_bytes) +
                        " bytes, shorter than the 1024-byte MRC header");
    }
    unsigned char buf[kHeaderBytes];
    pread_all(fd_, reinterpret_cast<char*>(buf), kHeaderBytes, 0, p);

    auto warn = [&](const std::string& what) {
      warnings_.push_back(what);
      if (opts.log_warnings) log_warn("{}: {}", p, what);
    };
    auto quirk = [&](const std::string& what) {  // accepted only with --permissive
      if (!opts.permissive) {
        throw FormatError(p + ": MRC header: " + what + " (use --permissive to accept it)");
      }
      warn(what);
    };

    // Machine stamp (byte 212): 0x44 0x44 (or 0x44 0x41) little-endian, 0x11 0x11 big-endian.
    const unsigned char st0 = buf[212], st1 = buf[213];
    if (st0 == 0x44) {
      swap_ = false;
    } else if (st0 == 0x11) {
      swap_ = true;
    } else {
      bool native_ok = mode_dims_sane(header_parse(buf, false));
      bool swapped_ok = mode_dims_sane(header_parse(buf, true));
      if (!native_ok && !swapped_ok) {  // no --permissive can help: say what it is
        throw FormatError(p + ": not an MRC file (machine stamp " + hex_byte(st0) + " " +
                          hex_byte(st1) + ", and no known mode with positive dimensions in "
                          "either byte order)");
      }
      swap_ = !native_ok && swapped_ok;
      quirk("machine stamp " + hex_byte(st0) + " " + hex_byte(st1) +
            " is neither 0x44 0x44 (little-endian) nor 0x11 0x11 (big-endian); guessed " +
            (swap_ ? "big" : "little") + "-endian from mode and dimensions");
    }
    header_ = header_parse(buf, swap_);
    const MrcHeader& h = header_;

    if (mode_bytes(h.mode) == 0) {
      throw FormatError(p + ": MRC header: mode " + std::to_string(h.mode) +
                        " is not a known mode (0,1,2,6,12)");
    }
    const char* dim_names[3] = {"nx", "ny", "nz"};
    const int32_t dims[3] = {h.nx, h.ny, h.nz};
    for (int i = 0; i < 3; ++i) {
      if (dims[i] <= 0) {
        throw FormatError(p + ": MRC header: " + dim_names[i] + " " + std::to_string(dims[i]) +
                          " must be positive");
      }
    }
    if (h.nsymbt < 0) {
      throw FormatError(p + ": MRC header: nsymbt " + std::to_string(h.nsymbt) +
                        " must not be negative");
    }
    const int eb = mode_bytes(h.mode);
    int64_t voxels = 0, data_bytes = 0, need = 0;
    if (__builtin_mul_overflow(int64_t(h.nx), int64_t(h.ny), &voxels) ||
        __builtin_mul_overflow(voxels, int64_t(h.nz), &voxels) ||
        __builtin_mul_overflow(voxels, int64_t(eb), &data_bytes) ||
        __builtin_add_overflow(data_bytes, kHeaderBytes + int64_t(h.nsymbt), &need)) {
      throw FormatError(p + ": MRC header: dimension product nx*ny*nz*" + std::to_string(eb) +
                        " = " + std::to_string(h.nx) + "*" + std::to_string(h.ny) + "*" +
                        std::to_string(h.nz) + "*" + std::to_string(eb) +
                        " overflows a 64-bit size");
    }
    if (kHeaderBytes + int64_t(h.nsymbt) > file_bytes) {
      throw FormatError(p + ": MRC header: nsymbt " + std::to_string(h.nsymbt) +
                        " puts the extended header past the end of the file (" +
                        std::to_string(file_bytes) + " bytes)");
    }
    if (need > file_bytes) {
      throw FormatError(p + ": data is " + std::to_string(need - file_bytes) +
                        " bytes short: header says nx*ny*nz*" + std::to_string(eb) +
                        " + 1024 + nsymbt = " + std::to_string(need) + " bytes, file has " +
                        std::to_string(file_bytes));
    }
    if (need < file_bytes) {
      warn("file has " + std::to_string(file_bytes - need) +
           " bytes after the data the header describes (ignored)");
    }

    // Axis order.
    int32_t axes[3] = {h.mapc, h.mapr, h.maps};
    bool perm_ok = true;
    for (int i = 0; i < 3; ++i) perm_ok = perm_ok && axes[i] >= 1 && axes[i] <= 3;
    perm_ok = perm_ok && axes[0] != axes[1] && axes[1] != axes[2] && axes[0] != axes[2];
    if (!perm_ok) {
      if (h.mapc == 0 && h.mapr == 0 && h.maps == 0 && opts.permissive) {
        warn("mapc/mapr/maps are 0 0 0; assumed 1 2 3");
        header_.mapc = 1;
        header_.mapr = 2;
        header_.maps = 3;
      } else {
        throw FormatError(p + ": MRC header: mapc/mapr/maps " + std::to_string(h.mapc) + " " +
                          std::to_string(h.mapr) + " " + std::to_string(h.maps) +
                          " is not a permutation of 1 2 3");
      }
    }
    // Space shape: the file's columns, rows and sections lie along axes mapc, mapr, maps.
    std::array<int64_t, 3> xyz{};  // sizes along space x, y, z
    std::array<int32_t, 3> nstart_xyz{};
    const int32_t file_dims[3] = {h.nx, h.ny, h.nz};
    const int32_t file_start[3] = {h.nxstart, h.nystart, h.nzstart};
    const int32_t map[3] = {header_.mapc, header_.mapr, header_.maps};
    for (int i = 0; i < 3; ++i) {
      xyz[map[i] - 1] = file_dims[i];
      nstart_xyz[map[i] - 1] = file_start[i];
    }
    shape_ = {xyz[2], xyz[1], xyz[0]};

    // Signature, version, statistics.
    if (std::memcmp(h.map, "MAP ", 4) != 0) {
      std::string got;
      for (char c : h.map) got += (c >= 32 && c < 127) ? std::string(1, c) : "\\" + std::to_string(int(c));
      quirk("map field '" + got + "' is not 'MAP '");
    }
    if (h.nversion == 0) {
      // Pre-2014 files (most EMDB maps) have 0 here: a quirk, accepted with --permissive.
      quirk("nversion 0: written before MRC2014 (not 20140 or 20141)");
    } else if (h.nversion != 20140 && h.nversion != 20141) {
      quirk("nversion " + std::to_string(h.nversion) + " is not 0, 20140 or 20141");
    }
    if (h.dmin == 0 && h.dmax == 0 && h.dmean == 0 && h.rms == 0) {
      // Legitimate for an all-zero volume, so strict mode checks it against the data read.
      warn("header statistics dmin dmax dmean rms are all 0 (right only for an all-zero volume)");
    }

    // IMOD marks unsigned mode-0 bytes: stamp at byte 152, flags at 156 (bit 0 set = signed).
    if (h.mode == 0 && get_i32(buf, 152, swap_) == kImodStamp &&
        (get_i32(buf, 156, swap_) & 1) == 0) {
      unsigned_bytes_ = true;
    }

    // A volume stack (space groups 401-630: nz / mz volumes of mz sections) is not a volume.
    if (h.ispg >= 401 && h.ispg <= 630 && h.mz > 0 && h.mz != h.nz) {
      throw FormatError(p + ": MRC header: ispg " + std::to_string(h.ispg) + " with mz " +
                        std::to_string(h.mz) + " and nz " + std::to_string(h.nz) +
                        " is a stack of volumes; unwedge reads one volume (split the stack "
                        "first, e.g. with IMOD's newstack)");
    }

    // Metadata.
    const int32_t m[3] = {h.mx, h.my, h.mz};
    const char* m_names[3] = {"mx", "my", "mz"};
    for (int i = 0; i < 3; ++i) {
      if (m[i] > 0) {
        meta_.voxel_size[i] = double(h.cella[i]) / m[i];
      } else {
        if (!opts.permissive) {
          throw FormatError(p + ": MRC header: " + m_names[i] + " " + std::to_string(m[i]) +
                            " must be positive (use --permissive to accept it)");
        }
        meta_.voxel_size[i] = xyz[i] > 0 ? double(h.cella[i]) / xyz[i] : 0.0;
        warn(std::string(m_names[i]) + " " + std::to_string(m[i]) +
             " is not positive; voxel size taken from the dimension instead");
      }
      if (!(meta_.voxel_size[i] > 0)) {
        warnings_.push_back(std::string("voxel size along ") + "xyz"[i] + " is " +
                            fmt_num(meta_.voxel_size[i]) + " A (cella not set)");
      }
    }
    for (int i = 0; i < 3; ++i) meta_.origin[i] = h.origin[i];
    meta_.nstart = nstart_xyz;
    meta_.ispg = h.ispg;
    meta_.exttyp = trim_label(h.exttyp, 4);
    int nlabl = h.nlabl;
    if (nlabl < 0 || nlabl > 10) {
      warn("nlabl " + std::to_string(nlabl) + " is outside 0..10; clamped");
      nlabl = std::clamp(nlabl, 0, 10);
    }
    for (int i = 0; i < nlabl; ++i) meta_.labels.push_back(trim_label(h.labels[i], 80));
    if (h.nsymbt > 0) {
      meta_.ext_header.resize(size_t(h.nsymbt));
      pread_all(fd_, meta_.ext_header.data(), h.nsymbt, kHeaderBytes, p);
    }
    data_offset_ = kHeaderBytes + h.nsymbt;
    permissive_ = opts.permissive;
    // Read-only mapping for read_box: pages are touched only when a box needs them. (A file
    // truncated by another process while mapped would raise SIGBUS.)
    void* base = ::mmap(nullptr, size_t(need), PROT_READ, MAP_SHARED, fd_, 0);
    if (base == MAP_FAILED) throw IoError(p + ": cannot map: " + std::strerror(errno));
    map_base_ = base;
    map_bytes_ = need;
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

MrcFile::~MrcFile() {
  if (map_base_ != nullptr) ::munmap(map_base_, size_t(map_bytes_));
  if (fd_ >= 0) ::close(fd_);
}

Volume MrcFile::read() const {
  const MrcHeader& h = header_;
  const int eb = mode_bytes(h.mode);
  const int64_t n = int64_t(h.nx) * h.ny * h.nz;
  // Raw values in file order [sections, rows, columns]; one buffer, read in big chunks.
  at::Tensor raw = torch::empty({h.nz, h.ny, h.nx}, at::TensorOptions(mode_dtype(h.mode, unsigned_bytes_)));
  pread_all(fd_, static_cast<char*>(raw.data_ptr()), n * eb, data_offset_, path_);
  if (swap_) swap_bytes(raw.data_ptr(), n, eb);
  at::Tensor vals = raw_to_float(raw, h.mode);  // no copy for little-endian mode 2
  Volume v;
  v.data = to_space(vals).contiguous();
  v.meta = meta_;
  check_zero_stats(v.data);
  return v;
}

at::Tensor MrcFile::to_space(const at::Tensor& file_order) const {
  // File dim of each space axis: columns are dim 2, rows dim 1, sections dim 0.
  auto file_dim = [&](int axis) {
    return header_.mapc == axis ? 2 : header_.mapr == axis ? 1 : 0;
  };
  if (header_.mapc == 1 && header_.mapr == 2 && header_.maps == 3) return file_order;
  return file_order.permute({file_dim(3), file_dim(2), file_dim(1)});  // [Z, Y, X]
}

void MrcFile::check_zero_stats(const at::Tensor& data) const {
  const MrcHeader& h = header_;
  if (permissive_ || !(h.dmin == 0 && h.dmax == 0 && h.dmean == 0 && h.rms == 0)) return;
  if (data.numel() == 0) return;
  double amax = data.abs().max().item<double>();
  if (amax != 0) {
    throw FormatError(path_ + ": MRC header: statistics dmin dmax dmean rms are all 0 but the "
                      "data holds values up to |" + fmt_num(amax) +
                      "| (use --permissive to accept it)");
  }
}

void MrcFile::release_before(int64_t z) const {
  const int64_t eb = mode_bytes(header_.mode);
  if (map_base_ == nullptr || header_.maps != 3 || z <= 0 || eb == 0) return;
  const int64_t end = data_offset_ + std::min<int64_t>(z, header_.nz) * int64_t(header_.nx) *
                                         int64_t(header_.ny) * eb;
  const int64_t page = ::sysconf(_SC_PAGESIZE);
  const int64_t len = std::min(end, map_bytes_) / page * page;
  if (len > 0) ::madvise(map_base_, size_t(len), MADV_DONTNEED);
}

at::Tensor MrcFile::read_box(int64_t z0, int64_t z1, int64_t y0, int64_t y1, int64_t x0,
                             int64_t x1) const {
  const int64_t lo[3] = {z0, y0, x0}, hi[3] = {z1, y1, x1};
  const char* names = "zyx";
  for (int i = 0; i < 3; ++i) {
    if (lo[i] < 0 || hi[i] > shape_[i] || lo[i] >= hi[i]) {
      throw ShapeError(path_ + ": box " + names[i] + " range [" + std::to_string(lo[i]) + ", " +
                       std::to_string(hi[i]) + ") is empty or outside [0, " +
                       std::to_string(shape_[i]) + ")");
    }
  }
  const MrcHeader& h = header_;
  const int eb = mode_bytes(h.mode);
  // The file is mapped read-only (in the constructor); a box is a strided view of its bytes,
  // copied out by one tensor op. This works for any axis order without reading the whole file.
  // Box bounds in file order: section, row, column ranges.
  auto range_of_axis = [&](int axis, int64_t& a, int64_t& b) {  // axis 1=x, 2=y, 3=z
    a = lo[3 - axis];
    b = hi[3 - axis];
  };
  int64_t s0, s1, r0, r1, c0, c1;
  range_of_axis(h.maps, s0, s1);
  range_of_axis(h.mapr, r0, r1);
  range_of_axis(h.mapc, c0, c1);
  at::Tensor bytes = torch::from_blob(static_cast<char*>(map_base_) + data_offset_,
                                      {h.nz, h.ny, int64_t(h.nx) * eb}, at::kByte);  // [S, R, C*eb]
  // Always a copy (clone, not contiguous(): the mapping is read-only and the bytes may be
  // swapped in place); copying bytes avoids any alignment assumption about 1024 + nsymbt.
  at::Tensor raw = bytes.slice(0, s0, s1).slice(1, r0, r1).slice(2, c0 * eb, c1 * eb)
                       .clone(at::MemoryFormat::Contiguous);
  raw = raw.view(mode_dtype(h.mode, unsigned_bytes_));  // [s, r, c]
  if (swap_) swap_bytes(raw.data_ptr(), raw.numel(), eb);
  at::Tensor out = to_space(raw_to_float(raw, h.mode)).contiguous();  // [z, y, x]
  check_zero_stats(out);
  return out;
}

Volume mrc_read(const std::string& path, MrcReadOptions opts) { return MrcFile(path, opts).read(); }

// ---- writing ----------------------------------------------------------------------------

struct MrcSlabWriter::Impl {
  std::string path;
  std::array<int64_t, 3> shape;  // [Z, Y, X]
  VolumeMeta meta;
  MrcWriteOptions opts;
  std::unique_ptr<AtomicOutput> out;  ///< the creator's temporary (null for attached writers)
  std::string tmp;
  int fd = -1;
  int64_t data_offset = 0;
  std::vector<bool> written;
  // Running statistics over the stored values (Chan et al. pairwise combination, in double).
  int64_t count = 0;
  double mean = 0, m2 = 0;
  double vmin = std::numeric_limits<double>::infinity();
  double vmax = -std::numeric_limits<double>::infinity();

  Impl(std::string p, std::array<int64_t, 3> s, VolumeMeta m, MrcWriteOptions o)
      : path(std::move(p)), shape(s), meta(std::move(m)), opts(std::move(o)) {}
  ~Impl() {
    if (fd >= 0) ::close(fd);
  }

  MrcHeader header() const {
    MrcHeader h;
    h.nx = int32_t(shape[2]);
    h.ny = int32_t(shape[1]);
    h.nz = int32_t(shape[0]);
    h.mode = opts.mode;
    h.nxstart = meta.nstart[0];
    h.nystart = meta.nstart[1];
    h.nzstart = meta.nstart[2];
    h.mx = h.nx;
    h.my = h.ny;
    h.mz = h.nz;
    for (int i = 0; i < 3; ++i) h.cella[i] = float(meta.voxel_size[i] * double(shape[2 - i]));
    // A single image stays an image (ispg 0); a volume is space group 1 unless one was given.
    h.ispg = (meta.ispg == 0 && h.nz > 1) ? 1 : meta.ispg;
    if (opts.keep_ext_header && !meta.ext_header.empty()) {
      h.nsymbt = int32_t(meta.ext_header.size());
      std::memset(h.exttyp, ' ', 4);
      std::memcpy(h.exttyp, meta.exttyp.data(), std::min<size_t>(4, meta.exttyp.size()));
    }
    for (int i = 0; i < 3; ++i) h.origin[i] = float(meta.origin[i]);
    std::vector<std::string> labels;
    for (const auto& l : meta.labels) {
      if (!l.empty() && labels.size() < 10) labels.push_back(l);
    }
    if (!opts.label.empty()) {
      if (labels.size() == 10) labels.erase(labels.begin() + 1);  // keep the first (origin)
      labels.push_back(opts.label);
    }
    h.nlabl = int32_t(labels.size());
    for (size_t i = 0; i < labels.size(); ++i) {
      std::memset(h.labels[i], ' ', 80);
      std::memcpy(h.labels[i], labels[i].data(), std::min<size_t>(80, labels[i].size()));
    }
    if (count > 0) {
      h.dmin = float(vmin);
      h.dmax = float(vmax);
      h.dmean = float(mean);
      h.rms = float(std::sqrt(m2 / double(count)));
    }
    return h;
  }
};

MrcSlabWriter::MrcSlabWriter(std::string path, std::array<int64_t, 3> shape, VolumeMeta meta,
                             MrcWriteOptions opts) {
  if (opts.mode != 2 && opts.mode != 12) {
    throw ValueError(path + ": output mode " + std::to_string(opts.mode) +
                     " cannot be written (2 float32 or 12 float16)");
  }
  for (int i = 0; i < 3; ++i) {
    if (shape[i] <= 0 || shape[i] > std::numeric_limits<int32_t>::max()) {
      throw ShapeError(path + ": output dimension " + std::string(1, "ZYX"[i]) + " " +
                       std::to_string(shape[i]) + " must be in 1..2^31-1");
    }
  }
  impl_ = std::make_unique<Impl>(std::move(path), shape, std::move(meta), std::move(opts));
  Impl& w = *impl_;
  w.out = std::make_unique<AtomicOutput>(w.path, w.opts.overwrite);
  w.tmp = w.out->tmp_path();
  w.written.assign(size_t(shape[0]), false);
  const std::string& tmp = w.tmp;
  w.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (w.fd < 0) throw IoError(tmp + ": cannot create: " + std::strerror(errno));
  MrcHeader h = w.header();
  w.data_offset = kHeaderBytes + h.nsymbt;
  const int64_t total = w.data_offset + shape[0] * shape[1] * shape[2] * mode_bytes(w.opts.mode);
  if (::ftruncate(w.fd, total) != 0) {
    throw IoError(tmp + ": cannot size to " + std::to_string(total) + " bytes: " + std::strerror(errno));
  }
  if (h.nsymbt > 0) {
    pwrite_all(w.fd, w.meta.ext_header.data(), h.nsymbt, kHeaderBytes, tmp);
  }
}

MrcSlabWriter::~MrcSlabWriter() = default;  // AtomicOutput removes an uncommitted temporary

std::unique_ptr<MrcSlabWriter> MrcSlabWriter::attach(std::string path, std::string tmp_path,
                                                     std::array<int64_t, 3> shape, VolumeMeta meta,
                                                     MrcWriteOptions opts) {
  std::unique_ptr<MrcSlabWriter> wr(new MrcSlabWriter());
  wr->impl_ = std::make_unique<Impl>(std::move(path), shape, std::move(meta), std::move(opts));
  Impl& w = *wr->impl_;
  w.tmp = std::move(tmp_path);
  w.written.assign(size_t(shape[0]), false);
  w.fd = ::open(w.tmp.c_str(), O_WRONLY | O_CLOEXEC);
  if (w.fd < 0) throw IoError(w.tmp + ": cannot open the shared output: " + std::strerror(errno));
  w.data_offset = kHeaderBytes + w.header().nsymbt;
  struct stat st {};
  const int64_t total = w.data_offset + shape[0] * shape[1] * shape[2] * mode_bytes(w.opts.mode);
  if (::fstat(w.fd, &st) != 0 || int64_t(st.st_size) != total) {
    throw IoError(w.tmp + ": shared output is " + std::to_string(int64_t(st.st_size)) +
                  " bytes, expected " + std::to_string(total));
  }
  return wr;
}

const std::string& MrcSlabWriter::tmp_path() const { return impl_->tmp; }

MrcStats MrcSlabWriter::stats() const {
  const Impl& w = *impl_;
  MrcStats s;
  s.count = w.count;
  s.mean = w.mean;
  s.m2 = w.m2;
  s.min = w.vmin;
  s.max = w.vmax;
  return s;
}

MrcStats mrc_stats_merge(const MrcStats& a, const MrcStats& b) {
  if (a.count == 0) return b;
  if (b.count == 0) return a;
  MrcStats m;
  m.count = a.count + b.count;
  const double delta = b.mean - a.mean;
  m.mean = a.mean + delta * double(b.count) / double(m.count);
  m.m2 = a.m2 + b.m2 + delta * delta * double(a.count) * double(b.count) / double(m.count);
  m.min = std::min(a.min, b.min);
  m.max = std::max(a.max, b.max);
  return m;
}

void MrcSlabWriter::close() {
  Impl& w = *impl_;
  if (w.fd < 0) return;
  const bool ok = ::fsync(w.fd) == 0;
  const int err = errno;
  const bool closed = ::close(w.fd) == 0;
  w.fd = -1;
  if (!ok || !closed) {
    throw IoError(w.tmp + ": flushing the shared output failed: " + std::strerror(ok ? errno : err));
  }
}

void MrcSlabWriter::commit_shared(const MrcStats& all) {
  Impl& w = *impl_;
  if (!w.out) throw IoError(w.path + ": only the writer that created the file commits it");
  if (w.fd < 0) throw IoError(w.path + ": commit called twice");
  const int64_t voxels = w.shape[0] * w.shape[1] * w.shape[2];
  if (all.count != voxels) {
    throw ValueError(w.path + ": the writers wrote " + std::to_string(all.count) + " of " +
                     std::to_string(voxels) + " voxels");
  }
  w.count = all.count;
  w.mean = all.mean;
  w.m2 = all.m2;
  w.vmin = all.min;
  w.vmax = all.max;
  std::fill(w.written.begin(), w.written.end(), true);  // the other writers' sections
  commit();
}

namespace {

struct SlabStats {
  int64_t nonfinite = 0;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  double sum = 0, sum_sq = 0;
};

// Statistics of n floats in one pass (blocks of 4096 summed in float-exact double partials).
SlabStats slab_stats(const float* p, int64_t n) {
  SlabStats st;
  for (int64_t i0 = 0; i0 < n; i0 += 4096) {
    const int64_t i1 = std::min(n, i0 + 4096);
    double s = 0, s2 = 0;
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    int64_t bad = 0;
    for (int64_t i = i0; i < i1; ++i) {
      const float v = p[i];
      bad += !std::isfinite(v);
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      s += v;
      s2 += double(v) * v;
    }
    st.nonfinite += bad;
    st.min = std::min(st.min, double(lo));
    st.max = std::max(st.max, double(hi));
    st.sum += s;
    st.sum_sq += s2;
  }
  return st;
}

}  // namespace

void MrcSlabWriter::write_slab(int64_t z0, const at::Tensor& slab) {
  Impl& w = *impl_;
  if (w.fd < 0) throw IoError(w.path + ": write_slab after commit");
  if (slab.dim() != 3 || slab.size(1) != w.shape[1] || slab.size(2) != w.shape[2]) {
    throw ShapeError(w.path + ": slab shape " + c10::str(slab.sizes()) + " does not fit [z, " +
                     std::to_string(w.shape[1]) + ", " + std::to_string(w.shape[2]) + "]");
  }
  const int64_t nzs = slab.size(0);
  if (z0 < 0 || z0 + nzs > w.shape[0]) {
    throw ShapeError(w.path + ": slab sections [" + std::to_string(z0) + ", " +
                     std::to_string(z0 + nzs) + ") outside [0, " + std::to_string(w.shape[0]) + ")");
  }
  for (int64_t z = z0; z < z0 + nzs; ++z) {
    if (w.written[size_t(z)]) {
      throw ValueError(w.path + ": section " + std::to_string(z) + " written twice");
    }
  }
  at::Tensor f = slab.to(at::kCPU, at::kFloat).contiguous();  // [z, Y, X]
  at::Tensor stored = w.opts.mode == 12 ? f.to(at::kHalf).contiguous() : f;
  at::Tensor vals = w.opts.mode == 12 ? stored.to(at::kFloat) : f;  // the values as stored
  // One pass over the stored values: finiteness and the statistics, accumulated in double.
  const SlabStats st = slab_stats(vals.data_ptr<float>(), vals.numel());
  if (st.nonfinite > 0) {
    check_finite(f, w.path + ": data to write");  // names the NaN and Inf counts of the input
    throw ValueError(w.path + ": " + std::to_string(st.nonfinite) +
                     " values exceed the float16 range (|v| > 65504) of mode 12; largest |v| " +
                     fmt_num(f.abs().max().item<double>()));
  }
  if (nzs > 0 && f.numel() > 0) {
    const int64_t n = vals.numel();
    const double mean = st.sum / double(n);
    const double m2 = std::max(0.0, st.sum_sq - st.sum * mean);
    const double delta = mean - w.mean;
    const int64_t tot = w.count + n;
    w.m2 += m2 + delta * delta * double(w.count) * double(n) / double(tot);
    w.mean += delta * double(n) / double(tot);
    w.count = tot;
    w.vmin = std::min(w.vmin, st.min);
    w.vmax = std::max(w.vmax, st.max);
  }
  const int64_t eb = mode_bytes(w.opts.mode);
  const int64_t off = w.data_offset + z0 * w.shape[1] * w.shape[2] * eb;
  pwrite_all(w.fd, static_cast<const char*>(stored.data_ptr()), stored.numel() * eb, off, w.tmp);
  for (int64_t z = z0; z < z0 + nzs; ++z) w.written[size_t(z)] = true;
}

void MrcSlabWriter::commit() {
  Impl& w = *impl_;
  if (!w.out) throw IoError(w.path + ": only the writer that created the file commits it");
  if (w.fd < 0) throw IoError(w.path + ": commit called twice");
  auto missing = std::find(w.written.begin(), w.written.end(), false);
  if (missing != w.written.end()) {
    throw ValueError(w.path + ": section " + std::to_string(missing - w.written.begin()) +
                     " was never written");
  }
  std::vector<unsigned char> hb = header_serialize(w.header());
  pwrite_all(w.fd, reinterpret_cast<const char*>(hb.data()), kHeaderBytes, 0, w.tmp);
  if (::close(w.fd) != 0) {
    w.fd = -1;
    throw IoError(w.tmp + ": close failed: " + std::strerror(errno));
  }
  w.fd = -1;
  w.out->commit();
}

void mrc_write(const std::string& path, const Volume& vol, const MrcWriteOptions& opts) {
  if (!vol.data.defined() || vol.data.dim() != 3) {
    throw ShapeError(path + ": volume to write must be a 3-D tensor [Z, Y, X]");
  }
  MrcSlabWriter w(path, {vol.data.size(0), vol.data.size(1), vol.data.size(2)}, vol.meta, opts);
  // Slabs of about 4 M voxels keep the float16/double temporaries small for big volumes.
  const int64_t plane = vol.data.size(1) * vol.data.size(2);
  const int64_t step = std::max<int64_t>(1, (int64_t(1) << 22) / std::max<int64_t>(1, plane));
  at::Tensor d = vol.data.cpu();
  for (int64_t z = 0; z < d.size(0); z += step) {
    w.write_slab(z, d.slice(0, z, std::min(z + step, d.size(0))));
  }
  w.commit();
}

void check_finite(const at::Tensor& t, const std::string& what) {
  if (!t.is_floating_point()) return;
  at::Tensor finite = torch::isfinite(t);
  if (finite.all().item<bool>()) return;
  int64_t nan = torch::isnan(t).sum().item<int64_t>();
  int64_t inf = t.numel() - finite.sum().item<int64_t>() - nan;
  throw FormatError(what + ": " + std::to_string(nan) + " NaN and " + std::to_string(inf) +
                    " Inf values");
}

void voxel_sizes_check_same(const std::string& path_a, const VolumeMeta& a,
                            const std::string& path_b, const VolumeMeta& b) {
  for (int i = 0; i < 3; ++i) {
    const double x = a.voxel_size[size_t(i)], y = b.voxel_size[size_t(i)];
    if (x > 0 && y > 0 && std::abs(x - y) > 1e-3 * std::max(x, y)) {
      throw ShapeError(path_a + " has voxel size " + fmt_num(x) + " A along " + "xyz"[i] +
                       " but " + path_b + " has " + fmt_num(y) +
                       " A: not two halves (or views) of one tomogram");
    }
  }
}

void halves_check_same_grid(const MrcFile& a, const MrcFile& b) {
  auto text = [](const std::array<int64_t, 3>& s) {  // [Z, Y, X] -> "X x Y x Z"
    return std::to_string(s[2]) + " x " + std::to_string(s[1]) + " x " + std::to_string(s[0]);
  };
  if (a.shape() != b.shape()) {
    throw ShapeError("halves differ in shape: " + a.path() + " is " + text(a.shape()) + " but " +
                     b.path() + " is " + text(b.shape()) + " voxels (X x Y x Z)");
  }
  voxel_sizes_check_same(a.path(), a.meta(), b.path(), b.meta());
}

Volume mrc_read_finite(const std::string& path, MrcReadOptions opts) {
  Volume v = mrc_read(path, opts);
  check_finite(v.data, path);
  return v;
}

}  // namespace unwedge
