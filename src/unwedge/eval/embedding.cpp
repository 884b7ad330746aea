// Embedding evaluation: particle tables, boxes, CSV, k-NN, linear probe, PCA, scatter SVG.
#include "unwedge/eval/embedding.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include <torch/torch.h>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"
#include "unwedge/eval/svg.h"

namespace unwedge {

namespace {

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(line);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

std::vector<std::string> split_ws(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

double parse_number(const std::string& s, const std::string& path, size_t line) {
  std::istringstream in(s);
  in.imbue(std::locale::classic());
  double v = 0;
  if (!(in >> v) || (!in.eof() && (in >> std::ws, !in.eof()))) {
    throw FormatError(path + ":" + std::to_string(line) + ": '" + s + "' is not a number");
  }
  return v;
}

ParticleTable read_star(std::ifstream& in, const std::string& path) {
  ParticleTable t;
  std::map<std::string, size_t> cols;
  std::string line;
  size_t lineno = 0;
  bool in_loop = false;
  while (std::getline(in, line)) {
    ++lineno;
    auto w = split_ws(line);
    if (w.empty() || w[0][0] == '#') continue;
    if (w[0] == "loop_") {
      if (!t.xyz.empty()) break;  // first table with coordinates only
      cols.clear();
      in_loop = true;
      continue;
    }
    if (w[0].rfind("data_", 0) == 0) {
      if (!t.xyz.empty()) break;
      in_loop = false;
      continue;
    }
    if (!in_loop) continue;
    if (w[0][0] == '_') {
      cols[w[0].substr(1)] = cols.size();
      continue;
    }
    if (!cols.count("rlnCoordinateX") || !cols.count("rlnCoordinateY") ||
        !cols.count("rlnCoordinateZ")) {
      continue;  // a table without coordinates
    }
    std::array<double, 3> p{};
    const char* names[3] = {"rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"};
    for (int a = 0; a < 3; ++a) {
      size_t c = cols[names[a]];
      if (c >= w.size()) {
        throw FormatError(path + ":" + std::to_string(lineno) + ": row has " +
                          std::to_string(w.size()) + " fields, needs " + std::to_string(c + 1));
      }
      p[a] = parse_number(w[c], path, lineno);
    }
    t.xyz.push_back(p);
    if (cols.count("rlnClassNumber") && cols["rlnClassNumber"] < w.size()) {
      t.labels.push_back(w[cols["rlnClassNumber"]]);
    }
  }
  if (t.xyz.empty()) {
    throw FormatError(path + ": no STAR table with rlnCoordinateX/Y/Z rows");
  }
  if (!t.labels.empty() && t.labels.size() != t.xyz.size()) t.labels.clear();
  return t;
}

}  // namespace

ParticleTable particle_table_read(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError("cannot open particle table '" + path + "'");
  if (path.size() >= 5 && path.substr(path.size() - 5) == ".star") return read_star(in, path);
  std::string line;
  if (!std::getline(in, line)) throw FormatError(path + ": empty particle table");
  auto head = split(line, ',');
  int ix = -1, iy = -1, iz = -1, ic = -1;
  for (size_t i = 0; i < head.size(); ++i) {
    if (head[i] == "x_vox") ix = int(i);
    if (head[i] == "y_vox") iy = int(i);
    if (head[i] == "z_vox") iz = int(i);
    if (head[i] == "class") ic = int(i);
  }
  if (ix < 0 || iy < 0 || iz < 0) {
    throw FormatError(path + ": header '" + line + "' has no x_vox, y_vox, z_vox columns");
  }
  ParticleTable t;
  size_t lineno = 1;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    auto f = split(line, ',');
    const int need = std::max({ix, iy, iz, ic}) + 1;
    if (int(f.size()) < need) {
      throw FormatError(path + ":" + std::to_string(lineno) + ": " + std::to_string(f.size()) +
                        " fields, need " + std::to_string(need));
    }
    t.xyz.push_back({parse_number(f[ix], path, lineno), parse_number(f[iy], path, lineno),
                     parse_number(f[iz], path, lineno)});
    if (ic >= 0) t.labels.push_back(f[ic]);
  }
  if (t.xyz.empty()) throw FormatError(path + ": no particles");
  return t;
}

at::Tensor subtomo_extract(const at::Tensor& vol, const ParticleTable& t, int64_t box,
                           int64_t first, int64_t count) {
  if (vol.dim() != 3) throw ShapeError("subtomo_extract: volume must be [Z, Y, X], got " +
                                       c10::str(vol.sizes()));
  if (box < 1) throw ValueError("subtomo_extract: box " + std::to_string(box) + " is not >= 1");
  if (first < 0 || count < 0 || first + count > int64_t(t.xyz.size())) {
    throw ValueError("subtomo_extract: particles [" + std::to_string(first) + ", " +
                     std::to_string(first + count) + ") outside the table of " +
                     std::to_string(t.xyz.size()));
  }
  auto out = torch::zeros({count, 1, box, box, box}, vol.options());
  for (int64_t i = 0; i < count; ++i) {
    const auto& p = t.xyz[size_t(first + i)];
    // (z, y, x) start of the box and the overlap with the volume
    std::array<int64_t, 3> s{std::llround(p[2]) - box / 2, std::llround(p[1]) - box / 2,
                             std::llround(p[0]) - box / 2};
    std::array<int64_t, 3> lo{}, hi{};
    bool empty = false;
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::max<int64_t>(0, s[a]);
      hi[a] = std::min<int64_t>(vol.size(a), s[a] + box);
      empty = empty || hi[a] <= lo[a];
    }
    if (empty) continue;
    auto src = vol.slice(0, lo[0], hi[0]).slice(1, lo[1], hi[1]).slice(2, lo[2], hi[2]);
    out[i][0]
        .slice(0, lo[0] - s[0], hi[0] - s[0])
        .slice(1, lo[1] - s[1], hi[1] - s[1])
        .slice(2, lo[2] - s[2], hi[2] - s[2])
        .copy_(src);
  }
  return out;
}

