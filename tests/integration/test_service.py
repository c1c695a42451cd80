"""sagad as a service: sd_notify (READY, STATUS, WATCHDOG, STOPPING), journald priorities, the
config file and its errors, and what SIGTERM and SIGHUP do."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

from conftest import ASAN, BUILD, PLUGINS, SAGACTL, SAGAD, SOURCE, events

SLOW = """
name: slow
steps:
  - name: first
    uses: testing.noop
  - name: nap
    uses: testing.sleep
    with: {ms: %d}
  - name: last
    uses: testing.noop
"""

OPTIONS = ["workflows", "plugins", "state", "socket", "workers", "durability", "retention",
           "secrets", "grace", "min-free-mb", "log-level"]


class NotifySocket:
    """The datagram socket systemd listens on, as a test double: collects what sagad sends."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.received = []

    def next(self, timeout):
        self.sock.settimeout(timeout)
        try:
            msg = self.sock.recv(4096).decode()
        except socket.timeout:
            return None
        self.received.append(msg)
        return msg

    def wait_for(self, predicate, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            msg = self.next(max(0.01, deadline - time.time()))
            if msg is not None and predicate(msg):
                return msg
        raise AssertionError(f"no matching notification in {timeout}s; got {self.received}")

    def close(self):
        self.sock.close()


def fields(msg):
    return dict(line.split("=", 1) for line in msg.split("\n") if "=" in line)


def start_notified(daemon, monkeypatch, extra_env=None, watchdog_pid_is_self=False):
    notify = NotifySocket(os.path.join(daemon.root, "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
    for k, v in (extra_env or {}).items():
        monkeypatch.setenv(k, v)
    if watchdog_pid_is_self:
        # systemd names the main pid in WATCHDOG_PID; sh execs sagad, so $$ is sagad's pid.
        log = open(daemon.log_path, "a")
        daemon.proc = subprocess.Popen(
            ["/bin/sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh", SAGAD,
             "--workflows", daemon.workflows, "--plugins", PLUGINS, "--state", daemon.state,
             "--socket", daemon.socket],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
    else:
        daemon.start(wait=False)
    return notify


def test_ready_comes_after_recovery_with_status_counts(daemon, monkeypatch):
    daemon.add_workflow("slow.yaml", SLOW % 2000)
    daemon.start()
    assert daemon.ctl("start", "slow", "--id", "order-1").returncode == 0
    daemon.wait_for("order-1", lambda d: d["steps"][1]["state"] == "running")
    daemon.kill()

    notify = start_notified(daemon, monkeypatch)
    try:
        ready = notify.wait_for(lambda m: "READY=1" in m)
        # Recovery is over before READY=1: the log says so, and the socket answers at once with
        # the resumed instance.
        assert "recovery: resumed 1 instances" in daemon.log()
        r = daemon.ctl("inspect", "order-1", "--json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["state"] == "running"
        assert doc["steps"][0]["state"] == "succeeded"
        assert not any("READY=1" in m for m in notify.received[:-1])
        status = fields(ready)["STATUS"]
        assert status.startswith("1 running, 0 compensating, "), status
        assert "1 workflows" in status

        daemon.wait_for("order-1", lambda d: d["state"] == "completed")
        # STATUS= follows the counts while sagad runs.
        later = notify.wait_for(lambda m: fields(m).get("STATUS", "").startswith("0 running"),
                                timeout=10)
        assert "0 attempts in flight" in fields(later)["STATUS"]

        daemon.proc.send_signal(signal.SIGTERM)
        stopping = notify.wait_for(lambda m: "STOPPING=1" in m)
        assert fields(stopping)["STATUS"].startswith("draining")
        assert daemon.proc.wait(timeout=30) == 0
    finally:
        notify.close()


def test_watchdog_pings_at_half_the_interval(daemon, monkeypatch):
    notify = start_notified(daemon, monkeypatch, {"WATCHDOG_USEC": "600000"},
                            watchdog_pid_is_self=True)
    try:
        notify.wait_for(lambda m: "READY=1" in m)
        start = time.time()
        pings = []
        while time.time() - start < 1.6:
            msg = notify.next(0.5)
            if msg and "WATCHDOG=1" in msg:
                pings.append(time.time())
        # Every 300 ms: about five in 1.6 s, and never a gap near the 600 ms limit.
        assert len(pings) >= 4, notify.received
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert max(gaps) < 0.5, gaps
    finally:
        notify.close()


def test_no_watchdog_pings_for_another_pid(daemon, monkeypatch):
    notify = start_notified(daemon, monkeypatch,
                            {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
    try:
        notify.wait_for(lambda m: "READY=1" in m)
        time.sleep(0.6)
        while notify.next(0.05):
            pass
        assert not any("WATCHDOG=1" in m for m in notify.received), notify.received
    finally:
        notify.close()


def test_log_lines_carry_syslog_priorities_under_journald(daemon, monkeypatch):
    open(daemon.log_path, "w").close()
    st = os.stat(daemon.log_path)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    daemon.add_workflow("broken.yaml", "name: broken\nsteps: 3\n")
    daemon.start()
    daemon.stop()
    lines = daemon.log().splitlines()
    assert lines and all(re.match(r"<[0-7]>", line) for line in lines), lines
    assert any(line.startswith("<6>") and "ready" in line for line in lines), lines
    assert any(line.startswith("<3>") and "broken.yaml" in line for line in lines), lines


def test_plain_log_lines_when_stderr_is_not_the_journal(daemon, monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "1:1")
    daemon.start()
    daemon.stop()
    lines = daemon.log().splitlines()
    assert lines and all(re.match(r"\d{4}-\d\d-\d\dT", line) for line in lines), lines


def sagad(*args, env=None):
    return subprocess.run([SAGAD, *args], capture_output=True, text=True, timeout=30,
                          env=env)


def write(tmp_path, text, name="sagad.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_config_file_may_end_with_a_document_marker(tmp_path):
    path = write(tmp_path, "workers: 2\n---\n")
    r = sagad("--config", path, "--print-config")
    assert r.returncode == 0, r.stderr
    assert "workers: 2" in r.stdout


def test_config_errors_name_file_line_and_column(tmp_path):
    cases = [
        ("workers: 4\nbogus: 1\n", ":2:1: unknown option \"bogus\"; options are workflows"),
        ("workers: many\n", ":1:10: workers is a whole number from 1 to 1024, not \"many\""),
        ("workers: 0\n", ":1:10: workers is a whole number"),
        ("durability: fast\n", ":1:13: durability is sync or async"),
        ("grace: soon\n", ":1:8: grace is a duration"),
        ("retention: [30d]\n", ":1:12: retention takes one plain value"),
        ("retention: 0s\n", ":1:12: retention is how long ended instances are kept, and must be "
                            "longer than 0s"),
        ("plugins: {a: b}\n", ":1:10: plugins is a path or a list of paths"),
        ("plugins:\n  - /a\n  - {b: c}\n", ":3:5: plugins is a list of paths"),
        ("socket:\n", ":1:1: socket needs a value"),
        ("log-level: loud\n", ":1:12: log-level is one of"),
        ("state: /a\nstate: /b\n", ":2:1: state is given twice (first on line 1)"),
        ("workers: [1\n", ":2:1: "),
        ("- workers\n", ":1:1: the config file must be a mapping"),
        ("workers: 4\n---\nworkers: 8\n", ":3:1: a second YAML document starts here, and the "
                                          "config file holds one"),
    ]
    for text, expected in cases:
        path = write(tmp_path, text)
        r = sagad("--config", path, "--print-config")
        assert r.returncode == 2, (text, r)
        assert r.stdout == ""
        assert r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith(f"sagad: {path}{expected}"), (text, r.stderr)


def test_a_bad_flag_value_is_the_same_error_as_in_the_file():
    r = sagad("--workers", "lots", "--config", "/dev/null", "--print-config")
    assert r.returncode == 2
    assert r.stderr == 'sagad: --workers is a whole number from 1 to 1024, not "lots"\n'


def test_missing_config_file_is_an_error_only_when_named(tmp_path):
    r = sagad("--config", str(tmp_path / "nope.yaml"), "--print-config")
    assert r.returncode == 2
    assert r.stderr == f"sagad: cannot read config file {tmp_path / 'nope.yaml'}\n"


def test_a_directory_as_config_file_is_a_one_line_error(tmp_path):
    r = sagad("--config", str(tmp_path), "--print-config")
    assert r.returncode == 2
    assert r.stderr == f"sagad: config file {tmp_path} is a directory\n"


def parse_printed(text):
    """The --print-config output: flat keys, plugins as a list."""
    out, key = {}, None
    for line in text.splitlines():
        if line.startswith("  - "):
            out[key].append(line[4:])
            continue
        key, _, value = line.partition(":")
        value = value.strip()
        out[key] = [] if value in ("", "[]") else value
    return out


def test_the_printed_config_reads_back_as_itself(tmp_path):
    printed = sagad("--config", "/dev/null", "--print-config")
    assert printed.returncode == 0, printed.stderr
    again = sagad("--config", write(tmp_path, printed.stdout), "--print-config")
    assert again.returncode == 0, again.stderr
    assert again.stdout == printed.stdout


def test_flags_win_over_the_file(tmp_path):
    path = write(tmp_path, "workers: 4\nsocket: /tmp/from-file.sock\nplugins: [/p1, /p2]\n"
                           "grace: 3s\nlog-level: debug\n")
    r = sagad("--config", path, "--workers", "8", "--plugins", "/p3", "--plugins", "/p4",
              "--print-config")
    assert r.returncode == 0, r.stderr
    c = parse_printed(r.stdout)
    assert c["workers"] == "8"
    assert c["plugins"] == ["/p3", "/p4"]
    assert c["socket"] == "/tmp/from-file.sock"
    assert c["grace"] == "3s"
    assert c["log-level"] == "debug"
    assert set(c) == set(OPTIONS)


def test_the_example_config_documents_every_option_with_its_default(tmp_path):
    example = os.path.join(SOURCE, "systemd", "sagad.yaml")
    defaults = parse_printed(sagad("--config", "/dev/null", "--print-config").stdout)
    commented = sagad("--config", example, "--print-config")
    assert commented.returncode == 0, commented.stderr
    assert parse_printed(commented.stdout) == defaults

    # Uncommenting every option gives a valid file that says what the defaults are.
    text = open(example).read()
    uncommented = re.sub(r"^#(?=[a-z]|  - )", "", text, flags=re.M)
    r = sagad("--config", write(tmp_path, uncommented), "--print-config")
    assert r.returncode == 0, r.stderr
    c = parse_printed(r.stdout)
    assert c["plugins"] == ["/usr/lib/saga/plugins"]
    del c["plugins"], defaults["plugins"]
    defaults["secrets"] = "/etc/saga/secrets"
    assert c == defaults
    keys = set(re.findall(r"^#([a-z-]+):", text, flags=re.M))
    assert keys == set(OPTIONS)


def test_help_documents_every_option_and_the_config_file():
    r = sagad("--help")
    assert r.returncode == 0
    for option in OPTIONS + ["config", "print-config"]:
        assert f"--{option}" in r.stdout, option
    assert "/etc/saga/sagad.yaml" in r.stdout
    assert "Flags win over the file" in r.stdout
    assert "SIGHUP" in r.stdout


def test_the_daemon_runs_from_the_config_file(daemon, tmp_path):
    daemon.add_example("hello.yaml")
    other = os.path.join(daemon.root, "flag.sock")
    path = write(tmp_path, f"workflows: {daemon.workflows}\nplugins:\n  - {PLUGINS}\n"
                           f"state: {daemon.state}\nsocket: {daemon.socket}\nworkers: 2\n")
    log = open(daemon.log_path, "a")
    daemon.proc = subprocess.Popen([SAGAD, "--config", path, "--socket", other], stdout=log,
                                   stderr=subprocess.STDOUT)
    log.close()
    daemon.socket = other
    daemon.wait_ready()
    code, out = daemon.ctl_json("start", "hello", "--wait")
    assert code == 0, out
    assert not os.path.exists(os.path.join(daemon.root, "sagad.sock"))
    assert daemon.stop() == 0


def test_sigterm_lets_a_running_attempt_finish_within_the_grace(daemon):
    daemon.add_workflow("slow.yaml", SLOW % 1500)
    daemon.start()
    assert daemon.ctl("start", "slow", "--id", "s1").returncode == 0
    daemon.wait_for("s1", lambda d: d["steps"][1]["state"] == "running")
    time.sleep(0.3)  # "running" shows once journaled; the worker picks the attempt up just after
    began = time.time()
    assert daemon.stop() == 0
    assert time.time() - began < 8
    assert "draining" in daemon.log()
    daemon.start()
    doc = daemon.wait_for("s1", lambda d: d["state"] == "completed")
    doc = daemon.inspect("s1", history=True)
    # The attempt finished during the drain: it never ran a second time.
    assert [e["attempt"] for e in events(doc, "step_started", "nap")] == [1]


def test_an_attempt_still_running_after_the_grace_runs_again_after_restart(daemon):
    daemon.extra_args = ["--grace", "300ms"]
    daemon.add_workflow("slow.yaml", SLOW % 4000)
    daemon.start()
    assert daemon.ctl("start", "slow", "--id", "s2").returncode == 0
    daemon.wait_for("s2", lambda d: d["steps"][1]["state"] == "running")
    time.sleep(0.3)  # "running" shows once journaled; the worker picks the attempt up just after
    began = time.time()
    assert daemon.stop() == 0
    assert time.time() - began < 3
    assert "still running after the grace period" in daemon.log()
    daemon.extra_args = []
    daemon.start()
    daemon.wait_for("s2", lambda d: d["state"] == "completed", timeout=30)
    doc = daemon.inspect("s2", history=True)
    assert [e["attempt"] for e in events(doc, "step_started", "nap")] == [1, 2]


def test_attempts_still_running_after_the_grace_are_told_to_stop(daemon, tmp_path):
    # Past the grace period, a running step is told to stop (exec's program gets SIGTERM), and
    # the failure that makes is not journaled: the attempt was interrupted, and runs again.
    log = tmp_path / "runs.log"
    script = tmp_path / "work.sh"
    script.write_text(f"""#!/bin/sh
echo "begin $SAGA_ATTEMPT" >> {log}
trap 'echo "told to stop $SAGA_ATTEMPT" >> {log}; exit 1' TERM
[ "$SAGA_ATTEMPT" = 1 ] && {{ sleep 30 & wait; }}
echo "done $SAGA_ATTEMPT" >> {log}
""")
    script.chmod(0o755)
    daemon.add_workflow("work.yaml", f"""
name: work
steps:
  - name: w
    uses: exec
    with: {{argv: ["{script}"]}}
    retry: {{max_attempts: 1}}
""")
    daemon.extra_args = ["--grace", "300ms"]
    daemon.start()
    assert daemon.ctl("start", "work", "--id", "w1").returncode == 0
    deadline = time.time() + 10
    while not (log.exists() and "begin 1" in log.read_text()) and time.time() < deadline:
        time.sleep(0.02)
    assert daemon.stop() == 0
    assert log.read_text().split("\n")[:2] == ["begin 1", "told to stop 1"], log.read_text()
    assert "told them to stop" in daemon.log()
    daemon.start()
    doc = daemon.wait_for("w1", lambda d: d["state"] == "completed")
    doc = daemon.inspect("w1", history=True)
    # With one attempt allowed, a journaled failure would have failed the instance.
    assert events(doc, "step_failed", "w") == []
    assert [e["attempt"] for e in events(doc, "step_interrupted", "w")] == [1]
    assert "done 2" in log.read_text()


EXEC_FLOW = """
name: uses-exec
steps:
  - name: say
    uses: exec
    with: {argv: ["/bin/echo", "{\\"said\\": 1}"]}
"""


def test_sighup_loads_new_plugins_and_revalidates_workflows(daemon):
    plugins = os.path.join(daemon.root, "plugins")
    os.makedirs(plugins)
    shutil.copy(os.path.join(PLUGINS, "saga-testing.so"), plugins)
    daemon.add_workflow("slow.yaml", SLOW % 1500)
    daemon.add_workflow("uses-exec.yaml", EXEC_FLOW)
    log = open(daemon.log_path, "a")
    daemon.proc = subprocess.Popen(
        [SAGAD, "--config", "/dev/null", "--workflows", daemon.workflows, "--plugins", plugins,
         "--state", daemon.state, "--socket", daemon.socket],
        stdout=log, stderr=subprocess.STDOUT)
    log.close()
    daemon.wait_ready()
    code, doc = daemon.ctl_json("workflows")
    assert [w["name"] for w in doc["workflows"]] == ["slow"]
    assert "exec" in doc["errors"][0]["error"]

    # A plugin in use is kept while new ones arrive.
    assert daemon.ctl("start", "slow", "--id", "busy").returncode == 0
    daemon.wait_for("busy", lambda d: d["steps"][1]["state"] == "running")
    shutil.copy(os.path.join(PLUGINS, "saga-exec.so"), plugins)
    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline:
        code, doc = daemon.ctl_json("workflows")
        if len(doc["workflows"]) == 2:
            break
        time.sleep(0.05)
    assert sorted(w["name"] for w in doc["workflows"]) == ["slow", "uses-exec"], doc
    assert doc["errors"] == []
    code, doc = daemon.ctl_json("plugins")
    assert sorted(os.path.basename(p["file"]) for p in doc["plugins"]) == [
        "saga-exec.so", "saga-testing.so"]
    code, out = daemon.ctl_json("start", "uses-exec", "--wait")
    assert code == 0, out
    assert out["instance"]["steps"][0]["output"] == {"said": 1}
    daemon.wait_for("busy", lambda d: d["state"] == "completed")
    assert daemon.log().count("plugin testing") == 1  # loaded once, not again on SIGHUP


def test_a_plugin_that_crashes_or_throws_while_loading_is_refused_and_sagad_serves(daemon,
                                                                                  tmp_path):
    # Loaded into sagad, the first would crash it at every start, and the second would leave its
    # dynamic loader locked (the http step type loads libcurl at its first request, and hung).
    broken = os.path.join(BUILD, "tests", "fixtures-init-throws")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(os.path.join(broken, "init_crashes_plugin.so"), plugins)
    shutil.copy(os.path.join(broken, "init_throws_plugin.so"), plugins)
    daemon.extra_args = ["--plugins", str(plugins)]
    daemon.add_workflow("get.yaml", """
name: get
steps:
  - name: get
    uses: http
    with: {url: "http://127.0.0.1:1/"}
    retry: {max_attempts: 1}
""")
    daemon.start()
    code, doc = daemon.ctl_json("plugins")
    errors = {os.path.basename(e["file"]): e["error"] for e in doc["errors"]}
    # Under AddressSanitizer, its handler catches the crash and exits 1.
    assert re.search(r"loading it (crashed|ended) a child process",
                     errors["init_crashes_plugin.so"]), errors
    # Under AddressSanitizer, whose dlopen lets no exception through, the child aborts instead.
    assert ("its initialization threw an exception (no configuration found)"
            in errors["init_throws_plugin.so"] or
            (ASAN and "loading it crashed a child process (signal SIGABRT)"
             in errors["init_throws_plugin.so"])), errors
    r = subprocess.run([SAGACTL, "--socket", daemon.socket, "start", "get", "--wait", "--json"],
                       capture_output=True, text=True, timeout=20)
    assert json.loads(r.stdout)["instance"]["state"] == "failed", r.stdout
    assert "Couldn't connect" in r.stdout

    # A new one on SIGHUP is refused the same way; sagad runs on.
    shutil.copy(os.path.join(broken, "init_crashes_plugin.so"), plugins / "again.so")
    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while "again.so" not in daemon.log() and time.time() < deadline:
        time.sleep(0.05)
    assert re.search(r"again.so: loading it (crashed|ended) a child process", daemon.log())
    assert daemon.ctl("ping").returncode == 0


def test_a_plugin_that_hangs_while_loading_is_refused_in_bounded_time(daemon, tmp_path):
    # Its initialization closes the descriptor the child reports on, then never ends.
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(os.path.join(BUILD, "tests", "fixtures-init-throws", "init_hangs_plugin.so"),
                plugins)
    daemon.extra_args = ["--plugins", str(plugins)]
    began = time.time()
    daemon.start()
    assert time.time() - began < 15
    code, doc = daemon.ctl_json("plugins")
    (error,) = doc["errors"]
    assert "its initialization did not finish within 5s" in error["error"], error
    assert any(p["name"] == "testing" for p in doc["plugins"])


def test_a_drain_starts_no_step_that_it_will_not_run(daemon, tmp_path):
    # b finishes while sagad drains: c is not journaled as started, and after the restart it
    # runs as its first attempt, not as an interrupted one's successor.
    log = tmp_path / "ran.log"
    script = tmp_path / "step.sh"
    script.write_text(f'#!/bin/bash\nsleep "$1"\necho "$SAGA_STEP $SAGA_ATTEMPT" >> {log}\n')
    script.chmod(0o755)
    daemon.add_workflow("abc.yaml", f"""
name: abc
steps:
  - {{name: a, uses: exec, with: {{argv: ["{script}", "0"]}}}}
  - {{name: b, uses: exec, with: {{argv: ["{script}", "1"]}}}}
  - {{name: c, uses: exec, with: {{argv: ["{script}", "0"]}}}}
""")
    daemon.start()
    r = daemon.ctl("start", "abc", "--id", "drained")
    assert r.returncode == 0, r.stderr
    daemon.wait_for("drained", lambda d: d["steps"][1]["state"] == "running")
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=30) == 0
    assert log.read_text().splitlines() == ["a 1", "b 1"]
    daemon.start()
    doc = daemon.wait_for("drained", lambda d: d["state"] == "completed")
    assert log.read_text().splitlines() == ["a 1", "b 1", "c 1"]
    assert doc["steps"][2]["attempts"] == 1
    doc = daemon.inspect("drained", history=True)
    assert not events(doc, "step_interrupted"), doc["history"]
    assert [e["attempt"] for e in events(doc, "step_started", "c")] == [1]


def test_signals_during_recovery_wait_for_the_loop(daemon):
    # Instances parked on an hour-long retry timer: recovery has something to do.
    daemon.add_workflow("parked.yaml", """
name: parked
steps:
  - name: a
    uses: testing.fail
    retry: {max_attempts: 3, initial_interval: 1h, max_interval: 1h}
""")
    daemon.start()
    from conftest import Rpc
    rpc = Rpc(daemon.socket)
    for _ in range(3000):
        rpc.send("start", {"workflow": "parked", "input": {}})
    assert all("result" in rpc.read(timeout=120) for _ in range(3000))
    rpc.close()
    daemon.kill()

    before = len(daemon.log())
    daemon.start(wait=False)
    deadline = time.time() + 30
    while len(daemon.log()) == before and time.time() < deadline:  # past its first log line
        time.sleep(0.001)
    daemon.proc.send_signal(signal.SIGHUP)  # its default action would end sagad
    daemon.wait_ready()
    time.sleep(0.2)
    assert daemon.proc.poll() is None, daemon.log()[before:]
    assert "SIGHUP: reloading" in daemon.log()[before:]

    # A SIGTERM that comes during recovery drains once it is done, and sagad exits 0.
    daemon.kill()
    before = len(daemon.log())
    daemon.start(wait=False)
    while len(daemon.log()) == before and time.time() < deadline + 30:
        time.sleep(0.001)
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=60) == 0, daemon.log()[before:]
    assert "SIGTERM: draining" in daemon.log()[before:]
