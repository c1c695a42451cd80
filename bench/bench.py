#!/usr/bin/python3
"""make bench: saga-bench's workloads against a fresh sagad, then recovery of instances in flight.

Starts sagad (durability sync, the default) on a temporary state directory with the workflows of
bench/workflows, runs the closed-loop workloads that ../shared/peers measures (saga3 at C=1, 32
and 256, saga3-fail at C=32), then builds up instances in flight (each waiting on a durable retry
timer), measures sagad's memory per instance in flight, kills sagad with SIGKILL and times the
restart until it answers on its socket. Prints one table; --json prints the rows as JSON.

Sizes can be changed through the environment: N (saga3 and saga3-fail at C=32, default 10000),
N1 (C=1, 500), N256 (C=256, 20000), WARMUP (200), INFLIGHT (100000). SAGAD_TUNABLES is sagad's
GLIBC_TUNABLES (`make bench` passes what systemd/sagad.service sets), and only sagad's.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def ping(path):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(path)
            s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
            return b'"result"' in s.recv(4096)
    except OSError:
        return False


def sagad_env():
    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    if os.environ.get("SAGAD_TUNABLES"):
        env["GLIBC_TUNABLES"] = os.environ["SAGAD_TUNABLES"]
    return env


class Sagad:
    def __init__(self, build, state_dir):
        self.build = build
        self.state_dir = state_dir
        self.socket = os.path.join(state_dir, "sagad.sock")
        self.log_path = os.path.join(state_dir, "sagad.log")
        self.proc = None

    def start(self, timeout=600):
        """Starts sagad; returns the seconds until it answered on its socket."""
        log = open(self.log_path, "a")
        began = time.monotonic()
        self.proc = subprocess.Popen(
            [os.path.join(self.build, "bin", "sagad"),
             "--workflows", os.path.join(ROOT, "bench", "workflows"),
             "--plugins", os.path.join(self.build, "plugins"),
             "--state", os.path.join(self.state_dir, "journal"),
             "--socket", self.socket],
            stdout=log, stderr=subprocess.STDOUT, env=sagad_env())
        while time.monotonic() - began < timeout:
            if self.proc.poll() is not None:
                sys.exit(f"bench: sagad exited with {self.proc.returncode}; see {self.log_path}")
            if ping(self.socket):
                return time.monotonic() - began
            time.sleep(0.005)
        sys.exit(f"bench: sagad did not answer within {timeout} s; see {self.log_path}")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)

    def recovery_line(self):
        with open(self.log_path) as f:
            lines = [l.strip() for l in f if "recovery: resumed" in l]
        return lines[-1] if lines else ""


def saga_bench(build, sock, workflow, count, concurrency, warmup, expect="completed",
               no_wait=False):
    cmd = [os.path.join(build, "bin", "saga-bench"), "--socket", sock, "--workflow", workflow,
           "--count", str(count), "--concurrency", str(concurrency), "--warmup", str(warmup),
           "--expect", expect, "--json"]
    if no_wait:
        cmd.append("--no-wait")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    env = lambda k, d: int(os.environ.get(k, d))
    n, n1, n256 = env("N", 10000), env("N1", 500), env("N256", 20000)
    warmup, inflight = env("WARMUP", 200), env("INFLIGHT", 100000)

    state_dir = tempfile.mkdtemp(prefix="saga-bench-")
    sagad = Sagad(args.build, state_dir)
    rows = []
    try:
        sagad.start()
        for workflow, c, count, expect in [("saga3", 1, n1, "completed"),
                                           ("saga3", 32, n, "completed"),
                                           ("saga3", 256, n256, "completed"),
                                           ("saga3-fail", 32, n, "compensated")]:
            if count <= 0:
                continue
            r = saga_bench(args.build, sagad.socket, workflow, count, c, warmup, expect)
            rows.append(r)
            if not args.json:
                cpu = r.get("sagad_cpu_us_per_instance", {})
                print(f"{workflow} C={c}: {r['instances_per_s']:.0f}/s p50 {r['p50_ms']:.2f} ms "
                      f"(sagad CPU {cpu.get('total', 0):.0f} us/instance)", file=sys.stderr)

        recovery = {}
        if inflight > 0:
            before = rss_kib(sagad.proc.pid)
            started = saga_bench(args.build, sagad.socket, "inflight", inflight, 32, 0,
                                 no_wait=True)
            time.sleep(2)  # every first attempt fails and parks on its retry timer
            after = rss_kib(sagad.proc.pid)
            sagad.kill()
            seconds = sagad.start()
            recovery = {
                "inflight": inflight,
                "starts_per_s": started["instances_per_s"],
                "rss_before_kib": before,
                "rss_after_kib": after,
                "bytes_per_inflight": (after - before) * 1024 / inflight,
                "restart_to_ready_s": seconds,
                "rss_after_recovery_kib": rss_kib(sagad.proc.pid),
                "log": sagad.recovery_line(),
            }
    finally:
        sagad.stop()
        shutil.rmtree(state_dir, ignore_errors=True)

    if args.json:
        print(json.dumps({"runs": rows, "recovery": recovery}, indent=2))
        return
    tunables = os.environ.get("SAGAD_TUNABLES") or "none"
    print(f"saga bench, sagad durability sync, GLIBC_TUNABLES {tunables}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"{'workload':<11} {'C':>4} {'N':>6} {'inst/s':>8} {'p50 ms':>7} {'p90 ms':>7} "
          f"{'p99 ms':>7} {'RSS MiB':>8} {'batch':>6} {'fsync ms':>8} {'CPU us/inst':>12} "
          f"{'bench us':>8}")
    for r in rows:
        cpu = r.get("sagad_cpu_us_per_instance", {})
        print(f"{r['workflow']:<11} {r['concurrency']:>4} {r['count']:>6} "
              f"{r['instances_per_s']:>8.0f} {r['p50_ms']:>7.2f} {r['p90_ms']:>7.2f} "
              f"{r['p99_ms']:>7.2f} {r['sagad_rss_kib'] / 1024:>8.1f} "
              f"{r['journal_avg_batch']:>6.1f} {r['journal_commit_p50_ms']:>8.2f} "
              f"{cpu.get('total', 0):>12.0f} {r.get('bench_cpu_us_per_instance', 0):>8.0f}")
    if recovery:
        print(f"in flight: {recovery['inflight']} instances started at "
              f"{recovery['starts_per_s']:.0f}/s; sagad memory per instance in flight "
              f"{recovery['bytes_per_inflight']:.0f} bytes (RSS {recovery['rss_before_kib'] / 1024:.1f}"
              f" -> {recovery['rss_after_kib'] / 1024:.1f} MiB)")
        print(f"recovery: kill -9, restart to READY in {recovery['restart_to_ready_s']:.2f} s "
              f"({recovery['log'].split(' info ')[-1]})")


if __name__ == "__main__":
    main()
