"""Installation: cmake --install into a prefix, the systemd unit (systemd-analyze verify and
security), the sysusers.d entry, and the Debian package that make package builds."""
import glob
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from conftest import BUILD, SOURCE, Daemon

CMAKE = os.environ.get("SAGA_CMAKE", "cmake")
CPACK = os.environ.get("SAGA_CPACK", "cpack")
PLUGIN_FILES = ["saga-exec.so", "saga-http.so", "saga-testing.so"]


def run(*args, **kw):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=120, **kw)
    assert r.returncode == 0, f"{args} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def prefix():
    root = tempfile.mkdtemp(prefix="saga-install-")
    run(CMAKE, "--install", BUILD, "--prefix", root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_install_puts_everything_in_fhs_places(prefix):
    for path in ["bin/sagad", "bin/sagactl", "include/saga/plugin_abi.h", "include/saga/step.hpp",
                 "lib/systemd/system/sagad.service", "lib/sysusers.d/saga.conf",
                 "share/doc/sagad/sagad.yaml", "share/doc/sagad/README.md"]:
        assert os.path.isfile(os.path.join(prefix, path)), path
    for name in PLUGIN_FILES:
        assert os.path.isfile(os.path.join(prefix, "lib/saga/plugins", name)), name
    assert glob.glob(os.path.join(prefix, "lib*/**/SagaSDKConfig.cmake"), recursive=True)
    assert os.access(os.path.join(prefix, "bin/sagad"), os.X_OK)
    if os.path.exists(os.path.join(SOURCE, "ctl", "sagactl.bash")):
        assert os.path.isfile(os.path.join(prefix, "share/bash-completion/completions/sagactl"))
    # Only an install into /usr writes /etc/saga.
    assert not os.path.exists(os.path.join(prefix, "etc"))
    unit = open(os.path.join(prefix, "lib/systemd/system/sagad.service")).read()
    assert f"ExecStart={prefix}/bin/sagad --config /etc/saga/sagad.yaml\n" in unit


def test_the_sdk_names_the_installed_plugin_directory(prefix, tmp_path):
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.25)\nproject(probe NONE)\n"
        "find_package(SagaSDK REQUIRED)\nmessage(STATUS \"dir=${SAGA_PLUGIN_INSTALL_DIR}\")\n")
    r = run(CMAKE, "-S", str(tmp_path), "-B", str(tmp_path / "build"),
            f"-DCMAKE_PREFIX_PATH={prefix}")
    assert f"dir={prefix}/lib/saga/plugins\n" in r.stdout, r.stdout


def test_installed_sagad_finds_the_installed_plugins(prefix):
    sagad = os.path.join(prefix, "bin/sagad")
    r = run(sagad, "--config", "/dev/null", "--print-config")
    assert f"plugins:\n  - {prefix}/lib/saga/plugins\n" in r.stdout
    root = tempfile.mkdtemp(prefix="saga-it-")
    d = Daemon(root)
    try:
        log = open(d.log_path, "a")
        d.proc = subprocess.Popen([sagad, "--config", "/dev/null", "--workflows", d.workflows,
                                   "--state", d.state, "--socket", d.socket],
                                  stdout=log, stderr=subprocess.STDOUT)
        log.close()
        d.wait_ready()
        code, doc = d.ctl_json("plugins")
        assert sorted(os.path.basename(p["file"]) for p in doc["plugins"]) == PLUGIN_FILES
        assert d.stop() == 0
    finally:
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
        shutil.rmtree(root, ignore_errors=True)


def test_the_unit_passes_systemd_analyze_verify(prefix):
    unit = os.path.join(prefix, "lib/systemd/system/sagad.service")
    r = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True,
                       timeout=60)
    # Any warning (an unknown key, a missing binary) is a failure, not only a non-zero exit.
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_the_unit_is_hardened(prefix):
    unit_path = os.path.join(prefix, "lib/systemd/system/sagad.service")
    unit = open(unit_path).read()
    for line in ["Type=notify", "WatchdogSec=", "User=saga", "Group=saga", "StateDirectory=saga",
                 "RuntimeDirectory=saga", "ConfigurationDirectory=saga", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "PrivateTmp=yes", "KillMode=mixed",
                 "#LoadCredential="]:
        assert f"\n{line}" in unit, line
    # systemd's own score: 2.0 or better ("OK").
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20",
                        unit_path], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout[-600:] + r.stderr


def test_the_unit_tunes_the_allocator_as_make_run_and_make_bench_do(prefix):
    # bench/README.md's figures are measured with this setting: the service must run with it.
    unit = open(os.path.join(prefix, "lib/systemd/system/sagad.service")).read()
    set_by_unit = re.search(r"^Environment=GLIBC_TUNABLES=(\S+)$", unit, re.M)
    makefile = open(os.path.join(SOURCE, "Makefile")).read()
    set_by_make = re.search(r"^SAGAD_TUNABLES \?= (\S+)$", makefile, re.M)
    assert set_by_unit and set_by_make
    assert set_by_unit.group(1) == set_by_make.group(1)
    assert "glibc.malloc.tcache_count=" in set_by_unit.group(1)


