"""Fixtures that run the real sagad in a temporary directory and drive it with sagactl."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

BUILD = os.environ.get("SAGA_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
SOURCE = os.environ.get("SAGA_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
SAGAD = os.path.join(BUILD, "bin", "sagad")
SAGACTL = os.path.join(BUILD, "bin", "sagactl")
PLUGINS = os.path.join(BUILD, "plugins")
# Built with AddressSanitizer (make test-asan), which changes how a crash or a throw in a plugin
# looks from outside.
ASAN = "libasan" in subprocess.run(["ldd", SAGAD], capture_output=True, text=True).stdout


class Daemon:
    """One sagad with its own state dir, socket and workflows dir."""

    def __init__(self, root, extra_args=()):
        self.root = root
        self.workflows = os.path.join(root, "workflows")
        self.state = os.path.join(root, "state")
        self.socket = os.path.join(root, "sagad.sock")
        self.log_path = os.path.join(root, "sagad.log")
        self.extra_args = list(extra_args)
        self.extra_env = {}
        self.popen_args = {}
        self.proc = None
        os.makedirs(self.workflows, exist_ok=True)

    def add_workflow(self, name, text):
        with open(os.path.join(self.workflows, name), "w") as f:
            f.write(text)

    def add_example(self, name):
        shutil.copy(os.path.join(SOURCE, "workflows", name), self.workflows)

    def start(self, wait=True):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [SAGAD, "--workflows", self.workflows, "--plugins", PLUGINS, "--state", self.state,
             "--socket", self.socket, *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT,
            # Tests talk to loopback only: keep a proxy in the environment out of the way.
            env=dict(os.environ, no_proxy="*", NO_PROXY="*", **self.extra_env),
            **self.popen_args)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"sagad exited with {self.proc.returncode}:\n{self.log()}")
            if self.ctl("ping").returncode == 0:
                return
            time.sleep(0.05)
        raise AssertionError(f"sagad not ready after {timeout}s:\n{self.log()}")

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def ctl(self, *args, input=None):
        return subprocess.run([SAGACTL, "--socket", self.socket, *args], capture_output=True,
                              text=True, input=input, timeout=120)

    def ctl_json(self, *args):
        r = self.ctl(*args, "--json")
        assert r.stdout, f"sagactl {' '.join(args)} printed nothing (exit {r.returncode}): {r.stderr}"
        return r.returncode, json.loads(r.stdout)

    def inspect(self, instance_id, history=False):
        args = ["inspect", instance_id] + (["--history"] if history else [])
        code, doc = self.ctl_json(*args)
        assert code == 0, doc
        return doc

    def wait_for(self, instance_id, predicate, timeout=30):
        deadline = time.time() + timeout
        doc = None
        while time.time() < deadline:
            r = self.ctl("inspect", instance_id, "--json")
            if r.returncode == 0:
                doc = json.loads(r.stdout)
                if predicate(doc):
                    return doc
            time.sleep(0.05)
        raise AssertionError(f"condition not reached for {instance_id}; last: {doc}\n{self.log()}")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise
        return self.proc.returncode if self.proc else None


class Rpc:
    """A raw JSON-RPC connection to sagad, for what sagactl does not do (pipelining, not
    reading)."""

    def __init__(self, path, rcvbuf=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(path)
        self.buf = b""
        self.next_id = 1

    def send(self, method, params):
        self.sock.sendall((json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method,
                                       "params": params}) + "\n").encode())
        self.next_id += 1

    def read(self, timeout=30):
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, method, params):
        """Sends one request and returns its answer."""
        self.send(method, params)
        answer = self.read()
        assert answer is not None, "sagad closed the connection"
        return answer

    def close(self):
        self.sock.close()


@pytest.fixture
def daemon():
    root = tempfile.mkdtemp(prefix="saga-it-")
    d = Daemon(root)
    try:
        yield d
    finally:
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def events(doc, type_=None, step=None):
    return [e for e in doc["history"]
            if (type_ is None or e["type"] == type_) and (step is None or e.get("step") == step)]
