// RELION 5 tomograms tables: rows to files and tilt ranges, and back with the restored outputs.
#include "unwedge/io/relion.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>

#include "unwedge/core/error.h"
#include "unwedge/io/mrc.h"

namespace unwedge {

namespace fs = std::filesystem;

namespace {

const char* kName = "rlnTomoName";
const char* kTomogram = "rlnTomoReconstructedTomogram";
const char* kHalf1 = "rlnTomoReconstructedTomogramHalf1";
const char* kHalf2 = "rlnTomoReconstructedTomogramHalf2";
const char* kDenoised = "rlnTomoReconstructedTomogramDenoised";
const char* kTiltSeries = "rlnTomoTiltSeriesStarFile";
const char* kPixelSize = "rlnTomoTiltSeriesPixelSize";
const char* kBinning = "rlnTomoTomogramBinning";
const char* kYTilt = "rlnTomoYTilt";
const char* kNominalTilt = "rlnTomoNominalStageTiltAngle";

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// Levenshtein distance, case-insensitive.
size_t edit_distance(const std::string& a0, const std::string& b0) {
  const std::string a = lower(a0), b = lower(b0);
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

double number(const std::string& text, const std::string& where) {
  double v = 0;
  const char* b = text.data();
  const char* e = b + text.size();
  if (b != e && *b == '+') ++b;
  auto [ptr, ec] = std::from_chars(b, e, v);
  if (ec != std::errc() || ptr != e || !std::isfinite(v)) {
    throw FormatError(where + ": '" + text + "' is not a number");
  }
  return v;
}

/// The tilt angles of one tilt series from its STAR (block data_NAME, else the one block with an
/// angle column).
std::vector<double> tilt_series_angles(const std::string& path, const std::string& name) {
  const StarFile ts = star_read(path);
  const StarBlock* block = ts.block(name);
  if (!block) {
    for (const StarBlock& b : ts.blocks) {
      if (b.loop_with(kYTilt) || b.loop_with(kNominalTilt)) {
        if (block) {
          throw FormatError(path + ": several blocks have tilt angles and none is data_" + name);
        }
        block = &b;
      }
    }
  }
  if (!block) throw FormatError(path + ": no block data_" + name + " and no tilt angles");
  const char* label = block->loop_with(kYTilt) ? kYTilt : kNominalTilt;
  const StarLoop* loop = block->loop_with(label);
  if (!loop) {
    throw FormatError(path + ": block data_" + block->name + " has neither column _" + kYTilt +
                      " nor _" + kNominalTilt + " (the tilt angles)");
  }
  const int c = loop->column(label);
  std::vector<double> angles;
  for (size_t r = 0; r < loop->rows.size(); ++r) {
    const double a = number(loop->rows[r][size_t(c)],
                            path + ": _" + label + " of row " + std::to_string(r + 1));
    if (std::abs(a) > 90.0) {
      throw FormatError(path + ": _" + label + " of row " + std::to_string(r + 1) + " is " +
                        loop->rows[r][size_t(c)] + ", not a tilt angle in [-90, 90] degrees");
    }
    angles.push_back(a);
  }
  if (angles.empty()) throw FormatError(path + ": data_" + block->name + " has no tilt images");
  return angles;
}

const StarLoop& global_loop(const RelionTomograms& t) {
  const StarBlock* g = t.star.block("global");
  if (!g || g->loops.empty()) {
    throw FormatError(t.path + ": no data_global loop_ (a RELION 5 tomograms table has one row "
                               "per tomogram in data_global)");
  }
  return g->loops.front();
}

}  // namespace

const std::vector<std::string>& relion_tomogram_labels() {
  static const std::vector<std::string> labels = {kName,  kTomogram,   kHalf1,     kHalf2,
                                                  kDenoised, kTiltSeries, kPixelSize, kBinning};
  return labels;
}

std::string relion_path_resolve(const std::string& path, const std::string& star_path) {
  const fs::path p(path);
  if (p.is_absolute() || fs::exists(p)) return path;
  const fs::path beside = fs::path(star_path).parent_path() / p;
  if (!fs::path(star_path).parent_path().empty() && fs::exists(beside)) return beside.string();
  return path;
}

RelionTomograms relion_tomograms_read(const std::string& path) {
  RelionTomograms t;
  t.path = path;
  t.star = star_read(path);
  const StarLoop& loop = global_loop(t);
  // A label one or two letters away from one unwedge reads is a misspelling, not a new column.
  for (const std::string& label : loop.labels) {
    const auto& known = relion_tomogram_labels();
    if (std::find(known.begin(), known.end(), label) != known.end()) continue;
    for (const std::string& k : known) {
      if (edit_distance(label, k) <= 2) {
        throw FormatError(path + ": unknown column _" + label + " in data_global (did you mean _" +
                          k + "?)");
      }
    }
  }
  const int c_name = loop.column(kName);
  if (c_name < 0) throw FormatError(path + ": data_global has no column _" + std::string(kName));
  auto col = [&](const char* label) { return loop.column(label); };
  std::set<std::string> seen;
  for (size_t r = 0; r < loop.rows.size(); ++r) {
    const auto& row = loop.rows[r];
    RelionTomogram tomo;
    tomo.name = row[size_t(c_name)];
    const std::string where = path + ": tomogram " + tomo.name;
    if (!seen.insert(tomo.name).second) {
      throw FormatError(path + ": _" + std::string(kName) + " " + tomo.name + " appears twice");
    }
    auto path_of = [&](const char* label) {
      const int c = col(label);
      return c < 0 ? std::string() : relion_path_resolve(row[size_t(c)], path);
    };
    tomo.tomogram = path_of(kTomogram);
    tomo.half1 = path_of(kHalf1);
    tomo.half2 = path_of(kHalf2);
    tomo.tilt_series_star = path_of(kTiltSeries);
    if (col(kPixelSize) >= 0) {
      const double px = number(row[size_t(col(kPixelSize))], where + ", _" + kPixelSize);
      const double bin =
          col(kBinning) >= 0 ? number(row[size_t(col(kBinning))], where + ", _" + kBinning) : 1.0;
      if (!(px > 0) || !(bin > 0)) {
        throw FormatError(where + ": pixel size " + std::to_string(px) + " x binning " +
                          std::to_string(bin) + " is not a positive voxel size");
      }
      tomo.voxel_size = px * bin;
    }
    if (!tomo.tilt_series_star.empty()) {
      tomo.angles = tilt_series_angles(tomo.tilt_series_star, tomo.name);
    }
    t.tomograms.push_back(std::move(tomo));
  }
  if (t.tomograms.empty()) throw FormatError(path + ": data_global lists no tomograms");
  return t;
}

std::vector<std::string> relion_column(const RelionTomograms& t, const std::string& label,
                                       const std::string& what) {
  const StarLoop& loop = global_loop(t);
  const int c = loop.column(label);
  if (c < 0) {
    throw FormatError(t.path + ": data_global has no column _" + label + " (" + what + ")");
  }
  std::vector<std::string> out;
  for (const auto& row : loop.rows) out.push_back(relion_path_resolve(row[size_t(c)], t.path));
  return out;
}

namespace {

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s.imbue(std::locale::classic());
  s.setf(std::ios::fixed);
  s.precision(digits);
  s << v;
  return s.str();
}

}  // namespace

RelionOutput relion_output_from_mrc(const std::string& path) {
  const MrcFile f(path);
  const auto s = f.shape();  // [Z, Y, X]
  return {path, {s[2], s[1], s[0]}, f.meta().voxel_size[0]};
}

StarFile relion_tomograms_with_outputs(const RelionTomograms& in,
                                       const std::vector<RelionOutput>& out) {
  if (out.size() != in.tomograms.size()) {
    throw ValueError(in.path + ": " + std::to_string(in.tomograms.size()) + " tomograms but " +
                     std::to_string(out.size()) + " outputs");
  }
  StarFile star = in.star;
  StarLoop* loop = nullptr;
  for (StarBlock& b : star.blocks) {
    if (b.name == "global" && !b.loops.empty()) loop = &b.loops.front();
  }
  if (!loop) throw FormatError(in.path + ": no data_global loop_");
  auto column = [&](const std::string& label) {
    int c = loop->column(label);
    if (c < 0) {
      loop->labels.push_back(label);
      for (auto& row : loop->rows) row.emplace_back();
      c = int(loop->labels.size()) - 1;
    }
    return size_t(c);
  };
  const bool had_binning = loop->column(kBinning) >= 0;
  const bool had_pixel = loop->column(kPixelSize) >= 0;
  const size_t c_out = column(kDenoised);
  const size_t c_x = column("rlnTomoSizeX"), c_y = column("rlnTomoSizeY"),
               c_z = column("rlnTomoSizeZ");
  const size_t c_bin = column(kBinning), c_px = column(kPixelSize);
  for (size_t r = 0; r < out.size(); ++r) {
    auto& row = loop->rows[r];
    row[c_out] = out[r].tomogram;
    row[c_x] = std::to_string(out[r].size_xyz[0]);
    row[c_y] = std::to_string(out[r].size_xyz[1]);
    row[c_z] = std::to_string(out[r].size_xyz[2]);
    // Without a tilt-series pixel size the tomogram's voxel is the pixel, at binning 1.
    if (!had_pixel) {
      row[c_px] = fixed(out[r].voxel_size, 6);
      if (!had_binning) row[c_bin] = fixed(1.0, 6);
    } else if (!had_binning) {
      const double px = number(row[c_px], in.path + ": _" + std::string(kPixelSize));
      row[c_bin] = fixed(px > 0 ? out[r].voxel_size / px : 1.0, 6);
    }
  }
  return star;
}

}  // namespace unwedge
