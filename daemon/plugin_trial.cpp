#include "plugin_trial.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

#include "plugin_host/plugin_registry.hpp"
#include "plugin_host/unique_fd.hpp"

extern char** environ;

namespace saga {

namespace {

using Clock = std::chrono::steady_clock;

struct Run {
  bool ready = false;         // the child reported in before loading anything
  size_t ok = 0;              // files reported loaded or refused as usual
  std::string threw;          // after "threw "
  std::optional<int> status;  // nullopt: it ran out of time, and was killed
};

pid_t spawn(const std::string& exe, const std::vector<std::string>& paths, size_t from,
            int report_fd, int& error) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // The child reports there; its stdout and stderr are the plugins' own.
  posix_spawn_file_actions_adddup2(&actions, report_fd, PluginRegistry::kTrialReportFd);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Default signal handling and no blocked signals in the child, whatever sagad's are; a group
  // of its own, so that what a plugin starts goes with it.
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
  std::vector<std::string> args{exe, "--try-plugins"};
  args.insert(args.end(), paths.begin() + static_cast<std::ptrdiff_t>(from), paths.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  error = ::posix_spawn(&pid, exe.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  return error == 0 ? pid : -1;
}

// The child's status once it ended by `deadline`; else nullopt. Either way its group goes (what
// its plugins started), while the child is not reaped yet, so that the group id cannot be
// another's.
std::optional<int> reap_by(pid_t pid, Clock::time_point deadline) {
  bool ended = false;
  for (;;) {
    siginfo_t info{};
    const int r = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
    if (r == 0 && info.si_pid == pid) {
      ended = true;
      break;
    }
    if (r < 0 && errno != EINTR) break;
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(-pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!ended) return std::nullopt;
  return status;
}

// Reads the child's report until it ends: each file has `per_file` from the report before it,
// and the whole run ends by `end`.
Run follow(pid_t pid, int report_fd, Millis per_file, Clock::time_point end) {
  Run run;
  std::string pending;
  auto deadline = std::min(Clock::now() + per_file, end);
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    pollfd p{report_fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(report_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the child ended, or closed its end
    pending.append(buf, static_cast<size_t>(n));
    for (size_t nl; (nl = pending.find('\n')) != std::string::npos; pending.erase(0, nl + 1)) {
      const std::string line = pending.substr(0, nl);
      if (line == "ready") {
        run.ready = true;
      } else if (line == "ok") {
        ++run.ok;
        deadline = std::min(Clock::now() + per_file, end);
      } else if (line.starts_with("threw ")) {
        run.threw = line.substr(6);
      }
    }
  }
  run.status = reap_by(pid, deadline);
  return run;
}

PluginRegistry::TrialRefusal refusal(const Run& run, Millis per_file) {
  const std::string tail = "; not loaded: fix or remove the file";
  if (!run.status) {
    return {"its initialization did not finish within " + format_duration(per_file) +
                " when loaded in a child process first" + tail,
            true};
  }
  const int status = *run.status;
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = sigabbrev_np(sig);
    // Killed from outside (an operator, the OOM killer): the file may be fine.
    const bool from_outside = sig == SIGKILL || sig == SIGTERM || sig == SIGINT || sig == SIGHUP;
    return {std::string("loading it ") + (from_outside ? "was stopped by" : "crashed") +
                " a child process (signal " +
                (name ? std::string("SIG") + name : std::to_string(sig)) + ")" +
                (from_outside ? "; not loaded, tried again at the next reload" : tail),
            !from_outside};
  }
  if (WEXITSTATUS(status) == PluginRegistry::kTrialThrew && !run.threw.empty()) {
    return {"its initialization threw an exception " + run.threw +
                " when loaded in a child process first" + tail,
            true};
  }
  // The trial exits 0 after its last file: anything else comes from the library (its
  // initialization called exit(), or a sanitizer caught a crash in it).
  return {
      "loading it ended a child process with status " + std::to_string(WEXITSTATUS(status)) + tail,
      true};
}

}  // namespace

std::map<std::string, PluginRegistry::TrialRefusal> try_plugins_in_child(
    const std::string& exe, const std::vector<std::string>& paths, Millis per_file, Millis total) {
  std::map<std::string, PluginRegistry::TrialRefusal> refused;
  const auto end = Clock::now() + total;
  size_t next = 0;
  while (next < paths.size()) {
    if (Clock::now() >= end) {
      for (; next < paths.size(); ++next) {
        refused[paths[next]] = {"not loaded: checking the plugin files before it took more than " +
                                    format_duration(total) + "; tried again at the next reload",
                                false};
      }
      break;
    }
    auto cannot = [](int err) {
      spdlog::warn(
          "cannot load plugin files in a child process first ({}); loading them as they are",
          std::strerror(err));
    };
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      cannot(errno);
      break;
    }
    UniqueFd read_end(fds[0]);
    UniqueFd write_end(fds[1]);
    int error = 0;
    const pid_t pid = spawn(exe, paths, next, write_end.get(), error);
    if (pid < 0) {
      cannot(error);
      break;
    }
    write_end.reset();
    const Run run = follow(pid, read_end.get(), per_file, end);
    if (!run.ready) {
      // It ended before loading anything: not the plugins' doing.
      spdlog::warn(
          "the child process that loads plugin files first did not start; loading them "
          "as they are");
      break;
    }
    if (run.status && WIFEXITED(*run.status) && WEXITSTATUS(*run.status) == 0 &&
        next + run.ok >= paths.size()) {
      break;
    }
    // The file it was loading when it ended.
    const size_t culprit = next + run.ok;
    if (culprit >= paths.size()) break;
    refused[paths[culprit]] = refusal(run, per_file);
    next = culprit + 1;
  }
  return refused;
}

}  // namespace saga
