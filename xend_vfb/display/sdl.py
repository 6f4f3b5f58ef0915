"""The SDL display: the guest's screen in a local window (xm's ``sdl=1``), through pygame.

The window shows one `IScreen` at its own size and sends the keyboard and
mouse to one `IInputSink`.  While it is open it is the display's one viewer
(an observer of the screen, so the guest is asked to refresh); closing it
(the window manager's close button) only closes the window: the device and
the backend carry on, as they do when the last VNC viewer leaves.

Drawing: what the screen reports changed is collected and drawn at the next
tick (``RATE`` per second, from the reactor), only those rectangles, blitted
from a pygame surface that shares the screen's memory (no copy, no per-pixel
Python).  Events are pumped at the same tick; nothing runs while the window is
closed.

Keys: SDL reports key positions as USB HID usage ids (SDL scancodes), and
positions are what the guest wants, so a key goes through one table to its
Linux keycode, whatever the host's or the guest's layout (no keymap is
needed, unlike VNC's keysyms).  Pointer: positions when the guest asked for an
absolute pointer, else SDL's relative motion; buttons 1-3 become
BTN_LEFT/BTN_MIDDLE/BTN_RIGHT; each wheel step is one dz of -1 (up) or +1.
Keys and buttons held when the window loses focus or closes are released.

Process-wide state, on purpose: pygame has one display per process, and
SDL's X11 driver takes the X display and its cookie from the environment when
the video system starts.  So `start` sets ``DISPLAY`` and (when given)
``XAUTHORITY`` in this process's environment, chooses SDL's ``x11`` driver
unless ``SDL_VIDEODRIVER`` is already set (tests use ``dummy``), and keeps
SDL from taking SIGINT/SIGTERM from Twisted (``SDL_NO_SIGNAL_HANDLERS``).  A
backend process serves one domain, so this is acceptable; but only one SDL
window can be open per backend: a second one fails to start with a
DeviceError saying so.  pygame is imported on the first `start`, not with this
module, so backends without SDL displays never load it.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from xend_vfb.display.region import DirtyRegion
from xend_vfb.display.screen import IDisplay, IInputSink, IScreen, IScreenObserver
from xend_vfb.errors import DeviceError
from xend_vfb.rfb.input import BTN_LEFT, BTN_MIDDLE, BTN_RIGHT

__all__ = ["SDLDisplay", "SCANCODES", "RATE"]

log = Logger()

#: Ticks per second while the window is open: draw what changed, handle input.
RATE = 60

# SDL scancodes (USB HID keyboard usage ids) -> Linux keycodes
# (linux/input-event-codes.h), as runs: the first scancode of a run, then the
# keycodes of it and the scancodes that follow it.  A standard 105-key
# keyboard (ISO: with the key left of Z), plus F13-F24, the Japanese and
# Korean keys and the volume keys.
_RUNS: tuple[tuple[int, tuple[int, ...]], ...] = (
    (4, (30, 48, 46, 32, 18, 33, 34, 35, 23, 36, 37, 38, 50,  # A B C D E F G H I J K L M
         49, 24, 25, 16, 19, 31, 20, 22, 47, 17, 45, 21, 44)),  # N O P Q R S T U V W X Y Z
    (30, (2, 3, 4, 5, 6, 7, 8, 9, 10, 11)),  # 1 2 3 4 5 6 7 8 9 0
    (40, (28, 1, 14, 15, 57)),  # Return Escape Backspace Tab Space
    (45, (12, 13, 26, 27, 43)),  # - = [ ] backslash
    (50, (43, 39, 40, 41, 51, 52, 53)),  # ISO # (KEY_BACKSLASH), ; ' ` , . /
    (57, (58,)),  # Caps Lock
    (58, (59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 87, 88)),  # F1 .. F12
    (70, (99, 70, 119)),  # Print Screen (SysRq), Scroll Lock, Pause
    (73, (110, 102, 104, 111, 107, 109)),  # Insert Home PageUp Delete End PageDown
    (79, (106, 105, 108, 103)),  # Right Left Down Up
    (83, (69, 98, 55, 74, 78, 96)),  # Num Lock, keypad / * - + Enter
    (89, (79, 80, 81, 75, 76, 77, 71, 72, 73, 82, 83)),  # keypad 1 .. 9, 0, .
    (100, (86, 127, 116, 117)),  # ISO \ left of Z (KEY_102ND), Menu (Compose), Power, keypad =
    (104, (183, 184, 185, 186, 187, 188, 189, 190, 191, 192, 193, 194)),  # F13 .. F24
    (127, (113, 115, 114)),  # Mute, Volume Up, Volume Down
    (133, (121,)),  # keypad , (Brazilian)
    (135, (89, 93, 124, 92, 94)),  # Ro, Katakana/Hiragana, Yen, Henkan, Muhenkan
    (144, (122, 123)),  # Hangeul, Hanja
    (224, (29, 42, 56, 125,  # left Ctrl, Shift, Alt, Meta
           97, 54, 100, 126)),  # right Ctrl, Shift, AltGr, Meta
)

#: SDL scancode -> Linux keycode.
SCANCODES: dict[int, int] = {
    first + i: keycode for first, keycodes in _RUNS for i, keycode in enumerate(keycodes)
}

_BUTTONS = {1: BTN_LEFT, 2: BTN_MIDDLE, 3: BTN_RIGHT}
#: Wheel steps handled from one event at most (a runaway value cannot flood the guest).
_MAX_WHEEL_STEPS = 16


def _pygame() -> Any:
    """pygame, imported quietly on first use."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    return pygame


