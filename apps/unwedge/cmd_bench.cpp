// `unwedge bench`: every listed method on one simulated preset (or a folder with gt/tomo/
// even/odd) with the same budget, plus the baselines (full tomogram, even/odd average, oracle
// Gaussian low-pass); evaluates each against the ground truth and writes OUT/bench.json (the
// report schema of docs/evaluation.md) and OUT/report.html. Each simulate/train/restore runs
// as a child `unwedge` process, so wall time and peak RSS are measured per method.
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include <torch/torch.h>

#include "cli_common.h"
#include "unwedge/core/atomic_file.h"
#include "unwedge/core/device.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/eval/baselines.h"
#include "unwedge/eval/evaluate.h"
#include "unwedge/eval/report.h"
#include "unwedge/io/mrc.h"
#include "unwedge/methods/method.h"

extern char** environ;

namespace unwedge::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct BenchParams {
  std::string preset = "tiny";
  std::string data;  ///< folder with gt.mrc, tomo.mrc, even.mrc, odd.mrc instead of simulating
  std::vector<std::string> methods{"n2n", "n2v"};
  int64_t steps = 200;
  double minutes = 0.0;
  std::string budget_clock = "wall";
  int64_t patch = 32;
  int64_t batch = 4;
  std::vector<double> tilt_range{-60.0, 60.0};
  uint64_t seed = 0;
  std::string device = "cpu";      ///< for the train and restore children
  std::string precision = "auto";  ///< auto | fp32 | bf16, for the train and restore children
  std::string out;
  bool overwrite = false;
  bool resume = false;  ///< continue: train on from OUT/METHOD/model.uwm where it exists
};

struct ChildRun {
  double wall_s = 0;
  double peak_rss_mb = 0;
};

// Runs `unwedge ARGS...` (this executable) and waits; throws Error when it fails.
ChildRun run_self(const std::vector<std::string>& args) {
  std::string self = fs::read_symlink("/proc/self/exe").string();
  // Children use this process's thread count (the root --threads).
  std::vector<std::string> full{self, "--threads", std::to_string(at::get_num_threads())};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : full) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::string line;
  for (const auto& a : args) line += " " + a;
  log_info("bench: unwedge{}", line);
  auto t0 = std::chrono::steady_clock::now();
  pid_t pid = 0;
  if (posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv.data(), environ) != 0) {
    throw IoError("bench: cannot start " + self);
  }
  int status = 0;
  struct rusage ru {};
  if (wait4(pid, &status, 0, &ru) < 0) throw IoError("bench: wait for unwedge" + line);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw Error("bench: `unwedge" + line + "` failed (exit code " +
                std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")");
  }
  ChildRun r;
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.peak_rss_mb = ru.ru_maxrss / 1024.0;  // ru_maxrss is in KiB on Linux
  return r;
}

void write_volume(const std::string& path, const at::Tensor& v, const VolumeMeta& meta) {
  Volume out{v.to(torch::kFloat).contiguous(), meta};
  MrcWriteOptions o;
  o.overwrite = true;
  o.label = "unwedge bench baseline";
  mrc_write(path, out, o);
}

std::string find_log(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".jsonl") return e.path().filename().string();
  }
  return "";
}

