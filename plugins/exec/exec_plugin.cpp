// The `exec` step type: runs a program without a shell and maps its exit to a step result.
//
// The program is started (fork and exec) in its own process group, with pipes as fds 0/1/2 and
// every other descriptor closed, so nothing of sagad leaks into it whatever flags the daemon's
// descriptors carry, and it is killed if sagad dies. One worker thread supervises one child: it
// feeds stdin, drains stdout and stderr with poll() so neither side can block the other, watches
// the attempt's deadline and cancellation, and always reaps the child before returning.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
// glibc 2.36 declares pidfd_open without C linkage guards.
extern "C" {
#include <sys/pidfd.h>
}

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <expected>
#include <optional>
#include <saga/json_depth.hpp>
#include <saga/step.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

extern char** environ;

namespace {

using saga::json;
using saga::Result;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

// What is kept of the child's output: a step output larger than this does not belong in the
// journal, and an error message needs only the end of stderr.
constexpr size_t kStdoutCap = 4u << 20;
constexpr size_t kStderrTail = 4u << 10;
constexpr int kExitTempFail = 75;  // EX_TEMPFAIL from <sysexits.h>
// How often the deadline and the cancellation flag are looked at while the child runs.
constexpr Millis kCheckInterval = 50ms;
// Between SIGTERM and SIGKILL when the attempt is stopped.
constexpr Millis kTermGrace = 500ms;
// How long output is still collected after the program exited, for when a descendant that left
// the process group keeps the pipes open.
constexpr Millis kDrainBound = 1000ms;

std::string errno_text(int err) {
  return std::strerror(err);
}

// Replaces bytes that are not UTF-8 with U+FFFD: a step output and an error become JSON text,
// and a program may print anything.
std::string valid_utf8(std::string_view s) {
  const std::string dumped =
      json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
  return json::parse(dumped).get<std::string>();
}

std::string format_elapsed(Millis d) {
  if (d < 1s) return std::to_string(d.count()) + "ms";
  const auto tenths = d.count() / 100;
  return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + "s";
}

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  Fd read;
  Fd write;
};

// Close-on-exec, so that a program another worker thread spawns at the same moment cannot
// inherit our ends.
std::expected<Pipe, int> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return std::unexpected(errno);
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

// What to run, checked and converted from `with:`.
struct Command {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // NAME=VALUE
  std::optional<std::string> cwd;
  std::string stdin_data;
};

// What a parameter value passes to a program as: a string as it is, a number or boolean as its
// JSON text (a template of a number renders a number). `what` names the value in errors.
std::expected<std::string, std::string> program_text(const json& value, const std::string& what) {
  std::string text;
  if (value.is_string()) {
    text = value.get<std::string>();
  } else if (value.is_number() || value.is_boolean()) {
    text = value.dump();
  } else {
    return std::unexpected(what + " must be a string, number or boolean, not " +
                           (value.is_null()    ? "null"
                            : value.is_array() ? "a list"
                                               : "a mapping"));
  }
  if (text.find('\0') != std::string::npos) {
    return std::unexpected(what + " cannot contain NUL bytes");
  }
  return text;
}

std::expected<std::vector<std::string>, std::string> parse_argv(const json& params) {
  auto it = params.find("argv");
  if (it == params.end() || !it->is_array() || it->empty()) {
    return std::unexpected("`argv` must be a non-empty array of strings");
  }
  std::vector<std::string> argv;
  for (const json& arg : *it) {
    auto text = program_text(arg, "`argv[" + std::to_string(argv.size()) + "]`");
    if (!text) return std::unexpected(text.error());
    argv.push_back(std::move(*text));
  }
  return argv;
}

