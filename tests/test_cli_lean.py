"""The CLI's client commands stay lean: the standard library and the pure config modules.

Every command but `daemon` is one request on the control socket; importing Twisted, Pillow
or the daemon for it would cost a client call ten times its request (issue 15).  Each
command runs here as the real console script under `python -X importtime`, against a
stand-in daemon that answers with canned replies, and the modules it imported are read
from that trace: an import is an outcome, so nothing here is timed.
"""

import base64
import json
import os
import re
import socketserver
import subprocess
import sys
import threading

import pytest

XEND_VFB = os.path.join(os.path.dirname(sys.executable), "xend-vfb")
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples")
NO_DAEMON = "Error: the xend-vfb daemon is not running (start it with: xend-vfb daemon)"

#: Packages a client command must not import (and nothing under them).
HEAVY = ("twisted", "PIL", "zope", "pyxs", "pygame", "xend_vfb.daemon", "xend_vfb.jsonline",
         "xend_vfb.supervisor", "xend_vfb.host", "xend_vfb.backend", "xend_vfb.rfb",
         "xend_vfb.xenstore", "xend_vfb.guestmem", "xend_vfb.guest", "xend_vfb.log")

VFB = {"devid": 0, "vnc_listen": "127.0.0.1", "vnc_port": 5900, "vkbd": 0}
DEVICES = {"vfb": [VFB], "vkbd": [{"devid": 0}]}
#: What the stand-in daemon answers, per op (`ok` is added).
REPLIES = {
    "ping": {"pid": 1, "emulated": False},
    "list": {"domains": [{"name": "demo", "domid": 1, "devices": DEVICES}]},
    "create": {"name": "demo", "domid": 1, "devices": DEVICES},
    "restore": {"name": "demo", "domid": 2, "devices": DEVICES},
    "attach": {"domid": 1, "device": dict(VFB, devid=1, vnc_port=5901)},
    "devices": {"devices": [dict(VFB, backend_state=4, frontend_state=4)]},
    "screenshot": {"png": base64.b64encode(b"\x89PNG not really").decode()},
    "reboot": {"now": 2},
    "shutdown": {"now": None},
    "migrate": {"now": 3},
    "vnc_viewer": {"domid": 1, "listen": "0.0.0.0", "port": 5901, "ca": "/etc/x/ca-cert.pem",
                   "passwd_file": base64.b64encode(b"\xdb\xd8<\xfdrz\x14X").decode()},
    "console_url": {"url": "http://127.0.0.1:6080/console#t0k3n"},
}


