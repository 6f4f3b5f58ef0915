"""The vkbd shared page and its events (Xen's ``io/kbdif.h``), for both ends.

``struct xenkbd_page`` is only the four ring counters; it has no ABI-dependent
field, so ``protocol`` does not matter here.  The backend encodes in-events
from whatever serves the display and produces them into `IN_RING`; the guest
simulator consumes them and decodes them with `decodeInEvent`.  No out
events are defined: a backend ignores `OUT_RING`.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from xend_vfb.protocol.ring import EVENT_SIZE, Ring

__all__ = [
    "InType",
    "IN_RING",
    "OUT_RING",
    "BTN_LEFT",
    "BTN_RIGHT",
    "BTN_MIDDLE",
    "MotionEvent",
    "KeyEvent",
    "PositionEvent",
    "decodeInEvent",
    "RAW_POINTER_MAX",
    "scalePosition",
]


class InType(enum.IntEnum):
    """In event types (backend → guest); 2 is reserved, 5 (multi-touch) we don't offer."""

    MOTION = 1
    KEY = 3
    POS = 4


#: backend → guest; the backend produces, the guest consumes.
IN_RING = Ring("vkbd in", cons_offset=0, prod_offset=4, offset=1024, size=2048)
#: guest → backend; defined by the header, carries no events.
OUT_RING = Ring("vkbd out", cons_offset=8, prod_offset=12, offset=3072, size=1024)

# Linux input codes for mouse buttons, sent as `KeyEvent.keycode`.
BTN_LEFT = 0x110
BTN_RIGHT = 0x111
BTN_MIDDLE = 0x112

#: Raw (unscaled) absolute coordinates run from 0 to this, whatever the screen's size.
RAW_POINTER_MAX = 0x7FFF

_MOTION = struct.Struct("<B3x3i24x")
_KEY = struct.Struct("<BB2xI32x")
_POS = struct.Struct("<B3x3i24x")


@dataclass(frozen=True)
class MotionEvent:
    """Relative pointer motion; ``rel_z`` is the wheel."""

    rel_x: int
    rel_y: int
    rel_z: int = 0

    def encode(self) -> bytes:
        """The 40-byte ring slot."""
        return _MOTION.pack(InType.MOTION, self.rel_x, self.rel_y, self.rel_z)


@dataclass(frozen=True)
class KeyEvent:
    """A key or mouse button (Linux ``KEY_*``/``BTN_*`` code) went down or up."""

    pressed: bool
    keycode: int

    def encode(self) -> bytes:
        """The 40-byte ring slot."""
        return _KEY.pack(InType.KEY, int(self.pressed), self.keycode)


@dataclass(frozen=True)
class PositionEvent:
    """Absolute pointer position (if the guest set ``request-abs-pointer``); ``rel_z``: wheel."""

    abs_x: int
    abs_y: int
    rel_z: int = 0

    def encode(self) -> bytes:
        """The 40-byte ring slot."""
        return _POS.pack(InType.POS, self.abs_x, self.abs_y, self.rel_z)


def decodeInEvent(raw: bytes) -> MotionEvent | KeyEvent | PositionEvent | None:
    """Decode one slot taken off `IN_RING` (guest side); None for a type we don't know."""
    if len(raw) != EVENT_SIZE:
        raise ValueError(f"event of {len(raw)} bytes, expected {EVENT_SIZE}")
    kind = raw[0]
    if kind == InType.MOTION:
        return MotionEvent(*_MOTION.unpack(raw)[1:])
    if kind == InType.KEY:
        _, pressed, keycode = _KEY.unpack(raw)
        return KeyEvent(pressed != 0, keycode)
    if kind == InType.POS:
        return PositionEvent(*_POS.unpack(raw)[1:])
    return None


def scalePosition(x: int, y: int, screen: tuple[int, int],
                  extent: tuple[int, int] | None) -> tuple[int, int]:
    """Position (`x`, `y`) on a screen of `screen` (width, height) pixels, as the guest
    takes it: in the range it read when it probed (`extent`: the backend's ``width``
    and ``height``, which do not follow a later resize), or raw (`extent` None: 0 to
    `RAW_POINTER_MAX`, for a guest that asked ``request-raw-pointer``).  Positions off
    the screen are clamped to its edges.
    """
    width, height = screen
    x, y = min(max(x, 0), width - 1), min(max(y, 0), height - 1)
    if extent is None:
        return (x * RAW_POINTER_MAX // max(width - 1, 1),
                y * RAW_POINTER_MAX // max(height - 1, 1))
    return x * extent[0] // width, y * extent[1] // height
