#include "unwedge/core/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "unwedge/core/error.h"
#include "unwedge/core/log.h"

namespace unwedge {

namespace fs = std::filesystem;

namespace {

// The live temporaries, for the signal handler. A process-wide table is the one way a signal
// handler can know them; fixed slots and an atomic state keep it async-signal-safe (no
// allocation or lock in the handler).
constexpr int kLiveSlots = 64;
constexpr size_t kLivePathMax = 4096;
struct LiveTemp {
  std::atomic<int> state{0};  ///< 0 free, 1 being filled, 2 live
  bool folder = false;
  char path[kLivePathMax];
};
LiveTemp g_live[kLiveSlots];

int live_add(const std::string& path, bool folder) {
  if (path.size() >= kLivePathMax) return -1;
  for (int i = 0; i < kLiveSlots; ++i) {
    int expected = 0;
    if (g_live[i].state.compare_exchange_strong(expected, 1)) {
      std::memcpy(g_live[i].path, path.c_str(), path.size() + 1);
      g_live[i].folder = folder;
      g_live[i].state.store(2);
      return i;
    }
  }
  return -1;  // more live temporaries than slots: the extra ones are only swept later
}

void live_remove(int slot) {
  if (slot >= 0) g_live[slot].state.store(0);
}

/// Removes a folder and the files in it (one level: the outputs' staging folders are flat).
/// Only calls that are safe in a signal handler on Linux (getdents via readdir is not listed by
/// POSIX; the process is ending, so a rare failure leaves what the next start sweeps).
void remove_flat_folder(const char* dir) {
  if (DIR* d = ::opendir(dir)) {
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      char p[kLivePathMax + 256];
      const size_t n = std::strlen(dir), m = std::strlen(e->d_name);
      if (n + 1 + m + 1 > sizeof p) continue;
      std::memcpy(p, dir, n);
      p[n] = '/';
      std::memcpy(p + n + 1, e->d_name, m + 1);
      ::unlink(p);
    }
    ::closedir(d);
  }
  ::rmdir(dir);
}

// SIGINT/SIGTERM deferred to the next step boundary (stop_signals_defer): the first one is only
// recorded here; a second one, or SIGHUP, ends the process as below.
volatile std::sig_atomic_t g_defer = 0;
volatile std::sig_atomic_t g_stop = 0;

void on_stop_signal(int sig) {
  if (g_defer && g_stop == 0 && (sig == SIGINT || sig == SIGTERM)) {
    g_stop = sig;
    return;
  }
  for (auto& t : g_live) {
    if (t.state.load() != 2) continue;
    if (t.folder) {
      remove_flat_folder(t.path);
    } else {
      ::unlink(t.path);
    }
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "host";
  std::string h(buf);
  for (char& c : h) {
    if (c == '/' || c == '.') c = '_';
  }
  return h.empty() ? "host" : h;
}

/// `.NAME.HOST.PID.RAND.tmp` beside `final_path`.
std::string temp_path_beside(const std::string& final_path) {
  std::random_device rd;
  fs::path p(final_path);
  return (p.parent_path() / ("." + p.filename().string() + "." + host_name() + "." +
                             std::to_string(getpid()) + "." + std::to_string(rd() % 100000) +
                             ".tmp"))
      .string();
}

bool all_digits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

bool process_alive(long pid) { return ::kill(pid_t(pid), 0) == 0 || errno != ESRCH; }

/// Writes `n` bytes to a new file at `path`: IoError with the system's reason on any failure.
void write_bytes_to(const std::string& path, const char* data, size_t n) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw IoError(path + ": cannot create: " + std::strerror(errno));
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int err = w < 0 ? errno : ENOSPC;
      ::close(fd);
      throw IoError(path + ": write failed: " + std::strerror(err));
    }
    data += w;
    n -= size_t(w);
  }
  if (::close(fd) != 0) throw IoError(path + ": close failed: " + std::strerror(errno));
}

}  // namespace

bool temp_owner_parse(const std::string& tmp_name, const std::string& final_name,
                      TempOwner& owner) {
  const std::string prefix = "." + final_name + ".", suffix = ".tmp";
  if (tmp_name.size() <= prefix.size() + suffix.size() || tmp_name.rfind(prefix, 0) != 0 ||
      tmp_name.compare(tmp_name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return false;
  }
  // HOST.PID.RAND: split from the right (a host name has its dots replaced).
  std::string mid = tmp_name.substr(prefix.size(), tmp_name.size() - prefix.size() - suffix.size());
  const size_t r = mid.rfind('.');
  if (r == std::string::npos || !all_digits(mid.substr(r + 1))) return false;
  mid.resize(r);
  const size_t q = mid.rfind('.');
  if (q == std::string::npos || q == 0 || !all_digits(mid.substr(q + 1))) return false;
  owner.host = mid.substr(0, q);
  owner.pid = std::stol(mid.substr(q + 1));
  return true;
}

int temporaries_sweep_stale(const std::string& final_path) {
  const fs::path p(final_path);
  const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  const std::string name = p.filename().string(), host = host_name();
  std::error_code ec;
  int removed = 0;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    TempOwner owner;
    if (!temp_owner_parse(e.path().filename().string(), name, owner)) continue;
    if (owner.host != host || owner.pid == getpid() || process_alive(owner.pid)) continue;
    std::error_code rm;
    fs::remove_all(e.path(), rm);
    if (!rm) {
      log_warn("removed {}, the temporary of a run that ended (pid {})", e.path().string(),
               owner.pid);
      ++removed;
    }
  }
  return removed;
}

