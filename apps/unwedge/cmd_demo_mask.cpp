// `unwedge demo-mask`: what masked autoencoding sees and reconstructs. Two small mae models are
// trained on crops of one volume (one hides random patches at ratios drawn per sample, one hides
// a Fourier double wedge of a width drawn per batch); both are then shown on structures they
// were not trained on (views: 32^3 cubes of other volumes), at several mask ratios and wedge
// widths. Outputs: demo_mask.html (one self-contained page: structure | masked input |
// reconstruction in XY and XZ, a slider over the ratio, a patch/wedge switch, the error curves),
// PNG montages of the first view, SVG plots, numbers as JSON, and report.html.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cli_common.h"
#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/eval/metrics.h"
#include "unwedge/eval/png.h"
#include "unwedge/eval/report.h"
#include "unwedge/eval/svg.h"
#include "unwedge/io/mrc.h"
#include "unwedge/methods/mae.h"
#include "unwedge/model/checkpoint.h"
#include "unwedge/model/normalize.h"
#include "unwedge/nn/vit3d.h"
#include "unwedge/ops/wedge.h"
#include "unwedge/sim/templates.h"
#include "unwedge/train/trainer.h"

namespace unwedge::cli {

namespace {

using json = nlohmann::json;

struct DemoParams {
  std::string in, out, model, wedge_model;
  std::vector<std::string> views;  ///< NAME=FILE[@X,Y,Z]
  std::vector<std::string> maps;   ///< NAME=FILE: a protein map, normalised like the simulator's
  std::vector<double> ratios{0.15, 0.3, 0.5, 0.75, 0.9};
  std::vector<double> widths{30, 45, 60, 75};  ///< hidden double-wedge widths, degrees
  std::string net = "unet";
  std::string train_only;   ///< patch | wedge: only train that model (mae_MODE.uwm), then stop
  int64_t patch = 4;        ///< patch edge of the models trained here
  int64_t steps = 0;        ///< training steps of each model trained here (0: --minutes)
  double minutes = 1.5;     ///< CPU minutes of each model trained here (when --steps is 0)
  int64_t batch = 8;
  int64_t draws = 16;       ///< random patch orders the patch errors are pooled over
  bool flips = false;       ///< patch reconstructions: mean over the 8 axis flips
  int64_t size = 32;        ///< edge of the cubes shown, voxels
  int64_t train_size = 16;  ///< edge of the training crops, voxels
  uint64_t seed = 0;
  bool overwrite = false;
};

struct ViewSpec {
  std::string name, file;
  bool map = false;
  bool has_centre = false;
  std::array<int64_t, 3> centre_xyz{0, 0, 0};
};

ViewSpec parse_view(const std::string& s, bool map) {
  const auto eq = s.find('=');
  const std::string flag = map ? "--map" : "--view";
  if (eq == std::string::npos || eq == 0 || eq + 1 == s.size()) {
    throw ValueError(flag + " '" + s + "': expected NAME=FILE" + (map ? "" : "[@X,Y,Z]"));
  }
  ViewSpec v;
  v.name = s.substr(0, eq);
  v.file = s.substr(eq + 1);
  v.map = map;
  const auto at = v.file.rfind('@');
  if (!map && at != std::string::npos) {
    const std::string c = v.file.substr(at + 1);
    v.file = v.file.substr(0, at);
    long long x = 0, y = 0, z = 0;
    char tail = 0;
    if (std::sscanf(c.c_str(), "%lld,%lld,%lld%c", &x, &y, &z, &tail) != 3) {
      throw ValueError(flag + " '" + s + "': centre '" + c + "' is not X,Y,Z (voxels)");
    }
    v.has_centre = true;
    v.centre_xyz = {x, y, z};
  }
  return v;
}

std::unique_ptr<Method> demo_model(const DemoParams& p, const std::string& given,
                                   const std::string& mode, const Volume& vol) {
  if (!given.empty()) {
    auto ck = checkpoint_load(given);
    if (ck.method->name() != "mae") {
      throw ValueError(given + " holds a " + ck.method->name() + " model; demo-mask needs mae");
    }
    return std::move(ck.method);
  }
  const std::string path = p.out + "/mae_" + mode + ".uwm";
  TrainOptions o;
  o.method = "mae";
  // One model for every ratio (width): each batch draws its width, and each sample (net=unet; the
  // ViT: each batch) its ratio, from the range shown (mae's defaults ratio_per_sample,
  // ratio_draw=low, sample_loss=log).
  const double rmin = *std::min_element(p.ratios.begin(), p.ratios.end());
  const double rmax = *std::max_element(p.ratios.begin(), p.ratios.end());
  const double wmin = *std::min_element(p.widths.begin(), p.widths.end());
  const double wmax = *std::max_element(p.widths.begin(), p.widths.end());
  o.method_options = {{"mask_mode", mode},
                      {"net", p.net},
                      {"patch", p.patch},
                      {"mask_ratio", std::min(0.95, rmax + 0.05)},
                      {"mask_ratio_min", std::max(0.01, rmin - 0.05)},
                      {"wedge_width_deg", std::min(170.0, wmax + 5)},
                      {"wedge_width_min_deg", std::max(1.0, wmin - 5)}};
  if (p.net == "vit") {
    o.method_options.update({{"dim", 48}, {"depth", 2}, {"heads", 4}, {"decoder_dim", 24},
                             {"decoder_depth", 1}, {"decoder_heads", 2}});
  }
  if (p.steps > 0) {
    o.steps = p.steps;
  } else {
    o.minutes = p.minutes;
    o.budget_clock = "cpu";
  }
  log_info("no {} model given: training a small mae (net={}, mask_mode={}, patch {}) on {} for "
           "{} -> {}", mode == "patch" ? "--model" : "--wedge-model", p.net, mode, p.patch, p.in,
           p.steps > 0 ? std::to_string(p.steps) + " steps" :
                         std::to_string(p.minutes) + " CPU minutes", path);
  o.batch = p.batch;
  o.sampler.patch = p.train_size;
  o.sampler.val_fraction = 0;
  o.val_every = 0;
  o.checkpoint_every = 0;
  o.seed = p.seed;
  o.schedule.lr = p.net == "unet" ? 2e-3 : 1e-3;
  TrainInput in;
  in.a = vol;
  in.name = p.in;
  train_run(o, {in}, path, p.out + "/mae_" + mode + ".log.jsonl", false, p.overwrite);
  auto ck = checkpoint_load(path);
  return std::move(ck.method);
}

// The s^3 cube of a view, on the training volume's normalisation: at the given centre, else
// the window (corners on a grid of s/4) with the largest variance; volumes smaller than s are
// padded with zeros (the specimen's background) first.
torch::Tensor view_cube(const ViewSpec& v, const NormStats& st, int64_t s) {
  // Maps are often pre-2014 files (nversion 0): read them permissively, as the simulator does.
  MrcReadOptions ro;
  ro.permissive = v.map;
  ro.log_warnings = false;
  Volume vol = MrcFile(v.file, ro).read();
  auto d = vol.data.to(torch::kFloat32);
  if (!torch::isfinite(d).all().item<bool>()) {
    throw ValueError(v.file + ": holds non-finite values");
  }
  if (v.map) d = template_normalise(d);
  std::vector<int64_t> pads;
  for (int a = 2; a >= 0; --a) {
    const int64_t extra = std::max<int64_t>(0, s - d.size(a));
    pads.push_back(extra / 2);
    pads.push_back(extra - extra / 2);
  }
  d = torch::constant_pad_nd(d, pads, 0.0);
  std::array<int64_t, 3> start{0, 0, 0};
  if (v.has_centre) {
    const std::array<int64_t, 3> c{v.centre_xyz[2], v.centre_xyz[1], v.centre_xyz[0]};
    for (int a = 0; a < 3; ++a) {
      if (c[a] < 0 || c[a] >= vol.data.size(a)) {
        throw ValueError(v.file + ": view centre " + std::to_string(v.centre_xyz[0]) + "," +
                         std::to_string(v.centre_xyz[1]) + "," + std::to_string(v.centre_xyz[2]) +
                         " is outside the volume " + c10::str(vol.data.sizes()));
      }
      start[a] = std::clamp<int64_t>(c[a] + pads[2 * (2 - a)] - s / 2, 0, d.size(a) - s);
    }
  } else {
    const int64_t stride = std::max<int64_t>(1, s / 4);
    auto opt = torch::nn::functional::AvgPool3dFuncOptions(s).stride(stride);
    auto x5 = d.unsqueeze(0).unsqueeze(0).to(torch::kFloat64);
    auto var = torch::nn::functional::avg_pool3d(x5 * x5, opt) -
               torch::nn::functional::avg_pool3d(x5, opt).pow(2);  // [1, 1, gz, gy, gx]
    const int64_t best = var.flatten().argmax().item<int64_t>();
    const int64_t gy = var.size(3), gx = var.size(4);
    start = {best / (gy * gx) * stride, best / gx % gy * stride, best % gx * stride};
  }
  auto cube = d.narrow(0, start[0], s).narrow(1, start[1], s).narrow(2, start[2], s);
  return norm_apply(cube, st).reshape({1, 1, s, s, s}).contiguous();
}

// Central XY and XZ slices of v [1, 1, Z, Y, X] side by side on contrast c.
Image slices_image(const torch::Tensor& v, const Contrast& c) {
  auto s = central_slices(v[0][0]);
  return image_montage({image_from_slice(s.xy, c, 4), image_from_slice(s.xz, c, 4)}, 2, 2);
}

std::string png_b64(const Image& im) { return base64_encode(png_encode(im)); }

// NaN -> JSON null.
json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

struct ViewResult {
  std::string name;
  json numbers;
  json images;  ///< {"structure": b64, "patch": [{masked, rec}], "wedge": [{masked, rec}]}
  std::vector<Image> patch_rows, wedge_rows;
  PlotSeries err, err_common, band, band_input;
};

ViewResult run_view(const DemoParams& p, const ViewSpec& v, const torch::Tensor& x,
                    Method& patch_model, Method& wedge_model) {
  const int64_t s = p.size;
  const double var = x.var().item<double>();
  if (!(var > 0)) throw ValueError(v.file + ": the view's cube is constant");
  const Contrast c = contrast_percentile(x, 0.01, 0.99);
  ViewResult r;
  r.name = v.name;
  r.numbers = {{"name", v.name}, {"file", v.file}, {"patch", json::array()},
               {"wedge", json::array()}};
  const Image orig = slices_image(x, c);
  r.images = {{"structure", png_b64(orig)}, {"patch", json::array()}, {"wedge", json::array()}};
  r.patch_rows = {orig, orig};
  r.wedge_rows = {orig, orig};
  r.err = {v.name, {}, {}, "", false};
  r.err_common = {v.name + ": the same voxels at every ratio", {}, {}, "", true};
  r.band = {v.name + ": reconstruction", {}, {}, "", false};
  r.band_input = {v.name + ": wedged input", {}, {}, "", true};

  const int64_t pt = mae_patch(patch_model);
  const std::array<int64_t, 3> grid{s / pt, s / pt, s / pt};
  const int64_t n = grid[0] * grid[1] * grid[2];
  // Nested masks: for each of p.draws random orders of the patches, ratio r hides the first
  // round(r n) of them (what 15 % hides, 30 % hides too). Errors are pooled over the draws;
  // the page shows the first draw.
  torch::manual_seed(p.seed + 1000);  // the same masks for every view
  auto order = torch::rand({p.draws, n}).argsort(int64_t(1));  // [D, N]
  // The patches hidden at every ratio (the first round(r_min n) of each order): on them only the
  // context changes with the ratio, so their error is the clean "less context, worse fill".
  const double rmin = *std::min_element(p.ratios.begin(), p.ratios.end());
  const int64_t hide_common = std::max<int64_t>(1, std::llround(rmin * double(n)));
  // A patch mask [1, N] as voxels [1, 1, s, s, s].
  auto voxels = [&](const torch::Tensor& m) {
    return vit3d_unpatchify(m.unsqueeze(-1).expand({1, n, pt * pt * pt}).contiguous(), pt, grid);
  };
  std::vector<torch::Tensor> common_vox;
  for (int64_t d = 0; d < p.draws; ++d) {
    common_vox.push_back(voxels(
        torch::zeros({1, n}).scatter(1, order[d].narrow(0, 0, hide_common).unsqueeze(0), 1.0)));
  }
  for (size_t i = 0; i < p.ratios.size(); ++i) {
    const int64_t hide = std::llround(p.ratios[i] * double(n));
    if (hide < 1 || hide >= n) {
      throw ValueError("--ratios: " + std::to_string(p.ratios[i]) + " hides " +
                       std::to_string(hide) + " of " + std::to_string(n) + " patches");
    }
    double se = 0, se_mean = 0, cnt = 0, se_c = 0, cnt_c = 0;
    for (int64_t d = 0; d < p.draws; ++d) {
      auto keep = std::get<0>(order[d].narrow(0, hide, n - hide).sort()).unsqueeze(0);  // [1, K]
      auto hidden = torch::ones({1, n}).scatter(1, keep, 0.0);                         // [1, N]
      auto hidden_vox = voxels(hidden);  // 1 = hidden
      auto rec = mae_reconstruct_patches(patch_model, x, keep, p.flips);
      // The simplest fill for comparison: the mean of the visible voxels.
      const double mean_vis = (x * (1.0 - hidden_vox)).sum().item<double>() /
                              (1.0 - hidden_vox).sum().item<double>();
      se += ((rec - x).pow(2) * hidden_vox).sum().item<double>();
      se_mean += ((x - mean_vis).pow(2) * hidden_vox).sum().item<double>();
      cnt += hidden_vox.sum().item<double>();
      se_c += ((rec - x).pow(2) * common_vox[size_t(d)]).sum().item<double>();
      cnt_c += common_vox[size_t(d)].sum().item<double>();
      if (d > 0) continue;
      auto masked = x * (1.0 - hidden_vox);
      // Shown: the hidden voxels mid-grey on the contrast, distinct from the background.
      const Image mi = slices_image(
          torch::lerp(masked, torch::full_like(masked, 0.5 * (c.lo + c.hi)), hidden_vox), c);
      const Image ri = slices_image(rec, c);
      r.patch_rows.push_back(mi);
      r.patch_rows.push_back(ri);
      r.images["patch"].push_back({{"masked", png_b64(mi)}, {"rec", png_b64(ri)}});
    }
    const double e = se / cnt / var, e_mean = se_mean / cnt / var, e_c = se_c / cnt_c / var;
    r.err.x.push_back(100 * p.ratios[i]);
    r.err.y.push_back(e);
    r.err_common.x.push_back(100 * p.ratios[i]);
    r.err_common.y.push_back(e_c);
    r.numbers["patch"].push_back({{"ratio", p.ratios[i]},
                                  {"nmse_hidden", e},
                                  {"nmse_hidden_mean_fill", e_mean},
                                  {"nmse_common", e_c},
                                  {"common_ratio", rmin}});
    log_info("{}: {:.0f} % hidden: MSE/variance on hidden patches {:.3f} (mean fill {:.3f}; on "
             "the {:.0f} % hidden at every ratio {:.3f}; {} mask draws)", v.name,
             100 * p.ratios[i], e, e_mean, 100 * rmin, e_c, p.draws);
  }

  for (double w : p.widths) {
    WedgeGeometry g;  // tilt axis Y, beam Z: the hidden double wedge about kz
    g.tilt_min_deg = -(90.0 - w / 2);
    g.tilt_max_deg = 90.0 - w / 2;
    auto mask = wedge_mask_rfft({s, s, s}, g, torch::kCPU);
    auto wedged = wedge_apply(x, mask);
    auto pred = mae_predict(wedge_model, wedged);
    auto rec = wedge_apply(wedged, mask) + wedge_apply(pred, 1.0 - mask);
    auto band = (1.0 - mask) > 0.5;
    auto x0 = x[0][0] - x.mean(), rec0 = rec[0][0] - rec.mean(), w0 = wedged[0][0] - wedged.mean();
    const double cc_band = band_cc(rec0, x0, band);
    const double cc_band_in = band_cc(w0, x0, band);  // NaN: the wedged input has no power there
    const double cc = metric_pearson_cc(rec[0][0], x[0][0]);
    const double cc_in = metric_pearson_cc(wedged[0][0], x[0][0]);
    const double e = (rec - x).pow(2).mean().item<double>() / var;
    const double e_in = (wedged - x).pow(2).mean().item<double>() / var;
    const Image mi = slices_image(wedged, c), ri = slices_image(rec, c);
    r.wedge_rows.push_back(mi);
    r.wedge_rows.push_back(ri);
    r.images["wedge"].push_back({{"masked", png_b64(mi)}, {"rec", png_b64(ri)}});
    r.band.x.push_back(w);
    r.band.y.push_back(cc_band);
    r.band_input.x.push_back(w);
    r.band_input.y.push_back(std::isfinite(cc_band_in) ? cc_band_in : 0.0);
    r.numbers["wedge"].push_back({{"width_deg", w},
                                  {"cc_wedge_band", num(cc_band)},
                                  {"cc_wedge_band_input", num(cc_band_in)},
                                  {"cc", cc},
                                  {"cc_input", cc_in},
                                  {"nmse", e},
                                  {"nmse_input", e_in}});
    log_info("{}: {:.0f} deg wedge hidden: wedge-band CC {:.3f} (input: {}), CC {:.3f} (input "
             "{:.3f}), MSE/variance {:.3f} (input {:.3f})", v.name, w, cc_band,
             std::isfinite(cc_band_in) ? std::to_string(cc_band_in) : "no power, 0", cc, cc_in,
             e, e_in);
  }
  return r;
}

// The page: data as one inline JSON object, images as base64 PNG data URIs, no external
// resource. Query parameters (view=I, mode=patch|wedge, ratio=I) set the initial state.
std::string page_html(const DemoParams& p, const std::vector<ViewResult>& views,
                      const std::string& err_svg, const std::string& band_svg,
                      const json& model_info) {
  json data = {{"ratios", p.ratios}, {"widths", p.widths}, {"views", json::array()}};
  for (const auto& v : views) {
    json d = v.images;
    d["name"] = v.name;
    d["numbers"] = v.numbers;
    data["views"].push_back(d);
  }
  std::string js = data.dump();
  // Inside <script>, "</" must not appear literally.
  for (size_t i = 0; (i = js.find("</", i)) != std::string::npos; i += 3) js.replace(i, 2, "<\\/");
  std::ostringstream h;
  h << R"(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>unwedge: masked autoencoding demo</title>
<style>
body{font-family:sans-serif;margin:1.2em;max-width:1100px;color:#222}
.row{display:flex;gap:14px;flex-wrap:wrap}
figure{margin:0}figcaption{font-size:90%;text-align:center;color:#444}
img{image-rendering:pixelated;border:1px solid #ccc}
.controls{margin:0.8em 0;display:flex;gap:1.5em;align-items:center;flex-wrap:wrap}
#ratio{width:260px}#state{font-weight:bold}
table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
</style></head><body>
<h1>Masked autoencoding: hide part, reconstruct from the rest</h1>
<p>Each image: central XY | XZ slices of a )"
    << p.size << "<sup>3</sup> cube. <b>Patch</b> mode hides random " << p.patch
    << "<sup>3</sup>-voxel patches (grey = hidden; the visible ones are passed through); "
       "<b>wedge</b> mode hides a Fourier double wedge about k<sub>z</sub> (the missing wedge is "
       "a structured mask) and keeps the measured frequencies. The more is hidden, the less "
       "context remains and the blurrier the reconstruction. The models were trained on crops of "
    << xml_escape(std::filesystem::path(p.in).filename().string())
    << ", not on the structures shown.</p>\n"
    << R"(<div class="controls">
<label>structure <select id="view"></select></label>
<span><label><input type="radio" name="mode" id="mode-patch" value="patch" checked> patches</label>
<label><input type="radio" name="mode" id="mode-wedge" value="wedge"> wedge</label></span>
<label>mask <input type="range" id="ratio" min="0" max="0" step="1" value="0"></label>
<span id="state"></span>
</div>
<div class="row">
<figure><img id="img-structure" alt="structure"><figcaption>structure (ground truth)</figcaption></figure>
<figure><img id="img-masked" alt="masked input"><figcaption id="cap-masked">masked input</figcaption></figure>
<figure><img id="img-rec" alt="reconstruction"><figcaption>reconstruction</figcaption></figure>
</div>
<p id="numbers"></p>
<h2>Error versus mask ratio</h2>
<div class="row"><div>)"
    << err_svg << "</div><div>" << band_svg << R"(</div></div>
<h2>All numbers</h2><div id="table"></div>
<p style="font-size:85%;color:#555">Models: )"
    << xml_escape(model_info.dump()) << R"(</p>
<script id="demo-data" type="application/json">)"
    << js << R"(</script>
<script>
(function(){
const D=JSON.parse(document.getElementById('demo-data').textContent);
const q=new URLSearchParams(window.location.search);
let view=Math.min(Math.max(parseInt(q.get('view')||'0',10)||0,0),D.views.length-1);
let mode=q.get('mode')==='wedge'?'wedge':'patch';
let idx=parseInt(q.get('ratio')||'0',10)||0;
const sel=document.getElementById('view'),sl=document.getElementById('ratio');
D.views.forEach((v,i)=>{const o=document.createElement('option');o.value=i;o.textContent=v.name;sel.appendChild(o);});
function f(x,d){return x===null||x===undefined?'undefined (no power)':x.toFixed(d);}
function labels(){return mode==='patch'?D.ratios.map(r=>Math.round(100*r)+' % of patches hidden'):D.widths.map(w=>w+'\u00b0 wedge hidden');}
function show(){
  const v=D.views[view],L=labels();
  idx=Math.min(Math.max(idx,0),L.length-1);
  sel.value=view;sl.max=L.length-1;sl.value=idx;
  document.getElementById('mode-'+mode).checked=true;
  const s=v[mode][idx],n=v.numbers[mode][idx];
  document.getElementById('img-structure').src='data:image/png;base64,'+v.structure;
  document.getElementById('img-masked').src='data:image/png;base64,'+s.masked;
  document.getElementById('img-rec').src='data:image/png;base64,'+s.rec;
  document.getElementById('cap-masked').textContent=mode==='patch'?'masked input':'wedged input';
  document.getElementById('state').textContent=v.name+': '+L[idx];
  document.getElementById('numbers').textContent=mode==='patch'?
    'MSE / variance on the hidden patches: '+f(n.nmse_hidden,3)+' (filling them with the visible mean: '+f(n.nmse_hidden_mean_fill,3)+
    '); on the '+Math.round(100*n.common_ratio)+' % hidden at every ratio: '+f(n.nmse_common,3):
    'wedge-band CC with the structure: reconstruction '+f(n.cc_wedge_band,3)+', wedged input '+f(n.cc_wedge_band_input,3)+
    '; whole-cube CC: reconstruction '+f(n.cc,3)+', wedged input '+f(n.cc_input,3);
  document.body.setAttribute('data-state',view+'/'+mode+'/'+idx);
  boxes();
}
// Where the three images are (CSS pixels: left,top,width,height), for tests.
function boxes(){
  document.body.setAttribute('data-boxes',['img-structure','img-masked','img-rec'].map(id=>{
    const r=document.getElementById(id).getBoundingClientRect();
    return [r.left,r.top,r.width,r.height].map(Math.round).join(',');}).join(';'));
}
window.addEventListener('load',boxes);
sel.onchange=()=>{view=parseInt(sel.value,10);show();};
sl.oninput=()=>{idx=parseInt(sl.value,10);show();};
document.getElementById('mode-patch').onchange=()=>{mode='patch';show();};
document.getElementById('mode-wedge').onchange=()=>{mode='wedge';show();};
let t='<table><tr><th>structure</th>'+D.ratios.map(r=>'<th>'+Math.round(100*r)+' %</th>').join('')+
  D.widths.map(w=>'<th>'+w+'\u00b0 band CC</th>').join('')+'</tr>';
D.views.forEach(v=>{t+='<tr><th>'+v.name.replace(/[<&]/g,'')+'</th>'+v.numbers.patch.map(n=>'<td>'+f(n.nmse_hidden,3)+'</td>').join('')+
  v.numbers.wedge.map(n=>'<td>'+f(n.cc_wedge_band,3)+'</td>').join('')+'</tr>';});
D.views.forEach(v=>{t+='<tr><th>'+v.name.replace(/[<&]/g,'')+': same voxels</th>'+v.numbers.patch.map(n=>'<td>'+f(n.nmse_common,3)+'</td>').join('')+
  v.numbers.wedge.map(n=>'<td></td>').join('')+'</tr>';});
document.getElementById('table').innerHTML=t+'</table><p>Patch columns: MSE / variance on hidden patches; rows "same voxels": on the patches hidden at every ratio (the masks are nested), where only the context shrinks as the ratio rises; wedge columns: wedge-band CC of the reconstruction (the wedged input has no power in the band).</p>';
show();
})();
</script>
</body></html>
)";
  return h.str();
}