ParticleSize particle_size_measure(const at::Tensor& vol, const ParticleTable& t,
                                   int64_t probe, int64_t multiple) {
  const int64_t n = int64_t(t.xyz.size());
  if (n == 0) throw ValueError("particle_size_measure: the particle table is empty");
  if (probe < 8 || multiple < 1) {
    throw ValueError("particle_size_measure: probe " + std::to_string(probe) + " / multiple " +
                     std::to_string(multiple) + " too small");
  }
  auto mean = torch::zeros({probe, probe, probe}, vol.options().dtype(torch::kDouble));
  for (int64_t first = 0; first < n; first += 64) {
    const int64_t count = std::min<int64_t>(64, n - first);
    auto boxes = subtomo_extract(vol, t, probe, first, count).to(torch::kDouble);
    mean += boxes.sum(std::vector<int64_t>{0, 1});  // [probe, probe, probe]
  }
  mean /= double(n);
  // Distance of every voxel from the centre voxel (probe / 2, as subtomo_extract centres).
  auto r1 = torch::arange(probe, mean.options()) - double(probe / 2);
  auto r = (r1.view({-1, 1, 1}).pow(2) + r1.view({1, -1, 1}).pow(2) + r1.view({1, 1, -1}).pow(2))
               .sqrt();
  const int64_t shells = probe / 2;
  auto shell = r.round().to(torch::kLong).clamp_max(shells);  // shell `shells`: the corners
  auto sum = torch::zeros({shells + 1}, mean.options()).scatter_add_(0, shell.flatten(),
                                                                     mean.flatten());
  auto cnt = torch::zeros({shells + 1}, mean.options())
                 .scatter_add_(0, shell.flatten(), torch::ones_like(mean).flatten());
  auto prof = (sum / cnt.clamp_min(1)).narrow(0, 0, shells);  // [shells], r = 0 .. shells - 1
  const int64_t outer = std::max<int64_t>(1, shells / 4);
  const double bg = prof.narrow(0, shells - outer, outer).mean().item<double>();
  const double c0 = prof[0].item<double>() - bg;
  // The centre is one voxel of the mean: its noise is the spread of the mean's single voxels
  // in the background shells.
  const double noise = mean.masked_select(shell >= shells - outer).std().item<double>();
  if (!(std::abs(c0) > 4 * noise)) {
    throw ValueError("particle_size_measure: the mean of the " + std::to_string(n) +
                     " particle boxes has no contrast at the centre (" + std::to_string(c0) +
                     " against the background voxels' spread " + std::to_string(noise) +
                     "); are the coordinates in voxels of this tomogram?");
  }
  ParticleSize out;
  out.contrast = c0;
  out.radius = double(shells - outer);
  auto rel = ((prof - bg) / c0).contiguous();  // 1 at the centre
  const double* q = rel.data_ptr<double>();
  constexpr double level = 0.1;
  for (int64_t i = 1; i < shells - outer; ++i) {
    if (q[i] < level) {
      out.radius = double(i - 1) + (q[i - 1] - level) / (q[i - 1] - q[i]);
      break;
    }
  }
  const double want = 3.0 * out.radius;
  const int64_t lo = 2 * multiple, hi = std::max(lo, probe / multiple * multiple);
  out.box = std::clamp<int64_t>(std::llround(want / double(multiple)) * multiple, lo, hi);
  return out;
}

