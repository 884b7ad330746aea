// A temporary folder for one test, removed with everything in it when the test ends.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <string>

namespace unwedge::test {

struct TempDir {
  std::filesystem::path path;
  /// `prefix` names the test program ("unwedge_test_train"); every folder of a process differs.
  explicit TempDir(const std::string& prefix) {
    path = std::filesystem::temp_directory_path() /
           (prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  /// The path of `file` inside the folder.
  std::string operator/(const std::string& file) const { return (path / file).string(); }

 private:
  static int& counter() {
    static int c = 0;
    return c;
  }
};

}  // namespace unwedge::test
