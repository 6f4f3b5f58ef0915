"""A private X server (Xvfb) for tests that run real X clients, such as VNC viewers.

`XServer` starts Xvfb on a display number it picks itself (``-displayfd``), sets its
keyboard layout with ``setxkbmap``, and drives it through python-xlib: screenshots of
the whole screen, finding an image on it, and keys and pointer through the XTEST
extension, as a person's keyboard and mouse would (physical keys, so the layout
decides what they mean).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from typing import Any

from PIL import Image
from Xlib import XK, X, display
from Xlib.ext import xtest

__all__ = ["XServer", "findImage", "RIGHT_ALT"]

#: The evdev keycode of the right Alt key (AltGr in most European layouts).
RIGHT_ALT = 108
_WAIT = 30.0


class XServer:
    """Xvfb with one `width` x `height` screen, depth 24; `stop` ends it."""

    def __init__(self, width: int = 1280, height: int = 1024) -> None:
        read, write = os.pipe()
        self.process = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", f"{width}x{height}x24",
             "-nolisten", "tcp", "-noreset"],
            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write)
        with os.fdopen(read) as f:
            number = f.readline().strip()  # written once the server accepts clients
        if not number:
            raise RuntimeError(f"Xvfb exited with status {self.process.wait()}")
        self.name = f":{number}"
        self.env = dict(os.environ, DISPLAY=self.name)
        self.env.pop("XAUTHORITY", None)
        self.display = display.Display(self.name)
        self.root = self.display.screen().root

    def setLayout(self, layout: str) -> None:
        """The keyboard layout of the server, as ``setxkbmap`` sets it."""
        subprocess.run(["setxkbmap", layout], env=self.env, check=True, timeout=_WAIT)
        # python-xlib keeps the key mapping it read when it connected: connect again.
        self.display.close()
        self.display = display.Display(self.name)
        self.root = self.display.screen().root

    def stop(self) -> None:
        self.display.close()
        self.process.terminate()
        self.process.wait(_WAIT)

    # -- looking

    def screenshot(self) -> Image.Image:
        """The whole screen as an RGB image."""
        geometry = self.root.get_geometry()
        raw = self.root.get_image(0, 0, geometry.width, geometry.height, X.ZPixmap,
                                  0xFFFFFFFF)
        return Image.frombytes("RGB", (geometry.width, geometry.height), raw.data, "raw",
                               "BGRX")

    def windowNamed(self, part: str) -> Any:
        """A mapped top-level window whose name contains `part`, or None."""
        for window in self.root.query_tree().children:
            try:
                name = window.get_wm_name() or ""
                mapped = window.get_attributes().map_state == X.IsViewable
            except Exception:  # it went away meanwhile
                continue
            if mapped and part in str(name):
                return window
        return None

    # -- typing and pointing (XTEST: as real devices)

    def focus(self, window: Any) -> None:
        window.set_input_focus(X.RevertToParent, X.CurrentTime)
        self.display.sync()

    def keycode(self, keysym: str) -> int:
        """The key that types `keysym` (an X keysym name: ``z``, ``ssharp``) in the layout."""
        code = self.display.keysym_to_keycode(XK.string_to_keysym(keysym))
        if not code:
            raise ValueError(f"no key types {keysym!r} in this layout")
        return code

    def press(self, *keycodes: int) -> None:
        """Press the keys in order, then release them in reverse order (a chord)."""
        for code in keycodes:
            xtest.fake_input(self.display, X.KeyPress, code)
        for code in reversed(keycodes):
            xtest.fake_input(self.display, X.KeyRelease, code)
        self.display.sync()

    def click(self, x: int, y: int, button: int = 1) -> None:
        """Move the pointer to (`x`, `y`) and click `button` there."""
        xtest.fake_input(self.display, X.MotionNotify, x=x, y=y)
        xtest.fake_input(self.display, X.ButtonPress, button)
        xtest.fake_input(self.display, X.ButtonRelease, button)
        self.display.sync()


def findImage(screen: Image.Image, image: Image.Image) -> tuple[int, int] | None:
    """Where `image` appears, pixel for pixel, on `screen` (its top-left corner), or None."""
    image = image.convert("RGB")
    width, height = image.size
    screenWidth, screenHeight = screen.size
    haystack, needle = screen.tobytes(), image.tobytes()
    firstRow = needle[:width * 3]
    for y in range(screenHeight - height + 1):
        row = haystack[y * screenWidth * 3:(y + 1) * screenWidth * 3]
        i = row.find(firstRow)
        while i >= 0:
            x = i // 3
            if i % 3 == 0 and x + width <= screenWidth and all(
                    haystack[((y + r) * screenWidth + x) * 3:][:width * 3]
                    == needle[r * width * 3:(r + 1) * width * 3] for r in range(height)):
                return x, y
            i = row.find(firstRow, i + 1)
    return None


def waitFor(check: Callable[[], Any], what: str, timeout: float = _WAIT) -> Any:
    """Poll `check()` until it returns something truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
