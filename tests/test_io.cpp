// MRC2014 and tilt-file I/O. Reference files are produced by a byte writer in this file that
// shares no code with src/unwedge/io (field offsets typed in from the MRC2014 specification),
// and expected values come from brute-force loops over std::vectors.
#include <gtest/gtest.h>

#include <clocale>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <locale>
#include <random>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/io/mrc.h"
#include "unwedge/io/tilt.h"

namespace fs = std::filesystem;
using namespace unwedge;

namespace {

// ---- an independent MRC byte writer -------------------------------------------------------

struct RawMrc {
  int32_t nx = 5, ny = 4, nz = 3, mode = 2;
  int32_t mapc = 1, mapr = 2, maps = 3;
  int32_t mx = -1, my = -1, mz = -1;  // -1: same as nx, ny, nz
  float cella[3] = {10.f, 8.f, 6.f};  // Å
  float origin[3] = {1.5f, -2.f, 3.f};
  int32_t nstart[3] = {4, 5, 6};
  float stats[4] = {0.f, -1.f, -2.f, -1.f};  // dmin dmax dmean rms: "undetermined" per MRC2014
  int32_t nversion = 20140;
  char map[4] = {'M', 'A', 'P', ' '};
  bool big = false;
  bool stamp_zero = false;
  std::vector<char> ext;  // extended header
  char exttyp[4] = {0, 0, 0, 0};
  std::vector<std::string> labels;
  int32_t imod_flags = -1;  // >= 0: write the IMOD stamp and these flags
  std::vector<uint8_t> data;  // data bytes, already in the file's byte order
  int64_t truncate_data = 0;  // bytes cut from the end
};

void put32(std::vector<uint8_t>& b, int off, uint32_t v, bool big) {
  for (int i = 0; i < 4; ++i) {
    int shift = big ? 8 * (3 - i) : 8 * i;
    b[off + i] = uint8_t((v >> shift) & 0xFF);
  }
}
uint32_t fbits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

void write_raw(const std::string& path, const RawMrc& r) {
  std::vector<uint8_t> h(1024, 0);
  auto i32 = [&](int off, int32_t v) { put32(h, off, uint32_t(v), r.big); };
  auto f32 = [&](int off, float v) { put32(h, off, fbits(v), r.big); };
  i32(0, r.nx);
  i32(4, r.ny);
  i32(8, r.nz);
  i32(12, r.mode);
  for (int i = 0; i < 3; ++i) i32(16 + 4 * i, r.nstart[i]);
  i32(28, r.mx < 0 ? r.nx : r.mx);
  i32(32, r.my < 0 ? r.ny : r.my);
  i32(36, r.mz < 0 ? r.nz : r.mz);
  for (int i = 0; i < 3; ++i) f32(40 + 4 * i, r.cella[i]);
  for (int i = 0; i < 3; ++i) f32(52 + 4 * i, 90.f);
  i32(64, r.mapc);
  i32(68, r.mapr);
  i32(72, r.maps);
  f32(76, r.stats[0]);
  f32(80, r.stats[1]);
  f32(84, r.stats[2]);
  i32(88, 1);
  i32(92, int32_t(r.ext.size()));
  std::memcpy(&h[104], r.exttyp, 4);
  i32(108, r.nversion);
  if (r.imod_flags >= 0) {
    i32(152, 1146047817);
    i32(156, r.imod_flags);
  }
  for (int i = 0; i < 3; ++i) f32(196 + 4 * i, r.origin[i]);
  std::memcpy(&h[208], r.map, 4);
  if (!r.stamp_zero) {
    h[212] = r.big ? 0x11 : 0x44;
    h[213] = r.big ? 0x11 : 0x44;
  }
  f32(216, r.stats[3]);
  i32(220, int32_t(r.labels.size()));
  for (size_t i = 0; i < r.labels.size(); ++i) {
    std::memset(&h[224 + 80 * i], ' ', 80);
    std::memcpy(&h[224 + 80 * i], r.labels[i].data(), r.labels[i].size());
  }
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(h.data()), 1024);
  f.write(r.ext.data(), std::streamsize(r.ext.size()));
  f.write(reinterpret_cast<const char*>(r.data.data()),
          std::streamsize(int64_t(r.data.size()) - r.truncate_data));
}

/// float -> IEEE half bits for values that are exact normal halves (or zero).
uint16_t half_bits(float f) {
  if (f == 0.f) return 0;
  uint32_t u = fbits(f);
  uint32_t sign = u >> 31, exp = (u >> 23) & 0xFF, mant = u & 0x7FFFFF;
  return uint16_t((sign << 15) | ((exp - 127 + 15) << 10) | (mant >> 13));
}

/// Values for a mode, in file order, and their bytes in the given byte order.
std::vector<float> make_values(int mode, int64_t n, bool imod_unsigned, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) {
    switch (mode) {
      case 0: x = imod_unsigned ? float(rng() % 256) : float(int(rng() % 256) - 128); break;
      case 1: x = float(int(rng() % 65536) - 32768); break;
      case 6: x = float(rng() % 65536); break;
      case 12: x = float(int(rng() % 4001) - 2000) / 8.f; break;  // exact in float16
      default: x = std::uniform_real_distribution<float>(-3.f, 5.f)(rng); break;
    }
  }
  return v;
}

