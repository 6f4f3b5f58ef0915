"""One viewer's keyboard and pointer, turned into events for an `IInputSink`.

Keys: a keysym is typed with the key and level the guest's layout needs (see
`keymaps`).  When the modifiers the client holds do not match that level
(vncdotool types 'A' without Shift; a US client sends '@' with Shift held,
which a German guest needs as AltGr+Q without Shift), the missing modifier is
pressed, or the extra one released, just around the key press and restored
right after it.  Restoring at once, rather than at key release, keeps fast
overlapping typing right; the cost is that auto-repeat of such a key in the
guest repeats the unmodified level.  Caps, Num and Scroll Lock pressed
through any viewer are tracked in the display's `LockState` (so letters are
not inverted twice, and clients asking for QEMU's LED state are shown it).

Clients with QEMU extended key events send the key's position (an XT
scancode) with each keysym: that key goes to the guest as it is, its layout
decides what it means, and no modifier is adjusted.  A scancode we do not know
(or 0) falls back to the keysym.

Pointer: buttons 1-3 become BTN_LEFT/BTN_MIDDLE/BTN_RIGHT key events when they
change; pressing button 4 or 5 (wheel) is one step of dz -1 or +1.  Positions
go as they are when the guest asked for an absolute pointer, and otherwise as
the motion since this viewer's previous position (its first event only sets
that position).
"""

from __future__ import annotations

from twisted.logger import Logger

from xend_vfb.display.screen import IInputSink
from xend_vfb.rfb.keymaps import (
    KEY_CAPSLOCK,
    KEY_LEFTSHIFT,
    KEY_RIGHTALT,
    KEY_RIGHTSHIFT,
    Keymap,
)
from xend_vfb.rfb.scancodes import xtToLinux

__all__ = ["Keyboard", "LockState", "Pointer", "BTN_LEFT", "BTN_RIGHT", "BTN_MIDDLE"]

BTN_LEFT = 0x110
BTN_RIGHT = 0x111
BTN_MIDDLE = 0x112

_BUTTONS = ((1, BTN_LEFT), (2, BTN_MIDDLE), (4, BTN_RIGHT))
_WHEEL_UP, _WHEEL_DOWN = 8, 16
_SHIFTS = (KEY_LEFTSHIFT, KEY_RIGHTSHIFT)

KEY_NUMLOCK, KEY_SCROLLLOCK = 69, 70
#: QEMU LED state bits (pseudo-encoding -261) of each lock key.
_LED_BITS = {KEY_SCROLLLOCK: 1, KEY_NUMLOCK: 2, KEY_CAPSLOCK: 4}

log = Logger()


class LockState:
    """The guest's lock keys as far as the display knows: toggled by presses from viewers.

    The vkbd protocol has no LED events from the guest, so this is what viewers pressed
    since the display started (all off then), not what the guest may have set itself.
    `onChange` observers are called with the new QEMU LED bits (Scroll 1, Num 2, Caps 4).
    """

    def __init__(self) -> None:
        self.leds = 0
        self.observers: list = []

    @property
    def capsLock(self) -> bool:
        """Whether Caps Lock is on."""
        return bool(self.leds & _LED_BITS[KEY_CAPSLOCK])

    def pressed(self, keycode: int) -> None:
        """A key went down (not an auto-repeat): toggle the lock it is, if any."""
        bit = _LED_BITS.get(keycode)
        if bit:
            self.leds ^= bit
            for observer in list(self.observers):
                observer(self.leds)