// sagad's own environment, then `env`, then the SAGA_* variables, each later one replacing an
// earlier one of the same name: the attempt's context cannot be overridden by accident.
std::expected<std::vector<std::string>, std::string> build_environment(const saga::Context& ctx) {
  std::vector<std::string> entries;
  std::unordered_map<std::string, size_t> index;
  auto set = [&](const std::string& name, const std::string& value) {
    std::string entry = name + "=" + value;
    auto [it, inserted] = index.try_emplace(name, entries.size());
    if (inserted) {
      entries.push_back(std::move(entry));
    } else {
      entries[it->second] = std::move(entry);
    }
  };
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const size_t eq = entry.find('=');
    if (eq == std::string_view::npos || eq == 0) continue;
    set(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }

  const json& params = ctx.params();
  if (auto it = params.find("env"); it != params.end() && !it->is_null()) {
    if (!it->is_object()) return std::unexpected("`env` must be an object of NAME: value");
    for (const auto& [name, value] : it->items()) {
      if (name.empty() || name.find_first_of("=\0", 0, 2) != std::string::npos) {
        return std::unexpected("`env` has an invalid variable name `" + name + "`");
      }
      auto text = program_text(value, "`env." + name + "`");
      if (!text) return std::unexpected(text.error());
      set(name, *text);
    }
  }

  set("SAGA_INSTANCE_ID", std::string(ctx.instance_id()));
  set("SAGA_WORKFLOW", std::string(ctx.workflow()));
  set("SAGA_STEP", std::string(ctx.step()));
  set("SAGA_ATTEMPT", std::to_string(ctx.attempt()));
  set("SAGA_IDEMPOTENCY_KEY", std::string(ctx.idempotency_key()));
  set("SAGA_PHASE", ctx.phase() == saga::Phase::compensate ? "compensate" : "run");
  set("SAGA_INPUT", ctx.input().dump());
  return entries;
}

std::expected<Command, std::string> parse_command(const saga::Context& ctx) {
  const json& params = ctx.params();
  if (!params.is_object()) return std::unexpected("`with:` must be an object");
  Command cmd;
  auto argv = parse_argv(params);
  if (!argv) return std::unexpected(argv.error());
  cmd.argv = std::move(*argv);
  auto env = build_environment(ctx);
  if (!env) return std::unexpected(env.error());
  cmd.env = std::move(*env);
  if (auto it = params.find("cwd"); it != params.end() && !it->is_null()) {
    if (!it->is_string()) return std::unexpected("`cwd` must be a string");
    cmd.cwd = it->get<std::string>();
  }
  if (auto it = params.find("stdin"); it != params.end() && !it->is_null()) {
    cmd.stdin_data = it->is_string() ? it->get<std::string>() : it->dump();
  }
  return cmd;
}

