#include "unwedge/eval/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include <torch/torch.h>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/eval/evaluate.h"
#include "unwedge/eval/png.h"
#include "unwedge/eval/svg.h"
#include "unwedge/io/mrc.h"
#include "unwedge/io/train_log_format.h"

namespace unwedge {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Columns of the metrics table, in order.
const char* kTableKeys[] = {"psnr_db",          "ssim",          "cc",
                            "fsc_0.5_A",        "fsc_0.143_A",   "cc_measured_band",
                            "cc_wedge_band",    "cc_deep_wedge_band", "deep_wedge_power_vs_gt",
                            "anisotropy_z_over_x", "coverage_90", "std_error_cc"};

std::string resolve(const fs::path& base, const std::string& p) {
  if (p.empty()) return p;
  fs::path q(p);
  return q.is_absolute() ? p : (base / q).lexically_normal().string();
}

std::string str_or_empty(const json& j, const char* key, const std::string& file) {
  if (!j.contains(key) || j.at(key).is_null()) return "";
  if (!j.at(key).is_string()) throw FormatError(file + ": \"" + key + "\" must be a string");
  return j.at(key).get<std::string>();
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string img_tag(const Image& im, const std::string& alt) {
  return "<img alt=\"" + xml_escape(alt) + "\" width=\"" + std::to_string(im.width) +
         "\" height=\"" + std::to_string(im.height) + "\" src=\"data:image/png;base64," +
         base64_encode(png_encode(im)) + "\">";
}

struct Shown {
  std::string label;
  at::Tensor vol;   // [Z, Y, X] float64, in gt's scale when gt is known
  bool colour = false;  // error / std maps: colour map on their own window
};

// One row of panels: XY, XZ, YZ slices (+ kx-kz amplitude when `amp_contrast` is set).
std::string panel_row(const Shown& s, const Contrast& c, int zoom,
                      const std::optional<Contrast>& amp_contrast) {
  CentralSlices cs = central_slices(s.vol);
  std::string row = "<tr><th>" + xml_escape(s.label) + "</th>";
  const at::Tensor* planes[] = {&cs.xy, &cs.xz, &cs.yz};
  const char* names[] = {"XY", "XZ", "YZ"};
  for (int i = 0; i < 3; ++i) {
    Image im = s.colour ? image_from_slice_colormap(*planes[i], c, zoom)
                        : image_from_slice(*planes[i], c, zoom);
    row += "<td>" + img_tag(im, s.label + " " + names[i]) + "</td>";
  }
  if (amp_contrast) {
    Image im = image_from_slice(fourier_xz_log_amplitude(s.vol), *amp_contrast, zoom);
    row += "<td>" + img_tag(im, s.label + " kx-kz amplitude") + "</td>";
  } else {
    row += "<td></td>";
  }
  return row + "</tr>\n";
}

// The method's loss components (training-stability curves: an adversarial game shows up as
// D(real) and D(fake) drifting apart or oscillating), one small plot per component.
std::string loss_components_html(const std::string& method, const LossLog& log) {
  if (log.extra.empty()) return "";
  std::string h = "<div class=\"components\">\n";
  // The discriminator's outputs on real and pseudo-observations together: a stable game keeps
  // them near each other; a collapsed one drives them apart.
  auto find = [&](const char* k) {
    return std::find_if(log.extra.begin(), log.extra.end(),
                        [&](const LossSeries& e) { return e.name == k; });
  };
  auto real = find("d_real"), fake = find("d_fake");
  if (real != log.extra.end() && fake != log.extra.end()) {
    PlotOptions po;
    po.title = method + ": D(real) and D(fake)";
    po.xlabel = "step";
    po.ylabel = "D";
    po.width = 300;
    po.height = 200;
    h += svg_line_plot({{"d_real", real->step, real->value, "", false},
                        {"d_fake", fake->step, fake->value, "", true}},
                       po) + "\n";
  }
  for (size_t i = 0; i < log.extra.size(); ++i) {
    const LossSeries& s = log.extra[i];
    PlotOptions po;
    po.title = method + ": " + s.name;
    po.xlabel = "step";
    po.ylabel = s.name;
    po.width = 300;
    po.height = 200;
    h += svg_line_plot({{s.name, s.step, s.value, "", false}}, po) + "\n";
  }
  return h + "</div>\n<p class=\"note\">" + xml_escape(method) +
         ": the method's loss components from the training log, averaged per log window.</p>\n";
}

at::Tensor read_volume(const std::string& path) {
  return mrc_read_finite(path).data.to(torch::kDouble);
}

void check_shape(const at::Tensor& a, const std::string& pa, const at::Tensor& b,
                 const std::string& pb) {
  if (a.sizes() != b.sizes()) {
    auto s = [](const at::Tensor& t) {
      return std::to_string(t.size(2)) + "x" + std::to_string(t.size(1)) + "x" +
             std::to_string(t.size(0));
    };
    throw ShapeError("report: " + pa + " is " + s(a) + " (X x Y x Z) but " + pb + " is " + s(b));
  }
}

}  // namespace

std::string base64_encode(const std::vector<uint8_t>& in) {
  static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (in[i] << 16) | (in[i + 1] << 8) | in[i + 2];
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += tbl[v & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = in[i] << 16;
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (in[i] << 16) | (in[i + 1] << 8);
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

ReportInput report_input_read(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw IoError(path + ": cannot open the report JSON");
  json j;
  try {
    j = json::parse(f);
  } catch (const json::exception& e) {
    throw FormatError(path + ": not valid JSON (" + e.what() + ")");
  }
  fs::path base = fs::absolute(path).parent_path();
  ReportInput in;
  if (!j.is_object()) throw FormatError(path + ": the top level must be an object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    static const char* known[] = {"title", "gt",      "input", "tilt_range_deg",
                                  "methods", "dataset", "bench", "sections"};
    if (std::find_if(std::begin(known), std::end(known),
                     [&](const char* k) { return it.key() == k; }) == std::end(known)) {
      throw FormatError(path + ": unknown key \"" + it.key() +
                        "\" (known: title, gt, input, tilt_range_deg, methods, dataset, bench, "
                        "sections)");
    }
  }
  if (j.contains("title")) in.title = str_or_empty(j, "title", path);
  in.gt = resolve(base, str_or_empty(j, "gt", path));
  in.input = resolve(base, str_or_empty(j, "input", path));
  if (j.contains("tilt_range_deg")) {
    const json& t = j.at("tilt_range_deg");
    if (!t.is_array() || t.size() != 2 || !t[0].is_number() || !t[1].is_number()) {
      throw FormatError(path + ": \"tilt_range_deg\" must be [min, max] in degrees");
    }
    in.tilt_range_deg = {t[0].get<double>(), t[1].get<double>()};
  }
  if (!j.contains("methods") || !j.at("methods").is_array()) {
    throw FormatError(path + ": \"methods\" must be an array");
  }
  for (size_t i = 0; i < j.at("methods").size(); ++i) {
    const json& m = j.at("methods")[i];
    std::string where = path + ": methods[" + std::to_string(i) + "]";
    if (!m.is_object()) throw FormatError(where + " must be an object");
    ReportMethod r;
    r.name = str_or_empty(m, "name", where);
    r.restored = resolve(base, str_or_empty(m, "restored", where));
    if (r.name.empty() || r.restored.empty()) {
      throw FormatError(where + ": \"name\" and \"restored\" are required");
    }
    r.std_map = resolve(base, str_or_empty(m, "std", where));
    r.loss_log = resolve(base, str_or_empty(m, "loss_log", where));
    if (m.contains("eval")) r.eval = m.at("eval");
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (it.key() != "name" && it.key() != "restored" && it.key() != "std" &&
          it.key() != "loss_log" && it.key() != "eval" && !it.value().is_object() &&
          !it.value().is_array()) {
        r.info[it.key()] = it.value();
      }
    }
    in.methods.push_back(std::move(r));
  }
  if (j.contains("sections")) {
    if (!j.at("sections").is_array()) throw FormatError(path + ": \"sections\" must be an array");
    for (size_t i = 0; i < j.at("sections").size(); ++i) {
      const json& sj = j.at("sections")[i];
      std::string where = path + ": sections[" + std::to_string(i) + "]";
      if (!sj.is_object()) throw FormatError(where + " must be an object");
      ReportSection sec;
      sec.title = str_or_empty(sj, "title", where);
      sec.image = resolve(base, str_or_empty(sj, "image", where));
      sec.caption = str_or_empty(sj, "caption", where);
      if (sec.title.empty()) throw FormatError(where + ": \"title\" is required");
      in.sections.push_back(std::move(sec));
    }
  }
  return in;
}

std::string report_section_html(const ReportSection& s) {
  std::string h = "<h2>" + xml_escape(s.title) + "</h2>\n";
  if (!s.image.empty()) {
    std::ifstream f(s.image, std::ios::binary);
    if (!f) throw IoError(s.image + ": cannot open the report section's image");
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const bool png = bytes.size() >= 8 && bytes[0] == 0x89 && bytes[1] == 'P' && bytes[2] == 'N';
    const std::string ext = fs::path(s.image).extension().string();
    if (png) {
      h += "<img alt=\"" + xml_escape(s.title) + "\" src=\"data:image/png;base64," +
           base64_encode(bytes) + "\">\n";
    } else if (ext == ".svg") {
      std::string text(bytes.begin(), bytes.end());
      auto at = text.find("<svg");
      if (at == std::string::npos) throw FormatError(s.image + ": no <svg> element");
      h += text.substr(at) + "\n";
    } else {
      throw FormatError(s.image + ": a report section's image must be PNG or .svg");
    }
  }
  if (!s.caption.empty()) h += "<p class=\"note\">" + xml_escape(s.caption) + "</p>\n";
  return h;
}

ReportInput report_input_from_runs(const std::vector<std::string>& dirs) {
  ReportInput in;
  for (const std::string& d : dirs) {
    fs::path p(d);
    if (!fs::is_directory(p)) throw IoError(d + ": not a folder (--runs expects run folders)");
    ReportMethod m;
    m.name = fs::absolute(p).lexically_normal().filename().string();
    if (m.name.empty()) m.name = fs::absolute(p).lexically_normal().parent_path().filename();
    m.restored = (p / "restored.mrc").string();
    if (!fs::exists(m.restored)) throw IoError(d + ": no restored.mrc in the run folder");
    if (fs::exists(p / "std.mrc")) m.std_map = (p / "std.mrc").string();
    for (const char* log : {"train_log.jsonl", "log.jsonl"}) {
      if (m.loss_log.empty() && fs::exists(p / log)) m.loss_log = (p / log).string();
    }
    if (fs::exists(p / "eval.json")) {
      std::ifstream f(p / "eval.json");
      try {
        m.eval = json::parse(f);
      } catch (const json::exception& e) {
        throw FormatError((p / "eval.json").string() + ": not valid JSON (" + e.what() + ")");
      }
    }
    in.methods.push_back(std::move(m));
  }
  return in;
}

LossLog loss_log_read(const std::string& path) {
  LossLog log;
  for (const TrainLogRecord& r : train_log_read(path)) {
    const double step = double(r.step);
    if (r.loss) {
      log.step.push_back(step);
      log.loss.push_back(*r.loss);
    }
    if (r.val_loss) {
      log.val_step.push_back(step);
      log.val_loss.push_back(*r.val_loss);
    }
    for (const auto& [name, value] : r.terms) {
      auto s = std::find_if(log.extra.begin(), log.extra.end(),
                            [&](const LossSeries& e) { return e.name == name; });
      if (s == log.extra.end()) s = log.extra.insert(log.extra.end(), LossSeries{name, {}, {}});
      s->step.push_back(step);
      s->value.push_back(value);
    }
  }
  return log;
}

std::string report_html(const ReportInput& in) {
  std::optional<at::Tensor> gt, input;
  if (!in.gt.empty()) gt = read_volume(in.gt);
  if (!in.input.empty()) input = read_volume(in.input);
  if (gt && input) check_shape(*gt, in.gt, *input, in.input);
  if (!gt && !input && in.methods.empty()) throw ValueError("report: nothing to show");

  // Common contrast: percentiles of gt (else of the input, else of the first method).
  at::Tensor ref = gt ? *gt : input ? *input : read_volume(in.methods.front().restored);
  Contrast c = contrast_percentile(ref, 0.01, 0.99);
  int64_t maxdim = std::max({ref.size(0), ref.size(1), ref.size(2)});
  int zoom = static_cast<int>(std::clamp<int64_t>((192 + maxdim - 1) / maxdim, 1, 4));
  Contrast amp_c = contrast_percentile(fourier_xz_log_amplitude(ref), 0.01, 0.999);
  // Volumes are shown after an affine fit to the reference (gt when known), so that the
  // common contrast is fair to methods that output another scale.
  auto to_ref = [&](const at::Tensor& v) {
    AffineFit f = affine_fit(v, ref);
    return v * f.scale + f.offset;
  };

  EvalOptions eo;
  eo.wedge.tilt_min_deg = in.tilt_range_deg[0];
  eo.wedge.tilt_max_deg = in.tilt_range_deg[1];
  if (!in.gt.empty()) eo.voxel_size = MrcFile(in.gt).meta().voxel_size[0];

  std::string body;
  std::vector<PlotSeries> fsc_series;
  std::string table = "<table class=\"metrics\"><tr><th>method</th>";
  for (const char* k : kTableKeys) {
    table += "<th title=\"" + xml_escape(eval_metric_label(k)) + "\">" + k + "</th>";
  }
  std::vector<std::string> info_keys;
  for (const auto& m : in.methods) {
    for (auto it = m.info.begin(); it != m.info.end(); ++it) {
      if (std::find(info_keys.begin(), info_keys.end(), it.key()) == info_keys.end()) {
        info_keys.push_back(it.key());
      }
    }
  }
  for (const auto& k : info_keys) table += "<th>" + xml_escape(k) + "</th>";
  table += "</tr>\n";

  // Dataset rows.
  std::string data_rows;
  if (gt) data_rows += panel_row({"ground truth", *gt}, c, zoom, amp_c);
  if (input) data_rows += panel_row({"input", gt ? to_ref(*input) : *input}, c, zoom, amp_c);

  for (const ReportMethod& m : in.methods) {
    at::Tensor r = read_volume(m.restored);
    check_shape(ref, gt ? in.gt : input ? in.input : m.restored, r, m.restored);
    json ev = m.eval;
    if (ev.is_null() && gt) {
      ev = eval_against_truth(r, *gt, {}, eo);
      if (!m.std_map.empty()) eval_add_uncertainty(ev, r, read_volume(m.std_map), *gt, {});
    }
    at::Tensor shown = to_ref(r);
    std::string rows = panel_row({m.name + ": restored", shown}, c, zoom, amp_c);
    if (gt) {
      at::Tensor err = (shown - *gt).abs();
      Contrast ec{0.0, std::max(1e-12, (c.hi - c.lo) / 2)};
      rows += panel_row({m.name + ": |restored - gt|", err, true}, ec, zoom, std::nullopt);
    }
    if (!m.std_map.empty()) {
      at::Tensor sd = read_volume(m.std_map);
      check_shape(r, m.restored, sd, m.std_map);
      AffineFit f = affine_fit(r, ref);
      at::Tensor sds = sd * std::abs(f.scale);
      Contrast sc{0.0, std::max(1e-12, contrast_percentile(sds, 0.0, 0.995).hi)};
      rows += panel_row({m.name + ": posterior std", sds, true}, sc, zoom, std::nullopt);
    }
    body += "<h2>" + xml_escape(m.name) + "</h2>\n<table class=\"panels\"><tr><th></th><th>XY"
            "</th><th>XZ (wedge)</th><th>YZ</th><th>|F| in kx&ndash;kz</th></tr>\n" +
            data_rows + rows + "</table>\n";
    if (!m.loss_log.empty()) {
      LossLog log = loss_log_read(m.loss_log);
      PlotOptions po;
      po.title = m.name + ": training";
      po.xlabel = "step";
      po.ylabel = "loss";
      po.log_y = true;
      body += svg_line_plot({{"loss", log.step, log.loss, "", false},
                             {"val_loss", log.val_step, log.val_loss, "", true}},
                            po);
      body += loss_components_html(m.name, log);
    }
    table += "<tr><td>" + xml_escape(m.name) + "</td>";
    const json mt = ev.is_object() && ev.contains("metrics") ? ev.at("metrics") : json::object();
    for (const char* k : kTableKeys) {
      std::string v = "&ndash;";
      if (mt.contains(k) && mt.at(k).is_number()) {
        v = (mt.contains(std::string(k) + "_is_bound") ? "&le;" : "") +
            fmt("%.4g", mt.at(k).get<double>());
      }
      table += "<td>" + v + "</td>";
    }
    for (const auto& k : info_keys) {
      table += "<td>" + (m.info.contains(k) ? xml_escape(m.info.at(k).is_string()
                                                             ? m.info.at(k).get<std::string>()
                                                             : m.info.at(k).dump())
                                            : std::string("&ndash;")) +
               "</td>";
    }
    table += "</tr>\n";
    if (ev.is_object() && ev.contains("fsc")) {
      FscCurve fc = fsc_from_json(ev.at("fsc"));
      fsc_series.push_back({m.name, fc.freq, fc.fsc, "", false});
    }
  }
  table += "</table>\n";

  std::string fsc_svg;
  if (!fsc_series.empty()) {
    PlotOptions po;
    po.title = "FSC against the ground truth";
    po.xlabel = "spatial frequency (1/A)";
    po.ylabel = "FSC";
    po.fixed_y = true;
    po.y_min = -0.1;
    po.y_max = 1.0;
    po.hlines = {0.5, 0.143};
    po.width = 760;
    fsc_svg = svg_line_plot(fsc_series, po);
  }

  std::string sections;
  for (const auto& sec : in.sections) sections += report_section_html(sec);
  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>" +
      xml_escape(in.title) +
      "</title>\n<style>\nbody{font-family:sans-serif;margin:16px;color:#222}\n"
      "table.metrics{border-collapse:collapse;margin:8px 0}\n"
      "table.metrics td,table.metrics th{border:1px solid #bbb;padding:3px 7px;"
      "text-align:right;font-size:13px}\n"
      "table.panels th{font-size:12px;font-weight:normal;text-align:left}\n"
      "table.panels td{padding:2px}\nimg{image-rendering:pixelated;display:block}\n"
      "p.note{font-size:12px;color:#555;max-width:900px}\n"
      "div.components{display:flex;flex-wrap:wrap;gap:6px}\n</style>\n"
      "<script>\nwindow.addEventListener('load', function () {\n"
      "  var imgs = document.images, ok = imgs.length > 0;\n"
      "  for (var i = 0; i < imgs.length; ++i)\n"
      "    if (!(imgs[i].complete && imgs[i].naturalWidth > 0)) ok = false;\n"
      "  document.body.setAttribute('data-images', imgs.length);\n"
      "  document.body.setAttribute('data-images-ok', ok ? 'yes' : 'no');\n"
      "});\n</script>\n</head><body>\n<h1>" +
      xml_escape(in.title) + "</h1>\n<p class=\"note\">Slices are central sections on one "
      "contrast (1&ndash;99 % of " +
      (gt ? "the ground truth" : "the reference volume") +
      "); every volume is shown after a least-squares affine fit to it. XZ is the plane where "
      "the missing wedge shows (elongation along Z); the last column is log(1+|F|) in the "
      "kx&ndash;kz plane, centred, where an unfilled wedge is a dark double cone around the "
      "vertical kz axis. Error and std maps use a colour map on their own scale. Tilt range " +
      fmt("%.4g", in.tilt_range_deg[0]) + "&deg; to " + fmt("%.4g", in.tilt_range_deg[1]) +
      "&deg;.</p>\n<h2>Metrics</h2>\n" + table +
      "<p class=\"note\">PSNR and SSIM after an affine fit of each result to the ground truth; "
      "CC and all Fourier metrics are affine-invariant. Resolutions in &Aring; (&le;: the curve "
      "never crossed). Hover a column name for its meaning.</p>\n" +
      fsc_svg + body + sections + "</body></html>\n";
  return html;
}

void report_write(const ReportInput& in, const std::string& out, bool overwrite) {
  output_check_writable(out, overwrite);
  write_text_file_atomic(out, report_html(in), overwrite);
}

}  // namespace unwedge