void temporaries_remove_on_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    // A signal ignored when the program started stays ignored: `nohup` ignores SIGHUP, and a
    // shell starts background commands with SIGINT ignored, so that a hangup or a Ctrl-C meant
    // for the foreground does not stop them.
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    ::sigaction(sig, &sa, nullptr);
  }
}

void stop_signals_defer(bool on) { g_defer = on ? 1 : 0; }

int stop_requested() { return int(g_stop); }

void stop_request(int reason) {
  if (g_stop == 0) g_stop = reason;
}

void stop_request_clear() { g_stop = 0; }

namespace {

void on_stop_signal_catch(int sig) { stop_request(sig); }

struct sigaction g_caught_old[2];
bool g_catching = false;

}  // namespace

void stop_signals_catch(bool on) {
  const int sigs[2] = {SIGINT, SIGTERM};
  if (on && !g_catching) {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal_catch;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 2; ++i) ::sigaction(sigs[i], &sa, &g_caught_old[i]);
    g_catching = true;
  } else if (!on && g_catching) {
    for (int i = 0; i < 2; ++i) ::sigaction(sigs[i], &g_caught_old[i], nullptr);
    g_catching = false;
  }
}

void output_check_writable(const std::string& path, bool overwrite) {
  if (!overwrite && fs::exists(path)) {
    throw ExistsError(path + ": output exists (use --overwrite to replace it)");
  }
  fs::path parent = fs::path(path).parent_path();
  if (!parent.empty() && !fs::is_directory(parent)) {
    throw IoError(path + ": output folder " + parent.string() + " does not exist");
  }
  temporaries_sweep_stale(path);
}

AtomicOutput::AtomicOutput(std::string final_path, bool overwrite)
    : final_(std::move(final_path)) {
  output_check_writable(final_, overwrite);
  tmp_ = temp_path_beside(final_);
  live_slot_ = live_add(tmp_, /*folder=*/false);
}

AtomicOutput::~AtomicOutput() {
  if (!committed_) {
    std::error_code ec;
    fs::remove(tmp_, ec);
  }
  live_remove(live_slot_);
}

void AtomicOutput::commit() {
  std::error_code ec;
  fs::rename(tmp_, final_, ec);
  if (ec) throw IoError(final_ + ": cannot rename " + tmp_ + " into place: " + ec.message());
  committed_ = true;
  live_remove(live_slot_);
  live_slot_ = -1;
}

AtomicFolder::AtomicFolder(std::string final_dir) : final_(std::move(final_dir)) {
  while (!final_.empty() && final_.back() == '/') final_.pop_back();
  fs::path parent = fs::absolute(final_).parent_path();
  if (!fs::is_directory(parent)) {
    throw IoError("output folder " + final_ + ": parent folder " + parent.string() +
                  " does not exist");
  }
  temporaries_sweep_stale(final_);
  tmp_ = temp_path_beside(final_);
  std::error_code ec;
  fs::create_directory(tmp_, ec);
  if (ec) throw IoError(tmp_ + ": cannot create the temporary folder: " + ec.message());
  live_slot_ = live_add(tmp_, /*folder=*/true);
}

AtomicFolder::~AtomicFolder() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
  live_remove(live_slot_);
}

void AtomicFolder::commit() {
  std::error_code ec;
  if (!fs::exists(final_)) {
    fs::rename(tmp_, final_, ec);
    if (ec) throw IoError(final_ + ": cannot rename " + tmp_ + " into place: " + ec.message());
  } else {  // an existing folder (--overwrite, or other files in it): move the files in
    for (const auto& e : fs::directory_iterator(tmp_)) {
      fs::rename(e.path(), fs::path(final_) / e.path().filename(), ec);
      if (ec) throw IoError(final_ + ": cannot move " + e.path().string() + " into it: " +
                            ec.message());
    }
    fs::remove(tmp_, ec);
  }
  committed_ = true;
  live_remove(live_slot_);
  live_slot_ = -1;
}

void write_file_atomic(const std::string& path, const std::string& bytes, bool overwrite) {
  AtomicOutput out(path, overwrite);
  try {
    write_bytes_to(out.tmp_path(), bytes.data(), bytes.size());
  } catch (const IoError& e) {
    throw IoError(path + ": cannot write (" + e.what() + ")");
  }
  out.commit();
}

void write_text_file_atomic(const std::string& path, const std::string& text, bool overwrite) {
  write_file_atomic(path, text, overwrite);
}

}  // namespace unwedge