std::vector<uint8_t> encode(const std::vector<float>& v, int mode, bool big) {
  std::vector<uint8_t> b;
  auto push = [&](uint32_t bits, int nbytes) {
    for (int i = 0; i < nbytes; ++i) {
      int shift = big ? 8 * (nbytes - 1 - i) : 8 * i;
      b.push_back(uint8_t((bits >> shift) & 0xFF));
    }
  };
  for (float x : v) {
    switch (mode) {
      case 0: push(uint32_t(int32_t(x)) & 0xFF, 1); break;
      case 1: push(uint32_t(int32_t(x)) & 0xFFFF, 2); break;
      case 6: push(uint32_t(x), 2); break;
      case 12: push(half_bits(x), 2); break;
      default: push(fbits(x), 4); break;
    }
  }
  return b;
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}
int32_t le32(const std::vector<uint8_t>& b, int off) {
  int32_t v;
  std::memcpy(&v, &b[off], 4);
  return v;
}
float lef(const std::vector<uint8_t>& b, int off) {
  float v;
  std::memcpy(&v, &b[off], 4);
  return v;
}

class IoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("unwedge_test_io_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  /// Files in the folder (to prove no temporary is left behind).
  size_t n_files() const {
    return size_t(std::distance(fs::directory_iterator(dir_), fs::directory_iterator{}));
  }
  fs::path dir_;
};

/// Expects `fn` to throw E with a message containing every `parts` entry.
template <typename E, typename F>
void expect_throw_msg(F fn, std::vector<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected one mentioning " << parts[0];
  } catch (const E& e) {
    std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }
}

at::Tensor from_vec(const std::vector<float>& v, std::vector<int64_t> shape) {
  return torch::tensor(v).reshape(shape);
}

}  // namespace

// ---- reading every mode, both byte orders ---------------------------------------------------

TEST_F(IoTest, ReadsEveryModeInBothByteOrders) {
  for (int mode : {0, 1, 2, 6, 12}) {
    for (bool big : {false, true}) {
      RawMrc r;
      r.mode = mode;
      r.big = big;
      auto vals = make_values(mode, int64_t(r.nx) * r.ny * r.nz, false, 7 + mode);
      r.data = encode(vals, mode, big);
      std::string p = path("m" + std::to_string(mode) + (big ? "be" : "le") + ".mrc");
      write_raw(p, r);
      MrcFile f(p);
      EXPECT_EQ(f.byte_swapped(), big);
      Volume v = f.read();
      ASSERT_EQ(v.data.sizes(), (at::IntArrayRef{3, 4, 5})) << "mode " << mode;
      EXPECT_EQ(v.data.scalar_type(), at::kFloat);
      // Exact: every value is representable in float32.
      EXPECT_TRUE(torch::equal(v.data, from_vec(vals, {3, 4, 5}))) << "mode " << mode << " big " << big;
      EXPECT_DOUBLE_EQ(v.meta.voxel_size[0], 10.0 / 5);
      EXPECT_DOUBLE_EQ(v.meta.voxel_size[1], 8.0 / 4);
      EXPECT_DOUBLE_EQ(v.meta.voxel_size[2], 6.0 / 3);
      EXPECT_DOUBLE_EQ(v.meta.origin[0], 1.5);
      EXPECT_DOUBLE_EQ(v.meta.origin[1], -2.0);
      EXPECT_EQ(v.meta.nstart, (std::array<int32_t, 3>{4, 5, 6}));
    }
  }
}

TEST_F(IoTest, Mode0HonoursImodUnsignedFlag) {
  RawMrc r;
  r.mode = 0;
  auto vals = make_values(0, 60, /*imod_unsigned=*/true, 3);
  r.data = encode(vals, 0, false);
  r.imod_flags = 0;  // bit 0 clear: unsigned bytes
  write_raw(path("u.mrc"), r);
  MrcFile fu(path("u.mrc"));
  EXPECT_TRUE(fu.unsigned_bytes());
  EXPECT_TRUE(torch::equal(fu.read().data, from_vec(vals, {3, 4, 5})));
  r.imod_flags = 1;  // bit 0 set: signed bytes, so 200 reads as -56
  write_raw(path("s.mrc"), r);
  MrcFile fs_(path("s.mrc"));
  EXPECT_FALSE(fs_.unsigned_bytes());
  std::vector<float> signed_vals;
  for (float x : vals) signed_vals.push_back(x >= 128 ? x - 256 : x);
  EXPECT_TRUE(torch::equal(fs_.read().data, from_vec(signed_vals, {3, 4, 5})));
}