void run_demo(const DemoParams& p) {
  if (p.ratios.empty() || p.widths.empty()) throw ValueError("--ratios and --widths need values");
  for (double r : p.ratios) {
    if (!(r > 0 && r < 1)) throw ValueError("--ratios: " + std::to_string(r) + " not in (0, 1)");
  }
  for (double w : p.widths) {
    if (!(w > 0 && w < 180)) throw ValueError("--widths: " + std::to_string(w) +
                                              " not in (0, 180)");
  }
  if (p.size < 16 || p.size % 8 != 0) {
    throw ValueError("--size " + std::to_string(p.size) + " is not a multiple of 8, >= 16");
  }
  if (p.patch < 2 || p.size % p.patch != 0) {
    throw ValueError("--patch " + std::to_string(p.patch) + " does not divide --size " +
                     std::to_string(p.size));
  }
  if (p.train_size < 2 * p.patch || p.train_size % p.patch != 0 ||
      p.train_size % 8 != 0) {
    throw ValueError("--train-size " + std::to_string(p.train_size) + " is not a multiple of 8 "
                     "and of --patch, >= 2 patches");
  }
  if (p.net == "vit" && p.train_size != p.size) {
    throw ValueError("--net vit: --train-size " + std::to_string(p.train_size) +
                     " must equal --size " + std::to_string(p.size) + " (position embeddings)");
  }
  if (p.draws < 1) throw ValueError("--draws " + std::to_string(p.draws) + " is not >= 1");
  if (p.steps <= 0 && !(p.minutes > 0)) throw ValueError("--steps or --minutes must be > 0");
  if (!p.train_only.empty()) {
    std::filesystem::create_directories(p.out);
    Volume vol = MrcFile(p.in).read();
    auto stats = norm_stats_compute(vol.data, NormMode::central, 0.5, p.in);
    vol.data = norm_apply(vol.data, stats);
    demo_model(p, "", p.train_only, vol);
    log_info("--train-only {}: wrote {}/mae_{}.uwm", p.train_only, p.out, p.train_only);
    return;
  }
  std::vector<ViewSpec> specs;
  for (const auto& s : p.views) specs.push_back(parse_view(s, false));
  for (const auto& s : p.maps) specs.push_back(parse_view(s, true));
  if (specs.empty()) specs.push_back({"input", p.in});
  for (const char* f : {"mask_patches.png", "mask_wedge.png", "error_vs_ratio.svg",
                        "error_vs_wedge.svg", "demo_mask.json", "demo_mask.html",
                        "report.html"}) {
    const std::string path = p.out + "/" + f;
    if (!p.overwrite && std::filesystem::exists(path)) {
      throw ExistsError("output '" + path + "' exists (use --overwrite)");
    }
  }
  std::filesystem::create_directories(p.out);
  Volume vol = MrcFile(p.in).read();
  for (int a = 0; a < 3; ++a) {
    if (vol.data.size(a) < p.size) {
      throw ShapeError(p.in + ": size " + c10::str(vol.data.sizes()) + " is smaller than --size " +
                       std::to_string(p.size));
    }
  }
  auto stats = norm_stats_compute(vol.data, NormMode::central, 0.5, p.in);
  // The views first: a bad one fails before any training.
  std::vector<torch::Tensor> cubes;
  for (const auto& v : specs) cubes.push_back(view_cube(v, stats, p.size));
  Volume normed = vol;
  normed.data = norm_apply(vol.data, stats);
  auto patch_model = demo_model(p, p.model, "patch", normed);
  auto wedge_model = demo_model(p, p.wedge_model, "wedge", normed);
  patch_model->train(false);
  wedge_model->train(false);
  if (p.size % mae_patch(*patch_model) != 0) {
    throw ValueError("--size " + std::to_string(p.size) + " is not a multiple of the model's "
                     "patch " + std::to_string(mae_patch(*patch_model)));
  }

  std::vector<ViewResult> results;
  json out = {{"input", p.in}, {"size", p.size}, {"views", json::array()},
              {"models", {{"patch", patch_model->options_json()},
                          {"wedge", wedge_model->options_json()}}}};
  for (size_t i = 0; i < specs.size(); ++i) {
    results.push_back(run_view(p, specs[i], cubes[i], *patch_model, *wedge_model));
    out["views"].push_back(results.back().numbers);
  }
  const auto& first = results.front();
  png_write(p.out + "/mask_patches.png", image_montage(first.patch_rows, 2, 6), p.overwrite);
  png_write(p.out + "/mask_wedge.png", image_montage(first.wedge_rows, 2, 6), p.overwrite);

  std::vector<PlotSeries> err, band;
  for (const auto& r : results) {
    err.push_back(r.err);
    err.push_back(r.err_common);
    band.push_back(r.band);
  }
  PlotSeries zero{"wedged input (no power in the band)", p.widths,
                  std::vector<double>(p.widths.size(), 0.0), "#888", true};
  band.push_back(zero);
  PlotOptions po;
  po.title = "Error on hidden patches vs mask ratio";
  po.xlabel = "patches hidden (%)";
  po.ylabel = "MSE / variance (hidden patches)";
  const std::string err_svg = svg_line_plot(err, po);
  po.title = "Wedge-band CC with the structure vs hidden wedge";
  po.xlabel = "hidden double-wedge width (degrees)";
  po.ylabel = "CC in the hidden wedge";
  po.fixed_y = true;
  po.y_min = -0.1;
  po.y_max = 1.0;
  const std::string band_svg = svg_line_plot(band, po);
  write_text_file_atomic(p.out + "/error_vs_ratio.svg", err_svg, p.overwrite);
  write_text_file_atomic(p.out + "/error_vs_wedge.svg", band_svg, p.overwrite);
  write_text_file_atomic(p.out + "/demo_mask.json", out.dump(2) + "\n", p.overwrite);
  write_text_file_atomic(p.out + "/demo_mask.html",
                         page_html(p, results, err_svg, band_svg, out["models"]), p.overwrite);

  ReportInput rep;
  rep.title = "unwedge demo-mask: masked autoencoding (" + first.name + ")";
  rep.input = std::filesystem::absolute(p.in).string();
  const std::string rows_note = " Each image shows the central XY | XZ slices of the " +
                                std::to_string(p.size) + "^3 cube of '" + first.name +
                                "'; the first row is the structure, then one row per setting: "
                                "masked input | reconstruction. The interactive page with every "
                                "structure is demo_mask.html.";
  rep.sections = {
      {"Hidden patches: masked input and reconstruction", p.out + "/mask_patches.png",
       "Random " + std::to_string(mae_patch(*patch_model)) + "^3 patches hidden." + rows_note},
      {"Error vs mask ratio", p.out + "/error_vs_ratio.svg",
       "MSE on the hidden patches over the cube's variance (1 = no better than the mean); "
       "dashed: on the patches hidden at every ratio (the masks are nested), where only the "
       "context shrinks as the ratio rises."},
      {"Hidden Fourier wedge: wedged input and reconstruction", p.out + "/mask_wedge.png",
       "Hidden double wedges about kz." + rows_note},
      {"Wedge-band CC vs hidden wedge width", p.out + "/error_vs_wedge.svg",
       "Correlation with the structure inside the hidden wedge (the wedged input has none)."},
  };
  report_write(rep, p.out + "/report.html", p.overwrite);
  log_info("wrote {}/demo_mask.html (the page), mask_patches.png, mask_wedge.png, "
           "error_vs_ratio.svg, error_vs_wedge.svg, demo_mask.json and report.html", p.out);
}

}  // namespace

