// `unwedge report`: one self-contained HTML page (inline PNG and SVG) from a report JSON
// (bench output or hand-written; schema in docs/evaluation.md) or from run folders.
#include <cstdio>

#include "cli_common.h"
#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/eval/report.h"

namespace unwedge::cli {

namespace {

struct ReportParams {
  std::string json;               ///< report JSON
  std::vector<std::string> runs;  ///< run folders (restored.mrc, std.mrc, eval.json, log)
  std::string truth, input;       ///< with --runs
  std::vector<double> tilt_range{-60.0, 60.0};
  std::string title = "unwedge report";
  std::string out;
  bool overwrite = false;
};

void run_report(const ReportParams& p) {
  if (p.json.empty() == p.runs.empty()) throw ValueError("report: give either --json or --runs");
  output_check_writable(p.out, p.overwrite);
  ReportInput in = p.json.empty() ? report_input_from_runs(p.runs) : report_input_read(p.json);
  if (!p.runs.empty()) {
    in.gt = p.truth;
    in.input = p.input;
    in.tilt_range_deg = {p.tilt_range[0], p.tilt_range[1]};
    in.title = p.title;
  } else if (!p.truth.empty() || !p.input.empty()) {
    throw ValueError("report: --truth and --input go with --runs (the JSON names its files)");
  }
  report_write(in, p.out, p.overwrite);
  std::printf("%s\n", p.out.c_str());
}

}  // namespace

void add_report_command(CLI::App& root, GlobalOptions& g) {
  auto p = std::make_shared<ReportParams>();
  CLI::App* cmd = root.add_subcommand(
      "report", "Self-contained HTML report: slices, Fourier amplitude, FSC and loss plots, "
                "metrics table");
  cmd->add_option("--json", p->json, "Report JSON (bench output; schema in the docs)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--runs", p->runs,
                  "Run folders, one per method (restored.mrc; optional std.mrc, eval.json, "
                  "train_log.jsonl)")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--truth", p->truth, "Ground truth (MRC), with --runs")->check(CLI::ExistingFile);
  cmd->add_option("--input", p->input, "Input tomogram (MRC), with --runs")->check(CLI::ExistingFile);
  cmd->add_option("--tilt-range", p->tilt_range, "Tilt range in degrees, with --runs")
      ->expected(2)
      ->capture_default_str();
  cmd->add_option("--title", p->title, "Page title, with --runs")->capture_default_str();
  cmd->add_option("--out", p->out, "Output HTML file")->required();
  add_overwrite_flag(*cmd, p->overwrite);
  cmd->callback([p, cmd] {
    run_report(*p);
    write_config_beside(*cmd, p->out);
  });
}

}  // namespace unwedge::cli
