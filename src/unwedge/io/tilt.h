// Tilt-angle files (.tlt, .rawtlt): one angle in degrees per line, C-locale parsing.
#pragma once
#include <string>
#include <vector>

namespace unwedge {

/// Reads angles in degrees. Blank lines and lines starting with '#' are skipped; anything else
/// that is not one number is a FormatError naming the file and line; so is a file without two
/// different angles (no tomogram can be made from one direction).
std::vector<double> tilt_read(const std::string& path);

/// Parses the text of a tilt file (`origin` names it in errors).
std::vector<double> tilt_parse(const std::string& text, const std::string& origin);

/// Writes angles one per line with 2 decimals, atomically.
void tilt_write(const std::string& path, const std::vector<double>& angles, bool overwrite);

}  // namespace unwedge