void add_demo_mask_command(CLI::App& root, GlobalOptions&) {
  auto p = std::make_shared<DemoParams>();
  CLI::App* cmd = root.add_subcommand(
      "demo-mask", "Masked-autoencoding demo: train two small mae models (hidden patches, hidden "
                   "Fourier wedge) on crops of --in, show them on other structures; writes "
                   "demo_mask.html (interactive page), PNG, SVG, JSON, report.html");
  cmd->add_option("--in", p->in, "Training volume (a clean structure or tomogram), MRC")
      ->required();
  cmd->add_option("--out", p->out, "Output folder")->required();
  cmd->add_option("--view", p->views,
                  "Structure shown, NAME=FILE[@X,Y,Z] (repeatable): the --size cube at that "
                  "centre (voxels), else the cube of largest variance; default: --in");
  cmd->add_option("--map", p->maps,
                  "Protein map shown, NAME=FILE (repeatable): normalised like the simulator's "
                  "templates (protein interior = 1), zero-padded to --size, not resampled");
  cmd->add_option("--ratios", p->ratios, "Fractions of patches hidden")
      ->delimiter(',')->capture_default_str();
  cmd->add_option("--widths", p->widths, "Hidden double-wedge widths, degrees")
      ->delimiter(',')->capture_default_str();
  cmd->add_option("--model", p->model,
                  "mae model (patch mode); default: train a small one on --in");
  cmd->add_option("--wedge-model", p->wedge_model,
                  "mae model (mask_mode=wedge); default: train a small one on --in");
  cmd->add_option("--train-only", p->train_only,
                  "Only train the patch or the wedge model (OUT/mae_MODE.uwm) and stop: two "
                  "such runs in parallel, then --model/--wedge-model, use two cores")
      ->check(CLI::IsMember({"patch", "wedge"}));
  cmd->add_option("--net", p->net, "Network of the models trained here: unet | vit")
      ->check(CLI::IsMember({"unet", "vit"}))->capture_default_str();
  cmd->add_option("--patch", p->patch, "Patch edge of the models trained here, voxels")
      ->capture_default_str();
  cmd->add_option("--steps", p->steps, "Training steps of each model trained here (0: --minutes)")
      ->capture_default_str();
  cmd->add_option("--minutes", p->minutes,
                  "CPU minutes of each model trained here (when --steps is 0)")
      ->capture_default_str();
  cmd->add_option("--batch", p->batch, "Training batch")->capture_default_str();
  cmd->add_option("--train-size", p->train_size,
                  "Edge of the training crops (a multiple of --patch; the U-Net is convolutional, "
                  "so crops smaller than --size train faster on the same context)")
      ->capture_default_str();
  cmd->add_option("--size", p->size, "Edge of the cubes shown and trained on (multiple of 8)")
      ->capture_default_str();
  cmd->add_option("--draws", p->draws,
                  "Random patch orders (nested masks) the hidden-patch errors are pooled over")
      ->capture_default_str();
  cmd->add_option("--flips", p->flips,
                  "Patch reconstructions: the mean of the model's predictions over the 8 axis "
                  "flips of the masked volume")
      ->capture_default_str();
  cmd->add_option("--seed", p->seed, "Seed of masks and training")->capture_default_str();
  add_overwrite_flag(*cmd, p->overwrite);
  cmd->callback([p, cmd] {
    run_demo(*p);
    write_config_beside(*cmd, p->out);
  });
}

}  // namespace unwedge::cli
