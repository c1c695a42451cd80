"""Plugin files as sagad loads them: a private copy of each, so that a file overwritten in place
changes nothing that runs, and the files it could not load, listed with the reason."""
import os
import shutil
import signal
import time

from conftest import BUILD

FIXTURES = os.path.join(BUILD, "tests", "fixtures")

REPORT = """
name: report
steps:
  - name: only
    uses: context.report
"""


def fixture(name):
    return os.path.join(FIXTURES, name + ".so")


def overwrite_in_place(target, data):
    """Writes into the same inode, as `cp new.so target` does."""
    inode = os.stat(target).st_ino
    with open(target, "r+b") as f:
        f.truncate(0)
        f.write(data)
    assert os.stat(target).st_ino == inode


def read(path):
    with open(path, "rb") as f:
        return f.read()


def run_report(daemon):
    code, out = daemon.ctl_json("start", "report", "--wait")
    assert daemon.proc.poll() is None, f"sagad died:\n{daemon.log()}"
    assert code == 0, out
    step = out["instance"]["steps"][0]
    assert step["state"] == "succeeded", step
    # What only context.report's code outputs.
    assert step["output"]["idempotency_key"] == f"{out['id']}/only"
    assert step["output"]["step"] == "only"


def wait_for_plugins(daemon, predicate, timeout=30):
    deadline = time.time() + timeout
    listing = None
    while time.time() < deadline:
        code, listing = daemon.ctl_json("plugins")
        if code == 0 and predicate(listing):
            return listing
        time.sleep(0.05)
    raise AssertionError(f"plugins.list never matched; last: {listing}\n{daemon.log()}")


def test_a_plugin_overwritten_in_place_keeps_running_the_code_loaded(daemon, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    mine = plugins / "mine.so"
    shutil.copy(fixture("context_plugin"), mine)
    daemon.extra_args = ["--plugins", str(plugins)]
    daemon.add_workflow("report.yaml", REPORT)
    daemon.start()
    run_report(daemon)

    # Another plugin's build copied over it, then bytes that are no shared object at all.
    overwrite_in_place(mine, read(fixture("newer_minor_plugin")))
    run_report(daemon)
    overwrite_in_place(mine, b"garbage, and much shorter than the library")
    run_report(daemon)

    # It is still listed under its own file name, and a reload leaves it as it is.
    daemon.proc.send_signal(signal.SIGHUP)
    code, listing = daemon.ctl_json("plugins")
    assert code == 0
    assert [p["name"] for p in listing["plugins"] if p["file"] == str(mine)] == ["context"]
    assert listing["errors"] == []
    run_report(daemon)


def test_plugin_load_errors_are_listed_until_the_file_loads_or_is_gone(daemon, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    wrong_abi = plugins / "a-wrong-abi.so"
    unresolved = plugins / "b-unresolved.so"
    shutil.copy(fixture("abi2_plugin"), wrong_abi)
    shutil.copy(fixture("unresolved_plugin"), unresolved)
    daemon.extra_args = ["--plugins", str(plugins)]
    daemon.start()

    code, listing = daemon.ctl_json("plugins")
    assert code == 0
    errors = {e["file"]: e["error"] for e in listing["errors"]}
    assert set(errors) == {str(wrong_abi), str(unresolved)}
    assert errors[str(wrong_abi)] == (
        f"plugin {wrong_abi}: built for plugin ABI 2.3, this sagad speaks ABI 1.x; "
        "rebuild it against this SDK")
    assert errors[str(unresolved)].startswith(f"plugin {unresolved}: cannot be loaded: ")
    assert "saga_fixture_defined_nowhere" in errors[str(unresolved)]
    assert "/proc/self/fd" not in errors[str(unresolved)]
    # The plugins that did load are listed as before.
    assert "testing" in [p["name"] for p in listing["plugins"]]

    human = daemon.ctl("plugins")
    assert human.returncode == 0, human.stderr
    assert f"\nerror: {errors[str(wrong_abi)]}\n" in human.stdout
    assert f"\nerror: {errors[str(unresolved)]}\n" in human.stdout

    # A good build over the wrong one, the other removed, and a reload: no errors are left.
    overwrite_in_place(wrong_abi, read(fixture("context_plugin")))
    os.remove(unresolved)
    daemon.proc.send_signal(signal.SIGHUP)
    listing = wait_for_plugins(daemon, lambda l: any(p["file"] == str(wrong_abi)
                                                     for p in l["plugins"]))
    assert listing["errors"] == []
    human = daemon.ctl("plugins")
    assert "error:" not in human.stdout
    assert "context.report" in human.stdout
