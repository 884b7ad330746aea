// STAR files: a line tokenizer ('#' comments, quotes, ';' text fields) and a small state machine
// over its tokens (data_ blocks, loop_ tables, `_label value` pairs).
#include "unwedge/io/star.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"

namespace unwedge {

int StarLoop::column(const std::string& label) const {
  auto it = std::find(labels.begin(), labels.end(), label);
  return it == labels.end() ? -1 : int(it - labels.begin());
}

const StarLoop* StarBlock::loop_with(const std::string& label) const {
  for (const StarLoop& l : loops) {
    if (l.column(label) >= 0) return &l;
  }
  return nullptr;
}

const StarBlock* StarFile::block(const std::string& name) const {
  for (const StarBlock& b : blocks) {
    if (b.name == name) return &b;
  }
  return nullptr;
}

namespace {

struct Token {
  std::string text;
  int line = 0;
  bool quoted = false;  // a quoted value or text field: never a keyword or label
};

bool starts_with_nocase(const std::string& s, const char* prefix) {
  for (size_t i = 0; prefix[i]; ++i) {
    if (i >= s.size() || std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f'; }

std::vector<Token> star_tokenize(const std::string& text, const std::string& origin) {
  std::vector<Token> tokens;
  std::istringstream in(text);
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    while (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF, and stray CRs
    if (!line.empty() && line.front() == ';') {  // text field: up to a line starting with ';'
      const int start = line_no;
      std::string value = line.substr(1);
      bool closed = false;
      while (std::getline(in, line)) {
        ++line_no;
        while (!line.empty() && line.back() == '\r') line.pop_back();
        if (!line.empty() && line.front() == ';') {
          closed = true;
          line = line.substr(1);
          break;
        }
        value += "\n" + line;
      }
      if (!closed) {
        throw FormatError(origin + ":" + std::to_string(start) +
                          ": text field opened with ';' is never closed");
      }
      tokens.push_back({value, start, true});
      // the rest of the closing line is read as ordinary tokens below
    }
    size_t i = 0;
    while (i < line.size()) {
      if (is_blank(line[i])) {
        ++i;
        continue;
      }
      if (line[i] == '#') break;
      if (line[i] == '\'' || line[i] == '"') {
        const char q = line[i];
        size_t j = i + 1;
        while (j < line.size() && !(line[j] == q && (j + 1 == line.size() || is_blank(line[j + 1])))) {
          ++j;
        }
        if (j >= line.size()) {
          throw FormatError(origin + ":" + std::to_string(line_no) + ": quoted value " +
                            line.substr(i) + " is never closed");
        }
        tokens.push_back({line.substr(i + 1, j - i - 1), line_no, true});
        i = j + 1;
        continue;
      }
      size_t j = i;
      while (j < line.size() && !is_blank(line[j])) ++j;
      tokens.push_back({line.substr(i, j - i), line_no, false});
      i = j;
    }
  }
  return tokens;
}

}  // namespace

StarFile star_parse(const std::string& text, const std::string& origin) {
  StarFile star;
  StarBlock* block = nullptr;
  StarLoop* loop = nullptr;
  std::vector<std::string> values;  // of the open loop
  bool loop_has_values = false;
  std::string pending;  // a pair's label waiting for its value
  int pending_line = 0, last_line = 0;

  auto close_loop = [&](int line) {
    if (!loop) return;
    const size_t n = loop->labels.size();
    if (n == 0) {  // `loop_` followed by values or the next block, no `_label` (found by fuzz_star)
      throw FormatError(origin + ":" + std::to_string(line) + ": loop_ without labels");
    }
    if (values.size() % n != 0) {
      throw FormatError(origin + ":" + std::to_string(line) + ": loop of " + std::to_string(n) +
                        " labels (" + loop->labels.front() + ", ...) has " +
                        std::to_string(values.size()) + " values, not a multiple of " +
                        std::to_string(n));
    }
    for (size_t r = 0; r < values.size(); r += n) {
      loop->rows.emplace_back(values.begin() + long(r), values.begin() + long(r + n));
    }
    values.clear();
    loop = nullptr;
    loop_has_values = false;
  };
  auto where = [&](int line) { return origin + ":" + std::to_string(line) + ": "; };

  for (const Token& t : star_tokenize(text, origin)) {
    last_line = t.line;
    if (!pending.empty()) {
      if (!t.quoted && (t.text.front() == '_' || starts_with_nocase(t.text, "loop_") ||
                        starts_with_nocase(t.text, "data_"))) {
        throw FormatError(where(pending_line) + "label _" + pending + " has no value");
      }
      block->pairs.emplace_back(pending, t.text);
      pending.clear();
      continue;
    }
    if (!t.quoted && starts_with_nocase(t.text, "data_")) {
      close_loop(t.line);
      star.blocks.push_back({t.text.substr(5), {}, {}});
      block = &star.blocks.back();
      continue;
    }
    if (!t.quoted && (starts_with_nocase(t.text, "global_") || starts_with_nocase(t.text, "save_") ||
                      starts_with_nocase(t.text, "stop_"))) {
      throw FormatError(where(t.line) + t.text + " frames are not STAR as RELION writes it");
    }
    if (!t.quoted && starts_with_nocase(t.text, "loop_")) {
      if (!block) throw FormatError(where(t.line) + "loop_ before any data_ block");
      close_loop(t.line);
      block->loops.emplace_back();
      loop = &block->loops.back();
      continue;
    }
    if (!t.quoted && t.text.front() == '_') {
      if (!block) throw FormatError(where(t.line) + "label " + t.text + " before any data_ block");
      if (loop && !loop_has_values) {
        if (loop->column(t.text.substr(1)) >= 0) {
          throw FormatError(where(t.line) + "label " + t.text + " appears twice in one loop");
        }
        loop->labels.push_back(t.text.substr(1));
        continue;
      }
      close_loop(t.line);
      pending = t.text.substr(1);
      pending_line = t.line;
      continue;
    }
    if (loop) {
      if (loop->labels.empty()) throw FormatError(where(t.line) + "loop_ without labels");
      values.push_back(t.text);
      loop_has_values = true;
      continue;
    }
    throw FormatError(where(t.line) + "value '" + t.text + "' outside any loop_ or _label pair");
  }
  if (!pending.empty()) throw FormatError(where(pending_line) + "label _" + pending + " has no value");
  if (loop && loop->labels.empty()) throw FormatError(where(last_line) + "loop_ without labels");
  close_loop(last_line);
  return star;
}

StarFile star_read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IoError(path + ": cannot open STAR file");
  std::ostringstream ss;
  ss << f.rdbuf();
  return star_parse(ss.str(), path);
}

namespace {

std::string star_quote(const std::string& v) {
  bool needs = v.empty() || v.front() == '_' || v.front() == '#' || v.front() == '$' ||
               v.front() == '\'' || v.front() == '"' || v.front() == ';' ||
               starts_with_nocase(v, "data_") || starts_with_nocase(v, "loop_") ||
               starts_with_nocase(v, "save_") || starts_with_nocase(v, "global_") ||
               starts_with_nocase(v, "stop_");
  if (v.find('\n') != std::string::npos) {
    // A text field: ';' at the start of a line, up to the next line that starts with ';' (the
    // caller's next token follows on that closing line). What star_parse read as a text field
    // never holds a line starting with ';' after its first (found by fuzz_star: a value with a
    // line break was read but could not be written).
    if (v.find("\n;") != std::string::npos) {
      throw ValueError("STAR value '" + v.substr(0, 40) + "...' holds a line starting with ';'");
    }
    return "\n;" + v + "\n;";
  }
  for (char c : v) {
    if (is_blank(c)) needs = true;
  }
  if (!needs) return v;
  // A quote ends only before a blank (any of is_blank's), so "..." can hold '"' unless it is
  // followed by a blank or ends the value; when neither quote can hold it, a text field can
  // (found by fuzz_star: '"' before a form feed was written inside "...").
  auto quote_fits = [&v](char q) {
    for (size_t i = 0; i + 1 < v.size(); ++i) {
      if (v[i] == q && is_blank(v[i + 1])) return false;
    }
    return v.empty() || v.back() != q;
  };
  if (quote_fits('"')) return '"' + v + '"';
  if (quote_fits('\'')) return '\'' + v + '\'';
  return "\n;" + v + "\n;";
}

}  // namespace

std::string star_format(const StarFile& star) {
  std::ostringstream out;
  for (const StarBlock& b : star.blocks) {
    out << "\n# version 50001\n\ndata_" << b.name << "\n\n";
    size_t width = 0;
    for (const auto& [k, v] : b.pairs) width = std::max(width, k.size());
    for (const auto& [k, v] : b.pairs) {
      out << '_' << k << std::string(width - k.size() + 2, ' ') << star_quote(v) << '\n';
    }
    if (!b.pairs.empty()) out << '\n';
    for (const StarLoop& l : b.loops) {
      out << "loop_\n";
      for (size_t i = 0; i < l.labels.size(); ++i) out << '_' << l.labels[i] << " #" << i + 1 << '\n';
      for (const auto& row : l.rows) {
        if (row.size() != l.labels.size()) {
          throw ValueError("STAR block data_" + b.name + ": a row of " + std::to_string(row.size()) +
                           " values in a loop of " + std::to_string(l.labels.size()) + " labels");
        }
        for (size_t i = 0; i < row.size(); ++i) out << (i ? "  " : "") << star_quote(row[i]);
        out << '\n';
      }
      out << '\n';
    }
  }
  return out.str();
}

void star_write(const std::string& path, const StarFile& star, bool overwrite) {
  write_text_file_atomic(path, star_format(star), overwrite);
}

}  // namespace unwedge
