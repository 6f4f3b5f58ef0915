"""The vfb shared page and its events (Xen's ``io/fbif.h``), for both ends.

The backend uses `FbPage.read` to take a validated snapshot of what the guest
wrote, `framebufferFrames` to find the framebuffer, `decodeOutEvent`,
`clipUpdate` and `validateResize` on the out ring, and `RefreshPeriodEvent` on
the in ring.  The guest simulator uses the writers: `writePage`,
`directoryPages` and the events' ``encode``.

ABIs (``protocol`` key, ``io/protocols.h``): the only ABI-dependent part is
``unsigned long pd[]`` and the directory pages it points to: 4-byte entries
from offset 36 for ``x86_32-abi``, 8-byte entries from offset 40 for
``x86_64-abi``.  ``arm-abi`` names both 32- and 64-bit ARM, whose ``unsigned
long`` differ, so the header alone does not fix it; we read it as the 64-bit
layout, which is what a 64-bit ARM guest (the ARM guest Xen runs today)
writes and what a native backend on a 64-bit ARM host reads.  A 32-bit ARM
guest would be misread as nonsense frames, which fail to map: a device error,
never a crash.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from xend_vfb.errors import GuestError
from xend_vfb.protocol.ring import EVENT_SIZE, Page, Ring

__all__ = [
    "PAGE_SIZE",
    "VALID_DEPTHS",
    "MAX_DIMENSION",
    "NO_REFRESH",
    "OutType",
    "InType",
    "IN_RING",
    "OUT_RING",
    "PdLayout",
    "pdLayout",
    "Geometry",
    "FbPage",
    "writePage",
    "framebufferFrames",
    "directoryPages",
    "UpdateEvent",
    "ResizeEvent",
    "RefreshPeriodEvent",
    "decodeOutEvent",
    "decodeInEvent",
    "clipUpdate",
    "validateResize",
]

PAGE_SIZE = 4096
VALID_DEPTHS = frozenset({8, 16, 24, 32})
#: The most pixels a width or a height may have (REFERENCE.md section 7): RFB carries
#: sizes in 16 bits, and a screen a viewer cannot be told about is no display at all.
MAX_DIMENSION = 16384
#: `RefreshPeriodEvent.period` meaning "nobody is watching, no refresh needed".
NO_REFRESH = 0


class OutType(enum.IntEnum):
    """Out event types (guest → backend)."""

    UPDATE = 2
    RESIZE = 3


class InType(enum.IntEnum):
    """In event types (backend → guest)."""

    REFRESH_PERIOD = 1


#: backend → guest; the backend produces, the guest consumes.
IN_RING = Ring("vfb in", cons_offset=0, prod_offset=4, offset=1024, size=1024)
#: guest → backend; the guest produces, the backend consumes.
OUT_RING = Ring("vfb out", cons_offset=8, prod_offset=12, offset=2048, size=2048)

# width, height (s32), line_length, mem_length (u32), depth (u8) at offset 16.
_HEADER = struct.Struct("<iiIIB")
_HEADER_OFFSET = 16


@dataclass(frozen=True)
class PdLayout:
    """Where ``pd[]`` sits for one ABI and how wide its (and the directories') entries are."""

    offset: int
    entry_size: int

    @property
    def entryFormat(self) -> str:
        """The `struct` code of one ``unsigned long``."""
        return "I" if self.entry_size == 4 else "Q"

    @property
    def maxDirectories(self) -> int:
        """How many ``pd[]`` entries fit before the in ring at offset 1024 (123 or 247)."""
        return (IN_RING.offset - self.offset) // self.entry_size

    @property
    def framesPerDirectory(self) -> int:
        """How many framebuffer frames one directory page lists (512 or 1024)."""
        return PAGE_SIZE // self.entry_size

    @property
    def maxMemLength(self) -> int:
        """The most framebuffer bytes ``pd[]`` can reach without running into the rings."""
        return self.maxDirectories * self.framesPerDirectory * PAGE_SIZE

    def directoryCount(self, mem_length: int) -> int:
        """How many directory pages a framebuffer of ``mem_length`` bytes needs."""
        frames = -(-mem_length // PAGE_SIZE)
        return -(-frames // self.framesPerDirectory)


_LAYOUTS = {
    "x86_32-abi": PdLayout(offset=36, entry_size=4),
    "x86_64-abi": PdLayout(offset=40, entry_size=8),
    "arm-abi": PdLayout(offset=40, entry_size=8),
}


def pdLayout(protocol: str) -> PdLayout:
    """The ``pd[]`` layout for the guest's ``protocol`` key; `GuestError` if we don't know it."""
    try:
        return _LAYOUTS[protocol]
    except KeyError:
        raise GuestError(f"vfb page: unknown protocol {protocol!r}") from None


@dataclass(frozen=True)
class Geometry:
    """A validated framebuffer shape inside the mapped memory.

    Invariant: ``offset + height * stride <= mem_length`` and
    ``width * depth // 8 <= stride``, so every pixel lies in the mapping; width
    and height are 1..`MAX_DIMENSION`, so a VNC viewer can be told the size.
    """

    width: int
    height: int
    stride: int
    depth: int
    offset: int = 0


def _checkDepth(where: str, depth: int) -> None:
    if depth not in VALID_DEPTHS:
        raise GuestError(f"{where}: depth {depth} is not one of 8, 16, 24, 32")


def _checkDimensions(where: str, width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if value > MAX_DIMENSION:
            raise GuestError(f"{where}: {name} {value} is beyond {MAX_DIMENSION}")


def _clamp(value: int, limit: int) -> int:
    """A width or height the guest gave (at most `MAX_DIMENSION`): kept if within
    1..limit, else ``limit`` or `MAX_DIMENSION`, whichever is smaller."""
    return value if 0 < value <= limit else min(limit, MAX_DIMENSION)


@dataclass(frozen=True)
class FbPage:
    """A validated snapshot of the guest's ``struct xenfb_page`` (REFERENCE.md section 7).

    ``mem_length`` is the capped length (what the backend maps): the guest's,
    cut to the video-memory limit and to what ``pd[]`` reaches before the
    rings (so a too-large value is capped, not refused).  A width or height
    beyond `MAX_DIMENSION` is refused; one that does not fit the memory is
    clamped to what does, and never beyond `MAX_DIMENSION`.  ``pd`` holds exactly
    the directory frames it needs, and ``clamped`` says, for the log, which
    of the guest's values were cut down.
    """

    protocol: str
    width: int
    height: int
    line_length: int
    mem_length: int
    depth: int
    pd: tuple[int, ...]
    clamped: tuple[str, ...] = ()

    @classmethod
    def read(cls, page: Page | bytes, protocol: str, videoram_limit: int) -> FbPage:
        """Copy and validate the page once, when the frontend reaches Initialised.

        Every field is read exactly once into locals, then checked; nothing is
        re-read.  ``videoram_limit`` is the configured most bytes to map.
        Raises `GuestError` naming the bad field.
        """
        if videoram_limit <= 0:
            raise ValueError(f"videoram_limit must be positive, not {videoram_limit}")
        if len(page) < IN_RING.offset:
            raise ValueError(f"vfb page: {len(page)} bytes, needs {IN_RING.offset}")
        layout = pdLayout(protocol)
        width, height, line_length, mem_length, depth = _HEADER.unpack_from(page, _HEADER_OFFSET)
        where = "vfb page"
        notes: list[str] = []
        _checkDepth(where, depth)
        _checkDimensions(where, width, height)
        if mem_length == 0:
            raise GuestError(f"{where}: mem_length 0")
        cap = min(videoram_limit, layout.maxMemLength)
        if mem_length > cap:
            notes.append(f"{where}: mem_length {mem_length} capped to {cap}")
            mem_length = cap
        bpp = depth // 8
        if not bpp <= line_length <= mem_length:
            raise GuestError(
                f"{where}: line_length {line_length} outside {bpp}..mem_length {mem_length}"
            )
        max_width, max_height = line_length // bpp, mem_length // line_length
        if (clamped := _clamp(width, max_width)) != width:
            notes.append(f"{where}: width {width} clamped to {clamped}")
            width = clamped
        if (clamped := _clamp(height, max_height)) != height:
            notes.append(f"{where}: height {height} clamped to {clamped}")
            height = clamped
        count = layout.directoryCount(mem_length)
        pd = struct.unpack_from(f"<{count}{layout.entryFormat}", page, layout.offset)
        return cls(protocol, width, height, line_length, mem_length, depth, pd, tuple(notes))

    @property
    def geometry(self) -> Geometry:
        """The shape the guest connected with (a RESIZE event replaces it)."""
        return Geometry(self.width, self.height, self.line_length, self.depth)


def writePage(
    page: Page,
    protocol: str,
    *,
    width: int,
    height: int,
    line_length: int,
    mem_length: int,
    depth: int,
    pd: Sequence[int],
) -> None:
    """Fill in a ``struct xenfb_page`` as a guest frontend does before Initialised.

    For the simulator; writes values as given, valid or not (hostile guests
    are modelled this way), but never writes ``pd[]`` entries into the rings.
    """
    layout = pdLayout(protocol)
    if len(pd) > layout.maxDirectories:
        raise ValueError(f"{len(pd)} pd entries run into the rings (max {layout.maxDirectories})")
    _HEADER.pack_into(page, _HEADER_OFFSET, width, height, line_length, mem_length, depth)
    struct.pack_into(f"<{len(pd)}{layout.entryFormat}", page, layout.offset, *pd)


def framebufferFrames(dirs: Sequence[Page | bytes], mem_length: int, protocol: str) -> list[int]:
    """The frames holding a framebuffer of ``mem_length`` bytes, from its mapped directory pages.

    ``dirs`` are the pages ``FbPage.pd`` names, in order.  The frame numbers
    are the guest's: mapping them may fail, which the caller reports.
    """
    layout = pdLayout(protocol)
    needed = -(-mem_length // PAGE_SIZE)
    if len(dirs) < layout.directoryCount(mem_length):
        raise ValueError(f"{len(dirs)} directory pages for {mem_length} bytes")
    frames: list[int] = []
    for directory in dirs:
        count = min(needed - len(frames), layout.framesPerDirectory)
        if count <= 0:
            break
        frames.extend(struct.unpack_from(f"<{count}{layout.entryFormat}", directory))
    return frames


def directoryPages(frames: Sequence[int], protocol: str) -> list[bytes]:
    """The 4096-byte directory pages listing ``frames``: `framebufferFrames`, guest side."""
    layout = pdLayout(protocol)
    per = layout.framesPerDirectory
    pages = []
    for start in range(0, len(frames), per):
        chunk = frames[start : start + per]
        page = bytearray(PAGE_SIZE)
        struct.pack_into(f"<{len(chunk)}{layout.entryFormat}", page, 0, *chunk)
        pages.append(bytes(page))
    return pages


_UPDATE = struct.Struct("<B3x4i20x")
_RESIZE = struct.Struct("<B3x5i16x")
_REFRESH = struct.Struct("<B3xI32x")


@dataclass(frozen=True)
class UpdateEvent:
    """Out: the guest changed the rectangle (x, y, width, height); may lie partly off screen."""

    x: int
    y: int
    width: int
    height: int

    def encode(self) -> bytes:
        """The 40-byte ring slot."""
        return _UPDATE.pack(OutType.UPDATE, self.x, self.y, self.width, self.height)


@dataclass(frozen=True)
class ResizeEvent:
    """Out: the guest now shows width x height x depth, ``stride`` bytes a row, from ``offset``."""

    width: int
    height: int
    stride: int
    depth: int
    offset: int

    def encode(self) -> bytes:
        """The 40-byte ring slot."""
        return _RESIZE.pack(
            OutType.RESIZE, self.width, self.height, self.stride, self.depth, self.offset
        )


@dataclass(frozen=True)
class RefreshPeriodEvent:
    """In: refresh advice in ms; `NO_REFRESH` when no display is watching."""

    period: int

    def encode(self) -> bytes:
        """The 40-byte ring slot."""
        return _REFRESH.pack(InType.REFRESH_PERIOD, self.period)


def _eventType(raw: bytes) -> int:
    """The type byte of one ring slot (copied: ``raw`` is our own copy of the slot)."""
    if len(raw) != EVENT_SIZE:
        raise ValueError(f"event of {len(raw)} bytes, expected {EVENT_SIZE}")
    return raw[0]


def decodeOutEvent(raw: bytes) -> UpdateEvent | ResizeEvent | None:
    """Decode one slot taken off `OUT_RING`; None for an unknown type (the caller logs it)."""
    kind = _eventType(raw)
    if kind == OutType.UPDATE:
        return UpdateEvent(*_UPDATE.unpack(raw)[1:])
    if kind == OutType.RESIZE:
        return ResizeEvent(*_RESIZE.unpack(raw)[1:])
    return None


def decodeInEvent(raw: bytes) -> RefreshPeriodEvent | None:
    """Decode one slot taken off `IN_RING` (guest side); None for an unknown type."""
    if _eventType(raw) == InType.REFRESH_PERIOD:
        return RefreshPeriodEvent(_REFRESH.unpack(raw)[1])
    return None


def clipUpdate(ev: UpdateEvent, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The part of ``ev`` inside a ``width`` x ``height`` screen as (x, y, w, h); None if empty."""
    x0, y0 = max(ev.x, 0), max(ev.y, 0)
    x1, y1 = min(ev.x + ev.width, width), min(ev.y + ev.height, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


def validateResize(ev: ResizeEvent, mem_length: int) -> Geometry:
    """The geometry a RESIZE asks for, checked against the mapped ``mem_length`` bytes.

    Raises `GuestError` for a bad depth, a width or height beyond
    `MAX_DIMENSION`, an offset outside the mapping or a stride that cannot hold
    one pixel or one row; clamps width and height (REFERENCE.md section 7).
    """
    where = "vfb resize"
    _checkDepth(where, ev.depth)
    _checkDimensions(where, ev.width, ev.height)
    if not 0 <= ev.offset < mem_length:
        raise GuestError(f"{where}: offset {ev.offset} outside 0..{mem_length - 1}")
    bpp = ev.depth // 8
    room = mem_length - ev.offset
    if not bpp <= ev.stride <= room:
        raise GuestError(f"{where}: stride {ev.stride} outside {bpp}..{room}")
    width = _clamp(ev.width, ev.stride // bpp)
    height = _clamp(ev.height, room // ev.stride)
    return Geometry(width, height, ev.stride, ev.depth, ev.offset)
