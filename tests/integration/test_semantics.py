"""DESIGN §3 and §4 through the real daemon: DAGs, retries, timeouts, cancel, halt and retry,
templates, secrets, versions and hot reload."""
import json
import os
import signal
import subprocess
import time

from conftest import events


def start(daemon, workflow, *args):
    r = daemon.ctl("start", workflow, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_independent_steps_overlap(daemon):
    daemon.add_workflow("fan.yaml", """
name: fan
steps:
  - {name: left, uses: testing.sleep, with: {ms: 500}, depends_on: []}
  - {name: right, uses: testing.sleep, with: {ms: 500}, depends_on: []}
  - {name: join, uses: testing.noop, depends_on: [left, right]}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "fan", "--wait")
    assert code == 0, out
    doc = daemon.inspect(out["id"], history=True)
    started = {e["step"]: e["at"] for e in events(doc, "step_started")}
    ended = {e["step"]: e["at"] for e in events(doc, "step_succeeded")}
    # Both sleeps started before either finished: they ran at the same time.
    assert started["right"] < ended["left"] and started["left"] < ended["right"]
    assert started["join"] >= max(ended["left"], ended["right"])


def test_backoff_is_durable_across_a_restart(daemon):
    daemon.add_workflow("flaky.yaml", """
name: flaky
steps:
  - name: call
    uses: testing.fail
    with: {times: 1}
    retry: {max_attempts: 3, initial_interval: 3s}
""")
    daemon.start()
    iid = start(daemon, "flaky")
    doc = daemon.wait_for(iid, lambda d: d["steps"][0].get("next_attempt_at"))
    assert doc["steps"][0]["state"] == "pending"
    assert doc["steps"][0]["error"]
    daemon.kill()
    daemon.start()
    doc = daemon.wait_for(iid, lambda d: d["state"] == "completed")
    doc = daemon.inspect(iid, history=True)
    failed = events(doc, "step_failed", "call")
    assert len(failed) == 1 and "retry_at" in failed[0]
    second = events(doc, "step_started", "call")[1]
    assert second["attempt"] == 2
    assert second["at"] >= failed[0]["retry_at"], "the restart must not shorten the backoff"


def test_halt_then_retry_resumes_at_the_failed_step(daemon):
    daemon.add_workflow("halting.yaml", """
name: halting
on_failure: halt
steps:
  - name: before
    uses: testing.noop
  - name: flaky
    uses: testing.fail
    with: {times: 2}
    retry: {max_attempts: 1}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "halting", "--wait")
    assert code == 1 and out["instance"]["state"] == "failed"
    iid = out["id"]
    r = daemon.ctl("retry", iid)
    assert r.returncode == 0, r.stderr
    daemon.wait_for(iid, lambda d: d["state"] == "failed" and d["steps"][1]["attempts"] == 2)
    r = daemon.ctl("retry", iid)
    assert r.returncode == 0, r.stderr
    doc = daemon.wait_for(iid, lambda d: d["state"] == "completed")
    assert doc["steps"][1]["attempts"] == 3
    doc = daemon.inspect(iid, history=True)
    assert len(events(doc, "step_started", "before")) == 1
    retried = events(doc, "instance_retried")
    assert len(retried) == 2 and retried[0]["uid"] == os.getuid()
    assert retried[0]["gid"] == os.getgid()
    started = events(doc, "instance_started")[0]
    assert (started["uid"], started["gid"]) == (os.getuid(), os.getgid())


def test_a_failure_without_a_message_says_so(daemon):
    daemon.add_workflow("mute.yaml", """
name: mute
on_failure: halt
steps:
  - name: mute
    uses: testing.fail
    with: {permanent: true, message: ""}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "mute", "--wait")
    assert code == 1 and out["instance"]["state"] == "failed"
    assert out["instance"]["steps"][0]["error"] == "the step type failed without a message"
    doc = daemon.inspect(out["id"], history=True)
    assert events(doc, "step_failed", "mute")[0]["error"] == \
        "the step type failed without a message"
    human = daemon.ctl("inspect", out["id"])
    assert "the step type failed without a message" in human.stdout
    # The log says the same, not a blank.
    assert f"{out['id']} mute attempt 1: the step type failed without a message\n" in daemon.log()


def test_a_step_error_is_cut_at_64_kib_between_characters_saying_how_much(daemon):
    # 80,001 bytes whose 65,537th is the middle of a character.
    message = "x" + "\u00e9" * 40000
    daemon.add_workflow("loud.yaml", f"""
name: loud
on_failure: halt
steps:
  - name: loud
    uses: testing.fail
    with: {{permanent: true, message: "{message}"}}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "loud", "--wait")
    assert code == 1 and out["instance"]["state"] == "failed"
    kept = "x" + "\u00e9" * 32767
    cut = len(message.encode()) - len(kept.encode())
    error = out["instance"]["steps"][0]["error"]
    assert error == kept + f" [error cut here: {cut} more bytes]"
    doc = daemon.inspect(out["id"], history=True)
    assert events(doc, "step_failed", "loud")[0]["error"] == error
    line = next(l for l in daemon.log().splitlines() if " loud attempt 1: " in l)
    assert line.endswith(" loud attempt 1: " + error)


def test_each_step_keeps_the_output_its_step_type_returned(daemon):
    daemon.add_workflow("outputs.yaml", """
name: outputs
steps:
  - name: nothing
    uses: testing.noop
  - name: empty
    uses: testing.echo
    with: {}
  - name: value
    uses: testing.echo
    with: {a: [1, {}], b: "{}", c: null}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "outputs", "--wait")
    assert code == 0
    expected = [{}, {}, {"a": [1, {}], "b": "{}", "c": None}]
    assert [s["output"] for s in out["instance"]["steps"]] == expected
    doc = daemon.inspect(out["id"], history=True)
    assert [e["output"] for e in doc["history"] if e["type"] == "step_succeeded"] == expected


def test_retry_from_a_step_with_new_input(daemon):
    daemon.add_workflow("redrive.yaml", """
name: redrive
on_failure: halt
steps:
  - name: one
    uses: testing.echo
    with: {v: "${{ input.v }}"}
  - name: two
    uses: testing.echo
    with: {v: "${{ input.v }}"}
  - name: three
    uses: testing.fail
    with: {times: 1}
    retry: {max_attempts: 1}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "redrive", "--input", '{"v": 1}', "--wait")
    assert code == 1 and out["instance"]["state"] == "failed"
    iid = out["id"]
    r = daemon.ctl("retry", iid, "--from", "two", "--input", '{"v": 2}')
    assert r.returncode == 0, r.stderr
    doc = daemon.wait_for(iid, lambda d: d["state"] == "completed")
    assert doc["input"] == {"v": 2}
    assert doc["steps"][0]["output"] == {"v": 1}
    assert doc["steps"][1]["output"] == {"v": 2}
    doc = daemon.inspect(iid, history=True)
    assert len(events(doc, "step_started", "one")) == 1
    assert len(events(doc, "step_succeeded", "two")) == 2
    assert events(doc, "instance_retried")[0]["step"] == "two"


def test_cancel_compensates_and_refusals_name_the_state(daemon):
    daemon.add_workflow("long.yaml", """
name: long
steps:
  - name: book
    uses: testing.echo
    with: {room: 12}
    compensate: {uses: testing.echo, with: {cancel: "${{ steps.book.output.room }}"}}
  - name: wait
    uses: testing.sleep
    with: {ms: 60000}
""")
    daemon.start()
    iid = start(daemon, "long")
    daemon.wait_for(iid, lambda d: d["steps"][1]["state"] == "running")
    r = daemon.ctl("cancel", iid, "--reason", "customer changed their mind")
    assert r.returncode == 0, r.stderr
    doc = daemon.wait_for(iid, lambda d: d["state"] == "compensated", timeout=20)
    assert doc["cause"] == "cancelled"
    assert doc["steps"][0]["state"] == "compensated"
    doc = daemon.inspect(iid, history=True)
    assert events(doc, "instance_compensating")[0]["reason"] == "customer changed their mind"
    r = daemon.ctl("cancel", iid)
    assert r.returncode == 1 and "compensated" in r.stderr
    r = daemon.ctl("retry", iid)
    assert r.returncode == 1 and "compensated" in r.stderr


def test_a_compensation_outlasting_the_cancel_grace_is_not_abandoned(daemon):
    # The grace period is for the attempts told to stop; the compensations that start once they
    # have stopped run for as long as they take.
    daemon.extra_args = ["--grace", "1s"]
    daemon.add_workflow("undo-slowly.yaml", """
name: undo-slowly
steps:
  - name: book
    uses: testing.noop
    compensate: {uses: testing.sleep, with: {ms: 2000}}
  - name: wait
    uses: testing.sleep
    with: {ms: 60000}
""")
    daemon.start()
    iid = start(daemon, "undo-slowly")
    daemon.wait_for(iid, lambda d: d["steps"][1]["state"] == "running")
    assert daemon.ctl("cancel", iid).returncode == 0
    doc = daemon.wait_for(iid, lambda d: d["state"] in ("compensated", "compensation_failed"),
                          timeout=20)
    assert doc["state"] == "compensated", doc
    assert doc["steps"][0]["compensation"]["state"] == "compensated"
    assert "abandoned" not in json.dumps(daemon.inspect(iid, history=True))


def test_instance_timeout_compensates_with_cause_timed_out(daemon):
    daemon.add_workflow("deadline.yaml", """
name: deadline
timeout: 1s
steps:
  - name: first
    uses: testing.noop
    compensate: {uses: testing.noop}
  - name: stuck
    uses: testing.sleep
    with: {ms: 30000}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "deadline", "--wait")
    assert code == 1
    assert out["instance"]["state"] == "compensated"
    assert out["instance"]["cause"] == "timed_out"
    assert out["instance"]["steps"][0]["state"] == "compensated"


def test_a_step_timeout_counts_from_when_a_worker_takes_the_attempt(daemon):
    daemon.extra_args = ["--workers", "1"]
    daemon.add_workflow("hog.yaml", """
name: hog
steps:
  - {name: hold, uses: testing.sleep, with: {ms: 1500}}
""")
    daemon.add_workflow("quick.yaml", """
name: quick
steps:
  - name: brief
    uses: testing.sleep
    with: {ms: 50}
    timeout: 500ms
    retry: {max_attempts: 1}
""")
    daemon.start()
    hog = start(daemon, "hog")
    daemon.wait_for(hog, lambda d: d["steps"][0]["state"] == "running")
    # The one worker is busy for 1.5s: the attempt waits three times its timeout, then runs.
    code, out = daemon.ctl_json("start", "quick", "--wait")
    assert code == 0, out
    assert out["instance"]["steps"][0]["attempts"] == 1


def test_attempt_timeout_is_a_transient_failure(daemon):
    daemon.add_workflow("slowstep.yaml", """
name: slowstep
steps:
  - name: nap
    uses: testing.sleep
    with: {ms: 5000}
    timeout: 200ms
    retry: {max_attempts: 2, initial_interval: 100ms}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "slowstep", "--wait")
    assert code == 1
    step = out["instance"]["steps"][0]
    assert out["instance"]["state"] == "failed"
    assert step["attempts"] == 2
    assert "timed out" in step["error"]


def test_the_next_attempt_waits_for_a_timed_out_one_to_stop(daemon, tmp_path):
    # Stops 0.15s after it is told to (exec kills it at 0.5s): the retry starts only once it has.
    script = tmp_path / "slow-to-stop.sh"
    log = tmp_path / "attempts.log"
    script.write_text(f"""#!/bin/bash
echo "begin $SAGA_ATTEMPT" >> {log}
trap 'sleep 0.15; echo "end $SAGA_ATTEMPT" >> {log}; exit 1' TERM
sleep 30 & wait
""")
    script.chmod(0o755)
    daemon.add_workflow("slow-to-stop.yaml", f"""
name: slow-to-stop
steps:
  - name: work
    uses: exec
    with: {{argv: ["{script}"]}}
    timeout: 1s
    retry: {{max_attempts: 2, initial_interval: 10ms}}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "slow-to-stop", "--wait")
    assert code == 1 and out["instance"]["state"] == "failed", out
    step = out["instance"]["steps"][0]
    assert step["attempts"] == 2
    assert step["error"] == "attempt timed out after 1s"
    assert log.read_text().split("\n")[:3] == ["begin 1", "end 1", "begin 2"], log.read_text()

    # An attempt that takes longer than --grace to stop is abandoned, and the step goes on.
    daemon.stop()
    daemon.extra_args = ["--grace", "50ms"]
    daemon.start()
    code, out = daemon.ctl_json("start", "slow-to-stop", "--wait")
    assert code == 1 and out["instance"]["state"] == "failed", out
    doc = daemon.inspect(out["id"], history=True)
    first = [e for e in events(doc, "step_failed", "work") if e["attempt"] == 1]
    assert first[0]["error"] == ("attempt timed out after 1s and did not stop within 50ms; "
                                 "abandoned")


def test_attempts_that_ignore_being_told_to_stop_do_not_use_up_the_workers(daemon):
    # One worker, held by an attempt that times out and never stops: it is abandoned after the
    # grace period and another worker takes its place, so the next step runs at once.
    daemon.add_workflow("hang.yaml", """
name: hang
steps:
  - name: stuck
    uses: testing.sleep
    with: {ms: 60000, ignore_cancel: true}
    timeout: 100ms
    retry: {max_attempts: 2, initial_interval: 10ms}
""")
    daemon.add_workflow("quick.yaml", """
name: quick
steps:
  - {name: nap, uses: testing.sleep, with: {ms: 1}}
""")
    daemon.extra_args = ["--workers", "1", "--grace", "100ms"]
    daemon.start()
    code, out = daemon.ctl_json("start", "hang", "--wait")
    assert code == 1 and out["instance"]["state"] == "failed", out
    assert out["instance"]["steps"][0]["attempts"] == 2
    # Both attempts still sleep, each on a worker of its own; the pool has its one free worker.
    from conftest import SAGACTL
    r = subprocess.run([SAGACTL, "--socket", daemon.socket, "start", "quick", "--wait"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert "ignores being told to stop; another worker takes its place (2 such attempts" in \
        daemon.log()


def test_cancelling_an_attempt_that_waits_for_a_worker_ends_it_at_once(daemon):
    daemon.add_workflow("nap.yaml", """
name: nap
steps:
  - name: a
    uses: testing.sleep
    with: {ms: "${{ input.ms }}"}
""")
    daemon.extra_args = ["--workers", "1", "--grace", "10s"]
    daemon.start()
    assert daemon.ctl("start", "nap", "--id", "busy", "--input", '{"ms": 8000}').returncode == 0
    daemon.wait_for("busy", lambda d: d["steps"][0]["state"] == "running")
    assert daemon.ctl("start", "nap", "--id", "queued", "--input", '{"ms": 1}').returncode == 0
    daemon.wait_for("queued", lambda d: d["steps"][0]["state"] == "running")
    began = time.time()
    assert daemon.ctl("cancel", "queued").returncode == 0
    doc = daemon.wait_for("queued", lambda d: d["state"] == "compensated")
    # Not after the grace period, nor once the worker is free: it never ran.
    assert time.time() - began < 3
    assert doc["steps"][0]["error"] == "cancelled before a worker took it up"
    assert daemon.inspect("busy")["state"] == "running"


def test_missing_template_path_fails_the_step_for_good(daemon):
    daemon.add_workflow("tmpl.yaml", """
name: tmpl
steps:
  - name: use
    uses: testing.echo
    with: {x: "${{ input.customer.id }}"}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "tmpl", "--input", '{"customer": {}}', "--wait")
    assert code == 1
    step = out["instance"]["steps"][0]
    assert step["state"] == "failed" and step["attempts"] == 1
    assert "input.customer.id" in step["error"]


def test_a_parameter_made_by_a_template_is_checked_against_its_type(daemon):
    daemon.add_workflow("typed.yaml", """
name: typed
steps:
  - name: nap
    uses: testing.sleep
    with: {ms: "${{ input.ms }}"}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "typed", "--input", '{"ms": "ten"}', "--wait")
    assert code == 1
    step = out["instance"]["steps"][0]
    assert step["state"] == "failed" and step["attempts"] == 1, step
    assert step["error"] == ('parameter "ms" of step nap (testing.sleep) must be an integer, '
                             'but its template rendered "ten"'), step
    # A whole number sent as 10.0 (as JSON encoders often write it) is an integer.
    for ms in ["10", "10.0"]:
        code, out = daemon.ctl_json("start", "typed", "--input", '{"ms": %s}' % ms, "--wait")
        assert code == 0 and out["instance"]["state"] == "completed", (ms, out)


def test_required_input_is_checked_at_start(daemon):
    daemon.add_workflow("needs.yaml", """
name: needs
input: {required: [order_id, amount]}
steps:
  - {name: a, uses: testing.noop}
""")
    daemon.start()
    r = daemon.ctl("start", "needs", "--input", '{"amount": 3}')
    assert r.returncode == 1
    assert "order_id" in r.stderr and "amount" not in r.stderr.split("order_id")[1]


def test_required_input_is_checked_at_retry_with_new_input(daemon):
    daemon.add_workflow("needs-later.yaml", """
name: needs-later
on_failure: halt
input: {required: [order_id]}
steps:
  - {name: a, uses: testing.fail, with: {times: 1}, retry: {max_attempts: 1}}
""")
    daemon.add_workflow("needs-running.yaml", """
name: needs-running
input: {required: [order_id]}
steps:
  - {name: a, uses: testing.sleep, with: {ms: 60000}}
""")
    daemon.start()
    # Another state is named as such, before any look at the input.
    running = start(daemon, "needs-running", "--input", '{"order_id": 1}')
    r = daemon.ctl("retry", running, "--input", "{}")
    assert r.returncode == 1 and "is running; retry applies to failed" in r.stderr, r.stderr
    code, out = daemon.ctl_json("start", "needs-later", "--input", '{"order_id": 7}', "--wait")
    assert code == 1 and out["instance"]["state"] == "failed"
    r = daemon.ctl("retry", out["id"], "--input", "{}")
    assert r.returncode == 1
    assert r.stderr.strip() == "sagactl: workflow needs-later needs input keys: order_id"
    assert daemon.inspect(out["id"])["input"] == {"order_id": 7}
    assert daemon.ctl("retry", out["id"], "--input", '{"order_id": 8}').returncode == 0
    doc = daemon.wait_for(out["id"], lambda d: d["state"] == "completed")
    assert doc["input"] == {"order_id": 8}


def test_secrets_are_rendered_but_never_journaled_or_logged(daemon, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "api_token").write_text("s3cr3t-VALUE-123\n")
    daemon.extra_args = ["--secrets", str(secrets)]
    daemon.add_workflow("secretive.yaml", """
name: secretive
steps:
  - name: call
    uses: testing.echo
    with: {auth: "Bearer ${{ secrets.api_token }}"}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "secretive", "--wait")
    assert code == 0, out
    assert out["instance"]["steps"][0]["output"]["auth"] == "Bearer ***"
    daemon.stop()
    for root, _, files in os.walk(daemon.state):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                assert b"s3cr3t-VALUE-123" not in f.read(), f"secret found in {name}"
    assert "s3cr3t-VALUE-123" not in daemon.log()


def test_secrets_stay_out_of_errors_escaped_outputs_and_plugin_logs(daemon, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "headers").write_text('{"Authorization": "Bearer sk-live-42"}')
    (secrets / "count").write_text("hunter2-count")
    (secrets / "tool").write_text("/bin/true")
    daemon.extra_args = ["--secrets", str(secrets), "--log-level", "debug"]
    daemon.add_workflow("leaky.yaml", """
name: leaky
on_failure: halt
steps:
  - name: quoted
    uses: testing.echo
    with: {h: "${{ secrets.headers }}"}
  - name: logged
    uses: exec
    with: {argv: ["${{ secrets.tool }}"]}
  - name: typed
    uses: testing.sleep
    with: {ms: "${{ secrets.count }}"}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "leaky", "--wait")
    assert code == 1 and out["instance"]["state"] == "failed", out
    steps = out["instance"]["steps"]
    # A secret with quotes reads escaped inside the JSON output: masked all the same.
    assert steps[0]["output"] == {"h": "***"}
    assert steps[2]["error"] == ('parameter "ms" of step typed (testing.sleep) must be an integer, '
                                 "but its template rendered a string (from a secret)")
    daemon.stop()
    for value in (b"sk-live-42", b"hunter2-count", b"/bin/true"):
        for root, _, files in os.walk(daemon.state):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    assert value not in f.read(), f"{value} found in {name}"
        assert value.decode() not in daemon.log()
    assert "started `***` as pid" in daemon.log()


GOOD_V1 = """
name: pinned
steps:
  - name: first
    uses: testing.sleep
    with: {ms: 1500}
  - name: second
    uses: testing.noop
"""

GOOD_V2 = """
name: pinned
steps:
  - name: only
    uses: testing.noop
"""


def test_versions_are_pinned_and_a_bad_file_keeps_the_last_good(daemon):
    daemon.add_workflow("pinned.yaml", GOOD_V1)
    daemon.start()
    code, listing = daemon.ctl_json("workflows")
    v1 = listing["workflows"][0]["version"]
    old = start(daemon, "pinned")
    daemon.wait_for(old, lambda d: d["steps"][0]["state"] == "running")

    daemon.add_workflow("pinned.yaml", "name: pinned\nsteps:\n  - name: x\n    uses: [\n")
    deadline = time.time() + 10
    while time.time() < deadline:
        code, listing = daemon.ctl_json("workflows")
        if listing["errors"]:
            break
        time.sleep(0.1)
    assert listing["errors"] and "pinned.yaml" in listing["errors"][0]["file"]
    assert ":" in listing["errors"][0]["error"]
    assert listing["workflows"][0]["version"] == v1, "the last good version keeps serving"

    daemon.add_workflow("pinned.yaml", GOOD_V2)
    deadline = time.time() + 10
    while time.time() < deadline:
        code, listing = daemon.ctl_json("workflows")
        if listing["workflows"] and listing["workflows"][0]["version"] != v1:
            break
        time.sleep(0.1)
    v2 = listing["workflows"][0]["version"]
    assert v2 != v1 and not listing["errors"]

    doc = daemon.wait_for(old, lambda d: d["state"] == "completed")
    assert doc["version"] == v1
    assert [s["name"] for s in doc["steps"]] == ["first", "second"]
    code, out = daemon.ctl_json("start", "pinned", "--wait")
    assert code == 0
    assert out["instance"]["version"] == v2
    assert [s["name"] for s in out["instance"]["steps"]] == ["only"]


def test_workflows_validate_without_a_daemon(tmp_path):
    from conftest import SAGACTL, PLUGINS
    good = tmp_path / "good.yaml"
    good.write_text("name: good\nsteps:\n  - {name: a, uses: testing.sleep, with: {ms: 5}}\n")
    cyclic = tmp_path / "cyclic.yaml"
    cyclic.write_text("name: cyclic\nsteps:\n  - {name: a, uses: testing.noop, depends_on: [b]}\n"
                      "  - {name: b, uses: testing.noop, depends_on: [a]}\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("name: unknown\nsteps:\n  - name: a\n    uses: testing.nope\n")
    nosock = ["--socket", str(tmp_path / "none.sock")]

    r = subprocess.run([SAGACTL, *nosock, "workflows", "validate", str(good)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    r = subprocess.run([SAGACTL, *nosock, "workflows", "validate", str(good), str(cyclic)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert f"{cyclic}:" in r.stderr and "a -> b -> a" in r.stderr or "b -> a -> b" in r.stderr
    # Without plugins an unknown step type cannot be told; with them it is an error.
    r = subprocess.run([SAGACTL, *nosock, "workflows", "validate", str(unknown)],
                       capture_output=True, text=True)
    assert r.returncode == 0
    r = subprocess.run([SAGACTL, *nosock, "workflows", "validate", str(unknown), "--plugins",
                        PLUGINS], capture_output=True, text=True)
    assert r.returncode == 1 and "testing.nope" in r.stderr and f"{unknown}:4:" in r.stderr


def test_workflows_validate_takes_a_directory_as_sagad_loads_it(tmp_path):
    from conftest import SAGACTL
    wf = tmp_path / "workflows"
    wf.mkdir()
    (wf / "a.yaml").write_text("name: one\nsteps:\n  - {name: a, uses: testing.noop}\n")
    (wf / "b.yml").write_text("name: two\nsteps:\n  - {name: a, uses: testing.noop}\n")
    (wf / "c.yaml").write_text("name: one\nsteps:\n  - {name: b, uses: testing.noop}\n")
    (wf / "notes.txt").write_text("not a workflow")
    os.mkfifo(wf / "pipe.yaml")  # skipped, as sagad skips it, instead of read forever
    os.symlink("nowhere.yaml", wf / "dangling.yaml")  # skipped too
    os.symlink("loop.yaml", wf / "loop.yaml")  # an error, as sagad reports it
    empty = tmp_path / "empty"
    empty.mkdir()
    nosock = ["--socket", str(tmp_path / "none.sock")]

    # A file named again, also by another path, is validated once.
    r = subprocess.run([SAGACTL, *nosock, "workflows", "validate", str(wf), str(wf / "a.yaml"),
                        os.path.join(str(wf), ".", "b.yml"), "--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr
    files = json.loads(r.stdout)["files"]
    assert [(f["file"], f["ok"]) for f in files] == [
        (str(wf / "a.yaml"), True), (str(wf / "b.yml"), True), (str(wf / "c.yaml"), False),
        (str(wf / "loop.yaml"), False)]
    assert "Too many levels of symbolic links" in files[3]["error"]
    assert files[2]["error"] == (f"{wf / 'c.yaml'}: workflow one is already defined in "
                                 f"{wf / 'a.yaml'}; rename one of them")

    r = subprocess.run([SAGACTL, *nosock, "workflows", "validate", str(empty)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip() == f"{empty}: holds no workflow files (*.yaml, *.yml) that can be read"


def test_reloads_log_what_changed_once(daemon):
    daemon.add_workflow("keep.yaml", "name: keep\nsteps:\n  - {name: a, uses: testing.noop}\n")
    daemon.add_workflow("gone.yaml", "name: gone\nsteps:\n  - {name: a, uses: testing.noop}\n")
    daemon.start()

    def settled(predicate):
        deadline = time.time() + 10
        while time.time() < deadline:
            if predicate(daemon.ctl_json("workflows")[1]):
                return
            time.sleep(0.1)
        raise AssertionError(daemon.log())

    daemon.add_workflow("broken.yaml",
                        "name: broken\nsteps:\n  - name: a\n    uses: testing.noop\n    bogus: 1\n"
                        "  - name: b\n    uses: testing.nope\n")
    settled(lambda doc: len(doc["errors"]) == 1)
    daemon.add_workflow("keep.yaml", "name: keep\nsteps:\n  - {name: b, uses: testing.noop}\n")
    deadline = time.time() + 10
    while time.time() < deadline and daemon.log().count("workflow keep version") < 2:
        time.sleep(0.1)
    assert daemon.log().count("workflow keep version") == 2, daemon.log()
    os.remove(os.path.join(daemon.workflows, "gone.yaml"))
    settled(lambda doc: "gone" not in [w["name"] for w in doc["workflows"]])
    time.sleep(0.5)

    lines = daemon.log().splitlines()
    # Each problem of the broken file is one log line, logged when the file broke and not again
    # at the later changes to other files.
    bogus = [l for l in lines if 'broken.yaml:5:5: unknown key "bogus"' in l]
    nope = [l for l in lines if 'broken.yaml:7:11: unknown step type "testing.nope"' in l]
    assert len(bogus) == 1 and len(nope) == 1, "\n".join(lines)
    assert " error " in bogus[0] and " error " in nope[0]
    gone = [l for l in lines if "workflow gone is no longer defined" in l]
    assert len(gone) == 1 and "gone.yaml" in gone[0], "\n".join(lines)

    # An operator's SIGHUP asks for everything again.
    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline and daemon.log().count('unknown key "bogus"') < 2:
        time.sleep(0.1)
    assert daemon.log().count('unknown key "bogus"') == 2


def test_retention_deletes_ended_instances(daemon):
    daemon.extra_args = ["--retention", "1s"]
    daemon.add_example("hello.yaml")
    daemon.start()
    code, out = daemon.ctl_json("start", "hello", "--wait")
    assert code == 0
    deadline = time.time() + 15
    while time.time() < deadline and daemon.ctl("inspect", out["id"]).returncode == 0:
        time.sleep(0.2)
    r = daemon.ctl("inspect", out["id"])
    assert r.returncode == 1 and "no instance" in r.stderr
    assert "retention: deleted 1" in daemon.log()


def test_a_second_sagad_on_the_same_state_names_the_holder(daemon):
    from conftest import SAGAD, PLUGINS
    daemon.add_example("hello.yaml")
    daemon.start()
    second = subprocess.run([SAGAD, "--workflows", daemon.workflows, "--plugins", PLUGINS,
                             "--state", daemon.state, "--socket", daemon.socket + "-2"],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode != 0
    assert f"pid {daemon.proc.pid}" in second.stderr and daemon.state in second.stderr
    assert daemon.ctl("ping").returncode == 0


def test_a_step_output_larger_than_32_mib_fails_the_step(daemon, tmp_path):
    # 40 copies of an input of 900 KiB: 35 MiB of output, which is not journaled.
    keys = ", ".join(f'k{i}: "${{{{ input.blob }}}}"' for i in range(40))
    daemon.add_workflow("huge.yaml", f"""
name: huge
steps:
  - name: a
    uses: testing.noop
    compensate: {{uses: testing.noop}}
  - name: b
    uses: testing.echo
    with: {{{keys}}}
""")
    daemon.start()
    blob = tmp_path / "blob.json"
    blob.write_text(json.dumps({"blob": "x" * (900 << 10)}))
    code, out = daemon.ctl_json("start", "huge", "--input-file", str(blob), "--wait")
    assert code == 1 and out["instance"]["state"] == "compensated", out["instance"]["state"]
    step = out["instance"]["steps"][1]
    assert step["state"] == "failed" and step["attempts"] == 1
    assert step["error"].startswith("the step type returned an output of 35.2 MiB, more than the "
                                    "32 MiB a step output may hold"), step["error"]

    # A compensation's output is not kept, so its size does not matter.
    daemon.add_workflow("undo-huge.yaml", f"""
name: undo-huge
steps:
  - name: a
    uses: testing.noop
    compensate: {{uses: testing.echo, with: {{{keys}}}}}
  - name: b
    uses: testing.fail
    with: {{permanent: true}}
    retry: {{max_attempts: 1}}
""")
    deadline = time.time() + 10
    while daemon.ctl("workflows", "show", "undo-huge").returncode != 0 and time.time() < deadline:
        time.sleep(0.1)
    code, out = daemon.ctl_json("start", "undo-huge", "--input-file", str(blob), "--wait")
    assert code == 1 and out["instance"]["state"] == "compensated", out["instance"]
    assert out["instance"]["steps"][0]["compensation"]["state"] == "compensated"


def test_a_required_parameter_whose_template_renders_null_fails_the_step(daemon):
    daemon.add_workflow("nap.yaml", """
name: nap
steps:
  - name: nap
    uses: testing.sleep
    with: {ms: "${{ input.ms }}"}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "nap", "--input", '{"ms": null}', "--wait")
    assert code == 1, out
    step = out["instance"]["steps"][0]
    assert step["state"] == "failed" and step["attempts"] == 1
    assert step["error"] == ('parameter "ms" of step nap (testing.sleep) is required, but its '
                             'template rendered null'), step["error"]
    code, out = daemon.ctl_json("start", "nap", "--input", '{"ms": 1}', "--wait")
    assert code == 0 and out["instance"]["state"] == "completed", out


def test_log_lines_stay_one_line_whatever_a_step_says(daemon):
    daemon.add_workflow("noisy.yaml", """
name: noisy
steps:
  - name: say
    uses: testing.fail
    with: {permanent: true, message: "${{ input.message }}"}
    retry: {max_attempts: 1}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "noisy", "--input",
                                json.dumps({"message": "first\nsecond\x01third\tend"}), "--wait")
    assert code == 1, out
    assert out["instance"]["steps"][0]["error"] == "first\nsecond\x01third\tend"
    logged = [l for l in daemon.log().splitlines() if "first" in l]
    assert logged and all("first\\nsecond\\x01third\\tend" in l for l in logged), logged
    assert not any(l.startswith("second") for l in daemon.log().splitlines())