TEST_F(IoTest, EveryAxisOrderIsReturnedAsZYX) {
  // Space sizes X=5, Y=4, Z=3; the file stores columns along mapc, rows along mapr, ...
  const int64_t sx = 5, sy = 4, sz = 3;
  const int perms[6][3] = {{1, 2, 3}, {1, 3, 2}, {2, 1, 3}, {2, 3, 1}, {3, 1, 2}, {3, 2, 1}};
  for (auto& pm : perms) {
    const int64_t size_of[4] = {0, sx, sy, sz};
    RawMrc r;
    r.mapc = pm[0];
    r.mapr = pm[1];
    r.maps = pm[2];
    r.nx = int32_t(size_of[pm[0]]);
    r.ny = int32_t(size_of[pm[1]]);
    r.nz = int32_t(size_of[pm[2]]);
    r.mx = int32_t(sx);  // mx, my, mz and cella are along space x, y, z
    r.my = int32_t(sy);
    r.mz = int32_t(sz);
    r.big = pm[0] == 3;
    auto vals = make_values(2, sx * sy * sz, false, 11);  // file order
    r.data = encode(vals, 2, r.big);
    write_raw(path("p.mrc"), r);
    // Brute force: file index (s, r, c) holds the voxel whose coordinate along axis mapc is c...
    std::vector<float> expect(size_t(sx * sy * sz));
    for (int64_t s = 0; s < r.nz; ++s)
      for (int64_t rr = 0; rr < r.ny; ++rr)
        for (int64_t c = 0; c < r.nx; ++c) {
          int64_t xyz[4] = {0, 0, 0, 0};
          xyz[pm[0]] = c;
          xyz[pm[1]] = rr;
          xyz[pm[2]] = s;
          expect[size_t((xyz[3] * sy + xyz[2]) * sx + xyz[1])] =
              vals[size_t((s * r.ny + rr) * r.nx + c)];
        }
    MrcFile f(path("p.mrc"));
    EXPECT_EQ(f.shape(), (std::array<int64_t, 3>{sz, sy, sx}));
    Volume v = f.read();
    at::Tensor want = from_vec(expect, {sz, sy, sx});
    EXPECT_TRUE(torch::equal(v.data, want)) << pm[0] << pm[1] << pm[2];
    EXPECT_DOUBLE_EQ(v.meta.voxel_size[0], 10.0 / 5);
    EXPECT_DOUBLE_EQ(v.meta.voxel_size[2], 6.0 / 3);
    // nstart follows the axes too: nxstart belongs to axis mapc.
    EXPECT_EQ(v.meta.nstart[pm[0] - 1], 4);
    EXPECT_EQ(v.meta.nstart[pm[2] - 1], 6);
    EXPECT_TRUE(torch::equal(f.read_box(1, 3, 0, 3, 2, 5), want.slice(0, 1, 3).slice(1, 0, 3).slice(2, 2, 5)));
  }
}

TEST_F(IoTest, BlockReadsEqualSlicesOfTheFullRead) {
  std::mt19937 rng(5);
  for (int mode : {1, 2, 12}) {
    RawMrc r;
    r.nx = 23;
    r.ny = 17;
    r.nz = 11;
    r.mode = mode;
    r.big = mode == 1;
    r.ext.assign(6, 'e');  // data offset 1030: not a multiple of the element size
    std::memcpy(r.exttyp, "AGAR", 4);
    r.data = encode(make_values(mode, 23 * 17 * 11, false, 9), mode, r.big);
    write_raw(path("b.mrc"), r);
    MrcFile f(path("b.mrc"));
    at::Tensor full = f.read().data;
    for (int t = 0; t < 20; ++t) {
      int64_t lo[3], hi[3];
      const int64_t n[3] = {11, 17, 23};
      for (int a = 0; a < 3; ++a) {
        lo[a] = rng() % n[a];
        hi[a] = lo[a] + 1 + rng() % (n[a] - lo[a]);
      }
      at::Tensor box = f.read_box(lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]);
      EXPECT_TRUE(torch::equal(box, full.slice(0, lo[0], hi[0]).slice(1, lo[1], hi[1]).slice(2, lo[2], hi[2])));
    }
    EXPECT_THROW(f.read_box(0, 12, 0, 1, 0, 1), ShapeError);
    EXPECT_THROW(f.read_box(3, 3, 0, 1, 0, 1), ShapeError);
  }
}

// ---- writing --------------------------------------------------------------------------------

