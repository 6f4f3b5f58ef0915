"""Real VNC viewers against the real daemon (emulated mode), on a private X server.

TigerVNC's `vncviewer` and a viewer on gtk-vnc (`gtkvnc_viewer.py`: the widget of
virt-viewer and gvncviewer) run under Xvfb with a German
keyboard layout (``setxkbmap de``), as a user in Germany would; vncdotool stands for
clients without QEMU extended key events.  Each is checked for:

- picture: the guest's test pattern appears on the X screen pixel for pixel;
- keys: ``z``, ``y``, ``ß`` and AltGr+Q (``@``) typed on the German keyboard reach the
  guest as the keys of those positions (KEY_Y, KEY_Z, KEY_MINUS, KEY_RIGHTALT+KEY_Q).
  The real viewers type into a display whose ``keymap`` is the wrong one (en-us): only
  the key positions of extended key events can give the right keys there, so this also
  proves both viewers use them.  vncdotool sends keysyms, to a display with
  ``keymap=de``;
- pointer: a click on the viewer's picture lands on that pixel of the guest;
- resize: the guest switches to 1024x768 (SIGUSR1), the viewer shows the new screen,
  and a click still lands right (scaled to the 800x600 the guest's keyboard probed).

Every wait is for an outcome (a picture on the screen, lines in the guest's
``input.jsonl``), with generous timeouts.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from PIL import Image

from tests.helpers_daemon import DaemonRun, VncClient, waitUntil
from tests.helpers_x11 import RIGHT_ALT, XServer, findImage
from xend_vfb.guest.pattern import patternBytes

#: gtk-vnc runs in the system's Python, where Debian installs its GObject bindings.
SYSTEM_PYTHON = "/usr/bin/python3"
GTK_VNC_VIEWER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gtkvnc_viewer.py")
pytestmark = pytest.mark.timeout(300)

KEY_Q, KEY_Y, KEY_Z, KEY_MINUS, KEY_RIGHTALT, BTN_LEFT = 16, 21, 44, 12, 100, 0x110
#: z, y, ß, AltGr+Q on a German keyboard, as the guest must get them.
GERMAN_KEYS = [(KEY_Y, True), (KEY_Y, False), (KEY_Z, True), (KEY_Z, False),
               (KEY_MINUS, True), (KEY_MINUS, False),
               (KEY_RIGHTALT, True), (KEY_Q, True), (KEY_Q, False), (KEY_RIGHTALT, False)]
#: Display 0 assumes the wrong layout (only key positions type right there);
#: display 1 the right one (for keysym clients).
CONFIG = """name = 'viewed'
memory = 32
vfb = [ 'vnc=1,vncunused=1,keymap=en-us', 'vnc=1,vncunused=1,keymap=de' ]
"""


@pytest.fixture(scope="module")
def xserver():
    server = XServer()
    server.setLayout("de")
    yield server
    server.stop()


@pytest.fixture
def guest(tmp_path):
    """The daemon with the guest `viewed` (two displays); (run, domid, [port0, port1])."""
    run = DaemonRun(tmp_path / "run")
    try:
        run.start()
        path = tmp_path / "viewed.cfg"
        path.write_text(CONFIG)
        run.cli("create", str(path))
        rows = waitUntil(lambda: _connected(run), "the guest's displays to connect")
        domid = next(d["domid"] for d in run.json("list") if d["name"] == "viewed")
        yield run, domid, [row["vnc_port"] for row in rows]
    finally:
        run.cleanup()


def _connected(run):
    rows = run.json("vfb-list", "viewed") + run.json("vkbd-list", "viewed")
    if len(rows) == 4 and all(r["backend_state"] == r["frontend_state"] == 4 for r in rows):
        return sorted(run.json("vfb-list", "viewed"), key=lambda r: r["devid"])
    return None


def pattern(width, height, domid, devid=0):
    return Image.frombytes("RGB", (width, height), patternBytes(width, height, domid, devid),
                           "raw", "BGRX")


def received(run, domid, kind):
    """The events of `kind` (key, pos) keyboard vkbd/0 received so far."""
    return [e for e in run.inputEvents(domid) if e["dev"] == "vkbd/0" and e["type"] == kind]


def newInput(run, domid, kind, before, count):
    """Wait for `count` events of `kind` at vkbd/0 after the first `before`; all of them.
    (Viewers also send positions of their own, when the pointer enters them.)"""
    def events():
        mine = received(run, domid, kind)
        return mine[before:] if len(mine) >= before + count else None
    return waitUntil(events, f"{count} {kind} events at the guest")


def viewerCommand(name, port):
    if name == "tigervnc":
        return ["vncviewer", f"127.0.0.1::{port}"]
    return [SYSTEM_PYTHON, GTK_VNC_VIEWER, "127.0.0.1", str(port)]


def click(xserver, run, domid, x, y, where):
    """Click at (`x`, `y`) of the X screen: the guest gets BTN_LEFT at `where` (its
    coordinates): the last position before the button goes down."""
    keys = len(received(run, domid, "key"))
    xserver.click(x, y)
    assert [(e["keycode"], e["pressed"]) for e in newInput(run, domid, "key", keys, 2)] == [
        (BTN_LEFT, True), (BTN_LEFT, False)]
    events = [e for e in run.inputEvents(domid) if e["dev"] == "vkbd/0"]
    down = max(i for i, e in enumerate(events) if e.get("keycode") == BTN_LEFT and e["pressed"])
    last = next(e for e in reversed(events[:down]) if e["type"] == "pos")
    assert (last["abs_x"], last["abs_y"]) == where, events[-8:]


@pytest.mark.parametrize("viewer", ["tigervnc", "gtk-vnc"])
def test_a_real_viewer(xserver, guest, viewer):
    run, domid, ports = guest
    process = subprocess.Popen(viewerCommand(viewer, ports[0]), env=xserver.env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Picture: the guest's pattern, pixel for pixel, somewhere in the viewer's window.
        screen = pattern(800, 600, domid)
        origin = waitUntil(lambda: findImage(xserver.screenshot(), screen),
                           f"{viewer} to show the guest's screen")
        window = waitUntil(lambda: xserver.windowNamed("viewed (vfb/0)"), "its window")

        # Keys: physical keys of a German keyboard, into a display that assumes en-us.
        xserver.focus(window)
        before = len(received(run, domid, "key"))
        for keysym in ("z", "y", "ssharp"):
            xserver.press(xserver.keycode(keysym))
        xserver.press(RIGHT_ALT, xserver.keycode("q"))
        keys = newInput(run, domid, "key", before, len(GERMAN_KEYS))
        assert [(e["keycode"], e["pressed"]) for e in keys] == GERMAN_KEYS

        # Pointer: a click on pixel (100, 50) of the picture.
        click(xserver, run, domid, origin[0] + 100, origin[1] + 50, (100, 50))

        # Resize: the guest switches mode; the viewer follows, the pointer stays right.
        run.guest(domid).kill(signal.SIGUSR1)
        bigger = pattern(1024, 768, domid)
        origin = waitUntil(lambda: findImage(xserver.screenshot(), bigger),
                           f"{viewer} to show the resized screen", timeout=60)
        click(xserver, run, domid, origin[0] + 1000, origin[1] + 700,
              (1000 * 800 // 1024, 700 * 600 // 768))
        assert process.poll() is None, process.stderr.read().decode(errors="replace")[-2000:]
    finally:
        process.terminate()
        process.wait(30)


def test_a_client_without_extended_key_events(guest):
    """vncdotool sends keysyms only: the display's keymap=de makes them German keys."""
    run, domid, ports = guest

    def keyboard1():
        return [e for e in run.inputEvents(domid) if e["dev"] == "vkbd/1"]

    with VncClient(ports[1]) as vnc:
        for key in ("z", "y", "ß", "@"):
            vnc.command("key", key)
    events = waitUntil(lambda: len(keyboard1()) >= 10 and keyboard1(), "the keys at the guest")
    assert [e["keycode"] for e in events if e["pressed"]] == [
        KEY_Y, KEY_Z, KEY_MINUS, KEY_RIGHTALT, KEY_Q]
    assert not [e for e in events if e["pressed"] is False and e["keycode"] not in
                (KEY_Y, KEY_Z, KEY_MINUS, KEY_RIGHTALT, KEY_Q)]


