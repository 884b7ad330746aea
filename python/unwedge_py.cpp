// The Python package's extension module (`unwedge._unwedge`): numpy float32 [Z, Y, X] arrays in
// and out, through the same jobs as the command-line program. Arrays given to train, restore and
// sample are written to a private temporary folder as MRC files and the job runs on them, so a
// Python call and the matching `unwedge` command give the same numbers. Library errors arrive
// as Python exceptions with the same one-line message (ExistsError: FileExistsError, IoError:
// OSError, the others: ValueError). python/unwedge/__init__.py re-exports this module.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdlib.h>

#include <csignal>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <torch/version.h>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/core/threads.h"
#include "unwedge/eval/evaluate.h"
#include "unwedge/infer/restore_job.h"
#include "unwedge/infer/sample_job.h"
#include "unwedge/io/mrc.h"
#include "unwedge/methods/method.h"
#include "unwedge/model/checkpoint.h"
#include "unwedge/model/normalize.h"
#include "unwedge/ops/wedge_sign.h"
#include "unwedge/sim/simulate.h"
#include "unwedge/train/train_job.h"

namespace py = pybind11;
namespace fs = std::filesystem;

namespace unwedge {
namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

/// A private temporary folder, removed with its contents.
struct TempFolder {
  fs::path path;
  TempFolder() {
    std::string pattern = (fs::temp_directory_path() / "unwedge_py_XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw IoError(pattern + ": cannot create a temporary folder");
    path = pattern;
  }
  ~TempFolder() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

/// A [Z, Y, X] float32 tensor viewing (copying) a numpy array; ValueError naming `what` when it
/// is not 3D.
at::Tensor tensor_from(const FloatArray& a, const std::string& what) {
  if (a.ndim() != 3) {
    throw ValueError(what + ": expected a 3D array [Z, Y, X], got " + std::to_string(a.ndim()) +
                     " dimensions");
  }
  return torch::from_blob(const_cast<float*>(a.data()), {a.shape(0), a.shape(1), a.shape(2)},
                          torch::kFloat)
      .clone();
}

FloatArray array_from(const at::Tensor& t0) {
  const at::Tensor t = t0.to(torch::kFloat).contiguous();
  FloatArray out(std::vector<py::ssize_t>(t.sizes().begin(), t.sizes().end()));
  std::memcpy(out.mutable_data(), t.data_ptr<float>(), size_t(t.numel()) * sizeof(float));
  return out;
}

std::array<double, 3> voxel_triple(const py::object& v) {
  if (py::isinstance<py::float_>(v) || py::isinstance<py::int_>(v)) {
    const double s = v.cast<double>();
    return {s, s, s};
  }
  const auto t = v.cast<std::vector<double>>();
  if (t.size() != 3) throw ValueError("voxel_size: a number or (x, y, z), got " + std::to_string(t.size()) + " values");
  return {t[0], t[1], t[2]};
}

/// A file for an input given as a path (used as is) or an array (written into `tmp`).
std::string input_file(const py::object& x, const TempFolder& tmp, const std::string& name,
                       const py::object& voxel_size) {
  if (py::isinstance<py::str>(x) || py::hasattr(x, "__fspath__")) {
    return py::str(py::module_::import("os").attr("fspath")(x)).cast<std::string>();
  }
  Volume v;
  v.data = tensor_from(x.cast<FloatArray>(), name);
  v.meta.voxel_size = voxel_triple(voxel_size);
  const std::string path = tmp / (name + ".mrc");
  mrc_write(path, v, MrcWriteOptions{});
  return path;
}

py::object json_to_py(const nlohmann::json& j) {
  return py::module_::import("json").attr("loads")(j.dump());
}

nlohmann::json py_to_json(const py::object& o) {
  return nlohmann::json::parse(py::module_::import("json").attr("dumps")(o).cast<std::string>());
}

/// A KeyboardInterrupt caught while a job ran without the GIL, raised when it has returned.
struct Interrupt {
  std::optional<py::error_already_set> error;
};

/// A progress callback (a Python callable, borrowed: the caller's frame keeps it alive) called
/// with the report as a dict, the GIL taken for the call. A KeyboardInterrupt it raises is kept
/// in `intr` and sets the stop request (training stops at the next step boundary) instead of
/// unwinding the job.
ProgressFn progress_from(const py::object& cb, Interrupt* intr) {
  if (cb.is_none()) return {};
  PyObject* fn = cb.ptr();
  return [fn, intr](const ProgressReport& r) {
    py::gil_scoped_acquire gil;
    if (intr && intr->error) return;
    py::dict d;
    d["label"] = r.label;
    d["done"] = r.done;
    d["total"] = r.total;
    d["unit"] = r.unit;
    d["status"] = r.status;
    d["elapsed_s"] = r.elapsed_s;
    d["final"] = r.final;
    try {
      const py::handle callable(fn);
      callable(d);
    } catch (py::error_already_set& e) {
      if (intr && e.matches(PyExc_KeyboardInterrupt)) {
        intr->error.emplace(std::move(e));
        stop_request(SIGINT);  // the run stops at the step boundary, as on Ctrl-C
        return;
      }
      throw;
    }
  };
}

/// wedge_sign=: "auto" (from the data, ops/wedge_sign.h), +1 or False (unwedge's convention),
/// -1 or True (mirrored). Returns 0 for auto, else +1 or -1.
int wedge_sign_arg(const py::object& w) {
  if (py::isinstance<py::str>(w)) {
    const std::string t = w.cast<std::string>();
    if (t == "auto") return 0;
    if (t == "+1" || t == "1") return 1;
    if (t == "-1") return -1;
    throw ValueError("wedge_sign: '" + t + "' is not 'auto', +1 or -1");
  }
  if (py::isinstance<py::bool_>(w)) return w.cast<bool>() ? -1 : 1;
  if (py::isinstance<py::int_>(w)) {
    const int v = w.cast<int>();
    if (v == 1 || v == -1) return v;
    throw ValueError("wedge_sign: " + std::to_string(v) + " is not 'auto', +1 or -1");
  }
  throw ValueError("wedge_sign: expected 'auto', +1 or -1");
}

std::vector<double> tilt_pairs(const py::object& tr) {
  std::vector<double> out;
  if (tr.is_none()) return out;
  for (const py::handle& item : tr) {
    if (py::isinstance<py::float_>(item) || py::isinstance<py::int_>(item)) {
      out.push_back(item.cast<double>());
    } else {
      for (const py::handle& v : item) out.push_back(v.cast<double>());
    }
  }
  if (out.size() < 2 || out.size() % 2 != 0) {
    throw ValueError("tilt_range: (MIN, MAX), or one (MIN, MAX) per tomogram");
  }
  for (size_t i = 0; i < out.size(); i += 2) {
    if (!(out[i] < out[i + 1])) throw ValueError("tilt_range: expected MIN < MAX in each pair");
  }
  return out;
}

std::vector<py::object> as_list(const py::object& x) {
  std::vector<py::object> out;
  if (x.is_none()) return out;
  if (py::isinstance<py::list>(x) || py::isinstance<py::tuple>(x)) {
    for (const py::handle& h : x) out.push_back(py::reinterpret_borrow<py::object>(h));
  } else {
    out.push_back(x);
  }
  return out;
}

/// A trained model file and what it says about itself.
class PyModel {
 public:
  explicit PyModel(std::string path, std::shared_ptr<TempFolder> owner = {})
      : path_(std::move(path)), owner_(std::move(owner)) {
    const LoadedCheckpoint ck = checkpoint_load(path_);
    info_ = checkpoint_info_to_json(ck.info);
    method_ = ck.method->name();
    step_ = ck.info.step;
    needs_halves_ = ck.method->needs_halves();
  }
  const std::string& path() const { return path_; }
  const std::string& method() const { return method_; }
  int64_t step() const { return step_; }
  py::object info() const { return json_to_py(info_); }

  void save(const std::string& path, bool overwrite) const {
    if (fs::exists(path) && !overwrite) {
      throw ExistsError(path + " exists (pass overwrite=True to replace it)");
    }
    fs::copy_file(path_, path, fs::copy_options::overwrite_existing);
  }

  FloatArray restore(const py::object& volume, const py::object& even, const py::object& odd,
                     int64_t tile, int64_t overlap, int64_t batch, int64_t flips,
                     const std::string& device, const std::string& norm,
                     const py::object& voxel_size, const py::object& progress) const {
    TempFolder tmp;
    RestoreFilesOptions o;
    o.model = path_;
    if (!volume.is_none()) {
      if (!even.is_none() || !odd.is_none()) {
        throw ValueError("restore: give a volume, or even= and odd=, not both");
      }
      o.in = {input_file(volume, tmp, "in", voxel_size)};
    } else {
      if (even.is_none() || odd.is_none()) {
        throw ValueError("restore: give a volume, or both even= and odd=");
      }
      o.even = {input_file(even, tmp, "even", voxel_size)};
      o.odd = {input_file(odd, tmp, "odd", voxel_size)};
    }
    o.out = {tmp / "restored.mrc"};
    o.restore.tile = tile;
    if (overlap >= 0) o.restore.overlap = overlap;
    if (batch > 0) o.restore.batch = batch;
    o.restore.flips = flips;
    o.device = device;
    o.norm = norm_source_parse(norm, "norm");
    {
      py::gil_scoped_release nogil;
      restore_files(o, nullptr, progress_from(progress, nullptr));
    }
    return array_from(mrc_read(o.out[0]).data);
  }

  py::dict sample(const py::object& volume, const py::object& even, const py::object& odd, int64_t n,
                  uint64_t seed, const py::object& tilt_range, int64_t tile, int64_t overlap,
                  const std::string& device, const py::object& voxel_size,
                  const std::string& uq, bool calibrate, int64_t calibrate_cubes, double std_pool,
                  double std_structure, const py::object& progress) const {
    TempFolder tmp;
    SampleFilesOptions o;
    o.sample.posterior.uq = uq;
    o.sample.std_pool = std_pool;
    o.sample.std_structure = std_structure;
    o.calibrate = calibrate;
    o.calibrate_cubes = calibrate_cubes;
    o.model = path_;
    if (!volume.is_none()) {
      o.in = input_file(volume, tmp, "in", voxel_size);
    } else {
      if (even.is_none() || odd.is_none()) {
        throw ValueError("sample: give a volume, or both even= and odd=");
      }
      o.even = input_file(even, tmp, "even", voxel_size);
      o.odd = input_file(odd, tmp, "odd", voxel_size);
    }
    o.out_dir = tmp / "out";
    o.sample.posterior.n = n;
    o.sample.posterior.seed = seed;
    o.sample.tiling.tile = tile;
    if (overlap >= 0) o.sample.tiling.overlap = overlap;
    o.tilt_range = tilt_pairs(tilt_range);
    o.device = device;
    o.report = false;
    SampleFilesResult r;
    {
      py::gil_scoped_release nogil;
      r = sample_files(o, nullptr, progress_from(progress, nullptr));
    }
    py::dict out;
    for (const char* name : {"mean", "std", "lower", "upper"}) {
      out[name] = array_from(mrc_read(tmp / (std::string("out/") + name + ".mrc")).data);
    }
    out["summary"] = json_to_py(r.summary);
    return out;
  }

 private:
  std::string path_;
  std::shared_ptr<TempFolder> owner_;  // the folder of a model trained without out=
  nlohmann::json info_;
  std::string method_;
  int64_t step_ = 0;
  bool needs_halves_ = false;
};

PyModel py_train(const std::string& method, const py::object& even, const py::object& odd,
                 const py::object& volumes, const std::string& star, const py::dict& options,
                 const std::string& out, int64_t steps, int64_t epochs, double minutes,
                 const std::string& budget_clock, int64_t patch, int64_t batch, double lr,
                 uint64_t seed, const py::object& tilt_range, const py::object& wedge_sign,
                 int64_t checkpoint_every, const std::string& device, bool resume,
                 const std::string& init_from, bool overwrite, const py::object& voxel_size,
                 const py::object& progress) {
  auto tmp = std::make_shared<TempFolder>();
  TrainFilesOptions f;
  TrainOptions& o = f.train;
  o.method = method;
  std::vector<std::string> kv;
  for (const auto& [k, v] : options) {
    const py::object val = py::reinterpret_borrow<py::object>(v);
    std::string text = py::isinstance<py::bool_>(val) ? (val.cast<bool>() ? "true" : "false")
                                                      : py::str(val).cast<std::string>();
    kv.push_back(py::str(k).cast<std::string>() + "=" + text);
  }
  o.method_options = method_options_parse(method, kv);
  const auto e = as_list(even), d = as_list(odd), v = as_list(volumes);
  for (size_t i = 0; i < e.size(); ++i) {
    f.even.push_back(input_file(e[i], *tmp, "even_" + std::to_string(i), voxel_size));
  }
  for (size_t i = 0; i < d.size(); ++i) {
    f.odd.push_back(input_file(d[i], *tmp, "odd_" + std::to_string(i), voxel_size));
  }
  for (size_t i = 0; i < v.size(); ++i) {
    f.in.push_back(input_file(v[i], *tmp, "in_" + std::to_string(i), voxel_size));
  }
  f.star = star;
  o.steps = steps;
  o.epochs = epochs;
  o.minutes = minutes;
  if (steps == 0 && epochs == 0 && minutes == 0) o.steps = 1000;
  o.budget_clock = budget_clock;
  o.sampler.patch = patch;  // 0: auto, as the command line (train_files_prepare)
  o.batch = batch;  // 0: auto (train_batch_auto)
  if (lr > 0) o.schedule.lr = lr;
  o.seed = seed;
  o.init_from = init_from;
  if (checkpoint_every >= 0) o.checkpoint_every = checkpoint_every;
  o.device = device;
  const std::vector<double> tr = tilt_pairs(tilt_range);
  const int sign = wedge_sign_arg(wedge_sign);
  if (!tr.empty()) o.wedge = {tr[0], tr[1], sign < 0};
  o.wedge.flip_sign = sign < 0;
  f.wedge_sign_auto = sign == 0;
  if (tr.size() > 2) f.tilt_ranges = tr;
  f.wedge_from_angles = f.tilt_from_files = tr.empty();
  f.model = out.empty() ? *tmp / "model.uwm" : out;
  f.resume = resume;
  f.overwrite = overwrite;
  const TrainFilesPlan plan = train_files_prepare(f);
  // Ctrl-C (SIGINT) while the run trains sets the stop request (core/atomic_file.h), the flag
  // the CLI's deferred signals set: the run stops at the step boundary and saves its
  // checkpoint, then KeyboardInterrupt is raised (the model resumes with resume=True). The
  // interpreter's handler is set aside meanwhile (a second Ctrl-C also just stops), and a
  // KeyboardInterrupt raised by the progress callback sets the same request.
  Interrupt intr;
  stop_request_clear();
  stop_signals_catch(true);
  try {
    py::gil_scoped_release nogil;
    train_files_run(plan, nullptr, progress_from(progress, &intr));
  } catch (...) {
    stop_signals_catch(false);
    stop_request_clear();
    throw;
  }
  stop_signals_catch(false);
  const int stopped = stop_requested();
  stop_request_clear();
  if (intr.error) throw *intr.error;
  if (stopped != 0) {
    PyErr_SetNone(PyExc_KeyboardInterrupt);
    throw py::error_already_set();
  }
  return PyModel(f.model, out.empty() ? tmp : nullptr);
}

py::tuple py_read_mrc(const std::string& path, bool permissive) {
  const Volume v = mrc_read(path, MrcReadOptions{permissive});
  py::dict header;
  header["voxel_size"] = py::make_tuple(v.meta.voxel_size[0], v.meta.voxel_size[1], v.meta.voxel_size[2]);
  header["origin"] = py::make_tuple(v.meta.origin[0], v.meta.origin[1], v.meta.origin[2]);
  header["nstart"] = py::make_tuple(v.meta.nstart[0], v.meta.nstart[1], v.meta.nstart[2]);
  header["labels"] = v.meta.labels;
  header["ispg"] = v.meta.ispg;
  return py::make_tuple(array_from(v.data), header);
}

void py_write_mrc(const std::string& path, const FloatArray& data, const py::object& voxel_size,
                  const py::object& header, int mode, bool overwrite, const std::string& label) {
  Volume v;
  v.data = tensor_from(data, path);
  if (!header.is_none()) {
    const py::dict h = header.cast<py::dict>();
    if (h.contains("voxel_size")) v.meta.voxel_size = voxel_triple(h["voxel_size"]);
    if (h.contains("origin")) {
      const auto o = h["origin"].cast<std::vector<double>>();
      if (o.size() == 3) v.meta.origin = {o[0], o[1], o[2]};
    }
    if (h.contains("nstart")) {
      const auto s = h["nstart"].cast<std::vector<int32_t>>();
      if (s.size() == 3) v.meta.nstart = {s[0], s[1], s[2]};
    }
    if (h.contains("labels")) v.meta.labels = h["labels"].cast<std::vector<std::string>>();
  }
  if (!voxel_size.is_none()) v.meta.voxel_size = voxel_triple(voxel_size);
  MrcWriteOptions wo;
  wo.mode = mode;
  wo.overwrite = overwrite;
  wo.label = label;
  mrc_write(path, v, wo);
}

py::dict py_simulate(const std::string& preset, uint64_t seed, const py::object& tilt_range,
                     double tilt_step, const std::string& out, bool overwrite) {
  SimParams p = sim_preset(preset);
  p.seed = seed;
  const std::vector<double> tr = tilt_pairs(tilt_range);
  if (!tr.empty()) {
    p.acquisition.tilt_min_deg = tr[0];
    p.acquisition.tilt_max_deg = tr[1];
  }
  if (tilt_step > 0) p.acquisition.tilt_step_deg = tilt_step;
  if (!out.empty()) simulate_check_outputs(out, overwrite);
  const SimResult r = simulate_run(p, /*progress=*/false);
  if (!out.empty()) simulate_write(out, p, r, overwrite, "unwedge python simulate");
  py::dict d;
  d["gt"] = array_from(r.specimen.potential);
  d["tomo"] = array_from(r.tomo);
  d["even"] = array_from(r.even);
  d["odd"] = array_from(r.odd);
  d["clean_tomo"] = array_from(r.clean_tomo);
  d["voxel_size"] = p.specimen.voxel_A;
  d["tilt_range"] = py::make_tuple(p.acquisition.tilt_min_deg, p.acquisition.tilt_max_deg);
  d["cc_tomo_gt"] = r.cc_tomo_gt;
  return d;
}

py::object py_evaluate(const FloatArray& restored, const FloatArray& truth,
                       const py::object& tilt_range, const py::object& wedge_sign,
                       double voxel_size) {
  EvalOptions o;
  const std::vector<double> tr = tilt_pairs(tilt_range);
  if (!tr.empty()) {
    o.wedge.tilt_min_deg = tr[0];
    o.wedge.tilt_max_deg = tr[1];
  }
  const int sign = wedge_sign_arg(wedge_sign);
  o.wedge.sign_flip = sign < 0;
  o.voxel_size = voxel_size;
  const at::Tensor a = tensor_from(restored, "restored"), b = tensor_from(truth, "truth");
  if (sign == 0) {  // from the restored volume, as `unwedge eval --wedge-sign auto`
    wedge_check(o.wedge);
    o.wedge.sign_flip =
        wedge_sign_detect(a, o.wedge.tilt_min_deg, o.wedge.tilt_max_deg).sign_flip;
  }
  if (a.sizes() != b.sizes()) {
    throw ShapeError("evaluate: restored " + std::to_string(a.size(0)) + "x" +
                     std::to_string(a.size(1)) + "x" + std::to_string(a.size(2)) +
                     " and truth " + std::to_string(b.size(0)) + "x" + std::to_string(b.size(1)) +
                     "x" + std::to_string(b.size(2)) + " differ in shape");
  }
  return json_to_py(eval_against_truth(a, b, at::Tensor(), o));
}

}  // namespace
}  // namespace unwedge

PYBIND11_MODULE(_unwedge, m) {
  using namespace unwedge;
  m.doc() = "unwedge: restore cryo-electron tomograms without ground truth (numpy [Z, Y, X])";
  // The LibTorch this module was built against (major.minor, as torch/version.h says): the
  // package takes torch tensors when the importable torch has the same (python/unwedge).
  m.attr("libtorch_version") =
      std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ExistsError& e) {
      PyErr_SetString(PyExc_FileExistsError, e.what());
    } catch (const IoError& e) {
      PyErr_SetString(PyExc_OSError, e.what());
    } catch (const Error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const c10::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
    }
  });
  log_set_level(LogLevel::quiet);
  m.def("set_log_level",
        [](const std::string& level) {
          if (level == "quiet") return log_set_level(LogLevel::quiet);
          if (level == "normal") return log_set_level(LogLevel::normal);
          if (level == "verbose") return log_set_level(LogLevel::verbose);
          throw ValueError("set_log_level: '" + level + "' is not quiet, normal or verbose");
        },
        "quiet (warnings only; the default) | normal | verbose", py::arg("level"));
  m.def("set_threads", [](int n) { threads_set(n); }, "LibTorch threads (0: all cores)",
        py::arg("n"));
  m.def("methods",
        [] {
          std::vector<std::string> names;
          for (const MethodInfo& i : method_registry().list()) names.push_back(i.name);
          return names;
        },
        "The registered method names");
  m.def("read_mrc", &py_read_mrc, "Reads an MRC file: (data float32 [Z, Y, X], header dict)",
        py::arg("path"), py::arg("permissive") = false);
  m.def("write_mrc", &py_write_mrc,
        "Writes data [Z, Y, X] as MRC2014 (mode 2 or 12), atomically; header: a dict as "
        "read_mrc returns (voxel_size, origin, nstart, labels)",
        py::arg("path"), py::arg("data"), py::arg("voxel_size") = py::none(),
        py::arg("header") = py::none(), py::arg("mode") = 2, py::arg("overwrite") = false,
        py::arg("label") = "unwedge python");
  m.def("simulate", &py_simulate,
        "Simulates a specimen and its tomograms: dict of gt, tomo, even, odd, clean_tomo "
        "arrays, voxel_size, tilt_range; out= also writes the folder `unwedge simulate` writes",
        py::arg("preset") = "tiny", py::arg("seed") = 0, py::arg("tilt_range") = py::none(),
        py::arg("tilt_step") = 0.0, py::arg("out") = "", py::arg("overwrite") = false);
  m.def("evaluate", &py_evaluate,
        "Metrics of a restoration against a ground truth (dict as `unwedge eval --json`)",
        py::arg("restored"), py::arg("truth"), py::arg("tilt_range") = py::none(),
        py::arg("wedge_sign") = 1, py::arg("voxel_size") = 1.0);
  py::class_<PyModel>(m, "Model")
      .def_static("load", [](const std::string& path) { return PyModel(path); },
                  py::arg("path"))
      .def_property_readonly("path", &PyModel::path)
      .def_property_readonly("method", &PyModel::method)
      .def_property_readonly("step", &PyModel::step)
      .def_property_readonly("info", &PyModel::info)
      .def("save", &PyModel::save, py::arg("path"), py::arg("overwrite") = false)
      .def("restore", &PyModel::restore,
           "Restores a volume (array or path), or a pair of halves (even=, odd=): float32 "
           "[Z, Y, X] in the input's scale; flips: restorations averaged over the wedge-keeping "
           "flips (1, 2 or 4, as `unwedge restore --flips`)",
           py::arg("volume") = py::none(), py::kw_only(), py::arg("even") = py::none(),
           py::arg("odd") = py::none(), py::arg("tile") = 0, py::arg("overlap") = -1,
           py::arg("batch") = 0, py::arg("flips") = RestoreOptions{}.flips,
           py::arg("device") = "model", py::arg("norm") = "input",
           py::arg("voxel_size") = 1.0, py::arg("progress") = py::none())
      .def("sample", &PyModel::sample,
           "Posterior draws: dict of mean, std, lower, upper, summary. uq='model' (a "
           "cryowgen-* model's posterior) or 'bootstrap' (the equivariant bootstrap of any "
           "model's restoration); calibrate=True scales std and bounds from the data alone "
           "(summary['calibration'], as `unwedge sample --calibrate`; calibrate_cubes: "
           "`--calibrate-cubes`); std_pool: sigma (voxels) "
           "over which the draws' variance is averaged (`--std-pool`, 0 = per voxel); "
           "std_structure: the weight of the mean's fine structure in std (`--std-structure`, "
           "0 = the draws' spread alone)",
           py::arg("volume") = py::none(), py::kw_only(), py::arg("even") = py::none(),
           py::arg("odd") = py::none(), py::arg("n") = 8, py::arg("seed") = 0,
           py::arg("tilt_range") = py::none(), py::arg("tile") = 0, py::arg("overlap") = -1,
           py::arg("device") = "model", py::arg("voxel_size") = 1.0, py::arg("uq") = "model",
           py::arg("calibrate") = false,
           py::arg("calibrate_cubes") = SampleFilesOptions{}.calibrate_cubes,
           py::arg("std_pool") = SampleOptions{}.std_pool,
           py::arg("std_structure") = SampleOptions{}.std_structure,
           py::arg("progress") = py::none());
  m.def("train", &py_train,
        "Trains a method on halves (even=, odd=: arrays or paths, one or a list), tomograms "
        "(volumes=) or a RELION 5 table (star=); returns the Model. options: the method's "
        "options (`unwedge methods --options NAME`). Ctrl-C stops at a step boundary with a "
        "checkpoint (resume=True continues); init_from: a model path whose network starts this one "
        "(`train --init-from`)",
        py::arg("method"), py::kw_only(), py::arg("even") = py::none(), py::arg("odd") = py::none(),
        py::arg("volumes") = py::none(), py::arg("star") = "", py::arg("options") = py::dict(),
        py::arg("out") = "", py::arg("steps") = 0, py::arg("epochs") = 0,
        py::arg("minutes") = 0.0, py::arg("budget_clock") = "wall", py::arg("patch") = 0,
        py::arg("batch") = 0, py::arg("lr") = 0.0, py::arg("seed") = 0,
        py::arg("tilt_range") = py::none(), py::arg("wedge_sign") = "auto",
        py::arg("checkpoint_every") = -1, py::arg("device") = "cpu", py::arg("resume") = false,
        py::arg("init_from") = "", py::arg("overwrite") = false, py::arg("voxel_size") = 1.0,
        py::arg("progress") = py::none());
}