void embedding_csv_write(const std::string& path, const std::vector<int64_t>& ids,
                         const at::Tensor& emb, bool overwrite) {
  if (emb.dim() != 2 || emb.size(0) != int64_t(ids.size())) {
    throw ShapeError("embedding_csv_write: " + std::to_string(ids.size()) + " ids for " +
                     c10::str(emb.sizes()));
  }
  auto e = emb.to(torch::kCPU, torch::kDouble).contiguous();
  auto a = e.accessor<double, 2>();
  std::ostringstream s;
  s.imbue(std::locale::classic());
  s << "id";
  for (int64_t d = 0; d < e.size(1); ++d) s << ",e" << d;
  s << "\n";
  char buf[32];
  for (int64_t i = 0; i < e.size(0); ++i) {
    s << ids[size_t(i)];
    for (int64_t d = 0; d < e.size(1); ++d) {
      std::snprintf(buf, sizeof buf, ",%.7g", a[i][d]);
      s << buf;
    }
    s << "\n";
  }
  write_text_file_atomic(path, s.str(), overwrite);
}

EmbeddingTable embedding_csv_read(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError("cannot open embedding file '" + path + "'");
  std::string line;
  if (!std::getline(in, line) || line.rfind("id,", 0) != 0) {
    throw FormatError(path + ": first line must be the header 'id,e0,e1,...'");
  }
  const size_t dim = split(line, ',').size() - 1;
  EmbeddingTable t;
  std::vector<double> values;
  size_t lineno = 1;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    auto f = split(line, ',');
    if (f.size() != dim + 1) {
      throw FormatError(path + ":" + std::to_string(lineno) + ": " + std::to_string(f.size()) +
                        " fields, header has " + std::to_string(dim + 1));
    }
    t.ids.push_back(int64_t(parse_number(f[0], path, lineno)));
    for (size_t d = 0; d < dim; ++d) values.push_back(parse_number(f[d + 1], path, lineno));
  }
  if (t.ids.empty()) throw FormatError(path + ": no embeddings");
  t.x = torch::tensor(values, torch::kDouble).view({int64_t(t.ids.size()), int64_t(dim)});
  return t;
}

at::Tensor labels_encode(const std::vector<std::string>& names, std::vector<std::string>* classes) {
  std::map<std::string, int64_t> index;
  std::vector<int64_t> y;
  classes->clear();
  for (const auto& n : names) {
    auto it = index.find(n);
    if (it == index.end()) {
      it = index.emplace(n, int64_t(classes->size())).first;
      classes->push_back(n);
    }
    y.push_back(it->second);
  }
  return torch::tensor(y, torch::kLong);
}