class Keyboard:
    """Keysym events of one viewer -> key events, tracking what that viewer holds down."""

    def __init__(self, keymap: Keymap, sink: IInputSink, locks: LockState | None = None) -> None:
        self._keymap = keymap
        self._sink = sink
        self._byKeysym: dict[int, int] = {}  # keysym pressed -> keycode sent
        self._down: set[int] = set()  # keycodes this viewer holds
        self._locks = locks if locks is not None else LockState()

    def keyEvent(self, keysym: int, down: bool) -> None:
        """An RFB KeyEvent from the viewer."""
        if down:
            self._press(keysym)
        else:
            self._release(keysym)

    def scancodeEvent(self, scancode: int, keysym: int, down: bool) -> None:
        """A QEMU extended key event: the client's XT scancode, and its keysym as a fallback."""
        keycode = xtToLinux(scancode)
        if keycode is None:
            self.keyEvent(keysym, down)
            return
        if down:
            if keycode not in self._down:
                self._locks.pressed(keycode)
            self._down.add(keycode)
            self._sink.keyEvent(keycode, True)
        elif keycode in self._down:
            self._down.discard(keycode)
            for sym in [sym for sym, code in self._byKeysym.items() if code == keycode]:
                del self._byKeysym[sym]
            self._sink.keyEvent(keycode, False)

    def _press(self, keysym: int) -> None:
        combo = self._keymap.lookup(keysym)
        if combo is None:
            log.debug("keysym {keysym:#x} has no key in keymap {name}", keysym=keysym,
                      name=self._keymap.name)
            return
        fixes: list[tuple[int, bool]] = []
        if combo.hasLevel:
            wantShift = combo.shift != (self._locks.capsLock and combo.caps)
            heldShifts = [code for code in _SHIFTS if code in self._down]
            if wantShift and not heldShifts:
                fixes.append((KEY_LEFTSHIFT, True))
            elif not wantShift:
                fixes.extend((code, False) for code in heldShifts)
            if self._keymap.usesAltGr and combo.altgr != (KEY_RIGHTALT in self._down):
                fixes.append((KEY_RIGHTALT, combo.altgr))
        for code, pressed in fixes:
            self._sink.keyEvent(code, pressed)
        self._sink.keyEvent(combo.keycode, True)
        for code, pressed in reversed(fixes):
            self._sink.keyEvent(code, not pressed)
        if combo.keycode not in self._down:
            self._locks.pressed(combo.keycode)
        self._byKeysym[keysym] = combo.keycode
        self._down.add(combo.keycode)

    def _release(self, keysym: int) -> None:
        keycode = self._byKeysym.pop(keysym, None)
        if keycode is None:
            # Released under another keysym than pressed ('A' down, Shift up, 'a' up).
            combo = self._keymap.lookup(keysym)
            keycode = combo.keycode if combo else None
        if keycode is None or keycode not in self._down:
            return
        self._down.discard(keycode)
        for sym in [sym for sym, code in self._byKeysym.items() if code == keycode]:
            del self._byKeysym[sym]
        self._sink.keyEvent(keycode, False)

    def releaseAll(self) -> None:
        """Release every key this viewer holds (it went away: no key may stay stuck)."""
        for keycode in sorted(self._down):
            self._sink.keyEvent(keycode, False)
        self._down.clear()
        self._byKeysym.clear()


class Pointer:
    """Pointer events of one viewer -> button, motion and position events."""

    def __init__(self, sink: IInputSink) -> None:
        self._sink = sink
        self._buttons = 0
        self._position: tuple[int, int] | None = None

    def pointerEvent(self, buttons: int, x: int, y: int) -> None:
        """An RFB PointerEvent: button mask (bit 0 = button 1) and position."""
        pressed = buttons & ~self._buttons
        dz = (1 if pressed & _WHEEL_DOWN else 0) - (1 if pressed & _WHEEL_UP else 0)
        if self._sink.absolute:
            if (x, y) != self._position or dz:
                self._sink.pointerPosition(x, y, dz)
        else:
            px, py = self._position if self._position is not None else (x, y)
            if x != px or y != py or dz:
                self._sink.pointerMotion(x - px, y - py, dz)
        self._position = (x, y)
        for bit, code in _BUTTONS:
            if (buttons ^ self._buttons) & bit:
                self._sink.keyEvent(code, bool(buttons & bit))
        self._buttons = buttons

    def releaseAll(self) -> None:
        """Release the buttons this viewer holds."""
        for bit, code in _BUTTONS:
            if self._buttons & bit:
                self._sink.keyEvent(code, False)
        self._buttons = 0
