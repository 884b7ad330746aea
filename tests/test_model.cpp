// model/: what a trained model is for the jobs: the statistics an input is normalised with
// (input, model, matching; one tomogram or a pair of halves), the device it runs on, and the
// verification of a model file's zip archive before LibTorch parses it.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/io/mrc.h"
#include "unwedge/model/checkpoint.h"
#include "unwedge/model/model.h"
#include "unwedge/model/zip_check.h"

#include "temp_dir.h"

using namespace unwedge;

namespace {

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("unwedge_test_model") {}
};

// Mean and (population) standard deviation of the central half of each axis of the volumes
// together, computed voxel by voxel.
NormStats central_stats(const std::vector<at::Tensor>& vols) {
  double sum = 0, sq = 0;
  int64_t n = 0;
  for (const auto& v : vols) {
    auto a = v.to(torch::kDouble).contiguous();
    const int64_t Z = a.size(0), Y = a.size(1), X = a.size(2);
    auto acc = a.accessor<double, 3>();
    for (int64_t z = Z / 4; z < Z / 4 + Z / 2; ++z)
      for (int64_t y = Y / 4; y < Y / 4 + Y / 2; ++y)
        for (int64_t x = X / 4; x < X / 4 + X / 2; ++x) {
          sum += acc[z][y][x];
          sq += acc[z][y][x] * acc[z][y][x];
          ++n;
        }
  }
  const double mean = sum / double(n);
  return {mean, std::sqrt(sq / double(n) - mean * mean)};
}

}  // namespace

// The choice of statistics, once for restore, sample and embed: an input's own central-region
// statistics (a pair: both halves' central regions together), the model's first training
// tomogram's, or the stored ones of the training input that is this very file.
TEST(ModelNorm, InputModelAndMatchingStatistics) {
  TempDir dir;
  torch::manual_seed(3);
  const at::Tensor even = 2.0 + 3.0 * torch::randn({16, 12, 8});
  const at::Tensor odd = -1.0 + 0.5 * torch::randn({16, 12, 8});
  mrc_write(dir / "even.mrc", Volume{even, {}}, MrcWriteOptions{});
  mrc_write(dir / "odd.mrc", Volume{odd, {}}, MrcWriteOptions{});
  MrcFile fe(dir / "even.mrc"), fo(dir / "odd.mrc");
  CheckpointInfo info;
  info.norm_mode = "central";
  info.norm_fraction = 0.5;
  info.inputs = {"/elsewhere/first.mrc", dir / "even.mrc"};
  info.norm = {{10.0, 2.0}, {20.0, 4.0}};

  const NormStats one = model_norm_stats(info, NormSource::input, {&fe}, "m.uwm");
  const NormStats want_one = central_stats({even});
  EXPECT_NEAR(one.mean, want_one.mean, 1e-9);
  EXPECT_NEAR(one.std, want_one.std, 1e-9);
  const NormStats pair = model_norm_stats(info, NormSource::input, {&fe, &fo}, "m.uwm");
  const NormStats want_pair = central_stats({even, odd});
  EXPECT_NEAR(pair.mean, want_pair.mean, 1e-9);
  EXPECT_NEAR(pair.std, want_pair.std, 1e-9);

  const NormStats model = model_norm_stats(info, NormSource::model, {&fo}, "m.uwm");
  EXPECT_EQ(model.mean, 10.0);
  EXPECT_EQ(model.std, 2.0);
  const NormStats matched = model_norm_stats(info, NormSource::matching, {&fe}, "m.uwm");
  EXPECT_EQ(matched.mean, 20.0) << "even.mrc is the second training input";
  const NormStats unmatched = model_norm_stats(info, NormSource::matching, {&fo}, "m.uwm");
  EXPECT_NEAR(unmatched.mean, central_stats({odd}).mean, 1e-9);

  CheckpointInfo none = info;
  none.norm.clear();
  EXPECT_THROW(model_norm_stats(none, NormSource::model, {&fe}, "m.uwm"), FormatError);
  EXPECT_THROW(model_norm_stats(info, NormSource::input, {}, "m.uwm"), ValueError);
  EXPECT_EQ(norm_source_parse("model"), NormSource::model);
  EXPECT_THROW(norm_source_parse("median"), ValueError);
}