// While the thread writes to the child's stdin, a child that exits without reading it all would
// raise SIGPIPE, which kills the daemon unless it ignores the signal. Blocking it on this thread
// turns that into EPIPE; a SIGPIPE left pending is consumed before the mask is restored.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old_);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;
  ~SigpipeBlock() {
    // Blocked before we came: whatever is pending is not ours to consume.
    if (sigismember(&old_, SIGPIPE)) return;
    sigset_t pending;
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
      sigset_t pipe_only;
      sigemptyset(&pipe_only);
      sigaddset(&pipe_only, SIGPIPE);
      const timespec zero{};
      sigtimedwait(&pipe_only, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t old_;
};

// The parent's ends of the child's three pipes and what has come out of them.
class ChildIo {
 public:
  ChildIo(Fd in, Fd out, Fd err, std::string input)
      : in_(std::move(in)), out_(std::move(out)), err_(std::move(err)), input_(std::move(input)) {
    for (const Fd* fd : {&in_, &out_, &err_}) set_nonblocking(fd->get());
    // Nothing to write: the child sees end-of-file at once.
    if (input_.empty()) in_.reset();
  }

  // Waits up to `timeout` for any pipe to be ready, or for `wake_fd` (-1: none) to become
  // readable, and moves whatever data it can.
  void pump(Millis timeout, int wake_fd) {
    pollfd fds[4];
    nfds_t n = 0;
    if (in_) fds[n++] = pollfd{in_.get(), POLLOUT, 0};
    if (out_) fds[n++] = pollfd{out_.get(), POLLIN, 0};
    if (err_) fds[n++] = pollfd{err_.get(), POLLIN, 0};
    if (wake_fd >= 0) fds[n++] = pollfd{wake_fd, POLLIN, 0};
    const int ready = ::poll(fds, n, static_cast<int>(std::max(timeout, 0ms).count()));
    if (ready <= 0) return;
    for (nfds_t i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in_.get()) {
        write_input();
      } else if (fds[i].fd == out_.get()) {
        read_stdout();
      } else if (fds[i].fd == err_.get()) {
        read_stderr();
      }
    }
  }

  bool output_closed() const { return !out_ && !err_; }
  const std::string& stdout_text() const { return stdout_; }
  bool stdout_truncated() const { return stdout_truncated_; }
  std::string stderr_tail() const {
    std::string_view tail(stderr_);
    if (tail.size() > kStderrTail) tail.remove_prefix(tail.size() - kStderrTail);
    while (!tail.empty() && std::isspace(static_cast<unsigned char>(tail.back()))) {
      tail.remove_suffix(1);
    }
    return valid_utf8(tail);
  }

 private:
  void write_input() {
    while (written_ < input_.size()) {
      const ssize_t n = ::write(in_.get(), input_.data() + written_, input_.size() - written_);
      if (n > 0) {
        written_ += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && errno == EAGAIN) {
        return;
      } else {
        // EPIPE: the program stopped reading; what it does about that is its own business.
        break;
      }
    }
    in_.reset();
  }

  // Reads until the pipe is empty, and closes our end once the writers are gone.
  template <class Sink>
  static void drain(Fd& fd, Sink&& sink) {
    char buf[64 * 1024];
    for (;;) {
      const ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n > 0) {
        sink(std::string_view(buf, static_cast<size_t>(n)));
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && errno == EAGAIN) {
        return;
      } else {
        fd.reset();
        return;
      }
    }
  }

  void read_stdout() {
    // Past the cap the pipe is still drained, so that the program never blocks on a full pipe.
    drain(out_, [this](std::string_view data) {
      const size_t room = kStdoutCap - stdout_.size();
      if (data.size() > room) stdout_truncated_ = true;
      stdout_.append(data.substr(0, std::min(room, data.size())));
    });
  }

  void read_stderr() {
    drain(err_, [this](std::string_view data) {
      stderr_.append(data);
      // Trimmed in bulk rather than on every read, to keep appending cheap.
      if (stderr_.size() > 4 * kStderrTail) stderr_.erase(0, stderr_.size() - kStderrTail);
    });
  }

  Fd in_, out_, err_;
  std::string input_;
  size_t written_ = 0;
  std::string stdout_;
  bool stdout_truncated_ = false;
  std::string stderr_;
};

// A spawned child: its pid (which is also its process group id) and the parent's pipe ends.
struct Child {
  pid_t pid = -1;
  Fd in, out, err;
};

// Spawn failures that a later attempt may not hit are transient; a missing or unrunnable
// program is a mistake in the workflow.
Result spawn_failure(const std::string& what, int err) {
  const bool transient = err == EAGAIN || err == ENOMEM || err == EMFILE || err == ENFILE;
  std::string message = what + ": " + errno_text(err);
  if (err == E2BIG) message += " (argv and environment, SAGA_INPUT included, are too large)";
  return transient ? Result::retry(std::move(message)) : Result::fail(std::move(message));
}

// What the child needs between fork and exec, prepared by the parent: after fork the child may
// make only async-signal-safe calls (another thread may have held the allocator's lock).
struct ChildSetup {
  const char* program;  // the file to execute, found in PATH by the parent
  char* const* argv;
  char* const* envp;
  const char* cwd;  // null: the daemon's
  int in, out, err;
  int status;    // close-on-exec; gets the errno of a step that failed before exec
  pid_t daemon;  // the process the child must not outlive
  int max_fd;    // for closing descriptors where close_range is missing
};