TEST_F(IoTest, WriteRoundTripAndHeaderFields) {
  for (int mode : {2, 12}) {
    Volume v;
    auto vals = make_values(mode == 12 ? 12 : 2, 6 * 7 * 8, false, 21);
    v.data = from_vec(vals, {6, 7, 8});
    v.meta.voxel_size = {2.5, 3.0, 4.0};
    v.meta.origin = {10.0, -20.0, 30.5};
    v.meta.nstart = {1, 2, 3};
    v.meta.labels = {"first label", "second"};
    std::string p = path("w" + std::to_string(mode) + ".mrc");
    MrcWriteOptions o;
    o.mode = mode;
    o.label = "unwedge test: added";
    mrc_write(p, v, o);
    EXPECT_EQ(n_files(), mode == 2 ? 1u : 2u) << "no temporary left";
    Volume back = mrc_read(p);
    EXPECT_TRUE(torch::equal(back.data, v.data)) << "mode " << mode << " (values exact in it)";
    EXPECT_EQ(back.meta.voxel_size, v.meta.voxel_size);
    EXPECT_EQ(back.meta.origin, v.meta.origin);
    EXPECT_EQ(back.meta.nstart, v.meta.nstart);
    EXPECT_EQ(back.meta.labels, (std::vector<std::string>{"first label", "second", "unwedge test: added"}));
    // Header bytes checked against the specification, statistics against a double loop.
    auto b = file_bytes(p);
    ASSERT_EQ(b.size(), 1024u + 6 * 7 * 8 * (mode == 2 ? 4 : 2));
    EXPECT_EQ(le32(b, 0), 8);
    EXPECT_EQ(le32(b, 8), 6);
    EXPECT_EQ(le32(b, 12), mode);
    EXPECT_EQ(le32(b, 28), 8);  // mx = nx
    EXPECT_FLOAT_EQ(lef(b, 40), 2.5f * 8);  // cella.x = voxel * nx
    EXPECT_FLOAT_EQ(lef(b, 48), 4.0f * 6);
    EXPECT_EQ(le32(b, 64), 1);
    EXPECT_EQ(le32(b, 108), 20140);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(&b[208]), 4), "MAP ");
    EXPECT_EQ(b[212], 0x44);
    EXPECT_EQ(b[213], 0x44);
    EXPECT_EQ(le32(b, 220), 3);
    double mn = 1e30, mx = -1e30, sum = 0, sq = 0;
    for (float x : vals) {
      mn = std::min(mn, double(x));
      mx = std::max(mx, double(x));
      sum += x;
    }
    double mean = sum / vals.size();
    for (float x : vals) sq += (x - mean) * (x - mean);
    EXPECT_FLOAT_EQ(lef(b, 76), float(mn));
    EXPECT_FLOAT_EQ(lef(b, 80), float(mx));
    EXPECT_NEAR(lef(b, 84), mean, 1e-5 * std::abs(mx));
    EXPECT_NEAR(lef(b, 216), std::sqrt(sq / vals.size()), 1e-5 * std::abs(mx));
  }
}

TEST_F(IoTest, BigEndianInputRoundTripsThroughALittleEndianOutput) {
  RawMrc r;
  r.big = true;
  r.mode = 1;
  auto vals = make_values(1, 60, false, 4);
  r.data = encode(vals, 1, true);
  r.labels = {"from a big-endian machine"};
  write_raw(path("be.mrc"), r);
  Volume v = mrc_read(path("be.mrc"));
  mrc_write(path("le.mrc"), v, MrcWriteOptions{});
  MrcFile back(path("le.mrc"));
  EXPECT_FALSE(back.byte_swapped());
  EXPECT_TRUE(torch::equal(back.read().data, from_vec(vals, {3, 4, 5})));
  EXPECT_EQ(back.meta().labels, r.labels);
}

TEST_F(IoTest, LabelsKeepTheFirstAndDropTheOldestWhenFull) {
  Volume v;
  v.data = torch::zeros({1, 2, 2});
  for (int i = 0; i < 10; ++i) v.meta.labels.push_back("label " + std::to_string(i));
  MrcWriteOptions o;
  o.label = "new";
  mrc_write(path("l.mrc"), v, o);
  auto labels = MrcFile(path("l.mrc")).meta().labels;
  ASSERT_EQ(labels.size(), 10u);
  EXPECT_EQ(labels[0], "label 0");
  EXPECT_EQ(labels[1], "label 2");
  EXPECT_EQ(labels[9], "new");
}

TEST_F(IoTest, ExtendedHeaderIsKeptOnRequest) {
  RawMrc r;
  for (int i = 0; i < 160; ++i) r.ext.push_back(char(i * 7));
  std::memcpy(r.exttyp, "FEI1", 4);
  r.data = encode(make_values(2, 60, false, 2), 2, false);
  write_raw(path("x.mrc"), r);
  MrcFile f(path("x.mrc"));
  EXPECT_EQ(f.header().nsymbt, 160);
  EXPECT_EQ(f.meta().exttyp, "FEI1");
  EXPECT_EQ(f.meta().ext_header, r.ext);
  Volume v = f.read();
  MrcWriteOptions keep;
  keep.keep_ext_header = true;
  mrc_write(path("keep.mrc"), v, keep);
  auto b = file_bytes(path("keep.mrc"));
  EXPECT_EQ(le32(b, 92), 160);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(&b[104]), 4), "FEI1");
  EXPECT_TRUE(std::equal(r.ext.begin(), r.ext.end(), reinterpret_cast<char*>(&b[1024])));
  EXPECT_TRUE(torch::equal(mrc_read(path("keep.mrc")).data, v.data));
  mrc_write(path("drop.mrc"), v, MrcWriteOptions{});
  EXPECT_EQ(MrcFile(path("drop.mrc")).header().nsymbt, 0);
  EXPECT_EQ(file_bytes(path("drop.mrc")).size(), 1024u + 240);
}