// "model" runs where the model was trained when that device is here, else on the CPU; other
// names are resolved as everywhere.
TEST(ModelDevice, TrainingDeviceWhenAvailableElseCpu) {
  CheckpointInfo info;
  info.train_options = {{"device", "cpu"}};
  EXPECT_EQ(model_device(info, "model"), "cpu");
  info.train_options = {{"device", "cuda:0"}};
  EXPECT_EQ(model_device(info, "model"), torch::cuda::is_available() ? "cuda:0" : "cpu");
  info.train_options = nlohmann::json::object();  // an old checkpoint without the device
  EXPECT_EQ(model_device(info, "model"), "cpu");
  EXPECT_EQ(model_device(info, "cpu", /*local_rank=*/2), "cpu");
  EXPECT_EQ(model_device(info, "auto"), torch::cuda::is_available() ? "cuda" : "cpu");
}

// ---- Model files are verified as zip archives before LibTorch parses them (model/zip_check.h).

namespace {

std::string read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_file_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << bytes;
}

void put16(std::string& s, uint32_t v) {
  s += char(v & 0xff);
  s += char((v >> 8) & 0xff);
}
void put32(std::string& s, uint32_t v) {
  put16(s, v & 0xffff);
  put16(s, v >> 16);
}
uint32_t get32(const std::string& s, size_t at) {
  return uint32_t(uint8_t(s[at])) | uint32_t(uint8_t(s[at + 1])) << 8 |
         uint32_t(uint8_t(s[at + 2])) << 16 | uint32_t(uint8_t(s[at + 3])) << 24;
}
uint16_t get16(const std::string& s, size_t at) {
  return uint16_t(uint8_t(s[at]) | uint8_t(s[at + 1]) << 8);
}

// A zip archive of stored entries written field by field from the format's description
// (APPNOTE 4.3.7, 4.3.12, 4.3.16), with the CRC-32 given, not computed.
struct RawEntry {
  std::string name, data;
  uint32_t crc;
};
std::string make_stored_zip(const std::vector<RawEntry>& entries) {
  std::string zip, dir;
  for (const auto& e : entries) {
    const uint32_t offset = uint32_t(zip.size());
    put32(zip, 0x04034b50);
    put16(zip, 20);  // version needed
    put16(zip, 0);   // flags
    put16(zip, 0);   // stored
    put32(zip, 0);   // time, date
    put32(zip, e.crc);
    put32(zip, uint32_t(e.data.size()));
    put32(zip, uint32_t(e.data.size()));
    put16(zip, uint32_t(e.name.size()));
    put16(zip, 0);  // extra
    zip += e.name + e.data;
    put32(dir, 0x02014b50);
    put16(dir, 20);
    put16(dir, 20);
    put16(dir, 0);
    put16(dir, 0);
    put32(dir, 0);
    put32(dir, e.crc);
    put32(dir, uint32_t(e.data.size()));
    put32(dir, uint32_t(e.data.size()));
    put16(dir, uint32_t(e.name.size()));
    put16(dir, 0);  // extra
    put16(dir, 0);  // comment
    put16(dir, 0);  // disk
    put16(dir, 0);  // internal attributes
    put32(dir, 0);  // external attributes
    put32(dir, offset);
    dir += e.name;
  }
  const uint32_t dir_offset = uint32_t(zip.size());
  zip += dir;
  put32(zip, 0x06054b50);
  put16(zip, 0);
  put16(zip, 0);
  put16(zip, uint32_t(entries.size()));
  put16(zip, uint32_t(entries.size()));
  put32(zip, uint32_t(dir.size()));
  put32(zip, dir_offset);
  put16(zip, 0);  // comment
  return zip;
}

