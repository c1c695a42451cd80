"""SIGKILL sagad at random moments under a mixed load; nothing acknowledged is lost or repeated.

For every start that sagactl acknowledged: the instance exists and reaches its terminal state;
no step has more than one `step_succeeded` event; a compensated instance undid each succeeded
step that has a compensation exactly once, in reverse order of completion.
"""
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from conftest import Daemon, daemon, events  # noqa: E402,F401  (the fixture is used by name)

WORKFLOWS = {
    "seq.yaml": """
name: seq
steps:
  - {name: a, uses: testing.noop, compensate: {uses: testing.noop}}
  - {name: b, uses: testing.sleep, with: {ms: 30}, compensate: {uses: testing.noop}}
  - {name: c, uses: testing.noop}
""",
    "flaky.yaml": """
name: flaky
steps:
  - {name: a, uses: testing.noop, compensate: {uses: testing.noop}}
  - name: b
    uses: testing.fail
    with: {times: 2}
    retry: {max_attempts: 5, initial_interval: 50ms}
    compensate: {uses: testing.noop}
""",
    "doomed.yaml": """
name: doomed
steps:
  - {name: a, uses: testing.echo, with: {x: 1}, compensate: {uses: testing.sleep, with: {ms: 20}}}
  - {name: b, uses: testing.noop, compensate: {uses: testing.noop}}
  - {name: c, uses: testing.fail, with: {permanent: true}}
""",
}
EXPECTED = {"seq": "completed", "flaky": "completed", "doomed": "compensated"}


def load(d, stop, acknowledged, round_no):
    n = 0
    while not stop.is_set():
        workflow = random.choice(list(EXPECTED))
        iid = f"r{round_no}-{n}-{workflow}"
        n += 1
        r = d.ctl("start", workflow, "--id", iid)
        if r.returncode == 0:
            acknowledged.append((iid, workflow))


def check_history(doc, workflow):
    assert doc["state"] == EXPECTED[workflow], doc
    succeeded = [e["step"] for e in events(doc, "step_succeeded")]
    assert len(succeeded) == len(set(succeeded)), f"a step succeeded twice: {succeeded}"
    if doc["state"] == "compensated":
        undone = [e["step"] for e in events(doc, "compensation_succeeded")]
        assert undone == list(reversed(succeeded)), (succeeded, undone)
    seqs = [e["seq"] for e in doc["history"]]
    assert seqs == list(range(1, len(seqs) + 1))


def test_random_kills_lose_and_repeat_nothing(daemon):
    random.seed(int(os.environ.get("SAGA_CRASH_SEED", time.time())))
    for name, text in WORKFLOWS.items():
        daemon.add_workflow(name, text)
    acknowledged = []
    rounds = int(os.environ.get("SAGA_CRASH_ROUNDS", "5"))
    for round_no in range(rounds):
        daemon.start()
        stop = threading.Event()
        clients = [threading.Thread(target=load, args=(daemon, stop, acknowledged, f"{round_no}{k}"))
                   for k in range(4)]
        for c in clients:
            c.start()
        time.sleep(random.uniform(0.3, 1.2))
        daemon.kill()
        stop.set()
        for c in clients:
            c.join()
    daemon.start()
    assert len(acknowledged) >= rounds, "the load started too few instances to prove anything"
    deadline = time.time() + 120
    for iid, workflow in acknowledged:
        doc = daemon.wait_for(iid, lambda d: d["state"] in ("completed", "compensated"),
                              timeout=max(1, deadline - time.time()))
        doc = daemon.inspect(iid, history=True)
        check_history(doc, workflow)
    assert daemon.stop() == 0