[[noreturn]] void child_fail(const ChildSetup& s, int err) {
  [[maybe_unused]] ssize_t n = ::write(s.status, &err, sizeof err);
  ::_exit(127);
}

[[noreturn]] void exec_child(const ChildSetup& s) {
  // The program dies with the worker thread that started it, that is with sagad: after a crash
  // without systemd's cgroup to clean up, it would otherwise run on beside the attempt that
  // recovery starts again.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(s, errno);
  if (::getppid() != s.daemon) ::_exit(127);  // sagad died before the line above
  // A process group of its own, so that a timeout reaches the program's descendants too.
  if (::setpgid(0, 0) != 0) child_fail(s, errno);
  // Dispositions and mask start clean: a daemon often ignores SIGPIPE, and the parent blocked
  // every signal around fork, both of which a program would otherwise inherit.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);  // EINVAL for some: fine
  if (::dup2(s.in, STDIN_FILENO) < 0 || ::dup2(s.out, STDOUT_FILENO) < 0 ||
      ::dup2(s.err, STDERR_FILENO) < 0) {
    child_fail(s, errno);
  }
  if (s.cwd != nullptr && ::chdir(s.cwd) != 0) child_fail(s, errno);
  // Whatever the daemon or a library in it opened without close-on-exec stays behind; the status
  // pipe stays open until exec closes it.
  if (::close_range(STDERR_FILENO + 1, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    for (int fd = STDERR_FILENO + 1; fd < s.max_fd; ++fd) {
      if (fd != s.status) ::close(fd);
    }
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(s.program, s.argv, s.envp);
  child_fail(s, errno);
}

// posix_spawnp's search of PATH (sagad's), done before fork so that the child only calls execve.
// Unlike execvp's, a file that is not in an executable format is not handed to /bin/sh: exec
// runs programs without a shell.
std::expected<std::string, int> find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  const std::string_view search = path != nullptr ? path : "/bin:/usr/bin";
  int err = ENOENT;
  for (size_t start = 0;;) {
    const size_t colon = search.find(':', start);
    const std::string_view dir = search.substr(start, colon - start);
    const std::string candidate = (dir.empty() ? std::string(".") : std::string(dir)) + "/" + name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
      err = EACCES;  // as execvp: reported if nothing later in PATH runs
    }
    if (colon == std::string_view::npos) return std::unexpected(err);
    start = colon + 1;
  }
}

std::expected<Child, Result> spawn(const Command& cmd) {
  auto stdin_pipe = make_pipe();
  if (!stdin_pipe)
    return std::unexpected(spawn_failure("cannot create a pipe", stdin_pipe.error()));
  auto stdout_pipe = make_pipe();
  if (!stdout_pipe) {
    return std::unexpected(spawn_failure("cannot create a pipe", stdout_pipe.error()));
  }
  auto stderr_pipe = make_pipe();
  if (!stderr_pipe) {
    return std::unexpected(spawn_failure("cannot create a pipe", stderr_pipe.error()));
  }
  auto status_pipe = make_pipe();
  if (!status_pipe) {
    return std::unexpected(spawn_failure("cannot create a pipe", status_pipe.error()));
  }

  const std::string what = "cannot start `" + cmd.argv[0] + "`";
  const auto program = find_program(cmd.argv[0]);
  if (!program) return std::unexpected(spawn_failure(what, program.error()));
  std::vector<char*> argv;
  for (const std::string& a : cmd.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& e : cmd.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  rlimit files{};
  const int max_fd = ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY
                         ? static_cast<int>(std::min<rlim_t>(files.rlim_cur, 1 << 20))
                         : 1 << 16;
  const ChildSetup setup{program->c_str(),
                         argv.data(),
                         envp.data(),
                         cmd.cwd ? cmd.cwd->c_str() : nullptr,
                         stdin_pipe->read.get(),
                         stdout_pipe->write.get(),
                         stderr_pipe->write.get(),
                         status_pipe->write.get(),
                         ::getpid(),
                         max_fd};

  // No handler of the daemon's may run in the child before it resets them.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = ::fork();
  if (pid == 0) exec_child(setup);
  const int fork_err = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return std::unexpected(spawn_failure(what, fork_err));

  // End of file: the exec succeeded and closed the child's end. An errno: it did not.
  status_pipe->write.reset();
  int child_err = 0;
  ssize_t n;
  do {
    n = ::read(status_pipe->read.get(), &child_err, sizeof child_err);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof child_err) || n < 0) {
    const int err = n < 0 ? errno : child_err;
    ::kill(pid, SIGKILL);  // should the exec have happened after all, it is not waited out
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return std::unexpected(spawn_failure(what, err));
  }

  return Child{pid, std::move(stdin_pipe->write), std::move(stdout_pipe->read),
               std::move(stderr_pipe->read)};
}