/// What `fn` threw as a FormatError (or ZipDamage), "" when it did not throw.
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const FormatError& e) {
    return e.what();
  } catch (const ZipDamage& e) {
    return e.what();
  }
  return "";
}

/// Runs tests/interop/zip_entries.py; "" with `skip` set when Python is absent.
std::string python_zip_entries(const std::string& verb, const std::string& path, bool& skip) {
  skip = !std::filesystem::exists("/usr/bin/python3");
  if (skip) return "";
  const std::string cmd = "/usr/bin/python3 " UNWEDGE_SOURCE_DIR "/tests/interop/zip_entries.py " +
                          verb + " '" + path + "' 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return "popen failed";
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  const int rc = pclose(p);
  EXPECT_EQ(WEXITSTATUS(rc), 0) << out;
  return out;
}

/// Our entries in zip_entries.py's format.
std::string our_zip_entries(const std::string& path) {
  std::ostringstream s;
  for (const auto& e : zip_verify(path)) {
    char crc[16];
    std::snprintf(crc, sizeof crc, "%08x", unsigned(e.crc32));
    s << e.name << ' ' << e.method << ' ' << e.compressed_size << ' ' << e.size << ' ' << crc
      << ' ' << e.header_offset << ' ' << e.flags << '\n';
  }
  s << "testzip OK\n";
  return s.str();
}

/// One line of zip_entries.py's listing.
struct ListedEntry {
  std::string name;
  int method = 0;
  uint64_t compressed_size = 0, size = 0, header_offset = 0;
  uint32_t crc = 0;
  int flags = 0;
};
std::vector<ListedEntry> parse_listing(const std::string& listed) {
  std::vector<ListedEntry> out;
  std::istringstream in(listed);
  std::string line;
  while (std::getline(in, line) && line.rfind("testzip ", 0) != 0) {
    std::istringstream f(line);
    ListedEntry e;
    std::string crc;
    f >> e.name >> e.method >> e.compressed_size >> e.size >> crc >> e.header_offset >> e.flags;
    EXPECT_FALSE(f.fail()) << line;
    e.crc = uint32_t(std::stoul(crc, nullptr, 16));
    out.push_back(e);
  }
  return out;
}

std::string hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", unsigned(v));
  return b;
}

void set32(std::string& s, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) s[at + i] = char((v >> (8 * i)) & 0xff);
}

std::unique_ptr<Method> tiny_n2n() {
  torch::manual_seed(4);
  return method_create("n2n", {{"depth", 1}, {"base_channels", 4}, {"convs_per_level", 1}});
}

}  // namespace

// The CRC-32 check value of "123456789" is 0xCBF43926 (the standard CRC-32 catalogue); an archive
// written by hand with it verifies, the same archive recording 0xCBF43927 or one byte of the data
// changed is refused naming the entry.
TEST(CheckpointArchive, Crc32CheckValueAcceptedAndAWrongOneRefused) {
  TempDir dir;
  write_file_bytes(dir / "good.zip", make_stored_zip({{"a/first", "", 0x00000000},
                                                      {"a/check", "123456789", 0xCBF43926}}));
  const auto entries = zip_verify(dir / "good.zip");
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[1].name, "a/check");
  EXPECT_EQ(entries[1].crc32, 0xCBF43926u);
  EXPECT_EQ(entries[1].size, 9u);
  write_file_bytes(dir / "wrong.zip", make_stored_zip({{"a/first", "", 0x00000000},
                                                       {"a/check", "123456789", 0xCBF43927}}));
  std::string e = error_of([&] { zip_verify(dir / "wrong.zip"); });
  EXPECT_NE(e.find("entry 'a/check' is damaged"), std::string::npos) << e;
  EXPECT_NE(e.find("0xcbf43926"), std::string::npos) << e;  // what the data has
  write_file_bytes(dir / "changed.zip", make_stored_zip({{"a/first", "", 0x00000000},
                                                         {"a/check", "123456780", 0xCBF43926}}));
  e = error_of([&] { zip_verify(dir / "changed.zip"); });
  EXPECT_NE(e.find("entry 'a/check' is damaged"), std::string::npos) << e;
}