namespace {

void check_xy(const at::Tensor& x, const at::Tensor& y, int64_t folds, const char* who) {
  if (x.dim() != 2 || y.dim() != 1 || x.size(0) != y.size(0)) {
    throw ShapeError(std::string(who) + ": x [N, D] and y [N] needed, got " +
                     c10::str(x.sizes()) + " and " + c10::str(y.sizes()));
  }
  if (folds < 2 || folds > x.size(0)) {
    throw ValueError(std::string(who) + ": " + std::to_string(folds) + " folds for " +
                     std::to_string(x.size(0)) + " samples");
  }
}

// Fold index of each sample [N] from a seeded permutation.
at::Tensor fold_of(int64_t n, int64_t folds, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto perm = torch::randperm(n, gen, torch::kLong);
  return torch::empty({n}, torch::kLong).scatter_(0, perm, torch::arange(n).remainder(folds));
}

at::Tensor standardise(const at::Tensor& x, const at::Tensor& ref) {
  auto mean = ref.mean(0, true);
  auto sd = ref.std(0, /*unbiased=*/false, /*keepdim=*/true).clamp_min(1e-12);
  return (x - mean) / sd;
}

}  // namespace

double knn_cv_accuracy(const at::Tensor& x_in, const at::Tensor& y, int64_t k, int64_t folds,
                       uint64_t seed) {
  check_xy(x_in, y, folds, "knn_cv_accuracy");
  if (k < 1) throw ValueError("knn_cv_accuracy: k " + std::to_string(k) + " is not >= 1");
  auto x = x_in.to(torch::kDouble);
  x = standardise(x, x);
  const int64_t n = x.size(0), c = y.max().item<int64_t>() + 1;
  auto fold = fold_of(n, folds, seed);
  int64_t correct = 0;
  for (int64_t f = 0; f < folds; ++f) {
    auto te = (fold == f).nonzero().view(-1), tr = (fold != f).nonzero().view(-1);
    const int64_t kk = std::min<int64_t>(k, tr.size(0));
    auto d = torch::cdist(x.index_select(0, te), x.index_select(0, tr));  // [T, R]
    auto nn = std::get<1>(d.topk(kk, 1, /*largest=*/false, /*sorted=*/true));  // [T, kk]
    auto lab = y.index_select(0, tr).index_select(0, nn.view(-1)).view(nn.sizes());
    // one vote per neighbour, plus a small bonus for nearer ones to break ties
    auto w = 1.0 + 1e-3 / (torch::arange(kk, x.options()) + 1.0);
    auto votes = torch::zeros({te.size(0), c}, x.options())
                     .scatter_add_(1, lab, w.unsqueeze(0).expand({te.size(0), kk}).contiguous());
    correct += (votes.argmax(1) == y.index_select(0, te)).sum().item<int64_t>();
  }
  return double(correct) / double(n);
}

double linear_probe_cv_accuracy(const at::Tensor& x_in, const at::Tensor& y, int64_t folds,
                                int64_t steps, double l2, uint64_t seed) {
  check_xy(x_in, y, folds, "linear_probe_cv_accuracy");
  auto x = x_in.to(torch::kDouble);
  const int64_t n = x.size(0), dim = x.size(1), c = y.max().item<int64_t>() + 1;
  auto fold = fold_of(n, folds, seed);
  int64_t correct = 0;
  for (int64_t f = 0; f < folds; ++f) {
    auto te = (fold == f).nonzero().view(-1), tr = (fold != f).nonzero().view(-1);
    auto xtr = x.index_select(0, tr), ytr = y.index_select(0, tr);
    auto xte = standardise(x.index_select(0, te), xtr);
    xtr = standardise(xtr, xtr);
    auto w = torch::zeros({dim, c}, x.options()).requires_grad_(true);
    auto b = torch::zeros({c}, x.options()).requires_grad_(true);
    torch::optim::LBFGS opt({w, b}, torch::optim::LBFGSOptions(1.0).max_iter(steps)
                                        .line_search_fn("strong_wolfe"));
    auto closure = [&] {
      opt.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(torch::matmul(xtr, w) + b, ytr) +
                  l2 * w.pow(2).sum();
      loss.backward();
      return loss;
    };
    opt.step(closure);
    torch::NoGradGuard ng;
    auto pred = (torch::matmul(xte, w) + b).argmax(1);
    correct += (pred == y.index_select(0, te)).sum().item<int64_t>();
  }
  return double(correct) / double(n);
}