// True once the child has exited. It stays a zombie, unreaped, so that its pid, which names its
// process group, cannot be reused until we are done signalling the group.
bool has_exited(pid_t pid) {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    return errno == ECHILD;  // someone else reaped it; there is nothing left to wait for
  }
  return info.si_pid == pid;
}

std::string with_stderr(std::string what, const std::string& tail) {
  if (tail.empty()) return what;
  return what + ": " + tail;
}

Result exit_result(int status, const ChildIo& io) {
  if (WIFEXITED(status)) {
    const int code = WEXITSTATUS(status);
    if (code == 0) {
      // Output nested too deeply to handle as JSON is passed on as text, as other text is.
      json parsed = saga::json_nests_deeper_than(io.stdout_text())
                        ? json(json::value_t::discarded)
                        : json::parse(io.stdout_text(), nullptr, /*allow_exceptions=*/false);
      if (!parsed.is_discarded() && !io.stdout_truncated()) return Result::ok(std::move(parsed));
      json output = {{"stdout", valid_utf8(io.stdout_text())}};
      if (io.stdout_truncated()) output["stdout_truncated"] = true;
      return Result::ok(std::move(output));
    }
    std::string what = with_stderr("exited with status " + std::to_string(code), io.stderr_tail());
    return code == kExitTempFail ? Result::retry(std::move(what)) : Result::fail(std::move(what));
  }
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* abbrev = sigabbrev_np(sig);
    std::string what = "killed by signal " + std::to_string(sig);
    if (abbrev != nullptr) what += std::string(" (SIG") + abbrev + ")";
    return Result::fail(with_stderr(std::move(what), io.stderr_tail()));
  }
  return Result::fail("ended with unexpected wait status " + std::to_string(status));
}