def test_sysusers_creates_the_saga_user_and_group(prefix, tmp_path):
    (tmp_path / "etc").mkdir()
    run("systemd-sysusers", f"--root={tmp_path}",
        os.path.join(prefix, "lib/sysusers.d/saga.conf"))
    passwd = (tmp_path / "etc/passwd").read_text()
    group = (tmp_path / "etc/group").read_text()
    assert any(l.startswith("saga:") and l.endswith(":/var/lib/saga:/usr/sbin/nologin")
               for l in passwd.splitlines()), passwd
    assert any(l.startswith("saga:") for l in group.splitlines()), group


def test_the_debian_package_holds_everything(tmp_path):
    run(CPACK, "-G", "DEB", "-B", str(tmp_path), "--config",
        os.path.join(BUILD, "CPackConfig.cmake"))
    debs = glob.glob(str(tmp_path / "*.deb"))
    assert len(debs) == 1, os.listdir(tmp_path)
    deb = debs[0]
    assert os.path.basename(deb).startswith("sagad_")

    listing = run("dpkg-deb", "-c", deb).stdout
    files = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    expected = ["/usr/bin/sagad", "/usr/bin/sagactl", "/usr/include/saga/plugin_abi.h",
                "/usr/lib/systemd/system/sagad.service", "/usr/lib/sysusers.d/saga.conf",
                "/etc/saga/sagad.yaml", "/etc/saga/workflows/", "/usr/share/doc/sagad/README.md"]
    expected += [f"/usr/lib/saga/plugins/{p}" for p in PLUGIN_FILES]
    for path in expected:
        assert path in files, f"{path} not in the package:\n{listing}"
    assert any(f.endswith("/cmake/SagaSDK/SagaSDKConfig.cmake") for f in files), listing
    assert not any("/build/" in f or "/tmp/" in f for f in files), listing

    control = {}
    for line in run("dpkg-deb", "-f", deb).stdout.splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            control[k] = v
    assert control["Package"] == "sagad"
    for lib in ["libuv1", "libyaml-cpp", "libcurl", "libsystemd0", "libsnappy", "libzstd"]:
        assert lib in control["Depends"], control["Depends"]
    # RocksDB is linked into sagad.
    assert "librocksdb" not in control["Depends"], control["Depends"]

    meta = tmp_path / "control"
    run("dpkg-deb", "-e", deb, str(meta))
    assert (meta / "conffiles").read_text().split() == ["/etc/saga/sagad.yaml"]
    postinst = (meta / "postinst").read_text()
    assert "systemd-sysusers" in postinst and "adduser --system" in postinst
    assert os.access(meta / "postinst", os.X_OK)
    r = run("sh", "-n", str(meta / "postinst"))

    root = tmp_path / "root"
    run("dpkg-deb", "-x", deb, str(root))
    unit = (root / "usr/lib/systemd/system/sagad.service").read_text()
    assert "ExecStart=/usr/bin/sagad --config /etc/saga/sagad.yaml\n" in unit
    assert (root / "etc/saga/sagad.yaml").read_text() == open(
        os.path.join(SOURCE, "systemd", "sagad.yaml")).read()
    # Stripped, and still runs.
    r = run(str(root / "usr/bin/sagad"), "--config", str(root / "etc/saga/sagad.yaml"),
            "--print-config")
    assert "durability: sync" in r.stdout


def stub(directory, name, body="exit 0"):
    path = directory / name
    path.write_text(f"#!/bin/sh\necho \"{name} $*\" >> {directory}/calls\n{body}\n")
    path.chmod(0o755)


def run_postinst(tmp_path, stubs, *args):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in stubs.items():
        stub(bin_dir, name, body)
    script = os.path.join(SOURCE, "systemd", "debian", "postinst")
    r = subprocess.run(["/bin/sh", script, *args], capture_output=True, text=True, timeout=30,
                       env={"PATH": str(bin_dir)})
    assert r.returncode == 0, r.stderr
    calls = bin_dir / "calls"
    return calls.read_text().splitlines() if calls.exists() else []


def test_postinst_creates_the_user_with_sysusers(tmp_path):
    calls = run_postinst(tmp_path, {"systemd-sysusers": "exit 0", "adduser": "exit 1"},
                         "configure", "")
    assert calls[0] == "systemd-sysusers /usr/lib/sysusers.d/saga.conf"
    assert not any(c.startswith("adduser") for c in calls)


def test_postinst_falls_back_to_adduser(tmp_path):
    calls = run_postinst(tmp_path, {"getent": "exit 2", "adduser": "exit 0"}, "configure", "")
    assert calls[0] == "getent passwd saga"
    assert calls[1].startswith("adduser --system --group --home /var/lib/saga")
    assert calls[1].endswith(" saga")