TEST_F(IoTest, SlabWriterInAnyOrderEqualsWholeWrite) {
  Volume v;
  v.data = torch::randn({9, 6, 5}, torch::TensorOptions().dtype(torch::kFloat));
  torch::manual_seed(3);
  v.data = torch::randn({9, 6, 5});
  v.meta.voxel_size = {1.5, 1.5, 2.0};
  MrcWriteOptions o;
  o.label = "same label";
  mrc_write(path("whole.mrc"), v, o);
  {
    MrcSlabWriter w(path("slabs.mrc"), {9, 6, 5}, v.meta, o);
    w.write_slab(6, v.data.slice(0, 6, 9));
    w.write_slab(0, v.data.slice(0, 0, 2));
    w.write_slab(2, v.data.slice(0, 2, 6));
    EXPECT_THROW(w.write_slab(1, v.data.slice(0, 1, 2)), ValueError);  // twice
    w.commit();
  }
  auto a = file_bytes(path("whole.mrc")), b = file_bytes(path("slabs.mrc"));
  ASSERT_EQ(a.size(), b.size());
  EXPECT_TRUE(std::equal(a.begin() + 1024, a.end(), b.begin() + 1024)) << "data identical";
  EXPECT_TRUE(std::equal(a.begin() + 220, a.begin() + 1024, b.begin() + 220)) << "labels";
  EXPECT_EQ(lef(a, 76), lef(b, 76));
  EXPECT_EQ(lef(a, 80), lef(b, 80));
  EXPECT_NEAR(lef(a, 84), lef(b, 84), 1e-6);
  EXPECT_NEAR(lef(a, 216), lef(b, 216), 1e-6);
}

TEST_F(IoTest, UncommittedOrIncompleteSlabWriterLeavesNothing) {
  {
    MrcSlabWriter w(path("o.mrc"), {4, 3, 3}, VolumeMeta{}, MrcWriteOptions{});
    w.write_slab(0, torch::ones({2, 3, 3}));
    EXPECT_EQ(n_files(), 1u);  // the temporary
    expect_throw_msg<ValueError>([&] { w.commit(); }, {"o.mrc", "section 2 was never written"});
  }
  EXPECT_EQ(n_files(), 0u);
  MrcWriteOptions half;
  half.mode = 12;
  EXPECT_THROW(MrcSlabWriter(path("o.mrc"), {4, 3, 3}, VolumeMeta{}, half)
                   .write_slab(0, torch::ones({1, 3, 4})),
               ShapeError);
  EXPECT_EQ(n_files(), 0u);
}

TEST_F(IoTest, ExistingOutputIsKeptWithoutOverwriteAndOnFailure) {
  Volume v;
  v.data = torch::ones({2, 2, 2});
  mrc_write(path("out.mrc"), v, MrcWriteOptions{});
  auto before = file_bytes(path("out.mrc"));
  Volume v2;
  v2.data = torch::full({2, 2, 2}, 3.0);
  expect_throw_msg<ExistsError>([&] { mrc_write(path("out.mrc"), v2, MrcWriteOptions{}); },
                                {"out.mrc", "--overwrite"});
  EXPECT_EQ(file_bytes(path("out.mrc")), before);
  // A write that fails half way (NaN in the data) keeps the old file and leaves no temporary.
  v2.data[1][1][1] = NAN;
  MrcWriteOptions ow;
  ow.overwrite = true;
  expect_throw_msg<FormatError>([&] { mrc_write(path("out.mrc"), v2, ow); }, {"1 NaN and 0 Inf"});
  EXPECT_EQ(file_bytes(path("out.mrc")), before);
  EXPECT_EQ(n_files(), 1u);
  // float16 overflow is refused the same way.
  MrcWriteOptions half = ow;
  half.mode = 12;
  v2.data = torch::full({2, 2, 2}, 70000.0);
  expect_throw_msg<ValueError>([&] { mrc_write(path("out.mrc"), v2, half); }, {"float16", "65504"});
  EXPECT_EQ(file_bytes(path("out.mrc")), before);
  EXPECT_EQ(n_files(), 1u);
  v2.data = torch::full({2, 2, 2}, 3.0);
  mrc_write(path("out.mrc"), v2, ow);
  EXPECT_EQ(mrc_read(path("out.mrc")).data[0][0][0].item<float>(), 3.0f);
  MrcWriteOptions mode6 = ow;
  mode6.mode = 6;
  EXPECT_THROW(mrc_write(path("out.mrc"), v2, mode6), ValueError);
}

// ---- malformed input: one test each ---------------------------------------------------------

TEST_F(IoTest, MissingFile) {
  expect_throw_msg<IoError>([&] { MrcFile f(path("nope.mrc")); }, {"nope.mrc", "cannot open"});
}

TEST_F(IoTest, FileShorterThanHeader) {
  std::ofstream(path("tiny.mrc"), std::ios::binary) << std::string(1000, 'x');
  expect_throw_msg<FormatError>([&] { MrcFile f(path("tiny.mrc")); },
                                {"tiny.mrc", "1000 bytes", "1024-byte MRC header"});
}

TEST_F(IoTest, UnknownMode) {
  RawMrc r;
  r.mode = 5;
  r.data.assign(240, 0);
  write_raw(path("m5.mrc"), r);
  expect_throw_msg<FormatError>([&] { MrcFile f(path("m5.mrc")); },
                                {"m5.mrc: MRC header: mode 5 is not a known mode (0,1,2,6,12)"});
}

TEST_F(IoTest, NegativeOrZeroDimension) {
  RawMrc r;
  r.ny = -4;
  write_raw(path("neg.mrc"), r);
  expect_throw_msg<FormatError>([&] { MrcFile f(path("neg.mrc")); }, {"neg.mrc", "ny -4", "positive"});
  r.ny = 4;
  r.nz = 0;
  write_raw(path("zero.mrc"), r);
  expect_throw_msg<FormatError>([&] { MrcFile f(path("zero.mrc")); }, {"zero.mrc", "nz 0"});
}