// Python's zipfile is the reference: an archive it wrote (stored, deflated, some larger than the
// verifier's 64 KiB chunks, empty and zip64 entries) and a checkpoint LibTorch wrote list the
// same entries, sizes, CRC-32s and offsets.
TEST(CheckpointArchive, EntriesAgreeWithPythonZipfile) {
  TempDir dir;
  bool skip = false;
  const std::string made = python_zip_entries("make", dir / "py.zip", skip);
  if (skip) GTEST_SKIP() << "/usr/bin/python3 absent: zipfile reference not run";
  EXPECT_NE(made.find(" 8 "), std::string::npos) << "no deflated entry:\n" << made;
  EXPECT_EQ(our_zip_entries(dir / "py.zip"), made);

  auto m = tiny_n2n();
  checkpoint_save(dir / "m.uwm", *m, nullptr, CheckpointInfo{}, false);
  const std::string listed = python_zip_entries("list", dir / "m.uwm", skip);
  EXPECT_NE(listed.find("/data.pkl 0 "), std::string::npos) << listed;
  EXPECT_EQ(our_zip_entries(dir / "m.uwm"), listed);
}

// A checkpoint as written loads (and so does the corpus's, written by an earlier build); a byte
// changed inside a stored entry's data or a deflated entry's data is refused with one line naming
// the file and that entry, before LibTorch parses anything.
TEST(CheckpointArchive, GoodCheckpointLoadsAndAFlippedByteIsRefusedNamingTheEntry) {
  TempDir dir;
  auto m = tiny_n2n();
  checkpoint_save(dir / "m.uwm", *m, nullptr, CheckpointInfo{}, false);
  LoadedCheckpoint ck = checkpoint_load(dir / "m.uwm");
  const auto x = torch::randn({1, 1, 8, 8, 8});
  EXPECT_TRUE(torch::equal(ck.method->restore(x), m->restore(x)));
  EXPECT_NO_THROW(checkpoint_load(UNWEDGE_SOURCE_DIR "/tests/fuzz/corpus/checkpoint/n2n_tiny.uwm"));

  const std::string bytes = read_file_bytes(dir / "m.uwm");
  // The local headers, found by their signature before the central directory (whose offset
  // the end record, the last 22 bytes, gives).
  const size_t dir_offset = get32(bytes, bytes.size() - 22 + 16);
  ASSERT_LT(dir_offset, bytes.size());
  int tried_stored = 0, tried_deflated = 0;
  for (size_t at = bytes.find("PK\x03\x04"); at < dir_offset; at = bytes.find("PK\x03\x04", at + 4)) {
    const uint16_t method = get16(bytes, at + 8), name_len = get16(bytes, at + 26),
                   extra_len = get16(bytes, at + 28);
    const std::string name = bytes.substr(at + 30, name_len);
    const size_t data = at + 30 + name_len + extra_len;
    const bool stored_tensor = method == 0 && name.find("/data/") != std::string::npos;
    if (!(stored_tensor && tried_stored == 0) && !(method == 8 && tried_deflated == 0)) continue;
    (method == 0 ? tried_stored : tried_deflated)++;
    std::string bad = bytes;
    bad[data + 3] = char(bad[data + 3] ^ 0x10);
    write_file_bytes(dir / "bad.uwm", bad);
    const std::string e = error_of([&] { checkpoint_load(dir / "bad.uwm"); });
    EXPECT_EQ(e.rfind(dir / "bad.uwm: not a readable unwedge checkpoint (corrupt or truncated: ", 0),
              0u) << e;
    EXPECT_NE(e.find("entry '" + name + "'"), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  EXPECT_EQ(tried_stored, 1);
  EXPECT_EQ(tried_deflated, 1) << "LibTorch's writer deflated no entry of this checkpoint";
}

// Truncated files (cut anywhere, down to nothing), a central directory pointing past the end
// and a local header offset past the data are refused as corrupt or truncated, naming the file.
TEST(CheckpointArchive, TruncatedFilesAndOffsetsPastTheEndAreRefused) {
  TempDir dir;
  auto m = tiny_n2n();
  checkpoint_save(dir / "m.uwm", *m, nullptr, CheckpointInfo{}, false);
  const std::string bytes = read_file_bytes(dir / "m.uwm");
  for (size_t keep : {size_t(0), size_t(21), size_t(2000), bytes.size() / 2, bytes.size() - 23,
                      bytes.size() - 1}) {
    write_file_bytes(dir / "cut.uwm", bytes.substr(0, keep));
    const std::string e = error_of([&] { checkpoint_load(dir / "cut.uwm"); });
    EXPECT_NE(e.find(dir / "cut.uwm: not a readable unwedge checkpoint (corrupt or truncated: "),
              std::string::npos)
        << keep << " bytes: " << e;
  }

  // The central directory's offset, in the end record and in the zip64 end record LibTorch
  // writes too (APPNOTE 4.3.14: 48 bytes into it), moved past the end of the file.
  const size_t end = bytes.size() - 22;
  const size_t end64 = bytes.rfind("PK\x06\x06");
  ASSERT_NE(end64, std::string::npos);
  std::string past = bytes;
  for (size_t at : {end + 16, end64 + 48}) {
    const uint32_t v = uint32_t(bytes.size()) + 100;
    for (int i = 0; i < 4; ++i) past[at + i] = char((v >> (8 * i)) & 0xff);
  }
  write_file_bytes(dir / "past.uwm", past);
  std::string e = error_of([&] { checkpoint_load(dir / "past.uwm"); });
  EXPECT_NE(e.find("past.uwm: not a readable unwedge checkpoint (corrupt or truncated: the central "
                   "directory"), std::string::npos) << e;

  // A hand-written archive whose directory offset lies past the end, and one whose entry's local
  // header does.
  std::string zip = make_stored_zip({{"a/check", "123456789", 0xCBF43926}});
  std::string z1 = zip;
  z1[z1.size() - 22 + 16] = char(0x7f);
  write_file_bytes(dir / "z1.zip", z1);
  e = error_of([&] { zip_verify(dir / "z1.zip"); });
  EXPECT_NE(e.find("the central directory"), std::string::npos) << e;
  std::string z2 = zip;
  const size_t cd = get32(zip, zip.size() - 22 + 16);
  z2[cd + 42 + 1] = char(0x70);  // the entry's local header offset: 0x7000
  write_file_bytes(dir / "z2.zip", z2);
  e = error_of([&] { zip_verify(dir / "z2.zip"); });
  EXPECT_NE(e.find("entry 'a/check': its local header at offset 28672"), std::string::npos) << e;
}

// The fuzzer's input that crashed LibTorch 1.13's TorchScript importer (a SEGV in
// ScriptTypeParser::parseClassConstant): one stored code entry has a damaged byte. It is refused
// from its CRC-32, naming the entry python's zipfile.testzip() names.
TEST(CheckpointArchive, TheInputThatCrashedLibTorchIsRefused) {
  const std::string path =
      UNWEDGE_SOURCE_DIR "/tests/fuzz/corpus/checkpoint/regress_segv_in_torchscript_importer.uwm";
  const std::string e = error_of([&] { checkpoint_load(path); });
  EXPECT_NE(e.find("code/__torch__/___torch_mangle_10.py' is damaged"), std::string::npos) << e;
  bool skip = false;
  const std::string listed = python_zip_entries("list", path, skip);
  if (!skip) {
    EXPECT_NE(listed.find("testzip BAD .a.uwm.27868.25836/code/__torch__/___torch_mangle_10.py\n"),
              std::string::npos) << listed;
  }
}

// Every local header must agree with its central directory entry (APPNOTE 4.3.7, 4.3.9): flag
// bit 3, and the CRC-32 and sizes the header records or, with bit 3, those of the data
// descriptor after the data (8-byte sizes when the header has a zip64 extra field). Archives
// Python's zipfile wrote with descriptors (to an unseekable stream) and without them verify and
// list as zipfile lists them; one field changed in a header or a descriptor is refused naming the
// entry and both values, the central directory's as zipfile lists them. A LibTorch checkpoint
// (descriptors after every entry) whose descriptor disagrees is refused by checkpoint_load.
TEST(CheckpointArchive, LocalHeadersAndDataDescriptorsAgreeWithTheCentralDirectory) {
  TempDir dir;
  bool skip = false;
  const std::string streamed = python_zip_entries("make-stream", dir / "s.zip", skip);
  if (skip) GTEST_SKIP() << "/usr/bin/python3 absent: zipfile reference not run";
  const std::string plain = python_zip_entries("make", dir / "p.zip", skip);
  EXPECT_EQ(our_zip_entries(dir / "s.zip"), streamed);
  EXPECT_EQ(our_zip_entries(dir / "p.zip"), plain);
  const auto s_entries = parse_listing(streamed), p_entries = parse_listing(plain);
  ASSERT_EQ(s_entries.size(), 7u) << streamed;
  ASSERT_EQ(p_entries.size(), 7u) << plain;
  const std::string s_bytes = read_file_bytes(dir / "s.zip"), p_bytes = read_file_bytes(dir / "p.zip");

  // Where an entry's data starts: after the local header's 30 bytes, name and extra field.
  auto data_pos = [](const std::string& b, const ListedEntry& e) {
    return size_t(e.header_offset) + 30 + get16(b, e.header_offset + 26) +
           get16(b, e.header_offset + 28);
  };
  int tried = 0;
  auto refused = [&](const std::string& bytes, const std::string& want) {
    ++tried;
    write_file_bytes(dir / "bad.zip", bytes);
    const std::string e = error_of([&] { zip_verify(dir / "bad.zip"); });
    EXPECT_NE(e.find(want), std::string::npos) << "want: " << want << "\ngot:  " << e;
  };
  auto sizes = [](uint64_t compressed, uint64_t size, const ListedEntry& e) {
    return std::to_string(compressed) + " bytes compressed, " + std::to_string(size) +
           " uncompressed; the central directory " + std::to_string(e.compressed_size) + " and " +
           std::to_string(e.size);
  };
  for (const auto& e : s_entries) {
    SCOPED_TRACE(e.name);
    EXPECT_EQ(e.flags & 8, 8);
    const std::string entry = "entry '" + e.name + "': ";
    const size_t dd = data_pos(s_bytes, e) + size_t(e.compressed_size);
    ASSERT_EQ(get32(s_bytes, dd), 0x08074b50u);  // the descriptor's signature
    ASSERT_EQ(get32(s_bytes, dd + 4), e.crc);
    // zipfile gives the entry it wrote with force_zip64 8-byte sizes in its descriptor.
    const size_t size_at = dd + (e.name == "top/zip64.bin" ? 16 : 12);
    ASSERT_EQ(get32(s_bytes, size_at), uint32_t(e.size));
    std::string b = s_bytes;
    set32(b, dd + 4, e.crc ^ 0x00010000u);
    refused(b, entry + "its data descriptor records CRC-32 " + hex32(e.crc ^ 0x00010000u) +
                   ", the central directory " + hex32(e.crc));
    b = s_bytes;
    set32(b, size_at, uint32_t(e.size + 1));
    refused(b, entry + "its data descriptor records " + sizes(e.compressed_size, e.size + 1, e));
    b = s_bytes;
    b[e.header_offset + 6] = char(b[e.header_offset + 6] & ~8);
    refused(b, entry + "its local header does not announce a data descriptor (flag bit 3), the "
                       "central directory does");
  }
  for (const auto& e : p_entries) {
    SCOPED_TRACE(e.name);
    EXPECT_EQ(e.flags & 8, 0);
    const std::string entry = "entry '" + e.name + "': ";
    std::string b = p_bytes;
    set32(b, e.header_offset + 14, e.crc ^ 1u);
    refused(b, entry + "its local header records CRC-32 " + hex32(e.crc ^ 1u) +
                   ", the central directory " + hex32(e.crc));
    b = p_bytes;
    if (get32(p_bytes, e.header_offset + 18) == 0xffffffffu) {
      // zip64: the sizes are in the extra field (id 1: uncompressed, then compressed, 8 bytes each).
      const size_t x = e.header_offset + 30 + get16(p_bytes, e.header_offset + 26);
      ASSERT_EQ(get16(p_bytes, x), 1);
      ASSERT_EQ(get32(p_bytes, x + 12), uint32_t(e.compressed_size));
      set32(b, x + 12, uint32_t(e.compressed_size + 1));
    } else {
      ASSERT_EQ(get32(p_bytes, e.header_offset + 18), uint32_t(e.compressed_size));
      set32(b, e.header_offset + 18, uint32_t(e.compressed_size + 1));
    }
    refused(b, entry + "its local header records " + sizes(e.compressed_size + 1, e.size, e));
    b = p_bytes;
    b[e.header_offset + 6] = char(b[e.header_offset + 6] | 8);
    refused(b, entry + "its local header announces a data descriptor (flag bit 3), the central "
                       "directory does not");
  }
  EXPECT_EQ(tried, 7 * 3 + 7 * 3);

  auto m = tiny_n2n();
  checkpoint_save(dir / "m.uwm", *m, nullptr, CheckpointInfo{}, false);
  const auto listed = parse_listing(python_zip_entries("list", dir / "m.uwm", skip));
  const std::string bytes = read_file_bytes(dir / "m.uwm");
  int changed = 0;
  for (const auto& e : listed) {
    if (e.name.size() < 9 || e.name.substr(e.name.size() - 9) != "/data.pkl") continue;
    ASSERT_EQ(e.flags & 8, 8) << "LibTorch's writer wrote no data descriptor";
    const size_t dd = data_pos(bytes, e) + size_t(e.compressed_size);
    ASSERT_EQ(get32(bytes, dd), 0x08074b50u);
    std::string b = bytes;
    set32(b, dd + 8, uint32_t(e.compressed_size + 4));
    write_file_bytes(dir / "bad.uwm", b);
    const std::string err = error_of([&] { checkpoint_load(dir / "bad.uwm"); });
    EXPECT_EQ(err.rfind(dir / "bad.uwm: not a readable unwedge checkpoint (corrupt or truncated: "
                              "entry '" + e.name + "': its data descriptor records " +
                              sizes(e.compressed_size + 4, e.size, e), 0), 0u) << err;
    ++changed;
  }
  EXPECT_EQ(changed, 1);
}

nlohmann::json init_net(nlohmann::json j = nlohmann::json::object()) {
  j["depth"] = 2;
  j["base_channels"] = 4;
  j["ot_points"] = 128;
  return j;
}

// train --init-from: a cryowgen-mc generator starts as a trained cryogen-ot network. Checked by
// name against the source: every tensor of the same shape equal, and the one layer that also
// takes the latent noise (more input channels) equal on the shared channels.
TEST(InitFrom, CryowgenStartsFromACryogenOtNetwork) {
  TempDir dir;
  torch::manual_seed(3);
  auto ot = method_create("cryogen-ot", init_net());
  {
    torch::NoGradGuard no_grad;
    for (auto& p : ot->parameters()) p.normal_(0, 0.1);  // not anybody's initial values
  }
  checkpoint_save(dir / "ot.uwm", *ot, nullptr, CheckpointInfo{}, false);
  auto mc = method_create("cryowgen-mc", init_net());
  const WeightTransfer w = checkpoint_init_weights(*mc, dir / "ot.uwm");
  EXPECT_EQ(w.source_method, "cryogen-ot");
  EXPECT_EQ(w.partial, 1);
  EXPECT_EQ(w.skipped, 0);
  EXPECT_EQ(w.copied + w.partial, w.total);
  const auto src = ot->main_network()->named_parameters();
  int partial = 0, equal = 0;
  for (const auto& item : mc->main_network()->named_parameters()) {
    const torch::Tensor& s = src[item.key()];
    if (s.sizes() == item.value().sizes()) {
      equal += torch::equal(s, item.value());
    } else {
      ++partial;
      EXPECT_EQ(item.value().size(1), s.size(1) + 4) << item.key();  // 4 latent channels
      EXPECT_TRUE(torch::equal(s, item.value().narrow(1, 0, s.size(1)))) << item.key();
      EXPECT_EQ(item.value().narrow(1, s.size(1), 4).abs().max().item<float>(), 0.0f) << item.key();
    }
  }
  EXPECT_EQ(partial, 1);
  EXPECT_EQ(equal, int(src.size()) - 1);
  // Another width: most tensors differ in shape and keep their initial values.
  auto wide = method_create("cryogen-ot", {{"depth", 2}, {"base_channels", 8}, {"ot_points", 128}});
  checkpoint_save(dir / "wide.uwm", *wide, nullptr, CheckpointInfo{}, false);
  auto mc2 = method_create("cryowgen-mc", init_net());
  const WeightTransfer w2 = checkpoint_init_weights(*mc2, dir / "wide.uwm");
  EXPECT_GT(w2.skipped, w2.total / 2);
  EXPECT_THROW(checkpoint_init_weights(*mc2, dir / "missing.uwm"), std::exception);
}

// train --init-from takes the network's shape from the source model unless --opt gives it: a
// cryowgen-mc run started from an 8-channel, depth-2 cryogen-ot model is 8 channels wide and
// depth 2 without saying so, and every tensor then transfers.
TEST(InitFrom, NetworkShapeFollowsTheSourceModelUnlessGiven) {
  TempDir dir;
  auto wide = method_create("cryogen-ot", {{"depth", 2}, {"base_channels", 8}, {"ot_points", 128}});
  checkpoint_save(dir / "wide.uwm", *wide, nullptr, CheckpointInfo{}, false);
  nlohmann::json adopted;
  const nlohmann::json opts = checkpoint_init_network_options(
      "cryowgen-mc", {{"latent_channels", 4}}, dir / "wide.uwm", &adopted);
  EXPECT_EQ(opts.at("base_channels"), 8);
  EXPECT_EQ(opts.at("depth"), 2);
  EXPECT_EQ(opts.at("latent_channels"), 4);  // not a shape option of the source: left as given
  EXPECT_EQ(adopted.at("base_channels"), 8);
  EXPECT_FALSE(adopted.contains("latent_channels"));
  EXPECT_FALSE(adopted.contains("lowpass_skip"));  // not a shape option
  auto mc = method_create("cryowgen-mc", opts);
  const WeightTransfer w = checkpoint_init_weights(*mc, dir / "wide.uwm");
  EXPECT_EQ(w.skipped, 0);
  EXPECT_EQ(w.copied + w.partial, w.total);
  // What --opt gives wins.
  const nlohmann::json given = checkpoint_init_network_options("cryowgen-mc", {{"base_channels", 4}},
                                                               dir / "wide.uwm");
  EXPECT_EQ(given.at("base_channels"), 4);
  EXPECT_EQ(given.at("depth"), 2);
  EXPECT_THROW(checkpoint_init_network_options("cryowgen-mc", {}, dir / "missing.uwm"), std::exception);
}
