"""What a step receives through the plugin ABI when sagad runs it: earlier steps' outputs,
the instance input and its parameters, with and without templates."""
import json
import os
import shutil

from conftest import BUILD

CONTEXT_PLUGIN = os.path.join(BUILD, "tests", "fixtures", "context_plugin.so")


def test_a_step_gets_earlier_outputs_input_and_rendered_params(daemon, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(CONTEXT_PLUGIN, plugins)
    daemon.extra_args = ["--plugins", str(plugins)]
    daemon.add_workflow("ctx.yaml", """
name: ctx
steps:
  - name: first
    uses: testing.echo
    with: {n: 7, tag: "${{ input.tag }}"}
  - name: plain
    uses: context.report
  - name: rendered
    uses: testing.echo
    with: {n: "${{ steps.first.output.n }}", by: "${{ steps.plain.output.step }}",
           id: "${{ instance.id }}"}
  - name: last
    uses: context.report
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "ctx", "--input", '{"tag": "x\\"y"}', "--wait")
    assert code == 0, out
    steps = {s["name"]: s for s in out["instance"]["steps"]}
    assert steps["first"]["output"] == {"n": 7, "tag": 'x"y'}

    # Without `with`: no parameters, and the outputs so far as {"NAME": {"output": ...}}.
    plain = steps["plain"]["output"]
    assert plain["params"] == {}
    assert plain["input"] == {"tag": 'x"y'}
    assert plain["steps"] == {"first": {"output": {"n": 7, "tag": 'x"y'}}}
    assert plain["idempotency_key"] == f"{out['id']}/plain"

    # Templates render from the same outputs.
    assert steps["rendered"]["output"] == {"n": 7, "by": "plain", "id": out["id"]}

    # Every earlier output, in order of the steps or not, is there for the last step.
    last = steps["last"]["output"]
    assert set(last["steps"]) == {"first", "plain", "rendered"}
    assert last["steps"]["rendered"] == {"output": {"n": 7, "by": "plain", "id": out["id"]}}
    assert last["steps"]["plain"]["output"]["steps"] == plain["steps"]


def test_declared_defaults_fill_in_what_with_leaves_out_or_renders_null(daemon, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(CONTEXT_PLUGIN, plugins)
    daemon.extra_args = ["--plugins", str(plugins)]
    daemon.add_workflow("defaults.yaml", """
name: defaults
steps:
  - name: bare
    uses: context.params
  - name: some
    uses: context.params
    with: {count: 7, note: "n"}
  - name: rendered
    uses: context.params
    with: {greeting: "${{ input.greeting }}", count: "${{ input.none }}",
           note: "${{ input.none }}"}
""")
    daemon.start()
    code, out = daemon.ctl_json("start", "defaults", "--input", '{"greeting": "hi", "none": null}',
                                "--wait")
    assert code == 0, out["instance"]["steps"]
    steps = {s["name"]: s["output"] for s in out["instance"]["steps"]}
    # What `sagactl plugins` shows as the default is what the step gets.
    assert steps["bare"] == {"greeting": "hello", "count": 3, "tags": ["a", "b"]}
    assert steps["some"] == {"greeting": "hello", "count": 7, "tags": ["a", "b"], "note": "n"}
    # A template that renders null counts as not given: the default applies; a parameter
    # without a default is passed on as null.
    assert steps["rendered"] == {"greeting": "hi", "count": 3, "tags": ["a", "b"], "note": None}
    code, plugins_out = daemon.ctl_json("plugins")
    params = {p["name"]: p for plugin in plugins_out["plugins"] for t in plugin["step_types"]
              if t["name"] == "context.params" for p in t["params"]}
    assert params["count"]["default"] == 3


def test_a_step_type_log_line_is_cut_at_64_kib(daemon, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(CONTEXT_PLUGIN, plugins)
    daemon.extra_args = ["--plugins", str(plugins)]
    daemon.add_workflow("log.yaml", """
name: log
steps:
  - name: say
    uses: context.log
    with: {text: "${{ input.text }}"}
""")
    daemon.start()
    text = "y" * 100_000
    code, out = daemon.ctl_json("start", "log", "--input", json.dumps({"text": text}), "--wait")
    assert code == 0, out
    line = next(l for l in daemon.log().splitlines() if f"{out['id']} say: " in l)
    assert line.endswith(f" say: {'y' * 65536} [log line cut here: {100_000 - 65536} more bytes]")
