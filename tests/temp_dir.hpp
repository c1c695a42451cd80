// A fresh directory under the system's temporary directory, removed with everything in it when
// the test ends.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>

namespace saga::test {

struct TempDir {
  // Canonical, so that it compares equal to what a process started in it sees as its cwd.
  const std::string path;

  explicit TempDir(const std::string& prefix = "saga-test") : path(make(prefix)) {}
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

 private:
  static std::string make(const std::string& prefix) {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
    return std::filesystem::canonical(tmpl).string();
  }
};

}  // namespace saga::test
