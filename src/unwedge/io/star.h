// STAR files (the CIF-like text tables of RELION): data blocks holding `_label value` pairs and
// `loop_` tables. Read and written with C-locale numbers; values with blanks are quoted.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace unwedge {

/// One `loop_` table: labels without the leading '_' (e.g. "rlnTomoName"), rows of strings.
struct StarLoop {
  std::vector<std::string> labels;
  std::vector<std::vector<std::string>> rows;  ///< each labels.size() values

  /// Index of `label` in labels, or -1.
  int column(const std::string& label) const;
};

/// One `data_NAME` block: its pairs and its loops, in file order.
struct StarBlock {
  std::string name;                                         ///< NAME of data_NAME (may be empty)
  std::vector<std::pair<std::string, std::string>> pairs;   ///< `_label value` outside loops
  std::vector<StarLoop> loops;

  /// The first loop that has `label`, or nullptr.
  const StarLoop* loop_with(const std::string& label) const;
};

struct StarFile {
  std::vector<StarBlock> blocks;

  /// The block named `name`, or nullptr.
  const StarBlock* block(const std::string& name) const;
};

/// Parses STAR text (`origin` names it in errors): '#' comments, data_ blocks, loop_ tables,
/// pairs, quoted values ('...' or "...") and ';' text fields. A loop whose value count is not a
/// multiple of its labels, a value outside any block, or global_/save_ frames are FormatErrors
/// naming origin and line.
StarFile star_parse(const std::string& text, const std::string& origin);

/// Reads and parses a STAR file (IoError when it cannot be opened).
StarFile star_read(const std::string& path);

/// The text of a STAR file as RELION 5 writes it ("# version 50001" before each block, loops
/// with numbered labels); values that are empty or hold blanks or quotes are quoted.
std::string star_format(const StarFile& star);

/// Writes star_format(star) atomically (temporary name, then renamed).
void star_write(const std::string& path, const StarFile& star, bool overwrite);

}  // namespace unwedge
