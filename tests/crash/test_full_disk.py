"""A full disk under the journal: sagad stops taking work, says why, keeps answering, and after
the disk has room again a restart carries on every instance whose start was acknowledged.

The state directory is a small tmpfs, filled up while instances run. Mounting needs root; the
test is skipped, saying so, where it cannot mount.
"""
import errno
import os
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from conftest import Daemon, Rpc  # noqa: E402

WORKFLOW = """
name: bulky
steps:
  - {name: a, uses: testing.echo, with: {blob: "${{ input.blob }}"}, compensate: {uses: testing.noop}}
  - {name: b, uses: testing.noop, compensate: {uses: testing.noop}}
  - {name: c, uses: testing.noop}
"""
BLOB = "x" * 4000  # every record of an instance carries it: the disk fills in a few hundred


def fill(path):
    """Writes until the disk has no byte left, in ever smaller pieces."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)


def test_full_disk_refuses_new_work_and_loses_nothing_acknowledged(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    d = Daemon(str(tmp_path), extra_args=["--min-free-mb", "4"])
    d.state = str(disk / "state")
    try:
        d.add_workflow("bulky.yaml", WORKFLOW)
        d.start()
        rpc = Rpc(d.socket)
        acknowledged = []
        for i in range(20):
            r = rpc.call("start", {"workflow": "bulky", "id": f"before-{i}",
                                   "input": {"blob": BLOB}, "wait": True})
            assert r["result"]["instance"]["state"] == "completed", r
            acknowledged.append(f"before-{i}")

        fill(str(disk / "filler"))

        refusal = None
        for i in range(20000):
            r = rpc.call("start", {"workflow": "bulky", "id": f"after-{i}",
                                   "input": {"blob": BLOB}})
            if "error" in r:
                refusal = r["error"]
                break
            acknowledged.append(f"after-{i}")
        assert refusal is not None, "every start was acknowledged on a full disk"
        assert "journal is unavailable" in refusal["message"], refusal

        # Still answering: reads work, and new work is refused with the same clear reason.
        assert "result" in rpc.call("ping", {})
        assert "result" in rpc.call("inspect", {"id": "before-0"})
        again = rpc.call("start", {"workflow": "bulky", "input": {"blob": BLOB}})
        assert "journal is unavailable" in again["error"]["message"], again
        assert d.proc.poll() is None, "sagad exited on a full disk"
        assert "journal write failed" in d.log()
        # And says so where operators and monitoring look.
        ping = d.ctl("ping")
        assert ping.returncode == 1 and "the journal has stopped" in ping.stderr, ping
        code, doc = d.ctl_json("ping")
        assert code == 1 and doc["journal"]["ok"] is False and doc["journal"]["error"], doc
        code, stats = d.ctl_json("stats")
        assert code == 0 and stats["journal"]["ok"] is False
        assert "saga_journal_up 0" in d.ctl("stats", "--prometheus").stdout

        # Room again, and a restart: every acknowledged start is carried to its end.
        os.remove(disk / "filler")
        d.kill()
        d.start()
        rpc = Rpc(d.socket)
        deadline = time.time() + 60
        pending = list(acknowledged)
        while pending and time.time() < deadline:
            r = rpc.call("inspect", {"id": pending[0]})
            assert "result" in r, f"acknowledged instance {pending[0]} is lost: {r}"
            if r["result"]["state"] == "completed":
                pending.pop(0)
            else:
                assert r["result"]["state"] == "running", r
                time.sleep(0.05)
        assert not pending, f"{len(pending)} acknowledged instances did not complete"
    finally:
        d.stop()
        subprocess.run(["umount", "-l", str(disk)])
