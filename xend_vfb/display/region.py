"""The part of a screen not copied or not sent yet, as a few rectangles.

Used for the screen's stale region (`screen.Screen`) and each display's
dirty region (the VNC viewers, the SDL window).

Rectangles merge when their bounding box is exactly their union (one
contains the other, or they are aligned strips that touch or overlap);
other overlaps are cut away.  So the rectangles cover exactly the changed
pixels, without overlap: nothing unchanged is sent, nothing twice.  The one
exception bounds the work: more than 64 separate rectangles collapse into
their bounding box, so an update stays small however scattered the changes
the guest reports between two client requests.
"""

from __future__ import annotations

__all__ = ["Rect", "DirtyRegion", "intersect", "MAX_RECTS"]

Rect = tuple[int, int, int, int]  # x, y, width, height

MAX_RECTS = 64


def _area(r: Rect) -> int:
    return r[2] * r[3]


def _union(a: Rect, b: Rect) -> Rect:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return (x0, y0, x1 - x0, y1 - y0)


def intersect(a: Rect, b: Rect) -> Rect | None:
    """The common part of two rectangles, or None when they do not overlap."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def _subtract(r: Rect, cut: Rect) -> list[Rect]:
    """`r` minus `cut` (already known to overlap it), as up to four rectangles."""
    x, y, w, h = r
    cx, cy, cw, ch = cut
    pieces = [
        (x, y, w, cy - y),  # above
        (x, cy + ch, w, y + h - cy - ch),  # below
        (x, cy, cx - x, ch),  # left of the cut
        (cx + cw, cy, x + w - cx - cw, ch),  # right of the cut
    ]
    return [p for p in pieces if p[2] > 0 and p[3] > 0]


class DirtyRegion:
    """A set of changed rectangles with coalescing."""

    def __init__(self) -> None:
        self._rects: list[Rect] = []

    def __bool__(self) -> bool:
        return bool(self._rects)

    def rects(self) -> list[Rect]:
        """The rectangles, for inspection."""
        return list(self._rects)

    def clear(self) -> None:
        """Forget every change."""
        self._rects.clear()

    def add(self, rect: Rect) -> None:
        """Mark a rectangle changed; the rectangles kept stay pairwise disjoint."""
        if rect[2] <= 0 or rect[3] <= 0:
            return
        merged = True
        while merged:
            merged = False
            for i, other in enumerate(self._rects):
                union = _union(other, rect)
                common = intersect(other, rect)
                overlap = _area(common) if common is not None else 0
                if _area(union) == _area(other) + _area(rect) - overlap:
                    del self._rects[i]
                    rect = union
                    merged = True
                    break
        kept = []
        for other in self._rects:
            common = intersect(other, rect)
            kept.extend([other] if common is None else _subtract(other, common))
        kept.append(rect)
        if len(kept) > MAX_RECTS:
            box = kept[0]
            for other in kept[1:]:
                box = _union(box, other)
            kept = [box]
        self._rects = kept

    def take(self, area: Rect) -> list[Rect]:
        """Remove and return the changed parts inside `area`; the rest stays."""
        taken: list[Rect] = []
        kept: list[Rect] = []
        for rect in self._rects:
            common = intersect(rect, area)
            if common is None:
                kept.append(rect)
            else:
                taken.append(common)
                kept.extend(_subtract(rect, common))
        self._rects = kept
        return taken
