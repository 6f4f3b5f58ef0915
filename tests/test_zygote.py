"""The zygote backends are forked from: no reactor before the fork, and a child that
serves its domain under the name `xend-vfb-backend`."""

import json
import os
import signal
import socket
import subprocess
import sys

from tests.helpers_wait import waitUntil
from xend_vfb.backend.zygote import setCommandLine
from xend_vfb.procid import ProcessId


def test_importing_the_backend_installs_no_reactor():
    # Each forked backend must create its own reactor: a reactor made in the zygote
    # (its epoll instance) would be shared by every child.
    code = ("import sys, xend_vfb.backend.zygote, xend_vfb.daemon, xend_vfb.cli; "
            "print('twisted.internet.reactor' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_command_line_is_rewritten_in_place():
    code = ("import sys, time; from xend_vfb.backend.zygote import setCommandLine; "
            "setCommandLine(['xend-vfb-backend', '--domid', '7']); print('ok', flush=True); "
            "time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", code, "_" * 100], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ok\n"
        with open(f"/proc/{child.pid}/cmdline", "rb") as f:
            words = f.read().rstrip(b"\0").split(b"\0")
        assert words == [b"xend-vfb-backend", b"--domid", b"7"]
    finally:
        child.kill()
        child.wait()
    assert setCommandLine  # importable for the daemon's use


def request(path, message):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(json.dumps(message).encode() + b"\n")
        return json.loads(sock.makefile().readline())


def renamed(pid):
    """The first words of the process's command line once it is `xend-vfb-backend`."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        words = f.read().split(b"\0")[:3]
    return words if words[0] == b"xend-vfb-backend" else None


def test_zygote_forks_a_named_backend(tmp_path):
    path = str(tmp_path / "zygote.sock")
    zygote = subprocess.Popen(
        [sys.executable, "-m", "xend_vfb.backend.zygote", "--socket", path,
         "--title-space=" + "_" * 300], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert zygote.stdout.readline().startswith(b"zygote ")
        assert request(path, {"op": "ping"}) == {"ok": True, "pid": zygote.pid}
        log = tmp_path / "backend.log"
        # No xenstored at this path: the backend starts, fails to connect, and exits.
        reply = request(path, {"op": "spawn", "log": str(log),
                               "argv": ["--domid", "3", "--run-dir", str(tmp_path)],
                               "env": {"XENSTORED_PATH": str(tmp_path / "none")}})
        assert reply["ok"]
        child = ProcessId.of(reply["pid"])
        assert child is not None
        # The child renames itself just after the fork.
        words = waitUntil(lambda: renamed(child.pid), "the forked backend to rename itself")
        assert words == [b"xend-vfb-backend", b"--domid", b"3"]
        assert os.getsid(child.pid) == child.pid  # a session of its own
        waitUntil(lambda: not child.alive(), "the backend to exit and the zygote to reap it")
        assert "cannot connect to xenstored" in log.read_text()
        assert request(path, {"op": "frobnicate"}) == {
            "ok": False, "error": "zygote: unknown request 'frobnicate'"}
    finally:
        zygote.send_signal(signal.SIGTERM)
        zygote.wait()