def test_gtk_vnc_reboots_the_guest_through_power_control(xserver, tmp_path):
    """gtk-vnc's power control (xvp), as gvncviewer's Power menu: an authenticated viewer
    reboots the guest (`vncpowercontrol=1`), and stays connected to see it come back."""
    run = DaemonRun(tmp_path / "run")
    process = None
    try:
        run.start()
        path = tmp_path / "powered.cfg"
        path.write_text("name = 'powered'\nmemory = 32\n"
                        "vfb = [ 'vnc=1,vncunused=1,vncpasswd=pw,vncpowercontrol=1' ]\n")
        run.cli("create", str(path))
        port = waitUntil(lambda: run.json("vfb-list", "powered")[0]["vnc_port"],
                         "the display's port")
        old = next(d["domid"] for d in run.json("list") if d["name"] == "powered")
        process = subprocess.Popen(
            [SYSTEM_PYTHON, GTK_VNC_VIEWER, "127.0.0.1", str(port), "--password", "pw",
             "--power", "reboot"],
            env=xserver.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert process.stdout.readline().strip() == "power-control-requested"

        def remade():
            domains = [d for d in run.json("list") if d["name"] == "powered"]
            return domains and domains[0]["domid"] != old and domains[0]["domid"]

        new = waitUntil(remade, "the guest to be rebooted as a new domain", timeout=60)
        assert f"domain {old}: reboot, as a VNC viewer asked" in run.log()
        # The same viewer, never reconnected, shows the new domain's screen.
        waitUntil(lambda: findImage(xserver.screenshot(), pattern(800, 600, new)),
                  "the viewer to show the rebooted guest", timeout=60)
        assert process.poll() is None
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
        run.cleanup()
