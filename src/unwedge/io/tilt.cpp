// Tilt-angle files: parsed with std::from_chars / std::to_chars, which ignore the C and C++
// locales, so "1.5" reads as 1.5 under a comma-decimal locale too.
#include "unwedge/io/tilt.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"

namespace unwedge {

namespace {

std::string_view trim(std::string_view s) {
  const char* ws = " \t\r\n\f\v";
  size_t a = s.find_first_not_of(ws);
  if (a == std::string_view::npos) return {};
  size_t b = s.find_last_not_of(ws);
  return s.substr(a, b - a + 1);
}

}  // namespace

std::vector<double> tilt_parse(const std::string& text, const std::string& origin) {
  std::vector<double> angles;
  size_t pos = 0;
  int line_no = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line = trim(std::string_view(text).substr(pos, end - pos));
    ++line_no;
    pos = end + 1;
    if (line.empty() || line.front() == '#') continue;
    std::string_view num = line;
    if (num.front() == '+') num.remove_prefix(1);  // from_chars does not take a leading '+'
    double v = 0;
    auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
    const std::string where = origin + ":" + std::to_string(line_no);
    if (ec != std::errc() || ptr != num.data() + num.size()) {
      throw FormatError(where + ": '" + std::string(line) +
                        "' is not one angle in degrees (one number per line, '.' as decimal "
                        "point, '#' starts a comment line)");
    }
    if (!std::isfinite(v) || std::abs(v) > 90.0) {
      throw FormatError(where + ": angle " + std::string(line) +
                        " is not a finite angle in [-90, 90] degrees");
    }
    angles.push_back(v);
  }
  return angles;
}

std::vector<double> tilt_read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IoError(path + ": cannot open tilt-angle file");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw IoError(path + ": read failed");
  std::vector<double> angles = tilt_parse(ss.str(), path);
  if (angles.empty()) throw FormatError(path + ": no tilt angles in the file");
  const auto [lo, hi] = std::minmax_element(angles.begin(), angles.end());
  if (*lo == *hi) {
    char angle[32];
    std::snprintf(angle, sizeof angle, "%g", *lo);
    throw FormatError(path + ": " + std::to_string(angles.size()) + " tilt angle(s), all " +
                      angle + " degrees: a tilt series needs at least 2 different angles");
  }
  return angles;
}

void tilt_write(const std::string& path, const std::vector<double>& angles, bool overwrite) {
  std::string text;
  char buf[64];
  for (double a : angles) {
    auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, a, std::chars_format::fixed, 2);
    if (ec != std::errc()) throw ValueError(path + ": cannot format angle");
    text.append(buf, ptr);
    text += '\n';
  }
  write_text_file_atomic(path, text, overwrite);
}

}  // namespace unwedge
