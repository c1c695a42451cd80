"""workflows/image-pipeline.yaml end to end: exec and http steps against local fake services."""
import http.server
import json
import os
import threading
import time

from conftest import SOURCE


class Fake(http.server.BaseHTTPRequestHandler):
    seen = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        Fake.seen.append(("POST", self.path, body))
        if self.path == "/anonymize":
            self.reply(200, {"id": "anon-" + body["image"]})
        else:
            self.reply(500, {"error": "model overloaded"})

    def do_DELETE(self):
        Fake.seen.append(("DELETE", self.path, None))
        self.reply(204, None)

    def reply(self, status, doc):
        data = b"" if doc is None else json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def libcurl_mapped(pid):
    with open(f"/proc/{pid}/maps") as f:
        return "libcurl" in f.read()


def test_image_pipeline_compensates_http_and_exec_steps(daemon):
    anonymizer, model = serve(), serve()
    try:
        with open(os.path.join(SOURCE, "workflows", "image-pipeline.yaml")) as f:
            text = f.read()
        text = text.replace("127.0.0.1:8081", f"127.0.0.1:{anonymizer.server_port}")
        text = text.replace("127.0.0.1:8082", f"127.0.0.1:{model.server_port}")
        daemon.add_workflow("image-pipeline.yaml", text)
        daemon.start()
        # The http plugin is loaded, but libcurl (and the TLS libraries it brings) only with
        # the first request: a daemon that makes none does not carry them.
        assert not libcurl_mapped(daemon.proc.pid)
        code, out = daemon.ctl_json("start", "image-pipeline", "--input",
                                    '{"image": "scan-7.png"}', "--wait")
        assert code == 1
        inst = out["instance"]
        assert inst["state"] == "compensated", inst
        steps = {s["name"]: s for s in inst["steps"]}
        assert steps["classify"]["attempts"] == 3
        assert "500" in steps["classify"]["error"]
        assert steps["publish"]["state"] == "compensated"
        assert steps["publish"]["output"]["event"] == "image.ready"
        assert steps["publish"]["output"]["key"] == f"{out['id']}/publish"
        assert steps["anonymize"]["output"]["body"] == {"id": "anon-scan-7.png"}
        assert steps["anonymize"]["state"] == "compensated"
        assert ("DELETE", "/anonymized/anon-scan-7.png", None) in Fake.seen
        posted = [b for m, p, b in Fake.seen if p == "/anonymize"]
        assert posted == [{"image": "scan-7.png", "request": out["id"]}]
        assert libcurl_mapped(daemon.proc.pid)
    finally:
        anonymizer.shutdown()
        model.shutdown()


def running(pid):
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_an_exec_program_does_not_outlive_a_killed_sagad(daemon, tmp_path):
    # Without systemd's cgroup to clean up, a program left running by a crashed sagad would run
    # on beside the attempt that recovery starts again.
    pids = tmp_path / "pids"
    script = tmp_path / "long.sh"
    script.write_text(f"#!/bin/sh\necho $$ >> {pids}\nexec sleep 60\n")
    script.chmod(0o755)
    daemon.add_workflow("long.yaml", f"""
name: long
steps:
  - name: work
    uses: exec
    with: {{argv: ["{script}"]}}
""")
    daemon.start()
    r = daemon.ctl("start", "long")
    assert r.returncode == 0, r.stderr
    deadline = time.time() + 30
    while not (pids.exists() and pids.read_text().endswith("\n")) and time.time() < deadline:
        time.sleep(0.05)
    pid = int(pids.read_text().split()[0])
    assert running(pid)
    daemon.kill()
    deadline = time.time() + 10
    while running(pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not running(pid), f"pid {pid} outlived sagad"


def test_exec_streams_work_when_sagad_starts_with_them_closed(daemon):
    # Started with 0, 1 and 2 closed (as some supervisors do), sagad must not hand those numbers
    # out: its log would go into whatever file took 2, and a step's pipe that took one would stay
    # close-on-exec and leave the program without it.
    daemon.add_workflow("cat.yaml", """
name: cat
steps:
  - name: cat
    uses: exec
    with: {argv: ["cat"], stdin: "through stdin"}
""")

    def close_standard_fds():
        for fd in (0, 1, 2):
            os.close(fd)

    daemon.popen_args = {"preexec_fn": close_standard_fds}
    daemon.start()
    # Taken by /dev/null before anything else (a journal file, a socket) could get them.
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/{daemon.proc.pid}/fd/{fd}") == "/dev/null"
    code, out = daemon.ctl_json("start", "cat", "--wait")
    assert code == 0, out
    assert out["instance"]["steps"][0]["output"] == {"stdout": "through stdin"}
