"""sagactl against a real sagad: every command in both output modes, exit codes, list
pagination, watch (in order, ends with the instance, a stalled watcher is dropped without
slowing the daemon), stats against a known run, the Prometheus exposition, bash completion."""
import json
import math
import os
import re
import subprocess
import time

import pytest

from conftest import SAGACTL, SAGAD, SOURCE, Rpc

MIXED = """
name: mixed
steps:
  - name: reserve
    uses: testing.noop
    compensate: {uses: testing.noop}
  - name: charge
    uses: testing.fail
    with: {permanent: "${{ input.fail }}", message: "card declined"}
    retry: {max_attempts: 1}
"""

SLOW = """
name: slow
steps:
  - name: first
    uses: testing.sleep
    with: {ms: 1000}
  - name: second
    uses: testing.sleep
    with: {ms: 1000}
  - name: third
    uses: testing.noop
"""

BIG = """
name: big
steps:
  - name: a
    uses: testing.echo
    with: {blob: "${{ input.blob }}"}
  - name: b
    uses: testing.echo
    with: {blob: "${{ input.blob }}"}
  - name: c
    uses: testing.echo
    with: {blob: "${{ input.blob }}"}
"""

COMMANDS = ["ping", "start", "inspect", "list", "retry", "cancel", "watch", "workflows",
            "schedules", "plugins", "stats"]


def start_many(daemon, workflow, inputs):
    """Starts one instance per input on one connection and waits until all have settled;
    returns the results and the seconds it took."""
    rpc = Rpc(daemon.socket)
    began = time.monotonic()
    for inp in inputs:
        rpc.send("start", {"workflow": workflow, "input": inp, "wait": True})
    results = [rpc.read(timeout=120) for _ in inputs]
    took = time.monotonic() - began
    rpc.close()
    assert all(r and "result" in r for r in results), results[:3]
    return results, took


