"""The walking skeleton end to end: sagactl -> sagad -> plugins -> journal, and back."""
import json
import os
import time

from conftest import SAGACTL, Rpc, events

SLOW = """
name: slow
steps:
  - name: first
    uses: testing.noop
  - name: nap
    uses: testing.sleep
    with: {ms: 1500}
  - name: last
    uses: testing.noop
"""


def test_hello_completes_and_is_listed(daemon):
    daemon.add_example("hello.yaml")
    daemon.start()
    code, out = daemon.ctl_json("start", "hello", "--input", '{"name": "world"}', "--wait")
    assert code == 0, out
    assert out["existing"] is False
    inst = out["instance"]
    assert inst["state"] == "completed"
    assert [s["state"] for s in inst["steps"]] == ["succeeded"] * 3
    assert inst["steps"][1]["output"]["message"] == "hello from hello"
    assert inst["steps"][1]["output"]["instance"] == out["id"]

    doc = daemon.inspect(out["id"])
    assert doc["state"] == "completed"
    assert doc["input"] == {"name": "world"}
    text = daemon.ctl("inspect", out["id"])
    assert text.returncode == 0 and "completed" in text.stdout and "greet" in text.stdout

    code, listing = daemon.ctl_json("list")
    assert code == 0
    assert [i["id"] for i in listing["instances"]] == [out["id"]]
    assert listing["next_cursor"] is None
    assert out["id"] in daemon.ctl("list").stdout


def test_start_without_wait_prints_the_id(daemon):
    daemon.add_example("hello.yaml")
    daemon.start()
    r = daemon.ctl("start", "hello")
    assert r.returncode == 0, r.stderr
    instance_id = r.stdout.strip()
    doc = daemon.wait_for(instance_id, lambda d: d["state"] == "completed")
    assert doc["workflow"] == "hello"


def test_failing_saga_compensates_in_reverse_order(daemon):
    daemon.add_example("compensation-demo.yaml")
    daemon.start()
    code, out = daemon.ctl_json("start", "compensation-demo", "--wait")
    assert code == 1, "start --wait exits 1 when the instance does not complete"
    inst = out["instance"]
    assert inst["state"] == "compensated"
    assert inst["cause"] == "step_failed"
    states = {s["name"]: s["state"] for s in inst["steps"]}
    assert states == {"reserve-stock": "compensated", "charge-card": "compensated",
                      "ship": "failed"}
    ship = inst["steps"][2]
    assert "carrier rejected the parcel" in ship["error"]
    doc = daemon.inspect(out["id"], history=True)
    undone = [e["step"] for e in events(doc, "compensation_succeeded")]
    assert undone == ["charge-card", "reserve-stock"]


def test_kill_during_a_step_resumes_and_runs_earlier_steps_once(daemon):
    daemon.add_workflow("slow.yaml", SLOW)
    daemon.start()
    r = daemon.ctl("start", "slow", "--id", "order-1")
    assert r.returncode == 0, r.stderr
    daemon.wait_for("order-1", lambda d: d["steps"][1]["state"] == "running")
    daemon.kill()

    daemon.start()
    doc = daemon.wait_for("order-1", lambda d: d["state"] == "completed")
    doc = daemon.inspect("order-1", history=True)
    assert len(events(doc, "step_started", "first")) == 1
    assert len(events(doc, "step_succeeded", "first")) == 1
    assert [e["attempt"] for e in events(doc, "step_interrupted", "nap")] == [1]
    assert [e["attempt"] for e in events(doc, "step_started", "nap")] == [1, 2]
    assert len(events(doc, "step_succeeded", "nap")) == 1
    assert doc["steps"][1]["attempts"] == 2
    seqs = [e["seq"] for e in doc["history"]]
    assert seqs == list(range(1, len(seqs) + 1))


def test_start_with_an_existing_id_returns_that_instance(daemon):
    daemon.add_example("hello.yaml")
    daemon.start()
    code, first = daemon.ctl_json("start", "hello", "--id", "same", "--wait")
    assert code == 0 and first["existing"] is False
    code, again = daemon.ctl_json("start", "hello", "--id", "same")
    assert code == 0
    assert again == {"id": "same", "existing": True}
    code, listing = daemon.ctl_json("list")
    assert len(listing["instances"]) == 1


def test_starting_an_id_again_says_existing_and_waits_for_its_journal(daemon):
    daemon.add_example("hello.yaml")
    daemon.add_workflow("nap.yaml", """
name: nap
steps:
  - {name: a, uses: testing.sleep, with: {ms: 1500}}
""")
    daemon.start()
    code, first = daemon.ctl_json("start", "nap", "--id", "napper")
    assert code == 0 and first == {"id": "napper", "existing": False}
    code, out = daemon.ctl_json("start", "hello", "--id", "napper")  # while it runs
    assert code == 1 and "exists and runs workflow nap, not hello" in out["error"]["message"]
    # Waiting on an instance that was started before, and runs still.
    code, again = daemon.ctl_json("start", "nap", "--id", "napper", "--wait")
    assert code == 0
    assert again["existing"] is True and again["instance"]["state"] == "completed"
    r = daemon.ctl("start", "nap", "--id", "napper", "--wait")
    assert r.returncode == 0 and r.stdout.startswith("napper (existing)")

    # The same id for another workflow is refused, running or ended.
    code, out = daemon.ctl_json("start", "hello", "--id", "napper")
    assert code == 1
    assert out["error"]["message"] == ("instance napper exists and runs workflow nap, not hello; "
                                       "start it under another id")
    # A second start that arrives before the first is durable is answered after it, not before.
    rpc = Rpc(daemon.socket)
    try:
        rpc.sock.sendall(b"".join(
            (json.dumps({"jsonrpc": "2.0", "id": n, "method": "start",
                         "params": {"workflow": "nap", "id": "twice"}}) + "\n").encode()
            for n in (1, 2)))
        replies = [rpc.read(), rpc.read()]
    finally:
        rpc.close()
    assert [r["id"] for r in replies] == [1, 2]
    assert [r["result"]["existing"] for r in replies] == [False, True]


