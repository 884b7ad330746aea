// `unwedge info FILE...`: what an MRC file holds, and a one-line verdict on anything odd.
#include <cmath>
#include <cstdio>

#include <torch/torch.h>

#include "cli_common.h"
#include "unwedge/io/mrc.h"

namespace unwedge::cli {

namespace {

struct InfoParams {
  std::vector<std::string> files;
  bool permissive = false;
  bool data = false;  ///< read the data: NaN/Inf count and true statistics
};

const char* mode_name(int mode) {
  switch (mode) {
    case 0: return "int8";
    case 1: return "int16";
    case 2: return "float32";
    case 6: return "uint16";
    case 12: return "float16";
    default: return "?";
  }
}

void info_one(const std::string& path, const InfoParams& p) {
  MrcFile f(path, MrcReadOptions{p.permissive});
  const MrcHeader& h = f.header();
  const VolumeMeta& m = f.meta();
  auto shape = f.shape();
  std::vector<std::string> odd = f.warnings();
  std::printf("%s\n", path.c_str());
  std::printf("  size (X x Y x Z)   %lld x %lld x %lld voxels\n", (long long)shape[2],
              (long long)shape[1], (long long)shape[0]);
  std::printf("  mode               %d (%s%s)\n", h.mode, mode_name(h.mode),
              f.unsigned_bytes() ? ", IMOD unsigned" : "");
  std::printf("  voxel size         %.4g x %.4g x %.4g A\n", m.voxel_size[0], m.voxel_size[1],
              m.voxel_size[2]);
  std::printf("  origin             %.4g %.4g %.4g A\n", m.origin[0], m.origin[1], m.origin[2]);
  std::printf("  start              %d %d %d\n", m.nstart[0], m.nstart[1], m.nstart[2]);
  std::printf("  axis order         %d %d %d (mapc mapr maps)\n", h.mapc, h.mapr, h.maps);
  std::printf("  endianness         %s\n", f.byte_swapped() ? "big (swapped)" : "little");
  std::printf("  header statistics  min %.6g max %.6g mean %.6g rms %.6g\n", h.dmin, h.dmax,
              h.dmean, h.rms);
  std::printf("  extended header    %d bytes%s%s\n", h.nsymbt, m.exttyp.empty() ? "" : ", type ",
              m.exttyp.c_str());
  for (size_t i = 0; i < m.labels.size(); ++i) {
    std::printf("  label %zu            %s\n", i, m.labels[i].c_str());
  }
  if (p.data) {
    Volume v = f.read();
    int64_t nan = torch::isnan(v.data).sum().item<int64_t>();
    int64_t inf = torch::isinf(v.data).sum().item<int64_t>();
    at::Tensor finite = v.data.masked_select(torch::isfinite(v.data));
    double mn = finite.numel() ? finite.min().item<double>() : NAN;
    double mx = finite.numel() ? finite.max().item<double>() : NAN;
    double mean = finite.numel() ? finite.to(torch::kDouble).mean().item<double>() : NAN;
    double rms = finite.numel() ? finite.to(torch::kDouble).std(/*unbiased=*/false).item<double>()
                                : NAN;
    std::printf("  data statistics    min %.6g max %.6g mean %.6g rms %.6g\n", mn, mx, mean, rms);
    if (nan + inf > 0) {
      odd.push_back(std::to_string(nan) + " NaN and " + std::to_string(inf) + " Inf values");
    }
    double tol = 1e-3 * std::max(1.0, std::abs(mx - mn));
    if (std::abs(h.dmin - mn) > tol || std::abs(h.dmax - mx) > tol ||
        std::abs(h.dmean - mean) > tol) {
      odd.push_back("header statistics differ from the data");
    }
  }
  if (odd.empty()) {
    std::printf("  verdict            ok\n");
  } else {
    std::string all;
    for (const auto& w : odd) all += (all.empty() ? "" : "; ") + w;
    std::printf("  verdict            odd: %s\n", all.c_str());
  }
}

}  // namespace

void add_info_command(CLI::App& root, GlobalOptions& g) {
  auto p = std::make_shared<InfoParams>();
  CLI::App* cmd = root.add_subcommand("info", "Describe MRC files: size, mode, voxel size, "
                                              "origin, statistics, extended header, verdict");
  cmd->add_option("files", p->files, "MRC files")->required();  // missing: IoError naming it
  cmd->add_flag("--data", p->data,
                "Also read the data: true statistics and NaN/Inf count (default: header only)");
  add_permissive_flag(*cmd, p->permissive);
  cmd->callback([p] {
    for (const auto& f : p->files) info_one(f, *p);
  });
}

}  // namespace unwedge::cli
