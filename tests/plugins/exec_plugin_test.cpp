#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <saga/json_depth.hpp>
#include <string>
#include <thread>

#include "plugin_harness.hpp"
#include "temp_dir.hpp"

namespace {

using saga::test::AttemptSpec;
using saga::test::json;
using saga::test::Outcome;
using namespace std::chrono_literals;

const saga_step_type& exec_type() {
  static const saga_step_type& type =
      saga::test::find_type(saga::test::load_plugin("saga-exec.so"), "exec");
  return type;
}

Outcome run(json params, AttemptSpec spec = {}) {
  spec.params = std::move(params);
  return saga::test::run_attempt(exec_type(), spec);
}

json sh(const std::string& script) {
  return {{"argv", {"/bin/sh", "-c", script}}};
}

using saga::test::TempDir;

pid_t read_pid(const std::filesystem::path& file) {
  std::ifstream in(file);
  pid_t pid = 0;
  in >> pid;
  REQUIRE(pid > 0);
  return pid;
}

// Descendants of the program are orphaned when it dies. As a subreaper this process inherits
// them instead of PID 1 (which may never reap in a container), so that a killed group really
// disappears and kill(-pgid, 0) can tell whether anything of it survived.
void become_subreaper() {
  REQUIRE(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
}

// True when no process of the group is left within `within`, reaping those orphaned to us.
bool group_gone(pid_t pgid, std::chrono::milliseconds within) {
  const auto give_up = std::chrono::steady_clock::now() + within;
  for (;;) {
    while (waitpid(-pgid, nullptr, WNOHANG) > 0) {
    }
    if (kill(-pgid, 0) != 0 && errno == ESRCH) return true;
    if (std::chrono::steady_clock::now() >= give_up) return false;
    std::this_thread::sleep_for(10ms);
  }
}

}  // namespace

TEST_CASE("exec declares its parameters and a compensation", "[exec]") {
  const saga_step_type& type = exec_type();
  CHECK(type.compensate != nullptr);
  CHECK(type.accepts_any_params == 0);
  const saga_param* argv = saga::test::find_param(type, "argv");
  REQUIRE(argv != nullptr);
  CHECK(argv->required == 1);
  CHECK(argv->type == SAGA_PARAM_ARRAY);
  for (const char* name : {"env", "cwd", "stdin"}) {
    const saga_param* p = saga::test::find_param(type, name);
    REQUIRE(p != nullptr);
    CHECK(p->required == 0);
    CHECK(p->description.size > 0);
  }
}

TEST_CASE("exec: exit 0 with JSON on stdout is ok with that JSON", "[exec]") {
  const Outcome r = run(sh(R"(printf '{"n": 42, "s": "x"}\n')"));
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  CHECK(r.output() == json{{"n", 42}, {"s", "x"}});
}

TEST_CASE("exec: exit 0 with plain text is ok with {stdout}", "[exec]") {
  const Outcome r = run({{"argv", {"/bin/echo", "hello world"}}});
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  CHECK(r.output() == json{{"stdout", "hello world\n"}});
}

TEST_CASE("exec: argv[0] is looked up in PATH and no shell is involved", "[exec]") {
  const Outcome r = run({{"argv", {"echo", "$HOME", "*"}}});
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  CHECK(r.output() == json{{"stdout", "$HOME *\n"}});
}

TEST_CASE("exec: exit 75 is a retry", "[exec]") {
  const Outcome r = run(sh("echo 'database busy' >&2; exit 75"));
  REQUIRE(r.outcome == SAGA_OUTCOME_RETRY);
  CHECK_THAT(r.data, Catch::Contains("75") && Catch::Contains("database busy"));
}

TEST_CASE("exec: another exit fails with the tail of stderr", "[exec]") {
  const Outcome r = run(sh("echo first >&2; echo boom >&2; exit 3"));
  REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
  CHECK(r.data == "exited with status 3: first\nboom");
}

TEST_CASE("exec: a failure with nothing on stderr names the status", "[exec]") {
  const Outcome r = run(sh("exit 9"));
  REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
  CHECK(r.data == "exited with status 9");
}

TEST_CASE("exec: death by a signal fails", "[exec]") {
  const Outcome r = run(sh("kill -KILL $$"));
  REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
  CHECK_THAT(r.data, Catch::StartsWith("killed by signal 9 (SIGKILL)"));
}

TEST_CASE("exec: large stdout and stderr together do not deadlock; stderr keeps its tail",
          "[exec]") {
  const Outcome r =
      run(sh("head -c 300000 /dev/zero | tr '\\0' a; head -c 300000 /dev/zero | tr '\\0' b >&2;"
             " echo END >&2; exit 4"));
  REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
  CHECK_THAT(r.data, Catch::StartsWith("exited with status 4: bbbb") && Catch::EndsWith("bEND"));
  CHECK(r.data.size() <= 4096 + 40);
}

TEST_CASE("exec: a megabyte of stdout arrives whole", "[exec]") {
  const Outcome r = run(sh("head -c 1000000 /dev/zero | tr '\\0' a"));
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  const std::string out = r.output().at("stdout").get<std::string>();
  CHECK(out == std::string(1000000, 'a'));
}

TEST_CASE("exec: the attempt's context and env reach the program's environment", "[exec]") {
  REQUIRE(setenv("SAGA_TEST_INHERITED", "from-sagad", 1) == 0);
  AttemptSpec spec;
  spec.instance_id = "inst-9";
  spec.workflow = "orders";
  spec.step = "charge";
  spec.idempotency_key = "inst-9/charge";
  spec.attempt = 3;
  spec.input = {{"order", 7}, {"items", {"a", "b"}}};
  json params = sh(
      R"(printf '{"attempt": %s, "instance": "%s", "workflow": "%s", "step": "%s", )"
      R"("key": "%s", "phase": "%s", "input": %s, "custom": "%s", "num": "%s", "inherited": "%s"}' )"
      R"("$SAGA_ATTEMPT" "$SAGA_INSTANCE_ID" "$SAGA_WORKFLOW" "$SAGA_STEP" "$SAGA_IDEMPOTENCY_KEY" )"
      R"("$SAGA_PHASE" "$SAGA_INPUT" "$CUSTOM" "$NUM" "$SAGA_TEST_INHERITED")");
  // SAGA_STEP in `env` must not hide the real step name.
  params["env"] = {{"CUSTOM", "v 1"}, {"NUM", 5}, {"SAGA_STEP", "forged"}};
  const Outcome r = run(params, spec);
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  CHECK(r.output() == json{{"attempt", 3},
                           {"instance", "inst-9"},
                           {"workflow", "orders"},
                           {"step", "charge"},
                           {"key", "inst-9/charge"},
                           {"phase", "run"},
                           {"input", spec.input},
                           {"custom", "v 1"},
                           {"num", "5"},
                           {"inherited", "from-sagad"}});
}

TEST_CASE("exec: a compensation runs the program with SAGA_PHASE=compensate", "[exec]") {
  AttemptSpec spec;
  spec.phase = SAGA_PHASE_COMPENSATE;
  spec.step = "reserve";
  spec.attempt = 2;
  const Outcome r = run(sh(R"(printf '{"phase": "%s", "step": "%s", "attempt": %s}' "$SAGA_PHASE" )"
                           R"("$SAGA_STEP" "$SAGA_ATTEMPT")"),
                        spec);
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  CHECK(r.output() == json{{"phase", "compensate"}, {"step", "reserve"}, {"attempt", 2}});
}

TEST_CASE("exec: stdin gets a string raw and other JSON as JSON text", "[exec]") {
  SECTION("string") {
    const Outcome r = run({{"argv", {"cat"}}, {"stdin", "plain text"}});
    REQUIRE(r.outcome == SAGA_OUTCOME_OK);
    CHECK(r.output() == json{{"stdout", "plain text"}});
  }
  SECTION("object") {
    const json doc = {{"x", {1, 2}}, {"y", "z"}};
    const Outcome r = run({{"argv", {"cat"}}, {"stdin", doc}});
    REQUIRE(r.outcome == SAGA_OUTCOME_OK);
    CHECK(r.output() == doc);
  }
  SECTION("no stdin is an immediate end of file") {
    const Outcome r = run({{"argv", {"wc", "-c"}}});
    REQUIRE(r.outcome == SAGA_OUTCOME_OK);
    CHECK(r.output() == 0);
  }
}

TEST_CASE("exec: megabytes through stdin and stdout at once do not deadlock", "[exec]") {
  const std::string big(3 << 20, 'q');
  const Outcome r = run({{"argv", {"cat"}}, {"stdin", big}});
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  CHECK(r.output().at("stdout").get<std::string>() == big);
}

TEST_CASE("exec: stdout nested too deeply to handle as JSON comes back as text", "[exec]") {
  SECTION("deeper than the limit") {
    const std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
    const Outcome r = run({{"argv", {"cat"}}, {"stdin", deep}});
    REQUIRE(r.outcome == SAGA_OUTCOME_OK);
    CHECK(r.output() == json{{"stdout", deep}});
  }
  SECTION("at the limit") {
    const std::string deep =
        std::string(saga::kMaxJsonDepth, '[') + "1" + std::string(saga::kMaxJsonDepth, ']');
    const Outcome r = run({{"argv", {"cat"}}, {"stdin", deep}});
    REQUIRE(r.outcome == SAGA_OUTCOME_OK);
    CHECK(r.output().is_array());
  }
}

TEST_CASE("exec: a program that ignores its stdin does not bring SIGPIPE on sagad", "[exec]") {
  const Outcome r = run({{"argv", {"true"}}, {"stdin", std::string(4 << 20, 'x')}});
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  CHECK(r.output() == json{{"stdout", ""}});
}

TEST_CASE("exec: cwd is honoured", "[exec]") {
  TempDir dir;
  const Outcome r = run({{"argv", {"pwd"}}, {"cwd", dir.path}});
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  CHECK(r.output() == json{{"stdout", dir.path + "\n"}});
}

TEST_CASE("exec: mistakes in the workflow fail for good", "[exec]") {
  SECTION("missing cwd") {
    const Outcome r = run({{"argv", {"pwd"}}, {"cwd", "/nonexistent/saga-test"}});
    REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
    CHECK_THAT(r.data, Catch::Contains("/nonexistent/saga-test"));
  }
  SECTION("missing program") {
    const Outcome r = run({{"argv", {"/nonexistent/saga-program"}}});
    REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
    CHECK_THAT(r.data, Catch::Contains("cannot start `/nonexistent/saga-program`"));
  }
  SECTION("program not executable") {
    TempDir dir;
    const std::string path = dir.path + "/not-executable";
    std::ofstream(path) << "#!/bin/sh\necho hi\n";
    const Outcome r = run({{"argv", {path}}});
    REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
    CHECK_THAT(r.data, Catch::Contains("cannot start `" + path + "`: Permission denied"));
  }
  SECTION("a file that is not a program is not handed to a shell") {
    TempDir dir;
    const std::string path = dir.path + "/no-shebang";
    std::ofstream(path) << "echo ran by a shell\n";
    ::chmod(path.c_str(), 0755);
    const Outcome r = run({{"argv", {path}}});
    REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
    CHECK_THAT(r.data, Catch::Contains("cannot start `" + path + "`: Exec format error"));
  }
  SECTION("program not in PATH") {
    const Outcome r = run({{"argv", {"saga-no-such-program"}}});
    REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
    CHECK_THAT(r.data, Catch::Contains("saga-no-such-program"));
  }
  SECTION("bad argv") {
    for (const json& argv : {json(nullptr), json::array(), json("ls")}) {
      const Outcome r = run({{"argv", argv}});
      REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
      CHECK_THAT(r.data, Catch::Contains("argv"));
    }
    const Outcome r = run({{"argv", json::array({"ls", "-l", json::object()})}});
    REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
    CHECK_THAT(r.data, Catch::Contains("`argv[2]` must be a string, number or boolean, not a "
                                       "mapping"));
  }
  SECTION("numbers and booleans in argv are passed as their text") {
    const Outcome r = run({{"argv", json::array({"printf", "{\"n\": %s, \"b\": %s}", 2.5, true})}});
    REQUIRE(r.outcome == SAGA_OUTCOME_OK);
    CHECK(json::parse(r.data) == json{{"n", 2.5}, {"b", true}});
  }
  SECTION("bad env") {
    const Outcome r = run({{"argv", {"true"}}, {"env", {{"A=B", "x"}}}});
    REQUIRE(r.outcome == SAGA_OUTCOME_FAIL);
    CHECK_THAT(r.data, Catch::Contains("A=B"));
  }
}

TEST_CASE("exec: the timeout kills the whole process group", "[exec]") {
  become_subreaper();
  TempDir dir;
  const auto pid_file = std::filesystem::path(dir.path) / "pid";
  AttemptSpec spec;
  spec.timeout = 500ms;
  const auto started = std::chrono::steady_clock::now();
  const Outcome r = run(sh("echo $$ > '" + pid_file.string() + "'; sleep 30 & sleep 30"), spec);
  const auto took = std::chrono::steady_clock::now() - started;
  REQUIRE(r.outcome == SAGA_OUTCOME_RETRY);
  CHECK_THAT(r.data, Catch::StartsWith("timed out after"));
  CHECK(took >= 450ms);
  CHECK(took < 2s);
  // The shell is the group leader: its pid is the group id.
  CHECK(group_gone(read_pid(pid_file), 2s));
}

TEST_CASE("exec: a program that ignores SIGTERM is killed after the grace", "[exec]") {
  become_subreaper();
  TempDir dir;
  const auto pid_file = std::filesystem::path(dir.path) / "pid";
  AttemptSpec spec;
  spec.timeout = 300ms;
  const auto started = std::chrono::steady_clock::now();
  const Outcome r =
      run(sh("trap '' TERM; echo $$ > '" + pid_file.string() + "'; sleep 30; sleep 30"), spec);
  const auto took = std::chrono::steady_clock::now() - started;
  REQUIRE(r.outcome == SAGA_OUTCOME_RETRY);
  CHECK(took < 2500ms);
  CHECK(group_gone(read_pid(pid_file), 2s));
}

TEST_CASE("exec: cancellation stops the program", "[exec]") {
  become_subreaper();
  TempDir dir;
  const auto pid_file = std::filesystem::path(dir.path) / "pid";
  std::atomic<bool> cancel{false};
  AttemptSpec spec;
  spec.cancel = &cancel;
  std::jthread canceller([&] {
    std::this_thread::sleep_for(200ms);
    cancel = true;
  });
  const auto started = std::chrono::steady_clock::now();
  const Outcome r = run(sh("echo $$ > '" + pid_file.string() + "'; sleep 30"), spec);
  const auto took = std::chrono::steady_clock::now() - started;
  REQUIRE(r.outcome == SAGA_OUTCOME_RETRY);
  CHECK_THAT(r.data, Catch::StartsWith("cancelled"));
  CHECK(took < 2s);
  CHECK(group_gone(read_pid(pid_file), 2s));
}

TEST_CASE("exec: a program that finishes when told to stop and exits 0 succeeded", "[exec]") {
  become_subreaper();
  std::atomic<bool> cancel{false};
  AttemptSpec spec;
  spec.cancel = &cancel;
  std::jthread canceller([&] {
    std::this_thread::sleep_for(200ms);
    cancel = true;
  });
  // Its work is done (committed, say), so the saga must know of it, to undo it.
  const Outcome done =
      run(sh("trap 'echo \"{\\\"done\\\": true}\"; exit 0' TERM; sleep 30 & wait"), spec);
  REQUIRE(done.outcome == SAGA_OUTCOME_OK);
  CHECK(json::parse(done.data) == json({{"done", true}}));

  // Any other end is the stop's, a transient failure.
  cancel = false;
  std::jthread again([&] {
    std::this_thread::sleep_for(200ms);
    cancel = true;
  });
  const Outcome stopped = run(sh("trap 'exit 3' TERM; sleep 30 & wait"), spec);
  REQUIRE(stopped.outcome == SAGA_OUTCOME_RETRY);
  CHECK_THAT(stopped.data, Catch::StartsWith("cancelled"));

  // After a timeout, exit 0 is the stop's: a program may exit 0 on SIGTERM without having
  // finished, and a timed-out step must not go forward on that.
  AttemptSpec timed;
  timed.timeout = 200ms;
  const Outcome late = run(sh("trap 'exit 0' TERM; sleep 30 & wait"), timed);
  REQUIRE(late.outcome == SAGA_OUTCOME_RETRY);
  CHECK_THAT(late.data, Catch::StartsWith("timed out after"));
}

TEST_CASE("exec: descendants left behind are killed when the program exits", "[exec]") {
  become_subreaper();
  TempDir dir;
  const auto pid_file = std::filesystem::path(dir.path) / "pid";
  const auto started = std::chrono::steady_clock::now();
  // The background sleep keeps stdout open: the step must not wait for it.
  const Outcome r =
      run(sh("echo $$ > '" + pid_file.string() + R"('; sleep 30 & printf '{"a": 1}')"));
  const auto took = std::chrono::steady_clock::now() - started;
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  CHECK(r.output() == json{{"a", 1}});
  CHECK(took < 1500ms);
  CHECK(group_gone(read_pid(pid_file), 2s));
}

TEST_CASE("exec: the program inherits only fds 0, 1 and 2", "[exec]") {
  const int fd = open("/dev/null", O_RDONLY);  // deliberately without O_CLOEXEC
  REQUIRE(fd >= 0);
  REQUIRE(dup2(fd, 100) == 100);
  close(fd);
  REQUIRE((fcntl(100, F_GETFD) & FD_CLOEXEC) == 0);
  const Outcome r = run(sh("ls /proc/$$/fd"));
  close(100);
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  CHECK(r.output() == json{{"stdout", "0\n1\n2\n"}});
}

TEST_CASE("exec: output that is not UTF-8 still makes valid JSON", "[exec]") {
  const Outcome r = run(sh("printf 'ok\\377\\376'"));
  REQUIRE(r.outcome == SAGA_OUTCOME_OK);
  CHECK(r.output() == json{{"stdout", "ok\xEF\xBF\xBD\xEF\xBF\xBD"}});
}
