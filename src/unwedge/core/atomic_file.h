// Outputs written to a temporary name in the same folder and renamed when complete,
// so a failed run never leaves a partial file or clobbers an earlier output.
//
// A temporary is named `.NAME.HOST.PID.RAND.tmp` beside NAME. Live temporaries are removed when
// the process is stopped by SIGINT, SIGTERM or SIGHUP (temporaries_remove_on_signals), and
// those a killed run left (its PID no longer alive on this host) are swept when the same output
// is next written.
#pragma once
#include <string>

namespace unwedge {

/// Throws ExistsError when `path` exists and `overwrite` is false. Sweeps the stale temporaries
/// of `path` (temporaries_sweep_stale).
void output_check_writable(const std::string& path, bool overwrite);

/// A temporary path beside the final one. Call commit() once the file is complete;
/// otherwise the destructor removes the temporary.
class AtomicOutput {
 public:
  AtomicOutput(std::string final_path, bool overwrite);
  ~AtomicOutput();
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  const std::string& tmp_path() const { return tmp_; }
  const std::string& final_path() const { return final_; }
  /// Renames the temporary onto the final path (atomic on one filesystem).
  void commit();

 private:
  std::string final_, tmp_;
  int live_slot_ = -1;  ///< its entry in the list the signal handler removes
  bool committed_ = false;
};

/// A temporary folder beside the final one (`.NAME.HOST.PID.RAND.tmp/`), for a set of outputs
/// that appear together or not at all. commit() renames it onto the final folder (or, when
/// that exists, moves each file into it); otherwise the destructor removes it with its files.
class AtomicFolder {
 public:
  explicit AtomicFolder(std::string final_dir);
  ~AtomicFolder();
  AtomicFolder(const AtomicFolder&) = delete;
  AtomicFolder& operator=(const AtomicFolder&) = delete;

  const std::string& tmp_path() const { return tmp_; }
  void commit();

 private:
  std::string final_, tmp_;
  int live_slot_ = -1;
  bool committed_ = false;
};

/// Writes `bytes` to `path` atomically; a failed write (full disk, file-size limit) is an
/// IoError naming `path` and the reason, and leaves no temporary behind.
void write_file_atomic(const std::string& path, const std::string& bytes, bool overwrite);

/// Writes `text` to `path` atomically.
void write_text_file_atomic(const std::string& path, const std::string& text, bool overwrite);

/// The temporary name pattern's parts of `tmp_name` (a file name, no folder) when it is a
/// temporary of the output named `final_name`: the host and PID that wrote it.
struct TempOwner {
  std::string host;
  long pid = 0;
};
bool temp_owner_parse(const std::string& tmp_name, const std::string& final_name, TempOwner& owner);

/// Removes the temporaries of `final_path` (files or folders) left by processes of this host
/// that are no longer running; returns how many were removed (each logged as a warning).
int temporaries_sweep_stale(const std::string& final_path);

/// Installs SIGINT, SIGTERM and SIGHUP handlers that remove the live temporaries and end the
/// process by the same signal; one ignored at the start (`nohup`) stays ignored. Call once.
void temporaries_remove_on_signals();

/// While on, the first SIGINT or SIGTERM does not end the process: it is only recorded, for a
/// loop to stop at its next safe point (training: the end of a step, then a checkpoint). A
/// second one, or SIGHUP, ends the process as temporaries_remove_on_signals says.
void stop_signals_defer(bool on);
/// The stop request: the deferred SIGINT or SIGTERM received (its number), or a request made
/// with stop_request; 0 when none. One flag for every way a run is asked to stop (the CLI's
/// signals, the Python package's Ctrl-C): a training run ends at its next step boundary with
/// a checkpoint when it is set.
int stop_requested();
/// Sets the stop request to `reason` (a signal number) unless one is already set.
/// Async-signal-safe.
void stop_request(int reason);
/// Clears the stop request (a host that has handled it, e.g. by raising KeyboardInterrupt).
void stop_request_clear();

/// While on, SIGINT and SIGTERM only set the stop request, every time (none ends the process);
/// the handlers in place before are put back when it is turned off. For a host that runs a
/// job without its own signal handling (the Python package while it trains, its interpreter's
/// handler set aside). Not nested; not thread-safe against itself.
void stop_signals_catch(bool on);

}  // namespace unwedge