Result run_program(saga::Context& ctx) {
  const auto started = SteadyClock::now();
  const auto deadline = ctx.deadline();
  auto elapsed = [&] { return std::chrono::duration_cast<Millis>(SteadyClock::now() - started); };

  auto cmd = parse_command(ctx);
  if (!cmd) return Result::fail("exec: " + cmd.error());
  if (cmd->cwd) {
    struct stat st {};
    if (::stat(cmd->cwd->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return Result::fail("exec: `cwd` " + *cmd->cwd + " is not a directory");
    }
  }
  if (deadline && std::chrono::system_clock::now() >= *deadline) {
    return Result::retry("timed out before the program started");
  }

  SigpipeBlock sigpipe_block;
  auto child = spawn(*cmd);
  if (!child) return child.error();
  const pid_t pid = child->pid;
  // Should anything below throw, the program must still not outlive the attempt unreaped.
  struct ReapOnUnwind {
    pid_t pid;
    bool armed = true;
    ~ReapOnUnwind() {
      if (!armed) return;
      ::kill(-pid, SIGKILL);
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
  } reap_on_unwind{pid};
  ctx.log(saga::LogLevel::debug, "started `" + cmd->argv[0] + "` as pid " + std::to_string(pid));

  ChildIo io(std::move(child->in), std::move(child->out), std::move(child->err),
             std::move(cmd->stdin_data));
  // Readable once the child exits, so an exit wakes poll() at once. Without it (an old kernel),
  // exits are noticed on a short interval instead.
  Fd pidfd(::pidfd_open(pid, 0));
  const Millis exit_check = pidfd ? kCheckInterval : 10ms;

  std::optional<std::string> stopped;  // why the attempt stopped the program, if it did
  bool cancelled = false;              // it was its instance's cancel (or sagad's shutdown)
  while (!has_exited(pid)) {
    Millis wait = exit_check;
    if (deadline) {
      const auto left = std::chrono::ceil<Millis>(*deadline - std::chrono::system_clock::now());
      if (left <= 0ms) {
        stopped = "timed out after " + format_elapsed(elapsed());
        break;
      }
      wait = std::min(wait, left);
    }
    if (ctx.cancelled()) {
      stopped = "cancelled after " + format_elapsed(elapsed());
      cancelled = true;
      break;
    }
    io.pump(wait, pidfd.get());
  }

  if (stopped) {
    ::kill(-pid, SIGTERM);
    const auto give_up = SteadyClock::now() + kTermGrace;
    while (!has_exited(pid) && SteadyClock::now() < give_up) io.pump(10ms, pidfd.get());
  }
  // Whatever is left in the group goes now: descendants the program left behind when it exited,
  // or a program that ignored SIGTERM. A step is over when its program is, and nothing it
  // started may outlive it. The leader is still unreaped, so -pid names no other group.
  ::kill(-pid, SIGKILL);
  const auto drain_until = SteadyClock::now() + kDrainBound;
  while (!io.output_closed() && SteadyClock::now() < drain_until) {
    io.pump(std::chrono::ceil<Millis>(drain_until - SteadyClock::now()), -1);
  }

  int status = 0;
  pid_t reaped;
  do {
    reaped = ::waitpid(pid, &status, 0);
  } while (reaped < 0 && errno == EINTR);
  reap_on_unwind.armed = false;
  if (stopped) {
    // A program that finishes its work when its instance is cancelled and says so (exit 0)
    // succeeded: its effect is real, and the saga must know of it to undo it. After a timeout,
    // or any other end, the stop decides: a program may exit 0 on SIGTERM without having done
    // its work, and a timed-out step must not go forward on that.
    if (cancelled && reaped == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      return exit_result(status, io);
    }
    return Result::retry(*stopped);
  }
  if (reaped != pid) {
    return Result::retry("lost track of pid " + std::to_string(pid) + ": " + errno_text(errno));
  }
  return exit_result(status, io);
}

class Exec final : public saga::Step {
 public:
  Result run(saga::Context& ctx) override { return run_program(ctx); }
  // The undo is a program too, given in `compensate.with`; it sees SAGA_PHASE=compensate.
  Result compensate(saga::Context& ctx) override { return run_program(ctx); }
};

std::vector<saga::Param> exec_params() {
  using saga::ParamType;
  return {
      {"argv", ParamType::array, true, nullptr,
       "The program and its arguments (numbers and booleans pass as text); no shell is involved, "
       "argv[0] is looked up in PATH"},
      {"env", ParamType::object, false, nullptr,
       "Variables added to sagad's environment; SAGA_* variables cannot be overridden"},
      {"cwd", ParamType::string, false, nullptr,
       "Working directory of the program (default: sagad's)"},
      {"stdin", ParamType::any, false, nullptr,
       "Written to the program's stdin: a string as is, other JSON as JSON text"},
  };
}

saga::StepType exec_type() {
  return saga::step_type<Exec>(
      "exec",
      "Runs a program without a shell: exit 0 is ok (stdout as JSON, or {\"stdout\": text}), "
      "exit 75 retries, anything else fails with the end of stderr",
      exec_params(), /*can_compensate=*/true);
}

}  // namespace

SAGA_PLUGIN("exec", "1.0", {exec_type()});
