// The HTML report: one self-contained file (PNG images inlined as base64 data URIs, SVG plots
// inline, no scripts or styles from the network) showing, for each method, central XY/XZ/YZ
// slices of gt / input / restored on a common contrast, the error map and (for stochastic
// methods) the posterior std map, the Fourier amplitude in the kx–kz plane, FSC and loss curves
// and the metrics table. Input schema: docs/evaluation.md.
#pragma once
#include <array>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace unwedge {

/// One restored result to show.
struct ReportMethod {
  std::string name;          ///< method name ("n2n", "ddw", "baseline: even/odd average")
  std::string restored;      ///< restored MRC (required)
  std::string std_map;       ///< posterior std MRC (stochastic methods; optional)
  std::string loss_log;      ///< training JSONL log {"step", "loss", "val_loss"} (optional)
  nlohmann::json eval;       ///< `unwedge eval` JSON (optional; computed when gt is given)
  nlohmann::json info;       ///< free facts shown in the table (budget, wall_s, steps, ...)
};

/// An extra figure appended to the report (a demo, a montage, training-stability curves).
struct ReportSection {
  std::string title;    ///< heading
  std::string image;    ///< PNG (inlined as base64) or SVG (inlined) file; may be empty
  std::string caption;  ///< plain text under the figure
};

/// What the report shows.
struct ReportInput {
  std::string title = "unwedge report";
  std::string gt;     ///< ground-truth MRC (optional)
  std::string input;  ///< the degraded input tomogram MRC (optional)
  std::array<double, 2> tilt_range_deg{-60.0, 60.0};  ///< for metrics computed here
  std::vector<ReportMethod> methods;
  std::vector<ReportSection> sections;  ///< shown after the methods, in order
};

/// Reads the report JSON (schema in docs/evaluation.md). Relative paths are resolved against
/// the JSON file's folder. Throws FormatError naming the file and the key.
ReportInput report_input_read(const std::string& json_path);

/// Builds the input from run folders: each DIR is one method named by the folder, holding
/// restored.mrc and optionally std.mrc, eval.json and train_log.jsonl (or log.jsonl).
ReportInput report_input_from_runs(const std::vector<std::string>& dirs);

/// One more numeric key of a training log by step (a method's loss component).
struct LossSeries {
  std::string name;
  std::vector<double> step, value;
};

/// A training log (read through io/train_log_format.h, the format the trainer writes): loss and
/// validation loss by step, and the method's loss terms (Method::step_stats, e.g. cryogen-map's
/// d_loss, d_real, d_fake, data, energy) by name. Lines that do not parse are reported by line
/// number (FormatError), except a truncated last line, which is skipped.
struct LossLog {
  std::vector<double> step, loss, val_step, val_loss;
  std::vector<LossSeries> extra;
};
LossLog loss_log_read(const std::string& path);

/// Renders the report as one HTML string (reads the volumes; computes metrics against gt for
/// methods whose eval is missing).
std::string report_html(const ReportInput& in);

/// One extra section as HTML (the image inlined). Throws IoError/FormatError naming the file.
std::string report_section_html(const ReportSection& s);

/// Renders and writes the report atomically. Throws ExistsError when `out` exists and
/// !overwrite.
void report_write(const ReportInput& in, const std::string& out, bool overwrite);

/// Standard base64 (RFC 4648) of bytes.
std::string base64_encode(const std::vector<uint8_t>& bytes);

}  // namespace unwedge
