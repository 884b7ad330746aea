// n2v: blind-spot masking, loss and the method.
#include "unwedge/methods/n2v.h"

#include <cmath>
#include <vector>

#include "unwedge/core/error.h"
#include "unwedge/methods/augment.h"
#include "unwedge/methods/unet_method.h"

namespace unwedge {

N2VStructMask n2v_struct_mask_parse(const std::string& s) {
  N2VStructMask m;
  if (s.empty() || s == "none") return m;
  auto comma = s.find(',');
  std::string axis = s.substr(0, comma);
  if (axis == "z") {
    m.axis = 0;
  } else if (axis == "y") {
    m.axis = 1;
  } else if (axis == "x") {
    m.axis = 2;
  }
  bool ok = m.axis >= 0 && comma != std::string::npos;
  if (ok) {
    try {
      size_t used = 0;
      std::string span = s.substr(comma + 1);
      m.span = std::stoll(span, &used);
      ok = used == span.size() && m.span >= 1;
    } catch (const std::exception&) {
      ok = false;
    }
  }
  if (!ok) {
    throw ValueError("n2v struct_mask '" + s + "' is not AXIS,SPAN (AXIS z|y|x, SPAN >= 1), "
                     "e.g. z,3");
  }
  return m;
}

N2VMasking n2v_mask(const torch::Tensor& x, double fraction, int64_t radius,
                    const N2VStructMask& sm, bool planar) {
  if (x.dim() != 5 || x.size(1) != 1) {
    throw ShapeError("n2v_mask: x must be [B, 1, Z, Y, X], got " + c10::str(x.sizes()));
  }
  if (!(fraction > 0 && fraction <= 0.5)) {
    throw ValueError("n2v: mask_fraction " + std::to_string(fraction) + " is not in (0, 0.5]");
  }
  if (radius < 1) throw ValueError("n2v: radius " + std::to_string(radius) + " is not >= 1");
  const int64_t b = x.size(0);
  const std::array<int64_t, 3> size{x.size(2), x.size(3), x.size(4)};
  const int64_t nvox = size[0] * size[1] * size[2];
  const int64_t n = std::max<int64_t>(1, std::llround(fraction * double(nvox)));
  const auto lopt = x.options().dtype(torch::kLong);

  // The allowed neighbour offsets (a small table, at most (2r+1)^3 rows).
  std::array<int64_t, 3> r{};
  for (int a = 0; a < 3; ++a) r[a] = std::min(radius, size[a] - 1);
  if (planar) r[0] = 0;
  std::vector<int64_t> table;
  for (int64_t dz = -r[0]; dz <= r[0]; ++dz) {
    for (int64_t dy = -r[1]; dy <= r[1]; ++dy) {
      for (int64_t dx = -r[2]; dx <= r[2]; ++dx) {
        std::array<int64_t, 3> d{dz, dy, dx};
        bool off_line = false;  // some component outside the struct axis is nonzero
        bool nonzero = false;
        for (int a = 0; a < 3; ++a) {
          nonzero = nonzero || d[a] != 0;
          off_line = off_line || (a != sm.axis && d[a] != 0);
        }
        if (nonzero && (sm.axis < 0 || off_line)) table.insert(table.end(), d.begin(), d.end());
      }
    }
  }
  if (table.empty()) {
    throw ShapeError("n2v_mask: no neighbour available in a volume of " + c10::str(x.sizes()) +
                     " with radius " + std::to_string(radius) +
                     (sm.axis >= 0 ? " and a struct mask" : ""));
  }
  const int64_t k = int64_t(table.size()) / 3;
  auto offsets = torch::tensor(table, torch::kLong).view({k, 3}).to(x.device());  // [K, 3]

  auto pos = torch::randint(nvox, {b, n}, lopt);                       // [B, n]
  auto pick = torch::randint(k, {b * n}, lopt);                        // [B*n]
  auto d = offsets.index_select(0, pick).view({b, n, 3});              // [B, n, 3]
  std::array<torch::Tensor, 3> c{pos.div(size[1] * size[2], "floor"),
                                 pos.div(size[2], "floor").remainder(size[1]),
                                 pos.remainder(size[2])};              // each [B, n]
  std::array<torch::Tensor, 3> s;
  for (int a = 0; a < 3; ++a) {
    auto da = d.select(2, a);
    auto fwd = c[a] + da;
    auto back = c[a] - da;
    auto outside = [&](const torch::Tensor& t) { return (t < 0) | (t >= size[a]); };
    s[a] = torch::where(outside(fwd), back, fwd);
    s[a] = torch::where(outside(s[a]), fwd.clamp(0, size[a] - 1), s[a]);
  }
  auto src = s[0] * (size[1] * size[2]) + s[1] * size[2] + s[2];  // [B, n]

  auto flat = x.reshape({b, nvox});                                      // [B, N]
  auto source = torch::full({b, nvox}, -1, lopt).scatter(1, pos, src);   // [B, N]
  auto mask = source >= 0;                                               // [B, N]
  auto out = flat.clone();
  if (sm.axis >= 0) {
    auto mean = flat.mean(1, /*keepdim=*/true);                 // [B, 1]
    auto std = flat.std(1, /*unbiased=*/true, /*keepdim=*/true);  // [B, 1]
    const int64_t stride = sm.axis == 0 ? size[1] * size[2] : sm.axis == 1 ? size[2] : 1;
    for (int64_t t = -sm.span; t <= sm.span; ++t) {
      if (t == 0) continue;
      auto ct = c[sm.axis] + t;
      auto inside = (ct >= 0) & (ct < size[sm.axis]);             // [B, n]
      auto idx = torch::where(inside, pos + t * stride, pos);     // [B, n]
      auto noise = mean + std * torch::randn({b, n}, x.options());  // [B, n]
      auto val = torch::where(inside, noise, out.gather(1, pos));
      out.scatter_(1, idx, val);
    }
  }
  out = torch::where(mask, flat.gather(1, source.clamp_min(0)), out);  // [B, N]
  auto shape = x.sizes();
  return {out.view(shape), mask.view(shape), source.view(shape)};
}

torch::Tensor n2v_loss(const torch::Tensor& pred, const torch::Tensor& x,
                       const torch::Tensor& mask, const torch::Tensor& region) {
  auto w = mask.to(pred.dtype());  // [B, 1, Z, Y, X]
  if (region.defined()) w = w * region.to(pred.dtype());
  return method_masked_mse(pred, x, w);
}

namespace {

class N2V : public UNetMethod {
 public:
  explicit N2V(const nlohmann::json& resolved)
      : UNetMethod(resolved),
        fraction_(resolved.at("mask_fraction").get<double>()),
        radius_(resolved.at("radius").get<int64_t>()),
        struct_mask_(n2v_struct_mask_parse(resolved.at("struct_mask").get<std::string>())),
        augment_(augment_mode_parse(resolved.at("augment").get<std::string>())) {
    if (!(fraction_ > 0 && fraction_ <= 0.5)) {
      throw ValueError("n2v: mask_fraction " + std::to_string(fraction_) + " is not in (0, 0.5]");
    }
    if (radius_ < 1) throw ValueError("n2v: radius " + std::to_string(radius_) + " is not >= 1");
  }

