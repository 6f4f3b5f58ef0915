"""What the screen tests share: a stand-in guest framebuffer as a screen's source, and
the set of pixels a list of rectangles covers (for comparing updates tile by tile).

Used by test_display.py (the screen itself) and the VNC server's tests of pixels on
demand (test_rfb_on_demand.py, test_rfb_server.py).
"""

import random


class Guest:
    """A guest framebuffer (XRGB8888, the screen's size) as a screen's source, counting reads."""

    def __init__(self, width: int, height: int, seed: int = 1) -> None:
        self.width = width
        self.pixels = bytearray(random.Random(seed).randbytes(width * height * 4))
        self.reads: list[tuple[int, int, int, int]] = []

    def __call__(self, x: int, y: int, w: int, h: int) -> bytearray:
        self.reads.append((x, y, w, h))
        stride = self.width * 4
        return bytearray(b"".join(
            self.pixels[(y + r) * stride + x * 4:(y + r) * stride + (x + w) * 4] for r in range(h)))

    def draw(self, x: int, y: int, value: bytes = b"\x01\x02\x03\x00") -> None:
        at = (y * self.width + x) * 4
        self.pixels[at:at + 4] = value


def pixelsOf(rects) -> set[tuple[int, int]]:
    """Every (x, y) the rectangles (x, y, w, h) cover."""
    return {(x + i, y + j) for x, y, w, h in rects for i in range(w) for j in range(h)}