TEST_F(IoTest, DimensionProductOverflow) {
  RawMrc r;
  r.nx = r.ny = r.nz = 2000000000;
  write_raw(path("huge.mrc"), r);
  expect_throw_msg<FormatError>([&] { MrcFile f(path("huge.mrc")); },
                                {"huge.mrc", "2000000000*2000000000*2000000000*4", "overflows"});
}

TEST_F(IoTest, DataShorterThanHeaderSays) {
  RawMrc r;
  r.data = encode(make_values(2, 60, false, 1), 2, false);
  r.truncate_data = 100;
  write_raw(path("short.mrc"), r);
  expect_throw_msg<FormatError>([&] { MrcFile f(path("short.mrc")); },
                                {"short.mrc: data is 100 bytes short", "= 1264 bytes, file has 1164"});
}

TEST_F(IoTest, ExtendedHeaderPastEndOfFile) {
  RawMrc r;
  r.ext.assign(10, 0);
  write_raw(path("ext.mrc"), r);  // no data
  std::vector<uint8_t> b = file_bytes(path("ext.mrc"));
  put32(b, 92, 5000, false);
  std::ofstream(path("ext.mrc"), std::ios::binary).write(reinterpret_cast<char*>(b.data()), std::streamsize(b.size()));
  expect_throw_msg<FormatError>([&] { MrcFile f(path("ext.mrc")); }, {"ext.mrc", "nsymbt 5000", "past the end"});
}

TEST_F(IoTest, NanAndInfAreCountedWhenCheckedForProcessing) {
  RawMrc r;
  auto vals = make_values(2, 60, false, 1);
  vals[3] = NAN;
  vals[10] = NAN;
  vals[20] = INFINITY;
  r.data = encode(vals, 2, false);
  write_raw(path("nan.mrc"), r);
  Volume v = mrc_read(path("nan.mrc"));
  expect_throw_msg<FormatError>([&] { check_finite(v.data, path("nan.mrc")); },
                                {"nan.mrc", "2 NaN and 1 Inf values"});
  EXPECT_NO_THROW(check_finite(torch::ones({3}), "ok"));
}

TEST_F(IoTest, StrictRejectsQuirksThatPermissiveAcceptsWithWarnings) {
  auto vals = make_values(2, 60, false, 8);
  RawMrc r;
  r.data = encode(vals, 2, false);
  r.map[3] = '\0';
  write_raw(path("map0.mrc"), r);
  expect_throw_msg<FormatError>([&] { MrcFile f(path("map0.mrc")); }, {"map0.mrc", "'MAP\\0'", "--permissive"});
  MrcFile ok(path("map0.mrc"), MrcReadOptions{true});
  EXPECT_EQ(ok.warnings().size(), 1u);
  EXPECT_TRUE(torch::equal(ok.read().data, from_vec(vals, {3, 4, 5})));

  RawMrc s;
  s.big = true;  // a big-endian file with no machine stamp: guessed from mode and dimensions
  s.stamp_zero = true;
  s.data = encode(vals, 2, true);
  write_raw(path("stamp.mrc"), s);
  expect_throw_msg<FormatError>([&] { MrcFile f(path("stamp.mrc")); }, {"stamp.mrc", "machine stamp 0x00 0x00"});
  MrcFile guessed(path("stamp.mrc"), MrcReadOptions{true});
  EXPECT_TRUE(guessed.byte_swapped());
  EXPECT_TRUE(torch::equal(guessed.read().data, from_vec(vals, {3, 4, 5})));

  RawMrc n;
  n.nversion = 12345;
  n.data = r.data;
  write_raw(path("ver.mrc"), n);
  expect_throw_msg<FormatError>([&] { MrcFile f(path("ver.mrc")); }, {"nversion 12345"});
  EXPECT_NO_THROW(MrcFile(path("ver.mrc"), MrcReadOptions{true}));
  n.nversion = 0;  // pre-2014 files: a quirk (issue 2, STYLE.md), accepted with --permissive
  write_raw(path("v0.mrc"), n);
  expect_throw_msg<FormatError>([&] { MrcFile f(path("v0.mrc")); }, {"v0.mrc", "nversion 0", "--permissive"});
  EXPECT_EQ(MrcFile(path("v0.mrc"), MrcReadOptions{true}).warnings().size(), 1u);

  RawMrc z;  // statistics all 0 (as AreTomo writes them) over non-zero data
  z.stats[0] = z.stats[1] = z.stats[2] = z.stats[3] = 0.f;
  z.data = r.data;
  write_raw(path("zs.mrc"), z);
  expect_throw_msg<FormatError>([&] { mrc_read(path("zs.mrc")); }, {"zs.mrc", "statistics", "all 0"});
  MrcFile zp(path("zs.mrc"), MrcReadOptions{true});
  EXPECT_EQ(zp.warnings().size(), 1u);
  EXPECT_TRUE(torch::equal(zp.read().data, from_vec(vals, {3, 4, 5})));
}

// ---- reference files from other programs ----------------------------------------------------

