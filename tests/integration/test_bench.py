"""saga-bench against a real sagad: the figures scripts read, and the exit status that says
whether every instance ended as expected."""
import json
import os
import shutil
import subprocess

from conftest import BUILD, SOURCE

SAGA_BENCH = os.path.join(BUILD, "bin", "saga-bench")


def bench(daemon, *args):
    return subprocess.run([SAGA_BENCH, "--socket", daemon.socket, *args],
                          capture_output=True, text=True, timeout=120)


def with_workloads(daemon):
    for name in ("saga3.yaml", "saga3-fail.yaml"):
        shutil.copy(os.path.join(SOURCE, "bench", "workflows", name), daemon.workflows)
    return daemon.start()


def test_closed_loop_runs_every_instance_to_its_end_and_reports_json(daemon):
    with_workloads(daemon)
    r = bench(daemon, "--workflow", "saga3", "--count", "60", "--concurrency", "8",
              "--warmup", "10", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["workflow"] == "saga3" and out["count"] == 60 and out["concurrency"] == 8
    assert out["errors"] == 0
    assert out["instances_per_s"] > 0
    assert 0 < out["p50_ms"] <= out["p90_ms"] <= out["p99_ms"]
    assert out["sagad_rss_kib"] > 0
    # Four commits per instance, at least one transition in each.
    assert out["journal_avg_batch"] >= 1
    assert out["sagad_cpu_us_per_instance"]["total"] >= 0
    assert out["bench_cpu_us_per_instance"] > 0
    # Warm-up and measured instances all ran, each to its end.
    rc, listed = daemon.ctl_json("list", "--workflow", "saga3", "--limit", "1000")
    assert rc == 0
    states = [i["state"] for i in listed["instances"]]
    assert len(states) == 70 and set(states) == {"completed"}


def test_more_clients_than_instances_and_a_burst_of_connections(daemon):
    with_workloads(daemon)
    r = bench(daemon, "--workflow", "saga3", "--count", "300", "--concurrency", "300", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["errors"] == 0
    r = bench(daemon, "--workflow", "saga3", "--count", "3", "--concurrency", "50", "--json")
    assert r.returncode == 0, r.stderr


def test_an_unexpected_end_state_fails_the_run_and_names_it(daemon):
    with_workloads(daemon)
    r = bench(daemon, "--workflow", "saga3-fail", "--count", "5", "--concurrency", "2", "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["errors"] == 5
    assert "did not end completed (first: an instance ended compensated)" in r.stderr
    r = bench(daemon, "--workflow", "saga3-fail", "--count", "5", "--concurrency", "2",
              "--expect", "compensated", "--json")
    assert r.returncode == 0, r.stderr


def test_the_end_state_is_the_instances_own_not_one_nested_in_it(daemon):
    # The reply carries the whole instance: a "state" in its input, or in its steps, is not it.
    with_workloads(daemon)
    r = bench(daemon, "--workflow", "saga3-fail", "--count", "3", "--concurrency", "1",
              "--input", '{"state": "completed", "deep": {"state": "completed"}}', "--json")
    assert r.returncode == 1
    assert "first: an instance ended compensated" in r.stderr
    r = bench(daemon, "--workflow", "saga3-fail", "--count", "3", "--concurrency", "1",
              "--input", '{"state": "completed"}', "--expect", "compensated", "--json")
    assert r.returncode == 0, r.stderr


def test_an_error_reply_counts_and_is_shown(daemon):
    with_workloads(daemon)
    r = bench(daemon, "--workflow", "nope", "--count", "4", "--concurrency", "2")
    assert r.returncode == 1
    assert "no workflow nope" in r.stderr


def test_no_wait_counts_started_instances(daemon):
    with_workloads(daemon)
    r = bench(daemon, "--workflow", "saga3", "--count", "40", "--concurrency", "4", "--no-wait",
              "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["errors"] == 0


def thread_nice(pid):
    """{thread name: [nice, ...]} of a process's threads."""
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            stat = f.read()
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        nice = int(stat[stat.rindex(")") + 2:].split()[16])
        threads.setdefault(name, []).append(nice)
    return threads


def test_flushes_run_at_the_lowest_cpu_priority_and_the_commits_do_not(daemon):
    # On a small machine the flush must not take a core from the loop or the journal writer.
    with_workloads(daemon)
    r = bench(daemon, "--workflow", "saga3", "--count", "3000", "--concurrency", "32", "--json")
    assert r.returncode == 0, r.stderr
    threads = thread_nice(daemon.proc.pid)
    # 3000 instances fill a memtable: the flush thread has run, and lowered itself first.
    assert threads.get("rocksdb:high") == [19], threads
    assert set(threads["saga-journal"]) == {0} and threads["sagad"][0] == 0, threads
