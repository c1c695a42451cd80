"""The example out-of-tree plugin, built against the *installed* SDK and run by a real sagad."""
import os
import subprocess

from conftest import BUILD, SOURCE


def run(*args, cwd=None):
    r = subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, timeout=300)
    assert r.returncode == 0, f"{' '.join(args)}:\n{r.stdout}\n{r.stderr}"
    return r


def test_out_of_tree_plugin_builds_against_the_installed_sdk_and_runs(daemon, tmp_path):
    prefix = tmp_path / "prefix"
    run("cmake", "--install", BUILD, "--prefix", str(prefix))
    assert (prefix / "include" / "saga" / "plugin_abi.h").exists()
    example = os.path.join(SOURCE, "sdk", "examples", "greeter")
    out = tmp_path / "greeter-build"
    run("cmake", "-S", example, "-B", str(out), f"-DCMAKE_PREFIX_PATH={prefix}")
    run("cmake", "--build", str(out))
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    os.rename(out / "saga-greeter.so", plugin_dir / "saga-greeter.so")

    daemon.extra_args = ["--plugins", str(plugin_dir)]
    daemon.add_workflow("greet.yaml", """
name: greet
steps:
  - name: hi
    uses: greeter.hello
    with: {name: "${{ input.who }}"}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "greet", "--input", '{"who": "Ada"}', "--wait", "--id", "g1")
    assert code == 0, out
    assert out["instance"]["steps"][0]["output"] == {"greeting": "hello, Ada", "attempt": 1,
                                                     "key": "g1/hi"}
    code, plugins = daemon.ctl_json("plugins")
    names = {p["name"] for p in plugins["plugins"]}
    assert {"greeter", "testing"} <= names
    assert "greeting Ada" in daemon.log()