  std::string name() const override { return "n2v"; }
  bool needs_halves() const override { return false; }

  torch::Tensor loss(const Batch& batch) override {
    method_check_batch_tensor(name(), "input", batch.input);
    WedgeGeometry g = batch.wedge.empty() ? WedgeGeometry{} : method_wedge_geometry(batch.wedge[0]);
    auto aug = augment_about_tilt_axis({batch.input, batch.mask}, augment_, g);
    auto m = n2v_mask(aug[0], fraction_, radius_, struct_mask_, net_->options().planar());
    auto pred = forward_padded(m.input);  // [B, 1, Z, Y, X]
    return n2v_loss(pred, aug[0], m.mask, aug[1]);
  }

 private:
  double fraction_;
  int64_t radius_;
  N2VStructMask struct_mask_;
  AugmentMode augment_;
};

}  // namespace

MethodInfo n2v_method_info() {
  MethodInfo info;
  info.name = "n2v";
  info.description =
      "Noise2Void blind spot on one tomogram (or tilt images); weak on correlated noise";
  info.can.single = true;
  info.can.tilt_series = true;
  info.options = {
      {"mask_fraction", 0.01, "fraction of voxels masked per subtomogram"},
      {"radius", int64_t(2), "neighbourhood radius (voxels) for the replacement value"},
      {"struct_mask", "", "AXIS,SPAN: also blank SPAN neighbours each side along AXIS (z|y|x)"},
      {"augment", "wedge", "wedge | rot90y | none"},
  };
  for (auto& o : unet_method_options()) info.options.push_back(o);
  info.create = [](const nlohmann::json& resolved) -> std::unique_ptr<Method> {
    return std::make_unique<N2V>(resolved);
  };
  return info;
}

}  // namespace unwedge
