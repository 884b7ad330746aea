// Line plots drawn as standalone SVG text (FSC curves, training and validation loss).
#pragma once
#include <string>
#include <vector>

namespace unwedge {

/// One curve of a plot. NaN points break the line.
struct PlotSeries {
  std::string name;       ///< legend text
  std::vector<double> x, y;
  std::string color;      ///< CSS colour; empty picks from a fixed palette by index
  bool dashed = false;
};

struct PlotOptions {
  std::string title;
  std::string xlabel, ylabel;
  int width = 560, height = 340;      ///< pixels
  bool log_y = false;                 ///< logarithmic y axis (non-positive values skipped)
  bool fixed_y = false;               ///< use [y_min, y_max] instead of the data's range
  double y_min = 0.0, y_max = 1.0;
  std::vector<double> hlines;         ///< dotted horizontal reference lines (e.g. 0.5, 0.143)
};

/// An <svg> element (no XML prolog, so it can be inlined in HTML) with axes, ticks, labels,
/// a legend and one polyline per series. Text is XML-escaped.
std::string svg_line_plot(const std::vector<PlotSeries>& series, const PlotOptions& opts);

/// Escapes &, <, >, " and ' for XML/HTML text and attributes.
std::string xml_escape(const std::string& s);

}  // namespace unwedge