TEST(IoSamples, SharedSamplesReadWithShapesVoxelSizesAndValues) {
  const std::string dir = std::string(UNWEDGE_SHARED_DATA) + "/mrc_samples";
  if (!fs::is_directory(dir)) GTEST_SKIP() << dir << " absent: sample files not checked";
  // Reference values from python3-mrcfile 1.4.3 (which returns file order [sections, rows,
  // columns] without undoing mapc/mapr/maps). The EMDB files predate MRC2014 (nversion 0), so
  // they are read permissively.
  const MrcReadOptions permissive{true};
  {
    Volume v = mrc_read(dir + "/EMD-3197.map", permissive);
    EXPECT_EQ(v.data.sizes(), (at::IntArrayRef{20, 20, 20}));
    for (double s : v.meta.voxel_size) EXPECT_NEAR(s, 11.4, 1e-5);
    EXPECT_FLOAT_EQ(v.data[0][0][0].item<float>(), -1.8013091087341309f);
    EXPECT_FLOAT_EQ(v.data[5][7][11].item<float>(), 4.862180233001709f);
    EXPECT_NEAR(v.data.to(torch::kDouble).sum().item<double>(), 6268.896269149147, 1e-6 * 6268.9);
  }
  {
    MrcFile f(dir + "/EMD-3001.map", permissive);  // mapc 3, mapr 1, maps 2: file [25, 43, 73] -> [Z, Y, X]
    EXPECT_EQ(f.shape(), (std::array<int64_t, 3>{73, 25, 43}));
    EXPECT_EQ(f.header().nsymbt, 160);
    EXPECT_EQ(f.meta().ext_header.size(), 160u);
    EXPECT_NEAR(f.meta().voxel_size[0], 0.44825, 1e-6);
    EXPECT_NEAR(f.meta().voxel_size[1], 0.3925, 1e-6);
    EXPECT_NEAR(f.meta().voxel_size[2], 0.45874998, 1e-6);
    EXPECT_EQ(f.meta().nstart, (std::array<int32_t, 3>{-21, -12, 0}));  // x, y, z
    Volume v = f.read();
    // mrcfile d[s][r][c] is space (z = c, y = s, x = r).
    EXPECT_FLOAT_EQ(v.data[0][0][0].item<float>(), 0.04283447191119194f);
    EXPECT_FLOAT_EQ(v.data[72][24][42].item<float>(), 0.06724497675895691f);
    EXPECT_FLOAT_EQ(v.data[30][10][20].item<float>(), -0.0827791765332222f);
    EXPECT_FLOAT_EQ(v.data[5][3][40].item<float>(), 0.062228139489889145f);
    EXPECT_NEAR(v.data.to(torch::kDouble).sum().item<double>(), 41.82456039309909, 1e-4);
    EXPECT_TRUE(torch::equal(f.read_box(30, 31, 10, 11, 20, 21), v.data.slice(0, 30, 31).slice(1, 10, 11).slice(2, 20, 21)));
  }
  {
    MrcFile f(dir + "/float16.mrc", permissive);
    EXPECT_EQ(f.shape(), (std::array<int64_t, 3>{1, 64, 64}));
    EXPECT_EQ(f.header().mode, 12);
    EXPECT_NEAR(f.meta().voxel_size[0], 3.5953124, 1e-6);
    Volume v = f.read();
    EXPECT_EQ(v.data[0][10][20].item<float>(), 0.70556640625f);
    EXPECT_EQ(v.data[0][63][1].item<float>(), 0.335205078125f);
    EXPECT_NEAR(v.data.to(torch::kDouble).sum().item<double>(), 168.48581314086914, 1e-3);
  }
}

// ---- tilt files -----------------------------------------------------------------------------

TEST(IoTilt, ParsesCommentsBlankLinesAndSigns) {
  auto a = tilt_parse("# tilt series\n-60.0\n\n  -57 \r\n+3.5\n# note\n60\n", "t.tlt");
  EXPECT_EQ(a, (std::vector<double>{-60.0, -57.0, 3.5, 60.0}));
}

TEST(IoTilt, ErrorsNameFileAndLine) {
  expect_throw_msg<FormatError>([] { tilt_parse("1.0\n2,5\n", "a.tlt"); }, {"a.tlt:2", "'2,5'"});
  expect_throw_msg<FormatError>([] { tilt_parse("1.0\n\n3 4\n", "b.tlt"); }, {"b.tlt:3"});
  expect_throw_msg<FormatError>([] { tilt_parse("95\n", "c.tlt"); }, {"c.tlt:1", "[-90, 90]"});
  expect_throw_msg<FormatError>([] { tilt_parse("nan\n", "d.tlt"); }, {"d.tlt:1"});
  expect_throw_msg<IoError>([] { tilt_read("/nonexistent/x.tlt"); }, {"/nonexistent/x.tlt"});
}