@implementer(IDisplay, IScreenObserver)
class SDLDisplay:
    """A local window on X display `display` showing `screen`, typing into `input`.

    `xauthority` is the X cookie file (None: whatever ``XAUTHORITY`` the
    process has); `title` the window's title.  `reactor` (IReactorTime) runs
    the ticks.  See the module's docstring for the process-wide settings.
    """

    def __init__(
        self,
        screen: IScreen,
        input: IInputSink,
        display: str,
        xauthority: str | None = None,
        title: str = "xend-vfb",
        reactor: IReactorTime | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as defaultReactor

            reactor = defaultReactor  # type: ignore[assignment]
        self.screen = screen
        self.input = input
        self.display = display
        self.xauthority = xauthority
        self.title = title
        self.reactor = reactor
        self._pygame: Any = None
        self._window: Any = None  # the window's surface while open
        self._source: Any = None  # a surface over the screen's current buffer
        self._dirty = DirtyRegion()
        self._ticker: LoopingCall | None = None
        self._keys: set[int] = set()  # keycodes held down through this window
        self._buttons: set[int] = set()
        self._position = (0, 0)

    @property
    def viewers(self) -> int:
        """See `IDisplay.viewers`: 1 while the window is open."""
        return 1 if self._window is not None else 0

    # -- IDisplay

    def start(self) -> Deferred[tuple[str, str]]:
        """Open the window; fires with ("sdl", display), or fails with DeviceError."""
        if self._window is None:
            try:
                self._open()
            except DeviceError as e:
                return fail(e)
            log.info("SDL display open on {display}", display=self.display)
        return succeed(("sdl", self.display))

    def stop(self) -> Deferred[None]:
        """Close the window, if open; fires at once."""
        self._close()
        return succeed(None)

    # -- IScreenObserver

    def screenUpdated(self, x: int, y: int, w: int, h: int) -> None:
        """See `IScreenObserver.screenUpdated`: drawn at the next tick."""
        self._dirty.add((x, y, w, h))

    def screenStale(self) -> None:
        """See `IScreenObserver.screenStale`: synced at the next tick."""

    def screenResized(self, width: int, height: int) -> None:
        """See `IScreenObserver.screenResized`: the window takes the new size now."""
        self._window = self._pygame.display.set_mode((width, height))
        self._wrapScreen()

    # -- window

    def _open(self) -> None:
        def cannot(reason: object) -> DeviceError:
            return DeviceError(f"SDL display cannot open {self.display}: {reason}")

        try:
            pygame = self._pygame or _pygame()
        except ImportError as e:
            raise cannot(f"pygame is not installed ({e})") from e
        if pygame.display.get_init():
            raise cannot("this backend already has an SDL window open (one per process)")
        os.environ["DISPLAY"] = self.display
        if self.xauthority is not None:
            os.environ["XAUTHORITY"] = self.xauthority
        os.environ.setdefault("SDL_VIDEODRIVER", "x11")
        os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")
        try:
            pygame.display.init()
            pygame.display.set_caption(self.title)
            self._window = pygame.display.set_mode((self.screen.width, self.screen.height))
        except pygame.error as e:
            pygame.display.quit()
            self._window = None
            raise cannot(e) from e
        self._pygame = pygame
        self._wrapScreen()
        self.screen.addObserver(self)
        self._ticker = LoopingCall(self._tick)
        self._ticker.clock = self.reactor
        self._ticker.start(1 / RATE, now=False).addErrback(
            lambda f: log.failure("SDL display on {display} failed", f, display=self.display))

    def _wrapScreen(self) -> None:
        """Point the source surface at the screen's (new) buffer; everything is dirty."""
        screen = self.screen
        size = (screen.width, screen.height)
        # BGRX bytes read as BGRA; alpha off, so the X byte is ignored when blitting.
        self._source = self._pygame.image.frombuffer(screen.pixels(), size, "BGRA")
        self._source.set_alpha(None)
        self._dirty.clear()
        self._dirty.add((0, 0, *size))

    def _close(self) -> None:
        if self._window is None:
            return
        ticker, self._ticker = self._ticker, None
        if ticker is not None and ticker.running:
            ticker.stop()
        self.screen.removeObserver(self)
        self._releaseAll()
        self._window = self._source = None
        self._dirty.clear()
        self._pygame.display.quit()
        log.info("SDL display on {display} closed", display=self.display)

    def _tick(self) -> None:
        """Handle what happened since the last tick, then draw what changed."""
        try:
            for event in self._pygame.event.get():
                self._handle(event)
                if self._window is None:  # closed by the user
                    return
            self._draw()
        except Exception:
            log.failure("SDL display on {display} failed; closing it", display=self.display)
            self._close()

    def _draw(self) -> None:
        self.screen.sync()  # what the guest drew since the last tick, into our dirty region
        rects = self._dirty.take((0, 0, self.screen.width, self.screen.height))
        if not rects:
            return
        for rect in rects:
            self._window.blit(self._source, rect[:2], rect)
        self._pygame.display.update(rects)

    # -- input

    def _handle(self, event: Any) -> None:
        pygame = self._pygame
        kind = event.type
        if kind == pygame.QUIT:
            self._close()
        elif kind in (pygame.KEYDOWN, pygame.KEYUP):
            self._key(getattr(event, "scancode", 0), kind == pygame.KEYDOWN)
        elif kind == pygame.MOUSEMOTION:
            self._motion(event.pos, event.rel)
        elif kind in (pygame.MOUSEBUTTONDOWN, pygame.MOUSEBUTTONUP):
            # Buttons 4 and up: the wheel (also sent as MOUSEWHEEL) and extra buttons.
            code = _BUTTONS.get(event.button)
            if code is not None:
                self._press(self._buttons, code, kind == pygame.MOUSEBUTTONDOWN)
        elif kind == pygame.MOUSEWHEEL:
            steps = -int(event.y) if not getattr(event, "flipped", False) else int(event.y)
            self._wheel(max(-_MAX_WHEEL_STEPS, min(steps, _MAX_WHEEL_STEPS)))
        elif kind == pygame.WINDOWFOCUSLOST:
            self._releaseAll()

    def _key(self, scancode: int, pressed: bool) -> None:
        keycode = SCANCODES.get(scancode)
        if keycode is None:
            log.debug("SDL scancode {scancode} has no Linux key", scancode=scancode)
            return
        self._press(self._keys, keycode, pressed)

    def _press(self, held: set[int], code: int, pressed: bool) -> None:
        """Send a key or button change; presses of what is held (and the reverse) are dropped."""
        if pressed == (code in held):
            return
        if pressed:
            held.add(code)
        else:
            held.discard(code)
        self.input.keyEvent(code, pressed)

    def _motion(self, pos: tuple[int, int], rel: tuple[int, int]) -> None:
        x = max(0, min(int(pos[0]), self.screen.width - 1))
        y = max(0, min(int(pos[1]), self.screen.height - 1))
        self._position = (x, y)
        if self.input.absolute:
            self.input.pointerPosition(x, y, 0)
        elif rel[0] or rel[1]:
            self.input.pointerMotion(int(rel[0]), int(rel[1]), 0)

    def _wheel(self, steps: int) -> None:
        dz = 1 if steps > 0 else -1
        for _ in range(abs(steps)):
            if self.input.absolute:
                self.input.pointerPosition(*self._position, dz)
            else:
                self.input.pointerMotion(0, 0, dz)

    def _releaseAll(self) -> None:
        """Release every key and button held through this window (none may stay stuck)."""
        for held in (self._keys, self._buttons):
            for code in sorted(held):
                self.input.keyEvent(code, False)
            held.clear()