void run_bench(const BenchParams& p) {
  fs::path out(p.out);
  fs::create_directories(out);
  const bool replace = p.overwrite || p.resume;  // a resumed bench rewrites its own outputs
  output_check_writable((out / "bench.json").string(), replace);
  output_check_writable((out / "report.html").string(), replace);
  for (const auto& m : p.methods) method_registry().get(m);  // unknown names fail first
  const std::string device = device_resolve(p.device);  // auto -> cpu or cuda, once for all
  // a bad name, or CUDA without a GPU, fails before any child runs; auto precision resolved once
  const std::string precision = precision_resolve(p.precision, device_parse(device));
  precision_parse(precision, "--precision");
  fs::create_directories(out / "baselines");
  std::string budget = p.minutes > 0 ? std::to_string(p.minutes) +
                                           (p.budget_clock == "cpu" ? " CPU min" : " min")
                                     : std::to_string(p.steps) + " steps";
  char tbuf[2][32];
  std::snprintf(tbuf[0], sizeof tbuf[0], "%g", p.tilt_range[0]);
  std::snprintf(tbuf[1], sizeof tbuf[1], "%g", p.tilt_range[1]);
  std::string tmin = tbuf[0], tmax = tbuf[1];

  fs::path data = p.data.empty() ? out / "data" : fs::path(p.data);
  ChildRun sim;
  const bool simulated = p.resume && fs::exists(data / "gt.mrc") && fs::exists(data / "odd.mrc");
  if (p.data.empty() && !simulated) {
    fs::create_directories(data);
    sim = run_self({"simulate", "--preset", p.preset, "--seed", std::to_string(p.seed),
                    "--tilt-min", tmin, "--tilt-max", tmax, "--out", data.string(),
                    "--overwrite"});
  }
  for (const char* f : {"gt.mrc", "tomo.mrc", "even.mrc", "odd.mrc"}) {
    if (!fs::exists(data / f)) throw IoError((data / f).string() + ": missing (bench needs it)");
  }
  Volume gt = mrc_read((data / "gt.mrc").string());
  Volume tomo = mrc_read((data / "tomo.mrc").string());
  Volume even = mrc_read((data / "even.mrc").string());
  Volume odd = mrc_read((data / "odd.mrc").string());
  EvalOptions eo;
  eo.wedge.tilt_min_deg = p.tilt_range[0];
  eo.wedge.tilt_max_deg = p.tilt_range[1];
  eo.voxel_size = gt.meta.voxel_size[0];
  auto rel = [&](const fs::path& q) { return fs::relative(q, out).string(); };

  json methods = json::array();
  auto add = [&](const std::string& name, const fs::path& restored, const at::Tensor& v) {
    json m{{"name", name}, {"restored", rel(restored)}};
    m["eval"] = eval_against_truth(v, gt.data, {}, eo);
    methods.push_back(m);
    return &methods.back();
  };
  add("baseline: tomogram", data / "tomo.mrc", tomo.data);
  at::Tensor avg = 0.5 * (even.data + odd.data);
  write_volume((out / "baselines/even_odd_average.mrc").string(), avg, tomo.meta);
  add("baseline: even/odd average", out / "baselines/even_odd_average.mrc", avg);
  OracleLowpass lp = lowpass_oracle(tomo.data, gt.data);
  write_volume((out / "baselines/lowpass_oracle.mrc").string(), lp.volume, tomo.meta);
  char lpname[96];
  std::snprintf(lpname, sizeof lpname, "baseline: oracle low-pass (sigma %.3g/voxel)", lp.sigma);
  add(lpname, out / "baselines/lowpass_oracle.mrc", lp.volume);

  for (const auto& name : p.methods) {
    bool halves = method_registry().get(name).needs_halves();
    fs::path dir = out / name;
    fs::create_directories(dir);
    std::vector<std::string> in_args =
        halves ? std::vector<std::string>{"--even", (data / "even.mrc").string(), "--odd",
                                          (data / "odd.mrc").string()}
               : std::vector<std::string>{"--in", (data / "tomo.mrc").string()};
    std::vector<std::string> train{"train", "--method", name, "--out",
                                   (dir / "model.uwm").string(), "--patch",
                                   std::to_string(p.patch), "--batch", std::to_string(p.batch),
                                   "--seed", std::to_string(p.seed), "--tilt-range", tmin, tmax,
                                   "--device", device, "--precision", precision,
                                   "--no-progress"};
    // --resume: a checkpoint left by an interrupted bench is trained on to the same budget (its
    // history keeps the elapsed budget); train does nothing more when the budget is spent.
    const bool resumed = p.resume && fs::exists(dir / "model.uwm");
    train.push_back(resumed ? "--resume" : "--overwrite");
    if (p.minutes > 0) {
      train.insert(train.end(), {"--minutes", std::to_string(p.minutes), "--budget-clock",
                                 p.budget_clock});
    } else {
      train.insert(train.end(), {"--steps", std::to_string(p.steps)});
    }
    train.insert(train.end(), in_args.begin(), in_args.end());
    ChildRun tr = run_self(train);
    std::vector<std::string> restore{"restore", "--model", (dir / "model.uwm").string(), "--out",
                                     (dir / "restored.mrc").string(), "--device", device,
                                     "--precision", precision, "--no-progress",
                                     "--overwrite"};
    restore.insert(restore.end(), in_args.begin(), in_args.end());
    ChildRun rs = run_self(restore);
    Volume r = mrc_read((dir / "restored.mrc").string());
    json* m = add(name, dir / "restored.mrc", r.data);
    std::string log = find_log(dir);
    if (!log.empty()) (*m)["loss_log"] = rel(dir / log);
    (*m)["budget"] = budget;
    (*m)["train_s"] = tr.wall_s;
    if (resumed) (*m)["resumed"] = true;
    (*m)["restore_s"] = rs.wall_s;
    (*m)["peak_rss_mb"] = std::max(tr.peak_rss_mb, rs.peak_rss_mb);
  }
  json bench{{"title", "unwedge benchmark: " + (p.data.empty() ? "preset " + p.preset : p.data)},
             {"gt", rel(data / "gt.mrc")},
             {"input", rel(data / "tomo.mrc")},
             {"tilt_range_deg", {p.tilt_range[0], p.tilt_range[1]}},
             {"bench", {{"preset", p.data.empty() ? p.preset : ""},
                        {"data", data.string()},
                        {"budget", budget},
                        {"patch", p.patch},
                        {"batch", p.batch},
                        {"seed", p.seed},
                        {"device", device},
                        {"precision", precision},
                        {"simulate_s", sim.wall_s}}},
             {"methods", methods}};
  write_text_file_atomic((out / "bench.json").string(), bench.dump(1) + "\n", replace);
  report_write(report_input_read((out / "bench.json").string()), (out / "report.html").string(),
               replace);
  std::printf("%-48s %8s %8s %8s %10s\n", "method", "PSNR", "SSIM", "CC", "CC wedge");
  for (const auto& m : methods) {
    const json& mt = m.at("eval").at("metrics");
    auto v = [&](const char* k) { return mt.at(k).is_number() ? mt.at(k).get<double>() : NAN; };
    std::printf("%-48s %8.3f %8.4f %8.4f %10.4f\n", m.at("name").get<std::string>().c_str(),
                v("psnr_db"), v("ssim"), v("cc"), v("cc_wedge_band"));
  }
  std::printf("%s\n%s\n", (out / "bench.json").c_str(), (out / "report.html").c_str());
}

}  // namespace

