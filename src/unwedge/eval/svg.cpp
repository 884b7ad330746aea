#include "unwedge/eval/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "unwedge/core/error.h"

namespace unwedge {

namespace {

const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", v);
  return b;
}

std::string tick_label(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3g", v);
  return b;
}

// "Nice" ticks covering [lo, hi]: steps of 1, 2 or 5 times a power of ten.
std::vector<double> nice_ticks(double lo, double hi, int target) {
  double span = hi - lo;
  if (!(span > 0)) return {lo};
  double raw = span / target;
  double p = std::pow(10.0, std::floor(std::log10(raw)));
  double step = raw / p < 1.5 ? p : raw / p < 3.5 ? 2 * p : raw / p < 7.5 ? 5 * p : 10 * p;
  std::vector<double> t;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + 1e-9 * step; v += step) {
    t.push_back(std::abs(v) < 1e-12 * step ? 0.0 : v);
  }
  return t;
}

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string svg_line_plot(const std::vector<PlotSeries>& series, const PlotOptions& o) {
  if (o.width < 100 || o.height < 80) {
    throw ValueError("plot size " + std::to_string(o.width) + "x" + std::to_string(o.height) +
                     " is too small (at least 100x80)");
  }
  auto ty = [&](double y) { return o.log_y ? std::log10(y) : y; };
  auto usable = [&](double x, double y) {
    return std::isfinite(x) && std::isfinite(y) && (!o.log_y || y > 0);
  };
  const double inf = std::numeric_limits<double>::infinity();
  double x0 = inf, x1 = -inf, y0 = inf, y1 = -inf;
  for (const auto& s : series) {
    if (s.x.size() != s.y.size()) {
      throw ShapeError("plot series '" + s.name + "': " + std::to_string(s.x.size()) + " x and " +
                       std::to_string(s.y.size()) + " y values");
    }
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!usable(s.x[i], s.y[i])) continue;
      x0 = std::min(x0, s.x[i]);
      x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, ty(s.y[i]));
      y1 = std::max(y1, ty(s.y[i]));
    }
  }
  if (o.fixed_y) {
    y0 = ty(o.y_min);
    y1 = ty(o.y_max);
  }
  if (!(x1 >= x0)) x0 = 0, x1 = 1;
  if (!(y1 >= y0)) y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y0 -= 0.5, y1 += 0.5;
  if (!o.fixed_y) {
    double pad = 0.05 * (y1 - y0);
    y0 -= pad;
    y1 += pad;
  }
  size_t longest = 0;
  for (const auto& sr : series) longest = std::max(longest, sr.name.size());
  // Margins; the legend on the right is as wide as the longest name (about 6.5 px a character).
  const double L = 62, T = 30, B = 46;
  const double R = std::clamp(44.0 + 6.5 * static_cast<double>(longest), 110.0, 320.0);
  double pw = o.width - L - R, ph = o.height - T - B;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * pw; };
  auto py = [&](double yt) { return T + (1.0 - (yt - y0) / (y1 - y0)) * ph; };

  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(o.width) +
                  "\" height=\"" + std::to_string(o.height) + "\" viewBox=\"0 0 " +
                  std::to_string(o.width) + " " + std::to_string(o.height) +
                  "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s += "<text x=\"" + num(L + pw / 2) + "\" y=\"18\" text-anchor=\"middle\" font-size=\"13\">" +
       xml_escape(o.title) + "</text>\n";
  s += "<rect x=\"" + num(L) + "\" y=\"" + num(T) + "\" width=\"" + num(pw) + "\" height=\"" +
       num(ph) + "\" fill=\"none\" stroke=\"#444\"/>\n";
  for (double t : nice_ticks(x0, x1, 6)) {
    s += "<line x1=\"" + num(px(t)) + "\" y1=\"" + num(T) + "\" x2=\"" + num(px(t)) +
         "\" y2=\"" + num(T + ph) + "\" stroke=\"#eee\"/>";
    s += "<text x=\"" + num(px(t)) + "\" y=\"" + num(T + ph + 14) +
         "\" text-anchor=\"middle\">" + tick_label(t) + "</text>\n";
  }
  for (double t : nice_ticks(y0, y1, 5)) {
    s += "<line x1=\"" + num(L) + "\" y1=\"" + num(py(t)) + "\" x2=\"" + num(L + pw) +
         "\" y2=\"" + num(py(t)) + "\" stroke=\"#eee\"/>";
    s += "<text x=\"" + num(L - 4) + "\" y=\"" + num(py(t) + 4) + "\" text-anchor=\"end\">" +
         tick_label(o.log_y ? std::pow(10.0, t) : t) + "</text>\n";
  }
  for (double h : o.hlines) {
    if (!usable(x0, h) || ty(h) < y0 || ty(h) > y1) continue;
    s += "<line x1=\"" + num(L) + "\" y1=\"" + num(py(ty(h))) + "\" x2=\"" + num(L + pw) +
         "\" y2=\"" + num(py(ty(h))) + "\" stroke=\"#888\" stroke-dasharray=\"2,3\"/>";
    s += "<text x=\"" + num(L + pw - 2) + "\" y=\"" + num(py(ty(h)) - 3) +
         "\" text-anchor=\"end\" fill=\"#666\">" + tick_label(h) + "</text>\n";
  }
  s += "<text x=\"" + num(L + pw / 2) + "\" y=\"" + num(o.height - 8.0) +
       "\" text-anchor=\"middle\">" + xml_escape(o.xlabel) + "</text>\n";
  s += "<text transform=\"translate(14," + num(T + ph / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">" + xml_escape(o.ylabel) + "</text>\n";
  for (size_t k = 0; k < series.size(); ++k) {
    const PlotSeries& sr = series[k];
    std::string color = sr.color.empty() ? kPalette[k % 10] : sr.color;
    std::string style = "fill=\"none\" stroke=\"" + xml_escape(color) +
                        "\" stroke-width=\"1.6\"" +
                        (sr.dashed ? " stroke-dasharray=\"6,3\"" : "");
    std::string pts;
    auto flush = [&] {
      if (!pts.empty()) s += "<polyline " + style + " points=\"" + pts + "\"/>\n";
      pts.clear();
    };
    for (size_t i = 0; i < sr.x.size(); ++i) {
      double yt = usable(sr.x[i], sr.y[i]) ? ty(sr.y[i]) : NAN;
      if (std::isnan(yt) || yt < y0 || yt > y1) {
        flush();
        continue;
      }
      pts += num(px(sr.x[i])) + "," + num(py(yt)) + " ";
    }
    flush();
    double ly = T + 10 + 16.0 * k;
    s += "<line x1=\"" + num(L + pw + 10) + "\" y1=\"" + num(ly) + "\" x2=\"" + num(L + pw + 32) +
         "\" y2=\"" + num(ly) + "\" " + style + "/>";
    s += "<text x=\"" + num(L + pw + 36) + "\" y=\"" + num(ly + 4) + "\">" + xml_escape(sr.name) +
         "</text>\n";
  }
  s += "</svg>\n";
  return s;
}

}  // namespace unwedge
