"""Power control from a VNC viewer (xvp, `vncpowercontrol=1`), end to end in emulated mode:
a viewer's request goes from the backend to the daemon, which shuts the guest down,
reboots it or resets it through the guest's lifecycle (test_daemon_lifecycle.py).

The viewer is a small blocking RFB client written here from the xvp specification
(vncdotool has no xvp); the server's side of the extension is tested in
test_rfb_xvp.py.
"""

import socket
import struct

import pytest

from tests.helpers_daemon import (
    assertNothingLeftOf,
    connectedAs,
    createGuest,
    domainOf,
    guestConfig,
)
from tests.helpers_wait import WAIT, waitUntil
from xend_vfb.rfb.vncauth import vncAuthResponse

pytestmark = pytest.mark.timeout(300)

XVP = -309
XVP_FAIL, XVP_INIT, XVP_SHUTDOWN, XVP_REBOOT, XVP_RESET = 0, 1, 2, 3, 4


class XvpViewer:
    """RFB 3.8 with VNC authentication, listing xvp; reads server messages as they come."""

    def __init__(self, port: int, password: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.recv(12)
        self.sock.sendall(b"RFB 003.008\n")
        count = self.recv(1)[0]
        assert 2 in self.recv(count)
        self.sock.sendall(b"\x02")
        self.sock.sendall(vncAuthResponse(password, self.recv(16)))
        assert self.recv(4) == b"\0\0\0\0", "authentication failed"
        self.sock.sendall(b"\x01")
        _, _, _, nameLength = struct.unpack("!HH16sI", self.recv(24))
        self.recv(nameLength)
        self.sock.sendall(struct.pack("!BxHii", 2, 2, 0, XVP))

    def recv(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "the server closed the connection"
            data += chunk
        return data

    def xvpMessage(self) -> tuple[int, int]:
        """The next server message, which must be an xvp one: (version, code)."""
        kind, version, code = struct.unpack("!BxBB", self.recv(4))
        assert kind == 250, kind
        return version, code

    def ask(self, code: int) -> None:
        self.sock.sendall(struct.pack("!BxBB", 250, 1, code))

    def close(self) -> None:
        self.sock.close()


def powerGuest(run, tmp_path, extra=""):
    """The guest `life` with power control on; its domid and VNC port."""
    path = guestConfig(tmp_path)
    with open(path) as f:
        text = f.read().replace("keymap=de", "keymap=de,vncpowercontrol=1")
    with open(path, "w") as f:
        f.write(text + extra)
    run.cli("create", path)
    waitUntil(lambda: domainOf(run, "life") and run.json("vfb-list", "life")[0]["vnc_port"],
              "life's display")
    domain = domainOf(run, "life")
    return domain["domid"], run.json("vfb-list", "life")[0]["vnc_port"]


def test_a_viewer_reboots_resets_and_shuts_down_the_guest(run, tmp_path):
    run.start()
    old, port = powerGuest(run, tmp_path)
    viewer = XvpViewer(port, "pw")
    assert viewer.xvpMessage() == (1, XVP_INIT)
    viewer.ask(XVP_REBOOT)
    rebooted = connectedAs(run, "life", old)
    assertNothingLeftOf(run, old)
    assert f"guest life (domain {old}): reboot, so restart" in run.log()
    # The viewer stayed connected through the reboot (the display was held).
    viewer.ask(XVP_RESET)
    reset = connectedAs(run, "life", rebooted)
    assert f"domain {rebooted}: reset, as a VNC viewer asked" in run.log()
    viewer.ask(XVP_SHUTDOWN)
    waitUntil(lambda: domainOf(run, "life") is None, "the guest to power off")
    assertNothingLeftOf(run, reset)
    assert f"guest life (domain {reset}): poweroff, so destroy" in run.log()
    assert not [path for path in run.xenstore() if path.startswith("/xend-vfb/power/")]
    viewer.close()


def test_without_vncpowercontrol_a_viewer_is_refused(run, tmp_path):
    run.start()
    old = createGuest(run, tmp_path)
    port = run.json("vfb-list", "life")[0]["vnc_port"]
    viewer = XvpViewer(port, "pw")
    viewer.ask(XVP_REBOOT)
    assert viewer.xvpMessage() == (1, XVP_FAIL)  # and no XVP_INIT before it
    viewer.close()
    assert domainOf(run, "life")["domid"] == old
    assert f"/xend-vfb/power/{old}" not in run.xenstore()


def test_vncpowercontrol_needs_a_password(run, tmp_path):
    path = tmp_path / "open.cfg"
    path.write_text("name = 'open'\nvfb = [ 'vnc=1,vncpowercontrol=1' ]\n")
    error = run.fails("create", "-n", str(path))
    assert "vfb[0]: vncpowercontrol=1 needs vncpasswd" in error
