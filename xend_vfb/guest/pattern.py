"""What the simulated guest draws: a deterministic test pattern, an image, an animation.

Pixels are 32-bit XRGB, little-endian (bytes B, G, R, 0), the format of the
default Linux framebuffer (depth 32).  Every function returns packed rows
(``width * 4`` bytes a row), so tests compare a backend's screen copy with
`patternBytes` byte for byte.

The pattern, top to bottom: eight colour bars (white, yellow, cyan, green,
magenta, red, blue, black) over two thirds of the height, then four ramps
(grey, red, green, blue) from 0 at the left to 255 at the right.  In the top
left corner a black box holds a marker identifying the device: 16 cells for
the domain id and 8 for the device id, most significant bit first, a set bit
white and a clear one dark grey.
"""

from __future__ import annotations

import os

__all__ = [
    "BYTES_PER_PIXEL",
    "BARS",
    "MARKER_CELL",
    "pixel",
    "patternBytes",
    "loadImage",
    "animationBand",
]

BYTES_PER_PIXEL = 4

#: The colour bars, left to right, as (r, g, b).
BARS = (
    (255, 255, 255),
    (255, 255, 0),
    (0, 255, 255),
    (0, 255, 0),
    (255, 0, 255),
    (255, 0, 0),
    (0, 0, 255),
    (0, 0, 0),
)
_RAMPS = ((1, 1, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1))

#: Side of one marker cell in pixels; the marker box starts this far from the corner.
MARKER_CELL = 8
_DOMID_BITS = 16
_DEVID_BITS = 8
_SET = (255, 255, 255)
_CLEAR = (64, 64, 64)
_BOX = (0, 0, 0)

#: Height of the animated band at the bottom of the screen (at most).
_BAND_HEIGHT = 32
_BLOCK_WIDTH = 32


def pixel(r: int, g: int, b: int) -> bytes:
    """One XRGB pixel as it lies in memory."""
    return bytes((b, g, r, 0))


def _checkSize(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"invalid screen size {width}x{height}")


def _fill(
    buf: bytearray, width: int, height: int, x: int, y: int, w: int, h: int, colour: bytes
) -> None:
    """Fill a rectangle of packed rows, clipped to the screen."""
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        return
    run = colour * (x1 - x0)
    stride = width * BYTES_PER_PIXEL
    for row in range(y0, y1):
        start = row * stride + x0 * BYTES_PER_PIXEL
        buf[start : start + len(run)] = run


def _marker(buf: bytearray, width: int, height: int, domid: int, devid: int) -> None:
    cell = MARKER_CELL
    _fill(buf, width, height, cell, cell, (_DOMID_BITS + 2) * cell, 4 * cell, pixel(*_BOX))
    for row, (value, bits) in enumerate(((domid, _DOMID_BITS), (devid, _DEVID_BITS)), start=1):
        for i in range(bits):
            bit = (value >> (bits - 1 - i)) & 1
            colour = pixel(*(_SET if bit else _CLEAR))
            x, y = cell + (1 + i) * cell, cell + row * cell
            _fill(buf, width, height, x, y, cell - 1, cell - 1, colour)


def patternBytes(width: int, height: int, domid: int = 0, devid: int = 0) -> bytes:
    """The pattern for a `width` x `height` screen of device `devid` of domain `domid`."""
    _checkSize(width, height)
    bars = b"".join(
        pixel(*colour) * ((i + 1) * width // len(BARS) - i * width // len(BARS))
        for i, colour in enumerate(BARS)
    )
    top = max(width - 1, 1)
    ramps = [
        b"".join(pixel(r * v, g * v, b * v) for v in (x * 255 // top for x in range(width)))
        for r, g, b in _RAMPS
    ]
    barsHeight = height * 2 // 3
    rampsHeight = height - barsHeight
    rows = [
        bars if y < barsHeight else ramps[(y - barsHeight) * len(ramps) // rampsHeight]
        for y in range(height)
    ]
    buf = bytearray(b"".join(rows))
    _marker(buf, width, height, domid & 0xFFFF, devid & 0xFF)
    return bytes(buf)


def loadImage(path: str | os.PathLike[str], width: int, height: int) -> bytes:
    """The image at `path` scaled to `width` x `height`; raises `OSError` if unreadable."""
    from PIL import Image

    _checkSize(width, height)
    with Image.open(path) as image:
        scaled = image.convert("RGB").resize((width, height))
    return scaled.convert("RGBX").tobytes("raw", "BGRX")


def animationBand(width: int, height: int, tick: int) -> tuple[tuple[int, int, int, int], bytes]:
    """Frame `tick` of the animation: the rectangle (x, y, w, h) it covers and its pixels.

    A band along the bottom of the screen: black, with a block moving right
    and changing colour at each tick, so every frame differs from the last.
    """
    _checkSize(width, height)
    bandHeight = min(_BAND_HEIGHT, height)
    band = bytearray(pixel(0, 0, 0) * (width * bandHeight))
    block = min(_BLOCK_WIDTH, width)
    x = (tick * 8) % (width - block + 1)
    colour = pixel(*BARS[tick % (len(BARS) - 1)])
    _fill(band, width, bandHeight, x, 0, block, bandHeight, colour)
    return (0, height - bandHeight, width, bandHeight), bytes(band)
