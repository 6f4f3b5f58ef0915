"""Hotplug into a running guest: vfb-attach/detach and vkbd-attach/detach, with a VNC
client (vncdotool, in a child process) connected the whole time."""

import os
import re
import signal

from tests.helpers_daemon import (
    EXAMPLES,
    VncClient,
    allConnected,
    devices,
)
from tests.helpers_wait import waitUntil

#: Any node of device 1 (either class) of domain 1: frontend, backend or private record.
LEFTOVER = re.compile(r"(device/(vfb|vkbd)/1|backend/(vfb|vkbd)/1/1)(/|$)")
#: Linux KEY_A: what the en-us keymap turns the keysym 'a' into.
KEY_A = 30


def keyEvents(run, domid, dev):
    return [e for e in run.inputEvents(domid)
            if e.get("dev") == dev and e.get("type") == "key" and e.get("keycode") == KEY_A]


def guestLog(run, domid):
    with open(os.path.join(run.runDir, "guests", str(domid), "guest.log")) as f:
        return f.read()


def backendLog(run, domid):
    with open(os.path.join(run.runDir, "backends", f"{domid}.log")) as f:
        return f.read()


def test_attach_and_detach_a_display_with_a_client_connected(run, demo, tmp_path):
    backend = run.backend(1)
    port0 = devices(run, "demo", "vfb")[0]["vnc_port"]

    with VncClient(port0) as first:
        out = run.cli("vfb-attach", "demo", "vnc=1,vncunused=1").stdout
        match = re.fullmatch(r"vfb 1 attached to domain 1\n"
                             r"  vfb 1: VNC on 127\.0\.0\.1:(\d+) \(keyboard: vkbd 1\)\n", out)
        assert match, out
        port1 = int(match.group(1))
        assert port1 != port0
        # The guest probed the new display and its keyboard on its own (Connected).
        waitUntil(lambda: allConnected(run, "demo"), "the new devices to connect")
        vfb = devices(run, "demo", "vfb")
        assert (vfb[1]["vnc_port"], vfb[1]["vkbd"]) == (port1, 1)
        assert sorted(devices(run, "demo", "vkbd")) == [0, 1]
        assert run.backend(1) == backend  # the same backend serves the new devices

        # Typing into each display arrives from that display's own keyboard.
        with VncClient(port1) as second:
            second.command("key", "a")
            waitUntil(lambda: keyEvents(run, 1, "vkbd/1"), "a key event from vkbd/1")
            second.command("capture", str(tmp_path / "second.png"))
        first.command("key", "a")
        waitUntil(lambda: keyEvents(run, 1, "vkbd/0"), "a key event from vkbd/0")
        assert len(keyEvents(run, 1, "vkbd/1")) == 2  # press and release, nothing from 0
        assert {e["pressed"] for e in keyEvents(run, 1, "vkbd/1")} == {True, False}

        # Graceful detach: the guest goes Closed first, then the areas are removed.
        run.cli("vfb-detach", "demo", "1")
        assert sorted(devices(run, "demo", "vfb")) == [0]
        assert sorted(devices(run, "demo", "vkbd")) == [0]
        assert not [p for p in run.xenstore() if LEFTOVER.search(p)]
        text = guestLog(run, 1)
        for dev in ("vfb/1", "vkbd/1"):
            closed = text.index(f"{dev}: Closing -> Closed")
            assert closed < text.index(f"{dev}: frontend area removed")
        # Display 0 and its client were never disturbed.
        first.command("capture", str(tmp_path / "first.png"))
        assert allConnected(run, "demo") and run.backend(1) == backend


def test_forced_detach_does_not_wait_for_the_guest(run):
    run.start()
    run.cli("create", os.path.join(EXAMPLES, "demo.cfg"))
    run.cli("vfb-attach", "demo", "vnc=1,vncunused=1")
    waitUntil(lambda: allConnected(run, "demo"), "demo's devices to connect")
    guest = run.guest(1)
    guest.kill(signal.SIGSTOP)  # a guest that no longer answers
    try:
        run.cli("vfb-detach", "demo", "1", "--force")
    finally:
        guest.kill(signal.SIGCONT)
    # A graceful detach would have waited for the frozen guest and then logged that
    # the device "did not close"; --force does not wait at all.
    assert "did not close" not in run.log()
    assert devices(run, "demo", "vfb")[0]["frontend_state"] == 4
    # The backend's last state write after the toolstack removed the area must not
    # bring the area back (it writes `state` only where the area still exists).
    for dev in ("vfb/1", "vkbd/1"):
        waitUntil(lambda d=dev: f"<{d} of domain 1> released" in backendLog(run, 1),
                  f"the backend to release {dev}")
    assert sorted(p for p in run.xenstore() if LEFTOVER.search(p)) == []