def test_help_of_every_command_has_an_example(daemon):
    for cmd in COMMANDS:
        r = subprocess.run([SAGACTL, cmd, "--help"], capture_output=True, text=True)
        assert r.returncode == 0, (cmd, r.stderr)
        assert "Examples:" in r.stdout and f"sagactl {cmd}" in r.stdout, (cmd, r.stdout)
    r = subprocess.run([SAGACTL, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "Exit codes" in r.stdout


def test_exit_codes(daemon):
    daemon.add_example("hello.yaml")
    daemon.start()
    r = daemon.ctl("frobnicate")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr == "sagactl: unknown command frobnicate; sagactl --help lists the commands\n"
    r = daemon.ctl("list", "--limit", "abc")
    assert r.returncode == 2 and r.stderr.startswith(
        "sagactl: --limit: must be a whole number from 1 to 1000, not abc;"), r.stderr
    # An empty --socket is a mistake, not "the default socket".
    r = subprocess.run([SAGACTL, "--socket", "", "ping"], capture_output=True, text=True)
    assert r.returncode == 2 and "--socket: needs a path" in r.stderr, r.stderr
    for args in [("--id", ""), ("--id", "x" * 129), ("--id", "a\nb"),
                 ("--input-file", daemon.workflows), ("--input-file", daemon.workflows + "/none")]:
        r = daemon.ctl("start", "hello", *args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, (args, r.stderr)
    assert "Is a directory" in daemon.ctl("start", "hello", "--input-file", daemon.workflows).stderr
    for args in [["--bogus"], ["--socket", "a", "--socket", "b"]]:
        r = subprocess.run([SAGAD, *args], capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, (args, r.stderr)
        assert r.stderr.startswith("sagad: ") and "sagad --help" in r.stderr
    assert daemon.ctl("list", "--limit", "0").returncode == 2
    assert daemon.ctl("list", "--state", "sleeping").returncode == 2
    assert daemon.ctl("start", "hello", "--input", "[1]").returncode == 2
    # JSON that does not parse says why, not that it is no object.
    r = daemon.ctl("start", "hello", "--input", '{"n": 1e400}')
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("sagactl: --input is not JSON: ") and "number overflow" in r.stderr
    # "-" is stdin.
    r = daemon.ctl("start", "hello", "--input-file", "-", "--wait", "--json",
                   input='{"name": "stdin"}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["instance"]["input"] == {"name": "stdin"}
    r = daemon.ctl("inspect", "no-such-id")
    assert r.returncode == 1 and "no instance no-such-id" in r.stderr
    code, doc = daemon.ctl_json("inspect", "no-such-id")
    assert code == 1 and "no instance" in doc["error"]["message"]
    assert daemon.ctl("watch", "no-such-id").returncode == 1
    assert daemon.ctl("retry", "no-such-id").returncode == 1
    r = subprocess.run([SAGACTL, "--socket", daemon.socket + ".nope", "ping"],
                       capture_output=True, text=True)
    assert r.returncode == 3 and "cannot reach sagad" in r.stderr
    r = subprocess.run([SAGACTL, "--socket", daemon.socket + ".nope", "watch"],
                       capture_output=True, text=True)
    assert r.returncode == 3


def test_every_command_in_both_output_modes(daemon):
    daemon.add_example("hello.yaml")
    daemon.add_workflow("mixed.yaml", MIXED)
    daemon.start()

    r = daemon.ctl("ping")
    assert r.returncode == 0 and re.match(r"sagad \S+ \(pid \d+\), up \S+, state in ", r.stdout)
    code, doc = daemon.ctl_json("ping")
    assert code == 0 and doc["state_dir"] == daemon.state

    r = daemon.ctl("start", "hello", "--id", "h-1", "--wait")
    assert r.returncode == 0 and r.stdout.startswith("h-1\n") and "completed" in r.stdout
    code, doc = daemon.ctl_json("start", "hello", "--id", "h-1")
    assert code == 0 and doc == {"id": "h-1", "existing": True}
    r = daemon.ctl("start", "mixed", "--id", "m-1", "--input", '{"fail": true}', "--wait")
    assert r.returncode == 1 and "ended compensated" in r.stderr

    r = daemon.ctl("inspect", "h-1")
    assert r.returncode == 0
    assert re.search(r"^state:\s+completed$", r.stdout, re.M)
    assert re.search(r"^created:\s+\S+Z \((now|\d+s ago)\)$", r.stdout, re.M)
    assert re.search(r"^STEP\s+STATE\s+ATTEMPTS\s+STARTED\s+TOOK", r.stdout, re.M)
    assert "\x1b[" not in r.stdout, "no colour when stdout is not a terminal"
    r = daemon.ctl("inspect", "m-1", "--history")
    assert r.returncode == 0 and "instance_compensated" in r.stdout and "card declined" in r.stdout
    doc = daemon.inspect("m-1", history=True)
    assert doc["state"] == "compensated" and doc["history"][-1]["type"] == "instance_compensated"

    r = daemon.ctl("list")
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and re.match(r"ID\s+WORKFLOW\s+STATE\s+CREATED\s+UPDATED$", lines[0])
    assert lines[1].startswith("m-1 ") and "compensated (step_failed)" in lines[1]
    assert lines[2].startswith("h-1 ")
    code, doc = daemon.ctl_json("list")
    assert [i["id"] for i in doc["instances"]] == ["m-1", "h-1"] and doc["next_cursor"] is None

    r = daemon.ctl("cancel", "h-1")
    assert r.returncode == 1 and "is completed" in r.stderr
    r = daemon.ctl("retry", "m-1", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["error"]["message"]

    r = daemon.ctl("workflows")
    assert r.returncode == 0 and re.search(r"^hello\s", r.stdout, re.M)
    code, doc = daemon.ctl_json("workflows")
    assert code == 0 and sorted(w["name"] for w in doc["workflows"]) == ["hello", "mixed"]
    r = daemon.ctl("workflows", "show", "mixed")
    # The file as written, to be saved back as it is.
    assert r.returncode == 0 and r.stdout == MIXED, r.stdout
    # A file with several problems: one line each.
    daemon.add_workflow("bad.yaml", "name: bad\nbogus: 1\nsteps:\n  - {name: a, uses: nope}\n")
    daemon.ctl("workflows")  # settle the watcher
    deadline = time.time() + 10
    while "bad.yaml" not in daemon.ctl("workflows").stdout and time.time() < deadline:
        time.sleep(0.05)
    r = daemon.ctl("workflows")
    errors = [l for l in r.stdout.splitlines() if "bad.yaml:" in l]
    assert len(errors) == 2 and "\\n" not in r.stdout, r.stdout

    r = daemon.ctl("plugins")
    assert r.returncode == 0 and "testing.noop" in r.stdout
    assert "    times (integer, default 0): fail this many attempts transiently" in r.stdout, r.stdout
    assert "    ms (integer, required): how long to sleep" in r.stdout, r.stdout
    code, doc = daemon.ctl_json("plugins")
    assert code == 0 and any(p["name"] == "testing" for p in doc["plugins"])

    r = daemon.ctl("stats")
    assert r.returncode == 0 and re.search(r"^mixed\s+1\s+0\s+1\s+0\s+0\.0%", r.stdout, re.M)
    code, doc = daemon.ctl_json("stats")
    assert code == 0 and doc["instances"]["completed"] == 1

    # Global options before or after the command.
    r = subprocess.run([SAGACTL, "--json", "--socket", daemon.socket, "inspect", "h-1"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["id"] == "h-1"


def test_ids_sagad_makes_up_are_short_and_sort_in_start_order(daemon):
    daemon.add_example("hello.yaml")
    daemon.start()
    ids = []
    for _ in range(6):
        code, doc = daemon.ctl_json("start", "hello")
        assert code == 0
        ids.append(doc["id"])
        time.sleep(0.002)  # a later millisecond
    assert all(re.fullmatch(r"[0-9a-v]{15}", i) for i in ids), ids
    assert sorted(ids) == ids and len(set(ids)) == len(ids)
    # The first nine digits are the creation time in milliseconds, in base 32.
    created = daemon.inspect(ids[0])["created_at"]
    ms = int(ids[0][:9], 32)
    assert time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000) \
        == created


def test_list_filters_and_cursor_pagination(daemon):
    daemon.add_workflow("mixed.yaml", MIXED)
    daemon.add_example("hello.yaml")
    daemon.start()
    start_many(daemon, "mixed", [{"fail": False}] * 5 + [{"fail": True}] * 2)
    start_many(daemon, "hello", [{}] * 3)

    seen, cursor, pages = [], None, 0
    while True:
        args = ["list", "--workflow", "mixed", "--limit", "2"] + (["--cursor", cursor] if cursor else [])
        code, doc = daemon.ctl_json(*args)
        assert code == 0
        pages += 1
        seen += doc["instances"]
        cursor = doc["next_cursor"]
        if cursor is None:
            break
    assert pages == 4 and len(seen) == 7 and len({i["id"] for i in seen}) == 7
    assert all(i["workflow"] == "mixed" for i in seen)
    created = [i["created_at"] for i in seen]
    assert created == sorted(created, reverse=True), "newest first"

    code, doc = daemon.ctl_json("list", "--state", "compensated")
    assert code == 0 and len(doc["instances"]) == 2
    code, doc = daemon.ctl_json("list", "--state", "completed", "--workflow", "hello")
    assert code == 0 and len(doc["instances"]) == 3

    r = daemon.ctl("list", "--workflow", "mixed", "--limit", "3")
    more = [l for l in r.stdout.splitlines() if l.startswith("more: ")]
    assert len(more) == 1 and "--workflow mixed --limit 3" in more[0]
    r2 = daemon.ctl(*more[0][len("more: sagactl "):].split())
    assert r2.returncode == 0 and len(r2.stdout.splitlines()) >= 4
    r = daemon.ctl("list", "--workflow", "nothing-here")
    assert r.returncode == 0 and r.stdout == "no instances\n"


def test_list_finds_a_rare_match_among_many_and_lists_large_instances(daemon):
    daemon.add_workflow("mixed.yaml", MIXED)
    daemon.add_workflow("big.yaml", BIG)
    daemon.add_workflow("quick.yaml", "name: quick\nsteps:\n  - {name: a, uses: testing.noop}\n")
    daemon.start()
    start_many(daemon, "mixed", [{"fail": True}])
    # More instances than one page reads: sagad ends its pages early, and sagactl goes on.
    rpc = Rpc(daemon.socket)
    for _ in range(10_050):
        rpc.send("start", {"workflow": "quick", "input": {}})
    assert all("result" in rpc.read(timeout=120) for _ in range(10_050))
    rpc.close()
    code, doc = daemon.ctl_json("list", "--state", "compensated")
    assert code == 0 and [i["workflow"] for i in doc["instances"]] == ["mixed"], doc
    assert doc["next_cursor"] is None
    r = daemon.ctl("list", "--workflow", "mixed")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2, r.stdout

    # Instances of 3 MiB each (input and three outputs): a page of 50 is far more than a reply
    # may wait for a client; the listing still comes, in pages that sagactl puts together.
    blob = os.path.join(daemon.root, "blob.json")
    with open(blob, "w") as f:
        json.dump({"blob": "x" * (768 << 10)}, f)
    for _ in range(8):
        r = daemon.ctl("start", "big", "--input-file", blob, "--wait")
        assert r.returncode == 0, r.stderr
    code, doc = daemon.ctl_json("list", "--workflow", "big")
    assert code == 0 and len(doc["instances"]) == 8, len(doc["instances"])
    r = daemon.ctl("list", "--limit", "20")
    assert r.returncode == 0 and r.stdout.count(" big ") == 8, r.stdout


PROGRESS = """
name: progress
steps:
  - {name: a, uses: testing.noop, compensate: {uses: testing.noop}}
  - {name: b, uses: testing.sleep, with: {ms: 600000}}
  - {name: c, uses: testing.noop}
"""


UNDOING = """
name: undoing
steps:
  - {name: a, uses: testing.echo, with: {n: 1}, compensate: {uses: testing.sleep, with: {ms: 600000}}}
  - {name: b, uses: testing.noop, compensate: {uses: testing.noop}}
  - {name: c, uses: testing.fail, with: {permanent: true}, retry: {max_attempts: 1}}
"""


def listed(daemon, *args):
    code, doc = daemon.ctl_json("list", *args)
    assert code == 0, doc
    return {i["id"]: i for i in doc["instances"]}


def step_states(instance):
    return [s["state"] for s in instance["steps"]]


def compensation_states(instance):
    return [s["compensation"]["state"] for s in instance["steps"]]


def test_list_shows_an_instance_as_it_is_now_also_after_a_crash(daemon):
    # The journal rewrites an instance's record when its state changes, not at every step: list
    # must still show the steps an instance has made since.
    daemon.add_workflow("progress.yaml", PROGRESS)
    daemon.start()
    assert daemon.ctl("start", "progress", "--id", "p-1").returncode == 0
    daemon.wait_for("p-1", lambda d: step_states(d)[1] == "running")
    now = listed(daemon, "--state", "running")["p-1"]
    assert step_states(now) == ["succeeded", "running", "pending"]
    assert now == {**daemon.inspect("p-1"), "updated_at": now["updated_at"]}

    daemon.kill()
    daemon.start()
    daemon.wait_for("p-1", lambda d: step_states(d)[1] == "running" and d["steps"][1]["attempts"] == 2)
    assert step_states(listed(daemon, "--workflow", "progress")["p-1"]) == ["succeeded", "running",
                                                                           "pending"]
    assert "p-1" not in listed(daemon, "--state", "compensated")

    assert daemon.ctl("cancel", "p-1").returncode == 0
    done = daemon.wait_for("p-1", lambda d: d["state"] == "compensated")
    assert listed(daemon, "--state", "compensated")["p-1"] == done
    assert "p-1" not in listed(daemon, "--state", "running")
    daemon.stop()
    daemon.start()
    assert listed(daemon)["p-1"] == done


def test_list_shows_a_compensating_instance_as_it_is_now_also_after_a_crash(daemon):
    # The record of an instance that has not settled is a header with its state: list filters on
    # it and shows the steps from the live instance.
    daemon.add_workflow("undoing.yaml", UNDOING)
    daemon.start()
    assert daemon.ctl("start", "undoing", "--id", "u-1").returncode == 0
    daemon.wait_for("u-1", lambda d: d["state"] == "compensating" and
                    compensation_states(d) == ["running", "compensated", "none"])
    now = listed(daemon, "--state", "compensating")["u-1"]
    assert now == {**daemon.inspect("u-1"), "updated_at": now["updated_at"]}
    assert now["steps"][0]["output"] == {"n": 1}
    assert "u-1" not in listed(daemon, "--state", "running")

    daemon.kill()
    daemon.start()
    daemon.wait_for("u-1", lambda d: d["steps"][0]["compensation"]["attempts"] == 2)
    again = listed(daemon, "--state", "compensating")["u-1"]
    assert compensation_states(again) == ["running", "compensated", "none"]
    assert step_states(again) == step_states(now)
    assert again["steps"][0]["output"] == {"n": 1}
    assert again["cause"] == now["cause"]


def watch_proc(daemon, *args):
    return subprocess.Popen([SAGACTL, "--socket", daemon.socket, "watch", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_watch_an_instance_streams_its_events_in_order_and_ends_with_it(daemon):
    daemon.add_workflow("slow.yaml", SLOW)
    daemon.add_workflow("mixed.yaml", MIXED)
    daemon.start()
    everything = watch_proc(daemon, "--json")
    only_mixed = watch_proc(daemon, "--workflow", "mixed", "--json")
    time.sleep(0.5)  # both subscribed

    assert daemon.ctl("start", "slow", "--id", "s-1").returncode == 0
    daemon.wait_for("s-1", lambda d: d["steps"][0]["state"] in ("running", "succeeded"))
    # Joins in the middle: gets the history so far, then the rest live, each once.
    w = watch_proc(daemon, "s-1", "--json")
    out, err = w.communicate(timeout=30)
    assert w.returncode == 0, err
    evs = [json.loads(l) for l in out.splitlines()]
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    assert evs[0]["type"] == "instance_started" and evs[-1]["type"] == "instance_completed"
    assert all(e["id"] == "s-1" and e["workflow"] == "slow" for e in evs)
    assert [e["step"] for e in evs if e["type"] == "step_succeeded"] == ["first", "second", "third"]
    history = daemon.inspect("s-1", history=True)["history"]
    assert len(evs) == len(history)
    for e, h in zip(evs, history):
        assert {k: v for k, v in e.items() if k != "id" and (k in h or k != "workflow")} == h

    # A settled instance: its history, then the exit code of its final state.
    r = daemon.ctl("start", "mixed", "--id", "m-1", "--input", '{"fail": true}', "--wait")
    assert r.returncode == 1
    r = daemon.ctl("watch", "m-1")
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert len(lines) == len(daemon.inspect("m-1", history=True)["history"])
    assert re.match(r"\d\d:\d\d:\d\d\.\d{3}Z  m-1  mixed  instance_started", lines[0])
    assert "instance_compensated" in lines[-1]

    time.sleep(0.5)
    everything.terminate()
    only_mixed.terminate()
    all_events = [json.loads(l) for l in everything.communicate(timeout=10)[0].splitlines()]
    mixed_events = [json.loads(l) for l in only_mixed.communicate(timeout=10)[0].splitlines()]
    for instance_id in ("s-1", "m-1"):
        seqs = [e["seq"] for e in all_events if e["id"] == instance_id]
        assert seqs == list(range(1, len(seqs) + 1)), (instance_id, seqs)
    assert {e["id"] for e in all_events} == {"s-1", "m-1"}
    assert {e["workflow"] for e in mixed_events} == {"mixed"}
    assert [e["seq"] for e in mixed_events] == list(range(1, len(mixed_events) + 1))


def test_watch_replays_a_large_history_whole(daemon, tmp_path):
    # Four outputs of 700 KB each: the replay queues far more than a live watcher may fall
    # behind by, and is no sign of a slow reader.
    daemon.add_workflow("big.yaml", """
name: big
steps:
""" + "".join(f"""  - {{name: e{i}, uses: testing.echo, with: {{data: "${{{{ input.data }}}}"}}}}
""" for i in range(4)))
    daemon.start()
    data = tmp_path / "in.json"
    data.write_text(json.dumps({"data": "x" * 700_000}))
    r = daemon.ctl("start", "big", "--id", "b1", "--input-file", str(data), "--wait")
    assert r.returncode == 0, r.stderr
    r = daemon.ctl("watch", "b1", "--json")
    assert r.returncode == 0, r.stderr
    evs = [json.loads(line) for line in r.stdout.splitlines()]
    assert evs[-1]["type"] == "instance_completed"
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))


def test_a_stalled_watcher_does_not_slow_the_daemon_and_is_dropped(daemon):
    daemon.add_workflow("big.yaml", BIG)
    daemon.start()
    blob = "x" * 20000
    n = 60  # 60 instances x 4 events of ~20 KB: well past the 1 MiB a watcher may fall behind
    _, baseline = start_many(daemon, "big", [{"blob": blob}] * n)

    stalled = Rpc(daemon.socket, rcvbuf=4096)
    stalled.send("watch", {})  # and never read
    time.sleep(0.2)
    pings = []

    def ping_while_loaded():
        began = time.monotonic()
        assert daemon.ctl("ping").returncode == 0
        pings.append(time.monotonic() - began)

    rpc = Rpc(daemon.socket)
    began = time.monotonic()
    for _ in range(n):
        rpc.send("start", {"workflow": "big", "input": {"blob": blob}, "wait": True})
    ping_while_loaded()
    results = [rpc.read(timeout=120) for _ in range(n)]
    loaded = time.monotonic() - began
    ping_while_loaded()
    assert all(r and r["result"]["instance"]["state"] == "completed" for r in results)
    assert loaded < baseline * 4 + 3, (loaded, baseline)
    assert max(pings) < 5, pings

    code, stats = daemon.ctl_json("stats")
    assert stats["watchers"]["dropped"] == 1, stats["watchers"]
    assert "dropped a watcher" in daemon.log()

    # What was queued, then the notice that says why, then the end of the connection.
    last = None
    while True:
        m = stalled.read(timeout=15)
        if m is None:
            break
        last = m
    assert last["method"] == "watch.dropped" and "fell behind" in last["params"]["reason"]
    stalled.close()


def test_stats_match_a_known_run(daemon):
    daemon.add_workflow("mixed.yaml", MIXED)
    daemon.start()
    start_many(daemon, "mixed", [{"fail": False}] * 3 + [{"fail": True}] * 2)
    code, s = daemon.ctl_json("stats")
    assert code == 0
    assert s["instances"]["completed"] == 3 and s["instances"]["compensated"] == 2
    assert s["instances"]["running"] == 0 and s["instances"]["failed"] == 0
    (w,) = s["workflows"]
    assert (w["name"], w["started"], w["completed"], w["compensated"], w["failed"]) == \
        ("mixed", 5, 3, 2, 0)
    assert w["success_rate"] == pytest.approx(0.6)
    d = w["duration_ms"]
    assert d["count"] == 5 and 0 <= d["p50"] <= d["p90"] <= d["p99"] <= d["sum"]
    assert s["compensations"] == 2, "one reserve undone per compensated instance"
    assert s["retries"] == 0
    j = s["journal"]
    # One instance write per transition: 3 for each completed instance (start, reserve done,
    # charge done), 4 for each compensated one. Commits group them, and the workflow's
    # definition and its file's version may each have had a commit of their own when it loaded.
    assert j["writes"] == 3 * 3 + 2 * 4
    assert 1 <= j["commits"] <= j["writes"] + 2
    assert j["avg_batch"] == pytest.approx(j["writes"] / j["commits"])
    assert 0 <= j["commit_ms"]["p50"] <= j["commit_ms"]["p90"] <= j["commit_ms"]["p99"]
    assert s["uptime_s"] >= 0

    r = daemon.ctl("stats")
    assert re.search(r"^mixed\s+5\s+3\s+2\s+0\s+60\.0%", r.stdout, re.M), r.stdout
    assert "compensations run: 2" in r.stdout

    r = daemon.ctl("stats", "--prometheus")
    assert r.returncode == 0
    samples = parse_exposition(r.stdout)
    assert samples[("saga_instances_settled_total",
                    (("state", "completed"), ("workflow", "mixed")))] == 3
    assert samples[("saga_instances_settled_total",
                    (("state", "compensated"), ("workflow", "mixed")))] == 2
    assert samples[("saga_workflow_success_ratio", (("workflow", "mixed"),))] == pytest.approx(0.6)
    assert samples[("saga_instance_duration_seconds_count", (("workflow", "mixed"),))] == 5
    assert samples[("saga_compensations_total", ())] == 2
    assert samples[("saga_journal_commits_total", ())] == j["commits"] or \
        samples[("saga_journal_commits_total", ())] >= j["commits"]


def test_stats_of_a_workflow_with_nothing_settled_show_no_rate(daemon):
    daemon.add_workflow("slow.yaml", """
name: slow
steps:
  - {name: a, uses: testing.sleep, with: {ms: 600000}}
""")
    daemon.start()
    r = daemon.ctl("start", "slow")
    assert r.returncode == 0, r.stderr
    code, s = daemon.ctl_json("stats")
    (w,) = s["workflows"]
    assert w["started"] == 1 and w["success_rate"] is None
    r = daemon.ctl("stats")
    # Not "0.0%", which reads as "every one failed".
    assert re.search(r"^slow\s+1\s+0\s+0\s+0\s+-\s+-\s+-\s+-\s*$", r.stdout, re.M), r.stdout
    samples = parse_exposition(daemon.ctl("stats", "--prometheus").stdout)
    assert ("saga_workflow_success_ratio", (("workflow", "slow"),)) not in samples
    assert samples[("saga_instance_duration_seconds_count", (("workflow", "slow"),))] == 0
    assert math.isnan(samples[("saga_instance_duration_seconds",
                               (("quantile", "0.5"), ("workflow", "slow")))])


def test_text_from_steps_reaches_the_terminal_escaped(daemon):
    # A step's error holds what its program wrote: escape sequences and line breaks in it must
    # not drive the operator's terminal or break the tables.
    daemon.add_workflow("esc.yaml", r"""
name: esc
on_failure: halt
steps:
  - name: e
    uses: exec
    with: {argv: [/bin/sh, -c, 'printf "bad\033[2J\033[31mthing\nsecond line\n" >&2; exit 1']}
    retry: {max_attempts: 1}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "esc", "--wait")
    assert code == 1 and out["instance"]["state"] == "failed", out
    assert "\x1b" in out["instance"]["steps"][0]["error"]  # kept as it was in the JSON
    iid = out["id"]
    r = daemon.ctl("cancel", iid, "--reason", "x\n\x1b[31mRED")
    assert r.returncode == 0, r.stderr
    for args in (["inspect", iid], ["inspect", iid, "--history"], ["list"]):
        r = daemon.ctl(*args)
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout and "\x1b" not in r.stderr, args
    r = daemon.ctl("inspect", iid, "--history")
    assert "bad\\x1b[2J\\x1b[31mthing\\nsecond line" in r.stdout, r.stdout
    assert "x\\n\\x1b[31mRED" in r.stdout, r.stdout


NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def parse_exposition(text):
    """A strict reader of the Prometheus text format (0.0.4) as sagactl writes it: every family
    has # HELP then # TYPE before its samples, once; names and labels are valid; values are
    numbers (NaN only for a quantile of no observations); counters end in _total; summaries have
    quantile samples, _sum and _count."""
    assert text.endswith("\n")
    helped, typed, samples = set(), {}, {}
    current = None
    for line in text.splitlines():
        assert line.strip() == line and line, repr(line)
        if line.startswith("# HELP "):
            name, help_text = line[7:].split(" ", 1)
            assert NAME.match(name) and help_text and name not in helped, line
            helped.add(name)
            current = None
            continue
        if line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert name in helped and name not in typed, line
            assert kind in ("counter", "gauge", "summary", "histogram", "untyped"), line
            assert name.startswith("saga_"), line
            if kind == "counter":
                assert name.endswith("_total"), line
            typed[name] = kind
            current = name
            continue
        assert not line.startswith("#"), line
        m = SAMPLE.match(line)
        assert m, line
        name, labels_text, value = m.groups()
        assert current is not None, f"sample before its # TYPE: {line}"
        allowed = {current} | ({current + "_sum", current + "_count"}
                               if typed[current] == "summary" else set())
        assert name in allowed, line
        labels = ()
        if labels_text:
            body = labels_text[1:-1]
            pairs = LABEL.findall(body)
            assert ",".join(f'{k}="{v}"' for k, v in pairs) == body, line
            labels = tuple(sorted(pairs))
            assert len({k for k, _ in pairs}) == len(pairs), line
            if name == current and typed[current] == "summary":
                assert "quantile" in dict(pairs), line
        v = float(value)
        # NaN only for a summary's quantile, where it means no observations yet.
        assert not math.isnan(v) or (name == current and typed[current] == "summary"), line
        assert (name, labels) not in samples, f"duplicate sample {line}"
        samples[(name, labels)] = v
    assert set(helped) == set(typed)
    return samples


def test_prometheus_exposition_parses_with_an_empty_daemon(daemon):
    daemon.start()
    r = daemon.ctl("stats", "--prometheus")
    assert r.returncode == 0
    samples = parse_exposition(r.stdout)
    assert ("saga_uptime_seconds", ()) in samples
    assert samples[("saga_instances", (("state", "running"),))] == 0


def complete(words, env=None):
    """Runs the bash completion for `words` (the last one is completed); returns COMPREPLY."""
    script = os.path.join(SOURCE, "ctl", "sagactl.bash")
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    r = subprocess.run(
        ["bash", "-c", f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; "
                       "_sagactl; printf '%s\\n' \"${COMPREPLY[@]}\""],
        capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return sorted(l for l in r.stdout.splitlines() if l)


def test_bash_completion(daemon):
    daemon.add_example("hello.yaml")
    daemon.add_workflow("mixed.yaml", MIXED)
    daemon.start()
    assert daemon.ctl("start", "hello", "--id", "h-1", "--wait").returncode == 0
    ctl = [SAGACTL, "--socket", daemon.socket]
    assert complete([SAGACTL, "st"]) == ["start", "stats"]
    assert complete([SAGACTL, "w"]) == ["watch", "workflows"]
    assert complete([SAGACTL, "list", "--st"]) == ["--state"]
    assert complete([SAGACTL, "list", "--state", "compensat"]) == [
        "compensated", "compensating", "compensation_failed"]
    assert complete([SAGACTL, "stats", "--p"]) == ["--prometheus"]
    assert complete([SAGACTL, "workflows", ""]) == ["list", "show", "validate"]
    assert complete([SAGACTL, "schedules", ""]) == ["list", "pause", "resume"]
    assert complete(ctl + ["schedules", "pause", "h"]) == ["hello"]
    assert complete(ctl + ["schedules", "list", ""]) == []
    assert complete(ctl + ["start", ""]) == ["hello", "mixed"]
    assert complete(ctl + ["workflows", "show", "m"]) == ["mixed"]
    assert complete(ctl + ["list", "--workflow", "h"]) == ["hello"]
    assert complete(ctl + ["inspect", ""]) == ["h-1"]
    assert complete(ctl + ["watch", "h"]) == ["h-1"]
    assert complete(ctl + ["inspect", "h-1", ""]) == []
    # SAGA_SOCKET works too, and a daemon that does not answer completes nothing.
    assert complete([SAGACTL, "cancel", ""], env=dict(os.environ, SAGA_SOCKET=daemon.socket)) == ["h-1"]
    assert complete([SAGACTL, "--socket", "/nonexistent", "inspect", ""]) == []


def run_on_a_terminal(args, env):
    """Runs sagactl with stdout on a pseudo-terminal; returns what it wrote there."""
    import pty
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen(args, stdout=slave, stderr=subprocess.PIPE, env=env)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        p.wait(timeout=30)
        return out.decode()
    finally:
        os.close(master)


def test_colour_only_on_a_terminal_and_never_with_no_color(daemon):
    daemon.add_example("hello.yaml")
    daemon.start()
    assert daemon.ctl("start", "hello", "--id", "h-1", "--wait").returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm"
    args = [SAGACTL, "--socket", daemon.socket, "list"]
    coloured = run_on_a_terminal(args, env)
    assert "\x1b[32mcompleted\x1b[0m" in coloured
    assert "\x1b[" not in run_on_a_terminal(args, dict(env, NO_COLOR="1"))
    assert "\x1b[" not in daemon.ctl("list").stdout


def test_a_watcher_is_told_when_sagad_shuts_down(daemon):
    daemon.start()
    w = watch_proc(daemon)
    time.sleep(0.5)
    daemon.stop()
    out, err = w.communicate(timeout=30)
    # The notice is best effort (the socket closes right after); without it the lost
    # connection is exit 3.
    assert (w.returncode, "shutting down" in err) in ((1, True), (3, False)), (w.returncode, err)


def test_a_client_that_hangs_up_with_replies_unread_does_not_take_sagad_down(daemon):
    daemon.add_workflow("big.yaml", BIG)
    daemon.start()
    stalled = [Rpc(daemon.socket, rcvbuf=4096) for _ in range(2)]
    for s in stalled:
        s.send("watch", {})
    start_many(daemon, "big", [{"blob": "x" * 30000}] * 40)
    for s in stalled:
        s.close()  # with a megabyte still queued for each
    results, _ = start_many(daemon, "big", [{"blob": "y"}] * 5)
    assert daemon.proc.poll() is None, daemon.log()
    assert daemon.ctl("ping").returncode == 0


def test_params_of_any_wrong_type_get_an_error_and_sagad_keeps_serving(daemon):
    daemon.add_example("hello.yaml")
    daemon.start()
    rpc = Rpc(daemon.socket)
    done = rpc.call("start", {"workflow": "hello", "wait": True})["result"]["id"]
    good = {
        "ping": {},
        "start": {"workflow": "hello", "id": "typed", "input": {}, "wait": False},
        "inspect": {"id": done, "history": True},
        "list": {"state": "completed", "workflow": "hello", "limit": 5, "cursor": None},
        "retry": {"id": done, "from": "greet", "input": {}},
        "cancel": {"id": done, "reason": "typed"},
        "watch": {"id": done, "workflow": "hello"},
        "workflows.list": {},
        "workflows.show": {"name": "hello"},
        "schedules.list": {},
        "schedules.pause": {"workflow": "hello"},
        "schedules.resume": {"workflow": "hello"},
        "plugins.list": {},
        "stats": {},
    }
    wrong = [0, -1, 1.5, 2**63, "", "x", True, False, None, [], [1], {}, {"a": 1}]
    answered = 0
    for method, params in good.items():
        for key in params:
            for value in wrong:
                # One connection per call: a watch goes on streaming after its answer.
                conn = Rpc(daemon.socket)
                answer = conn.call(method, {**params, key: value})
                conn.close()
                assert "result" in answer or "error" in answer, (method, key, value, answer)
                if "error" in answer:
                    message = answer["error"]["message"]
                    assert message and "\n" not in message, (method, key, value, answer)
                    # Checked, not caught: an internal error means a handler threw.
                    assert answer["error"]["code"] != -32603, (method, key, value, answer)
                answered += 1
    assert answered > 200
    assert daemon.proc.poll() is None, daemon.log()
    assert rpc.call("ping", {})["result"]["version"]
    assert daemon.ctl("inspect", done).returncode == 0


DEEP_OUTPUT = """
name: deep-output
steps:
  - name: nested
    uses: testing.echo
    with: {v: %s}
    retry: {max_attempts: 1}
""" % ("[" * 300 + "1" + "]" * 300)


def test_json_nested_too_deeply_is_refused_and_sagad_keeps_serving(daemon):
    daemon.add_example("hello.yaml")
    daemon.add_workflow("deep-output.yaml", DEEP_OUTPUT)
    daemon.start()
    rpc = Rpc(daemon.socket)
    # A request nested 200,000 levels deep: refused before it is parsed, the connection stays.
    deep = "[" * 200_000 + "]" * 200_000
    rpc.sock.sendall(('{"jsonrpc":"2.0","id":1,"method":"start","params":{"workflow":"hello",'
                      '"input":{"a":%s}}}\n' % deep).encode())
    answer = rpc.read()
    assert answer["error"]["code"] == -32600, answer
    assert "nests arrays and objects more than 256 levels deep" in answer["error"]["message"]
    # At the limit it is taken, and the instance keeps its input.
    within = json.loads("[" * 250 + "]" * 250)
    done = rpc.call("start", {"workflow": "hello", "input": {"a": within}, "wait": True})
    assert done["result"]["instance"]["state"] == "completed", done
    assert done["result"]["instance"]["input"] == {"a": within}
    # A step type whose output nests too deeply: the attempt fails with a reason, sagad goes on.
    ended = rpc.call("start", {"workflow": "deep-output", "wait": True})["result"]["instance"]
    assert ended["state"] == "failed", ended
    assert "nests more than 256 levels deep" in ended["steps"][0]["error"], ended
    # sagactl says so itself, as a usage error.
    r = daemon.ctl("start", "hello", "--input", '{"a": %s}' % ("[" * 50_000 + "]" * 50_000))
    assert r.returncode == 2
    assert "--input nests arrays and objects more than 254 levels deep" in r.stderr
    assert rpc.call("ping", {})["result"]["version"]
    assert daemon.proc.poll() is None


def test_bytes_that_are_not_text_get_errors_and_sagad_keeps_serving(daemon, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "binary").write_bytes(b"pa\xffss")
    daemon.extra_args = ["--secrets", str(secrets)]
    daemon.add_example("hello.yaml")
    daemon.add_workflow("binary-secret.yaml", """
name: binary-secret
steps:
  - name: call
    uses: testing.echo
    with: {auth: "${{ secrets.binary }}"}
""")
    with open(os.path.join(daemon.workflows, "latin1.yaml"), "wb") as f:
        f.write(b'name: latin1\ndescription: "caf\xe9"\nsteps:\n  - {name: s, uses: testing.noop}\n')
    with open(os.path.join(os.fsencode(daemon.workflows), b"f\xff.yaml"), "wb") as f:
        f.write(b"name: [\n")
    daemon.start()
    rpc = Rpc(daemon.socket)
    # Ids: NUL cannot be journaled, other control characters would break logs and tables.
    for bad in ["a\u0000b", "a\nb", "tab\there", "\u007f"]:
        answer = rpc.call("start", {"workflow": "hello", "id": bad})
        assert answer["error"]["code"] == -32602, answer
        assert "must not contain control characters" in answer["error"]["message"]
    # A secret that is not UTF-8 fails its step for good, with the reason.
    ended = rpc.call("start", {"workflow": "binary-secret", "wait": True})["result"]["instance"]
    assert ended["steps"][0]["state"] == "failed" and ended["steps"][0]["attempts"] == 1, ended
    assert "a secret they use holds other bytes" in ended["steps"][0]["error"], ended
    # A file that is not UTF-8 is refused where the byte is; one whose name is not UTF-8 is
    # listed with its error all the same.
    code, doc = daemon.ctl_json("workflows")
    assert code == 0, doc
    errors = {e["file"].rsplit("/", 1)[1]: e["error"] for e in doc["errors"]}
    assert "latin1.yaml:2:18: this is not UTF-8 text" in errors["latin1.yaml"], errors
    assert "f\ufffd.yaml" in errors, errors
    # Nothing of it stopped the journal or the daemon.
    done = rpc.call("start", {"workflow": "hello", "id": "after-bad-bytes", "wait": True})
    assert done["result"]["instance"]["state"] == "completed", done
    assert daemon.proc.poll() is None


def test_a_second_watch_on_a_connection_replaces_the_first(daemon):
    daemon.add_example("hello.yaml")
    daemon.start()
    watcher = Rpc(daemon.socket)
    assert "result" in watcher.call("watch", {"workflow": "hello"})
    assert "result" in watcher.call("watch", {})  # every workflow now, once
    iid = Rpc(daemon.socket).call("start", {"workflow": "hello", "wait": True})["result"]["id"]
    seqs = []
    while True:
        message = watcher.read(timeout=10)
        assert message and message["method"] == "event", message
        event = message["params"]
        if event["id"] == iid:
            seqs.append(event["seq"])
            if event["type"] == "instance_completed":
                break
    assert seqs == sorted(set(seqs)), seqs


def test_start_wait_shows_times_relative_to_when_it_prints(daemon):
    daemon.add_workflow("nap.yaml", "name: nap\nsteps:\n  - {name: a, uses: testing.sleep, with: {ms: 2500}}\n")
    daemon.start()
    r = daemon.ctl("start", "nap", "--wait")
    assert r.returncode == 0, r.stderr
    updated = [l for l in r.stdout.splitlines() if l.startswith("updated:")]
    assert updated and updated[0].endswith("(now)"), r.stdout
    assert "(in " not in r.stdout, r.stdout


def test_protocol_errors_get_their_codes_and_only_an_oversized_request_closes(daemon):
    daemon.start()
    rpc = Rpc(daemon.socket)
    try:
        # Not JSON: a parse error, and the connection goes on.
        rpc.sock.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": \n')
        answer = rpc.read()
        assert answer["error"]["code"] == -32700 and answer["id"] is None, answer
        # An unknown method.
        answer = rpc.call("no.such.method", {})
        assert answer["error"]["code"] == -32601, answer
        assert answer["id"] == rpc.next_id - 1
        assert rpc.call("ping", {})["result"]["version"]
        # A request over 1 MiB: refused, then the connection is closed.
        try:
            rpc.sock.sendall(b'{"jsonrpc":"2.0","id":9,"method":"ping","params":{"pad":"' +
                             b"x" * (1 << 20) + b'"}}\n')
        except (BrokenPipeError, ConnectionResetError):
            pass  # sagad may close before it has taken all of it
        answer = rpc.read()
        assert answer["error"]["code"] == -32600, answer
        assert "larger than 1 MiB" in answer["error"]["message"]
        assert rpc.read(timeout=10) is None, "the connection stays open"
    finally:
        rpc.close()
    assert daemon.ctl("ping").returncode == 0