TEST(IoTilt, OneDirectionIsNotATiltSeries) {
  const std::string dir = (fs::temp_directory_path() /
                           ("unwedge_tilt1_" + std::to_string(::getpid()))).string();
  fs::create_directories(dir);
  std::ofstream(dir + "/one.tlt") << "0\n";
  std::ofstream(dir + "/same.tlt") << "# two views, one angle\n5\n5.0\n";
  std::ofstream(dir + "/two.tlt") << "5\n-5\n";
  expect_throw_msg<FormatError>([&] { tilt_read(dir + "/one.tlt"); },
                                {"one.tlt", "1 tilt angle(s), all 0 degrees"});
  expect_throw_msg<FormatError>([&] { tilt_read(dir + "/same.tlt"); },
                                {"same.tlt", "2 tilt angle(s), all 5 degrees"});
  EXPECT_EQ(tilt_read(dir + "/two.tlt"), (std::vector<double>{5.0, -5.0}));
  fs::remove_all(dir);
}

TEST(IoMrc, HalvesOfDifferentVoxelSizesAreRefused) {
  VolumeMeta a, b;
  a.voxel_size = {10.0, 10.0, 10.0};
  b.voxel_size = {10.0, 10.0, 10.0 * (1 + 5e-4)};  // header rounding: the same size
  EXPECT_NO_THROW(voxel_sizes_check_same("a.mrc", a, "b.mrc", b));
  b.voxel_size = {10.0, 5.0, 10.0};
  expect_throw_msg<ShapeError>([&] { voxel_sizes_check_same("a.mrc", a, "b.mrc", b); },
                               {"a.mrc has voxel size 10 A along y", "b.mrc has 5 A"});
  b.voxel_size = {0.0, 0.0, 0.0};  // not set in b's header: nothing to compare
  EXPECT_NO_THROW(voxel_sizes_check_same("a.mrc", a, "b.mrc", b));
}

TEST(IoTilt, IndependentOfACommaDecimalLocale) {
  struct CommaPunct : std::numpunct<char> {
    char do_decimal_point() const override { return ','; }
  };
  std::locale old = std::locale::global(std::locale(std::locale::classic(), new CommaPunct));
  // If a real comma locale is installed, switch the C locale (strtod, printf) to it too.
  const char* c_loc = nullptr;
  for (const char* name : {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "ru_RU.UTF-8"}) {
    if (std::setlocale(LC_NUMERIC, name) != nullptr) {
      c_loc = name;
      break;
    }
  }
  std::vector<double> a = tilt_parse("-1.5\n2.25\n", "l.tlt");
  std::string dir = (fs::temp_directory_path() / ("unwedge_tilt_" + std::to_string(::getpid()))).string();
  fs::create_directories(dir);
  tilt_write(dir + "/w.tlt", {-1.5, 2.25, 60}, false);
  std::ifstream f(dir + "/w.tlt");
  std::string text((std::istreambuf_iterator<char>(f)), {});
  std::vector<double> back = tilt_read(dir + "/w.tlt");
  EXPECT_THROW(tilt_write(dir + "/w.tlt", {1}, false), ExistsError);
  fs::remove_all(dir);
  std::setlocale(LC_NUMERIC, "C");
  std::locale::global(old);
  EXPECT_EQ(a, (std::vector<double>{-1.5, 2.25})) << "C locale " << (c_loc ? c_loc : "none installed");
  EXPECT_EQ(text, "-1.50\n2.25\n60.00\n");
  EXPECT_EQ(back, (std::vector<double>{-1.5, 2.25, 60.0}));
}

// A reader streaming through a file in Z gives back the mapped pages of the sections it has
// passed (restore's tile reader does, so a large tomogram's restoration keeps its resident memory
// flat): the mapping's resident size, as the kernel reports it in /proc/self/smaps, drops, and
// reading those sections again still gives the file's values.
TEST_F(IoTest, ReleaseBeforeGivesBackMappedPagesAndReadsStayExact) {
  Volume v;
  v.data = torch::randn({32, 64, 256});  // 64 KiB per section
  mrc_write(path("stream.mrc"), v, MrcWriteOptions{});
  MrcFile f(path("stream.mrc"));
  auto resident_kb = [&] {  // Rss of this file's mapping
    std::ifstream smaps("/proc/self/smaps");
    int64_t kb = 0;
    bool ours = false;
    for (std::string line; std::getline(smaps, line);) {
      if (line.find(" ") != std::string::npos && line.find('-') < line.find(' ') &&
          std::isxdigit(static_cast<unsigned char>(line[0]))) {
        ours = line.find(path("stream.mrc")) != std::string::npos;
      } else if (ours && line.rfind("Rss:", 0) == 0) {
        kb += std::stoll(line.substr(4));
      }
    }
    return kb;
  };
  EXPECT_TRUE(torch::equal(f.read_box(0, 32, 0, 64, 0, 256), v.data));
  const int64_t all = resident_kb();
  EXPECT_GE(all, 32 * 64 - 64);  // the 2 MiB of data were touched
  f.release_before(24);
  const int64_t after = resident_kb();
  EXPECT_LE(after, all - 24 * 64 + 8) << "kB resident before " << all;
  EXPECT_TRUE(torch::equal(f.read_box(0, 32, 0, 64, 0, 256), v.data));
  f.release_before(0);   // nothing to give back
  f.release_before(99);  // past the end: the whole data
  EXPECT_TRUE(torch::equal(f.read_box(5, 6, 0, 64, 0, 256), v.data.slice(0, 5, 6)));
}