def test_errors_are_one_line_with_exit_codes(daemon):
    daemon.add_example("hello.yaml")
    daemon.start()
    r = daemon.ctl("inspect", "nope")
    assert r.returncode == 1
    assert "no instance nope" in r.stderr
    r = daemon.ctl("start", "no-such-workflow")
    assert r.returncode == 1 and "no workflow no-such-workflow" in r.stderr
    r = daemon.ctl("start", "hello", "--input", "not json")
    assert r.returncode == 2
    # The daemon is still serving.
    assert daemon.ctl("ping").returncode == 0


def test_global_options_before_or_after_the_command(daemon):
    daemon.add_example("hello.yaml")
    daemon.start()
    import subprocess
    before = subprocess.run([SAGACTL, "--socket", daemon.socket, "--json", "ping"],
                            capture_output=True, text=True)
    after = subprocess.run([SAGACTL, "ping", "--json", "--socket", daemon.socket],
                           capture_output=True, text=True)
    assert before.returncode == 0 and after.returncode == 0, before.stderr + after.stderr
    assert json.loads(before.stdout)["state_dir"] == daemon.state
    assert json.loads(after.stdout)["pid"] == daemon.proc.pid
    env = dict(os.environ, SAGA_SOCKET=daemon.socket)
    via_env = subprocess.run([SAGACTL, "ping"], capture_output=True, text=True, env=env)
    assert via_env.returncode == 0


def test_ping_shows_the_state_directory_as_sagad_resolved_it(daemon):
    # Given relative to sagad's working directory, shown whole for a caller elsewhere.
    daemon.popen_args = {"cwd": daemon.root}
    daemon.state = "./here/../state"
    daemon.start()
    code, doc = daemon.ctl_json("ping")
    assert code == 0 and doc["state_dir"] == os.path.join(daemon.root, "state"), doc


def test_unreachable_daemon_is_exit_3(tmp_path):
    import subprocess
    r = subprocess.run([SAGACTL, "--socket", str(tmp_path / "none.sock"), "ping"],
                       capture_output=True, text=True)
    assert r.returncode == 3
    assert "none.sock" in r.stderr


def test_sigterm_exits_zero_and_state_survives(daemon):
    daemon.add_example("hello.yaml")
    daemon.start()
    code, out = daemon.ctl_json("start", "hello", "--wait")
    assert code == 0
    assert daemon.stop() == 0
    assert not os.path.exists(daemon.socket) or daemon.ctl("ping").returncode == 3
    daemon.start()
    assert daemon.inspect(out["id"])["state"] == "completed"


def test_stale_socket_is_replaced_and_a_live_one_refused(daemon):
    daemon.add_example("hello.yaml")
    daemon.start()
    daemon.kill()
    assert os.path.exists(daemon.socket), "a killed sagad leaves its socket behind"
    daemon.start()
    assert daemon.ctl("ping").returncode == 0
    # A second sagad on the same socket refuses to start and names it.
    import subprocess
    from conftest import SAGAD, PLUGINS
    second = subprocess.run([SAGAD, "--workflows", daemon.workflows, "--plugins", PLUGINS,
                             "--state", daemon.state + "-2", "--socket", daemon.socket],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode != 0
    assert daemon.socket in second.stderr
    time.sleep(0.1)
    assert daemon.ctl("ping").returncode == 0

    # A file at the socket path that is not a socket is someone's: it is left alone.
    precious = os.path.join(daemon.root, "precious.txt")
    with open(precious, "w") as f:
        f.write("data")
    third = subprocess.run([SAGAD, "--workflows", daemon.workflows, "--plugins", PLUGINS,
                            "--state", daemon.state + "-3", "--socket", precious],
                           capture_output=True, text=True, timeout=60)
    assert third.returncode != 0
    assert f"{precious} exists and is not a socket" in third.stderr, third.stderr
    with open(precious) as f:
        assert f.read() == "data"

    # A socket that cannot be made is reported at once, before the journal is even opened.
    missing = os.path.join(daemon.root, "no-such-dir", "s.sock")
    fourth = subprocess.run([SAGAD, "--workflows", daemon.workflows, "--plugins", PLUGINS,
                             "--state", daemon.state + "-4", "--socket", missing],
                            capture_output=True, text=True, timeout=60)
    assert fourth.returncode != 0
    assert f"the directory of socket {missing} does not exist" in fourth.stderr, fourth.stderr
    assert not os.path.exists(os.path.join(daemon.state + "-4", "journal"))
    # A socket in the state directory is fine on a first start, which creates that directory.
    fifth_state = daemon.state + "-5"
    fifth = subprocess.Popen([SAGAD, "--workflows", daemon.workflows, "--plugins", PLUGINS,
                              "--state", fifth_state, "--socket", fifth_state + "/s.sock"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while not os.path.exists(fifth_state + "/s.sock") and time.time() < deadline:
            assert fifth.poll() is None, "sagad refused a socket in its new state directory"
            time.sleep(0.05)
        assert os.path.exists(fifth_state + "/s.sock")
    finally:
        fifth.terminate()
        fifth.wait(timeout=60)