void add_bench_command(CLI::App& root, GlobalOptions& g) {
  auto p = std::make_shared<BenchParams>();
  CLI::App* cmd = root.add_subcommand(
      "bench", "Benchmark methods and baselines on one simulated preset with the same budget; "
               "writes OUT/bench.json and OUT/report.html");
  cmd->add_option("--preset", p->preset, "Simulation preset (see unwedge simulate)")
      ->capture_default_str();
  cmd->add_option("--data", p->data,
                  "Folder with gt.mrc, tomo.mrc, even.mrc, odd.mrc instead of simulating")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--methods", p->methods, "Methods to train and restore (see unwedge methods)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--steps", p->steps, "Training budget per method, optimizer steps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--minutes", p->minutes,
                  "Training budget per method in minutes of --budget-clock (overrides --steps; "
                  "0 = off)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--budget-clock", p->budget_clock,
                  "Clock of --minutes: wall, or cpu (each training process's CPU time)")
      ->check(CLI::IsMember({"wall", "cpu"}))
      ->capture_default_str();
  cmd->add_option("--patch", p->patch, "Training subtomogram edge, voxels")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--batch", p->batch, "Subtomograms per step")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--tilt-range", p->tilt_range,
                  "Tilt range, degrees (simulated, trained with and evaluated)")
      ->expected(2)
      ->capture_default_str();
  cmd->add_option("--seed", p->seed, "Seed for the simulation and training")->capture_default_str();
  cmd->add_option("--device", p->device,
                  "Device of every training and restoration: auto | cpu | cuda | cuda:N "
                  "(auto: cuda when available)")
      ->capture_default_str();
  cmd->add_option("--precision", p->precision,
                  "auto | fp32 | bf16 (bf16: autocast mixed precision in training and "
                  "restoration; auto: bf16 on a CPU with avx512_bf16, else fp32)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
  cmd->add_option("--out", p->out, "Output folder")->required();
  add_overwrite_flag(*cmd, p->overwrite);
  cmd->add_flag("--resume", p->resume,
                "Continue an interrupted bench in --out with the same options: a method whose "
                "OUT/METHOD/model.uwm exists is trained on from that checkpoint up to the budget "
                "instead of from scratch; restorations, bench.json and report.html are rewritten");
  cmd->callback([p, cmd] {
    run_bench(*p);
    write_config_beside(*cmd, p->out);
  });
}

}  // namespace unwedge::cli
