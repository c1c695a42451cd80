"""Schedules end to end: a real sagad with an every-second cron schedule."""
import datetime
import json
import os
import re
import time

from conftest import BUILD

TICK = """
name: tick
schedule:
  - cron: "* * * * * *"
    input: {source: cron, fired: "${{ schedule.fire_time }}", by: "${{ workflow.name }}"}
    catchup: latest
steps:
  - name: echo
    uses: testing.echo
    with: {at: "${{ schedule.fire_time }}", source: "${{ input.source }}"}
"""


def parse(ts):
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def fires(daemon, workflow="tick"):
    code, doc = daemon.ctl_json("list", "--workflow", workflow, "--limit", "1000")
    assert code == 0, doc
    return sorted(doc["instances"], key=lambda i: i["id"])


def schedules(daemon):
    code, doc = daemon.ctl_json("schedules")
    assert code == 0, doc
    return doc["schedules"]


def wait_until(predicate, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def test_every_second_schedule_starts_instances_on_time(daemon):
    daemon.add_workflow("tick.yaml", TICK)
    daemon.start()
    loaded = time.time()
    insts = wait_until(lambda: (lambda f: f if len(f) >= 3 else None)(fires(daemon)))
    for inst in insts:
        name, at = inst["id"].split("@")
        assert name == "tick"
        fire = parse(at)
        created = parse(inst["created_at"])
        # Started on time: within a few hundred ms of the fire, and never before it.
        assert datetime.timedelta(0) <= created - fire < datetime.timedelta(milliseconds=800), inst
        # Never for a time before the schedule was loaded.
        assert fire.timestamp() > loaded - 1.0
        # A schedule's input is rendered when it fires.
        assert inst["input"] == {"source": "cron", "fired": at, "by": "tick"}
    times = [parse(i["id"].split("@")[1]) for i in insts]
    assert all(b - a == datetime.timedelta(seconds=1) for a, b in zip(times, times[1:])), times
    done = daemon.wait_for(insts[0]["id"], lambda d: d["state"] == "completed")
    assert done["steps"][0]["output"] == {"at": insts[0]["id"].split("@")[1], "source": "cron"}

    listed = schedules(daemon)
    assert len(listed) == 1
    s = listed[0]
    assert s["workflow"] == "tick" and s["cron"] == "* * * * * *" and s["timezone"] == "UTC"
    assert s["paused"] is False
    assert parse(s["next_fire"]) > parse(s["last_fire"])
    text = daemon.ctl("schedules")
    assert text.returncode == 0, text.stderr
    header, row = text.stdout.splitlines()[:2]
    assert header.split()[:5] == ["WORKFLOW", "#", "CRON", "TIMEZONE", "NEXT"]
    assert row.split()[0] == "tick" and "UTC" in row and " no " in row


def test_pause_survives_a_restart_and_resume_does_not_catch_up(daemon):
    daemon.add_workflow("tick.yaml", TICK)
    daemon.start()
    wait_until(lambda: fires(daemon))
    r = daemon.ctl("schedules", "pause", "tick")
    assert r.returncode == 0, r.stderr
    assert "paused" in r.stdout
    count = len(fires(daemon))
    daemon.stop()
    daemon.start()
    s = schedules(daemon)[0]
    assert s["paused"] is True and s["next_fire"] is None
    assert "yes" in daemon.ctl("schedules").stdout
    time.sleep(1.5)
    assert len(fires(daemon)) == count, "a paused schedule fired (or caught up) after a restart"
    resumed_at = time.time()
    code, doc = daemon.ctl_json("schedules", "resume", "tick")
    assert code == 0, doc
    assert doc["schedules"][0]["paused"] is False
    new = wait_until(lambda: (lambda f: f if len(f) > count else None)(fires(daemon)))
    for inst in new[count:]:
        assert parse(inst["id"].split("@")[1]).timestamp() > resumed_at - 1.0

    r = daemon.ctl("schedules", "pause", "nope")
    assert r.returncode == 1
    assert "workflow nope has no schedule" in r.stderr
    assert daemon.ctl("schedules", "pause").returncode == 2


def test_catch_up_after_a_kill_starts_the_latest_missed_fire_once(daemon):
    daemon.add_workflow("tick.yaml", TICK)
    daemon.start()
    wait_until(lambda: fires(daemon))
    daemon.kill()
    killed = time.time()
    time.sleep(3)
    restarting = time.time()
    daemon.start()
    ready = time.time()
    after = fires(daemon)
    ids = [i["id"] for i in after]
    assert len(ids) == len(set(ids))
    missed = [i for i in ids if killed < parse(i.split("@")[1]).timestamp() <= restarting]
    assert len(missed) <= 1, ids
    # catchup: latest -> one start for the fires missed while sagad was down, logged.
    m = re.search(r"schedule tick: started (tick@\S+)\n.*schedule tick: skipped (\d+) fires due "
                  r"from \S+ to \S+ while sagad was down \(catchup: latest, max_catchup: 100\); "
                  r"started 1\n", daemon.log())
    assert m, daemon.log()
    assert int(m.group(2)) >= 1
    caught = m.group(1)
    assert killed < parse(caught.split("@")[1]).timestamp() <= ready
    assert caught in ids
    assert schedules(daemon)[0]["skipped_catchup"] == int(m.group(2))


def test_editing_and_removing_a_schedule_takes_effect_on_reload(daemon):
    daemon.add_workflow("tick.yaml", TICK)
    daemon.start()
    wait_until(lambda: fires(daemon))
    daemon.add_workflow("tick.yaml", TICK.replace('"* * * * * *"', '"0 3 1 1 *"\n    timezone: Europe/Berlin'))
    s = wait_until(lambda: (lambda l: l[0] if l and l[0]["cron"] == "0 3 1 1 *" else None)(schedules(daemon)))
    assert s["timezone"] == "Europe/Berlin"
    assert parse(s["next_fire"]).strftime("%m-%d %H:%M") in ("01-01 02:00",)
    count = len(fires(daemon))
    time.sleep(1.2)
    assert len(fires(daemon)) == count
    daemon.add_workflow("tick.yaml", TICK.replace('schedule:\n  - cron: "* * * * * *"\n    input: {source: cron, fired: "${{ schedule.fire_time }}", by: "${{ workflow.name }}"}\n'
                                 '    catchup: latest\n', ""))
    wait_until(lambda: schedules(daemon) == [])


def test_a_file_broken_across_a_restart_keeps_its_schedule_where_it_was(daemon):
    broken = TICK.replace("catchup: latest", "catchup: latest\n    retyr: 1")
    daemon.add_workflow("tick.yaml", TICK)
    daemon.start()
    wait_until(lambda: schedules(daemon)[0]["started"] >= 4)
    code, listing = daemon.ctl_json("workflows")
    version = listing["workflows"][0]["version"]
    daemon.stop()
    # Broken while sagad was down: the file's last good version, from the journal, serves on,
    # its schedule included.
    daemon.add_workflow("tick.yaml", broken)
    daemon.start()
    code, listing = daemon.ctl_json("workflows")
    assert [w["version"] for w in listing["workflows"]] == [version], listing
    assert listing["errors"][0]["error"].endswith(
        f"tick.yaml: still serving the last good version {version}"), listing
    count = len(fires(daemon))
    wait_until(lambda: schedules(daemon)[0]["loaded"] and len(fires(daemon)) > count)
    assert fires(daemon)[-1]["version"] == version
    daemon.stop()

    # Moved to another file while sagad was down: no version is known for it after the restart.
    os.rename(os.path.join(daemon.workflows, "tick.yaml"), os.path.join(daemon.workflows, "tock.yaml"))
    daemon.start()
    count = len(fires(daemon))
    assert count >= 4
    held = schedules(daemon)
    assert len(held) == 1 and held[0]["loaded"] is False and held[0]["next_fire"] is None, held
    assert held[0]["started"] == count, held
    assert "not loaded" in daemon.ctl("schedules").stdout
    assert "the schedules of workflow tick are not running" in daemon.log()
    time.sleep(3)
    assert len(fires(daemon)) == count
    # Fixed: the schedule goes on from its journaled record instead of starting over, and catches
    # up under its policy (latest: one start) on what it missed.
    daemon.add_workflow("tock.yaml", TICK)
    s = wait_until(lambda: (lambda l: l[0] if l[0]["loaded"] else None)(schedules(daemon)))
    assert s["started"] >= count + 1, s
    assert s["skipped_catchup"] >= 1, daemon.log()
    assert re.search(r"schedule tick: skipped \d+ fires due from \S+ to \S+ while its workflow "
                     r"was not loaded \(catchup: latest", daemon.log()), daemon.log()


def test_a_clock_jump_is_noticed_within_seconds_and_late_fires_follow_catchup(daemon):
    # Three schedules at wall times 8 to 10 minutes ahead; two seconds after it starts, sagad's
    # wall clock jumps 20 s past the last of them (its monotonic clock, which its timers wait on,
    # does not: a suspend or a clock being set looks like this).
    now = time.time()
    ontime = (int(now) // 60 + 10) * 60
    early = ontime - 120

    def cron(t):
        at = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
        return f"{at.minute} {at.hour} * * *"

    for name, t, catchup in [("ontime", ontime, "none"), ("missed", early, "none"),
                             ("latest", early, "latest")]:
        daemon.add_workflow(f"{name}.yaml", f"""
name: {name}
schedule:
  - cron: "{cron(t)}"
    catchup: {catchup}
steps:
  - {{name: a, uses: testing.noop}}
""")
    daemon.extra_env = {
        "LD_PRELOAD": os.path.join(BUILD, "tests", "preload", "clock_jump.so"),
        "SAGA_TEST_CLOCK_JUMP_AFTER_MS": "2000",
        "SAGA_TEST_CLOCK_JUMP_S": str(int(ontime + 20 - now)),
        "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0",
    }
    daemon.start()
    stamp = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    # 20 s late: a fire that came due while sagad was busy, started whatever catchup says.
    assert wait_until(lambda: fires(daemon, "ontime"), timeout=20)[0]["id"] == \
        "ontime@" + stamp(ontime)
    # Over two minutes late: missed; catchup decides.
    assert wait_until(lambda: fires(daemon, "latest"), timeout=20)[0]["id"] == \
        "latest@" + stamp(early)
    wait_until(lambda: "while sagad could not run them" in daemon.log(), timeout=20)
    assert fires(daemon, "missed") == []
    assert [s["skipped_catchup"] for s in schedules(daemon) if s["workflow"] == "missed"] == [1]