Pca pca_fit(const at::Tensor& x_in, int64_t k) {
  if (x_in.dim() != 2 || x_in.size(0) < 2) {
    throw ShapeError("pca_fit: x must be [N >= 2, D], got " + c10::str(x_in.sizes()));
  }
  k = std::min<int64_t>({k, x_in.size(0), x_in.size(1)});
  auto x = x_in.to(torch::kDouble);
  Pca p;
  p.mean = x.mean(0);
  auto xc = x - p.mean;
  auto svd = torch::linalg_svd(xc, /*full_matrices=*/false);
  auto vh = std::get<2>(svd).narrow(0, 0, k);  // [k, D]
  auto s = std::get<1>(svd).narrow(0, 0, k);
  auto big = vh.abs().argmax(1, /*keepdim=*/true);
  auto sign = vh.gather(1, big).sign();
  sign = torch::where(sign == 0, torch::ones_like(sign), sign);
  p.components = vh * sign;
  p.scores = torch::matmul(xc, p.components.t());
  p.explained = s.pow(2) / double(x.size(0) - 1);
  return p;
}

std::string svg_scatter(const at::Tensor& xy_in, const at::Tensor& y,
                        const std::vector<std::string>& classes, const std::string& title) {
  static const char* palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  auto xy = xy_in.to(torch::kDouble).contiguous();
  const int w = 560, h = 420, left = 40, right = 170, top = 36, bottom = 30;
  auto mn = std::get<0>(xy.min(0)), mx = std::get<0>(xy.max(0));
  double x0 = mn[0].item<double>(), x1 = mx[0].item<double>();
  double y0 = mn[1].item<double>(), y1 = mx[1].item<double>();
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + 1;
  std::ostringstream s;
  s.imbue(std::locale::classic());
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w << "\" height=\"" << h
    << "\" viewBox=\"0 0 " << w << " " << h << "\" font-family=\"sans-serif\" font-size=\"12\">"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>"
    << "<text x=\"" << w / 2 << "\" y=\"20\" text-anchor=\"middle\">" << xml_escape(title)
    << "</text><rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << w - left - right
    << "\" height=\"" << h - top - bottom << "\" fill=\"none\" stroke=\"#888\"/>";
  auto a = xy.accessor<double, 2>();
  auto yl = y.to(torch::kLong).contiguous();
  auto ya = yl.accessor<int64_t, 1>();
  for (int64_t i = 0; i < xy.size(0); ++i) {
    double px = left + 6 + (a[i][0] - x0) / (x1 - x0) * (w - left - right - 12);
    double py = h - bottom - 6 - (a[i][1] - y0) / (y1 - y0) * (h - top - bottom - 12);
    s << "<circle cx=\"" << px << "\" cy=\"" << py << "\" r=\"3\" fill=\""
      << palette[ya[i] % 10] << "\" fill-opacity=\"0.75\"/>";
  }
  s << "<text x=\"" << left << "\" y=\"" << h - 8 << "\">PC1</text>";
  for (size_t c = 0; c < classes.size(); ++c) {
    const int ly = top + 8 + int(c) * 16;
    s << "<circle cx=\"" << w - right + 16 << "\" cy=\"" << ly << "\" r=\"4\" fill=\""
      << palette[c % 10] << "\"/><text x=\"" << w - right + 26 << "\" y=\"" << ly + 4 << "\">"
      << xml_escape(classes[c]) << "</text>";
  }
  s << "</svg>";
  return s.str();
}

}  // namespace unwedge