class _StandIn(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        request = json.loads(self.rfile.readline())
        self.server.requests.append(request)
        reply = {"ok": True, **REPLIES.get(request["op"], {})}
        self.wfile.write(json.dumps(reply).encode() + b"\n")


@pytest.fixture
def daemon(tmp_path):
    """A stand-in daemon on the run dir's socket; its `requests` are what it was sent."""
    runDir = tmp_path / "run"
    runDir.mkdir()
    server = socketserver.UnixStreamServer(str(runDir / "xend-vfb.sock"), _StandIn)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def runCli(runDir, *args, cwd=None, input=None):
    """`xend-vfb ARGS` (`input` on its standard input) with its import trace: (exit status,
    stdout, stderr, modules)."""
    env = dict(os.environ, XEND_VFB_RUN_DIR=str(runDir))
    env.pop("DISPLAY", None)
    result = subprocess.run([sys.executable, "-X", "importtime", XEND_VFB, *args], env=env,
                            cwd=cwd, input=input, capture_output=True, text=True, timeout=60)
    modules, stderr = set(), []
    for line in result.stderr.splitlines():
        if line.startswith("import time:"):
            match = re.fullmatch(r"import time:\s+\d+ \|\s+\d+ \| +(\S+)", line)
            if match:  # not the header line
                modules.add(match.group(1))
        else:
            stderr.append(line)
    return result.returncode, result.stdout, "\n".join(stderr), modules


def heavy(modules):
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


COMMANDS = [
    (["list"], "list", "Name                       ID  Displays\n"
                       "demo                        1  vfb 0: 127.0.0.1:5900\n"),
    (["list", "--json"], "list", '"name": "demo"'),
    (["destroy", "demo"], "destroy", ""),
    (["create", os.path.join(EXAMPLES, "demo.cfg")], "create",
     "Started domain demo (id=1)\n  vfb 0: VNC on 127.0.0.1:5900 (keyboard: vkbd 0)\n"),
    (["vfb-attach", "demo", "vnc=1"], "attach", "vfb 1 attached to domain 1\n"),
    (["vkbd-attach", "demo", ""], "attach", "vkbd 1 attached to domain 1\n"),
    (["vfb-detach", "demo", "1"], "detach", ""),
    (["vkbd-detach", "demo", "1", "--force"], "detach", ""),
    (["vfb-list", "demo"], "devices", "  0  Connected    Connected    127.0.0.1:5900\n"),
    (["vkbd-list", "demo", "--json"], "devices", '"devid": 0'),
    (["screenshot", "demo", "shot.png"], "screenshot", "wrote shot.png\n"),
    (["reboot", "demo", "--wait"], "reboot", "Domain demo rebooted (id=2)\n"),
    (["shutdown", "demo"], "shutdown", ""),
    (["save", "demo", "demo.save"], "save", "Saved domain demo to demo.save\n"),
    (["restore", "demo.save"], "restore", "Restored domain demo (id=2)\n"),
    (["migrate", "demo", "localhost"], "migrate", "Migrated domain demo to localhost (id=3)\n"),
    (["vnc-passwd", "demo", "--devid", "1", "--expire", "60"], "vnc_passwd", ""),
    (["console-url", "demo", "--devid", "1"], "console_url",
     "http://127.0.0.1:6080/console#t0k3n\n"),
    (["stop"], "stop", ""),
    (["stop", "--all"], "stop", ""),
    (["-v", "list"], "list", "Name"),
]


@pytest.mark.parametrize(("args", "op", "output"), COMMANDS,
                         ids=[" ".join(args) for args, _, _ in COMMANDS])
def test_a_client_command_imports_nothing_heavy(daemon, tmp_path, args, op, output):
    status, out, err, modules = runCli(daemon.server_address.rsplit("/", 1)[0], *args,
                                       cwd=tmp_path, input="s3cret\n")
    assert (status, err) == (0, "")
    assert output in out
    assert daemon.requests[-1]["op"] == op
    assert "xend_vfb.cli" in modules  # the trace is read right
    assert heavy(modules) == []


def test_vnc_passwd_reads_standard_input_only(daemon, tmp_path):
    runDir = daemon.server_address.rsplit("/", 1)[0]
    env = dict(os.environ, XEND_VFB_RUN_DIR=runDir)
    result = subprocess.run([XEND_VFB, "vnc-passwd", "demo", "--expire", "never"],
                            input="s3cret\nignored\n", env=env, capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert daemon.requests[-1] == {"op": "vnc_passwd", "domain": "demo", "devid": 0,
                                   "password": "s3cret", "expire": None}


def test_vncviewer_runs_the_viewer_with_the_password_on_its_stdin(daemon, tmp_path):
    """$VNCVIEWER on host::port (0.0.0.0 is reached at 127.0.0.1), with the CA when TLS is
    on, and with --autopass the password file on its standard input."""
    viewer = tmp_path / "viewer"
    viewer.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$0.args\"\n"
                      "cat > \"$0.stdin\"\nexit 3\n")
    viewer.chmod(0o755)
    runDir = daemon.server_address.rsplit("/", 1)[0]
    env = dict(os.environ, XEND_VFB_RUN_DIR=runDir, VNCVIEWER=str(viewer))
    result = subprocess.run([XEND_VFB, "vncviewer", "demo", "--autopass"], env=env,
                            capture_output=True, timeout=60)
    assert result.returncode == 3  # the viewer's own
    assert daemon.requests[-1] == {"op": "vnc_viewer", "domain": "demo", "devid": 0,
                                   "autopass": True}
    assert (tmp_path / "viewer.args").read_text().split() == [
        "-X509CA", "/etc/x/ca-cert.pem", "-passwd", "/dev/stdin", "127.0.0.1::5901"]
    assert (tmp_path / "viewer.stdin").read_bytes() == b"\xdb\xd8<\xfdrz\x14X"
    env["VNCVIEWER"] = str(tmp_path / "missing")
    result = subprocess.run([XEND_VFB, "vncviewer", "demo"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stderr) == (
        1, f"Error: cannot run {tmp_path}/missing: No such file or directory (set VNCVIEWER "
        "to the VNC viewer to use)\n")


def test_the_screenshot_is_written_as_received(daemon, tmp_path):
    runCli(daemon.server_address.rsplit("/", 1)[0], "screenshot", "demo", "shot.png",
           cwd=tmp_path)
    assert (tmp_path / "shot.png").read_bytes() == b"\x89PNG not really"


@pytest.mark.parametrize("args", [["list"], ["stop"], ["vfb-list", "demo"]])
def test_without_a_daemon_the_error_is_lean_too(tmp_path, args):
    status, out, err, modules = runCli(tmp_path / "run", *args)
    assert (status, out, err) == (1, "", NO_DAEMON)
    assert heavy(modules) == []


@pytest.mark.parametrize("args", [["--help"], ["list", "--help"], ["create", "-n",
                                  os.path.join(EXAMPLES, "demo.cfg")], ["bogus"]])
def test_help_dry_runs_and_mistakes_are_lean(tmp_path, args):
    status, out, err, modules = runCli(tmp_path / "run", *args)
    assert status in (0, 2)
    assert heavy(modules) == []
